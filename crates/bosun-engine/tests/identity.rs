//! Per-controller identity: a controller annotated `bosun.dev/service-account` writes as that
//! ServiceAccount, and a sync that needs a write it may not make writes nothing and says which
//! permission is missing — whatever the engine itself may do.

#[macro_use]
mod support;

use bosun_engine::ApplyStrategy;
use bosun_engine::SERVICE_ACCOUNT_ANNOTATION;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use support::{Fixture, HookServer, Reply, TEST_LABEL, eventually};

/// Creates ServiceAccount `name` in `namespace`, bound in `bound_in` to a Role with `rules`.
async fn service_account(fixture: &Fixture, name: &str, bound_in: &str, rules: Value) {
    let created =
        |kind: &str, value: Value| serde_json::from_value::<DynamicObject>(value).unwrap_or_else(|error| panic!("{kind}: {error}"));
    let account = created("ServiceAccount", json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": name } }));
    let role = created(
        "Role",
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": { "name": name }, "rules": rules }),
    );
    let binding = created(
        "RoleBinding",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": { "name": name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
            "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": fixture.namespace }],
        }),
    );
    let api = |namespace: &str, resource: ApiResource| Api::<DynamicObject>::namespaced_with(fixture.client.clone(), namespace, &resource);
    api(&fixture.namespace, ApiResource::erase::<k8s_openapi::api::core::v1::ServiceAccount>(&()))
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    api(bound_in, ApiResource::erase::<k8s_openapi::api::rbac::v1::Role>(&())).create(&PostParams::default(), &role).await.unwrap();
    api(bound_in, ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()))
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// A CompositeController `name` over the fixture's Things labelled `owner: <name>`, with
/// ConfigMap and Secret children, acting as ServiceAccount `name` of the fixture's namespace.
async fn controller_as(fixture: &Fixture, name: &str, hooks: &HookServer) {
    let controller: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "CompositeController",
        "metadata": {
            "name": format!("{name}-{}", fixture.id),
            "labels": { TEST_LABEL: fixture.id },
            "annotations": { SERVICE_ACCOUNT_ANNOTATION: format!("{}/{name}", fixture.namespace) },
        },
        "spec": {
            "parentResource": {
                "apiVersion": fixture.things.api_version, "resource": "things",
                "labelSelector": { "matchLabels": { "owner": name } },
            },
            "childResources": [{ "apiVersion": "v1", "resource": "configmaps" }, { "apiVersion": "v1", "resource": "secrets" }],
            "hooks": { "sync": hooks.hook("sync", json!({})) },
        },
    }))
    .unwrap();
    fixture.controllers().create(&PostParams::default(), &controller).await.unwrap();
}

/// A parent `name` of the Things controller `owner` syncs.
async fn parent_of(fixture: &Fixture, owner: &str, name: &str) {
    let mut parent =
        DynamicObject::new(name, &fixture.things).data(json!({ "spec": { "selector": { "matchLabels": { "thing": name } } } }));
    parent.metadata.labels = Some([("owner".to_owned(), owner.to_owned())].into());
    fixture.parents().create(&PostParams::default(), &parent).await.unwrap();
}

/// Every parent gets a ConfigMap and a Secret.
fn config_map_and_secret(_hook: &str, request: &Value) -> Reply {
    let name = request["parent"]["metadata"]["name"].as_str().unwrap().to_owned();
    let labels = json!({ "thing": name });
    Reply::Json(json!({
        "status": { "ok": true },
        "events": [{ "type": "Normal", "reason": "Greeted", "message": format!("hello from {name}") }],
        "children": [
            { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "labels": labels }, "data": { "a": "1" } },
            { "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name, "labels": labels }, "stringData": { "b": "2" } },
        ],
    }))
}

#[tokio::test]
async fn each_controller_writes_with_its_own_rights_and_nothing_it_may_not() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let writes = |resources: &[&str], status: bool| {
        let mut rules = json!([{ "apiGroups": [""], "resources": resources, "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] }]);
        if status {
            let rules = rules.as_array_mut().unwrap();
            rules.push(json!({ "apiGroups": [fixture.things.group], "resources": ["things/status"], "verbs": ["patch"] }));
            rules.push(json!({ "apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"] }));
        }
        rules
    };
    // A may write ConfigMaps, not Secrets; B both; C both, but only in another namespace; D
    // both, but not its parents' status.
    let elsewhere = fixture.env.namespace("identity-elsewhere").await;
    service_account(&fixture, "a", &fixture.namespace, writes(&["configmaps"], true)).await;
    service_account(&fixture, "b", &fixture.namespace, writes(&["configmaps", "secrets"], true)).await;
    service_account(&fixture, "c", &elsewhere, writes(&["configmaps", "secrets"], true)).await;
    service_account(&fixture, "d", &fixture.namespace, writes(&["configmaps", "secrets"], false)).await;
    // E may do everything but patch ConfigMaps: adopting an orphan needs it.
    let mut no_patch = writes(&["secrets"], true);
    no_patch
        .as_array_mut()
        .unwrap()
        .push(json!({ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "delete"] }));
    service_account(&fixture, "e", &fixture.namespace, no_patch).await;
    let orphan = ConfigMap {
        metadata: ObjectMeta {
            name: Some("e-orphan".into()),
            labels: Some([("thing".to_owned(), "e-parent".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    fixture.config_maps().create(&PostParams::default(), &orphan).await.unwrap();
    let hooks = HookServer::start(config_map_and_secret).await;
    for name in ["a", "b", "c", "d", "e"] {
        controller_as(&fixture, name, &hooks).await;
        parent_of(&fixture, name, &format!("{name}-parent")).await;
    }

    // B's parent gets both children and its status, written as B.
    let (config_maps, secrets) = (fixture.config_maps(), Api::<Secret>::namespaced(fixture.client.clone(), &fixture.namespace));
    eventually("B's children", async || {
        let both = config_maps.get_opt("b-parent").await.unwrap().is_some() && secrets.get_opt("b-parent").await.unwrap().is_some();
        both.then_some(())
    })
    .await;

    // A may not create the Secret: nothing is written, not even the ConfigMap it may create,
    // and the event says what is missing.
    let message = fixture.event_with_reason("a-parent", None, "SyncError").await;
    let account = format!("{}/a", fixture.namespace);
    assert!(
        message.contains(&format!("ServiceAccount {account} may not create secrets in namespace \"{}\"", fixture.namespace))
            && message.contains("nothing was written"),
        "{message}"
    );
    assert!(!message.contains("configmaps"), "A may write ConfigMaps: {message}");
    assert!(config_maps.get_opt("a-parent").await.unwrap().is_none(), "A wrote its ConfigMap after all");
    assert!(secrets.get_opt("a-parent").await.unwrap().is_none());

    // C's Role is bound in another namespace: it may write neither here.
    let message = fixture.event_with_reason("c-parent", None, "SyncError").await;
    for missing in ["create configmaps", "create secrets"] {
        assert!(message.contains(missing), "{missing}: {message}");
    }
    assert!(config_maps.get_opt("c-parent").await.unwrap().is_none());

    // E may not adopt the orphan: nothing is written, the orphan stays an orphan.
    let message = fixture.event_with_reason("e-parent", None, "SyncError").await;
    assert!(message.contains(&format!("may not patch configmaps in namespace \"{}\"", fixture.namespace)), "{message}");
    assert!(config_maps.get("e-orphan").await.unwrap().metadata.owner_references.is_none());
    assert!(config_maps.get_opt("e-parent").await.unwrap().is_none() && secrets.get_opt("e-parent").await.unwrap().is_none());

    // D's writes are D's: its children are written, and its status write is refused by the
    // API server for D — though the engine itself may make it.
    let message = fixture.event_with_reason("d-parent", None, "SyncError").await;
    assert!(message.contains(&format!("system:serviceaccount:{}:d", fixture.namespace)) && message.contains("status"), "{message}");
    assert!(config_maps.get_opt("d-parent").await.unwrap().is_some());

    // B is not held up by the others: its status is written, and its hook's event recorded
    // (as B, which may write events).
    fixture.event_with_reason("b-parent", None, "Greeted").await;
    eventually("B's status", async || {
        let parent = fixture.parents().get("b-parent").await.unwrap();
        (parent.data["status"]["ok"] == true).then_some(())
    })
    .await;
}

/// An engine that requires identities runs no controller without one, and says why.
#[tokio::test]
async fn an_engine_that_requires_identities_runs_no_controller_without_one() {
    let fixture = Fixture::with_config(ApplyStrategy::DynamicApply, true, |config| config.require_service_account = true).await;
    let hooks = HookServer::start(config_map_and_secret).await;
    let name = fixture.composite_controller(json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    let message = fixture.event_with_reason(&name, Some("default"), "CreateError").await;
    assert!(message.contains("--require-service-account") && message.contains(SERVICE_ACCOUNT_ANNOTATION), "{message}");
}
