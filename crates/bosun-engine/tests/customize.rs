//! The customize hook against a real control plane: each way of selecting related objects,
//! invalid rules refused with an event, a related object's change re-syncing exactly the
//! parents that select it, answers cached per parent generation, and related objects for a
//! DecoratorController.

mod support;

use bosun_engine::ApplyStrategy;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::{Fixture, HookServer, Reply, eventually};

/// Customize answers with the parent's `spec.rules`; sync reports in status the related
/// ConfigMaps it was given, as `key=value of data.v`.
fn hooks(hook: &str, request: &Value) -> Reply {
    match hook {
        "customize" => Reply::Json(json!({ "relatedResources": request["parent"]["spec"]["rules"] })),
        _ => {
            let related = request["related"]["ConfigMap.v1"].as_object().cloned().unwrap_or_default();
            let seen: Vec<String> =
                related.iter().map(|(key, object)| format!("{key}={}", object["data"]["v"].as_str().unwrap_or(""))).collect();
            Reply::Json(json!({ "status": { "related": seen }, "children": [] }))
        }
    }
}

async fn fixture_with_hooks(customize_version: &str) -> (Fixture, HookServer) {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let server = HookServer::start(hooks).await;
    fixture
        .composite_controller(json!({
            "hooks": {
                "sync": server.hook("sync", json!({ "version": "v2" })),
                "customize": server.hook("customize", json!({ "version": customize_version })),
            },
        }))
        .await;
    (fixture, server)
}

async fn config_map(client: &kube::Client, namespace: &str, name: &str, labels: Value, value: &str) {
    let object: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels }, "data": { "v": value } })).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    api.patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&serde_json::to_value(object).unwrap())).await.unwrap();
}

/// Waits until the parent's status lists exactly `expected` related objects.
async fn wait_for_related(fixture: &Fixture, parent: &str, expected: &[String]) {
    eventually(&format!("{parent} to see related {expected:?}"), async || {
        let object = fixture.parents().get(parent).await.unwrap();
        let mut seen: Vec<String> = serde_json::from_value(object.data["status"]["related"].clone()).ok()?;
        seen.sort();
        (seen == expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn every_selection_mode() {
    let (fixture, _server) = fixture_with_hooks("v2").await;
    let client = fixture.client.clone();
    let ns = fixture.namespace.clone();
    let other = fixture.env.namespace("related-other").await;
    let labelled = format!("related-{}", fixture.id);
    let selected_namespace = fixture.env.namespace("related-selected").await;
    let relabel = json!({ "metadata": { "labels": { "pick": labelled } } });
    Api::<Namespace>::all(client.clone()).patch(&selected_namespace, &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
    config_map(&client, &ns, "by-name", json!({}), "1").await;
    config_map(&client, &ns, "by-label", json!({ "pick": labelled }), "2").await;
    config_map(&client, &other, "elsewhere", json!({ "pick": labelled }), "3").await;
    config_map(&client, &selected_namespace, "in-selected", json!({ "pick": labelled }), "4").await;
    config_map(&client, &other, "by-name", json!({}), "6").await;

    let cases = [
        // Names without a namespace: in every namespace, as Metacontroller's v2 hooks see them.
        (
            "names",
            json!([{ "apiVersion": "v1", "resource": "configmaps", "names": ["by-name"] }]),
            vec![format!("{ns}/by-name=1"), format!("{other}/by-name=6")],
        ),
        (
            "names-in-namespace",
            json!([{ "apiVersion": "v1", "resource": "configmaps", "namespace": other, "names": ["by-name"] }]),
            vec![format!("{other}/by-name=6")],
        ),
        (
            "label-selector",
            json!([{ "apiVersion": "v1", "resource": "configmaps", "labelSelector": { "matchLabels": { "pick": labelled } } }]),
            vec![format!("{ns}/by-label=2"), format!("{other}/elsewhere=3"), format!("{selected_namespace}/in-selected=4")],
        ),
        (
            "namespace",
            json!([{ "apiVersion": "v1", "resource": "configmaps", "namespace": other, "labelSelector": { "matchLabels": { "pick": labelled } } }]),
            vec![format!("{other}/elsewhere=3")],
        ),
        (
            "namespace-selector",
            json!([{ "apiVersion": "v1", "resource": "configmaps", "namespaceSelector": { "matchLabels": { "pick": labelled } } }]),
            vec![format!("{selected_namespace}/in-selected=4")],
        ),
    ];
    for (parent, rules, expected) in cases {
        fixture.parent(parent, json!({ "rules": rules })).await;
        let mut expected = expected;
        expected.sort();
        wait_for_related(&fixture, parent, &expected).await;
    }

    // A namespace that comes to match the namespace selector brings its objects in.
    let late = fixture.env.namespace("related-late").await;
    config_map(&client, &late, "late", json!({}), "5").await;
    Api::<Namespace>::all(client.clone()).patch(&late, &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
    let mut expected = vec![format!("{selected_namespace}/in-selected=4"), format!("{late}/late=5")];
    expected.sort();
    wait_for_related(&fixture, "namespace-selector", &expected).await;
}

/// A v1 customize hook of a namespaced parent selects in its own namespace only, by label or
/// by name.
#[tokio::test]
async fn v1_sees_the_parent_namespace_only() {
    let (fixture, _server) = fixture_with_hooks("v1").await;
    let other = fixture.env.namespace("related-v1").await;
    config_map(&fixture.client, &fixture.namespace, "mine", json!({ "v1": "yes" }), "1").await;
    config_map(&fixture.client, &other, "theirs", json!({ "v1": "yes" }), "2").await;
    let rules = json!([{ "apiVersion": "v1", "resource": "configmaps", "labelSelector": { "matchLabels": { "v1": "yes" } } }]);
    fixture.parent("p", json!({ "rules": rules })).await;
    wait_for_related(&fixture, "p", &[format!("{}/mine=1", fixture.namespace)]).await;
    let rules = json!([{ "apiVersion": "v1", "resource": "configmaps", "names": ["mine", "theirs"] }]);
    fixture.parent("named", json!({ "rules": rules })).await;
    wait_for_related(&fixture, "named", &[format!("{}/mine=1", fixture.namespace)]).await;
}

#[tokio::test]
async fn invalid_rules_are_refused_with_an_event() {
    let (fixture, server) = fixture_with_hooks("v1").await;
    config_map(&fixture.client, &fixture.namespace, "a", json!({}), "1").await;
    let cases = [
        (
            "names-and-selector",
            json!([{ "apiVersion": "v1", "resource": "configmaps", "names": ["a"], "labelSelector": {} }]),
            "names cannot be combined",
        ),
        (
            "both-namespaces",
            json!([{ "apiVersion": "v1", "resource": "configmaps", "namespace": "x", "namespaceSelector": {} }]),
            "cannot be combined",
        ),
        ("v1-other-namespace", json!([{ "apiVersion": "v1", "resource": "configmaps", "namespace": "elsewhere" }]), "use version v2"),
        ("unknown-resource", json!([{ "apiVersion": "v1", "resource": "gizmos" }]), "gizmos"),
    ];
    for (parent, rules, text) in cases {
        fixture.parent(parent, json!({ "rules": rules })).await;
        let message = fixture.event_with_reason(parent, None, "SyncError").await;
        assert!(message.contains("invalid customize hook response") && message.contains(text), "{parent}: {message}");
    }
    let synced: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|(hook, _)| hook == "sync")
        .map(|(_, request)| request["parent"]["metadata"]["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(synced.is_empty(), "no sync hook call with invalid rules: {synced:?}");
}

/// An engine that watches only its namespace (`bosun run --namespace`) refuses rules that
/// reach beyond it, saying why, and gives those within it their objects.
#[tokio::test]
async fn an_engine_within_namespaces_refuses_rules_beyond_them() {
    let fixture = Fixture::within_its_namespace(ApplyStrategy::DynamicApply).await;
    let server = HookServer::start(hooks).await;
    let hooks = json!({
        "sync": server.hook("sync", json!({ "version": "v2" })),
        "customize": server.hook("customize", json!({ "version": "v2" })),
    });
    fixture.composite_controller(json!({ "hooks": hooks })).await;
    config_map(&fixture.client, &fixture.namespace, "a", json!({}), "1").await;
    let cases = [
        ("elsewhere", json!([{ "apiVersion": "v1", "resource": "configmaps", "namespace": "elsewhere" }]), "\"elsewhere\" is not watched"),
        ("chosen-by-labels", json!([{ "apiVersion": "v1", "resource": "configmaps", "namespaceSelector": {} }]), "namespaceSelector"),
        ("cluster-scoped", json!([{ "apiVersion": "v1", "resource": "namespaces" }]), "namespaces is cluster-scoped"),
    ];
    for (parent, rules, text) in cases {
        fixture.parent(parent, json!({ "rules": rules })).await;
        let message = fixture.event_with_reason(parent, None, "SyncError").await;
        assert!(message.contains(text) && message.contains(&fixture.namespace), "{parent}: {message}");
    }
    let own = json!([{ "apiVersion": "v1", "resource": "configmaps", "namespace": fixture.namespace, "names": ["a"] }]);
    fixture.parent("own", json!({ "rules": own })).await;
    wait_for_related(&fixture, "own", &[format!("{}/a=1", fixture.namespace)]).await;
}

/// A change to a related object re-syncs the parent that selects it and not the other one;
/// the customize answer is reused until the parent's generation changes.
#[tokio::test]
async fn a_related_change_resyncs_only_the_parents_that_select_it() {
    let (fixture, server) = fixture_with_hooks("v2").await;
    let ns = fixture.namespace.clone();
    // Names without a namespace select in every namespace: these are this test's alone.
    let (a, b) = (format!("a-{}", fixture.id), format!("b-{}", fixture.id));
    config_map(&fixture.client, &ns, &a, json!({}), "1").await;
    config_map(&fixture.client, &ns, &b, json!({}), "1").await;
    let names = |name: &str| json!([{ "apiVersion": "v1", "resource": "configmaps", "names": [name] }]);
    fixture.parent("pa", json!({ "rules": names(&a) })).await;
    fixture.parent("pb", json!({ "rules": names(&b) })).await;
    wait_for_related(&fixture, "pa", &[format!("{ns}/{a}=1")]).await;
    wait_for_related(&fixture, "pb", &[format!("{ns}/{b}=1")]).await;
    let calls = |hook: &str, parent: &str| {
        server.requests().iter().filter(|(h, request)| h == hook && request["parent"]["metadata"]["name"] == parent).count()
    };
    // Let the syncs that follow the status writes settle.
    let settled = eventually("the syncs to settle", async || {
        let before = (calls("sync", "pa"), calls("sync", "pb"));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        (before == (calls("sync", "pa"), calls("sync", "pb"))).then_some(before)
    })
    .await;

    config_map(&fixture.client, &ns, &a, json!({}), "2").await;
    wait_for_related(&fixture, "pa", &[format!("{ns}/{a}=2")]).await;
    assert_eq!(calls("sync", "pb"), settled.1, "pb does not select a");
    assert!(calls("sync", "pa") > settled.0);
    assert_eq!(calls("customize", "pa"), 1, "the answer is cached for the parent's generation");

    // A label on the parent keeps the answer; a spec change asks again.
    let label = json!({ "metadata": { "labels": { "touched": "yes" } } });
    fixture.parents().patch("pa", &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    let spec = json!({ "spec": { "rules": names(&b) } });
    fixture.parents().patch("pa", &PatchParams::default(), &Patch::Merge(&spec)).await.unwrap();
    wait_for_related(&fixture, "pa", &[format!("{ns}/{b}=1")]).await;
    assert_eq!(calls("customize", "pa"), 2);
}

/// DecoratorControllers get related objects too.
#[tokio::test]
async fn a_decorator_gets_related_objects() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let server = HookServer::start(|hook, request| match hook {
        "customize" => Reply::Json(json!({ "relatedResources": [{ "apiVersion": "v1", "resource": "configmaps", "names": ["shared"] }] })),
        _ => {
            let value = request["related"]["ConfigMap.v1"]["shared"]["data"]["v"].clone();
            Reply::Json(json!({ "annotations": { "example.com/shared": value } }))
        }
    })
    .await;
    fixture
        .decorator_controller(json!({
            "resources": [{ "apiVersion": fixture.things.api_version, "resource": "things" }],
            "hooks": { "sync": server.hook("sync", json!({})), "customize": server.hook("customize", json!({})) },
        }))
        .await;
    config_map(&fixture.client, &fixture.namespace, "shared", json!({}), "hello").await;
    fixture.parent("t", json!({})).await;
    for value in ["hello", "again"] {
        config_map(&fixture.client, &fixture.namespace, "shared", json!({}), value).await;
        eventually(&format!("the annotation {value}"), async || {
            let target = fixture.parents().get("t").await.unwrap();
            (target.metadata.annotations?.get("example.com/shared")? == value).then_some(())
        })
        .await;
    }
}
