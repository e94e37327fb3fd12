//! What the `bosun` command's tests share: proof that an engine process is running a
//! CompositeController, and which one; which engine process made a hook call; a parent CRD
//! and a loopback sync hook; the guide's transcripts ([`transcript`]); a `bosun dev` run by a
//! test ([`dev`]).

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

pub mod dev;
pub mod transcript;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

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

/// A loopback sync hook: two ConfigMaps per parent carrying its `spec.version`, and the version
/// in its status. Counts its calls.
pub async fn start_hook(calls: Arc<AtomicUsize>, shard: String) -> String {
    let router = axum::Router::new().route(
        "/sync",
        axum::routing::post(move |axum::Json(request): axum::Json<Value>| {
            calls.fetch_add(1, Ordering::Relaxed);
            let shard = shard.clone();
            async move {
                let parent = &request["parent"];
                let (name, version) = (parent["metadata"]["name"].as_str().unwrap_or_default(), &parent["spec"]["version"]);
                let child = |suffix: &str| {
                    json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": { "name": format!("{name}-{suffix}"), "labels": { "faults": shard } },
                        "data": { "version": version },
                    })
                };
                axum::Json(json!({ "status": { "version": version }, "children": [child("a"), child("b")] }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sync", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// Installs a namespaced `FaultParent` CRD in `group` (status subresource, any fields).
pub async fn install_parent_crd(group: &str) -> ApiResource {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": format!("faultparents.{group}") },
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": { "plural": "faultparents", "singular": "faultparent", "kind": "FaultParent" },
            "versions": [{
                "name": "v1", "served": true, "storage": true, "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } },
            }],
        },
    }))
    .unwrap();
    bosun_testenv::TestEnv::shared().install_crd(&crd).await;
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", "FaultParent"), "faultparents")
}

/// Which of `pids` owns the client end of the loopback connection from `peer` (found through
/// `/proc/net/tcp` and the processes' file descriptors): the hook's way of telling engines apart.
pub fn owner_of(peer: std::net::SocketAddr, pids: &[u32]) -> Option<u32> {
    let std::net::IpAddr::V4(ip) = peer.ip() else { return None };
    let local = format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), peer.port());
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str())).then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))?
    })?;
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.to_str() == Some(inode.as_str())))
    })
}
