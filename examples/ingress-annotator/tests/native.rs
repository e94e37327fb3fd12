//! The native annotator against a real control plane: an Ingress created before it starts and
//! one created after both get `foo: bar`, other annotations stay, a removed annotation comes
//! back, and shutdown returns.

use std::time::Duration;

use bosun_runtime::{Controller, Metrics, SharedCaches};
use bosun_testenv::{TestEnv, eventually};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

fn ingress(name: &str) -> Ingress {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "annotations": { "team": "storefront" } },
        "spec": { "rules": [{ "host": format!("{name}.local"), "http": { "paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": { "service": { "name": name, "port": { "number": 80 } } },
        }] } }] },
    }))
    .unwrap()
}

async fn annotated(api: &Api<Ingress>, name: &str) -> Ingress {
    eventually(&format!("Ingress {name} annotated"), async || {
        let ingress = api.get(name).await.unwrap();
        (ingress.annotations().get("foo").map(String::as_str) == Some("bar")).then_some(ingress)
    })
    .await
}

#[tokio::test]
async fn every_ingress_gets_the_annotation_and_keeps_it() {
    let env = TestEnv::shared();
    let client = env.client();
    let namespace = env.namespace("annotator").await;
    let api: Api<Ingress> = Api::namespaced(client.clone(), &namespace);
    api.create(&PostParams::default(), &ingress("before")).await.unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let caches = SharedCaches::new(client.clone());
    let controller = tokio::spawn(async move {
        let controller = Controller::new("ingress-annotator", &Metrics::new()).workers(2);
        ingress_annotator::run(client, &caches, controller, async { stopped.await.unwrap_or_default() }).await;
    });

    let before = annotated(&api, "before").await;
    assert_eq!(before.annotations()["team"], "storefront", "other annotations stay");
    api.create(&PostParams::default(), &ingress("after")).await.unwrap();
    annotated(&api, "after").await;

    let remove = serde_json::json!([{ "op": "remove", "path": "/metadata/annotations/foo" }]);
    api.patch("before", &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(remove).unwrap())).await.unwrap();
    annotated(&api, "before").await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), controller).await.expect("the controller stops on shutdown").unwrap();
}
