//! Simulated nodes: Nodes whose kubelet is KWOK's `kwok` controller, so that Pods are
//! scheduled by kube-scheduler, run, become Ready with a Pod IP, complete and go away as on a
//! real cluster — without containers.
//!
//! The Pod lifecycle is the KWOK stages in `stages.yaml`: a Pod runs and is Ready as soon as
//! it is scheduled, unless it carries [`POD_READY_ANNOTATION`]`: "false"`; a Pod that is not
//! restarted when it exits (`restartPolicy: Never` or `OnFailure`, as every Job's Pod) then
//! completes with the exit code in [`POD_EXIT_CODE_ANNOTATION`] (0 by default); a deleted
//! Pod is gone at once. Nodes renew their Lease and report Ready.

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use std::collections::BTreeMap;

/// Set to `"false"` on a Pod (or a Pod template) to keep it running but unready on the
/// simulated nodes, as a failing readiness probe does; any other value or none makes it Ready.
pub const POD_READY_ANNOTATION: &str = "testenv.bosun.dev/ready";

/// The exit code a Pod with `restartPolicy: Never` or `OnFailure` (a Job's Pod, say)
/// completes with on the simulated nodes (`"0"` when absent); any other value makes the Pod
/// `Failed`, as a failing command does (an `OnFailure` Pod too: it is not restarted).
pub const POD_EXIT_CODE_ANNOTATION: &str = "testenv.bosun.dev/exit-code";

/// The kube-controller-manager controllers that also run when there are nodes: the workload
/// controllers, Services' endpoints, the node lifecycle that watches their heartbeats, and the
/// volume controllers of [`crate::STORAGE_CLASS`].
pub const NODE_CONTROLLERS: &[&str] = &[
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "replicationcontroller-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "disruption-controller",
    "pod-garbage-collector-controller",
    "ttl-after-finished-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "resourcequota-controller",
    // Simulated storage (crate::storage): claims bind, and are released when no Pod uses them.
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
];

/// The KWOK configuration: the stages of Nodes and Pods.
pub(crate) const STAGES: &str = include_str!("stages.yaml");

/// The annotation that hands a Node to `kwok` (its `--manage-nodes-with-annotation-selector`).
pub(crate) const MANAGED_BY_KWOK: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// The range Pod IPs are taken from (the Service range is `10.0.0.0/24`).
pub(crate) const POD_CIDR: &str = "10.244.0.1/16";

/// How long a simulated node's Lease lasts; `kwok` renews it well before.
pub(crate) const LEASE_SECONDS: u32 = 40;

/// The name of simulated node `index` (from 1).
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// The Node object of simulated node `index`: labelled as a kubelet labels its Node, with an
/// internal IP of its own. Nodes may be created with their status.
fn node(index: usize) -> Node {
    let name = node_name(index);
    let labels = [
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("node.bosun.dev/simulated", "true"),
    ];
    Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels.into_iter().map(|(key, value)| (key.to_owned(), value.to_owned())).collect()),
            annotations: Some(BTreeMap::from([(MANAGED_BY_KWOK.0.to_owned(), MANAGED_BY_KWOK.1.to_owned())])),
            ..Default::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: format!("10.1.0.{index}") },
                NodeAddress { type_: "Hostname".into(), address: name },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates simulated nodes 1 to `count`; one that exists already is kept.
pub(crate) async fn create(nodes: &Api<Node>, count: usize) -> Result<(), kube::Error> {
    for index in 1..=count {
        match nodes.create(&PostParams::default(), &node(index)).await {
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            result => {
                result?;
            }
        }
    }
    Ok(())
}

/// Whether a Node's `Ready` condition is `True`.
pub(crate) fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.into_iter().flatten().any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

/// kube-scheduler's configuration: its kubeconfig, a client as quick as
/// kube-controller-manager's, no leader election.
pub(crate) fn scheduler_config(kubeconfig: &std::path::Path) -> String {
    format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: {}\n  \
         qps: 200\n  burst: 400\nleaderElection:\n  leaderElect: false\n",
        serde_json::to_string(&kubeconfig.display().to_string()).expect("a string serializes")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_handed_to_kwok_and_addressed() {
        let node = node(2);
        assert_eq!(node.metadata.name.as_deref(), Some("node-2"));
        assert_eq!(node.metadata.annotations.unwrap()["kwok.x-k8s.io/node"], "fake");
        let addresses = node.status.unwrap().addresses.unwrap();
        assert_eq!(addresses[0].address, "10.1.0.2");
    }

    #[test]
    fn the_stages_are_kwok_stages_and_honour_the_annotations() {
        let documents: Vec<&str> = STAGES.split("\n---\n").collect();
        assert_eq!(documents.len(), 6);
        assert!(documents.iter().all(|document| document.contains("kind: Stage")));
        assert!(STAGES.contains(POD_READY_ANNOTATION));
        assert!(STAGES.contains(POD_EXIT_CODE_ANNOTATION));
    }
}
