//! The operator's API writes, counted exactly: this binary has its own control plane and its
//! operator is the only one on it. A fan-out makes one write per destination (plus, the first
//! time, its consent record, and the finalizer and the status), and an in-sync ConfigMapSync
//! costs no write at all when it is reconciled again.

mod support;

use bosun_runtime::Metrics;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::*;

/// The operator's requests with `method` so far.
fn requests(metrics: &Metrics, method: &str) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|line| line.starts_with("rest_client_requests_total{") && line.contains(&format!("method=\"{method}\"")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Successful reconciles so far.
fn reconciles(metrics: &Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .find(|line| line.starts_with("controller_runtime_reconcile_total{") && line.contains("result=\"success\""))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Waits for the Synced event whose note contains `text`.
async fn synced_event(client: &kube::Client, namespace: &str, text: &str) {
    eventually(&format!("a Synced event saying {text:?}"), async || {
        events(client, namespace, "sync", "Synced").await.iter().any(|note| note.contains(text)).then_some(())
    })
    .await;
}

fn writes(metrics: &Metrics) -> [u64; 4] {
    ["POST", "PUT", "PATCH", "DELETE"].map(|method| requests(metrics, method))
}

#[tokio::test]
async fn one_write_per_destination_and_none_in_the_steady_state() {
    let (_, client, metrics) = setup().await;
    let source = namespace(&client, "steady", json!({})).await;
    let mut destinations = Vec::new();
    for _ in 0..5 {
        destinations.push(accepting(&client, "steady-dest", &source, json!({})).await);
    }
    let destinations: Vec<&str> = destinations.iter().map(String::as_str).collect();
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    let before = writes(metrics);
    create_sync(&client, &source, "sync", json!({ "configMapName": "settings", "destinationNamespaces": destinations })).await;
    wait_for_copies(&client, &destinations, "settings", json!({ "color": "blue" })).await;
    wait_for_reason(&client, &source, "sync", "Synced").await;
    // The event is a reconcile's last write.
    synced_event(&client, &source, "5 copies created").await;
    let [posts, puts, patches, deletes] = std::array::from_fn::<u64, 4, _>(|i| writes(metrics)[i] - before[i]);
    // POST: 5 copies, the 5 destinations' consent records (once, on first use), and the Synced
    // event; PATCH: the finalizer and the status.
    assert_eq!((posts, puts, patches, deletes), (11, 0, 2, 0), "(POST, PUT, PATCH, DELETE) for a fan-out to 5 namespaces");

    // A change of the source that does not touch its content (a label), and a label on a copy:
    // both reconcile the ConfigMapSync, neither needs a write.
    let settled = writes(metrics);
    let done = reconciles(metrics);
    let label = json!({ "metadata": { "labels": { "touched": "yes" } } });
    for (namespace, name) in [(source.as_str(), "settings"), (destinations[0], "settings")] {
        Api::<ConfigMap>::namespaced(client.clone(), namespace).patch(name, &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    }
    eventually("two more reconciles", async || (reconciles(metrics) >= done + 2).then_some(())).await;
    assert_eq!(writes(metrics), settled, "an in-sync ConfigMapSync was written to");

    // A content change costs exactly one write per destination (and the status).
    put_config_map(&client, &source, "settings", json!({ "color": "green" })).await;
    wait_for_copies(&client, &destinations, "settings", json!({ "color": "green" })).await;
    synced_event(&client, &source, "5 updated").await;
    let [posts, puts, patches, deletes] = std::array::from_fn::<u64, 4, _>(|i| writes(metrics)[i] - settled[i]);
    // POST: the Synced event; PUT: one per copy; PATCH: the status (lastSyncTime).
    assert_eq!((posts, puts, patches, deletes), (1, 5, 1, 0), "(POST, PUT, PATCH, DELETE) for a source change");
}
