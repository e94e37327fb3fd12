//! The engine's fan-out: N parents of a test CRD and a CompositeController whose loopback hook
//! returns three children per parent (ConfigMap, headless Service, Secret). Phases:
//!
//! - **fan-out**: the parents exist; the CompositeController is created; until every child
//!   exists and every parent's status reports its generation;
//! - **steady state**: a full resync of every parent (the CompositeController's
//!   `resyncPeriodSeconds` changes, so its hosted controller restarts and queues them all):
//!   hook calls, writes (should be none), time;
//! - **update wave**: every parent's spec changes; until every child and status carries it;
//! - **raw limit**: with the engine stopped, a plain client makes the same writes for other
//!   parents — per parent three creates and a status write, then a spec patch, three updates
//!   and a status write — with the engine's concurrency (`--workers`), and the same kind of
//!   write as the strategy: POST and PUT for dynamic-apply, server-side apply patches for
//!   server-side-apply (which cost the API server more).
//!
//! Writes are counted by the API server (`apiserver_request_total`), hook calls by the hook.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::engine::EngineProcess;
use crate::observe::Observer;
use crate::report::Report;
use crate::requests::{apiserver_writes, concurrently, difference, total_difference};

/// The label on every child, the engine's and the raw client's (`engine` or `raw`).
const CHILD_LABEL: &str = "bench.bosun.dev/child";
/// The resources whose writes are counted.
const COUNTED: [&str; 4] = ["configmaps", "services", "secrets", "benchparents"];

/// What to run.
pub struct Options {
    /// Parents.
    pub parents: usize,
    /// `dynamic-apply` or `server-side-apply`.
    pub strategy: String,
    /// The engine's `--workers`, and the raw client's concurrency.
    pub workers: usize,
    /// Runs this instead of bosun (placeholders `{kubeconfig}`, `{metrics_address}`,
    /// `{health_address}`, `{apply_strategy}`, `{workers}`).
    pub engine_command: Option<String>,
}

pub(crate) fn parent_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("bench.bosun.dev", "v1", "BenchParent"), "benchparents")
}

pub(crate) async fn install_parent_crd(client: &Client) -> anyhow::Result<()> {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": "benchparents.bench.bosun.dev" },
        "spec": {
            "group": "bench.bosun.dev",
            "scope": "Namespaced",
            "names": { "plural": "benchparents", "singular": "benchparent", "kind": "BenchParent" },
            "versions": [{
                "name": "v1", "served": true, "storage": true, "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                    "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                }}},
            }],
        },
    }))?;
    bosun_engine::install_crds(client).await?;
    bosun_runtime::crds::install(client, &[crd]).await?;
    Ok(())
}

/// The three children of parent `name` at `version`, labelled `child` (`engine` or `raw`).
fn children(name: &str, version: &str, child: &str) -> [Value; 3] {
    let labels = json!({ CHILD_LABEL: child });
    [
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "labels": labels }, "data": { "version": version } }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "labels": labels, "annotations": { "bench.bosun.dev/version": version } },
            "spec": { "clusterIP": "None", "selector": { "app": name }, "ports": [{ "port": 80 }] },
        }),
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name, "labels": labels },
            "data": { "version": base64::engine::general_purpose::STANDARD.encode(version) },
        }),
    ]
}

/// The fan-out's response: three children per parent, status carrying the parent's version.
pub(crate) fn three_children(request: &Value) -> Value {
    let parent = &request["parent"];
    let name = parent["metadata"]["name"].as_str().unwrap_or_default();
    let version = parent["spec"]["version"].as_str().unwrap_or_default();
    json!({ "status": { "version": version }, "children": children(name, version, "engine") })
}

/// A loopback sync hook answering `respond(request)`, counting its calls in `calls`; returns
/// its URL.
pub(crate) async fn start_hook(
    calls: Arc<AtomicUsize>,
    respond: fn(&Value) -> Value,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new().route(
        "/sync",
        axum::routing::post(move |axum::Json(request): axum::Json<Value>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::Relaxed);
                axum::Json(respond(&request))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/sync", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

fn observed_version(object: &DynamicObject) -> Option<String> {
    let pointer = |path: &str| object.data.pointer(path).and_then(Value::as_str).map(str::to_owned);
    match object.types.as_ref().map(|types| types.kind.as_str()) {
        Some("ConfigMap") => pointer("/data/version"),
        Some("Secret") => pointer("/data/version")
            .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        Some("Service") => object.metadata.annotations.as_ref()?.get("bench.bosun.dev/version").cloned(),
        _ => {
            // A parent: converged when its status reports its generation and version.
            let observed = object.data.pointer("/status/observedGeneration").and_then(Value::as_i64);
            (observed.is_some() && observed == object.metadata.generation).then(|| pointer("/status/version")).flatten()
        }
    }
}

/// Watches the children labelled `child` and the parents in `namespace`.
pub(crate) struct Convergence {
    observers: Vec<Observer>,
}

impl Convergence {
    pub(crate) async fn start(client: &Client, child: &str, namespace: &str) -> Convergence {
        let selector = format!("{CHILD_LABEL}={child}");
        let mut observers = Vec::new();
        for resource in [
            ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
            ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
            ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        ] {
            observers.push(Observer::start(client.clone(), &resource, &selector, observed_version).await);
        }
        observers.push(
            Observer::start(client.clone(), &parent_resource(), &format!("bench.bosun.dev/namespace={namespace}"), observed_version).await,
        );
        Convergence { observers }
    }

    /// Waits until every child and parent carries `version`; returns when.
    pub(crate) async fn until(&self, version: &str, parents: usize) -> Instant {
        let mut last = Instant::now();
        for observer in &self.observers {
            last = last.max(observer.until(version, parents).await);
        }
        last
    }

    /// Seconds after `started` at which each parent converged on `version` (the parent
    /// observer's arrivals): a convergence curve.
    pub(crate) fn curve(&self, version: &str, started: Instant) -> Vec<f64> {
        let arrivals = self.observers.last().map(|observer| observer.arrivals(version)).unwrap_or_default();
        arrivals.iter().map(|at| at.saturating_duration_since(started).as_secs_f64()).collect()
    }
}

/// Applies the benchmark's CompositeController (three children per parent from the hook at
/// `hook_url`, updated in place); returns when, the start of its fan-out.
pub(crate) async fn apply_controller(client: &Client, hook_url: &str) -> anyhow::Result<Instant> {
    let controllers: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()));
    let child_rules: Vec<Value> = ["configmaps", "services", "secrets"]
        .iter()
        .map(|resource| json!({ "apiVersion": "v1", "resource": resource, "updateStrategy": { "method": "InPlace" } }))
        .collect();
    let controller = json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
        "metadata": { "name": "bench" },
        "spec": {
            "generateSelector": true,
            "parentResource": { "apiVersion": "bench.bosun.dev/v1", "resource": "benchparents" },
            "childResources": child_rules,
            "hooks": { "sync": { "webhook": { "url": hook_url } } },
        },
    });
    let started = Instant::now();
    controllers.patch("bench", &PatchParams::apply("bench"), &Patch::Apply(&controller)).await?;
    Ok(started)
}

pub(crate) async fn create_parents(client: &Client, namespace: &str, count: usize) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &parent_resource());
    concurrently((0..count).collect(), 32, |index| {
        let api = api.clone();
        let mut parent = DynamicObject::new(&format!("p-{index:05}"), &parent_resource()).data(json!({ "spec": { "version": "1" } }));
        parent.metadata.labels = Some([("bench.bosun.dev/namespace".to_owned(), namespace.to_owned())].into());
        async move {
            api.create(&PostParams::default(), &parent).await?;
            Ok(())
        }
    })
    .await
}

pub(crate) async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespace: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await?;
    Ok(())
}

/// The figures of one run, for the report and the plot.
pub struct Run {
    pub report: Report,
    /// Seconds after the start at which each parent converged: engine fan-out, raw fan-out.
    pub curves: Vec<(String, Vec<f64>)>,
}

pub async fn run(client: &Client, kubeconfig: &Path, bosun: &Path, options: &Options) -> anyhow::Result<Run> {
    let n = options.parents;
    let engine_name = if options.engine_command.is_some() { "engine" } else { "bosun" };
    let mut report = Report::new(format!(
        "Engine fan-out: {n} parents × 3 children, {}, --workers {} ({engine_name})",
        options.strategy, options.workers
    ));
    install_parent_crd(client).await?;
    namespace(client, "bench").await?;
    namespace(client, "bench-raw").await?;
    let calls = Arc::new(AtomicUsize::new(0));
    let (hook_url, _hook) = start_hook(calls.clone(), three_children).await?;

    eprintln!("creating {n} parents …");
    create_parents(client, "bench", n).await?;
    eprintln!("starting the engine …");
    let args =
        [format!("--apply-strategy={}", options.strategy), format!("--workers={}", options.workers), "--configmapsync=false".to_owned()];
    let engine = match &options.engine_command {
        Some(command) => EngineProcess::start_command(command, kubeconfig, &options.strategy, options.workers).await?,
        None => EngineProcess::start(bosun, kubeconfig, &args).await?,
    };
    let cpu_start = engine.cpu_seconds();
    let convergence = Convergence::start(client, "engine", "bench").await;

    // Fan-out.
    let before = apiserver_writes(client, &COUNTED).await?;
    let started = apply_controller(client, &hook_url).await?;
    let fan_out = convergence.until("1", n).await - started;
    let engine_curve = convergence.curve("1", started);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fan_out_writes = difference(&apiserver_writes(client, &COUNTED).await?, &before);
    eprintln!("fan-out: {:.2} s", fan_out.as_secs_f64());

    // Steady state: a full resync, once the syncs that the fan-out's own events bring are over.
    let mut settled = calls.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = calls.load(Ordering::Relaxed);
        if now == settled {
            break;
        }
        settled = now;
    }
    let before = apiserver_writes(client, &COUNTED).await?;
    let calls_before = calls.load(Ordering::Relaxed);
    let resync = json!({ "spec": { "resyncPeriodSeconds": 3600 } });
    let started = Instant::now();
    let controllers: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()));
    controllers.patch("bench", &PatchParams::default(), &Patch::Merge(&resync)).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while calls.load(Ordering::Relaxed) < calls_before + n {
        anyhow::ensure!(Instant::now() < deadline, "the resync did not call the hook for every parent within 10 min");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resync_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let steady_writes = total_difference(&apiserver_writes(client, &COUNTED).await?, &before);
    let steady_calls = calls.load(Ordering::Relaxed) - calls_before;
    eprintln!("steady state: {steady_writes} writes, {steady_calls} hook calls");

    // Update wave.
    let before = apiserver_writes(client, &COUNTED).await?;
    let parents: Api<DynamicObject> = Api::namespaced_with(client.clone(), "bench", &parent_resource());
    let started = Instant::now();
    concurrently((0..n).collect(), 32, |index| {
        let parents = parents.clone();
        async move {
            let patch = json!({ "spec": { "version": "2" } });
            parents.patch(&format!("p-{index:05}"), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            Ok(())
        }
    })
    .await?;
    let update = convergence.until("2", n).await - started;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let update_writes = difference(&apiserver_writes(client, &COUNTED).await?, &before);
    let cpu = engine.cpu_seconds() - cpu_start;
    let peak = engine.peak_rss_mib();
    eprintln!("update wave: {:.2} s", update.as_secs_f64());
    drop(engine);
    drop(convergence);

    // The raw limit, with the engine stopped.
    eprintln!("raw client …");
    create_parents(client, "bench-raw", n).await?;
    let raw = Convergence::start(client, "raw", "bench-raw").await;
    let raw_parents: Api<DynamicObject> = Api::namespaced_with(client.clone(), "bench-raw", &parent_resource());
    let versions = ResourceVersions::default();
    let started = Instant::now();
    let apply = options.strategy == "server-side-apply";
    concurrently((0..n).collect(), options.workers, |index| raw_sync(client, &raw_parents, &versions, index, "1", apply)).await?;
    let raw_fan_out = raw.until("1", n).await - started;
    let raw_curve = raw.curve("1", started);
    let started = Instant::now();
    concurrently((0..n).collect(), options.workers, |index| raw_sync(client, &raw_parents, &versions, index, "2", apply)).await?;
    let raw_update = raw.until("2", n).await - started;

    let ratio = |measured: Duration, limit: Duration| measured.as_secs_f64() / limit.as_secs_f64();
    report.figure("fan-out: CompositeController created → all children and statuses", format!("{:.2} s", fan_out.as_secs_f64()));
    report.figure("raw limit: the same creates and status writes, plain client", format!("{:.2} s", raw_fan_out.as_secs_f64()));
    report.figure("fan-out ÷ raw limit (target ≤ 1.5)", format!("{:.2}", ratio(fan_out, raw_fan_out)));
    report.figure("fan-out writes (API server)", fan_out_writes);
    report.figure("steady state: full resync → writes (target 0)", steady_writes.to_string());
    report.figure("steady state: hook calls per parent (target ≤ 1)", format!("{:.2}", steady_calls as f64 / n as f64));
    report.figure("steady state: resync of every parent took", format!("{:.2} s", resync_time.as_secs_f64()));
    report.figure("update wave: specs changed → all children and statuses", format!("{:.2} s", update.as_secs_f64()));
    report.figure("raw limit: the same patches, updates and status writes", format!("{:.2} s", raw_update.as_secs_f64()));
    report.figure("update wave ÷ raw limit (target ≤ 1.5)", format!("{:.2}", ratio(update, raw_update)));
    report.figure("update writes (API server, incl. the benchmark's parent patches)", update_writes);
    report.figure(&format!("{engine_name} peak RSS ({} objects watched)", 4 * n), format!("{peak:.1} MiB"));
    report.figure(&format!("{engine_name} CPU over all phases"), format!("{cpu:.2} s"));
    Ok(Run { report, curves: vec![(format!("{engine_name} fan-out"), engine_curve), ("raw limit".into(), raw_curve)] })
}

/// The resourceVersions the raw client's writes returned, by parent name: it updates without
/// reading first, as the engine does from its cache.
type ResourceVersions = std::sync::Mutex<std::collections::HashMap<String, Vec<Option<String>>>>;

/// What the engine does for one parent, done by hand, writes only: its three children created
/// (or, for a later version, the parent's spec patched and the children replaced) — or, with
/// `apply`, applied server-side — then its status written.
async fn raw_sync(
    client: &Client,
    parents: &Api<DynamicObject>,
    versions: &ResourceVersions,
    index: usize,
    version: &str,
    apply: bool,
) -> anyhow::Result<()> {
    let name = format!("p-{index:05}");
    let known = versions.lock().unwrap().get(&name).cloned();
    let mut generation = 1;
    if known.is_some() {
        let patch = json!({ "spec": { "version": version } });
        let patched = parents.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        generation = patched.metadata.generation.unwrap_or(generation);
    }
    let mut written = Vec::new();
    for (position, child) in children(&name, version, "raw").into_iter().enumerate() {
        let kind = child["kind"].as_str().unwrap_or_default().to_owned();
        let resource = match kind.as_str() {
            "ConfigMap" => ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
            "Service" => ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
            _ => ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "bench-raw", &resource);
        if apply {
            let params = PatchParams::apply("raw").force();
            let result = api.patch(&name, &params, &Patch::Apply(&child)).await.with_context(|| format!("applying {kind} {name}"))?;
            written.push(result.metadata.resource_version);
            continue;
        }
        let mut object: DynamicObject = serde_json::from_value(child)?;
        let result = match &known {
            Some(known) => {
                object.metadata.resource_version = known[position].clone();
                api.replace(&name, &PostParams::default(), &object).await.with_context(|| format!("updating {kind} {name}"))?
            }
            None => api.create(&PostParams::default(), &object).await.with_context(|| format!("creating {kind} {name}"))?,
        };
        written.push(result.metadata.resource_version);
    }
    versions.lock().unwrap().insert(name.clone(), written);
    let status = json!({ "status": { "version": version, "observedGeneration": generation } });
    parents.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}
