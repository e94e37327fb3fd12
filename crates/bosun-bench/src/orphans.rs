//! Orphan children under load: N parents of a CompositeController with ConfigMap children (a
//! generated selector each, a hook that wants no children), then M ConfigMaps that no parent
//! owns or selects are created as fast as the API server takes them. Every one is an orphan
//! event the engine maps to candidate parents (through its index of the labels parents select
//! on); ConfigMapSync shares the same ConfigMap cache in the same process. Meanwhile a
//! ConfigMapSync source changes again and again: how long a change takes to reach its copy
//! while the flood lasts, against the same before it, is the figure.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bosun_operators::configmapsync::ACCEPT_FROM_ANNOTATION;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::engine::EngineProcess;
use crate::fanout::{create_parents, install_parent_crd, namespace, start_hook};
use crate::observe::{Observer, data_version};
use crate::report::Report;
use crate::requests::concurrently;

const PARENTS: &str = "orphans";
const SOURCE: &str = "orphans-source";
const COPY: &str = "orphans-copy";

fn no_children(_: &Value) -> Value {
    json!({ "status": {}, "children": [] })
}

/// Changes the source to `version` and returns how long until its copy carries it.
async fn propagate(sources: &Api<ConfigMap>, copies: &Observer, version: usize) -> anyhow::Result<Duration> {
    let source =
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "settings" }, "data": { "version": version.to_string() } });
    let started = Instant::now();
    sources.patch("settings", &PatchParams::apply("bench"), &Patch::Apply(&source)).await?;
    Ok(copies.until(&version.to_string(), 1).await - started)
}

fn summary(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let median = latencies.get(latencies.len() / 2).copied().unwrap_or_default();
    let max = latencies.last().copied().unwrap_or_default();
    format!("median {:.3} s, max {:.3} s over {} changes", median.as_secs_f64(), max.as_secs_f64(), latencies.len())
}

pub async fn run(client: &Client, kubeconfig: &Path, bosun: &Path, parents: usize, orphans: usize) -> anyhow::Result<Report> {
    let mut report = Report::new(format!("Orphan flood: {parents} parents, {orphans} orphan ConfigMaps, ConfigMapSync on the same cache"));
    install_parent_crd(client).await?;
    bosun_operators::install_crds(client).await?;
    namespace(client, PARENTS).await?;
    namespace(client, SOURCE).await?;
    let copy: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": COPY, "annotations": { ACCEPT_FROM_ANNOTATION: SOURCE } } }))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &copy).await?;
    let calls = Arc::new(AtomicUsize::new(0));
    let (hook_url, _hook) = start_hook(calls.clone(), no_children).await?;
    eprintln!("creating {parents} parents …");
    create_parents(client, PARENTS, parents).await?;

    eprintln!("starting bosun run …");
    let engine = EngineProcess::start(bosun, kubeconfig, &["--configmapsync=true".to_owned()]).await?;
    let controllers: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()));
    let controller = json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
        "metadata": { "name": "orphans" },
        "spec": {
            "generateSelector": true,
            "parentResource": { "apiVersion": "bench.bosun.dev/v1", "resource": "benchparents" },
            "childResources": [{ "apiVersion": "v1", "resource": "configmaps" }],
            "hooks": { "sync": { "webhook": { "url": hook_url } } },
        },
    });
    controllers.patch("orphans", &PatchParams::apply("bench"), &Patch::Apply(&controller)).await?;
    while calls.load(Ordering::Relaxed) < parents {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sources: Api<ConfigMap> = Api::namespaced(client.clone(), SOURCE);
    let copies = Observer::start(
        client.clone(),
        &ApiResource::erase::<ConfigMap>(&()),
        "app.kubernetes.io/managed-by=bosun-configmapsync",
        data_version,
    )
    .await;
    let sync = json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "ConfigMapSync", "metadata": { "name": "settings" },
        "spec": { "configMapName": "settings", "destinationNamespaces": [COPY] },
    });
    let syncs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), SOURCE, &ApiResource::erase::<bosun_operators::configmapsync::ConfigMapSync>(&()));
    syncs.patch("settings", &PatchParams::apply("bench"), &Patch::Apply(&sync)).await?;
    let mut version = 0;
    let mut quiet = Vec::new();
    for _ in 0..5 {
        version += 1;
        quiet.push(propagate(&sources, &copies, version).await?);
    }

    eprintln!("creating {orphans} orphan ConfigMaps …");
    let cpu_start = engine.cpu_seconds();
    let orphan_api: Api<ConfigMap> = Api::namespaced(client.clone(), PARENTS);
    let flood_started = Instant::now();
    let flood = tokio::spawn(concurrently((0..orphans).collect(), 32, move |index| {
        let api = orphan_api.clone();
        // The label key parents select on, with values no parent has.
        let orphan = serde_json::from_value::<ConfigMap>(
            json!({ "metadata": { "name": format!("orphan-{index:05}"), "labels": { "controller-uid": format!("orphan-{index}") } } }),
        );
        async move { Ok(api.create(&PostParams::default(), &orphan?).await.map(|_| ())?) }
    }));
    let mut flooded = Vec::new();
    while !flood.is_finished() {
        version += 1;
        flooded.push(propagate(&sources, &copies, version).await?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    flood.await??;
    let flood_took = flood_started.elapsed();
    let cpu = engine.cpu_seconds() - cpu_start;

    report.figure("orphans created (32 at once)", format!("{orphans} in {:.2} s", flood_took.as_secs_f64()));
    report.figure("ConfigMapSync source change → copy, before the flood", summary(&mut quiet));
    report.figure("ConfigMapSync source change → copy, during the flood (target < 2 s)", summary(&mut flooded));
    report.figure("bosun CPU during the flood", format!("{cpu:.2} s"));
    report.figure("bosun peak RSS", format!("{:.1} MiB", engine.peak_rss_mib()));
    Ok(report)
}
