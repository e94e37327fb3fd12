//! The runtime's watches against a real control plane: a panic in an event handler or an
//! index is caught, counted and survived — the watch carries on or restarts with a fresh
//! list — and a controller's readiness reflects a watch that is down.

use std::sync::{Arc, Mutex};

use bosun_runtime::{Action, CacheEvent, Controller, Health, Metrics, ObjectKey, SharedCaches, predicate};
use bosun_testenv::{TestEnv, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DeleteParams, PostParams};
use kube::{Api, ResourceExt};

async fn create(api: &Api<ConfigMap>, name: &str) {
    let config_map: ConfigMap = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).unwrap();
    api.create(&PostParams::default(), &config_map).await.unwrap();
}

fn panics(metrics: &Metrics) -> u64 {
    let text = metrics.encode();
    text.lines()
        .find_map(|line| line.strip_prefix(r#"bosun_watch_panics_total{name="configmaps"} "#))
        .map_or(0, |count| count.parse().unwrap())
}

#[tokio::test]
async fn a_panicking_event_handler_is_caught_and_the_others_still_hear() {
    let env = TestEnv::shared();
    let namespace = env.namespace("handler").await;
    let metrics = Metrics::new();
    let caches = SharedCaches::new(env.client()).with_metrics(&metrics);
    let cache = caches.cache(&ApiResource::erase::<ConfigMap>(&()));
    let boom = format!("{namespace}/boom");
    let _faulty = cache.subscribe(Arc::new(move |event: &CacheEvent<'_>| {
        if let CacheEvent::Applied { new, .. } = event {
            assert!(ObjectKey::of(new).to_string() != boom, "a handler bug");
        }
    }));
    let heard = Arc::new(Mutex::new(Vec::new()));
    let _recording = cache.subscribe(Arc::new({
        let (heard, namespace) = (heard.clone(), namespace.clone());
        move |event: &CacheEvent<'_>| {
            if let CacheEvent::Applied { new, .. } = event
                && new.namespace().as_deref() == Some(namespace.as_str())
            {
                heard.lock().unwrap().push(new.name_any());
            }
        }
    }));
    cache.wait_synced().await;
    let api: Api<ConfigMap> = Api::namespaced(env.client(), &namespace);
    create(&api, "boom").await;
    create(&api, "after").await;
    eventually("both events heard", async || (heard.lock().unwrap().len() == 2).then_some(())).await;
    assert_eq!(*heard.lock().unwrap(), ["boom", "after"]);
    assert_eq!(panics(&metrics), 1);
    assert!(cache.get(&ObjectKey { namespace: Some(namespace), name: "after".into() }).is_some(), "the watch carried on");
}

#[tokio::test]
async fn a_watch_that_panics_restarts_and_readiness_follows_it() {
    let env = TestEnv::shared();
    let namespace = env.namespace("restart").await;
    let (metrics, health) = (Metrics::new(), Health::default());
    let caches = SharedCaches::new(env.client()).with_metrics(&metrics);
    let cache = caches.cache(&ApiResource::erase::<ConfigMap>(&()));
    let explode = format!("{namespace}/explode");
    cache.add_index("test/explodes", move |object| {
        assert!(ObjectKey::of(object).to_string() != explode, "an indexer bug");
        Vec::new()
    });
    let controller: Controller = Controller::new("watch-test", &metrics).with_health(&health).for_resource(cache.clone(), predicate::any);
    let running =
        tokio::spawn(controller.run(|_key: ObjectKey| async { Ok::<_, kube::Error>(Action::Done) }, |_, _| None, std::future::pending()));
    eventually("ready", async || health.readiness().ok()).await;

    let api: Api<ConfigMap> = Api::namespaced(env.client(), &namespace);
    create(&api, "explode").await;
    eventually("not ready while the watch restarts", async || health.readiness().err()).await;
    assert!(panics(&metrics) >= 1);

    // Once the object the indexer cannot take is gone, the restarted watch lists and serves.
    api.delete("explode", &DeleteParams::default()).await.unwrap();
    create(&api, "later").await;
    eventually("ready again", async || health.readiness().ok()).await;
    let later = ObjectKey { namespace: Some(namespace), name: "later".into() };
    eventually("the cache to serve again", async || cache.get(&later)).await;
    running.abort();
}
