//! The ConfigMapSync fan-out: one source ConfigMap copied to N namespaces chosen by a label
//! selector. Measures the time until every copy exists, the time from a source change until
//! every copy carries it, the API writes each took (from the API server's own metrics and from
//! bosun's), and bosun's memory and CPU — and the same creates and updates made by a plain
//! client with the same concurrency, the physical limit of this API server on this machine.

use std::path::Path;
use std::time::{Duration, Instant};

use bosun_operators::configmapsync::{ACCEPT_FROM_ANNOTATION, DEFAULT_MAX_DESTINATIONS};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::engine::EngineProcess;
use crate::observe::{Observer, VERSION, data_version};
use crate::report::Report;
use crate::requests::{apiserver_writes, concurrently, difference};

/// The label that puts a namespace in the fan-out.
const SELECTED: &str = "bench.bosun.dev/fanout";

/// The source's content: `version` plus filler for a realistic size (about 2 KiB).
fn content(version: &str) -> serde_json::Value {
    let mut data = serde_json::Map::new();
    data.insert(VERSION.into(), version.into());
    for index in 0..20 {
        data.insert(format!("setting-{index:02}"), "x".repeat(96).into());
    }
    serde_json::Value::Object(data)
}

pub async fn run(client: &Client, kubeconfig: &Path, bosun: &Path, namespaces: usize, concurrency: usize) -> anyhow::Result<Report> {
    let mut report = Report::new(format!("ConfigMapSync fan-out to {namespaces} namespaces (write concurrency {concurrency})"));

    eprintln!("creating {namespaces} namespaces …");
    let names: Vec<String> = (0..namespaces).map(|index| format!("fanout-{index:05}")).collect();
    let namespace_api: Api<Namespace> = Api::all(client.clone());
    concurrently(names.clone(), 32, |name| {
        let api = namespace_api.clone();
        async move {
            let namespace: Namespace = serde_json::from_value(json!({ "metadata": {
                "name": name, "labels": { SELECTED: "yes" }, "annotations": { ACCEPT_FROM_ANNOTATION: "fanout-source" },
            } }))?;
            api.create(&PostParams::default(), &namespace).await?;
            Ok(())
        }
    })
    .await?;
    namespace_api.create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": "fanout-source" } }))?).await?;
    // kube-controller-manager creates a ServiceAccount in each: let it finish first.
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    while accounts.list(&ListParams::default().fields("metadata.name=default")).await?.items.len() < namespaces {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let sources: Api<ConfigMap> = Api::namespaced(client.clone(), "fanout-source");
    let source =
        |version: &str| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "settings" }, "data": content(version) });
    sources.patch("settings", &PatchParams::apply("bench"), &Patch::Apply(&source("1"))).await?;

    eprintln!("starting bosun run …");
    bosun_operators::install_crds(client).await?;
    bosun_engine::install_crds(client).await?;
    let args = [
        "--configmapsync=true".to_owned(),
        format!("--configmapsync-write-concurrency={concurrency}"),
        format!("--configmapsync-max-destinations={}", namespaces.max(DEFAULT_MAX_DESTINATIONS)),
    ];
    let engine = EngineProcess::start(bosun, kubeconfig, &args).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    report.figure("bosun RSS, idle (watching every namespace and ConfigMap)", format!("{:.1} MiB", engine.rss_mib()));
    let cpu_start = engine.cpu_seconds();

    // Fan-out: the ConfigMapSync is created; every namespace gets its copy.
    let config_maps = kube::api::ApiResource::erase::<ConfigMap>(&());
    let copies = Observer::start(client.clone(), &config_maps, "app.kubernetes.io/managed-by=bosun-configmapsync", data_version).await;
    let (server_before, bosun_before) = (apiserver_writes(client, &["configmaps"]).await?, engine.requests_by_method().await?);
    let sync = json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "ConfigMapSync", "metadata": { "name": "settings" },
        "spec": { "configMapName": "settings", "namespaceSelector": { "matchLabels": { SELECTED: "yes" } } },
    });
    let syncs: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "fanout-source",
        &kube::api::ApiResource::erase::<bosun_operators::configmapsync::ConfigMapSync>(&()),
    );
    let started = Instant::now();
    syncs.patch("settings", &PatchParams::apply("bench"), &Patch::Apply(&sync)).await?;
    let fan_out = copies.until("1", namespaces).await - started;
    settle(&syncs, namespaces).await?;
    let fan_out_writes = difference(&apiserver_writes(client, &["configmaps"]).await?, &server_before);
    let fan_out_bosun = difference(&engine.requests_by_method().await?, &bosun_before);

    // Update wave: the source changes; every copy follows.
    let (server_before, bosun_before) = (apiserver_writes(client, &["configmaps"]).await?, engine.requests_by_method().await?);
    let started = Instant::now();
    sources.patch("settings", &PatchParams::apply("bench"), &Patch::Apply(&source("2"))).await?;
    let update = copies.until("2", namespaces).await - started;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let update_writes = difference(&apiserver_writes(client, &["configmaps"]).await?, &server_before);
    let update_bosun = difference(&engine.requests_by_method().await?, &bosun_before);

    // Steady state: a change to the source that leaves its content alone (a label) is
    // reconciled and costs nothing.
    let bosun_before = engine.requests_by_method().await?;
    let relabel = json!({ "metadata": { "labels": { "touched": "yes" } } });
    sources.patch("settings", &PatchParams::default(), &Patch::Merge(&relabel)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steady_bosun = difference(&engine.requests_by_method().await?, &bosun_before);
    let cpu = engine.cpu_seconds() - cpu_start;
    let peak = engine.peak_rss_mib();
    drop(engine);
    drop(copies);

    // The raw limit: the same creates, then the same updates, by a plain client.
    eprintln!("raw client: {namespaces} creates and {namespaces} updates …");
    let raw = Observer::start(client.clone(), &config_maps, "bench.bosun.dev/raw=yes", data_version).await;
    let body = |namespace: &str, version: &str| -> anyhow::Result<ConfigMap> {
        Ok(serde_json::from_value(json!({
            "metadata": { "name": "raw", "namespace": namespace, "labels": { "bench.bosun.dev/raw": "yes" } },
            "data": content(version),
        }))?)
    };
    let started = Instant::now();
    concurrently(names.clone(), concurrency, |name| {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
        let config_map = body(&name, "1");
        async move { Ok(api.create(&PostParams::default(), &config_map?).await.map(|_| ())?) }
    })
    .await?;
    let raw_create = raw.until("1", namespaces).await - started;
    let current: Vec<ConfigMap> =
        Api::<ConfigMap>::all(client.clone()).list(&ListParams::default().labels("bench.bosun.dev/raw=yes")).await?.items;
    let started = Instant::now();
    concurrently(current, concurrency, |mut config_map| {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), config_map.metadata.namespace.as_deref().unwrap_or_default());
        config_map.data = serde_json::from_value(content("2")).ok();
        async move { Ok(api.replace("raw", &PostParams::default(), &config_map).await.map(|_| ())?) }
    })
    .await?;
    let raw_update = raw.until("2", namespaces).await - started;

    let ratio = |measured: Duration, limit: Duration| measured.as_secs_f64() / limit.as_secs_f64();
    report.figure("fan-out: ConfigMapSync created → every copy exists", format!("{:.2} s", fan_out.as_secs_f64()));
    report.figure("raw limit: the same creates by a plain client", format!("{:.2} s", raw_create.as_secs_f64()));
    report.figure("fan-out ÷ raw limit (target ≤ 1.5)", format!("{:.2}", ratio(fan_out, raw_create)));
    report.figure("fan-out writes (API server, ConfigMaps)", fan_out_writes);
    report.figure("fan-out requests (bosun, all resources)", fan_out_bosun);
    report.figure("update: source changed → every copy carries it", format!("{:.2} s", update.as_secs_f64()));
    report.figure("raw limit: the same updates by a plain client", format!("{:.2} s", raw_update.as_secs_f64()));
    report.figure("update ÷ raw limit (target ≤ 1.5)", format!("{:.2}", ratio(update, raw_update)));
    report.figure("update writes (API server, ConfigMaps; the APPLY is the benchmark's source change)", update_writes);
    report.figure("update requests (bosun, all resources)", update_bosun);
    report.figure("steady state: source relabelled, content unchanged → requests (bosun)", steady_bosun);
    report.figure("bosun peak RSS", format!("{peak:.1} MiB"));
    report.figure("bosun CPU, fan-out and update", format!("{cpu:.2} s"));
    Ok(report)
}

/// Waits until the ConfigMapSync reports every namespace in sync (its status is written).
async fn settle(syncs: &Api<kube::api::DynamicObject>, namespaces: usize) -> anyhow::Result<()> {
    let expected = format!("{namespaces}/{namespaces}");
    for _ in 0..600 {
        let sync = syncs.get("settings").await?;
        if sync.data.pointer("/status/destinations").and_then(|value| value.as_str()) == Some(expected.as_str()) {
            // The Synced event follows the status: give it a moment before counting.
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the ConfigMapSync did not report {expected} within 60 s")
}
