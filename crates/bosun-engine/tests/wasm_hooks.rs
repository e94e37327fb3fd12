//! WebAssembly hooks on the real control plane: the Greeting example's hook, compiled from
//! Rust to `wasm32-wasip1` and kept in a ConfigMap or served at a URL, syncs parents as its
//! webhook twin would; a module whose content does not match its pinned digest is refused,
//! and nothing written; a URL without a pinned digest is refused when the controller starts.

mod support;

use bosun_engine::ApplyStrategy;
use serde_json::json;
use support::{Fixture, eventually, wasm_hook, wasm_module};

#[tokio::test]
async fn the_greeting_module_syncs_parents_from_a_configmap() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let (module, sha256) = wasm_module("examples/greeting/wasm");
    let hook = wasm_hook(&fixture, "greeting-hook", module, &sha256, json!({ "timeout": "5s" })).await;
    // As the example's controller: the engine labels the children.
    fixture.composite_controller(json!({ "generateSelector": true, "hooks": { "sync": hook } })).await;
    fixture.parent("a", json!({ "message": "Hello from WebAssembly" })).await;
    fixture.parent("b", json!({ "message": "and again" })).await;

    let config_maps = fixture.config_maps();
    for (name, message) in [("a", "Hello from WebAssembly"), ("b", "and again")] {
        let child =
            eventually(&format!("{name}'s ConfigMap"), async || config_maps.get_opt(&format!("{name}-greeting")).await.unwrap()).await;
        assert_eq!(child.data.unwrap()["message"], message);
    }
    eventually("a's status", async || {
        let parent = fixture.parents().get("a").await.unwrap();
        (parent.data["status"]["configMaps"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_module_that_is_not_the_pinned_one_is_refused() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let (module, _) = wasm_module("examples/greeting/wasm");
    let pinned = "0".repeat(64);
    let hook = wasm_hook(&fixture, "greeting-hook", module, &pinned, json!({})).await;
    fixture.composite_controller(json!({ "hooks": { "sync": hook } })).await;
    fixture.parent("p", json!({ "message": "hi" })).await;
    let message = fixture.event_with_reason("p", None, "SyncError").await;
    assert!(message.contains(&format!("not the pinned {pinned}")), "{message}");
    assert!(fixture.config_maps().get_opt("p-greeting").await.unwrap().is_none(), "nothing written");
}

#[tokio::test]
async fn a_module_at_a_url_is_fetched_once_and_must_be_pinned() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let (module, sha256) = wasm_module("examples/greeting/wasm");
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = fetches.clone();
    let router = axum::Router::new().route(
        "/greeting.wasm",
        axum::routing::get(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let module = module.clone();
            async move { module }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/greeting.wasm", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let hook = json!({ "wasm": { "url": url, "sha256": sha256 } });
    fixture.composite_controller(json!({ "generateSelector": true, "hooks": { "sync": hook } })).await;
    for name in ["a", "b", "c"] {
        fixture.parent(name, json!({ "message": format!("hello {name}") })).await;
    }
    let config_maps = fixture.config_maps();
    for name in ["a", "b", "c"] {
        let child =
            eventually(&format!("{name}'s ConfigMap"), async || config_maps.get_opt(&format!("{name}-greeting")).await.unwrap()).await;
        assert_eq!(child.data.unwrap()["message"], format!("hello {name}"));
    }
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1, "a pinned module is fetched once");

    let unpinned = json!({ "wasm": { "url": url } });
    let name = fixture.composite_controller(json!({ "generateSelector": true, "hooks": { "sync": unpinned } })).await;
    let message = fixture.event_with_reason(&name, Some("default"), "CreateError").await;
    assert!(message.contains("wasm.url needs sha256"), "{message}");
}
