//! Building the control-plane binaries from the official Go modules, with the machine's Go
//! toolchain (or, if that is older than Go 1.21, with the toolchain it fetches through the
//! module proxy), reporting progress as it goes.
//!
//! `k8s.io/kubernetes` is not meant to be a dependency: its `go.mod` replaces every
//! `k8s.io/*` staging module with a local path. The small module written here requires it
//! and replaces each of those staging modules with its published `v0.X.Y` release, which is
//! exactly the source the Kubernetes release was cut from. Versions are stamped into the
//! binaries the way the Kubernetes build does, so the server reports its real version.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::binaries::{
    Binaries, BuildError, Component, ETCD_VERSION, GO_DIRECTIVE, HELM_VERSION, KUBERNETES_VERSION, KWOK_VERSION, io_error,
};
use crate::progress::Progress;

impl Component {
    /// The Go package the binary is built from.
    fn package(self) -> &'static str {
        match self {
            Component::Etcd => "go.etcd.io/etcd/server/v3",
            Component::KubeApiserver => "k8s.io/kubernetes/cmd/kube-apiserver",
            Component::KubeControllerManager => "k8s.io/kubernetes/cmd/kube-controller-manager",
            Component::KubeScheduler => "k8s.io/kubernetes/cmd/kube-scheduler",
            Component::Kubectl => "k8s.io/kubernetes/cmd/kubectl",
            Component::Helm => "helm.sh/helm/v3/cmd/helm",
            Component::Kwok => "sigs.k8s.io/kwok/cmd/kwok",
        }
    }

    /// The Go module it is built in.
    fn module(self) -> GoModule {
        match self {
            Component::Etcd => GoModule::Etcd,
            Component::Helm => GoModule::Helm,
            Component::Kwok => GoModule::Kwok,
            _ => GoModule::Kubernetes,
        }
    }
}

/// The small Go modules the components are built in, one per project, so that their
/// dependency graphs do not constrain each other's versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum GoModule {
    Kubernetes,
    Etcd,
    Helm,
    Kwok,
}

impl GoModule {
    fn dir_name(self) -> &'static str {
        match self {
            GoModule::Kubernetes => "kubernetes",
            GoModule::Etcd => "etcd",
            GoModule::Helm => "helm",
            GoModule::Kwok => "kwok",
        }
    }

    fn version(self) -> &'static str {
        match self {
            GoModule::Kubernetes => KUBERNETES_VERSION,
            GoModule::Etcd => ETCD_VERSION,
            GoModule::Helm => HELM_VERSION,
            GoModule::Kwok => KWOK_VERSION,
        }
    }
}

/// Builds `missing` components into the cache entry, recording each in the manifest once
/// its binary is complete (so an interrupted build never looks complete).
pub(crate) fn build(entry: &Path, missing: &[Component]) -> Result<(), BuildError> {
    let started = Instant::now();
    let go = Toolchain::find()?;
    let names: Vec<&str> = missing.iter().map(|component| component.name()).collect();
    Progress::line(format_args!(
        "building {} (Kubernetes {KUBERNETES_VERSION}, etcd {ETCD_VERSION}, Helm {HELM_VERSION}, KWOK {KWOK_VERSION}) with {} \
         into {}; this happens once and takes several minutes",
        names.join(", "),
        go.version,
        entry.display()
    ));
    let mut modules: Vec<GoModule> = missing.iter().map(|component| component.module()).collect();
    modules.sort();
    modules.dedup();
    let steps = modules.len() + missing.len();
    let bin = entry.join("bin");
    fs::create_dir_all(&bin).map_err(io_error(&bin))?;
    let binaries = Binaries { dir: bin.clone() };
    let mut dirs = std::collections::BTreeMap::new();
    for (index, module) in modules.into_iter().enumerate() {
        let step = Step { number: 1 + index, of: steps };
        let dir = match module {
            GoModule::Kubernetes => prepare_kubernetes_module(&go, entry, missing, step)?,
            _ => prepare_module(&go, entry, module, step)?,
        };
        dirs.insert(module, dir);
    }
    for (index, component) in missing.iter().enumerate() {
        let step = Step { number: dirs.len() + 1 + index, of: steps };
        compile(&go, &dirs[&component.module()], *component, &binaries.path(*component), step)?;
        binaries.record(*component)?;
    }
    Progress::line(format_args!("built {} in {}; cached in {}", names.join(", "), Progress::elapsed(started), entry.display()));
    Ok(())
}

#[derive(Clone, Copy)]
struct Step {
    number: usize,
    of: usize,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {}/{}", self.number, self.of)
    }
}

/// The Go command the build runs.
struct Toolchain {
    program: PathBuf,
    /// What `go version` says of it.
    version: String,
}

/// The oldest Go that switches to the toolchain a `go.mod` asks for by itself (`GOTOOLCHAIN`).
const SWITCHING_GO: (u32, u32) = (1, 21);

impl Toolchain {
    /// `go` from `PATH` when it is new enough to switch toolchains by itself; for an older one
    /// (Debian 12's is 1.19), the Go [`GO_DIRECTIVE`] toolchain it downloads through the module
    /// proxy, as a newer Go does when it switches.
    fn find() -> Result<Self, BuildError> {
        let installed = Self::at(PathBuf::from("go"))?;
        match go_release(&installed.version) {
            Some(release) if release < SWITCHING_GO => {
                Progress::line(format_args!("{} is older than Go 1.21 and cannot switch toolchains by itself", installed.version));
                installed.fetch_toolchain()
            }
            _ => Ok(installed),
        }
    }

    fn at(program: PathBuf) -> Result<Self, BuildError> {
        let output = Command::new(&program).arg("version").output().map_err(|error| BuildError::GoMissing(error.to_string()))?;
        if !output.status.success() {
            return Err(BuildError::GoMissing(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
        }
        Ok(Self { program, version: String::from_utf8_lossy(&output.stdout).trim().to_owned() })
    }

    /// Downloads Go [`GO_DIRECTIVE`] as the module `golang.org/toolchain` into Go's module
    /// cache (kept there for later builds) and returns it.
    fn fetch_toolchain(&self) -> Result<Self, BuildError> {
        let platform = self.output(&std::env::temp_dir(), &["env", "GOOS", "GOARCH"])?;
        let platform: Vec<&str> = platform.split_whitespace().collect();
        let module = format!("golang.org/toolchain@v0.0.1-go{GO_DIRECTIVE}.{}", platform.join("-"));
        Progress::line(format_args!("fetching Go {GO_DIRECTIVE} through the module proxy ({module})"));
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Download {
            dir: PathBuf,
        }
        let download = self.output(&std::env::temp_dir(), &["mod", "download", "-json", &module])?;
        let root = serde_json::from_str::<Download>(&download)
            .map_err(|error| BuildError::GoCommand {
                step: format!("go mod download {module}"),
                status: "0".into(),
                output: format!("unexpected output ({error}): {download}"),
            })?
            .dir;
        // Module zips keep no file modes: make the commands executable, as Go does when it switches.
        let tools = root.join("pkg").join("tool").join(platform.join("_"));
        for dir in [root.join("bin"), tools] {
            for file in fs::read_dir(&dir).map_err(io_error(&dir))? {
                let path = file.map_err(io_error(&dir))?.path();
                let mut permissions = fs::metadata(&path).map_err(io_error(&path))?.permissions();
                std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o555);
                fs::set_permissions(&path, permissions).map_err(io_error(&path))?;
            }
        }
        Self::at(root.join("bin").join("go"))
    }

    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.program);
        command
            .current_dir(dir)
            // Kubernetes' components are static binaries without cgo, as in its release build.
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-mod=mod");
        command
    }

    /// Runs a `go` command and returns its standard output.
    fn output(&self, dir: &Path, args: &[&str]) -> Result<String, BuildError> {
        let mut command = self.command(dir);
        command.args(args);
        supervise(command, &format!("go {}", args.join(" ")), |_, _| ())
    }

    /// Runs a `go` command, returns its standard output, and reports progress while it runs.
    fn run(&self, dir: &Path, args: &[&str], step: Step) -> Result<String, BuildError> {
        let mut command = self.command(dir);
        command.args(args);
        supervise(command, &format!("go {}", args.join(" ")), |elapsed, _| {
            Progress::line(format_args!("{step}: `go {}` still running, {} so far", args[0], Progress::format(elapsed)));
        })
    }
}

/// The release (major, minor) in what `go version` prints: `go version go1.19.8 linux/amd64`
/// → (1, 19); `None` for a development build.
fn go_release(version: &str) -> Option<(u32, u32)> {
    let release = version.split_whitespace().nth(2)?.strip_prefix("go")?;
    let mut numbers = release.split(['.', 'r', 'b']).map(str::parse::<u32>);
    Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
}

/// Writes the module that builds Kubernetes: it requires `k8s.io/kubernetes` and replaces each
/// staging module that Kubernetes' own `go.mod` points at a local path with the published
/// release of the same version (`v1.37.2` → `v0.37.2`).
fn prepare_kubernetes_module(go: &Toolchain, entry: &Path, components: &[Component], step: Step) -> Result<PathBuf, BuildError> {
    Progress::line(format_args!("{step}: resolving k8s.io/kubernetes {KUBERNETES_VERSION} and its modules"));
    let dir = entry.join("src").join(GoModule::Kubernetes.dir_name());
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let download = go.run(&dir, &["mod", "download", "-json", &format!("k8s.io/kubernetes@{KUBERNETES_VERSION}")], step)?;
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Downloaded {
        go_mod: PathBuf,
    }
    let downloaded: Downloaded = serde_json::from_str(&download).map_err(|error| BuildError::GoCommand {
        step: "go mod download -json k8s.io/kubernetes".into(),
        status: "0".into(),
        output: format!("unexpected output ({error}): {download}"),
    })?;
    let upstream = fs::read_to_string(&downloaded.go_mod).map_err(io_error(&downloaded.go_mod))?;
    let staging_version = KUBERNETES_VERSION.replacen("v1.", "v0.", 1);
    let replaces: Vec<String> = staging_modules(&upstream).map(|module| format!("\t{module} => {module} {staging_version}\n")).collect();
    let go_mod = format!(
        "// Written by bosun-testenv: builds the Kubernetes {KUBERNETES_VERSION} control plane from the\n\
         // published modules. Kubernetes replaces its staging modules with local paths; here each\n\
         // one is replaced by its published release instead.\n\
         module bosun.dev/testenv/kubernetes\n\ngo {GO_DIRECTIVE}\n\nrequire k8s.io/kubernetes {KUBERNETES_VERSION}\n\nreplace (\n{})\n",
        replaces.concat()
    );
    write_go_mod(&dir, &go_mod)?;
    let packages: Vec<String> = components
        .iter()
        .filter(|component| component.module() == GoModule::Kubernetes)
        .map(|component| format!("{}@{KUBERNETES_VERSION}", component.package()))
        .collect();
    let mut args = vec!["get"];
    args.extend(packages.iter().map(String::as_str));
    go.run(&dir, &args, step)?;
    Ok(dir)
}

/// The `k8s.io/…` modules that a Kubernetes `go.mod` replaces with `./staging/…` paths.
fn staging_modules(go_mod: &str) -> impl Iterator<Item = &str> {
    go_mod.lines().filter_map(|line| {
        let (module, target) = line.trim().split_once("=>")?;
        target.trim().starts_with("./staging/").then(|| module.trim())
    })
}

/// Writes a module that requires `module`'s project at its pinned version, and resolves it.
fn prepare_module(go: &Toolchain, entry: &Path, module: GoModule, step: Step) -> Result<PathBuf, BuildError> {
    let component = Component::ALL.into_iter().find(|component| component.module() == module).expect("every module builds a component");
    let version = module.version();
    Progress::line(format_args!("{step}: resolving {} {version}", component.package()));
    let dir = entry.join("src").join(module.dir_name());
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let name = module.dir_name();
    let go_mod = format!(
        "// Written by bosun-testenv: builds {name} {version} from its published module.\n\
         module bosun.dev/testenv/{name}\n\ngo {GO_DIRECTIVE}\n"
    );
    write_go_mod(&dir, &go_mod)?;
    go.run(&dir, &["get", &format!("{}@{version}", component.package())], step)?;
    Ok(dir)
}

fn write_go_mod(dir: &Path, text: &str) -> Result<(), BuildError> {
    let path = dir.join("go.mod");
    fs::write(&path, text).map_err(io_error(&path))?;
    // A go.sum from an earlier, interrupted build may be partial; `go get` writes a full one.
    let sum = dir.join("go.sum");
    match fs::remove_file(&sum) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io_error(&sum)(error)),
        _ => Ok(()),
    }
}

/// The `-ldflags` the Kubernetes build (hack/lib/version.sh) and KWOK's release build use to
/// stamp their versions.
fn version_ldflags(component: Component) -> String {
    let mut flags = String::from("-s -w");
    if component.module() == GoModule::Kwok {
        flags.push_str(&format!(" -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION}"));
    }
    if component.module() == GoModule::Kubernetes {
        let minor = KUBERNETES_VERSION.split('.').nth(1).unwrap_or_default();
        for package in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
            for (name, value) in [("gitVersion", KUBERNETES_VERSION), ("gitMajor", "1"), ("gitMinor", minor), ("gitTreeState", "clean")] {
                flags.push_str(&format!(" -X {package}.{name}={value}"));
            }
        }
    }
    flags
}

fn compile(go: &Toolchain, module_dir: &Path, component: Component, target: &Path, step: Step) -> Result<(), BuildError> {
    let started = Instant::now();
    let what = format!("{step}: compiling {}", component.name());
    let partial = target.with_extension("partial");
    let ldflags = version_ldflags(component);
    let flags = ["-trimpath", "-ldflags", ldflags.as_str()];
    // Packages already in Go's build cache are not rebuilt (nor printed by `-v`): count the stale ones.
    let mut list = vec!["list", "-deps", "-f", "{{if .Stale}}{{.ImportPath}}{{end}}"];
    list.extend(flags);
    list.push(component.package());
    let total = go.run(module_dir, &list, step)?.lines().filter(|line| !line.is_empty()).count();
    Progress::line(format_args!("{what} ({total} packages to compile)"));
    let mut command = go.command(module_dir);
    command.args(["build", "-v"]).args(flags).arg("-o").arg(&partial).arg(component.package());
    supervise(command, &format!("go build {}", component.package()), |elapsed, compiled| {
        Progress::line(format_args!(
            "{what}: {}% ({compiled}/{total} packages, {} so far)",
            (compiled * 100 / total.max(1)).min(99),
            Progress::format(elapsed)
        ));
    })?;
    fs::rename(&partial, target).map_err(io_error(target))?;
    Progress::line(format_args!("{what}: done in {}", Progress::elapsed(started)));
    Ok(())
}

/// A line of `go build -v` that names a package rather than reporting an error.
fn is_package_path(line: &str) -> bool {
    !line.is_empty() && !line.contains(char::is_whitespace) && !line.starts_with('#')
}

/// Runs `command` to completion, calling `report` with the elapsed time and the number of
/// package lines printed so far every [`REPORT_EVERY`], and returns its standard output. On
/// failure the error carries the last lines it printed.
fn supervise(mut command: Command, name: &str, mut report: impl FnMut(Duration, usize)) -> Result<String, BuildError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let started = Instant::now();
    let spawn_error = |error: std::io::Error| BuildError::GoMissing(error.to_string());
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(spawn_error)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let output = std::thread::spawn(move || {
        let mut text = String::new();
        BufReader::new(stdout).read_to_string(&mut text).map(|_| text)
    });
    let packages = Arc::new(AtomicUsize::new(0));
    let tail = Arc::new(Mutex::new(Tail::default()));
    let errors = std::thread::spawn({
        let (packages, tail) = (packages.clone(), tail.clone());
        move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if is_package_path(&line) {
                    packages.fetch_add(1, Ordering::Relaxed);
                }
                tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(line);
            }
        }
    });
    let mut last_report = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_error)? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            report(started.elapsed(), packages.load(Ordering::Relaxed));
        }
    };
    let _ = errors.join();
    let stdout = output.join().expect("reader thread does not panic").unwrap_or_default();
    if !status.success() {
        let output = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).text();
        return Err(BuildError::GoCommand { step: name.to_owned(), status: status.to_string(), output });
    }
    Ok(stdout)
}

/// How often long steps report progress.
const REPORT_EVERY: Duration = Duration::from_secs(15);

/// The last lines of a command's output, for error messages.
#[derive(Default)]
struct Tail(std::collections::VecDeque<String>);

impl Tail {
    const LINES: usize = 30;

    fn push(&mut self, line: String) {
        if self.0.len() == Self::LINES {
            self.0.pop_front();
        }
        self.0.push_back(line);
    }

    fn text(&self) -> String {
        self.0.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_releases_are_read_from_go_version() {
        assert_eq!(go_release("go version go1.19.8 linux/amd64"), Some((1, 19)));
        assert_eq!(go_release("go version go1.21rc2 linux/arm64"), Some((1, 21)));
        assert_eq!(go_release("go version go1.26.0 linux/amd64"), Some((1, 26)));
        assert_eq!(go_release("go version devel go1.27-4b3ea1e Mon Nov 2 linux/amd64"), None);
        assert!(go_release("go version go1.19.8 linux/amd64").unwrap() < SWITCHING_GO);
    }

    /// What happens with a Go too old to switch toolchains (Debian 12's 1.19): the installed
    /// `go` fetches the one the build needs, which then runs.
    #[test]
    fn the_build_toolchain_is_fetched_through_the_module_proxy() {
        let fetched = Toolchain::at(PathBuf::from("go")).unwrap().fetch_toolchain().unwrap();
        assert!(fetched.version.starts_with(&format!("go version go{GO_DIRECTIVE} ")), "{}", fetched.version);
        let root = fetched.output(&std::env::temp_dir(), &["env", "GOROOT"]).unwrap();
        assert!(root.contains(&format!("golang.org/toolchain@v0.0.1-go{GO_DIRECTIVE}.")), "{root}");
        // Its compiler and linker run: a program that needs Go 1.22 builds.
        let dir = std::env::temp_dir().join(format!("bosun-go-toolchain-{}", crate::unique_suffix()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("go.mod"), format!("module hello\n\ngo {GO_DIRECTIVE}\n")).unwrap();
        fs::write(dir.join("main.go"), "package main\n\nfunc main() {\n\tfor range 3 {\n\t}\n}\n").unwrap();
        let built = fetched.output(&dir, &["build", "-o", "hello", "."]);
        let ran = Command::new(dir.join("hello")).status();
        fs::remove_dir_all(&dir).unwrap();
        built.unwrap();
        assert!(ran.unwrap().success());
    }

    #[test]
    fn staging_modules_are_the_local_replaces() {
        let go_mod = "module k8s.io/kubernetes\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\
                      \tk8s.io/client-go => ./staging/src/k8s.io/client-go\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n";
        assert_eq!(staging_modules(go_mod).collect::<Vec<_>>(), ["k8s.io/api", "k8s.io/client-go"]);
    }

    #[test]
    fn kubernetes_binaries_are_stamped_with_their_version() {
        let flags = version_ldflags(Component::KubeApiserver);
        assert!(flags.contains(&format!("-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}")));
        assert!(flags.contains("-X k8s.io/component-base/version.gitMinor=37"));
        assert_eq!(version_ldflags(Component::Etcd), "-s -w");
        assert!(version_ldflags(Component::Kwok).ends_with(&format!("consts.Version={KWOK_VERSION}")));
    }

    #[test]
    fn build_output_lines_are_told_apart() {
        assert!(is_package_path("k8s.io/apiserver/pkg/server"));
        assert!(!is_package_path("# k8s.io/apiserver/pkg/server"));
        assert!(!is_package_path("./main.go:3:2: undefined: x"));
    }
}
