//! Who receives copies: a namespace only when it accepts them from the source's namespace,
//! never a system namespace, and a ConfigMapSync only within its bounds — with tenants
//! limited to their own namespace by RBAC, as on a shared cluster.

mod support;

use bosun_operators::configmapsync::ConfigMapSync;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::*;

/// The namespaces a ConfigMapSync reports as refusing its copies.
fn refused(sync: &ConfigMapSync) -> Vec<String> {
    sync.status.as_ref().map(|status| status.refused_namespaces.clone()).unwrap_or_default()
}

/// Waits until ConfigMapSync `namespace/share` reports exactly `expected` as refusing.
async fn wait_for_refused(client: &kube::Client, namespace: &str, expected: &[&str]) -> ConfigMapSync {
    let syncs: Api<ConfigMapSync> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("{expected:?} to be refused"), async || {
        let sync = syncs.get("share").await.unwrap();
        (refused(&sync) == expected).then_some(sync)
    })
    .await
}

#[tokio::test]
async fn a_tenant_writes_only_where_the_destination_consents() {
    let (env, admin, _) = setup().await;
    let home = namespace(&admin, "consent-home", json!({})).await;
    let neighbour = namespace(&admin, "consent-neighbour", json!({})).await;
    let other = namespace(&admin, "consent-other", json!({})).await;
    let tenant = tenant(env, &admin, &home).await;
    put_config_map(&tenant, &home, "settings", json!({ "color": "blue" })).await;
    create_sync(
        &tenant,
        &home,
        "share",
        json!({
            "configMapName": "settings", "destinationNamespaces": ["kube-system", neighbour],
        }),
    )
    .await;

    // Nothing written, and the status and a Warning event say why and how to fix it.
    let sync = wait_for_reason(&admin, &home, "share", "SystemNamespace").await;
    let message = ready_message(&sync);
    assert!(message.contains("kube-system is one of the system namespaces"), "{message}");
    assert!(message.contains(&format!("namespace {neighbour} does not accept copies from {home}")), "{message}");
    assert!(message.contains(&format!("kubectl annotate namespace {neighbour} configmapsync.bosun.dev/accept-from={home}")), "{message}");
    let mut expected = vec!["kube-system".to_owned(), neighbour.clone()];
    expected.sort();
    assert_eq!(refused(&sync), expected);
    assert_eq!(sync.status.as_ref().unwrap().destinations.as_deref(), Some("0/0"));
    let warnings = events(&admin, &home, "share", "SystemNamespace").await;
    assert!(warnings.iter().any(|note| note.contains(&neighbour) && note.contains("kubectl annotate")), "{warnings:?}");
    assert!(config_map(&admin, "kube-system", "settings").await.is_none());
    assert!(config_map(&admin, &neighbour, "settings").await.is_none());

    // Consent given later: the copy appears; kube-system stays refused.
    put_config_map(&admin, &other, "other-settings", json!({ "from": "other" })).await;
    create_sync(&admin, &other, "share", json!({ "configMapName": "other-settings", "destinationNamespace": neighbour })).await;
    consent(&admin, &neighbour, Some(&format!("{home}, {other}"))).await;
    wait_for_copies(&admin, &[&neighbour], "settings", json!({ "color": "blue" })).await;
    wait_for_copies(&admin, &[&neighbour], "other-settings", json!({ "from": "other" })).await;
    let sync = wait_for_refused(&admin, &home, &["kube-system"]).await;
    assert_eq!(sync.status.as_ref().unwrap().destinations.as_deref(), Some("1/1"));
    assert!(!ready_message(&sync).contains("does not accept"), "{}", ready_message(&sync));
    put_config_map(&admin, &neighbour, "unrelated", json!({ "mine": "yes" })).await;

    // Consent withdrawn from home alone: home's copy goes; the other source's copy and the
    // namespace's own ConfigMap stay.
    consent(&admin, &neighbour, Some(&other)).await;
    eventually("home's copy to be deleted", async || config_map(&admin, &neighbour, "settings").await.is_none().then_some(())).await;
    wait_for_refused(&admin, &home, &expected.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(data(&admin, &neighbour, "other-settings").await.unwrap()["from"], "other");
    assert_eq!(data(&admin, &neighbour, "unrelated").await.unwrap()["mine"], "yes");
    assert!(config_map(&admin, "kube-system", "settings").await.is_none());
}

#[tokio::test]
async fn an_empty_selector_reaches_only_consenting_namespaces() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "everywhere", json!({})).await;
    let consenting = accepting(&client, "everywhere-yes", &source, json!({})).await;
    let listed = accepting(&client, "everywhere-list", &format!("somewhere-else,{source}"), json!({})).await;
    let silent = namespace(&client, "everywhere-no", json!({})).await;
    let elsewhere = accepting(&client, "everywhere-else", "somewhere-else", json!({})).await;
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(&client, &source, "sync", json!({ "configMapName": "settings", "namespaceSelector": {} })).await;

    wait_for_copies(&client, &[&consenting, &listed], "settings", json!({ "color": "blue" })).await;
    let sync = wait_for_reason(&client, &source, "sync", "Synced").await;
    assert_eq!(sync.status.as_ref().unwrap().destinations.as_deref(), Some("2/2"));
    assert!(refused(&sync).is_empty(), "selected namespaces that refuse are not destinations: {:?}", refused(&sync));
    for namespace in [silent.as_str(), &elsewhere, "default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(config_map(&client, namespace, "settings").await.is_none(), "a copy in {namespace}");
    }
    // `*` accepts every source; a system namespace refuses even then. (The namespace cache
    // sees kube-public's consent before the new namespace, and so does the reconcile.)
    consent(&client, "kube-public", Some("*")).await;
    let anyone = accepting(&client, "everywhere-any", "*", json!({})).await;
    wait_for_copies(&client, &[&anyone], "settings", json!({ "color": "blue" })).await;
    assert!(config_map(&client, "kube-public", "settings").await.is_none());
    consent(&client, "kube-public", None).await;
}

#[tokio::test]
async fn a_source_over_the_size_limit_is_refused_until_it_shrinks() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "big", json!({})).await;
    let destination = accepting(&client, "big-dest", &source, json!({})).await;
    put_config_map(&client, &source, "settings", json!({ "blob": "x".repeat(MAX_SOURCE_BYTES) })).await;
    create_sync(&client, &source, "sync", json!({ "configMapName": "settings", "destinationNamespace": destination })).await;

    let sync = wait_for_reason(&client, &source, "sync", "SourceTooLarge").await;
    let message = ready_message(&sync);
    assert!(message.contains(&format!("holds {} bytes, more than the {MAX_SOURCE_BYTES}", MAX_SOURCE_BYTES + 4)), "{message}");
    assert!(message.contains("--configmapsync-max-source-bytes"), "{message}");
    assert!(!events(&client, &source, "sync", "SourceTooLarge").await.is_empty());
    assert!(config_map(&client, &destination, "settings").await.is_none());

    let small = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "settings" }, "data": { "blob": "small" } });
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &source)
        .patch("settings", &PatchParams::apply("test").force(), &Patch::Apply(&small))
        .await
        .unwrap();
    wait_for_copies(&client, &[&destination], "settings", json!({ "blob": "small" })).await;
    wait_for_reason(&client, &source, "sync", "Synced").await;
}

#[tokio::test]
async fn more_destinations_than_allowed_are_refused_whole() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "many", json!({})).await;
    let mut destinations = Vec::new();
    for _ in 0..=MAX_DESTINATIONS {
        destinations.push(accepting(&client, "many-dest", &source, json!({})).await);
    }
    let syncs: Api<ConfigMapSync> = Api::namespaced(client.clone(), &source);
    let target = async |count: usize| {
        let patch = json!({ "spec": { "destinationNamespaces": destinations[..count] } });
        syncs.patch("sync", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    };
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(&client, &source, "sync", json!({ "configMapName": "settings", "destinationNamespaces": destinations[..2] })).await;
    wait_for_copies(&client, &[&destinations[0], &destinations[1]], "settings", json!({ "color": "blue" })).await;

    // One namespace too many: nothing is written (no half-applied set), nothing is deleted,
    // and the status says so.
    target(MAX_DESTINATIONS + 1).await;
    let sync = wait_for_reason(&client, &source, "sync", "TooManyDestinations").await;
    let message = ready_message(&sync);
    assert!(message.contains(&format!("{} namespaces are selected, more than the {MAX_DESTINATIONS}", MAX_DESTINATIONS + 1)), "{message}");
    assert!(message.contains("--configmapsync-max-destinations"), "{message}");
    assert!(!events(&client, &source, "sync", "TooManyDestinations").await.is_empty());
    for namespace in &destinations[..2] {
        assert!(config_map(&client, namespace, "settings").await.is_some(), "the copy in {namespace} is kept");
    }
    for namespace in &destinations[2..] {
        assert!(config_map(&client, namespace, "settings").await.is_none(), "a copy in {namespace}");
    }

    // Back within the limit: every destination gets its copy.
    target(MAX_DESTINATIONS).await;
    let within: Vec<&str> = destinations[..MAX_DESTINATIONS].iter().map(String::as_str).collect();
    wait_for_copies(&client, &within, "settings", json!({ "color": "blue" })).await;
    wait_for_reason(&client, &source, "sync", "Synced").await;
}
