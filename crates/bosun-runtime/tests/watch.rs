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

/// A client whose LISTs (GETs without `watch=true` on a collection) are counted.
fn counting_lists(config: kube::Config, lists: Arc<std::sync::atomic::AtomicUsize>) -> kube::Client {
    let count = tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        let query = request.uri().query().unwrap_or_default();
        if request.method() == http::Method::GET && query.contains("limit=") && !query.contains("watch=true") {
            lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        request
    });
    kube::client::ClientBuilder::try_from(config).unwrap().with_layer(&count).build()
}

/// A watch that resumes from a resourceVersion etcd has compacted away gets 410 Gone: the
/// cache lists once more and carries on — one relist, not a storm — and misses nothing. A
/// cache within two namespaces (a watch each) relists each one alone: what was deleted in one
/// meanwhile goes, the other's objects stay, and no other namespace's object ever comes in.
#[tokio::test]
async fn a_watch_resumed_after_compaction_relists_once() {
    // No watch cache and compaction every second: resuming from an old version is refused.
    let plane = bosun_testenv::ControlPlane::builder()
        .apiserver_arg("--watch-cache=false")
        .apiserver_arg("--etcd-compaction-interval=1s")
        .start()
        .await
        .unwrap();
    let proxy = bosun_testenv::FreezableProxy::start(plane.server().trim_start_matches("https://").parse().unwrap()).await.unwrap();
    let mut config = plane.config();
    config.cluster_url = proxy.url().parse().unwrap();
    let lists = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let caches = SharedCaches::new(counting_lists(config.clone(), lists.clone()));
    let cache = caches.cache(&ApiResource::erase::<ConfigMap>(&()));
    cache.wait_synced().await;
    let lists_at_start = lists.load(std::sync::atomic::Ordering::SeqCst);
    let admin = plane.client().unwrap();
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "other" } })).unwrap();
    Api::all(admin.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    let other: Api<ConfigMap> = Api::namespaced(admin.clone(), "other");
    create(&other, "goes-while-away").await;
    create(&other, "stays").await;
    let within_lists = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let within = SharedCaches::new(counting_lists(config, within_lists.clone())).within(["default", "other"]);
    let within = within.cache(&ApiResource::erase::<ConfigMap>(&()));
    within.wait_synced().await;
    let key = |namespace: &str, name: &str| ObjectKey { namespace: Some(namespace.into()), name: name.into() };
    assert!(within.get(&key("other", "goes-while-away")).is_some());

    // While the watch is cut off, 20 ConfigMaps come and several compactions pass; then its
    // connection breaks and it resumes from the version it had.
    proxy.freeze();
    let api: Api<ConfigMap> = Api::namespaced(plane.client().unwrap(), "default");
    for index in 0..20 {
        create(&api, &format!("while-away-{index}")).await;
    }
    other.delete("goes-while-away", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    proxy.reset();
    proxy.thaw();
    eventually("the cache to hold every ConfigMap", async || {
        (0..20)
            .all(|index| cache.get(&ObjectKey { namespace: Some("default".into()), name: format!("while-away-{index}") }).is_some())
            .then_some(())
    })
    .await;
    // Room for a storm to show, were there one: the watch keeps running for a few seconds.
    create(&api, "after").await;
    eventually("the watch to carry on", async || cache.get(&ObjectKey { namespace: Some("default".into()), name: "after".into() })).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let relists = lists.load(std::sync::atomic::Ordering::SeqCst) - lists_at_start;
    println!("LISTs after the watch expired: {relists}");
    assert!(relists >= 1, "the resumed watch was expected to be refused (410) and relist");
    assert!(relists <= 2, "{relists} LISTs: a relist storm");
    eventually("the cache within namespaces to catch up", async || {
        let caught_up = (0..20).all(|index| within.get(&key("default", &format!("while-away-{index}"))).is_some());
        let other_relisted = within.get(&key("other", "goes-while-away")).is_none() && within.get(&key("other", "stays")).is_some();
        (caught_up && other_relisted).then_some(())
    })
    .await;
    let within_lists = within_lists.load(std::sync::atomic::Ordering::SeqCst);
    assert!(within_lists >= 3, "{within_lists} LISTs: a list per namespace, then at least one relist");
    let namespaces: std::collections::BTreeSet<String> = within.list().iter().filter_map(|object| object.namespace()).collect();
    assert_eq!(namespaces, ["default".to_owned(), "other".to_owned()].into(), "only the namespaces watched");
    plane.stop();
}
