//! __NAME__: each __KIND__ gets a ConfigMap holding its `spec.message`, and a status saying
//! what it holds — a native controller on bosun-runtime's `Controller` (watch, queue, workers,
//! backoff, metrics, health, graceful shutdown). `bosun dev --project .` builds and runs it
//! against a local cluster; `cargo test` tests what it writes.

use std::net::SocketAddr;

use anyhow::Context;
use bosun_runtime::{Action, Manager, ManagerConfig, ObjectKey, predicate, shutdown_signal};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};

/// The field manager of this controller's writes.
const MANAGER: &str = "__NAME__";

fn resource() -> ApiResource {
    ApiResource {
        group: "__GROUP__".into(),
        version: "__VERSION__".into(),
        api_version: "__GROUP__/__VERSION__".into(),
        kind: "__KIND__".into(),
        plural: "__PLURAL__".into(),
    }
}

/// The message of `object`'s spec.
fn message(object: &DynamicObject) -> String {
    object.data["spec"]["message"].as_str().unwrap_or_default().to_owned()
}

/// The ConfigMap `object` should have: its message, controlled by it. A cluster-scoped
/// __KIND__ keeps it in `default`.
fn desired_config_map(object: &DynamicObject) -> Value {
    let owner = object.controller_owner_ref(&resource()).map(|owner| serde_json::to_value(owner).unwrap_or_default());
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("{}-message", object.name_any()),
            "namespace": object.namespace().unwrap_or_else(|| "default".into()),
            "labels": { "app.kubernetes.io/instance": object.name_any(), "app.kubernetes.io/managed-by": MANAGER },
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "data": { "message": message(object) },
    })
}

/// Brings the __KIND__ under `key` and its ConfigMap in line; writes nothing that would not change.
async fn reconcile(client: Client, object: Option<std::sync::Arc<DynamicObject>>, key: ObjectKey) -> Result<Action, kube::Error> {
    let Some(object) = object else { return Ok(Action::Done) }; // gone: the ConfigMap goes with it (owner reference)
    let desired = desired_config_map(&object);
    let namespace = desired["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let name = desired["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let current = config_maps.get_opt(&name).await?;
    if current.and_then(|current| current.data).and_then(|data| data.get("message").cloned()) != Some(message(&object)) {
        config_maps.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&desired)).await?;
    }
    let status = json!({ "message": message(&object), "observedGeneration": object.metadata.generation });
    if object.data.get("status") != Some(&status) {
        let api: Api<DynamicObject> = match object.namespace() {
            Some(namespace) => Api::namespaced_with(client, &namespace, &resource()),
            None => Api::all_with(client, &resource()),
        };
        api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await?;
    }
    Ok(Action::Done)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env().add_directive("info".parse()?)).init();
    let client = Client::try_default().await.context("connecting to the cluster (KUBECONFIG or in-cluster)")?;
    let address = |port: u16| Some(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut manager =
        Manager::new(ManagerConfig { metrics_address: address(0), health_address: address(0), ..ManagerConfig::default() }).with_client(client);
    // The client and the caches every controller of the process shares.
    let bosun_runtime::Context { client, caches, .. } = manager.context();
    let controller = manager.controller(MANAGER).workers(2);
    manager.add(MANAGER, move |shutdown| async move {
        let objects = caches.cache(&resource());
        let controller = controller
            .for_resource(objects.clone(), predicate::generation_changed)
            .owns(caches.cache(&ApiResource::erase::<ConfigMap>(&())));
        let reconcile = move |key: ObjectKey| reconcile(client.clone(), objects.get(&key), key);
        controller.run(reconcile, |_, _| None, shutdown.requested()).await;
    });
    manager.run(shutdown_signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a___SINGULAR___gets_a_config_map_with_its_message() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "__GROUP__/__VERSION__", "kind": "__KIND__",
            "metadata": { "name": "sample", "namespace": "team", "uid": "u-1" },
            "spec": { "message": "hello" },
        }))
        .unwrap();
        let config_map = desired_config_map(&object);
        assert_eq!(config_map["metadata"]["name"], "sample-message");
        assert_eq!(config_map["metadata"]["namespace"], "team");
        assert_eq!(config_map["data"]["message"], "hello");
        assert_eq!(config_map["metadata"]["ownerReferences"][0]["uid"], "u-1");
    }
}
