//! With simulated nodes, Pods behave as on a real cluster, minus containers: they are
//! scheduled, run and become Ready with a Pod IP, Deployments become Available, StatefulSets
//! roll one Pod at a time, DaemonSets run a Pod per node, Jobs complete, Services get
//! endpoints, and a Pod marked unready stays unready.

use std::collections::{BTreeMap, BTreeSet};

use bosun_testenv::{POD_EXIT_CODE_ANNOTATION, POD_READY_ANNOTATION, SHARED_NODES, TestEnv, eventually};
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

fn pod_template(app: &str, annotations: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": { "labels": { "app": app }, "annotations": annotations },
        "spec": { "containers": [{ "name": "main", "image": "registry.k8s.io/pause:3.10" }] },
    })
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|condition| condition.type_ == type_).map(|condition| condition.status.as_str())
}

fn is_running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|status| status.phase.as_deref()) == Some("Running") && condition(pod, "Ready") == Some("True")
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

async fn pods(env: &TestEnv, namespace: &str, app: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(env.client(), namespace);
    pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items
}

#[tokio::test]
async fn nodes_are_ready_and_renew_their_leases() {
    let env = TestEnv::shared_with_nodes();
    let nodes: Api<Node> = Api::all(env.client());
    let listed = nodes.list(&Default::default()).await.unwrap().items;
    assert_eq!(listed.len(), SHARED_NODES);
    for node in &listed {
        let conditions = node.status.as_ref().and_then(|status| status.conditions.clone()).unwrap_or_default();
        assert!(conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"), "{} is not Ready: {conditions:?}", node.name_any());
    }
    let leases: Api<Lease> = Api::namespaced(env.client(), "kube-node-lease");
    let renewed = |lease: &Lease| lease.spec.as_ref().and_then(|spec| spec.renew_time.clone());
    let first = leases.get(&bosun_testenv::node_name(1)).await.unwrap();
    eventually("node-1 to renew its Lease", async || {
        let now = leases.get(&bosun_testenv::node_name(1)).await.unwrap();
        (renewed(&now) != renewed(&first)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_deployment_of_three_becomes_available_with_running_ready_pods() {
    let env = TestEnv::shared_with_nodes();
    let namespace = env.namespace("deployment").await;
    let deployments: Api<Deployment> = Api::namespaced(env.client(), &namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } }, "template": pod_template("web", json!({})) },
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();
    eventually("the Deployment to be Available with 3 ready replicas", async || {
        let status = deployments.get("web").await.unwrap().status?;
        let available = status.conditions?.iter().any(|c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True"));
        (available && status.ready_replicas == Some(3) && status.available_replicas == Some(3)).then_some(())
    })
    .await;
    let pods = pods(env, &namespace, "web").await;
    assert_eq!(pods.len(), 3);
    let mut ips = BTreeSet::new();
    for pod in &pods {
        assert!(is_running_and_ready(pod), "{}: {:?}", pod.name_any(), pod.status);
        assert!(pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()).is_some_and(|node| node.starts_with("node-")));
        ips.insert(pod_ip(pod).expect("a running Pod has an IP"));
    }
    assert_eq!(ips.len(), 3, "each Pod has its own IP: {ips:?}");

    // Scaling down deletes Pods promptly: no kubelet waits out their grace period.
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 1 } }))).await.unwrap();
    eventually("the Deployment to scale down to one Pod", async || (self::pods(env, &namespace, "web").await.len() == 1).then_some(()))
        .await;
}

#[tokio::test]
async fn a_daemonset_runs_a_pod_on_every_node() {
    let env = TestEnv::shared_with_nodes();
    let namespace = env.namespace("daemonset").await;
    let sets: Api<DaemonSet> = Api::namespaced(env.client(), &namespace);
    let set: DaemonSet = serde_json::from_value(json!({
        "metadata": { "name": "agent" },
        "spec": { "selector": { "matchLabels": { "app": "agent" } }, "template": pod_template("agent", json!({})) },
    }))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.unwrap();
    eventually("a ready agent on every node", async || {
        let status = sets.get("agent").await.unwrap().status?;
        (status.number_ready == SHARED_NODES as i32 && status.desired_number_scheduled == SHARED_NODES as i32).then_some(())
    })
    .await;
    let nodes: BTreeSet<String> =
        pods(env, &namespace, "agent").await.iter().filter_map(|pod| pod.spec.as_ref()?.node_name.clone()).collect();
    assert_eq!(nodes.len(), SHARED_NODES);
}

/// A StatefulSet's rolling update replaces one Pod at a time, from the highest ordinal, each
/// only once the one before it is Running and Ready again: watched, never more than one of
/// the three Pods is missing or unready.
#[tokio::test]
async fn a_statefulset_rolls_one_pod_at_a_time() {
    let env = TestEnv::shared_with_nodes();
    let namespace = env.namespace("statefulset").await;
    let sets: Api<StatefulSet> = Api::namespaced(env.client(), &namespace);
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "db" },
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": { "matchLabels": { "app": "db" } },
            "template": pod_template("db", json!({ "version": "1" })),
        },
    }))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.unwrap();
    eventually("three ready Pods", async || {
        let status = sets.get("db").await.unwrap().status?;
        (status.ready_replicas == Some(3)).then_some(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(env.client(), &namespace);
    let mut events = std::pin::pin!(watcher(pods, watcher::Config::default().labels("app=db")));
    let mut current: BTreeMap<String, Pod> = BTreeMap::new();
    // Fill the view before the update starts.
    while let Some(event) = events.try_next().await.unwrap() {
        match event {
            watcher::Event::InitApply(pod) => {
                current.insert(pod.name_any(), pod);
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(current.values().filter(|pod| is_running_and_ready(pod)).count(), 3);
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "template": { "metadata": { "annotations": { "version": "2" } } } } })),
    )
    .await
    .unwrap();

    let updated = |pod: &Pod| pod.annotations().get("version").map(String::as_str) == Some("2");
    let mut most_unavailable = 0;
    let mut replaced_in_order = Vec::new();
    let rolled = async {
        while let Some(event) = events.try_next().await.unwrap() {
            match event {
                watcher::Event::Apply(pod) => {
                    if updated(&pod) && is_running_and_ready(&pod) && !replaced_in_order.contains(&pod.name_any()) {
                        replaced_in_order.push(pod.name_any());
                    }
                    current.insert(pod.name_any(), pod);
                }
                watcher::Event::Delete(pod) => {
                    current.remove(&pod.name_any());
                }
                _ => {}
            }
            let available = ["db-0", "db-1", "db-2"].iter().filter(|name| current.get(**name).is_some_and(is_running_and_ready)).count();
            most_unavailable = most_unavailable.max(3 - available);
            if replaced_in_order.len() == 3 {
                return;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), rolled).await.expect("the rolling update finishes");
    assert_eq!(replaced_in_order, ["db-2", "db-1", "db-0"], "replaced from the highest ordinal");
    assert_eq!(most_unavailable, 1, "one Pod at a time");
}

#[tokio::test]
async fn jobs_complete_or_fail_as_their_pods_do() {
    let env = TestEnv::shared_with_nodes();
    let namespace = env.namespace("job").await;
    let jobs: Api<Job> = Api::namespaced(env.client(), &namespace);
    let job = |name: &str, annotations: serde_json::Value| -> Job {
        let mut template = pod_template(name, annotations);
        template["spec"]["restartPolicy"] = json!("Never");
        serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "completions": 2, "backoffLimit": 0, "template": template },
        }))
        .unwrap()
    };
    jobs.create(&PostParams::default(), &job("succeeds", json!({}))).await.unwrap();
    jobs.create(&PostParams::default(), &job("fails", json!({ POD_EXIT_CODE_ANNOTATION: "3" }))).await.unwrap();
    let finished = async |name: &str, type_: &str| {
        eventually(&format!("Job {name} to be {type_}"), async || {
            let status = jobs.get(name).await.unwrap().status?;
            status.conditions.as_ref()?.iter().any(|c| c.type_ == type_ && c.status == "True").then_some(status)
        })
        .await
    };
    let status = finished("succeeds", "Complete").await;
    assert_eq!(status.succeeded, Some(2));
    let status = finished("fails", "Failed").await;
    assert_eq!(status.failed, Some(1));
    let failed = pods(env, &namespace, "fails").await;
    let terminated = failed[0].status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].state.as_ref().unwrap().terminated.clone();
    assert_eq!(terminated.unwrap().exit_code, 3);
}

/// A Service gets an EndpointSlice with the Pods' IPs; a Pod marked unready runs, stays
/// unready (and is listed as not ready) until the mark goes, then becomes Ready.
#[tokio::test]
async fn services_get_endpoints_and_a_pod_marked_unready_stays_unready() {
    let env = TestEnv::shared_with_nodes();
    let namespace = env.namespace("service").await;
    let deployments: Api<Deployment> = Api::namespaced(env.client(), &namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "api" },
        "spec": { "replicas": 2, "selector": { "matchLabels": { "app": "api" } }, "template": pod_template("api", json!({})) },
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();
    let pods_api: Api<Pod> = Api::namespaced(env.client(), &namespace);
    let unready: Pod = serde_json::from_value(json!({
        "metadata": { "name": "warming-up", "labels": { "app": "api" }, "annotations": { POD_READY_ANNOTATION: "false" } },
        "spec": { "containers": [{ "name": "main", "image": "registry.k8s.io/pause:3.10" }] },
    }))
    .unwrap();
    pods_api.create(&PostParams::default(), &unready).await.unwrap();
    let services: Api<Service> = Api::namespaced(env.client(), &namespace);
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "api" },
        "spec": { "selector": { "app": "api" }, "ports": [{ "port": 80, "targetPort": 8080 }] },
    }))
    .unwrap();
    services.create(&PostParams::default(), &service).await.unwrap();

    let slices: Api<EndpointSlice> = Api::namespaced(env.client(), &namespace);
    // (address, ready) of every endpoint of the Service.
    let endpoints = async || -> BTreeSet<(String, bool)> {
        let listed = slices.list(&ListParams::default().labels("kubernetes.io/service-name=api")).await.unwrap().items;
        listed
            .iter()
            .flat_map(|slice| slice.endpoints.iter().flatten())
            .map(|endpoint| (endpoint.addresses[0].clone(), endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true)))
            .collect()
    };
    let expected = eventually("endpoints for the three Pods", async || {
        let pods = pods(env, &namespace, "api").await;
        let expected: BTreeSet<(String, bool)> = pods.iter().filter_map(|pod| Some((pod_ip(pod)?, is_running_and_ready(pod)))).collect();
        (expected.len() == 3 && endpoints().await == expected).then_some(expected)
    })
    .await;
    assert_eq!(expected.iter().filter(|(_, ready)| *ready).count(), 2, "{expected:?}");

    let warming = pods_api.get("warming-up").await.unwrap();
    assert_eq!(warming.status.as_ref().and_then(|status| status.phase.as_deref()), Some("Running"));
    assert_eq!(condition(&warming, "Ready"), Some("False"));
    // It stays so while other Pods come and go (the Deployment's third Pod becomes Ready).
    deployments.patch("api", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 3 } }))).await.unwrap();
    eventually("the third replica to be ready", async || {
        let status = deployments.get("api").await.unwrap().status?;
        (status.ready_replicas == Some(3)).then_some(())
    })
    .await;
    assert_eq!(condition(&pods_api.get("warming-up").await.unwrap(), "Ready"), Some("False"));

    pods_api
        .patch(
            "warming-up",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { POD_READY_ANNOTATION: null } } })),
        )
        .await
        .unwrap();
    eventually("the unmarked Pod to become Ready and its endpoint ready", async || {
        let pod = pods_api.get("warming-up").await.unwrap();
        let ip = pod_ip(&pod)?;
        (is_running_and_ready(&pod) && endpoints().await.contains(&(ip, true))).then_some(())
    })
    .await;
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// A bare Pod that is not restarted when it exits (no Job owns it) completes as a Job's does:
/// `Succeeded`, or `Failed` with the annotated exit code; one that is restarted keeps running.
#[tokio::test]
async fn pods_that_run_to_completion_complete_without_a_job() {
    let env = TestEnv::shared_with_nodes();
    let namespace = env.namespace("bare-pods").await;
    let pods: Api<Pod> = Api::namespaced(env.client(), &namespace);
    let pod = |name: &str, restart_policy: &str, annotations: serde_json::Value| -> Pod {
        let mut template = pod_template(name, annotations);
        template["metadata"]["name"] = json!(name);
        template["spec"]["restartPolicy"] = json!(restart_policy);
        serde_json::from_value(template).unwrap()
    };
    for pod in [
        pod("once", "Never", json!({})),
        pod("retried", "OnFailure", json!({})),
        pod("broken", "Never", json!({ POD_EXIT_CODE_ANNOTATION: "2" })),
        pod("server", "Always", json!({})),
    ] {
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let finished = async |name: &str| {
        eventually(&format!("Pod {name} to finish"), async || {
            let pod = pods.get(name).await.unwrap();
            matches!(phase(&pod), Some("Succeeded" | "Failed")).then_some(pod)
        })
        .await
    };
    assert_eq!(phase(&finished("once").await), Some("Succeeded"));
    assert_eq!(phase(&finished("retried").await), Some("Succeeded"));
    let broken = finished("broken").await;
    assert_eq!(phase(&broken), Some("Failed"));
    let terminated = broken.status.unwrap().container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!((terminated.exit_code, terminated.reason.as_deref()), (2, Some("Error")));
    // Checked last, after the others finished: a server's Pod is still running.
    assert!(is_running_and_ready(&pods.get("server").await.unwrap()));
}

/// A StatefulSet with `volumeClaimTemplates` runs: its claims get the default StorageClass,
/// bind to provisioned volumes, and the Pods become Ready. Deleting the claims (once the
/// StatefulSet is gone) removes them and their volumes, as the class's `Delete` policy says.
#[tokio::test]
async fn claims_bind_to_provisioned_volumes_and_go_with_them() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use k8s_openapi::api::storage::v1::StorageClass;
    let env = TestEnv::shared_with_nodes();
    let namespace = env.namespace("volumes").await;
    let default_class = Api::<StorageClass>::all(env.client()).get(bosun_testenv::STORAGE_CLASS).await.unwrap();
    assert_eq!(default_class.annotations()["storageclass.kubernetes.io/is-default-class"], "true");

    let sets: Api<StatefulSet> = Api::namespaced(env.client(), &namespace);
    let mut template = pod_template("store", json!({}));
    template["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "store" },
        "spec": {
            "replicas": 2,
            "serviceName": "store",
            "selector": { "matchLabels": { "app": "store" } },
            "template": template,
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
            }],
        },
    }))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.unwrap();
    eventually("both Pods of the StatefulSet ready", async || {
        let status = sets.get("store").await.unwrap().status?;
        (status.ready_replicas == Some(2)).then_some(())
    })
    .await;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client(), &namespace);
    let volumes: Api<PersistentVolume> = Api::all(env.client());
    let listed = claims.list(&Default::default()).await.unwrap().items;
    let names: BTreeSet<String> = listed.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, BTreeSet::from(["data-store-0".to_owned(), "data-store-1".to_owned()]));
    let mut bound = Vec::new();
    for claim in &listed {
        let spec = claim.spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some(bosun_testenv::STORAGE_CLASS));
        assert_eq!(claim.status.as_ref().and_then(|status| status.phase.as_deref()), Some("Bound"), "{}", claim.name_any());
        let volume = volumes.get(spec.volume_name.as_deref().unwrap()).await.unwrap();
        assert_eq!(volume.spec.as_ref().unwrap().capacity.as_ref().unwrap()["storage"].0, "1Gi");
        bound.push(volume.name_any());
    }

    // A claim in use outlives its deletion until its Pod goes (the protection finalizer), then
    // goes with its volume.
    sets.delete("store", &Default::default()).await.unwrap();
    eventually("the StatefulSet's Pods to go", async || pods(env, &namespace, "store").await.is_empty().then_some(())).await;
    claims.delete_collection(&Default::default(), &Default::default()).await.unwrap();
    eventually("the claims and their volumes to be deleted", async || {
        let claims_left = claims.list(&Default::default()).await.unwrap().items.len();
        let mut volumes_left = 0;
        for name in &bound {
            volumes_left += usize::from(volumes.get_opt(name).await.unwrap().is_some());
        }
        (claims_left == 0 && volumes_left == 0).then_some(())
    })
    .await;
}
