//! The engine stays alive under the faults a production cluster produces: a resource it may
//! not list, a controller deleted together with its CRD or its RBAC. Each fault is reported where an
//! operator looks (events, `/readyz`), and never stalls the other controllers.

mod support;

use std::time::{Duration, Instant};

use bosun_engine::ApplyStrategy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{Fixture, HookServer, Reply, config_map_per_parent, create_thing_controller, eventually, install_thing_crd};

/// A child type the engine may not list: a CreateError event names it, the controller's
/// readiness check fails, and nothing else is written.
#[tokio::test]
async fn a_child_type_the_engine_may_not_list_is_reported_and_fails_readiness() {
    let fixture = Fixture::as_service_account(ApplyStrategy::DynamicApply, Fixture::engine_rules(json!([])), |config| {
        config.cache_sync_timeout = Duration::from_secs(2)
    })
    .await;
    let hooks = HookServer::start(config_map_per_parent).await;
    let name = fixture.composite_controller(json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;

    let message = fixture.event_with_reason(&name, Some("default"), "CreateError").await;
    assert!(message.contains("configmaps could not be listed"), "{message}");
    assert!(message.contains("may list and watch them"), "{message}");
    let failing = fixture.health.readiness().expect_err("not ready while a cache cannot sync");
    assert!(failing.contains(&format!("CompositeController-{name}")), "{failing:?}");
    assert_eq!(hooks.calls(), 0, "no sync before the caches have synced");
}

/// Deleting a controller together with its CRD (as `kubectl delete -f` of an example does)
/// does not stall the lifecycle: a controller created right after starts promptly.
#[tokio::test]
async fn deleting_a_controller_with_its_crd_does_not_stall_the_others() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|hook, request| match hook {
        "finalize" => Reply::Json(json!({ "finalized": false })),
        _ => config_map_per_parent(hook, request),
    })
    .await;
    let spec = json!({ "hooks": { "sync": hooks.hook("sync", json!({})), "finalize": hooks.hook("finalize", json!({})) } });
    let first = fixture.composite_controller(spec.clone()).await;
    fixture.event_with_reason(&first, Some("default"), "Started").await;
    for name in ["a", "b", "c"] {
        fixture.parent(name, json!({ "data": { "a": "1" } })).await;
    }
    let finalizer = format!("metacontroller.io/compositecontroller-{first}");
    eventually("the parents' finalizers", async || {
        let parents = fixture.parents().list(&Default::default()).await.unwrap();
        parents.items.iter().all(|parent| parent.finalizers().contains(&finalizer)).then_some(())
    })
    .await;

    // The CRD and the controller go at once; another controller, of another type, comes.
    let crds: Api<CustomResourceDefinition> = Api::all(fixture.client.clone());
    crds.delete(&format!("{}.{}", fixture.things.plural, fixture.things.group), &DeleteParams::default()).await.unwrap();
    fixture.controllers().delete(&first, &DeleteParams::default()).await.unwrap();
    let other = install_thing_crd(fixture.env, &format!("other-{}", fixture.id), true).await;
    let second = format!("others-{}", fixture.id);
    let deleted = Instant::now();
    create_thing_controller(&fixture.client, &second, json!({ support::TEST_LABEL: fixture.id }), &other, spec).await;
    fixture.event_with_reason(&second, Some("default"), "Started").await;
    let took = deleted.elapsed();
    println!("the next controller started {took:?} after the deletion");
    assert!(took < Duration::from_secs(20), "the lifecycle stalled for {took:?}");

    // The deleted type's finalizers were released, so the CRD could go.
    eventually("the CRD to be gone", async || {
        crds.get_opt(&format!("{}.{}", fixture.things.plural, fixture.things.group)).await.unwrap().is_none().then_some(())
    })
    .await;
}

/// Grants the engine's ServiceAccount `things` of `group`, as an example's own RBAC does;
/// returns the name of the ClusterRole and its binding.
async fn grant_things(fixture: &Fixture, group: &str) -> String {
    let name = format!("example-{group}");
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": { "name": name },
        "rules": [
            { "apiGroups": [group], "resources": ["things"], "verbs": ["get", "list", "watch", "patch", "update"] },
            { "apiGroups": [group], "resources": ["things/status"], "verbs": ["patch"] },
        ],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
        "subjects": [{ "kind": "ServiceAccount", "name": "engine", "namespace": fixture.namespace }],
    });
    let roles: Api<ClusterRole> = Api::all(fixture.client.clone());
    roles.create(&PostParams::default(), &serde_json::from_value(role).unwrap()).await.unwrap();
    let bindings: Api<ClusterRoleBinding> = Api::all(fixture.client.clone());
    bindings.create(&PostParams::default(), &serde_json::from_value(binding).unwrap()).await.unwrap();
    name
}

/// Deleting a controller together with the RBAC that lets the engine read its parents (as
/// `kubectl delete -f` of an example does; the CRD stays) does not stall the lifecycle either.
#[tokio::test]
async fn deleting_a_controller_with_its_rbac_does_not_stall_the_others() {
    let base = json!([
        { "apiGroups": ["metacontroller.k8s.io"], "resources": ["compositecontrollers", "decoratorcontrollers"], "verbs": ["get", "list", "watch"] },
        { "apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"] },
        { "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] },
    ]);
    let fixture = Fixture::as_service_account(ApplyStrategy::DynamicApply, base, |_| {}).await;
    let rbac = grant_things(&fixture, &fixture.things.group).await;
    let hooks = HookServer::start(|hook, request| match hook {
        "finalize" => Reply::Json(json!({ "finalized": false })),
        _ => config_map_per_parent(hook, request),
    })
    .await;
    let spec = json!({ "hooks": { "sync": hooks.hook("sync", json!({})), "finalize": hooks.hook("finalize", json!({})) } });
    let first = fixture.composite_controller(spec.clone()).await;
    fixture.event_with_reason(&first, Some("default"), "Started").await;
    for name in ["a", "b", "c"] {
        fixture.parent(name, json!({ "data": { "a": "1" } })).await;
    }
    let finalizer = format!("metacontroller.io/compositecontroller-{first}");
    eventually("the parents' finalizers", async || {
        let parents = fixture.parents().list(&Default::default()).await.unwrap();
        parents.items.iter().all(|parent| parent.finalizers().contains(&finalizer)).then_some(())
    })
    .await;

    // The controller and its RBAC go at once; another example comes with its own CRD and RBAC.
    let roles: Api<ClusterRole> = Api::all(fixture.client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(fixture.client.clone());
    bindings.delete(&rbac, &DeleteParams::default()).await.unwrap();
    roles.delete(&rbac, &DeleteParams::default()).await.unwrap();
    fixture.controllers().delete(&first, &DeleteParams::default()).await.unwrap();
    let other = install_thing_crd(fixture.env, &format!("other-{}", fixture.id), true).await;
    grant_things(&fixture, &other.group).await;
    let second = format!("others-{}", fixture.id);
    let deleted = Instant::now();
    create_thing_controller(&fixture.client, &second, json!({ support::TEST_LABEL: fixture.id }), &other, spec).await;
    fixture.event_with_reason(&second, Some("default"), "Started").await;
    let took = deleted.elapsed();
    println!("the next controller started {took:?} after the deletion");
    assert!(took < Duration::from_secs(20), "the lifecycle stalled for {took:?}");
}
