//! kube-apiserver restarts in the middle of a convergence (an upgrade, a crash): the engine's
//! watches resume from where they were rather than relisting everything, and every parent
//! converges. A test binary of its own: the restart would disturb other tests.

mod support;

use bosun_engine::ApplyStrategy;
use serde_json::json;
use support::{Fixture, HookServer, Reply, desired_config_map, eventually};

const PARENTS: usize = 60;

#[tokio::test]
async fn the_engine_converges_across_an_apiserver_restart_without_relisting_everything() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    // A slow hook keeps the convergence going while the API server restarts.
    let hooks = HookServer::start(|_, request| Reply::Slow(std::time::Duration::from_millis(100), desired_config_map(request))).await;
    for index in 0..PARENTS {
        fixture.parent(&format!("p{index}"), json!({ "data": { "index": index.to_string() } })).await;
    }
    fixture.composite_controller(json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    eventually("a few parents synced", async || (hooks.calls() >= 5).then_some(())).await;

    let (lists, watches) = (fixture.requests.of("GET"), fixture.requests.of("WATCH"));
    let away = fixture.env.control_plane().restart_apiserver().await.unwrap();
    let converged = |parent: &kube::api::DynamicObject| parent.data["status"]["observedGeneration"] == 1;
    eventually("every parent converged after the restart", async || {
        let parents = fixture.parents().list(&Default::default()).await.ok()?;
        (parents.items.len() == PARENTS && parents.items.iter().all(converged)).then_some(())
    })
    .await;
    for index in 0..PARENTS {
        assert!(fixture.config_maps().get_opt(&format!("p{index}-config")).await.unwrap().is_some(), "p{index}'s child");
    }
    let (relists, rewatches) = (fixture.requests.of("GET") - lists, fixture.requests.of("WATCH") - watches);
    println!("API server away for {away:?}; afterwards {relists} GETs and LISTs, {rewatches} watches");
    // The engine watches four types here (two controller kinds, Things, ConfigMaps): a relist
    // storm would be a LIST per parent or per event, not a handful.
    assert!(relists <= 12, "{relists} GETs and LISTs after the restart");
}
