//! The local control plane is a real Kubernetes: CRDs with validation and a status
//! subresource, server-side apply conflicts, watches, garbage collection, namespace
//! deletion and RBAC all behave as in a cluster.

use std::time::Duration;

use bosun_testenv::{TestEnv, eventually};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

fn config_map(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name }, "data": data })).unwrap()
}

/// Installs a namespaced `Widget` CRD (unique per call) with a status subresource and a
/// schema that requires `spec.size` to be an integer from 1 to 10.
async fn install_widget_crd(env: &TestEnv) -> ApiResource {
    let group = format!("{}.testenv.bosun.dev", bosun_testenv::unique_suffix());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": format!("widgets.{group}") },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "properties": { "size": { "type": "integer", "minimum": 1, "maximum": 10 } },
                        },
                        "status": {
                            "type": "object",
                            "properties": { "phase": { "type": "string" } },
                        },
                    },
                }},
            }],
        },
    }))
    .unwrap();
    env.install_crd(&crd).await;
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, "v1", "Widget"), "widgets")
}

fn widget(resource: &ApiResource, name: &str, spec: serde_json::Value) -> DynamicObject {
    DynamicObject::new(name, resource).data(json!({ "spec": spec }))
}

#[tokio::test]
async fn server_reports_the_pinned_kubernetes_version() {
    let env = TestEnv::shared();
    let version = env.client().apiserver_version().await.unwrap();
    assert_eq!(version.git_version, bosun_testenv::KUBERNETES_VERSION);
}

#[tokio::test]
async fn custom_resource_with_status_subresource() {
    let env = TestEnv::shared();
    let client = env.client();
    let namespace = env.namespace("crd").await;
    let resource = install_widget_crd(env).await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);

    let created = widgets.create(&PostParams::default(), &widget(&resource, "w", json!({ "size": 3 }))).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // The main resource ignores status; the status subresource ignores spec.
    let mut with_status = created.clone();
    with_status.data["status"] = json!({ "phase": "Ignored" });
    let replaced = widgets.replace("w", &PostParams::default(), &with_status).await.unwrap();
    assert!(replaced.data.get("status").is_none(), "status written through the main resource");

    let status = json!({ "status": { "phase": "Ready" }, "spec": { "size": 9 } });
    let patched = widgets.patch_status("w", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    assert_eq!(patched.data["status"]["phase"], "Ready");
    assert_eq!(patched.data["spec"]["size"], 3, "spec written through the status subresource");
    assert_eq!(patched.metadata.generation, Some(1), "a status write does not bump the generation");
}

#[tokio::test]
async fn schema_validation_rejects_bad_objects() {
    let env = TestEnv::shared();
    let client = env.client();
    let namespace = env.namespace("schema").await;
    let resource = install_widget_crd(env).await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);

    for (spec, complaint) in
        [(json!({ "size": 11 }), "spec.size"), (json!({ "size": "large" }), "spec.size"), (json!({}), "spec.size: Required value")]
    {
        let error = widgets.create(&PostParams::default(), &widget(&resource, "bad", spec.clone())).await.unwrap_err();
        let kube::Error::Api(status) = error else { panic!("expected an API error for {spec}, got {error}") };
        assert_eq!(status.code, 422, "{spec}");
        assert_eq!(status.reason, "Invalid", "{spec}");
        assert!(status.message.contains(complaint), "{spec}: {}", status.message);
    }
    widgets.create(&PostParams::default(), &widget(&resource, "good", json!({ "size": 10 }))).await.unwrap();
}

#[tokio::test]
async fn server_side_apply_conflict_then_force() {
    let env = TestEnv::shared();
    let namespace = env.namespace("ssa").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client(), &namespace);
    let apply = |value: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "shared" }, "data": { "owner": value },
        })
    };

    config_maps.patch("shared", &PatchParams::apply("alice"), &Patch::Apply(apply("alice"))).await.unwrap();
    let error = config_maps.patch("shared", &PatchParams::apply("bob"), &Patch::Apply(apply("bob"))).await.unwrap_err();
    let kube::Error::Api(status) = error else { panic!("expected a conflict, got {error}") };
    assert_eq!(status.code, 409);
    assert!(status.message.contains("alice"), "the conflict names the other manager: {}", status.message);

    let forced = config_maps.patch("shared", &PatchParams::apply("bob").force(), &Patch::Apply(apply("bob"))).await.unwrap();
    assert_eq!(forced.data.unwrap()["owner"], "bob");
    let managers: Vec<String> = forced.metadata.managed_fields.unwrap().into_iter().filter_map(|entry| entry.manager).collect();
    assert_eq!(managers, ["bob"], "force takes the field from alice");
}

#[tokio::test]
async fn watch_sees_added_modified_deleted() {
    let env = TestEnv::shared();
    let namespace = env.namespace("watch").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client(), &namespace);
    let version = config_maps.list_metadata(&Default::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut events =
        config_maps.watch(&WatchParams::default().fields("metadata.name=watched").timeout(60), &version).await.unwrap().boxed();

    config_maps.create(&PostParams::default(), &config_map("watched", json!({ "a": "1" }))).await.unwrap();
    let change = json!({ "data": { "a": "2" } });
    config_maps.patch("watched", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    config_maps.delete("watched", &DeleteParams::default()).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(60), events.try_next()).await.unwrap().unwrap().unwrap();
        seen.push(match event {
            WatchEvent::Added(object) => ("ADDED", object.data.unwrap()["a"].clone()),
            WatchEvent::Modified(object) => ("MODIFIED", object.data.unwrap()["a"].clone()),
            WatchEvent::Deleted(object) => ("DELETED", object.data.unwrap()["a"].clone()),
            other => panic!("unexpected watch event {other:?}"),
        });
    }
    assert_eq!(seen, [("ADDED", "1".to_owned()), ("MODIFIED", "2".to_owned()), ("DELETED", "2".to_owned())]);
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_what_it_owns() {
    let env = TestEnv::shared();
    let namespace = env.namespace("gc").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client(), &namespace);
    let owner = config_maps.create(&PostParams::default(), &config_map("owner", json!({}))).await.unwrap();
    let mut owned = config_map("owned", json!({}));
    owned.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    config_maps.create(&PostParams::default(), &owned).await.unwrap();
    let unrelated = config_maps.create(&PostParams::default(), &config_map("unrelated", json!({}))).await.unwrap();

    config_maps.delete("owner", &DeleteParams::background()).await.unwrap();
    eventually("the owned ConfigMap to be garbage-collected", async || config_maps.get_opt("owned").await.unwrap().is_none().then_some(()))
        .await;
    assert_eq!(config_maps.get("unrelated").await.unwrap().uid(), unrelated.uid());
}

#[tokio::test]
async fn deleting_a_namespace_completes() {
    let env = TestEnv::shared();
    let namespace = env.namespace("doomed").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client(), &namespace);
    config_maps.create(&PostParams::default(), &config_map("content", json!({ "k": "v" }))).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(env.client());

    namespaces.delete(&namespace, &DeleteParams::default()).await.unwrap();
    eventually("the namespace to be finalized and removed", async || namespaces.get_opt(&namespace).await.unwrap().is_none().then_some(()))
        .await;
}

#[tokio::test]
async fn service_account_gets_only_what_rbac_grants() {
    let env = TestEnv::shared();
    let namespace = env.namespace("rbac").await;
    let elsewhere = env.namespace("rbac-other").await;
    let admin = env.client();
    let robot = env.service_account_client(&namespace, "robot").await;

    let forbidden = |result: Result<_, kube::Error>| match result {
        Err(kube::Error::Api(status)) => status.code == 403,
        _ => false,
    };
    let own: Api<ConfigMap> = Api::namespaced(robot.clone(), &namespace);
    let other: Api<ConfigMap> = Api::namespaced(robot.clone(), &elsewhere);
    assert!(forbidden(own.list(&Default::default()).await.map(drop)), "nothing is granted yet");

    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "read-config" },
        "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), &namespace).create(&PostParams::default(), &role).await.unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "robot-reads-config" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-config" },
        "subjects": [{ "kind": "ServiceAccount", "name": "robot", "namespace": namespace }],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin, &namespace).create(&PostParams::default(), &binding).await.unwrap();

    eventually("the RoleBinding to take effect", async || own.list(&Default::default()).await.ok()).await;
    assert!(forbidden(other.list(&Default::default()).await.map(drop)), "another namespace");
    assert!(forbidden(own.create(&PostParams::default(), &config_map("x", json!({}))).await.map(drop)), "a write");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(robot, &namespace);
    assert!(forbidden(secrets.list(&Default::default()).await.map(drop)), "another resource");
}
