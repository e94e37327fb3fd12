//! DecoratorController against a real control plane and real loopback hook servers: labels,
//! annotations and status applied to targets of any kind, attachments created and cleaned up,
//! finalize on deletion and on selector opt-out, and no finalizer left behind.

#[macro_use]
mod support;

use std::collections::BTreeMap;

use bosun_engine::ApplyStrategy;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::{Fixture, HookServer, Reply, eventually};

const ANNOTATION: &str = "metacontroller.k8s.io/decorator-controller";

/// The test hook: every target gets `decorated: yes` (and loses `remove-me`), an annotation,
/// and — while its `data.attach` is `yes` — a Secret attachment `<name>-extra`.
fn decorate(hook: &str, request: &Value) -> Reply {
    let object = &request["object"];
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if hook == "finalize" {
        return Reply::Json(json!({ "attachments": [], "finalized": true }));
    }
    let attachments = if object["data"]["attach"] == "yes" {
        json!([{
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": format!("{name}-extra") },
            "data": { "token": "c2VjcmV0" },
        }])
    } else {
        json!([])
    };
    Reply::Json(json!({
        "labels": { "decorated": "yes", "remove-me": null },
        "annotations": { "example.com/decorated-by": "bosun" },
        "attachments": attachments,
    }))
}

/// A DecoratorController over this test's ConfigMaps labelled `decorate: <id>`, with Secret
/// attachments; `extra` is merged into the spec.
async fn decorate_config_maps(fixture: &Fixture, hooks: &HookServer, extra: Value) -> String {
    let mut spec = json!({
        "resources": [{ "apiVersion": "v1", "resource": "configmaps", "labelSelector": { "matchLabels": { "decorate": fixture.id } } }],
        "attachments": [{ "apiVersion": "v1", "resource": "secrets", "updateStrategy": { "method": "InPlace" } }],
        "hooks": { "sync": hooks.hook("sync", json!({})) },
    });
    support::merge_into(&mut spec, extra);
    fixture.decorator_controller(spec).await
}

async fn target(fixture: &Fixture, name: &str, labels: Value, attach: &str) {
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels },
        "data": { "attach": attach },
    }))
    .unwrap();
    fixture.config_maps().create(&PostParams::default(), &config_map).await.unwrap();
}

fn secrets(fixture: &Fixture) -> Api<Secret> {
    Api::namespaced(fixture.client.clone(), &fixture.namespace)
}

async fn labels_annotations_and_attachments(strategy: ApplyStrategy) {
    let fixture = Fixture::new(strategy).await;
    let hooks = HookServer::start(decorate).await;
    let name = decorate_config_maps(&fixture, &hooks, json!({})).await;
    target(&fixture, "t", json!({ "decorate": fixture.id, "remove-me": "x", "kept": "y" }), "yes").await;
    target(&fixture, "ignored", json!({ "decorate": "someone-else" }), "yes").await;

    let decorated = eventually("the target's labels and annotations", async || {
        let target = fixture.config_maps().get("t").await.unwrap();
        (target.labels().get("decorated").map(String::as_str) == Some("yes")).then_some(target)
    })
    .await;
    assert!(!decorated.labels().contains_key("remove-me"), "null removes a label: {:?}", decorated.labels());
    assert_eq!(decorated.labels()["kept"], "y", "labels the hook does not name are kept");
    assert_eq!(decorated.annotations()["example.com/decorated-by"], "bosun");
    let secret = eventually("the attachment", async || secrets(&fixture).get_opt("t-extra").await.unwrap()).await;
    assert_eq!(secret.annotations()[ANNOTATION], name);
    let owner = &secret.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("ConfigMap", "t", Some(true)));
    let request = hooks.requests().into_iter().rev().find(|(hook, _)| hook == "sync").unwrap().1;
    assert_eq!(request["object"]["metadata"]["name"], "t");
    assert!(request["attachments"]["Secret.v1"].is_object(), "{request}");
    assert!(request["related"].is_object() && request["finalizing"] == false);

    // Only matching targets are decorated.
    let ignored = fixture.config_maps().get("ignored").await.unwrap();
    assert!(!ignored.labels().contains_key("decorated"));
    assert!(secrets(&fixture).get_opt("ignored-extra").await.unwrap().is_none());

    // The attachment follows the hook: gone when no longer returned.
    let patch = json!({ "data": { "attach": "no" } });
    fixture.config_maps().patch("t", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually("the attachment to be deleted", async || secrets(&fixture).get_opt("t-extra").await.unwrap().is_none().then_some(())).await;
}

async fn steady_state_makes_no_writes(strategy: ApplyStrategy) {
    let fixture = Fixture::new(strategy).await;
    let hooks = HookServer::start(decorate).await;
    decorate_config_maps(&fixture, &hooks, json!({ "resyncPeriodSeconds": 1 })).await;
    target(&fixture, "t", json!({ "decorate": fixture.id }), "yes").await;
    eventually("the attachment", async || secrets(&fixture).get_opt("t-extra").await.unwrap()).await;
    support::assert_no_writes_over_resyncs(&fixture, &hooks).await;
}

with_both_strategies!(labels_annotations_and_attachments, steady_state_makes_no_writes);

/// With a finalize hook, a target that stops matching the selector is finalized: its
/// attachments go and the finalizer is removed, but the target stays.
#[tokio::test]
async fn a_target_that_stops_matching_is_finalized() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(decorate).await;
    let name = decorate_config_maps(&fixture, &hooks, json!({ "hooks": { "finalize": hooks.hook("finalize", json!({})) } })).await;
    let finalizer = format!("metacontroller.io/decoratorcontroller-{name}");
    target(&fixture, "t", json!({ "decorate": fixture.id }), "yes").await;
    eventually("the attachment", async || secrets(&fixture).get_opt("t-extra").await.unwrap()).await;
    let target_now = fixture.config_maps().get("t").await.unwrap();
    assert!(target_now.finalizers().contains(&finalizer), "{:?}", target_now.finalizers());

    let opt_out = json!({ "metadata": { "labels": { "decorate": null } } });
    fixture.config_maps().patch("t", &PatchParams::default(), &Patch::Merge(&opt_out)).await.unwrap();
    eventually("the finalizer to go", async || {
        let target = fixture.config_maps().get("t").await.unwrap();
        (!target.finalizers().contains(&finalizer)).then_some(())
    })
    .await;
    eventually("the attachment to go", async || secrets(&fixture).get_opt("t-extra").await.unwrap().is_none().then_some(())).await;
    assert!(hooks.requests().iter().any(|(hook, request)| hook == "finalize" && request["finalizing"] == true));
    assert!(fixture.config_maps().get_opt("t").await.unwrap().is_some(), "opting out does not delete the target");
}

/// A deleted target is finalized before it goes.
#[tokio::test]
async fn a_deleted_target_is_finalized() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(decorate).await;
    decorate_config_maps(&fixture, &hooks, json!({ "hooks": { "finalize": hooks.hook("finalize", json!({})) } })).await;
    target(&fixture, "t", json!({ "decorate": fixture.id }), "no").await;
    eventually("the finalizer", async || {
        let target = fixture.config_maps().get("t").await.unwrap();
        (!target.finalizers().is_empty()).then_some(())
    })
    .await;
    fixture.config_maps().delete("t", &DeleteParams::default()).await.unwrap();
    eventually("the target to be gone", async || fixture.config_maps().get_opt("t").await.unwrap().is_none().then_some(())).await;
    assert!(hooks.requests().iter().any(|(hook, request)| hook == "finalize" && request["object"]["metadata"]["name"] == "t"));
}

/// Status is written through the status subresource where the target has one, and with the
/// object where it has not.
#[tokio::test]
async fn status_on_targets_with_and_without_a_status_subresource() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let plain = support::install_thing_crd(fixture.env, &format!("{}-plain", fixture.id), false).await;
    let hooks = HookServer::start(|_, request| {
        let generation = request["object"]["metadata"]["generation"].clone();
        Reply::Json(json!({ "status": { "decorated": true, "seenGeneration": generation } }))
    })
    .await;
    let rule = |things: &kube::api::ApiResource| json!({ "apiVersion": things.api_version, "resource": "things" });
    fixture
        .decorator_controller(json!({
            "resources": [rule(&fixture.things), rule(&plain)],
            "hooks": { "sync": hooks.hook("sync", json!({})) },
        }))
        .await;
    let with_status = fixture.parent("with-status", json!({})).await;
    let without: Api<DynamicObject> = Api::namespaced_with(fixture.client.clone(), &fixture.namespace, &plain);
    without.create(&PostParams::default(), &DynamicObject::new("without-status", &plain).data(json!({ "spec": {} }))).await.unwrap();
    for (api, name) in [(fixture.parents(), with_status.name_any()), (without, "without-status".to_owned())] {
        eventually(&format!("the status of {name}"), async || {
            let object = api.get(&name).await.unwrap();
            (object.data["status"]["decorated"] == true).then_some(())
        })
        .await;
    }
}

/// Deleting a DecoratorController removes its finalizer from its targets.
#[tokio::test]
async fn deleting_the_decorator_controller_leaves_no_finalizers() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(decorate).await;
    let name = decorate_config_maps(&fixture, &hooks, json!({ "hooks": { "finalize": hooks.hook("finalize", json!({})) } })).await;
    target(&fixture, "t", json!({ "decorate": fixture.id }), "no").await;
    let finalizer = format!("metacontroller.io/decoratorcontroller-{name}");
    eventually("the finalizer", async || fixture.config_maps().get("t").await.unwrap().finalizers().contains(&finalizer).then_some(()))
        .await;
    fixture.decorator_controllers().delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("the finalizer to be removed", async || {
        (!fixture.config_maps().get("t").await.unwrap().finalizers().contains(&finalizer)).then_some(())
    })
    .await;
    let events = fixture.events(&name, Some("default")).await;
    assert!(events.iter().any(|(_, reason, _)| reason == "Stopped"), "{events:?}");
}

/// A response the engine cannot apply changes nothing and says why; v2 hooks get uniform keys.
#[tokio::test]
async fn an_invalid_response_changes_nothing() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|_, _| Reply::Json(json!({ "labels": { "count": 3 } }))).await;
    decorate_config_maps(&fixture, &hooks, json!({ "hooks": { "sync": { "version": "v2" } } })).await;
    target(&fixture, "t", json!({ "decorate": fixture.id }), "no").await;
    let message = fixture.event_with_reason("t", None, "SyncError").await;
    assert!(message.contains("labels.count is 3"), "{message}");
    let labels: BTreeMap<String, String> = fixture.config_maps().get("t").await.unwrap().labels().clone();
    assert_eq!(labels.len(), 1, "{labels:?}");
    let request = &hooks.requests()[0].1;
    assert!(request["attachments"]["Secret.v1"].is_object());
}
