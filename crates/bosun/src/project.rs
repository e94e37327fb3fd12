//! A project (`bosun.yaml`, as `bosun new` makes it) run by `bosun dev --project DIR`: its
//! hook built and started as a local process on the port its controller's URL names, its CRD
//! installed, its controller applied pointing at the hook — or its native controller built and
//! run against the cluster — its sample applied, then the sample's tree once synced.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

/// The namespace the sample goes to when its type is namespaced.
const NAMESPACE: &str = "default";

/// `bosun.yaml`: a hook with its controller, or a native controller.
#[derive(Debug, Deserialize)]
pub struct Project {
    /// The CRD's file.
    pub crd: PathBuf,
    /// A parent (or target) to apply.
    pub sample: PathBuf,
    /// The CompositeController's or DecoratorController's file, for a hook.
    pub controller: Option<PathBuf>,
    /// How the hook is built and run; the port it is to listen on is added as the last
    /// argument of `run`.
    pub hook: Option<Commands>,
    /// How a native controller is built and run; `run` gets `KUBECONFIG` for the cluster.
    pub native: Option<Commands>,
}

/// How a project's program is built and run, from the project's directory.
#[derive(Debug, Deserialize)]
pub struct Commands {
    /// Commands run in order first (`npm install`, `tsc`, `cargo install`); none for a script.
    #[serde(default)]
    pub build: Vec<Vec<String>>,
    /// The program's command.
    pub run: Vec<String>,
}

impl Project {
    /// The project in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Project> {
        let file = dir.join("bosun.yaml");
        let text =
            std::fs::read_to_string(&file).with_context(|| format!("reading {} (make a project with `bosun new`)", file.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))
    }
}

fn read<T: serde::de::DeserializeOwned>(dir: &Path, file: &Path) -> anyhow::Result<T> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Builds and starts the project in `dir` on the cluster of `client` (whose kubeconfig is at
/// `kubeconfig`); returns its running program and the sample's `<resource>/<name>` and
/// namespace, for its tree.
pub async fn start(client: &Client, dir: &Path, kubeconfig: &Path) -> anyhow::Result<(crate::demo::Demo, String, String)> {
    let project = Project::load(dir)?;
    let (commands, native) = match (&project.hook, &project.native, &project.controller) {
        (Some(hook), None, Some(_)) => (hook, false),
        (None, Some(native), None) => (native, true),
        _ => bail!("{}/bosun.yaml: give `hook` and `controller`, or `native`", dir.display()),
    };
    for step in &commands.build {
        let Some((program, args)) = step.split_first() else { continue };
        println!("building: {}", step.join(" "));
        let status = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running {program} in {}", dir.display()))?;
        if !status.success() {
            bail!("building: `{}` in {} exited with {status}", step.join(" "), dir.display());
        }
    }
    let crd: CustomResourceDefinition = read(dir, &project.crd)?;
    bosun_runtime::crds::install(client, std::slice::from_ref(&crd))
        .await
        .with_context(|| format!("installing the CRD {}", crd.name_any()))?;
    let Some((program, args)) = commands.run.split_first() else { bail!("{}/bosun.yaml: `run` is empty", dir.display()) };
    let mut command = Command::new(program);
    command.args(args).current_dir(dir).stdout(Stdio::null());
    let demo = if native {
        command.env("KUBECONFIG", kubeconfig);
        let process = command.spawn().with_context(|| format!("starting {}", commands.run.join(" ")))?;
        println!("project {}: `{}` running against the local cluster", dir.display(), commands.run.join(" "));
        crate::demo::Demo { hooks: vec![process] }
    } else {
        // The port the controller names, so that `bosun hook test` reaches the hook as it is.
        let file = project.controller.as_deref().unwrap_or(Path::new("controller.yaml"));
        let controller: DynamicObject = read(dir, file)?;
        let url = controller.data["spec"]["hooks"]["sync"]["webhook"]["url"].as_str().unwrap_or_default().to_owned();
        let port = url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next()?.parse::<u16>().ok())
            .with_context(|| format!("{}: the sync hook's url {url:?} names no port", file.display()))?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!("port {port}, where {} expects the hook, is taken: stop what uses it, or change the port in its url", file.display());
        }
        let mut hook = command.arg(port.to_string()).spawn().with_context(|| format!("starting the hook: {}", commands.run.join(" ")))?;
        let listening = crate::demo::wait_listening(&mut hook, port, "project's").await;
        let demo = crate::demo::Demo { hooks: vec![hook] };
        listening?;
        let (kind, name) = crate::demo::apply_controller(client, controller, port).await.context("applying the controller")?;
        println!("project {}: hook `{}` on 127.0.0.1:{port}, {kind} {name}", dir.display(), commands.run.join(" "));
        demo
    };

    let sample: DynamicObject = read(dir, &project.sample)?;
    let version = crd.spec.versions.first().map(|version| version.name.clone()).unwrap_or_default();
    let resource = kube::api::ApiResource {
        group: crd.spec.group.clone(),
        version: version.clone(),
        api_version: format!("{}/{version}", crd.spec.group),
        kind: crd.spec.names.kind.clone(),
        plural: crd.spec.names.plural.clone(),
    };
    let namespaced = crd.spec.scope == "Namespaced";
    let api: Api<DynamicObject> =
        if namespaced { Api::namespaced_with(client.clone(), NAMESPACE, &resource) } else { Api::all_with(client.clone(), &resource) };
    let sample_name = sample.name_any();
    api.patch(&sample_name, &PatchParams::apply("bosun-dev").force(), &Patch::Apply(&sample)).await.context("applying the sample")?;
    Ok((demo, format!("{}.{}/{sample_name}", resource.plural, resource.group), NAMESPACE.to_owned()))
}

/// Waits until the sample `<resource>/<name>` has a status (of its generation, where the
/// controller says which), and returns its tree.
pub async fn sample_tree(client: &Client, target: &str, namespace: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, object) = crate::tree::find(client, target, namespace).await?;
        // A CompositeController writes observedGeneration; a DecoratorController only the
        // hook's status.
        let status = &object.data["status"];
        let has_status = status.as_object().is_some_and(|status| !status.is_empty());
        if crate::tree::is_synced(&object) || (has_status && status.get("observedGeneration").is_none()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("{target} has no status of its generation after 60 s: see `bosun hook test` and its events");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(format!("\n{target}:\n{}", crate::tree::render(client, target, namespace).await?))
}
