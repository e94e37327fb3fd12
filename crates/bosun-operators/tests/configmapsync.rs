//! ConfigMapSync against a real control plane: every behaviour the operator promises, one test
//! each.

mod support;

use bosun_operators::configmapsync::{ConfigMapSync, MANAGED_BY, MANAGED_BY_LABEL, OWNER_ANNOTATION};
use bosun_testenv::Component;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

#[tokio::test]
async fn copies_to_every_destination_and_reports_status() {
    let (env, client, _) = setup().await;
    let source = namespace(&client, "cms-source", json!({})).await;
    let (a, b, c) = (
        accepting(&client, "cms-dest", &source, json!({})).await,
        accepting(&client, "cms-dest", &source, json!({})).await,
        accepting(&client, "cms-dest", &source, json!({})).await,
    );
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(
        &client,
        &source,
        "sync",
        json!({
            "sourceNamespace": source, "configMapName": "settings",
            "destinationNamespace": a, "destinationNamespaces": [b, c],
        }),
    )
    .await;
    wait_for_copies(&client, &[&a, &b, &c], "settings", json!({ "color": "blue" })).await;
    let sync = wait_for_reason(&client, &source, "sync", "Synced").await;
    let status = sync.status.clone().unwrap();
    let mut expected = vec![a.clone(), b.clone(), c.clone()];
    expected.sort();
    assert_eq!(status.synced_namespaces, expected);
    assert_eq!(status.destinations.as_deref(), Some("3/3"));
    assert!(status.last_sync_time.is_some());
    assert_eq!(status.observed_generation, sync.metadata.generation);
    assert!(sync.metadata.finalizers.unwrap().contains(&"configmapsync.bosun.dev/copies".to_owned()));

    let copy = config_map(&client, &a, "settings").await.unwrap();
    assert_eq!(copy.metadata.labels.unwrap()[MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(copy.metadata.annotations.unwrap()[OWNER_ANNOTATION], format!("{source}/sync"));
    wait_for_event(&client, &source, "sync", "Synced").await;

    // kubectl shows the printer columns.
    let kubectl = env.control_plane().binaries().path(Component::Kubectl);
    let output = std::process::Command::new(kubectl)
        .args(["get", "cms", "-n", &source, "--kubeconfig"])
        .arg(env.control_plane().kubeconfig_path())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("SOURCE") && table.contains("DESTINATIONS") && table.contains("READY"), "{table}");
    assert!(table.contains("settings") && table.contains("3/3") && table.contains("True"), "{table}");
}

#[test]
fn the_committed_crd_is_current() {
    let committed = include_str!("../../../deploy/crds/bosun.dev.yaml");
    assert!(
        committed == bosun_operators::configmapsync::crd_yaml(),
        "deploy/crds/bosun.dev.yaml is stale: run `cargo run -p bosun -- crds configmapsync > deploy/crds/bosun.dev.yaml` \
         and copy it to deploy/helm/bosun/crds/"
    );
}

#[tokio::test]
async fn a_spec_without_destinations_is_refused() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "cms-invalid", json!({})).await;
    let sync: ConfigMapSync = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "ConfigMapSync",
        "metadata": { "name": "sync" }, "spec": { "configMapName": "settings" },
    }))
    .unwrap();
    let error = Api::<ConfigMapSync>::namespaced(client, &source).create(&PostParams::default(), &sync).await.unwrap_err();
    assert!(error.to_string().contains("set destinationNamespace, destinationNamespaces or namespaceSelector"), "{error}");
}

#[tokio::test]
async fn a_source_update_reaches_every_destination() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "cms-update", json!({})).await;
    let destinations = [accepting(&client, "cms-dest", &source, json!({})).await, accepting(&client, "cms-dest", &source, json!({})).await];
    let destinations: Vec<&str> = destinations.iter().map(String::as_str).collect();
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(&client, &source, "sync", json!({ "configMapName": "settings", "destinationNamespaces": destinations })).await;
    wait_for_copies(&client, &destinations, "settings", json!({ "color": "blue" })).await;

    put_config_map(&client, &source, "settings", json!({ "color": "green", "size": "xl" })).await;
    wait_for_copies(&client, &destinations, "settings", json!({ "color": "green", "size": "xl" })).await;

    // binaryData travels too.
    let binary = json!({ "binaryData": { "logo": "AAEC" } });
    Api::<ConfigMap>::namespaced(client.clone(), &source).patch("settings", &PatchParams::default(), &Patch::Merge(&binary)).await.unwrap();
    for destination in &destinations {
        eventually("the binary data to be copied", async || {
            let copy = config_map(&client, destination, "settings").await?;
            copy.binary_data.filter(|binary| binary.contains_key("logo")).map(|_| ())
        })
        .await;
    }
}

#[tokio::test]
async fn a_hand_edited_copy_is_restored() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "cms-edit", json!({})).await;
    let destination = accepting(&client, "cms-dest", &source, json!({})).await;
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(&client, &source, "sync", json!({ "configMapName": "settings", "destinationNamespace": destination })).await;
    wait_for_copies(&client, &[&destination], "settings", json!({ "color": "blue" })).await;

    let edit = json!({ "data": { "color": "red", "extra": "x" } });
    Api::<ConfigMap>::namespaced(client.clone(), &destination)
        .patch("settings", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    wait_for_copies(&client, &[&destination], "settings", json!({ "color": "blue" })).await;
}

#[tokio::test]
async fn a_hand_deleted_copy_is_restored() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "cms-delete-copy", json!({})).await;
    let destination = accepting(&client, "cms-dest", &source, json!({})).await;
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(&client, &source, "sync", json!({ "configMapName": "settings", "destinationNamespace": destination })).await;
    wait_for_copies(&client, &[&destination], "settings", json!({ "color": "blue" })).await;
    let first = config_map(&client, &destination, "settings").await.unwrap().metadata.uid;

    Api::<ConfigMap>::namespaced(client.clone(), &destination).delete("settings", &DeleteParams::default()).await.unwrap();
    eventually("a new copy", async || {
        let copy = config_map(&client, &destination, "settings").await?;
        (copy.metadata.uid != first).then_some(())
    })
    .await;
    wait_for_copies(&client, &[&destination], "settings", json!({ "color": "blue" })).await;
}

#[tokio::test]
async fn an_unmanaged_config_map_is_reported_and_left_alone() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "cms-conflict", json!({})).await;
    let (taken, free) =
        (accepting(&client, "cms-taken", &source, json!({})).await, accepting(&client, "cms-free", &source, json!({})).await);
    put_config_map(&client, &taken, "settings", json!({ "owner": "someone else" })).await;
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(&client, &source, "sync", json!({ "configMapName": "settings", "destinationNamespaces": [taken, free] })).await;

    let sync = wait_for_reason(&client, &source, "sync", "Conflict").await;
    assert!(ready_message(&sync).contains(&taken), "{}", ready_message(&sync));
    assert_eq!(sync.status.as_ref().unwrap().destinations.as_deref(), Some("1/2"));
    wait_for_copies(&client, &[&free], "settings", json!({ "color": "blue" })).await;
    assert_eq!(data(&client, &taken, "settings").await.unwrap()["owner"], "someone else");
    let warning = wait_for_event(&client, &source, "sync", "Conflict").await;
    assert!(warning.contains(&taken), "{warning}");

    // Once the other ConfigMap is gone, the namespace gets its copy.
    Api::<ConfigMap>::namespaced(client.clone(), &taken).delete("settings", &DeleteParams::default()).await.unwrap();
    wait_for_copies(&client, &[&taken], "settings", json!({ "color": "blue" })).await;
    wait_for_reason(&client, &source, "sync", "Synced").await;
}

#[tokio::test]
async fn a_namespace_created_later_that_matches_the_selector_gets_a_copy() {
    let (_, client, _) = setup().await;
    let team = format!("team-{}", bosun_testenv::unique_suffix());
    let source = namespace(&client, "cms-selector", json!({})).await;
    let early = accepting(&client, "cms-early", &source, json!({ "team": team })).await;
    let _other = accepting(&client, "cms-other", &source, json!({ "team": "other" })).await;
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(
        &client,
        &source,
        "sync",
        json!({
            "configMapName": "settings", "namespaceSelector": { "matchLabels": { "team": team } },
        }),
    )
    .await;
    wait_for_copies(&client, &[&early], "settings", json!({ "color": "blue" })).await;
    assert!(config_map(&client, &_other, "settings").await.is_none());

    let late = accepting(&client, "cms-late", &source, json!({ "team": team })).await;
    wait_for_copies(&client, &[&late], "settings", json!({ "color": "blue" })).await;
    let syncs: Api<ConfigMapSync> = Api::namespaced(client.clone(), &source);
    eventually("the status to count both namespaces", async || {
        let status = syncs.get("sync").await.unwrap().status?;
        (status.destinations.as_deref() == Some("2/2")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_namespace_that_leaves_the_set_loses_its_copy() {
    let (_, client, _) = setup().await;
    let team = format!("team-{}", bosun_testenv::unique_suffix());
    let source = namespace(&client, "cms-leave", json!({})).await;
    let (named, labelled) = (
        accepting(&client, "cms-named", &source, json!({})).await,
        accepting(&client, "cms-labelled", &source, json!({ "team": team })).await,
    );
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(
        &client,
        &source,
        "sync",
        json!({
            "configMapName": "settings", "destinationNamespaces": [named],
            "namespaceSelector": { "matchLabels": { "team": team } },
        }),
    )
    .await;
    wait_for_copies(&client, &[&named, &labelled], "settings", json!({ "color": "blue" })).await;

    // Removed from the list.
    let syncs: Api<ConfigMapSync> = Api::namespaced(client.clone(), &source);
    let change = json!({ "spec": { "destinationNamespaces": [] } });
    syncs.patch("sync", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    eventually("the named namespace's copy to go", async || config_map(&client, &named, "settings").await.is_none().then_some(())).await;

    // No longer matching the selector.
    let relabel = json!({ "metadata": { "labels": { "team": "elsewhere" } } });
    Api::<Namespace>::all(client.clone()).patch(&labelled, &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
    eventually("the relabelled namespace's copy to go", async || config_map(&client, &labelled, "settings").await.is_none().then_some(()))
        .await;
    eventually("the status to count no namespace", async || {
        let status = syncs.get("sync").await.unwrap().status?;
        (status.destinations.as_deref() == Some("0/0")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_the_config_map_sync_removes_its_copies() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "cms-remove", json!({})).await;
    let (a, b) = (accepting(&client, "cms-dest", &source, json!({})).await, accepting(&client, "cms-dest", &source, json!({})).await);
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(&client, &source, "sync", json!({ "configMapName": "settings", "destinationNamespaces": [a, b] })).await;
    wait_for_copies(&client, &[&a, &b], "settings", json!({ "color": "blue" })).await;

    let syncs: Api<ConfigMapSync> = Api::namespaced(client.clone(), &source);
    syncs.delete("sync", &DeleteParams::default()).await.unwrap();
    eventually("the ConfigMapSync to be gone", async || syncs.get_opt("sync").await.unwrap().is_none().then_some(())).await;
    assert!(config_map(&client, &a, "settings").await.is_none());
    assert!(config_map(&client, &b, "settings").await.is_none());
    assert!(config_map(&client, &source, "settings").await.is_some(), "the source stays");
}

#[tokio::test]
async fn deleting_with_the_orphan_policy_keeps_the_copies_unmanaged() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "cms-orphan", json!({})).await;
    let destination = accepting(&client, "cms-dest", &source, json!({})).await;
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(
        &client,
        &source,
        "sync",
        json!({
            "configMapName": "settings", "destinationNamespace": destination, "deletionPolicy": "Orphan",
        }),
    )
    .await;
    wait_for_copies(&client, &[&destination], "settings", json!({ "color": "blue" })).await;

    let syncs: Api<ConfigMapSync> = Api::namespaced(client.clone(), &source);
    syncs.delete("sync", &DeleteParams::default()).await.unwrap();
    eventually("the ConfigMapSync to be gone", async || syncs.get_opt("sync").await.unwrap().is_none().then_some(())).await;
    let copy = config_map(&client, &destination, "settings").await.expect("the copy is kept");
    assert_eq!(copy.data.unwrap()["color"], "blue");
    assert!(!copy.metadata.annotations.unwrap_or_default().contains_key(OWNER_ANNOTATION), "no longer managed");
    assert!(!copy.metadata.labels.unwrap_or_default().contains_key(MANAGED_BY_LABEL));
}

#[tokio::test]
async fn a_deleted_source_keeps_the_copies_until_it_returns() {
    let (_, client, _) = setup().await;
    let source = namespace(&client, "cms-source-gone", json!({})).await;
    let destination = accepting(&client, "cms-dest", &source, json!({})).await;
    put_config_map(&client, &source, "settings", json!({ "color": "blue" })).await;
    create_sync(&client, &source, "sync", json!({ "configMapName": "settings", "destinationNamespace": destination })).await;
    wait_for_copies(&client, &[&destination], "settings", json!({ "color": "blue" })).await;

    Api::<ConfigMap>::namespaced(client.clone(), &source).delete("settings", &DeleteParams::default()).await.unwrap();
    let sync = wait_for_reason(&client, &source, "sync", "SourceNotFound").await;
    assert_eq!(sync.status.as_ref().unwrap().conditions[0].status, "False");
    assert!(ready_message(&sync).contains("copies are kept"), "{}", ready_message(&sync));
    assert_eq!(data(&client, &destination, "settings").await.unwrap()["color"], "blue", "nothing is lost");

    put_config_map(&client, &source, "settings", json!({ "color": "violet" })).await;
    wait_for_copies(&client, &[&destination], "settings", json!({ "color": "violet" })).await;
    wait_for_reason(&client, &source, "sync", "Synced").await;
}

#[tokio::test]
async fn a_source_in_another_namespace_is_refused() {
    let (_, client, _) = setup().await;
    let own = namespace(&client, "cms-own", json!({})).await;
    let (secret, destination) = (namespace(&client, "cms-secret", json!({})).await, accepting(&client, "cms-dest", &own, json!({})).await);
    put_config_map(&client, &secret, "settings", json!({ "password": "hunter2" })).await;
    create_sync(
        &client,
        &own,
        "sync",
        json!({
            "sourceNamespace": secret, "configMapName": "settings", "destinationNamespace": destination,
        }),
    )
    .await;
    let sync = wait_for_reason(&client, &own, "sync", "CrossNamespaceSource").await;
    assert!(ready_message(&sync).contains("only copy a ConfigMap from its own namespace"), "{}", ready_message(&sync));
    wait_for_event(&client, &own, "sync", "CrossNamespaceSource").await;
    let warnings = events(&client, &own, "sync", "CrossNamespaceSource").await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(config_map(&client, &destination, "settings").await.is_none());
}

/// A user who may create ConfigMapSyncs (and ConfigMaps) in their namespace, but not read
/// another namespace, cannot obtain that namespace's ConfigMap through a ConfigMapSync.
#[tokio::test]
async fn a_user_cannot_read_another_namespace_through_a_config_map_sync() {
    let (env, admin, _) = setup().await;
    let theirs = namespace(&admin, "cms-tenant", json!({})).await;
    let private = namespace(&admin, "cms-private", json!({})).await;
    put_config_map(&admin, &private, "settings", json!({ "password": "hunter2" })).await;
    let tenant = tenant(env, &admin, &theirs).await;

    let direct = Api::<ConfigMap>::namespaced(tenant.clone(), &private).get("settings").await.unwrap_err();
    assert!(matches!(direct, kube::Error::Api(ref status) if status.code == 403), "{direct}");

    // Into their own namespace, by naming the source namespace …
    let spec = json!({ "sourceNamespace": private, "configMapName": "settings", "destinationNamespace": theirs });
    create_sync(&tenant, &theirs, "steal", spec).await;
    wait_for_reason(&tenant, &theirs, "steal", "CrossNamespaceSource").await;
    // … or by copying their own ConfigMap of that name over the private one.
    put_config_map(&tenant, &theirs, "settings", json!({ "password": "mine" })).await;
    create_sync(&tenant, &theirs, "overwrite", json!({ "configMapName": "settings", "destinationNamespace": private })).await;
    wait_for_reason(&tenant, &theirs, "overwrite", "NotAccepted").await;
    // Even where the namespace accepts their copies, a ConfigMap that is not theirs stays.
    consent(&admin, &private, Some(&theirs)).await;
    wait_for_reason(&tenant, &theirs, "overwrite", "Conflict").await;

    let tenant_maps = Api::<ConfigMap>::namespaced(tenant, &theirs);
    let visible = tenant_maps.list(&Default::default()).await.unwrap();
    assert!(
        visible.items.iter().all(|config_map| config_map.data.as_ref().is_none_or(|data| !data.values().any(|value| value == "hunter2"))),
        "the private value reached the tenant's namespace"
    );
    assert_eq!(data(&admin, &private, "settings").await.unwrap()["password"], "hunter2", "the private ConfigMap is untouched");
}

/// `examples/configmapsync`, applied with kubectl as docs/configmapsync.md shows.
#[tokio::test]
async fn the_examples_work() {
    let (env, client, _) = setup().await;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configmapsync");
    let kubectl = |file: &str| {
        let output = std::process::Command::new(env.control_plane().binaries().path(Component::Kubectl))
            .arg("--kubeconfig")
            .arg(env.control_plane().kubeconfig_path())
            .args(["apply", "--server-side", "-f"])
            .arg(examples.join(file))
            .output()
            .unwrap();
        assert!(output.status.success(), "kubectl apply {file}: {}", String::from_utf8_lossy(&output.stderr));
    };
    kubectl("namespaces.yaml");
    kubectl("source.yaml");
    kubectl("configmapsync.yaml");
    let expected = json!({ "checkout.v2": "true", "search.backend": "opensearch" });
    wait_for_copies(&client, &["team-a", "team-b", "billing"], "feature-flags", expected).await;
    wait_for_reason(&client, "platform", "feature-flags", "Synced").await;

    kubectl("tutorial.yaml");
    let sample = wait_for_reason(&client, "platform", "configmapsync-sample", "Conflict").await;
    assert!(ready_message(&sample).contains("team-a"), "{}", ready_message(&sample));
}
