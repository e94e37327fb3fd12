//! What the ConfigMapSync tests share: one operator per test binary, running on its own thread
//! for the binary's lifetime (a controller spawned on a test's runtime would die with that
//! test), and helpers to create and read the objects involved.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bosun_operators::configmapsync::{ACCEPT_FROM_ANNOTATION, ConfigMapSync, ConfigMapSyncController, ConfigMapSyncOptions};
use bosun_runtime::{Context, Metrics, SharedCaches};
use bosun_testenv::TestEnv;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

pub use bosun_testenv::eventually;

/// The shared control plane, with the CRD installed and the operator running.
pub async fn setup() -> (&'static TestEnv, Client, &'static Metrics) {
    let env = TestEnv::shared();
    let client = env.client();
    bosun_operators::install_crds(&client).await.unwrap();
    (env, client, operator(env))
}

/// The operator's metrics (including its API requests by method).
fn operator(env: &'static TestEnv) -> &'static Metrics {
    static OPERATOR: OnceLock<Metrics> = OnceLock::new();
    OPERATOR.get_or_init(|| {
        let metrics = Metrics::new();
        let config = env.control_plane().config();
        let recorded = metrics.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let layer = recorded.rest_client_layer("test");
                let client = kube::client::ClientBuilder::try_from(config).unwrap().with_layer(&layer).build();
                let caches = SharedCaches::new(client.clone());
                let context = Context { client, caches, metrics: recorded, health: Default::default(), shard: None };
                // Limits small enough for the tests to exceed them.
                let options = ConfigMapSyncOptions {
                    events_burst: 10_000,
                    max_destinations: MAX_DESTINATIONS,
                    max_source_bytes: MAX_SOURCE_BYTES,
                    ..Default::default()
                };
                ConfigMapSyncController::new(&context, options).run(std::future::pending()).await;
            });
        });
        metrics
    })
}

/// The test operator's limit on destinations per ConfigMapSync.
pub const MAX_DESTINATIONS: usize = 8;
/// The test operator's limit on the source's size.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;

/// Creates a namespace named `<prefix>-<random>` with `labels`.
pub async fn namespace(client: &Client, prefix: &str, labels: Value) -> String {
    create_namespace(client, prefix, labels, json!({})).await
}

/// Creates a namespace named `<prefix>-<random>` with `labels` that accepts copies from
/// namespace `from`.
pub async fn accepting(client: &Client, prefix: &str, from: &str, labels: Value) -> String {
    create_namespace(client, prefix, labels, json!({ ACCEPT_FROM_ANNOTATION: from })).await
}

async fn create_namespace(client: &Client, prefix: &str, labels: Value, annotations: Value) -> String {
    let name = format!("{prefix}-{}", bosun_testenv::unique_suffix());
    let metadata = json!({ "name": name, "labels": labels, "annotations": annotations });
    let namespace: Namespace = serde_json::from_value(json!({ "metadata": metadata })).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    name
}

/// Sets namespace `namespace`'s consent annotation to `accepted`, or removes it (`None`).
pub async fn consent(client: &Client, namespace: &str, accepted: Option<&str>) {
    let patch = json!({ "metadata": { "annotations": { ACCEPT_FROM_ANNOTATION: accepted } } });
    Api::<Namespace>::all(client.clone()).patch(namespace, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

/// Creates or replaces ConfigMap `namespace/name` with `data` (server-side apply).
pub async fn put_config_map(client: &Client, namespace: &str, name: &str, data: Value) {
    let config_map = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": data });
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&config_map))
        .await
        .unwrap();
}

/// Creates ConfigMapSync `namespace/name` with `spec`.
pub async fn create_sync(client: &Client, namespace: &str, name: &str, spec: Value) {
    let sync: ConfigMapSync = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "ConfigMapSync",
        "metadata": { "name": name }, "spec": spec,
    }))
    .unwrap();
    Api::<ConfigMapSync>::namespaced(client.clone(), namespace).create(&PostParams::default(), &sync).await.unwrap();
}

/// ConfigMap `namespace/name`, if it exists.
pub async fn config_map(client: &Client, namespace: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace).get_opt(name).await.unwrap()
}

/// The data of ConfigMap `namespace/name`, if it exists.
pub async fn data(client: &Client, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
    config_map(client, namespace, name).await.map(|config_map| config_map.data.unwrap_or_default())
}

/// Waits until every namespace in `namespaces` holds `name` with `expected` data.
pub async fn wait_for_copies(client: &Client, namespaces: &[&str], name: &str, expected: Value) {
    let expected: BTreeMap<String, String> = serde_json::from_value(expected).unwrap();
    for namespace in namespaces {
        eventually(&format!("the copy in {namespace} to carry {expected:?}"), async || {
            (data(client, namespace, name).await? == expected).then_some(())
        })
        .await;
    }
}

/// Waits until the ConfigMapSync's Ready condition has `reason`, and returns it.
pub async fn wait_for_reason(client: &Client, namespace: &str, name: &str, reason: &str) -> ConfigMapSync {
    let api: Api<ConfigMapSync> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("ConfigMapSync {namespace}/{name} to be Ready with reason {reason}"), async || {
        let sync = api.get(name).await.unwrap();
        let status = sync.status.as_ref()?;
        let ready = status.conditions.iter().find(|condition| condition.type_ == "Ready")?;
        (ready.reason == reason && status.observed_generation == sync.metadata.generation).then_some(sync.clone())
    })
    .await
}

/// The Ready condition's message.
pub fn ready_message(sync: &ConfigMapSync) -> String {
    let status = sync.status.as_ref().unwrap();
    status.conditions.iter().find(|condition| condition.type_ == "Ready").unwrap().message.clone()
}

/// The notes of the events about ConfigMapSync `namespace/name` with `reason`.
pub async fn events(client: &Client, namespace: &str, name: &str, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|event| event.regarding.as_ref().and_then(|regarding| regarding.name.as_deref()) == Some(name))
        .filter(|event| event.reason.as_deref() == Some(reason))
        .filter_map(|event| event.note)
        .collect()
}

/// Waits for an event with `reason` about ConfigMapSync `namespace/name` (events are recorded
/// apart from the status, so they may come a moment after it), and returns its note.
pub async fn wait_for_event(client: &Client, namespace: &str, name: &str, reason: &str) -> String {
    eventually(&format!("a {reason} event about {namespace}/{name}"), async || {
        events(client, namespace, name, reason).await.into_iter().next()
    })
    .await
}

/// A client for a ServiceAccount that may only read and patch ConfigMaps in `namespace`:
/// someone who may annotate them, but not delete them.
pub async fn annotator(env: &TestEnv, admin: &Client, namespace: &str) -> Client {
    grant(
        env,
        admin,
        namespace,
        "annotator",
        json!([{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "patch"] }]),
    )
    .await
}

/// A client for a ServiceAccount that may only manage ConfigMapSyncs and ConfigMaps in
/// `namespace`: a tenant.
pub async fn tenant(env: &TestEnv, admin: &Client, namespace: &str) -> Client {
    let all = ["get", "list", "watch", "create", "update", "patch", "delete"];
    let rules = json!([
        { "apiGroups": ["bosun.dev"], "resources": ["configmapsyncs"], "verbs": all },
        { "apiGroups": [""], "resources": ["configmaps"], "verbs": all },
    ]);
    grant(env, admin, namespace, "tenant", rules).await
}

/// A client for the ServiceAccount `name` in `namespace`, granted `rules` there by a Role.
async fn grant(env: &TestEnv, admin: &Client, namespace: &str, name: &str, rules: Value) -> Client {
    let role: Role = serde_json::from_value(json!({ "metadata": { "name": name }, "rules": rules })).unwrap();
    Api::<Role>::namespaced(admin.clone(), namespace).create(&PostParams::default(), &role).await.unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
        "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": namespace }],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), namespace).create(&PostParams::default(), &binding).await.unwrap();
    env.service_account_client(namespace, name).await
}
