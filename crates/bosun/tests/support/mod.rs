//! What the `bosun` command's tests share: proof that an engine process is running a
//! CompositeController, and which one.

use k8s_openapi::api::events::v1::Event;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Creates a CompositeController labelled `shard=<shard>` whose parent resource does not
/// exist, waits for the engine's CreateError event about it, and returns the
/// `reportingInstance` (the engine's `HOSTNAME`) of every such event: only an engine that runs
/// the controller reports on it.
pub async fn reporters_of_a_new_controller(client: &Client, shard: &str) -> Vec<String> {
    let name = format!("unstartable-{}", bosun_testenv::unique_suffix());
    let controller: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "CompositeController",
        "metadata": { "name": name, "labels": { "shard": shard } },
        "spec": {
            "parentResource": { "apiVersion": "nowhere.bosun.dev/v1", "resource": "ghosts" },
            "hooks": { "sync": { "webhook": { "url": "http://127.0.0.1:1/sync" } } },
        },
    }))
    .unwrap();
    let resource = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    Api::<DynamicObject>::all_with(client.clone(), &resource).create(&PostParams::default(), &controller).await.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    bosun_testenv::eventually(&format!("a CreateError event for {name}"), async || {
        let reporters: Vec<String> = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|event| event.regarding.as_ref().and_then(|regarding| regarding.name.as_deref()) == Some(&name))
            .filter(|event| event.reason.as_deref() == Some("CreateError"))
            .filter_map(|event| event.reporting_instance)
            .collect();
        (!reporters.is_empty()).then_some(reporters)
    })
    .await
}
