//! The engine against hostile hooks, careless manifests and racing clients, on a real control
//! plane with real hook servers on 127.0.0.1: whatever they do, nothing that is not the
//! hostile controller's own is changed, no credential is printed, and the other controllers
//! keep converging.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use bosun_engine::ApplyStrategy;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::{Fixture, HookServer, Reply, config_map_per_parent, desired_config_map, eventually};

/// Everything the engine logs in this test binary, to check that no credential is printed.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt().with_writer(|| LogWriter).with_ansi(false).with_max_level(tracing::Level::DEBUG).try_init();
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

fn hooks_spec(hooks: &HookServer, names: &[&str]) -> Value {
    let hooks: serde_json::Map<String, Value> = names.iter().map(|name| (name.to_string(), hooks.hook(name, json!({})))).collect();
    json!({ "hooks": hooks })
}

async fn finalizers(fixture: &Fixture, name: &str) -> Option<Vec<String>> {
    fixture.parents().get_opt(name).await.unwrap().map(|parent| parent.finalizers().to_vec())
}

/// Creates parent `name` carrying `finalizers` from the start.
async fn parent_with_finalizers(fixture: &Fixture, name: &str, finalizers: &[&str]) {
    let parent = DynamicObject::new(name, &fixture.things).data(json!({ "spec": { "selector": { "matchLabels": { "thing": name } } } }));
    let mut parent = serde_json::to_value(parent).unwrap();
    parent["metadata"]["finalizers"] = json!(finalizers);
    fixture.parents().create(&PostParams::default(), &serde_json::from_value(parent).unwrap()).await.unwrap();
}

/// Another client's JSON patch of parent `name`.
async fn patch_parent(fixture: &Fixture, name: &str, operations: Value) {
    let patch: json_patch::Patch = serde_json::from_value(operations).unwrap();
    fixture.parents().patch(name, &PatchParams::default(), &Patch::<()>::Json(patch)).await.unwrap();
}

const THEIRS_A: &str = "test.bosun.dev/a";
const THEIRS_B: &str = "test.bosun.dev/b";

#[tokio::test]
async fn another_clients_finalizers_survive_a_slow_finalize() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|hook, request| match hook {
        "finalize" => Reply::Slow(Duration::from_secs(3), json!({ "finalized": true })),
        _ => config_map_per_parent(hook, request),
    })
    .await;
    let name = fixture.composite_controller(hooks_spec(&hooks, &["sync", "finalize"])).await;
    let ours = format!("metacontroller.io/compositecontroller-{name}");
    parent_with_finalizers(&fixture, "p", &[THEIRS_A]).await;
    eventually("our finalizer", async || (finalizers(&fixture, "p").await? == [THEIRS_A, &ours]).then_some(())).await;
    patch_parent(&fixture, "p", json!([{ "op": "add", "path": "/metadata/finalizers/-", "value": THEIRS_B }])).await;
    fixture.parents().delete("p", &DeleteParams::default()).await.unwrap();
    eventually("the finalize hook to be called", async || hooks.requests().iter().any(|(hook, _)| hook == "finalize").then_some(())).await;
    // While the hook thinks, another client lets go of its finalizer at index 0.
    patch_parent(
        &fixture,
        "p",
        json!([
            { "op": "test", "path": "/metadata/finalizers/0", "value": THEIRS_A },
            { "op": "remove", "path": "/metadata/finalizers/0" },
        ]),
    )
    .await;
    let left = eventually("our finalizer to go", async || {
        let left = finalizers(&fixture, "p").await.unwrap_or_default();
        (!left.contains(&ours)).then_some(left)
    })
    .await;
    assert_eq!(left, [THEIRS_B], "only our finalizer was removed");
    patch_parent(&fixture, "p", json!([{ "op": "remove", "path": "/metadata/finalizers" }])).await;
}

#[tokio::test]
async fn a_decorators_labels_keep_a_label_another_client_added_meanwhile() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|_, _| Reply::Slow(Duration::from_secs(3), json!({ "labels": { "decorated": "yes" } }))).await;
    fixture
        .decorator_controller(json!({
            "resources": [{
                "apiVersion": "v1", "resource": "configmaps",
                "annotationSelector": { "matchAnnotations": { "test.bosun.dev/decorate": fixture.id } },
            }],
            "hooks": { "sync": hooks.hook("sync", json!({})) },
        }))
        .await;
    let target: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "target", "annotations": { "test.bosun.dev/decorate": fixture.id } },
    }))
    .unwrap();
    fixture.config_maps().create(&PostParams::default(), &target).await.unwrap();
    eventually("the sync hook to be called", async || (hooks.calls() > 0).then_some(())).await;
    let labels = json!({ "metadata": { "labels": { "third": "party" } } });
    fixture.config_maps().patch("target", &PatchParams::default(), &Patch::Merge(&labels)).await.unwrap();
    let labels = eventually("the decorator's label", async || {
        let target = fixture.config_maps().get("target").await.unwrap();
        target.labels().contains_key("decorated").then(|| target.labels().clone())
    })
    .await;
    assert_eq!(labels.get("third").map(String::as_str), Some("party"), "the other client's label is kept: {labels:?}");
}

#[tokio::test]
async fn deleting_a_controller_releases_only_its_finalizer_even_from_adds_in_flight() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|hook, request| match hook {
        "finalize" => Reply::Json(json!({ "finalized": true })),
        _ => config_map_per_parent(hook, request),
    })
    .await;
    let name = fixture.composite_controller(hooks_spec(&hooks, &["sync", "finalize"])).await;
    let ours = format!("metacontroller.io/compositecontroller-{name}");
    parent_with_finalizers(&fixture, "held", &[THEIRS_A]).await;
    eventually("our finalizer", async || (finalizers(&fixture, "held").await? == [THEIRS_A, &ours]).then_some(())).await;
    patch_parent(&fixture, "held", json!([{ "op": "add", "path": "/metadata/finalizers/-", "value": THEIRS_B }])).await;
    // Parents whose finalizers are being added while the controller goes.
    let parents: Vec<String> = (0..12).map(|index| format!("late-{index}")).collect();
    futures::future::join_all(parents.iter().map(|name| fixture.parent(name, json!({})))).await;
    fixture.controllers().delete(&name, &DeleteParams::default()).await.unwrap();
    for parent in parents.iter().chain([&"held".to_owned()]) {
        eventually(&format!("our finalizer to leave {parent}"), async || {
            (!finalizers(&fixture, parent).await.unwrap_or_default().contains(&ours)).then_some(())
        })
        .await;
    }
    // The release is done once the controller's Stopped event is out and no parent has it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for parent in &parents {
        assert!(!finalizers(&fixture, parent).await.unwrap_or_default().contains(&ours), "{parent} keeps our finalizer");
    }
    assert_eq!(finalizers(&fixture, "held").await.unwrap(), [THEIRS_A, THEIRS_B]);
    patch_parent(&fixture, "held", json!([{ "op": "remove", "path": "/metadata/finalizers" }])).await;
}

#[tokio::test]
async fn a_cluster_scoped_child_of_a_namespaced_parent_is_refused() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let leak = format!("leak-{}", fixture.id);
    let hooks = HookServer::start({
        let leak = leak.clone();
        move |_, request| {
            let mut response = desired_config_map(request);
            response["children"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": leak } }));
            Reply::Json(response)
        }
    })
    .await;
    let mut spec = hooks_spec(&hooks, &["sync"]);
    spec["resyncPeriodSeconds"] = json!(1);
    spec["childResources"] = json!([{ "apiVersion": "v1", "resource": "configmaps" }, { "apiVersion": "v1", "resource": "namespaces" }]);
    fixture.composite_controller(spec).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    let message = fixture.event_with_reason("p", None, "SyncError").await;
    assert!(message.contains("cluster-scoped") && message.contains("owner"), "{message}");
    let namespaces: Api<Namespace> = Api::all(fixture.client.clone());
    assert!(namespaces.get_opt(&leak).await.unwrap().is_none(), "the cluster-scoped child was not created");
    assert!(fixture.config_maps().get_opt("p-config").await.unwrap().is_none(), "nothing of the response was written");

    hooks.script(config_map_per_parent);
    eventually("the child", async || fixture.config_maps().get_opt("p-config").await.unwrap()).await;
    support::assert_no_writes_over_resyncs(&fixture, &hooks).await;
    fixture.parents().delete("p", &DeleteParams::default()).await.unwrap();
    eventually("the parent to go", async || fixture.parents().get_opt("p").await.unwrap().is_none().then_some(())).await;
    assert!(namespaces.get_opt(&leak).await.unwrap().is_none(), "nothing was left behind");
}

#[tokio::test]
async fn a_match_everything_selector_adopts_nothing_and_a_failed_hook_adopts_nothing() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|_, _| Reply::Json(json!({ "children": [] }))).await;
    let mut spec = hooks_spec(&hooks, &["sync"]);
    spec["resyncPeriodSeconds"] = json!(1);
    spec["childResources"] = json!([{ "apiVersion": "v1", "resource": "secrets" }, { "apiVersion": "v1", "resource": "configmaps" }]);
    fixture.composite_controller(spec).await;
    let secrets: Api<Secret> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    let admin: Secret =
        serde_json::from_value(json!({ "metadata": { "name": "admin" }, "stringData": { "password": "hunter2" } })).unwrap();
    secrets.create(&PostParams::default(), &admin).await.unwrap();
    let greedy = json!({ "spec": { "selector": { "matchExpressions": [{ "key": "nothing", "operator": "DoesNotExist" }] } } });
    fixture.parents().create(&PostParams::default(), &DynamicObject::new("greedy", &fixture.things).data(greedy)).await.unwrap();
    eventually("three syncs", async || (hooks.calls() >= 3).then_some(())).await;
    let admin = secrets.get("admin").await.unwrap();
    assert!(admin.metadata.deletion_timestamp.is_none() && admin.owner_references().is_empty(), "the Secret is untouched");
    assert!(hooks.requests().iter().all(|(_, request)| request["children"]["Secret.v1"].as_object().is_none_or(|map| map.is_empty())));

    // An orphan the selector matches is not adopted while the hook fails…
    hooks.script(|_, _| Reply::Status(500, "down".into()));
    let orphan: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "orphan", "labels": { "thing": "p" } } })).unwrap();
    fixture.config_maps().create(&PostParams::default(), &orphan).await.unwrap();
    fixture.parent("p", json!({})).await;
    fixture.event_with_reason("p", None, "SyncError").await;
    let calls = hooks.calls();
    eventually("two more failed syncs", async || (hooks.calls() >= calls + 2).then_some(())).await;
    assert!(fixture.config_maps().get("orphan").await.unwrap().owner_references().is_empty(), "no adoption while the hook fails");
    // …and is adopted once the hook answers and keeps it.
    hooks.script(|_, request| {
        let kept: Vec<Value> =
            request["children"]["ConfigMap.v1"].as_object().map(|map| map.values().cloned().collect()).unwrap_or_default();
        Reply::Json(json!({ "children": kept }))
    });
    eventually("the adoption", async || (!fixture.config_maps().get("orphan").await.unwrap().owner_references().is_empty()).then_some(()))
        .await;
}

#[tokio::test]
async fn absurd_resync_delays_neither_loop_nor_overflow() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks =
        HookServer::start(|_, request| Reply::Json(json!({ "resyncAfterSeconds": request["parent"]["spec"]["resync"].clone() }))).await;
    fixture.composite_controller(hooks_spec(&hooks, &["sync"])).await;
    let values = [json!(-1), json!(0), json!(1e-9), json!(9_223_372_036_854_775_807_i64), json!(18_446_744_073_709_551_615_u64)];
    for (index, value) in values.iter().enumerate() {
        fixture.parent(&format!("r-{index}"), json!({ "resync": value })).await;
    }
    eventually("a sync of every parent", async || {
        let requests = hooks.requests();
        (0..values.len())
            .all(|index| requests.iter().any(|(_, request)| request["parent"]["metadata"]["name"] == format!("r-{index}")))
            .then_some(())
    })
    .await;
    let calls_of = |requests: &[(String, Value)], index: usize| {
        requests.iter().filter(|(_, request)| request["parent"]["metadata"]["name"] == format!("r-{index}")).count()
    };
    let before = hooks.requests();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = hooks.requests();
    for (index, value) in values.iter().enumerate() {
        let calls = calls_of(&after, index) - calls_of(&before, index);
        assert!(calls <= 3, "resyncAfterSeconds {value}: {calls} hook calls in 10 s");
    }
}

/// `{"nested": …}` `depth` levels deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!("bottom"), |inner, _| json!({ "nested": inner }))
}

#[tokio::test]
async fn a_parent_nested_too_deep_does_not_stop_the_others() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(config_map_per_parent).await;
    // Both exist before the controller starts, so the list that fills its cache holds both.
    let deep = json!({ "spec": { "selector": { "matchLabels": { "thing": "deep" } }, "nested": nested(130) } });
    match fixture.parents().create(&PostParams::default(), &DynamicObject::new("deep", &fixture.things).data(deep)).await {
        // The API server stored it; this client, like the engine's, cannot parse the answer.
        Err(kube::Error::SerdeError(error)) => assert!(error.to_string().contains("recursion limit"), "{error}"),
        other => panic!("creating the deep parent: {other:?}"),
    }
    fixture.parent("normal", json!({ "data": { "a": "1" } })).await;
    fixture.composite_controller(hooks_spec(&hooks, &["sync"])).await;
    eventually("the normal parent's child", async || fixture.config_maps().get_opt("normal-config").await.unwrap()).await;
}

#[tokio::test]
async fn credentials_in_a_hook_url_are_never_printed() {
    capture_logs();
    let fixture = Fixture::with_config(ApplyStrategy::DynamicApply, true, |config| config.allow_insecure_hook_credentials = true).await;
    let hooks = HookServer::start(|_, _| Reply::Status(500, "broken".into())).await;
    let url = hooks.url("sync").replace("http://", "http://hook-user:s3cret-password@");
    fixture.composite_controller(json!({ "hooks": { "sync": { "webhook": { "url": url } } } })).await;
    fixture.parent("p", json!({})).await;
    let message = fixture.event_with_reason("p", None, "SyncError").await;
    assert!(message.contains("HTTP 500") && message.contains("127.0.0.1"), "{message}");
    for (_, _, message) in fixture.events("p", None).await {
        assert!(!message.contains("s3cret-password"), "an event: {message}");
    }
    assert!(!fixture.metrics.encode().contains("s3cret-password"), "a metric label");
    assert!(fixture.metrics.encode().contains("metacontroller_sync_requests_total"), "the hook metrics are there");
    assert!(!logs().contains("s3cret-password"), "a log line");
}

#[tokio::test]
async fn credentials_are_not_sent_over_plain_http_without_consent() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(config_map_per_parent).await;
    let url = hooks.url("sync").replace("http://", "http://hook-user:s3cret-password@");
    let name = fixture.composite_controller(json!({ "hooks": { "sync": { "webhook": { "url": url } } } })).await;
    let message = fixture.event_with_reason(&name, Some("default"), "CreateError").await;
    assert!(message.contains("plain http://") && message.contains("--allow-insecure-hook-credentials"), "{message}");
    assert!(!message.contains("s3cret-password"), "{message}");
    fixture.parent("p", json!({})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hooks.calls(), 0, "the hook was never called");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let elsewhere = HookServer::start(config_map_per_parent).await;
    let target = elsewhere.url("sync");
    let hooks = HookServer::start(move |_, _| Reply::Redirect(target.clone())).await;
    fixture.composite_controller(hooks_spec(&hooks, &["sync"])).await;
    fixture.parent("p", json!({})).await;
    let message = fixture.event_with_reason("p", None, "SyncError").await;
    assert!(message.contains("HTTP 307") && message.contains("redirects are not followed"), "{message}");
    assert_eq!(elsewhere.calls(), 0, "the request body went nowhere else");
    assert!(fixture.config_maps().get_opt("p-config").await.unwrap().is_none());
}

#[tokio::test]
async fn a_non_ascii_error_still_makes_its_event() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|_, _| Reply::Status(500, "é".repeat(700))).await;
    fixture.composite_controller(hooks_spec(&hooks, &["sync"])).await;
    fixture.parent("p", json!({})).await;
    let message = fixture.event_with_reason("p", None, "SyncError").await;
    assert!(message.len() <= 1024 && message.contains("ééé"), "{} bytes", message.len());
}

#[tokio::test]
async fn records_about_parents_and_children_go_with_them() {
    const PARENTS: usize = 1000;
    let fixture = Fixture::new(support::server_side_apply()).await;
    let hooks = HookServer::start(|_, request| {
        let etag = format!("\"{}\"", request["parent"]["metadata"]["name"].as_str().unwrap_or_default());
        Reply::Tagged(etag, desired_config_map(request))
    })
    .await;
    fixture
        .composite_controller(json!({ "hooks": { "sync": hooks.hook("sync", json!({ "webhook": { "etag": { "enabled": true } } })) } }))
        .await;
    let names: Vec<String> = (0..PARENTS).map(|index| format!("p-{index}")).collect();
    for batch in names.chunks(50) {
        futures::future::join_all(batch.iter().map(|name| fixture.parent(name, json!({ "data": { "a": "1" } })))).await;
    }
    eventually("a record per parent and per child", async || {
        (fixture.records("hook_etag_responses") >= PARENTS && fixture.records("server_side_apply_records") >= PARENTS).then_some(())
    })
    .await;
    fixture.parents().delete_collection(&DeleteParams::default(), &Default::default()).await.unwrap();
    // Garbage collection of a thousand children takes a while — up to two minutes on a loaded
    // two-core machine, where this test failed with a few children not yet collected: wait up
    // to five.
    let mut left = (usize::MAX, usize::MAX);
    for _ in 0..3000 {
        left = (fixture.records("hook_etag_responses"), fixture.records("server_side_apply_records"));
        if left == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, (0, 0), "(ETag responses, server-side apply records) left after the parents went");
}

/// The hostile hook's answers, in turn.
fn hostile(call: usize, request: &Value, taken: &str) -> Reply {
    let parent = &request["parent"];
    let labels = parent["spec"]["selector"]["matchLabels"].clone();
    let child = |metadata: Value| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": { "x": "y" } });
    match call % 11 {
        0 => Reply::Stream { chunk: &[b' '; 1 << 20], count: 64, pause: Duration::ZERO },
        1 => Reply::Json(json!({ "children": [child(json!({ "name": "deep", "labels": labels }))], "status": nested(200) })),
        2 => Reply::Json(json!({ "resyncAfterSeconds": 1e-9, "status": { "ok": true } })),
        3 => Reply::Json(json!({ "children": [child(json!({ "name": "elsewhere", "namespace": "kube-system", "labels": labels }))] })),
        4 => Reply::Json(json!({ "children": [{ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "hostile-namespace" } }] })),
        5 => Reply::Json(json!({ "children": [child(json!({ "name": taken, "labels": labels }))] })),
        6 => Reply::Status(200, "this is not JSON".into()),
        7 => Reply::Stream { chunk: b"{\"status\": {\"", count: 1000, pause: Duration::from_millis(50) },
        8 => Reply::Status(500, "internal error".into()),
        9 => Reply::Json(json!({ "status": { "big": "x".repeat(1_100_000) } })),
        _ => Reply::TooManyRequests(Some("18446744073709551615".into())),
    }
}

#[tokio::test]
async fn a_hostile_hook_changes_nothing_outside_its_own_children() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let good = HookServer::start(config_map_per_parent).await;
    let mut spec = hooks_spec(&good, &["sync"]);
    spec["childResources"] = json!([{ "apiVersion": "v1", "resource": "configmaps", "updateStrategy": { "method": "InPlace" } }]);
    spec["parentResource"] =
        json!({ "apiVersion": fixture.things.api_version, "resource": "things", "labelSelector": { "matchLabels": { "role": "good" } } });
    fixture.composite_controller(spec).await;
    let taken = "good-0-config".to_owned();
    let hostile_hook = HookServer::start({
        let calls = std::sync::atomic::AtomicUsize::new(0);
        move |_, request| hostile(calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst), request, &taken)
    })
    .await;
    let mut spec = json!({ "hooks": { "sync": hostile_hook.hook("sync", json!({ "webhook": { "timeout": "2s" } })) } });
    spec["parentResource"] = json!({ "apiVersion": fixture.things.api_version, "resource": "things", "labelSelector": { "matchLabels": { "role": "hostile" } } });
    spec["childResources"] = json!([{ "apiVersion": "v1", "resource": "configmaps" }, { "apiVersion": "v1", "resource": "namespaces" }]);
    support::create_thing_controller(
        &fixture.client,
        &format!("hostile-{}", fixture.id),
        json!({ support::TEST_LABEL: fixture.id }),
        &fixture.things,
        spec,
    )
    .await;

    let bystander: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "bystander" }, "data": { "keep": "me" } })).unwrap();
    let bystander = fixture.config_maps().create(&PostParams::default(), &bystander).await.unwrap();
    let labelled = |name: &str, role: &str| {
        let mut parent = serde_json::to_value(DynamicObject::new(name, &fixture.things)).unwrap();
        parent["metadata"]["labels"] = json!({ "role": role });
        parent["spec"] = json!({ "selector": { "matchLabels": { "thing": name } }, "data": { "v": "1" } });
        serde_json::from_value::<DynamicObject>(parent).unwrap()
    };
    for index in 0..3 {
        fixture.parents().create(&PostParams::default(), &labelled(&format!("good-{index}"), "good")).await.unwrap();
    }
    let good_children = eventually("the good parents' children", async || {
        let mut children = Vec::new();
        for index in 0..3 {
            children.push(fixture.config_maps().get_opt(&format!("good-{index}-config")).await.unwrap()?);
        }
        Some(children)
    })
    .await;
    fixture.parents().create(&PostParams::default(), &labelled("evil", "hostile")).await.unwrap();
    eventually("the hostile hook's eleven answers", async || (hostile_hook.calls() >= 11).then_some(())).await;

    // Meanwhile the good controller still converges on a change.
    let change = json!({ "spec": { "data": { "v": "2" } } });
    fixture.parents().patch("good-1", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    eventually("the good controller to follow the change", async || {
        let child = fixture.config_maps().get("good-1-config").await.unwrap();
        (child.data.as_ref()?.get("v")? == "2").then_some(())
    })
    .await;

    for (index, before) in good_children.iter().enumerate().filter(|(index, _)| *index != 1) {
        let now = fixture.config_maps().get(&format!("good-{index}-config")).await.unwrap();
        assert_eq!(now.resource_version(), before.resource_version(), "good-{index}-config is unchanged");
    }
    let now = fixture.config_maps().get("bystander").await.unwrap();
    // Who wrote it, if anyone did: every write leaves its manager and operation here.
    let writers: Vec<_> =
        now.metadata.managed_fields.iter().flatten().map(|entry| (&entry.manager, &entry.operation, &entry.time)).collect();
    assert_eq!(now.resource_version(), bystander.resource_version(), "the bystander was written: {writers:?}, now {now:?}");
    let namespaces: Api<Namespace> = Api::all(fixture.client.clone());
    assert!(namespaces.get_opt("hostile-namespace").await.unwrap().is_none());
    let kube_system: Api<ConfigMap> = Api::namespaced(fixture.client.clone(), "kube-system");
    assert!(kube_system.get_opt("elsewhere").await.unwrap().is_none());
    assert!(fixture.config_maps().get_opt("deep").await.unwrap().is_none());
    let evil = fixture.parents().get("evil").await.unwrap();
    assert!(evil.data["status"].get("big").is_none(), "the oversized status was refused");
    // The event of the last answer is recorded after the hook was called: wait for all of them.
    let expected =
        ["too large", "recursion limit", "kube-system", "cluster-scoped", "already exists", "not valid", "timeout", "500", "status is"];
    eventually("an event for each hostile answer", async || {
        let reasons: Vec<String> = fixture.events("evil", None).await.into_iter().map(|(_, _, message)| message).collect();
        expected.iter().all(|expected| reasons.iter().any(|message| message.contains(expected))).then_some(())
    })
    .await;
}

/// A WebAssembly hook that loops forever, sleeps past its timeout, allocates without bound,
/// traps, floods its output or exits with a failure: each yields a SyncError saying which, within the hook's bounds, the
/// child is left as it was — and meanwhile another parent of the same controller is synced.
#[tokio::test]
async fn a_hostile_webassembly_module_fails_its_syncs_and_nothing_else() {
    let fixture = Fixture::with_config(ApplyStrategy::DynamicApply, true, |config| config.max_hook_response_bytes = 64 * 1024).await;
    let (module, sha256) = support::wasm_module("crates/bosun-engine/tests/wasm-adversary");
    let bounds = json!({ "timeout": "2s", "maxMemoryBytes": 32 * 1024 * 1024, "fuel": 2_000_000_000u64 });
    let hook = support::wasm_hook(&fixture, "adversary", module, &sha256, bounds).await;
    fixture.composite_controller(json!({ "generateSelector": true, "hooks": { "sync": hook } })).await;
    fixture.parent("p", json!({ "data": { "mode": "ok" } })).await;
    let config_maps = fixture.config_maps();
    eventually("the child", async || config_maps.get_opt("p-config").await.unwrap()).await;

    let expectations = [
        ("loop", "the module used all its fuel (2000000000)"),
        ("sleep", "no response within the timeout of 2s; the module was stopped"),
        ("grow", "memory allocation of 1048576 bytes failed"),
        ("trap", "the module trapped on purpose"),
        ("flood", "the response is too large: more than 65536 bytes"),
        ("exit", "exited with status 7; its standard error ends: \"exiting with 7\""),
    ];
    for (round, (mode, message)) in expectations.into_iter().enumerate() {
        support::set_mode(&fixture, mode).await;
        // Another parent, created meanwhile, is synced all the same.
        let other = format!("other-{round}");
        fixture.parent(&other, json!({ "data": { "mode": "ok" } })).await;
        eventually(&format!("{other} synced while p's module misbehaves"), async || {
            config_maps.get_opt(&format!("{other}-config")).await.unwrap()
        })
        .await;
        support::assert_refused_and_unchanged(&fixture, message).await;
    }
}
