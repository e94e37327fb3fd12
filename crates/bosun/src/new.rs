//! `bosun new`: a project in a directory — the CRD of a new kind, a sample, and either a
//! CompositeController or DecoratorController for it with the RBAC bosun needs for it (as
//! `bosun rbac` prints it) and a sync hook in Python or TypeScript on bosun's SDK (written into
//! the project), or a native controller in Rust on bosun-runtime — that `bosun dev --project
//! DIR` runs and `bosun hook test` (or `cargo test`) tests as they are. With `--admission`, the
//! hook also validates and defaults the new kind's objects, declared by an AdmissionController.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::rbac::Needs;

/// Which kind of controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ControllerKind {
    /// A CompositeController: the hook declares children for each parent.
    Composite,
    /// A DecoratorController: the hook adds labels, annotations, status and attachments to
    /// each target.
    Decorator,
}

/// The hook's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Language {
    /// Python 3.9 or newer, standard library only.
    Python,
    /// TypeScript, compiled with tsc (npm installs it) and run by Node.js 18 or newer.
    Typescript,
    /// Rust: a native controller on bosun-runtime's Controller instead of a hook (Cargo
    /// builds it; --controller does not apply).
    Rust,
}

/// Whether objects of the new kind live in namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scope {
    /// In a namespace, as most kinds.
    Namespaced,
    /// Cluster-wide.
    Cluster,
}

/// `bosun new` arguments.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The project's directory; created, and must be empty if it exists.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The new kind, in CamelCase (`Greeting`).
    #[arg(long, value_parser = kind)]
    kind: String,
    /// Its API group, a DNS name of yours (`example.com`).
    #[arg(long, value_parser = group)]
    group: String,
    /// Its version, as Kubernetes names versions: `v1`, `v1alpha1`, `v2beta3`.
    #[arg(long, default_value = "v1", value_name = "VERSION", value_parser = api_version)]
    api_version: String,
    /// Whether its objects live in namespaces.
    #[arg(long, value_enum, default_value = "namespaced")]
    scope: Scope,
    /// Which kind of controller to make.
    #[arg(long, value_enum, default_value = "composite")]
    controller: ControllerKind,
    /// The hook's language.
    #[arg(long, value_enum, default_value = "python")]
    language: Language,
    /// Also validate and default the new kind's objects before they are stored: an
    /// AdmissionController (admission.yaml) sending them to the hook's `mutate` (a missing
    /// message gets a default) and `validate` (an empty one is refused) handlers, with their
    /// tests. For hooks in Python or TypeScript.
    #[arg(long)]
    admission: bool,
}

fn kind(text: &str) -> Result<String, String> {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if first.is_ascii_uppercase() && chars.all(|c| c.is_ascii_alphanumeric()) => Ok(text.to_owned()),
        _ => Err(format!("{text:?} is not a kind: use CamelCase letters and digits, e.g. Greeting")),
    }
}

/// A version as Kubernetes orders them: `v<N>`, optionally followed by `alpha<M>` or `beta<M>`.
fn api_version(text: &str) -> Result<String, String> {
    let number = |digits: &str| !digits.is_empty() && !digits.starts_with('0') && digits.chars().all(|c| c.is_ascii_digit());
    let valid = text.strip_prefix('v').is_some_and(|rest| {
        let (major, stage) = match rest.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        number(major) && (stage.is_empty() || ["alpha", "beta"].iter().any(|word| stage.strip_prefix(word).is_some_and(number)))
    });
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a Kubernetes API version: use v1, v2, v1alpha1 or v1beta2 (v, a number, then optionally alpha or beta and a number)"
        ))
    }
}

fn group(text: &str) -> Result<String, String> {
    let label = |label: &str| {
        !label.is_empty() && label.len() <= 63 && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if text.contains('.') && text.split('.').all(label) {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not an API group: use a lowercase DNS name with a dot, e.g. example.com"))
    }
}

/// kubectl's plural of a lowercase kind.
fn plural(singular: &str) -> String {
    let before_y = singular.strip_suffix('y').and_then(|stem| stem.chars().last());
    if before_y.is_some_and(|letter| !"aeiou".contains(letter)) {
        format!("{}ies", &singular[..singular.len() - 1])
    } else if ["s", "x", "z", "ch", "sh"].iter().any(|end| singular.ends_with(end)) {
        format!("{singular}es")
    } else {
        format!("{singular}s")
    }
}

const CRD: &str = include_str!("../templates/new/crd.yaml");
const COMPOSITE: &str = include_str!("../templates/new/composite.yaml");
const DECORATOR: &str = include_str!("../templates/new/decorator.yaml");
const SAMPLE: &str = include_str!("../templates/new/sample.yaml");
const ADMISSION: &str = include_str!("../templates/new/admission.yaml");
const README: &str = include_str!("../templates/new/README.md");
const PYTHON: &[(&str, &str)] = &[
    ("hook.py", include_str!("../templates/new/python/hook.py")),
    ("test_hook.py", include_str!("../templates/new/python/test_hook.py")),
    ("bosun.yaml", include_str!("../templates/new/python/bosun.yaml")),
];
/// With `--admission`: the hooks (filling `__ADMISSION_HOOKS__` in the hook) and their tests.
const PYTHON_ADMISSION: (&str, (&str, &str)) = (
    include_str!("../templates/new/python/admission.py"),
    ("test_admission.py", include_str!("../templates/new/python/test_admission.py")),
);
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/new/rust/Cargo.toml")),
    ("src/main.rs", include_str!("../templates/new/rust/src/main.rs")),
    ("bosun.yaml", include_str!("../templates/new/rust/bosun.yaml")),
    ("rbac.yaml", include_str!("../templates/new/rust/rbac.yaml")),
    ("README.md", include_str!("../templates/new/rust/README.md")),
    // The versions bosun is built and tested with; Cargo drops what the project does not use.
    ("Cargo.lock", include_str!("../../../Cargo.lock")),
    (".gitignore", "/target\n/.bin\n"),
];
const TYPESCRIPT: &[(&str, &str)] = &[
    ("hook.ts", include_str!("../templates/new/typescript/hook.ts")),
    ("hook.test.ts", include_str!("../templates/new/typescript/hook.test.ts")),
    ("package.json", include_str!("../templates/new/typescript/package.json")),
    ("tsconfig.json", include_str!("../templates/new/typescript/tsconfig.json")),
    ("bosun.yaml", include_str!("../templates/new/typescript/bosun.yaml")),
];
const TYPESCRIPT_ADMISSION: (&str, (&str, &str)) = (
    include_str!("../templates/new/typescript/admission.ts"),
    ("admission.test.ts", include_str!("../templates/new/typescript/admission.test.ts")),
);

/// Writes the project.
pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    if dir.exists() && std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_some() {
        bail!("{} is not empty: bosun new writes a project into a new or empty directory", dir.display());
    }
    if args.admission && args.language == Language::Rust {
        bail!("--admission makes admission hooks beside a sync hook: use it with --language python or typescript");
    }
    let singular = args.kind.to_ascii_lowercase();
    let name = format!("{singular}-controller");
    let composite = args.controller == ControllerKind::Composite;
    let (controller_kind, request, response, subject, children, type_) = if composite {
        ("CompositeController", "CompositeRequest", "CompositeResponse", "parent", "children", "composite")
    } else {
        ("DecoratorController", "DecoratorRequest", "DecoratorResponse", "object", "attachments", "decorator")
    };
    let (language, hook, sdk, test) = match args.language {
        Language::Python => ("Python", "hook.py", "bosun_hooks/", "python3 -m unittest                                 # replays vectors/"),
        Language::Typescript => {
            ("TypeScript", "hook.ts", "vendor/bosun-hooks/", "npm run build && npm test                          # replays vectors/")
        }
        Language::Rust => ("Rust", "src/main.rs", "", "cargo test"),
    };
    let plural = plural(&singular);
    let admission = admission_fills(args.admission.then_some(args.language));
    let scope = if args.scope == Scope::Namespaced { "Namespaced" } else { "Cluster" };
    let fill = |template: &str| {
        admission
            .iter()
            .copied()
            .chain([
                ("__KIND__", args.kind.as_str()),
                ("__GROUP__", &args.group),
                ("__VERSION__", &args.api_version),
                ("__PLURAL__", &plural),
                ("__SINGULAR__", &singular),
                ("__SCOPE__", scope),
                ("__NAME__", &name),
                ("__CONTROLLER__", controller_kind),
                ("__REQUEST__", request),
                ("__RESPONSE__", response),
                ("__SUBJECT__", subject),
                ("__CHILDREN__", children),
                ("__TYPE__", type_),
                ("__LANGUAGE__", language),
                ("__HOOK__", hook),
                ("__SDK__", sdk),
                ("__TEST__", test),
                ("__BOSUN_RUNTIME__", &bosun_runtime_dependency()),
            ])
            .fold(template.to_owned(), |text, (placeholder, value)| text.replace(placeholder, value))
    };
    let mut files = vec![("crd.yaml".to_owned(), fill(CRD)), ("sample.yaml".to_owned(), fill(SAMPLE))];
    if args.language != Language::Rust {
        let controller = fill(if composite { COMPOSITE } else { DECORATOR });
        files.push(("rbac.yaml".to_owned(), rbac(&controller, composite)?));
        files.push(("controller.yaml".to_owned(), controller));
        files.push(("README.md".to_owned(), fill(README)));
    }
    let admission_files = match (args.admission, args.language) {
        (true, Language::Python) => Some(PYTHON_ADMISSION.1),
        (true, Language::Typescript) => Some(TYPESCRIPT_ADMISSION.1),
        _ => None,
    };
    if let Some((test, template)) = admission_files {
        files.push(("admission.yaml".to_owned(), fill(ADMISSION)));
        files.push((test.to_owned(), fill(template)));
    }
    let (sources, sdk_files) = match args.language {
        Language::Python => (PYTHON, crate::sdks::PYTHON),
        Language::Typescript => (TYPESCRIPT, crate::sdks::NODE),
        Language::Rust => (RUST, &[][..]),
    };
    files.extend(sources.iter().map(|(file, template)| ((*file).to_owned(), fill(template))));
    if args.language == Language::Typescript {
        files.push((".gitignore".to_owned(), "node_modules/\ndist/\n".to_owned()));
    }
    crate::sdks::write(dir, files)?;
    crate::sdks::write(&dir.join(sdk), sdk_files.iter().copied())?;
    let kind = &args.kind;
    let what = if args.language == Language::Rust {
        format!("native controller for {kind}")
    } else {
        format!("{controller_kind} for {kind} with its hook")
    };
    let what = if args.admission { format!("{what}, and an AdmissionController") } else { what };
    print!("{}", summary(dir, &what, language, args.language != Language::Rust, args.admission));
    Ok(())
}

/// What the `__ADMISSION_…__` placeholders become: with `--admission` in `language`, the
/// hooks, their routes and imports, and their lines in the docs; otherwise nothing.
fn admission_fills(language: Option<Language>) -> [(&'static str, &'static str); 8] {
    let (hooks, imports, routes, summary) = match language {
        Some(Language::Python) => (
            PYTHON_ADMISSION.0,
            ", AdmissionRequest, AdmissionResponse",
            "",
            "\n\nIts mutate and validate hooks default a missing message and refuse an empty one (admission.yaml).",
        ),
        Some(Language::Typescript) => (
            TYPESCRIPT_ADMISSION.0,
            ", AdmissionRequest, AdmissionResponse, allow, deny",
            ".validate(validate).mutate(mutate)",
            "\n//\n// Its mutate and validate hooks default a missing message and refuse an empty one (admission.yaml).",
        ),
        _ => ("", "", "", ""),
    };
    let with = |text: &'static str| if language.is_some() { text } else { "" };
    [
        ("__ADMISSION_HOOKS__", hooks),
        ("__ADMISSION_IMPORTS__", imports),
        ("__ADMISSION_ROUTES__", routes),
        ("__ADMISSION_SUMMARY__", summary),
        ("__ADMISSION_PROJECT__", with("admission: admission.yaml\n")),
        (
            "__ADMISSION_ROW__",
            with(
                "| `admission.yaml` | the AdmissionController: each __KIND__ created or updated goes through the hook's `/mutate` and `/validate` first |\n",
            ),
        ),
        (
            "__ADMISSION_LOOP__",
            with(
                "bosun hook test admission.yaml sample.yaml         # the sample through mutate and validate: the verdicts and the patch\n",
            ),
        ),
        (
            "__ADMISSION_DEPLOY__",
            with(
                "\nFor admission, run bosun with its admission endpoint (`deploy/admission`, or the chart's\n\
                 `admission.enabled`), point `admission.yaml`'s URLs at the hook and apply it: see docs/admission.md.\n",
            ),
        ),
    ]
}

/// What `bosun rbac -f controller.yaml` prints for the project's controller.
fn rbac(controller: &str, composite: bool) -> anyhow::Result<String> {
    let needs = if composite {
        Needs::of_composite(&serde_yaml::from_str(controller).context("the scaffold's CompositeController")?)
    } else {
        Needs::of_decorator(&serde_yaml::from_str(controller).context("the scaffold's DecoratorController")?)
    };
    let role = needs.cluster_role(&[], crate::rbac::AGGREGATION_LABEL, None);
    Ok(format!(
        "# What bosun needs for this controller (`bosun rbac -f controller.yaml` prints the same): a\n\
         # ClusterRole that bosun's own role aggregates (deploy/rbac.yaml).\n{}",
        serde_yaml::to_string(&role)?
    ))
}

fn summary(dir: &Path, what: &str, language: &str, hook: bool, admission: bool) -> String {
    let dir = dir.display();
    let next = if hook {
        let admission = if admission {
            format!("  bosun hook test {dir}/admission.yaml {dir}/sample.yaml    # the sample through mutate and validate\n")
        } else {
            String::new()
        };
        format!(
            "  bosun dev --project {dir}                 # a local cluster running bosun and this hook; prints the sample's tree\n  \
             bosun hook test {dir}/controller.yaml {dir}/sample.yaml   # what a sync would do, writing nothing\n{admission}"
        )
    } else {
        format!("  bosun dev --project {dir}                 # a local cluster running this controller; prints the sample's tree\n")
    };
    format!("bosun new: a {what} in {language}, in {dir}.\n\nNext:\n{next}\nSee {dir}/README.md.\n")
}

/// The project's dependency on bosun-runtime: the crate this bosun was built from, where it
/// still is, else bosun's repository.
fn bosun_runtime_dependency() -> String {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bosun-runtime");
    match local.canonicalize() {
        Ok(path) => format!("{{ path = {:?} }}", path.display().to_string()),
        Err(_) => "{ git = \"https://github.com/bosun-dev/bosun\" }".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_plurals_are_kubectls() {
        assert!(kind("Greeting").is_ok() && kind("greeting").is_err() && kind("Web-App").is_err());
        assert!(group("example.com").is_ok() && group("example").is_err() && group("Example.com").is_err());
        for valid in ["v1", "v2", "v1alpha1", "v10beta12"] {
            assert!(api_version(valid).is_ok(), "{valid}");
        }
        for invalid in ["1", "V1", "v0", "v01", "v1alpha", "v1gamma1", "v1beta0", "v1.0", "version1", "", "v"] {
            assert!(api_version(invalid).unwrap_err().contains("is not a Kubernetes API version"), "{invalid}");
        }
        assert_eq!(
            [plural("greeting"), plural("policy"), plural("gateway"), plural("box"), plural("class")],
            ["greetings", "policies", "gateways", "boxes", "classes"]
        );
    }
}
