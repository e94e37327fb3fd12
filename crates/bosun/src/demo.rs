//! The examples `bosun dev` brings up on its local control plane, so that the first command a
//! newcomer runs shows bosun working: the PodService CompositeController with its Python hook
//! and its admission hooks (an AdmissionController: `examples/podservice`) and the Ingress annotator DecoratorController with its Node hook
//! (`examples/ingress-annotator`), each hook a local process on a free loopback port; the
//! native FooBar controller (`examples/foobar`) in bosun's own process; and a sample PodService
//! and FooBar. An example whose interpreter is missing is skipped with a note.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bosun_engine::admission::api::AdmissionController;
use bosun_runtime::Manager;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client, CustomResourceExt};
use serde_json::json;

/// The samples' namespace.
const NAMESPACE: &str = "default";

/// An example as files compiled into bosun, so `bosun dev` runs from any directory.
struct Example {
    name: &'static str,
    interpreter: &'static str,
    hook_file: &'static str,
    hook: &'static str,
    controller: &'static str,
    /// The SDK the hook imports: the directory beside it where it looks, and the files.
    sdk: (&'static str, &'static [(&'static str, &'static str)]),
    /// Admission hooks in a second script of the same language, and their AdmissionController.
    admission: Option<AdmissionExample>,
}

struct AdmissionExample {
    hook_file: &'static str,
    hook: &'static str,
    manifest: &'static str,
    /// What its hooks do, to print.
    summary: &'static str,
}

const EXAMPLES: [Example; 2] = [
    Example {
        name: "podservice",
        interpreter: "python3",
        hook_file: "podservice-hook.py",
        hook: include_str!("../../../examples/podservice/hook.py"),
        controller: include_str!("../../../examples/podservice/controller.yaml"),
        sdk: ("bosun_hooks", crate::sdks::PYTHON),
        admission: Some(AdmissionExample {
            hook_file: "podservice-admission.py",
            hook: include_str!("../../../examples/podservice/admission.py"),
            manifest: include_str!("../../../examples/podservice/admission.yaml"),
            summary: "refuses an image without a tag, defaults a memory limit",
        }),
    },
    Example {
        name: "ingress-annotator",
        interpreter: "node",
        hook_file: "ingress-annotator-hook.js",
        hook: include_str!("../../../examples/ingress-annotator/hook.js"),
        controller: include_str!("../../../examples/ingress-annotator/decorator.yaml"),
        sdk: ("node_modules/bosun-hooks", crate::sdks::NODE),
        admission: None,
    },
];
const PODSERVICE_CRD: &str = include_str!("../../../examples/podservice/crd.yaml");
const PODSERVICE: &str = include_str!("../../../examples/podservice/podservice.yaml");
const FOOBAR: &str = include_str!("../../../examples/foobar/foobar.yaml");

/// The running examples; dropping it stops their hooks.
pub struct Demo {
    pub(crate) hooks: Vec<Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for hook in &mut self.hooks {
            let _ = hook.kill();
            let _ = hook.wait();
        }
    }
}

/// Waits until something accepts connections on `port`, or the hook exits.
pub(crate) async fn wait_listening(hook: &mut Child, port: u16, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Some(status) = hook.try_wait()? {
            bail!("the {name} hook exited with {status}");
        }
        if Instant::now() > deadline {
            bail!("the {name} hook did not listen on 127.0.0.1:{port} within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Points `controller`'s sync hook at 127.0.0.1:`port` and applies it; returns its kind and
/// name.
pub(crate) async fn apply_controller(client: &Client, mut controller: DynamicObject, port: u16) -> anyhow::Result<(String, String)> {
    controller.data["spec"]["hooks"]["sync"]["webhook"]["url"] = json!(format!("http://127.0.0.1:{port}/sync"));
    let kind = controller.types.as_ref().map(|types| types.kind.clone()).unwrap_or_default();
    let resource = match kind.as_str() {
        "CompositeController" => ApiResource::erase::<bosun_engine::api::CompositeController>(&()),
        "DecoratorController" => ApiResource::erase::<bosun_engine::api::DecoratorController>(&()),
        other => bail!("{other:?} is not a CompositeController or DecoratorController"),
    };
    let name = controller.metadata.name.clone().unwrap_or_default();
    Api::<DynamicObject>::all_with(client.clone(), &resource)
        .patch(&name, &PatchParams::apply("bosun-dev").force(), &Patch::Apply(&controller))
        .await?;
    Ok((kind, name))
}

/// Points each hook of the AdmissionController `admission` at 127.0.0.1:`port` (keeping its
/// path) and applies it; returns its name once bosun has wired it (its `Ready` condition), so
/// that what is applied next goes through its hooks.
pub(crate) async fn apply_admission(client: &Client, mut admission: DynamicObject, port: u16) -> anyhow::Result<String> {
    for hook in ["validate", "mutate", "convert"] {
        if let Some(url) = admission.data.pointer_mut(&format!("/spec/hooks/{hook}/webhook/url")) {
            let path = url.as_str().and_then(|url| url.splitn(4, '/').nth(3)).unwrap_or_default();
            *url = json!(format!("http://127.0.0.1:{port}/{path}"));
        }
    }
    let name = admission.metadata.name.clone().unwrap_or_default();
    let api: Api<AdmissionController> = Api::all(client.clone());
    let applied = api.patch(&name, &PatchParams::apply("bosun-dev").force(), &Patch::Apply(&admission)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current = api.get_status(&name).await?;
        let status = current.status.unwrap_or_default();
        let ready = status.conditions.iter().find(|condition| condition.type_ == "Ready");
        if status.observed_generation >= applied.metadata.generation && ready.is_some_and(|ready| ready.status == "True") {
            return Ok(name);
        }
        if Instant::now() > deadline {
            let why = ready.map(|ready| ready.message.as_str()).unwrap_or("no Ready condition");
            bail!("AdmissionController {name} is not Ready after 30 s: {why}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Installs the FooBar CRD and adds the FooBar example's native controller to `manager`.
pub async fn add_operators(manager: &mut Manager) -> anyhow::Result<()> {
    let context = manager.context();
    bosun_runtime::crds::install(&context.client, &[foobar::FooBar::crd()]).await.context("installing the FooBar CRD")?;
    let controller = manager.controller(foobar::NAME).workers(2);
    manager.add("foobar", move |shutdown| async move {
        foobar::run(context.client.clone(), &context.caches, controller, shutdown.requested()).await;
    });
    Ok(())
}

/// Starts the hooks (their scripts written to `dir`) and applies the examples' CRD,
/// controllers and samples.
pub async fn start(client: &Client, dir: &Path) -> anyhow::Result<Demo> {
    let mut demo = Demo { hooks: Vec::new() };
    let apply = PatchParams::apply("bosun-dev").force();
    let crd: CustomResourceDefinition = serde_yaml::from_str(PODSERVICE_CRD)?;
    bosun_runtime::crds::install(client, &[crd]).await.context("installing the PodService CRD")?;
    for example in &EXAMPLES {
        crate::sdks::write(&dir.join(example.sdk.0), example.sdk.1.iter().copied())?;
        let Some(port) = start_hook(&mut demo, example.interpreter, &dir.join(example.hook_file), example.hook, example.name).await? else {
            println!("skipping the {} example: {} is not installed", example.name, example.interpreter);
            continue;
        };
        let controller: DynamicObject = serde_yaml::from_str(example.controller)?;
        let (kind, name) =
            apply_controller(client, controller, port).await.with_context(|| format!("applying the {} controller", example.name))?;
        println!("{} example: {} hook on 127.0.0.1:{port}, {kind} {name}", example.name, example.interpreter);
        if let Some(admission) = &example.admission {
            let what = format!("{} admission", example.name);
            let script = dir.join(admission.hook_file);
            let port = start_hook(&mut demo, example.interpreter, &script, admission.hook, &what)
                .await?
                .with_context(|| format!("{} went missing", example.interpreter))?;
            let name = apply_admission(client, serde_yaml::from_str(admission.manifest)?, port)
                .await
                .with_context(|| format!("applying the {what} controller"))?;
            println!("{what}: {} hooks on 127.0.0.1:{port}, AdmissionController {name} ({})", example.interpreter, admission.summary);
        }
    }
    for sample in samples(false) {
        let object: DynamicObject = serde_yaml::from_str(sample.manifest)?;
        let name = object.metadata.name.clone().unwrap_or_default();
        Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &sample.resource)
            .patch(&name, &apply, &Patch::Apply(&object))
            .await
            .with_context(|| format!("applying the sample {}", sample.resource.kind))?;
    }
    Ok(demo)
}

/// Writes `hook` to `script` and starts it with `interpreter` on a free loopback port (kept in
/// `demo`); returns the port once it listens, or `None` when the interpreter is not installed.
async fn start_hook(demo: &mut Demo, interpreter: &str, script: &Path, hook: &str, name: &str) -> anyhow::Result<Option<u16>> {
    std::fs::write(script, hook).with_context(|| format!("writing {}", script.display()))?;
    let port = bosun_testenv::free_port();
    let mut process = match Command::new(interpreter).arg(script).arg(port.to_string()).stdout(Stdio::null()).spawn() {
        Ok(process) => process,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("starting {interpreter} {}", script.display())),
    };
    let listening = wait_listening(&mut process, port, name).await;
    demo.hooks.push(process);
    listening.map(|()| Some(port))
}

/// A sample object, and what its status reports once the sample has been synced.
struct Sample {
    manifest: &'static str,
    resource: ApiResource,
    awaited: &'static str,
    reported: fn(&serde_json::Value) -> bool,
}

/// The samples; `pods_run` when the control plane has nodes, so that the PodService's Pod
/// becomes Ready and the FooBar's Job completes before the sample counts as shown.
fn samples(pods_run: bool) -> [Sample; 2] {
    let podservices = ApiResource {
        group: "examples.bosun.dev".into(),
        version: "v1".into(),
        api_version: "examples.bosun.dev/v1".into(),
        kind: "PodService".into(),
        plural: "podservices".into(),
    };
    [
        Sample {
            manifest: PODSERVICE,
            resource: podservices,
            awaited: if pods_run { "its three children and a Ready Pod" } else { "its three children" },
            reported: if pods_run {
                |status| status["children"] == 3 && status["pod"]["ready"] == true
            } else {
                |status| status["children"] == 3
            },
        },
        Sample {
            manifest: FOOBAR,
            resource: ApiResource::erase::<foobar::FooBar>(&()),
            awaited: if pods_run { "its Job Succeeded" } else { "its Job" },
            reported: if pods_run { |status| status["phase"] == "Succeeded" } else { |status| status["job"].is_string() },
        },
    ]
}

/// Waits until each sample's status describes its generation (and the PodService's all three
/// children, the FooBar's Job; with `pods_run`, the Pod Ready and the Job Succeeded), then
/// returns their trees.
pub async fn sample_trees(client: &Client, pods_run: bool) -> anyhow::Result<String> {
    let mut trees = String::new();
    for Sample { manifest, resource, awaited, reported } in samples(pods_run) {
        let name = serde_yaml::from_str::<DynamicObject>(manifest)?.metadata.name.unwrap_or_default();
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &resource);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let object = api.get(&name).await?;
            if crate::tree::is_synced(&object) && reported(&object.data["status"]) {
                break;
            }
            if Instant::now() > deadline {
                bail!("{} {name} did not report {awaited} within 60 s (status: {})", resource.kind, object.data["status"]);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let target = format!("{}/{name}", resource.plural);
        trees += &format!("\n{target}:\n{}", crate::tree::render(client, &target, NAMESPACE).await?);
    }
    Ok(trees)
}
