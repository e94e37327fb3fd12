//! A tenant's flood: ConfigMapSync running and in sync, then a tenant fills one namespace with
//! ConfigMaps no ConfigMapSync names — half of the volume as content (`data`), half as
//! annotations (what `kubectl apply` leaves in `last-applied-configuration`), each object near
//! the size limit the API server sets for its part. Measures bosun's resident memory before and
//! after (the operator must not keep what it does not sync), its peak, and that a source change
//! still reaches every copy afterwards.

use std::path::Path;
use std::time::{Duration, Instant};

use bosun_operators::configmapsync::ACCEPT_FROM_ANNOTATION;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::engine::EngineProcess;
use crate::observe::{Observer, VERSION, data_version};
use crate::report::Report;
use crate::requests::concurrently;

/// Bytes of `data` in a content-heavy ConfigMap (the API server's limit is 1 MiB in all).
const DATA_BYTES: usize = 1000 * 1024;
/// Bytes of annotations in an annotation-heavy one (the limit is 256 KiB for all of them).
const ANNOTATION_BYTES: usize = 250 * 1024;

/// How the flood went, for the record.
struct Flood {
    objects: usize,
    bytes: usize,
    took: Duration,
}

/// Creates `mebibytes` MiB of ConfigMaps in `namespace`: half as data, half as annotations.
async fn flood(client: &Client, namespace: &str, mebibytes: usize) -> anyhow::Result<Flood> {
    let half = mebibytes * 1024 * 1024 / 2;
    let (heavy, annotated) = (half / DATA_BYTES, half / ANNOTATION_BYTES);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    let items: Vec<usize> = (0..heavy + annotated).collect();
    concurrently(items, 8, |index| {
        let api = api.clone();
        async move {
            let config_map = if index < heavy {
                json!({ "metadata": { "name": format!("data-{index:05}") }, "data": { "blob": "d".repeat(DATA_BYTES) } })
            } else {
                json!({
                    "metadata": {
                        "name": format!("annotated-{index:05}"),
                        "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "a".repeat(ANNOTATION_BYTES) },
                    },
                    "data": { "small": "x" },
                })
            };
            api.create(&PostParams::default(), &serde_json::from_value(config_map)?).await?;
            Ok(())
        }
    })
    .await?;
    Ok(Flood { objects: heavy + annotated, bytes: heavy * DATA_BYTES + annotated * ANNOTATION_BYTES, took: started.elapsed() })
}

/// Resident memory once it has settled: the least of `samples` readings a second apart
/// (jemalloc returns freed pages to the system after a delay).
async fn settled_rss(engine: &EngineProcess, samples: usize) -> f64 {
    let mut least = f64::INFINITY;
    for _ in 0..samples {
        tokio::time::sleep(Duration::from_secs(1)).await;
        least = least.min(engine.rss_mib());
    }
    least
}

pub async fn run(client: &Client, kubeconfig: &Path, bosun: &Path, mebibytes: usize, destinations: usize) -> anyhow::Result<Report> {
    let mut report = Report::new(format!(
        "ConfigMapSync under a tenant's flood: {mebibytes} MiB of unrelated ConfigMaps in one namespace, while syncing to {destinations} namespaces"
    ));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = (0..destinations).map(|index| format!("flood-dest-{index:03}")).collect();
    for name in names.iter().map(String::as_str).chain(["flood-source", "flood-tenant"]) {
        let namespace: Namespace =
            serde_json::from_value(json!({ "metadata": { "name": name, "annotations": { ACCEPT_FROM_ANNOTATION: "flood-source" } } }))?;
        namespaces.create(&PostParams::default(), &namespace).await?;
    }
    let sources: Api<ConfigMap> = Api::namespaced(client.clone(), "flood-source");
    let source = |version: &str| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "settings" }, "data": { VERSION: version } });
    sources.patch("settings", &PatchParams::apply("bench"), &Patch::Apply(&source("1"))).await?;

    eprintln!("starting bosun run …");
    bosun_operators::install_crds(client).await?;
    bosun_engine::install_crds(client).await?;
    let engine = EngineProcess::start(bosun, kubeconfig, &["--configmapsync=true".to_owned()]).await?;
    let config_maps = kube::api::ApiResource::erase::<ConfigMap>(&());
    let copies = Observer::start(client.clone(), &config_maps, "app.kubernetes.io/managed-by=bosun-configmapsync", data_version).await;
    let sync = json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "ConfigMapSync", "metadata": { "name": "settings" },
        "spec": { "configMapName": "settings", "destinationNamespaces": names },
    });
    let syncs: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "flood-source",
        &kube::api::ApiResource::erase::<bosun_operators::configmapsync::ConfigMapSync>(&()),
    );
    syncs.patch("settings", &PatchParams::apply("bench"), &Patch::Apply(&sync)).await?;
    copies.until("1", destinations).await;
    let before = settled_rss(&engine, 15).await;
    let peak_before = engine.peak_rss_mib();

    eprintln!("flooding flood-tenant with {mebibytes} MiB of ConfigMaps …");
    let flood = flood(client, "flood-tenant", mebibytes).await?;
    // The operator has seen every one of them once a change after them reaches the copies.
    let started = Instant::now();
    sources.patch("settings", &PatchParams::apply("bench"), &Patch::Apply(&source("2"))).await?;
    let propagated = copies.until("2", destinations).await - started;
    let after = settled_rss(&engine, 15).await;
    let peak = engine.peak_rss_mib();
    let listed = Api::<ConfigMap>::namespaced(client.clone(), "flood-tenant").list_metadata(&ListParams::default()).await?.items.len();
    drop(engine);

    report.figure(
        "the flood",
        format!("{} ConfigMaps, {:.0} MiB, created in {:.1} s", flood.objects, flood.bytes as f64 / 1048576.0, flood.took.as_secs_f64()),
    );
    report.figure("ConfigMaps in the tenant's namespace (listed after the flood)", listed.to_string());
    report.figure("bosun RSS before the flood (synced, settled)", format!("{before:.1} MiB"));
    report.figure("bosun RSS after the flood (settled)", format!("{after:.1} MiB"));
    report.figure("RSS moved by the flood (target ≤ 10 MiB)", format!("{:+.1} MiB", after - before));
    report.figure("bosun peak RSS before / during the flood", format!("{peak_before:.1} / {peak:.1} MiB"));
    report.figure("a source change after the flood → every copy carries it", format!("{:.2} s", propagated.as_secs_f64()));
    Ok(report)
}
