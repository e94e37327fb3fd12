//! A project (`bosun.yaml`, as `bosun new` makes it) run by `bosun dev --project DIR`: its
//! hook built and started as a local process on the port its controller's URL names, its CRD
//! installed, its controller (and AdmissionController) applied pointing at the hook — or its native controller built and
//! run against the cluster — its sample applied, then the sample's tree once synced; then its
//! files watched, and the program rebuilt and restarted, or the CRD, controller or sample
//! applied again, when they change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

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
    /// An AdmissionController's file, whose hooks the same hook program serves (their URLs'
    /// host and port are replaced by the hook's).
    pub admission: Option<PathBuf>,
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

/// The annotation `bosun dev` sets on the sample when the project's program restarts, so
/// that the sample syncs with the new program at once rather than at the next resync.
const RELOADS_ANNOTATION: &str = "dev.bosun.dev/reloads";

/// How often the project's files are looked at, and how long after a change they are left to
/// settle (an editor saving several files, a formatter rewriting one).
const POLL: Duration = Duration::from_millis(500);
const SETTLE: Duration = Duration::from_millis(300);

/// A project running under `bosun dev --project`: its program, and what it last saw of its
/// files, to reload on a change.
pub struct Running {
    dir: PathBuf,
    kubeconfig: PathBuf,
    /// `None` while a restart has failed, until the next change.
    program: Option<crate::demo::Demo>,
    /// The sample's `<resource>/<name>`, and its namespace, for its tree.
    pub target: String,
    pub namespace: String,
    files: Files,
    reloads: u32,
}

/// What was done to start or reload a project, to print.
struct Started {
    program: crate::demo::Demo,
    summary: String,
}

/// Builds and starts the project in `dir` on the cluster of `client` (whose kubeconfig is at
/// `kubeconfig`): its program running, its CRD, controller and sample applied.
pub async fn start(client: &Client, dir: &Path, kubeconfig: &Path) -> anyhow::Result<Running> {
    let mut running = Running {
        dir: dir.to_owned(),
        kubeconfig: kubeconfig.to_owned(),
        program: None,
        target: String::new(),
        namespace: NAMESPACE.to_owned(),
        files: Files::default(),
        reloads: 0,
    };
    let started = running.start_program(client).await?;
    println!("project {}: {}", dir.display(), started.summary);
    running.program = Some(started.program);
    running.target = running.apply_sample(client).await?;
    running.files = Files::scan(dir);
    Ok(running)
}

impl Running {
    /// The project's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Watches the project's files and reloads what changed, printing what was restarted or
    /// applied and then the sample's tree; runs until dropped (which stops the program).
    pub async fn watch(&mut self, client: &Client) {
        loop {
            tokio::time::sleep(POLL).await;
            if Files::scan(&self.dir).changed_since(&self.files).is_empty() {
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            let now = Files::scan(&self.dir);
            let changed = now.changed_since(&self.files);
            let names: Vec<String> = changed.iter().map(|path| path.display().to_string()).collect();
            println!("project {}: {} changed", self.dir.display(), names.join(", "));
            let before = crate::tree::render(client, &self.target, &self.namespace).await.ok();
            let reloaded = self.reload(client, &changed).await;
            // After the build, so that what it writes is not taken for an edit.
            self.files = Files::scan(&self.dir);
            match reloaded {
                Ok(summary) => {
                    println!("project {}: {summary}", self.dir.display());
                    if let Some(tree) = self.settled_tree(client, before).await {
                        println!("\n{}:\n{tree}", self.target);
                    }
                }
                Err(error) => println!("project {}: {error:#}; fix it and save again", self.dir.display()),
            }
        }
    }

    /// Restarts the program when anything but the CRD, controller, AdmissionController or sample
    /// file changed (`bosun.yaml` included), applying them all again; otherwise applies those
    /// that changed.
    async fn reload(&mut self, client: &Client, changed: &[PathBuf]) -> anyhow::Result<String> {
        let project = Project::load(&self.dir)?;
        let manifests = [Some(&project.crd), project.controller.as_ref(), project.admission.as_ref(), Some(&project.sample)];
        let is_manifest = |path: &PathBuf| manifests.contains(&Some(path));
        if changed.iter().any(|path| !is_manifest(path)) || self.program.is_none() {
            // The old program goes first: the new one takes its port.
            self.program = None;
            let started = self.start_program(client).await?;
            self.program = Some(started.program);
            self.reloads += 1;
            self.apply_sample(client).await?;
            return Ok(format!("restarted: {}; the sample applied", started.summary));
        }
        let mut applied = Vec::new();
        if changed.contains(&project.crd) {
            install_crd(client, &self.dir, &project).await?;
            applied.push("the CRD");
        }
        if let Some(file) = project.controller.as_ref().filter(|file| changed.contains(file)) {
            let (controller, port) = hook_controller(&self.dir, file)?;
            crate::demo::apply_controller(client, controller, port).await.context("applying the controller")?;
            applied.push("the controller");
        }
        if let (Some(file), Some(controller)) = (project.admission.as_ref().filter(|file| changed.contains(file)), &project.controller) {
            let (_, port) = hook_controller(&self.dir, controller)?;
            crate::demo::apply_admission(client, read(&self.dir, file)?, port).await.context("applying the AdmissionController")?;
            applied.push("the AdmissionController");
        }
        if changed.contains(&project.sample) {
            self.apply_sample(client).await?;
            applied.push("the sample");
        }
        Ok(format!("applied {}", applied.join(", ")))
    }

    /// Builds the project's program, installs its CRD, starts the program and, for a hook,
    /// applies its controller.
    async fn start_program(&self, client: &Client) -> anyhow::Result<Started> {
        let dir = &self.dir;
        let project = Project::load(dir)?;
        let (commands, native) = match (&project.hook, &project.native, &project.controller) {
            (Some(hook), None, Some(_)) => (hook, false),
            (None, Some(native), None) => (native, true),
            _ => bail!("{}/bosun.yaml: give `hook` and `controller`, or `native`", dir.display()),
        };
        for step in &commands.build {
            let Some((program, args)) = step.split_first() else { continue };
            println!("building: {}", step.join(" "));
            // Killed if bosun dev stops meanwhile.
            let status = tokio::process::Command::new(program)
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .with_context(|| format!("running {program} in {}", dir.display()))?;
            if !status.success() {
                bail!("building: `{}` in {} exited with {status}", step.join(" "), dir.display());
            }
        }
        install_crd(client, dir, &project).await?;
        let Some((program, args)) = commands.run.split_first() else { bail!("{}/bosun.yaml: `run` is empty", dir.display()) };
        let mut command = Command::new(program);
        command.args(args).current_dir(dir).stdout(Stdio::null());
        let run = commands.run.join(" ");
        if native {
            command.env("KUBECONFIG", &self.kubeconfig);
            let process = command.spawn().with_context(|| format!("starting {run}"))?;
            let summary = format!("`{run}` running against the local cluster");
            return Ok(Started { program: crate::demo::Demo { hooks: vec![process] }, summary });
        }
        let file = project.controller.as_deref().unwrap_or(Path::new("controller.yaml"));
        let (controller, port) = hook_controller(dir, file)?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!("port {port}, where {} expects the hook, is taken: stop what uses it, or change the port in its url", file.display());
        }
        let mut hook = command.arg(port.to_string()).spawn().with_context(|| format!("starting the hook: {run}"))?;
        let listening = crate::demo::wait_listening(&mut hook, port, "project's").await;
        let program = crate::demo::Demo { hooks: vec![hook] };
        listening?;
        let (kind, name) = crate::demo::apply_controller(client, controller, port).await.context("applying the controller")?;
        let mut summary = format!("hook `{run}` on 127.0.0.1:{port}, {kind} {name}");
        if let Some(file) = &project.admission {
            let name = crate::demo::apply_admission(client, read(dir, file)?, port).await.context("applying the AdmissionController")?;
            summary += &format!(", AdmissionController {name}");
        }
        Ok(Started { program, summary })
    }

    /// Applies the sample (marked with the number of restarts, if any); returns its
    /// `<resource>/<name>`.
    async fn apply_sample(&self, client: &Client) -> anyhow::Result<String> {
        let project = Project::load(&self.dir)?;
        let crd: CustomResourceDefinition = read(&self.dir, &project.crd)?;
        let mut sample: DynamicObject = read(&self.dir, &project.sample)?;
        if self.reloads > 0 {
            sample.annotations_mut().insert(RELOADS_ANNOTATION.to_owned(), self.reloads.to_string());
        }
        let version = crd.spec.versions.first().map(|version| version.name.clone()).unwrap_or_default();
        let resource = kube::api::ApiResource {
            group: crd.spec.group.clone(),
            version: version.clone(),
            api_version: format!("{}/{version}", crd.spec.group),
            kind: crd.spec.names.kind.clone(),
            plural: crd.spec.names.plural.clone(),
        };
        let api: Api<DynamicObject> = if crd.spec.scope == "Namespaced" {
            Api::namespaced_with(client.clone(), NAMESPACE, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        let name = sample.name_any();
        api.patch(&name, &PatchParams::apply("bosun-dev").force(), &Patch::Apply(&sample)).await.context("applying the sample")?;
        Ok(format!("{}.{}/{name}", resource.plural, resource.group))
    }

    /// The sample's tree once it differs from `before` (the sync after a reload), or as it is
    /// after a few seconds. Edits meanwhile are seen at the next look.
    async fn settled_tree(&self, client: &Client, before: Option<String>) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let tree = crate::tree::render(client, &self.target, &self.namespace).await.ok();
            if tree != before || Instant::now() > deadline {
                return tree;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Installs the project's CRD.
async fn install_crd(client: &Client, dir: &Path, project: &Project) -> anyhow::Result<()> {
    let crd: CustomResourceDefinition = read(dir, &project.crd)?;
    bosun_runtime::crds::install(client, std::slice::from_ref(&crd)).await.with_context(|| format!("installing the CRD {}", crd.name_any()))
}

/// A hook project's controller, and the port its sync hook's URL names: the hook listens
/// there, so that `bosun hook test` reaches it as it is.
fn hook_controller(dir: &Path, file: &Path) -> anyhow::Result<(DynamicObject, u16)> {
    let controller: DynamicObject = read(dir, file)?;
    let url = controller.data["spec"]["hooks"]["sync"]["webhook"]["url"].as_str().unwrap_or_default().to_owned();
    let port = url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse::<u16>().ok())
        .with_context(|| format!("{}: the sync hook's url {url:?} names no port", file.display()))?;
    Ok((controller, port))
}

/// The project's files (relative paths) with their modification time and size — not those of
/// dependencies, builds' caches, recorded exchanges or hidden files (an editor's swap files).
#[derive(Debug, Default, PartialEq)]
struct Files(BTreeMap<PathBuf, (Option<SystemTime>, u64)>);

impl Files {
    /// Directories that change without the user editing the project.
    const SKIPPED: [&str; 4] = ["node_modules", "target", "__pycache__", "vectors"];

    fn scan(dir: &Path) -> Files {
        let mut files = BTreeMap::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(dir.join(&relative)) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name.ends_with('~') || Self::SKIPPED.contains(&name.as_str()) {
                    continue;
                }
                let Ok(metadata) = entry.metadata() else { continue };
                if metadata.is_dir() {
                    pending.push(relative.join(&name));
                } else {
                    files.insert(relative.join(&name), (metadata.modified().ok(), metadata.len()));
                }
            }
        }
        Files(files)
    }

    /// The files added, changed or removed since `before`.
    fn changed_since(&self, before: &Files) -> Vec<PathBuf> {
        let paths: BTreeSet<&PathBuf> = self.0.keys().chain(before.0.keys()).collect();
        paths.into_iter().filter(|path| self.0.get(*path) != before.0.get(*path)).cloned().collect()
    }
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
