//! CompositeController against a real control plane and real loopback hook servers. Every
//! scenario that writes children runs with both apply strategies.

#[macro_use]
mod support;

use std::time::Duration;

use bosun_engine::ApplyStrategy;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Fixture, HookServer, Reply, config_map_per_parent, desired_config_map, eventually};

with_both_strategies!(
    sync_creates_children_and_writes_status,
    deleted_child_is_recreated,
    in_place_restores_out_of_band_changes,
    on_delete_leaves_changed_children_alone,
    recreate_replaces_changed_children,
    deleting_the_parent_garbage_collects_children,
    resync_after_and_resync_period_sync_again,
    hook_versions_key_and_decode_differently,
    orphans_are_adopted_and_non_matching_children_released,
    a_cluster_scoped_parent_adopts_namespaced_orphans,
    owner_references_the_hook_sets_are_kept,
    generate_selector_labels_children_with_the_parent_uid,
    finalize_runs_until_finalized_then_removes_the_finalizer,
    finalize_runs_when_a_parent_stops_matching,
    a_child_name_taken_by_another_controller_is_reported,
    every_hook_failure_leaves_children_untouched,
    too_many_requests_retries_after_the_delay_without_an_error,
    steady_state_makes_no_writes,
);

/// A fixture with the standard hook and one converged parent `p` with `data: {a: "1"}`.
async fn converged(strategy: ApplyStrategy, controller: Value) -> (Fixture, HookServer) {
    let fixture = Fixture::new(strategy).await;
    let hooks = HookServer::start(config_map_per_parent).await;
    let mut spec = json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } });
    support::merge_into(&mut spec, controller);
    fixture.composite_controller(spec).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    wait_for_data(&fixture, "p-config", "1").await;
    (fixture, hooks)
}

async fn wait_for_data(fixture: &Fixture, name: &str, value: &str) -> k8s_openapi::api::core::v1::ConfigMap {
    eventually(&format!("{name} with a={value}"), async || {
        let config_map = fixture.config_maps().get_opt(name).await.unwrap()?;
        (config_map.data.as_ref()?.get("a")? == value).then_some(config_map)
    })
    .await
}

/// Waits until the parent's status reports its current generation.
async fn wait_for_observed_generation(fixture: &Fixture, name: &str) -> Value {
    eventually("status.observedGeneration to reach the generation", async || {
        let parent = fixture.parents().get(name).await.unwrap();
        let status = parent.data.get("status")?.clone();
        (status["observedGeneration"] == json!(parent.metadata.generation?)).then_some(status)
    })
    .await
}

async fn set_parent_data(fixture: &Fixture, name: &str, value: &str) {
    let patch = json!({ "spec": { "data": { "a": value } } });
    fixture.parents().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

async fn edit_child_by_hand(fixture: &Fixture, name: &str, value: &str) {
    let patch = json!({ "data": { "a": value } });
    fixture.config_maps().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

async fn sync_creates_children_and_writes_status(strategy: ApplyStrategy) {
    let (fixture, _hooks) = converged(strategy, json!({})).await;
    let child = fixture.config_maps().get("p-config").await.unwrap();
    let parent = fixture.parents().get("p").await.unwrap();
    let owner = &child.owner_references()[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller, owner.block_owner_deletion),
        (parent.uid().unwrap().as_str(), Some(true), Some(true))
    );
    assert_eq!(child.labels().get("thing").map(String::as_str), Some("p"));
    let status = wait_for_observed_generation(&fixture, "p").await;
    assert_eq!(status["phase"], "Synced");
    assert_eq!(status["observedGeneration"], 1);
}

async fn deleted_child_is_recreated(strategy: ApplyStrategy) {
    let (fixture, _hooks) = converged(strategy, json!({})).await;
    let first = fixture.config_maps().get("p-config").await.unwrap().uid();
    fixture.config_maps().delete("p-config", &DeleteParams::default()).await.unwrap();
    eventually("the child to be recreated", async || {
        let again = fixture.config_maps().get_opt("p-config").await.unwrap()?;
        (again.uid() != first).then_some(())
    })
    .await;
}

fn sync_and_finalize(hooks: &HookServer) -> Value {
    json!({ "hooks": { "sync": hooks.hook("sync", json!({})), "finalize": hooks.hook("finalize", json!({})) } })
}

fn with_method(method: &str) -> Value {
    json!({ "childResources": [{ "apiVersion": "v1", "resource": "configmaps", "updateStrategy": { "method": method } }] })
}

async fn in_place_restores_out_of_band_changes(strategy: ApplyStrategy) {
    let (fixture, _hooks) = converged(strategy, with_method("InPlace")).await;
    let uid = fixture.config_maps().get("p-config").await.unwrap().uid();
    edit_child_by_hand(&fixture, "p-config", "by hand").await;
    assert_eq!(wait_for_data(&fixture, "p-config", "1").await.uid(), uid, "restored in place");
    set_parent_data(&fixture, "p", "2").await;
    assert_eq!(wait_for_data(&fixture, "p-config", "2").await.uid(), uid, "updated in place");
}

async fn on_delete_leaves_changed_children_alone(strategy: ApplyStrategy) {
    let (fixture, hooks) = converged(strategy, json!({})).await;
    let uid = fixture.config_maps().get("p-config").await.unwrap().uid();
    edit_child_by_hand(&fixture, "p-config", "by hand").await;
    set_parent_data(&fixture, "p", "2").await;
    // The sync for generation 2 has run once its status reports it; the child is untouched.
    wait_for_observed_generation(&fixture, "p").await;
    assert!(hooks.requests().iter().any(|(_, request)| request["parent"]["spec"]["data"]["a"] == "2"));
    let child = fixture.config_maps().get("p-config").await.unwrap();
    assert_eq!((child.uid(), child.data.unwrap()["a"].as_str()), (uid, "by hand"));
    // Deleting it is how OnDelete updates: the replacement has the new state.
    fixture.config_maps().delete("p-config", &DeleteParams::default()).await.unwrap();
    wait_for_data(&fixture, "p-config", "2").await;
}

async fn recreate_replaces_changed_children(strategy: ApplyStrategy) {
    let (fixture, _hooks) = converged(strategy, with_method("Recreate")).await;
    let uid = fixture.config_maps().get("p-config").await.unwrap().uid();
    edit_child_by_hand(&fixture, "p-config", "by hand").await;
    let replaced = wait_for_data(&fixture, "p-config", "1").await;
    assert_ne!(replaced.uid(), uid, "recreated, not updated");
}

async fn deleting_the_parent_garbage_collects_children(strategy: ApplyStrategy) {
    let (fixture, _hooks) = converged(strategy, json!({})).await;
    fixture.parents().delete("p", &DeleteParams::background()).await.unwrap();
    eventually("the garbage collector to delete the child", async || {
        fixture.config_maps().get_opt("p-config").await.unwrap().is_none().then_some(())
    })
    .await;
}

async fn resync_after_and_resync_period_sync_again(strategy: ApplyStrategy) {
    // resyncAfterSeconds from the hook.
    let fixture = Fixture::new(strategy.clone()).await;
    let hooks = HookServer::start(|_, request| {
        let mut response = desired_config_map(request);
        response["resyncAfterSeconds"] = json!(0.2);
        Reply::Json(response)
    })
    .await;
    fixture.composite_controller(json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    wait_for_data(&fixture, "p-config", "1").await;
    let calls = hooks.calls();
    eventually("resyncAfterSeconds to bring more syncs", async || (hooks.calls() >= calls + 3).then_some(())).await;

    // resyncPeriodSeconds on the controller.
    let fixture = Fixture::new(strategy).await;
    let hooks = HookServer::start(config_map_per_parent).await;
    fixture.composite_controller(json!({ "resyncPeriodSeconds": 1, "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    wait_for_data(&fixture, "p-config", "1").await;
    let calls = hooks.calls();
    eventually("resyncPeriodSeconds to bring more syncs", async || (hooks.calls() >= calls + 2).then_some(())).await;
}

async fn hook_versions_key_and_decode_differently(strategy: ApplyStrategy) {
    for (version, expected_key) in [("v1", "p-config".to_owned()), ("v2", String::new())] {
        let fixture = Fixture::new(strategy.clone()).await;
        let hooks = HookServer::start(|_, request| {
            let mut response = desired_config_map(request);
            response["unknownField"] = json!(true);
            Reply::Json(response)
        })
        .await;
        let hook = hooks.hook("sync", json!({ "version": version }));
        let mut spec = with_method("InPlace");
        spec["hooks"] = json!({ "sync": hook });
        fixture.composite_controller(spec).await;
        fixture.parent("p", json!({ "data": { "a": "1" } })).await;
        if version == "v1" {
            // Loose decoding ignores the unknown field; children are keyed by name.
            wait_for_data(&fixture, "p-config", "1").await;
            set_parent_data(&fixture, "p", "2").await;
            wait_for_data(&fixture, "p-config", "2").await;
            let keys = eventually("a request that observed the child", async || {
                hooks.requests().into_iter().rev().find_map(|(_, request)| {
                    let children = request["children"]["ConfigMap.v1"].as_object()?.clone();
                    (!children.is_empty()).then_some(children.keys().cloned().collect::<Vec<_>>())
                })
            })
            .await;
            assert_eq!(keys, std::slice::from_ref(&expected_key));
        } else {
            // Strict decoding refuses it: nothing is created, and the event says why.
            let message = fixture.event_with_reason("p", None, "SyncError").await;
            assert!(message.contains("unknownField") && message.contains("loose"), "{message}");
            assert!(fixture.config_maps().get_opt("p-config").await.unwrap().is_none());
            // Without the unknown field, v2 keys are namespace/name.
            hooks.script(config_map_per_parent);
            wait_for_data(&fixture, "p-config", "1").await;
            set_parent_data(&fixture, "p", "2").await;
            wait_for_data(&fixture, "p-config", "2").await;
            let expected = format!("{}/p-config", fixture.namespace);
            let keys = eventually("a request that observed the child", async || {
                hooks.requests().into_iter().rev().find_map(|(_, request)| {
                    let children = request["children"]["ConfigMap.v1"].as_object()?.clone();
                    (!children.is_empty()).then_some(children.keys().cloned().collect::<Vec<_>>())
                })
            })
            .await;
            assert_eq!(keys, [expected]);
        }
    }
}

async fn orphans_are_adopted_and_non_matching_children_released(strategy: ApplyStrategy) {
    let fixture = Fixture::new(strategy).await;
    let hooks = HookServer::start(config_map_per_parent).await;
    // An orphan with the desired name and matching labels exists before the parent.
    let orphan: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "p-config", "labels": { "thing": "p" } },
        "data": { "a": "old" },
    }))
    .unwrap();
    let orphan = fixture.config_maps().create(&PostParams::default(), &orphan).await.unwrap();
    fixture.composite_controller(json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    let parent = fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    eventually("the orphan to be adopted", async || {
        let child = fixture.config_maps().get("p-config").await.unwrap();
        child.owner_references().iter().any(|owner| Some(&owner.uid) == parent.uid().as_ref()).then_some(())
    })
    .await;
    assert_eq!(fixture.config_maps().get("p-config").await.unwrap().uid(), orphan.uid(), "adopted, not replaced");

    // A child the parent controls whose labels stop matching is released, not deleted.
    let owned: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "stray",
            "labels": { "thing": "someone-else" },
            "ownerReferences": [support_owner(&fixture, &parent)],
        },
    }))
    .unwrap();
    fixture.config_maps().create(&PostParams::default(), &owned).await.unwrap();
    eventually("the non-matching child to be released", async || {
        let stray = fixture.config_maps().get("stray").await.unwrap();
        stray.owner_references().is_empty().then_some(())
    })
    .await;
}

/// A cluster-scoped parent claims namespaced children in any namespace, as Metacontroller:
/// an orphan that matches is adopted, not refused as a name taken.
async fn a_cluster_scoped_parent_adopts_namespaced_orphans(strategy: ApplyStrategy) {
    let fixture = Fixture::new(strategy).await;
    let realms = support::install_cluster_thing_crd(fixture.env, &fixture.id).await;
    let namespace = fixture.namespace.clone();
    let hooks = HookServer::start(move |_, request| {
        let mut response = desired_config_map(request);
        response["children"][0]["metadata"]["namespace"] = json!(namespace);
        Reply::Json(response)
    })
    .await;
    let name = format!("c-{}", fixture.id);
    let orphan: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": format!("{name}-config"), "labels": { "thing": name } },
        "data": { "a": "old" },
    }))
    .unwrap();
    let orphan = fixture.config_maps().create(&PostParams::default(), &orphan).await.unwrap();
    let labels = json!({ support::TEST_LABEL: fixture.id });
    let spec = json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } });
    support::create_thing_controller(&fixture.client, &format!("realms-{}", fixture.id), labels, &realms, spec).await;
    let parents: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(fixture.client.clone(), &realms);
    let parent = kube::api::DynamicObject::new(&name, &realms)
        .data(json!({ "spec": { "selector": { "matchLabels": { "thing": name } }, "data": { "a": "1" } } }));
    let parent = parents.create(&PostParams::default(), &parent).await.unwrap();
    eventually("the orphan to be adopted", async || {
        let child = fixture.config_maps().get(&format!("{name}-config")).await.unwrap();
        child.owner_references().iter().any(|owner| Some(&owner.uid) == parent.uid().as_ref()).then_some(())
    })
    .await;
    assert_eq!(fixture.config_maps().get(&format!("{name}-config")).await.unwrap().uid(), orphan.uid(), "adopted, not replaced");
    parents.delete(&name, &DeleteParams::default()).await.unwrap();
}

/// Owner references the hook sets on a child are kept beside the parent's controller
/// reference (Metacontroller appends its own); steady state still writes nothing. A hook
/// naming another controller is refused, with the child left as it was.
async fn owner_references_the_hook_sets_are_kept(strategy: ApplyStrategy) {
    let fixture = Fixture::new(strategy).await;
    let anchor: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "anchor" } })).unwrap();
    let anchor = fixture.config_maps().create(&PostParams::default(), &anchor).await.unwrap();
    let reference = json!({ "apiVersion": "v1", "kind": "ConfigMap", "name": "anchor", "uid": anchor.uid() });
    let hook_reference = reference.clone();
    let hooks = HookServer::start(move |_, request| {
        let mut response = desired_config_map(request);
        response["children"][0]["metadata"]["ownerReferences"] = json!([hook_reference]);
        Reply::Json(response)
    })
    .await;
    fixture.composite_controller(json!({ "resyncPeriodSeconds": 1, "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    let parent = fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    let child = wait_for_data(&fixture, "p-config", "1").await;
    let references: Vec<(String, Option<bool>)> =
        child.owner_references().iter().map(|reference| (reference.uid.clone(), reference.controller)).collect();
    assert_eq!(references, [(anchor.uid().unwrap(), None), (parent.uid().unwrap(), Some(true))]);
    wait_for_observed_generation(&fixture, "p").await;
    support::assert_no_writes_over_resyncs(&fixture, &hooks).await;

    let mut controlling = reference;
    controlling["controller"] = json!(true);
    hooks.script(move |_, request| {
        let mut response = desired_config_map(request);
        response["children"][0]["metadata"]["ownerReferences"] = json!([controlling]);
        response["children"][0]["data"] = json!({ "a": "2" });
        Reply::Json(response)
    });
    let message = fixture.event_with_reason_containing("p", "controller: true").await;
    assert!(message.contains("anchor"), "{message}");
    wait_for_data(&fixture, "p-config", "1").await;
}

fn support_owner(fixture: &Fixture, parent: &kube::api::DynamicObject) -> Value {
    json!({
        "apiVersion": fixture.things.api_version, "kind": "Thing", "name": parent.name_any(),
        "uid": parent.uid(), "controller": true, "blockOwnerDeletion": true,
    })
}

async fn generate_selector_labels_children_with_the_parent_uid(strategy: ApplyStrategy) {
    let fixture = Fixture::new(strategy).await;
    let hooks = HookServer::start(|_, request| {
        let name = request["parent"]["metadata"]["name"].as_str().unwrap_or_default();
        Reply::Json(json!({ "children": [{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("{name}-config") }, "data": { "a": "1" },
        }]}))
    })
    .await;
    fixture.composite_controller(json!({ "generateSelector": true, "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    let object = kube::api::DynamicObject::new("p", &fixture.things).data(json!({ "spec": {} }));
    let parent = fixture.parents().create(&PostParams::default(), &object).await.unwrap();
    let child = wait_for_data(&fixture, "p-config", "1").await;
    assert_eq!(child.labels().get("controller-uid"), parent.uid().as_ref());
}

async fn finalize_runs_until_finalized_then_removes_the_finalizer(strategy: ApplyStrategy) {
    let fixture = Fixture::new(strategy).await;
    let hooks = HookServer::start(|hook, request| match hook {
        // Cleanup takes a few calls: not finalized until the hook has seen finalizing twice.
        "finalize" => Reply::Json(json!({
            "children": [],
            "finalized": request["parent"]["metadata"]["annotations"]["finalize-calls"] == "done",
        })),
        _ => config_map_per_parent(hook, request),
    })
    .await;
    let name = fixture.composite_controller(sync_and_finalize(&hooks)).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    wait_for_data(&fixture, "p-config", "1").await;
    let finalizer = format!("metacontroller.io/compositecontroller-{name}");
    eventually("the finalizer to be added", async || {
        fixture.parents().get("p").await.unwrap().finalizers().contains(&finalizer).then_some(())
    })
    .await;

    fixture.parents().delete("p", &DeleteParams::default()).await.unwrap();
    eventually("finalize to be called", async || {
        hooks.requests().iter().any(|(hook, request)| hook == "finalize" && request["finalizing"] == true).then_some(())
    })
    .await;
    eventually("the children to be removed by the finalize response", async || {
        fixture.config_maps().get_opt("p-config").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(fixture.parents().get_opt("p").await.unwrap().is_some(), "held by the finalizer until finalized");
    let done = json!({ "metadata": { "annotations": { "finalize-calls": "done" } } });
    fixture.parents().patch("p", &PatchParams::default(), &Patch::Merge(&done)).await.unwrap();
    eventually("the parent to be deleted once finalized", async || fixture.parents().get_opt("p").await.unwrap().is_none().then_some(()))
        .await;
}

async fn finalize_runs_when_a_parent_stops_matching(strategy: ApplyStrategy) {
    let fixture = Fixture::new(strategy).await;
    let hooks = HookServer::start(|hook, request| match hook {
        "finalize" => Reply::Json(json!({ "children": [], "finalized": true })),
        _ => config_map_per_parent(hook, request),
    })
    .await;
    let mut spec = sync_and_finalize(&hooks);
    spec["parentResource"] = json!({ "labelSelector": { "matchLabels": { "managed": "yes" } } });
    let name = fixture.composite_controller(spec).await;
    let mut object = kube::api::DynamicObject::new("p", &fixture.things)
        .data(json!({ "spec": { "selector": { "matchLabels": { "thing": "p" } }, "data": { "a": "1" } } }));
    object.metadata.labels = Some([("managed".to_owned(), "yes".to_owned())].into());
    fixture.parents().create(&PostParams::default(), &object).await.unwrap();
    wait_for_data(&fixture, "p-config", "1").await;
    let finalizer = format!("metacontroller.io/compositecontroller-{name}");
    eventually("the finalizer", async || fixture.parents().get("p").await.unwrap().finalizers().contains(&finalizer).then_some(())).await;

    // Opting out runs finalize: its children go, the finalizer goes, the parent stays.
    let opt_out = json!({ "metadata": { "labels": { "managed": "no" } } });
    fixture.parents().patch("p", &PatchParams::default(), &Patch::Merge(&opt_out)).await.unwrap();
    eventually("finalize to clean up after the opt-out", async || {
        let parent = fixture.parents().get("p").await.unwrap();
        let child = fixture.config_maps().get_opt("p-config").await.unwrap();
        (child.is_none() && !parent.finalizers().contains(&finalizer)).then_some(())
    })
    .await;
    assert!(hooks.requests().iter().any(|(hook, request)| hook == "finalize" && request["finalizing"] == true));
}

async fn a_child_name_taken_by_another_controller_is_reported(strategy: ApplyStrategy) {
    let fixture = Fixture::new(strategy).await;
    let hooks = HookServer::start(config_map_per_parent).await;
    let other: k8s_openapi::api::core::v1::ConfigMap = fixture
        .config_maps()
        .create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": "other-owner" } })).unwrap())
        .await
        .unwrap();
    let taken: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "p-config",
            "labels": { "thing": "p" },
            "ownerReferences": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": "other-owner", "uid": other.uid(), "controller": true }],
        },
        "data": { "a": "theirs" },
    }))
    .unwrap();
    fixture.config_maps().create(&PostParams::default(), &taken).await.unwrap();
    fixture.composite_controller(json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    let message = fixture.event_with_reason_containing("p", "already exists").await;
    assert!(message.contains("controlled by ConfigMap other-owner"), "{message}");
    let untouched = fixture.config_maps().get("p-config").await.unwrap();
    assert_eq!(untouched.data.unwrap()["a"], "theirs");
}

async fn every_hook_failure_leaves_children_untouched(strategy: ApplyStrategy) {
    let (fixture, hooks) = converged(strategy, json!({})).await;
    let before = fixture.config_maps().get("p-config").await.unwrap();
    let parent_namespace = fixture.namespace.clone();
    type Script = Box<dyn Fn(&str, &Value) -> Reply + Send + Sync>;
    let failures: Vec<(&str, Script, &str)> = vec![
        ("non-200", Box::new(|_, _| Reply::Status(500, "boom".into())), "HTTP 500: boom"),
        ("malformed JSON", Box::new(|_, _| Reply::Status(200, "{not json".into())), "not valid"),
        (
            "a child without kind",
            Box::new(|_, _| Reply::Json(json!({ "children": [{ "apiVersion": "v1", "metadata": { "name": "x" } }] }))),
            "has no kind",
        ),
        ("a null child", Box::new(|_, _| Reply::Json(json!({ "children": [null] }))), "children[0] is null"),
        (
            "a child in another namespace",
            Box::new(|_, request| {
                let mut response = desired_config_map(request);
                response["children"][0]["metadata"]["namespace"] = json!("elsewhere");
                Reply::Json(response)
            }),
            "can only own children in its own namespace",
        ),
        (
            "a child outside the selector",
            Box::new(|_, request| {
                let mut response = desired_config_map(request);
                response["children"][0]["metadata"]["labels"] = json!({ "thing": "other" });
                Reply::Json(response)
            }),
            "do not match the parent's selector",
        ),
        (
            "a child with a mistyped metadata field",
            Box::new(|_, request| {
                let mut response = desired_config_map(request);
                response["children"][0]["metadata"]["finalizers"] = json!(5);
                Reply::Json(response)
            }),
            "not a valid object",
        ),
        (
            "a child of an undeclared type",
            Box::new(|_, _| Reply::Json(json!({ "children": [{ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "s" } }] }))),
            "not one of the CompositeController's childResources",
        ),
        (
            "an empty response, which would delete every child, after a 503",
            Box::new(|_, _| Reply::Status(503, "unavailable".into())),
            "HTTP 503",
        ),
    ];
    for (round, (what, script, expected)) in failures.into_iter().enumerate() {
        hooks.script(script);
        set_parent_data(&fixture, "p", &format!("round-{round}")).await;
        eventually(&format!("a SyncError event for {what}"), async || {
            let events = fixture.events("p", Some(&parent_namespace)).await;
            events
                .iter()
                .any(|(kind, reason, message)| kind == "Warning" && reason == "SyncError" && message.contains(expected))
                .then_some(())
        })
        .await;
        let after = fixture.config_maps().get("p-config").await.unwrap();
        assert_eq!((after.uid(), after.data.clone()), (before.uid(), before.data.clone()), "{what}: the child is untouched");
    }

    // A timeout (a shorter one, so the test stays quick) and a refused connection.
    let hanging = HookServer::start(|_, _| Reply::Hang(Duration::from_secs(5))).await;
    let timeout = json!({ "hooks": { "sync": hanging.hook("sync", json!({ "webhook": { "timeout": "500ms" } })) } });
    restart_with(&fixture, timeout).await;
    set_parent_data(&fixture, "p", "timeout").await;
    let message = fixture.event_with_reason_containing("p", "no response within the timeout").await;
    assert!(message.contains("500ms"), "{message}");
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    restart_with(&fixture, json!({ "hooks": { "sync": { "webhook": { "url": format!("http://{refused}/sync") } } } })).await;
    set_parent_data(&fixture, "p", "refused").await;
    fixture.event_with_reason_containing("p", "refused").await;
    let after = fixture.config_maps().get("p-config").await.unwrap();
    assert_eq!((after.uid(), after.data), (before.uid(), before.data), "the child is untouched");
}

/// Replaces the CompositeController's spec fields in `spec` (the hosted controller restarts).
async fn restart_with(fixture: &Fixture, spec: Value) {
    let name = format!("things-{}", fixture.id);
    let patch = json!({ "spec": spec });
    fixture.controllers().patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

impl Fixture {
    async fn event_with_reason_containing(&self, name: &str, text: &str) -> String {
        eventually(&format!("a SyncError event on {name} containing {text:?}"), async || {
            self.events(name, None)
                .await
                .into_iter()
                .find(|(_, reason, message)| reason == "SyncError" && message.contains(text))
                .map(|(_, _, message)| message)
        })
        .await
    }
}

async fn too_many_requests_retries_after_the_delay_without_an_error(strategy: ApplyStrategy) {
    let fixture = Fixture::new(strategy).await;
    let hooks = HookServer::start(|_, _| Reply::TooManyRequests(Some("1".into()))).await;
    fixture.composite_controller(json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    eventually("the first call", async || (hooks.calls() >= 1).then_some(())).await;
    hooks.script(config_map_per_parent);
    wait_for_data(&fixture, "p-config", "1").await;
    let events = fixture.events("p", None).await;
    assert!(events.iter().all(|(_, reason, _)| reason != "SyncError"), "429 is not an error: {events:?}");
}

async fn steady_state_makes_no_writes(strategy: ApplyStrategy) {
    let (fixture, hooks) = converged(strategy, json!({ "resyncPeriodSeconds": 1 })).await;
    wait_for_observed_generation(&fixture, "p").await;
    support::assert_no_writes_over_resyncs(&fixture, &hooks).await;
}

/// With `ignoreStatusChanges`, a change to a parent's status alone brings no sync; without
/// it, it does. A status-only change is made by hand, then a label; every hook request in
/// between would carry the hand-made status without the label.
#[tokio::test]
async fn ignore_status_changes_skips_status_only_updates() {
    for ignore in [true, false] {
        let (fixture, hooks) = converged(ApplyStrategy::DynamicApply, json!({ "parentResource": { "ignoreStatusChanges": ignore } })).await;
        wait_for_observed_generation(&fixture, "p").await;
        let status = json!({ "status": { "byHand": true } });
        fixture.parents().patch_status("p", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
        if !ignore {
            // Wait for it, or the label's event could reach the queue first and fold both into one sync.
            eventually("a sync for the status-only change", async || {
                hooks.requests().iter().any(|(_, request)| request["parent"]["status"]["byHand"] == true).then_some(())
            })
            .await;
        }
        let label = json!({ "metadata": { "labels": { "touched": "yes" } } });
        fixture.parents().patch("p", &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
        eventually("the sync for the label change", async || {
            hooks.requests().iter().any(|(_, request)| request["parent"]["metadata"]["labels"]["touched"] == "yes").then_some(())
        })
        .await;
        let status_only_syncs = hooks
            .requests()
            .iter()
            .filter(|(_, request)| {
                let parent = &request["parent"];
                parent["status"]["byHand"] == true && parent["metadata"]["labels"]["touched"].is_null()
            })
            .count();
        assert_eq!(status_only_syncs == 0, ignore, "ignoreStatusChanges: {ignore}");
    }
}

#[tokio::test]
async fn a_parent_without_status_subresource_gets_a_create_error() {
    let fixture = Fixture::with_parent_crd(ApplyStrategy::DynamicApply, false).await;
    let hooks = HookServer::start(config_map_per_parent).await;
    let name = fixture.composite_controller(json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    let message = fixture.event_with_reason(&name, Some("default"), "CreateError").await;
    assert!(message.contains("status subresource"), "{message}");
}

#[tokio::test]
async fn controller_lifecycle_events_and_finalizers_released_on_delete() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|hook, request| match hook {
        "finalize" => Reply::Json(json!({ "finalized": false })),
        _ => config_map_per_parent(hook, request),
    })
    .await;
    let name = fixture.composite_controller(sync_and_finalize(&hooks)).await;
    fixture.event_with_reason(&name, Some("default"), "Started").await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    let finalizer = format!("metacontroller.io/compositecontroller-{name}");
    eventually("the finalizer", async || fixture.parents().get("p").await.unwrap().finalizers().contains(&finalizer).then_some(())).await;

    // An invalid rolling configuration is refused with an event that says what is wrong.
    let mut invalid = with_method("RollingInPlace");
    invalid["parentResource"] = json!({ "revisionHistory": { "fieldPaths": ["spec..template"] } });
    restart_with(&fixture, invalid).await;
    let message = fixture.event_with_reason(&name, Some("default"), "CreateError").await;
    assert!(message.contains("revisionHistory.fieldPaths[0] \"spec..template\" is not a dotted field path"), "{message}");
    restart_with(&fixture, json!({ "parentResource": { "revisionHistory": null } })).await;
    restart_with(&fixture, with_method("OnDelete")).await;
    fixture.event_with_reason(&name, Some("default"), "Stopped").await;

    // Without a finalize hook, the controller lets go of its parents.
    let without_finalize = json!({ "spec": { "hooks": { "finalize": null } } });
    fixture.controllers().patch(&name, &PatchParams::default(), &Patch::Merge(&without_finalize)).await.unwrap();
    eventually("the finalizer to be removed with the finalize hook", async || {
        (!fixture.parents().get("p").await.unwrap().finalizers().contains(&finalizer)).then_some(())
    })
    .await;
    let with_finalize = json!({ "spec": { "hooks": { "finalize": hooks.hook("finalize", json!({})) } } });
    fixture.controllers().patch(&name, &PatchParams::default(), &Patch::Merge(&with_finalize)).await.unwrap();
    eventually("the finalizer to come back with the finalize hook", async || {
        fixture.parents().get("p").await.unwrap().finalizers().contains(&finalizer).then_some(())
    })
    .await;

    // Deleting the CompositeController releases its parents.
    fixture.controllers().delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("the finalizer to be removed", async || {
        (!fixture.parents().get("p").await.unwrap().finalizers().contains(&finalizer)).then_some(())
    })
    .await;
}

/// bosun's extension: a sync response's `events` are recorded on the parent — also from a v2
/// hook, whose strict decoding accepts the field — and an invalid one fails the sync before
/// anything is written.
#[tokio::test]
async fn hook_events_are_recorded_on_the_parent() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|_, request| {
        let mut response = desired_config_map(request);
        response["events"] = json!([
            { "type": "Warning", "reason": "QuotaLow", "message": "90% of the quota is used" },
            { "reason": "Provisioned", "message": "the database is ready" },
        ]);
        Reply::Json(response)
    })
    .await;
    let spec = json!({ "hooks": { "sync": hooks.hook("sync", json!({ "version": "v2" })) } });
    fixture.composite_controller(spec).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    wait_for_data(&fixture, "p-config", "1").await;
    assert_eq!(fixture.event_with_reason("p", None, "QuotaLow").await, "90% of the quota is used");
    assert_eq!(fixture.event_with_reason("p", None, "Provisioned").await, "the database is ready");
    let events = fixture.events("p", None).await;
    assert!(events.iter().any(|(type_, reason, _)| type_ == "Warning" && reason == "QuotaLow"), "{events:?}");
    assert!(events.iter().any(|(type_, reason, _)| type_ == "Normal" && reason == "Provisioned"), "{events:?}");

    hooks.script(|_, request| {
        let mut response = desired_config_map(request);
        response["children"][0]["data"] = json!({ "a": "2" });
        response["events"] = json!([{ "type": "Error", "reason": "Bad", "message": "x" }]);
        Reply::Json(response)
    });
    set_parent_data(&fixture, "p", "2").await;
    let message = fixture.event_with_reason_containing("p", "must be Normal or Warning").await;
    assert!(message.contains("events[0].type"), "{message}");
    assert_eq!(fixture.config_maps().get("p-config").await.unwrap().data.unwrap()["a"], "1", "nothing was written");
}

/// A rollout Metacontroller left half done goes on under bosun: the parent's ControllerRevision
/// for its old fields, holding the child, is taken over; the child moves to the new fields; the
/// old revision goes; and bosun's own revision is named, labelled and owned as Metacontroller's.
#[tokio::test]
async fn a_rollout_metacontroller_left_goes_on_from_its_controller_revisions() {
    use kube::Api;
    use kube::api::{ApiResource, DynamicObject};
    use sha1::Digest;

    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(config_map_per_parent).await;
    let parent = fixture.parent("p", json!({ "data": { "a": "2" } })).await;
    let uid = parent.uid().unwrap();
    let owner = json!({ "apiVersion": fixture.things.api_version, "kind": "Thing", "name": "p", "uid": uid,
        "controller": true, "blockOwnerDeletion": true });
    // What Metacontroller left: the child as of the old fields, and the revision holding it.
    let child: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "p-config", "labels": { "thing": "p" }, "ownerReferences": [owner] },
        "data": { "a": "1" },
    }))
    .unwrap();
    fixture.config_maps().create(&PostParams::default(), &child).await.unwrap();
    let revisions_resource = ApiResource {
        group: "metacontroller.k8s.io".into(),
        version: "v1alpha1".into(),
        api_version: "metacontroller.k8s.io/v1alpha1".into(),
        kind: "ControllerRevision".into(),
        plural: "controllerrevisions".into(),
    };
    let revisions: Api<DynamicObject> = Api::namespaced_with(fixture.client.clone(), &fixture.namespace, &revisions_resource);
    let labels =
        json!({ "thing": "p", "metacontroller.k8s.io/apiGroup": fixture.things.group, "metacontroller.k8s.io/resource": "things" });
    let old: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "ControllerRevision",
        "metadata": { "name": "made-by-metacontroller", "labels": labels, "ownerReferences": [owner] },
        "parentPatch": { "spec": { "selector": { "matchLabels": { "thing": "p" } }, "data": { "a": "1" } } },
        "children": [{ "apiGroup": "", "kind": "ConfigMap", "names": ["p-config"] }],
    }))
    .unwrap();
    revisions.create(&PostParams::default(), &old).await.unwrap();

    let mut spec = json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } });
    support::merge_into(&mut spec, with_method("RollingInPlace"));
    fixture.composite_controller(spec).await;
    wait_for_data(&fixture, "p-config", "2").await;
    let latest = eventually("only bosun's revision for the new fields left", async || {
        let mut listed = revisions.list(&Default::default()).await.unwrap().items;
        (listed.len() == 1 && listed[0].name_any() != "made-by-metacontroller").then(|| listed.remove(0))
    })
    .await;
    let mut hasher = sha1::Sha1::new();
    hasher.update(uid.as_bytes());
    hasher.update(serde_json::to_string(&json!({ "spec": parent.data["spec"] })).unwrap().as_bytes());
    let hash: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(latest.name_any(), format!("things.{}-{hash}", fixture.things.group), "Metacontroller's name");
    assert_eq!(latest.labels()["metacontroller.k8s.io/resource"], "things");
    assert_eq!(latest.labels()["metacontroller.k8s.io/apiGroup"], fixture.things.group);
    assert_eq!(latest.owner_references()[0].uid, uid);
    assert_eq!(latest.data["children"], json!([{ "apiGroup": "", "kind": "ConfigMap", "names": ["p-config"] }]));
    let updated = eventually("the Updated condition", async || {
        let status = fixture.parents().get("p").await.unwrap().data["status"].clone();
        status["conditions"].as_array()?.iter().find(|condition| condition["type"] == "Updated").cloned()
    })
    .await;
    assert_eq!(updated["reason"], "OnLatestRevision", "{updated}");
}

/// With generateSelector, a `controller-uid` label the hook sets is its own, as in
/// Metacontroller: not overwritten, so a wrong one is refused with a SyncError that names it.
#[tokio::test]
async fn a_controller_uid_the_hook_sets_is_not_overwritten() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|_, request| {
        let mut response = desired_config_map(request);
        response["children"][0]["metadata"]["labels"] = json!({ "controller-uid": "someone-else" });
        Reply::Json(response)
    })
    .await;
    fixture.composite_controller(json!({ "generateSelector": true, "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    fixture.parent("p", json!({})).await;
    let message = fixture.event_with_reason_containing("p", "someone-else").await;
    assert!(message.contains("controller-uid"), "{message}");
    assert!(fixture.config_maps().get_opt("p-config").await.unwrap().is_none(), "nothing written");
}

/// The status write is guarded by the resourceVersion the hook was shown: a change made while
/// the hook ran (here to the status alone, which with `ignoreStatusChanges` brings no sync of
/// its own) makes the engine sync again on it rather than overwrite it.
#[tokio::test]
async fn a_status_written_meanwhile_is_not_overwritten() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|_, request| {
        // No children, whose events would bring another sync; this hook carries forward a note
        // someone else writes into the status.
        let mut status = json!({ "phase": "Synced" });
        if let Some(note) = request["parent"]["status"].get("note") {
            status["note"] = note.clone();
        }
        Reply::Slow(Duration::from_secs(2), json!({ "status": status, "children": [] }))
    })
    .await;
    let spec = json!({ "parentResource": { "ignoreStatusChanges": true }, "hooks": { "sync": hooks.hook("sync", json!({})) } });
    fixture.composite_controller(spec).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    eventually("the first hook call", async || (hooks.calls() >= 1).then_some(())).await;
    let note = json!({ "status": { "note": "written meanwhile" } });
    fixture.parents().patch_status("p", &PatchParams::default(), &Patch::Merge(&note)).await.unwrap();
    eventually("the engine's status to keep the note", async || {
        let status = fixture.parents().get("p").await.unwrap().data["status"].clone();
        (status["note"] == "written meanwhile" && status["phase"] == "Synced").then_some(())
    })
    .await;
}

/// A hook without a `webhook` counts as no hook, as in Metacontroller, rather than stopping the
/// controller.
#[tokio::test]
async fn a_hook_without_a_webhook_counts_as_none() {
    let (fixture, _hooks) = converged(ApplyStrategy::DynamicApply, json!({ "hooks": { "customize": {}, "finalize": {} } })).await;
    assert!(fixture.parents().get("p").await.unwrap().finalizers().is_empty(), "no finalize hook, no finalizer");
}
