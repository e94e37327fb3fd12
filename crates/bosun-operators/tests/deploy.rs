//! The ConfigMapSync operator's RBAC in `deploy/configmapsync.yaml` is enough for it to do
//! everything it does — copy, update, restore, release a finalizer, write status and events —
//! when it runs as its own ServiceAccount with nothing else granted; and the engine's
//! ServiceAccount, installed beside it from `deploy/rbac.yaml`, gains no ConfigMap rights.

mod support;

use std::path::Path;

use bosun_operators::configmapsync::{ConfigMapSync, ConfigMapSyncController, ConfigMapSyncOptions};
use bosun_runtime::Context;
use bosun_testenv::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{
    accepting, config_map, create_sync, eventually, namespace, put_config_map, wait_for_copies, wait_for_event, wait_for_reason,
};

/// Applies the RBAC of `deploy/<file>` (not its Deployments) with `system` as bosun's
/// namespace.
async fn apply_rbac(admin: &kube::Client, file: &str, system: &str) {
    let manifests = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(file)).unwrap();
    for document in serde_yaml::Deserializer::from_str(&manifests.replace("bosun-system", system)) {
        let object: DynamicObject = serde::Deserialize::deserialize(document).unwrap();
        let (resource, namespaced) = match object.types.clone().unwrap().kind.as_str() {
            "ServiceAccount" => (ApiResource::erase::<k8s_openapi::api::core::v1::ServiceAccount>(&()), true),
            "Role" => (ApiResource::erase::<k8s_openapi::api::rbac::v1::Role>(&()), true),
            "RoleBinding" => (ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()), true),
            "ClusterRole" => (ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&()), false),
            "ClusterRoleBinding" => (ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(&()), false),
            _ => continue,
        };
        let api: Api<DynamicObject> =
            if namespaced { Api::namespaced_with(admin.clone(), system, &resource) } else { Api::all_with(admin.clone(), &resource) };
        let name = object.metadata.name.clone().unwrap();
        api.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&object)).await.unwrap();
    }
}

#[tokio::test]
async fn the_operator_runs_with_only_its_deployed_rbac() {
    let env = TestEnv::shared();
    let admin = env.client();
    bosun_operators::install_crds(&admin).await.unwrap();
    let system = namespace(&admin, "bosun-system", json!({})).await;
    apply_rbac(&admin, "rbac.yaml", &system).await;
    apply_rbac(&admin, "configmapsync.yaml", &system).await;
    let operator = env.service_account_client(&system, "bosun-configmapsync").await;
    let controller = ConfigMapSyncController::new(&Context::standalone(operator), ConfigMapSyncOptions::default());
    let running = tokio::spawn(controller.run(std::future::pending()));

    let team = format!("team-{}", bosun_testenv::unique_suffix());
    let source = namespace(&admin, "rbac-source", json!({})).await;
    let (named, selected) = (
        accepting(&admin, "rbac-named", &source, json!({})).await,
        accepting(&admin, "rbac-selected", &source, json!({ "team": team })).await,
    );
    put_config_map(&admin, &source, "settings", json!({ "a": "1" })).await;
    create_sync(
        &admin,
        &source,
        "sync",
        json!({
            "configMapName": "settings", "destinationNamespace": named,
            "namespaceSelector": { "matchLabels": { "team": team } },
        }),
    )
    .await;
    wait_for_copies(&admin, &[&named, &selected], "settings", json!({ "a": "1" })).await;
    wait_for_reason(&admin, &source, "sync", "Synced").await;
    put_config_map(&admin, &source, "settings", json!({ "a": "2" })).await;
    wait_for_copies(&admin, &[&named, &selected], "settings", json!({ "a": "2" })).await;
    wait_for_event(&admin, &source, "sync", "Synced").await;

    let syncs: Api<ConfigMapSync> = Api::namespaced(admin.clone(), &source);
    syncs.delete("sync", &DeleteParams::default()).await.unwrap();
    eventually("the ConfigMapSync to be gone", async || syncs.get_opt("sync").await.unwrap().is_none().then_some(())).await;
    assert!(config_map(&admin, &named, "settings").await.is_none() && config_map(&admin, &selected, "settings").await.is_none());
    running.abort();

    // The engine's ServiceAccount gained nothing from ConfigMapSync's role: it can write no
    // ConfigMap, so neither can any CompositeController it runs.
    let engine = env.service_account_client(&system, "bosun").await;
    let config_map: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "from-the-engine" } })).unwrap();
    let attempt = Api::<ConfigMap>::namespaced(engine, &named).create(&PostParams::default(), &config_map).await;
    let error = attempt.expect_err("the engine's ServiceAccount wrote a ConfigMap");
    assert!(matches!(error, kube::Error::Api(ref status) if status.code == 403), "{error}");
}
