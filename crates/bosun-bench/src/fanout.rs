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
use crate::plot::{Chart, Style};
use crate::report::Report;
use crate::requests::{apiserver_writes, concurrently, difference, total_difference};

/// The label on every child, the engine's and the raw client's (`engine` or `raw`).
const CHILD_LABEL: &str = "bench.bosun.dev/child";
/// The resources whose writes are counted.
pub(crate) const COUNTED: [&str; 4] = ["configmaps", "services", "secrets", "benchparents"];

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
    /// What the engine is called in the report (`bosun`, or the other engine's name).
    pub engine_name: String,
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

/// Sets the benchmark's CompositeController's `resyncPeriodSeconds`: its hosted controller
/// restarts and syncs every parent, then again every `seconds`.
pub(crate) async fn set_resync_period(client: &Client, seconds: u32) -> anyhow::Result<()> {
    let controllers: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()));
    let resync = json!({ "spec": { "resyncPeriodSeconds": seconds } });
    controllers.patch("bench", &PatchParams::default(), &Patch::Merge(&resync)).await?;
    Ok(())
}

/// The world of an engine scenario: the parent CRD, the namespace `bench` with `parents`
/// parents, and a loopback hook returning three children per parent.
pub(crate) struct Bench {
    /// The hook's calls so far.
    pub calls: Arc<AtomicUsize>,
    pub hook_url: String,
    _hook: tokio::task::JoinHandle<()>,
}

impl Bench {
    pub(crate) async fn set_up(client: &Client, parents: usize) -> anyhow::Result<Bench> {
        install_parent_crd(client).await?;
        namespace(client, "bench").await?;
        let calls = Arc::new(AtomicUsize::new(0));
        let (hook_url, hook) = start_hook(calls.clone(), three_children).await?;
        eprintln!("creating {parents} parents …");
        create_parents(client, "bench", parents).await?;
        Ok(Bench { calls, hook_url, _hook: hook })
    }
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

/// What one run measured.
pub struct Figures {
    /// The engine's name.
    pub engine: String,
    pub parents: usize,
    pub strategy: String,
    pub workers: usize,
    /// Seconds.
    pub fan_out: f64,
    pub raw_fan_out: f64,
    pub fan_out_writes: String,
    pub steady_writes: u64,
    pub steady_calls_per_parent: f64,
    /// Seconds.
    pub resync: f64,
    pub update: f64,
    pub raw_update: f64,
    pub update_writes: String,
    /// MiB.
    pub peak_rss: f64,
    /// Seconds of CPU, user and system, over every phase.
    pub cpu: f64,
    /// Seconds after the start at which each parent converged: the engine's fan-out, and the
    /// raw client's.
    pub curve: Vec<f64>,
    pub raw_curve: Vec<f64>,
}

/// One row of a report: the figure, its value as shown, and its number for a ratio between
/// engines (none for counts of writes, and for figures that are ratios already).
type Row = (String, String, Option<f64>);

impl Figures {
    fn rows(&self) -> Vec<Row> {
        let seconds = |value: f64| (format!("{value:.2} s"), Some(value));
        let plain = |text: String| (text, None);
        let rows = [
            ("fan-out: CompositeController created → all children and statuses".to_owned(), seconds(self.fan_out)),
            ("raw limit: the same creates and status writes, plain client".into(), seconds(self.raw_fan_out)),
            ("fan-out ÷ raw limit (target ≤ 1.5)".into(), plain(format!("{:.2}", self.fan_out / self.raw_fan_out))),
            ("fan-out writes (API server)".into(), plain(self.fan_out_writes.clone())),
            ("steady state: full resync → writes (target 0)".into(), plain(self.steady_writes.to_string())),
            (
                "steady state: hook calls per parent (target ≤ 1)".into(),
                (format!("{:.2}", self.steady_calls_per_parent), Some(self.steady_calls_per_parent)),
            ),
            ("steady state: resync of every parent took".into(), seconds(self.resync)),
            ("update wave: specs changed → all children and statuses".into(), seconds(self.update)),
            ("raw limit: the same patches, updates and status writes".into(), seconds(self.raw_update)),
            ("update wave ÷ raw limit (target ≤ 1.5)".into(), plain(format!("{:.2}", self.update / self.raw_update))),
            ("update writes (API server, incl. the benchmark's parent patches)".into(), plain(self.update_writes.clone())),
            (format!("peak RSS ({} objects watched)", 4 * self.parents), (format!("{:.1} MiB", self.peak_rss), Some(self.peak_rss))),
            ("CPU over all phases".into(), (format!("{:.2} s", self.cpu), Some(self.cpu))),
        ];
        rows.into_iter().map(|(name, (value, number))| (name, value, number)).collect()
    }

    fn title(&self, engines: &str) -> String {
        format!("Engine fan-out: {} parents × 3 children, {}, --workers {} ({engines})", self.parents, self.strategy, self.workers)
    }

    /// The report of this run alone.
    pub fn report(&self) -> Report {
        let mut report = Report::new(self.title(&self.engine));
        for (name, value, _) in self.rows() {
            report.figure(&name, value);
        }
        report
    }

    /// One table of two runs on the same N, side by side, with the ratios (`self` ÷ `other`).
    pub fn compared(&self, other: &Figures) -> Report {
        let ratio = format!("{} ÷ {}", self.engine, other.engine);
        let mut report = Report::with_columns(
            self.title(&format!("{} and {}", self.engine, other.engine)),
            &["figure", &self.engine, &other.engine, &ratio],
        );
        for ((name, mine, a), (_, theirs, b)) in self.rows().into_iter().zip(other.rows()) {
            let ratio = match (a, b) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "—".into(),
            };
            report.row(vec![name, mine, theirs, ratio]);
        }
        report
    }

    /// The convergence chart of `runs` (one per engine) and the first run's raw limit.
    pub fn chart(runs: &[Figures]) -> Chart {
        let first = &runs[0];
        let title = format!("Engine fan-out: {} parents × 3 children, {}", first.parents, first.strategy);
        let mut curves: Vec<(String, Vec<f64>)> = runs.iter().map(|run| (format!("{} fan-out", run.engine), run.curve.clone())).collect();
        curves.push(("raw limit (plain client, same writes)".into(), first.raw_curve.clone()));
        Chart::convergence(title, &curves)
    }
}

/// How the figures grow with N, from runs of one strategy at several N (and perhaps two
/// engines): a table, and charts of fan-out ÷ raw limit, peak RSS and CPU against N, each with
/// a line growing in proportion to N from the smallest N (for the first engine) to compare with.
pub fn growth(runs: &[Figures], docs: &std::path::Path) -> Report {
    let strategy = runs.first().map(|run| run.strategy.clone()).unwrap_or_default();
    let sizes: Vec<String> =
        runs.iter().map(|run| run.parents).collect::<std::collections::BTreeSet<_>>().into_iter().map(|n| n.to_string()).collect();
    let mut report = Report::with_columns(
        format!("Engine growth: {} parents, {strategy}", sizes.join(", ")),
        &["parents", "engine", "fan-out ÷ raw limit", "peak RSS", "CPU over all phases", "RSS per 1,000 parents", "CPU per 1,000 parents"],
    );
    let mut engines: Vec<String> = Vec::new();
    for run in runs {
        if !engines.contains(&run.engine) {
            engines.push(run.engine.clone());
        }
        let thousands = run.parents as f64 / 1000.0;
        report.row(vec![
            run.parents.to_string(),
            run.engine.clone(),
            format!("{:.2}", run.fan_out / run.raw_fan_out),
            format!("{:.1} MiB", run.peak_rss),
            format!("{:.2} s", run.cpu),
            format!("{:.1} MiB", run.peak_rss / thousands),
            format!("{:.2} s", run.cpu / thousands),
        ]);
    }
    // (file name, title, y axis, the figure, whether to draw the proportional line)
    type Growth = (&'static str, &'static str, &'static str, fn(&Figures) -> f64, bool);
    let charts: [Growth; 3] = [
        ("fan-out-ratio", "Fan-out ÷ raw limit against parents", "fan-out ÷ raw limit", |run| run.fan_out / run.raw_fan_out, false),
        ("rss", "Peak RSS against parents", "peak RSS (MiB)", |run| run.peak_rss, true),
        ("cpu", "CPU over all phases against parents", "CPU (s)", |run| run.cpu, true),
    ];
    for (name, title, y_label, value, proportional) in charts {
        let mut chart = Chart::new(format!("{title} ({strategy})"), "parents", y_label);
        for engine in &engines {
            let mut points: Vec<(f64, f64)> =
                runs.iter().filter(|run| &run.engine == engine).map(|run| (run.parents as f64, value(run))).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart = chart.line(engine.clone(), points, Style::Line);
        }
        if proportional {
            let mut first: Vec<&Figures> = runs.iter().filter(|run| Some(&run.engine) == engines.first()).collect();
            first.sort_by_key(|run| run.parents);
            if let (Some(smallest), Some(largest)) = (first.first(), first.last()) {
                let per_parent = value(smallest) / smallest.parents as f64;
                let line = vec![(smallest.parents as f64, value(smallest)), (largest.parents as f64, per_parent * largest.parents as f64)];
                chart = chart.line(format!("{} × N ÷ {} (proportional to N)", smallest.engine, smallest.parents), line, Style::Reference);
            }
        }
        report.plot(docs, &format!("growth-{strategy}-{name}"), &chart);
    }
    report
}

pub async fn run(client: &Client, kubeconfig: &Path, bosun: &Path, options: &Options) -> anyhow::Result<Figures> {
    let n = options.parents;
    eprintln!("{}: {n} parents, {} …", options.engine_name, options.strategy);
    let Bench { calls, hook_url, _hook } = Bench::set_up(client, n).await?;
    namespace(client, "bench-raw").await?;
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
    let started = Instant::now();
    set_resync_period(client, 3600).await?;
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

    Ok(Figures {
        engine: options.engine_name.clone(),
        parents: n,
        strategy: options.strategy.clone(),
        workers: options.workers,
        fan_out: fan_out.as_secs_f64(),
        raw_fan_out: raw_fan_out.as_secs_f64(),
        fan_out_writes,
        steady_writes,
        steady_calls_per_parent: steady_calls as f64 / n as f64,
        resync: resync_time.as_secs_f64(),
        update: update.as_secs_f64(),
        raw_update: raw_update.as_secs_f64(),
        update_writes,
        peak_rss: peak,
        cpu,
        curve: engine_curve,
        raw_curve,
    })
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
