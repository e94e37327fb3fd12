//! Who receives copies: a namespace only when it accepts them from the source's namespace,
//! never a system namespace, and a ConfigMapSync only within its bounds — with tenants
//! limited to their own namespace by RBAC, as on a shared cluster.

mod support;

use bosun_operators::configmapsync::{CONSENT_RECORD, ConfigMapSync, OWNER_ANNOTATION};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
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
    let warning = wait_for_event(&admin, &home, "share", "SystemNamespace").await;
    assert!(warning.contains(&neighbour) && warning.contains("kubectl annotate"), "{warning}");
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
    wait_for_event(&client, &source, "sync", "SourceTooLarge").await;
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
    wait_for_event(&client, &source, "sync", "TooManyDestinations").await;
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

/// Consent names a namespace, not a name: `source` deleted and created again — by anyone who
/// may create namespaces — does not inherit the consent the destination gave the old one. The
/// ConfigMapSync of the new namespace is refused with why and how to renew consent, and
/// deleting the destination's consent record renews it.
#[tokio::test]
async fn consent_is_not_inherited_by_a_namespace_created_again_under_its_name() {
    let (_, admin, _) = setup().await;
    let source = namespace(&admin, "recreated", json!({})).await;
    let destination = accepting(&admin, "recreated-dest", &source, json!({})).await;
    put_config_map(&admin, &source, "settings", json!({ "owner": "first" })).await;
    create_sync(&admin, &source, "share", json!({ "configMapName": "settings", "destinationNamespace": destination })).await;
    wait_for_copies(&admin, &[&destination], "settings", json!({ "owner": "first" })).await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let first_uid = namespaces.get(&source).await.unwrap().metadata.uid.unwrap();

    // The namespace goes (its ConfigMapSync is finalized, the copy removed) and comes back.
    namespaces.delete(&source, &Default::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    while namespaces.get_opt(&source).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "namespace {source} was not deleted within 5 minutes");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert!(config_map(&admin, &destination, "settings").await.is_none(), "the copy went with its ConfigMapSync");
    let again: Namespace = serde_json::from_value(json!({ "metadata": { "name": source } })).unwrap();
    namespaces.create(&Default::default(), &again).await.unwrap();
    put_config_map(&admin, &source, "settings", json!({ "owner": "second" })).await;
    create_sync(&admin, &source, "share", json!({ "configMapName": "settings", "destinationNamespace": destination })).await;

    let sync = wait_for_reason(&admin, &source, "share", "ConsentForAnotherNamespace").await;
    let message = ready_message(&sync);
    assert!(message.contains(&format!("{destination} accepted copies from an earlier namespace named {source}")), "{message}");
    assert!(message.contains(&format!("kubectl -n {destination} delete configmap {CONSENT_RECORD}")), "{message}");
    assert_eq!(refused(&sync), std::slice::from_ref(&destination));
    wait_for_event(&admin, &source, "share", "ConsentForAnotherNamespace").await;
    assert!(config_map(&admin, &destination, "settings").await.is_none(), "nothing is written for the new namespace");
    let record = data(&admin, &destination, CONSENT_RECORD).await.expect("the consent record");
    assert_eq!(record.get(&source), Some(&first_uid), "the name stays bound to the namespace it stood for");

    // The destination's owner renews consent for the namespace that now has the name.
    Api::<ConfigMap>::namespaced(admin.clone(), &destination).delete(CONSENT_RECORD, &Default::default()).await.unwrap();
    wait_for_copies(&admin, &[&destination], "settings", json!({ "owner": "second" })).await;
    let second_uid = namespaces.get(&source).await.unwrap().metadata.uid.unwrap();
    eventually("the record to bind the new namespace", async || {
        (data(&admin, &destination, CONSENT_RECORD).await?.get(&source) == Some(&second_uid)).then_some(())
    })
    .await;
}

/// Whoever may only annotate a ConfigMap cannot have the operator delete it: one that carries
/// a ConfigMapSync's owner annotation without being its copy — another name, or the copy's
/// name where none was ever written, with other content — is released, not deleted.
#[tokio::test]
async fn an_owner_annotation_does_not_make_a_config_map_deletable() {
    let (env, admin, _) = setup().await;
    let home = namespace(&admin, "annotated-home", json!({})).await;
    let destination = accepting(&admin, "annotated-dest", &home, json!({})).await;
    let victim = namespace(&admin, "annotated-victim", json!({})).await;
    put_config_map(&admin, &home, "settings", json!({ "color": "blue" })).await;
    create_sync(&admin, &home, "share", json!({ "configMapName": "settings", "destinationNamespace": destination })).await;
    wait_for_copies(&admin, &[&destination], "settings", json!({ "color": "blue" })).await;

    // Someone with only get and patch on ConfigMaps in their namespace.
    let annotator = annotator(env, &admin, &victim).await;
    for name in ["important", "settings"] {
        put_config_map(&admin, &victim, name, json!({ "keep": "me" })).await;
        let claim = json!({ "metadata": { "annotations": { OWNER_ANNOTATION: format!("{home}/share") } } });
        Api::<ConfigMap>::namespaced(annotator.clone(), &victim).patch(name, &PatchParams::default(), &Patch::Merge(&claim)).await.unwrap();
    }
    for name in ["important", "settings"] {
        eventually(&format!("{victim}/{name} released"), async || {
            let config_map = config_map(&admin, &victim, name).await.expect("not deleted");
            let annotations = config_map.metadata.annotations.unwrap_or_default();
            (!annotations.contains_key(OWNER_ANNOTATION)).then_some(())
        })
        .await;
        assert_eq!(data(&admin, &victim, name).await.unwrap()["keep"], "me");
    }
    let note = wait_for_event(&admin, &home, "share", "NotACopy").await;
    assert!(note.contains(&format!("{victim}/")) && note.contains("left in place"), "{note}");
    assert_eq!(data(&admin, &destination, "settings").await.unwrap()["color"], "blue", "the real copy stays");
}
