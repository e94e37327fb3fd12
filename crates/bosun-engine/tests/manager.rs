//! The engine under bosun-runtime's Manager: readiness follows the CompositeController cache,
//! `/metrics` carries Metacontroller's and controller-runtime's metrics, and shutdown lets a
//! sync in flight finish. In a test binary of its own, so its control plane starts without
//! the engine's CRDs.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bosun_engine::{Engine, EngineConfig};
use bosun_runtime::{Manager, ManagerConfig};
use bosun_testenv::TestEnv;
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use serde_json::json;
use support::{HookServer, Reply, config_map_per_parent, create_thing_controller, desired_config_map, eventually, install_thing_crd};

async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{address}{path}")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics.lines().find(|line| line.starts_with(prefix))?.rsplit_once(' ')?.1.parse().ok()
}

#[tokio::test]
async fn readiness_metrics_and_graceful_shutdown() {
    let env = TestEnv::shared();
    let client = env.client();
    let mut manager = Manager::new(ManagerConfig {
        metrics_address: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        health_address: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        shutdown_timeout: Duration::from_secs(30),
    });
    let instrumented = kube::client::ClientBuilder::try_from(env.control_plane().config())
        .unwrap()
        .with_layer(&manager.metrics().rest_client_layer("127.0.0.1"))
        .build();
    manager = manager.with_client(instrumented);
    let engine = Engine::new(&manager.context(), EngineConfig { discovery_interval: Duration::from_millis(500), ..Default::default() });
    manager.add("engine", move |shutdown| engine.run(shutdown.requested()));
    let running = manager.start().await.unwrap();
    let (metrics, health) = (running.metrics_address.unwrap(), running.health_address.unwrap());

    // Not ready while the CompositeController CRD does not exist, ready once it does.
    let (code, body) = get(health, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("[-]compositecontrollers failed"), "{body}");
    assert_eq!(get(health, "/healthz").await.0, 200, "alive all the same");
    bosun_engine::install_crds(&client).await.unwrap();
    eventually("readiness", async || (get(health, "/readyz").await.0 == 200).then_some(())).await;

    // A sync, then the metrics of it.
    let namespace = env.namespace("manager").await;
    let things = install_thing_crd(env, &bosun_testenv::unique_suffix(), true).await;
    let hooks = HookServer::start(|hook, request| {
        if request["parent"]["metadata"]["name"] == "slow" {
            return Reply::Slow(Duration::from_secs(2), desired_config_map(request));
        }
        config_map_per_parent(hook, request)
    })
    .await;
    let spec = json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } });
    create_thing_controller(&client, "measured", json!({}), &things, spec).await;
    let parents: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &things);
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let parent = |name: &str| {
        DynamicObject::new(name, &things)
            .data(json!({ "spec": { "selector": { "matchLabels": { "thing": name } }, "data": { "a": "1" } } }))
    };
    parents.create(&PostParams::default(), &parent("p")).await.unwrap();
    eventually("the child", async || config_maps.get_opt("p-config").await.unwrap()).await;

    let url = hooks.url("sync");
    let hook_requests = format!(
        "metacontroller_sync_requests_total{{controller_name=\"measured\",controller_type=\"CompositeController\",url=\"{url}\",method=\"POST\",code=\"200\"}}"
    );
    let reconciles = "controller_runtime_reconcile_total{controller=\"CompositeController-measured\",result=\"success\"}";
    let text = eventually("metrics of the sync", async || {
        let (_, text) = get(metrics, "/metrics").await;
        // The reconcile counters are there at 0 from the start: wait for a finished reconcile.
        (sample(&text, &hook_requests).is_some() && sample(&text, reconciles).is_some_and(|count| count >= 1.0)).then_some(text)
    })
    .await;
    for name in [
        "metacontroller_sync_request_duration_histogram_seconds_count{controller_name=\"measured\"",
        "metacontroller_sync_in_flight_requests{controller_name=\"measured\"",
        "controller_runtime_reconcile_time_seconds_count{controller=\"CompositeController-measured\"}",
        "workqueue_adds_total{name=\"CompositeController-measured\"}",
        "workqueue_depth{name=\"CompositeController-measured\"}",
        "rest_client_requests_total{code=\"201\",method=\"POST\",host=\"127.0.0.1\"}",
        "rest_client_requests_total{code=\"200\",method=\"GET\",host=\"127.0.0.1\"}",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    // Values move with the work: another parent, more hook requests.
    let before = sample(&text, &hook_requests).unwrap();
    parents.create(&PostParams::default(), &parent("q")).await.unwrap();
    eventually("the hook counter to grow", async || {
        let (_, text) = get(metrics, "/metrics").await;
        (sample(&text, &hook_requests).unwrap_or(0.0) > before).then_some(())
    })
    .await;

    // Shutdown during a slow hook call: the sync finishes and writes its child first.
    let calls = hooks.calls();
    parents.create(&PostParams::default(), &parent("slow")).await.unwrap();
    eventually("the slow hook call", async || (hooks.calls() > calls).then_some(())).await;
    assert!(config_maps.get_opt("slow-config").await.unwrap().is_none(), "the hook is still answering");
    running.shutdown().await.unwrap();
    assert!(config_maps.get_opt("slow-config").await.unwrap().is_some(), "the sync in flight completed before shutdown returned");
}

/// `--events-burst` events about one object are recorded, further ones dropped until the
/// budget refills at `--events-qps`.
#[tokio::test]
async fn events_per_object_are_limited() {
    let env = TestEnv::shared();
    let namespace = env.namespace("event-budget").await;
    let recorder = bosun_runtime::EventRecorder::new(env.client(), "test", "test", 1.0 / 300.0, 3);
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some("noisy".into()),
        namespace: Some(namespace.clone()),
        uid: Some("1234".into()),
        ..Default::default()
    };
    for attempt in 0..5 {
        recorder.publish(&regarding, bosun_runtime::EventType::Warning, "SyncError", &format!("failure {attempt}")).await.unwrap();
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client(), &namespace);
    let notes: Vec<String> = events.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|event| event.note).collect();
    assert_eq!(notes.len(), 3, "{notes:?}");
}
