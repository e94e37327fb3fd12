//! The FooBar controller against a real control plane, with this test in the job controller's
//! and kubelet's place (the local control plane runs no nodes): the sample FooBar gets its Job,
//! the Job's progress shows in status, a new command replaces the Job, deleting the FooBar
//! deletes the Job (the garbage collector follows the owner reference), and the committed
//! CRD is current.

use std::time::Duration;

use bosun_runtime::{Controller, Metrics, SharedCaches};
use bosun_testenv::{TestEnv, eventually};
use foobar::FooBar;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt, ResourceExt};
use serde_json::json;

const EXAMPLE: &str = env!("CARGO_MANIFEST_DIR");

fn sample() -> FooBar {
    serde_yaml::from_str(&std::fs::read_to_string(format!("{EXAMPLE}/foobar.yaml")).unwrap()).unwrap()
}

#[test]
fn the_committed_crd_is_current() {
    let committed: CustomResourceDefinition =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{EXAMPLE}/crd.yaml")).unwrap()).unwrap();
    assert_eq!(committed, FooBar::crd(), "crd.yaml is stale: cargo run -p foobar -- crd > examples/foobar/crd.yaml");
}

/// Waits until the FooBar's status reports `phase` for the Job of its current generation.
async fn status(api: &Api<FooBar>, name: &str, phase: &str) -> foobar::FooBarStatus {
    eventually(&format!("FooBar {name} {phase}"), async || {
        let foobar = api.get(name).await.unwrap();
        let status = foobar.status?;
        (status.observed_generation == foobar.metadata.generation && status.phase.as_deref() == Some(phase)).then_some(status)
    })
    .await
}

#[tokio::test]
async fn a_foobar_runs_its_command_as_a_job_and_reports_it() {
    let env = TestEnv::shared();
    let client = env.client();
    env.install_crd(&FooBar::crd()).await;
    let namespace = env.namespace("foobar").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = {
        let (client, caches) = (client.clone(), SharedCaches::new(client.clone()));
        tokio::spawn(async move {
            foobar::run(client, &caches, Controller::new(foobar::NAME, &Metrics::new()).workers(2), async {
                stopped.await.unwrap_or_default()
            })
            .await
        })
    };

    let foobars: Api<FooBar> = Api::namespaced(client.clone(), &namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let created = foobars.create(&PostParams::default(), &sample()).await.unwrap();

    let pending = status(&foobars, "foobar-sample", "Pending").await;
    let job_name = pending.job.expect("the status names the Job");
    let job = jobs.get(&job_name).await.unwrap();
    let owner = &job.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("FooBar", created.uid().unwrap().as_str(), Some(true)));
    let container = &job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.command.as_deref().unwrap(), ["sh", "-c", "echo foobar"]);
    let env_vars: Vec<(String, String)> =
        container.env.iter().flatten().map(|var| (var.name.clone(), var.value.clone().unwrap_or_default())).collect();
    assert_eq!(env_vars, [("FOO".into(), "bar".into()), ("BARZ".into(), "false".into())]);

    // As the job controller would report a pod running, then the Job complete.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let running = json!({ "status": { "active": 1, "startTime": now } });
    jobs.patch_status(&job_name, &PatchParams::default(), &Patch::Merge(&running)).await.unwrap();
    status(&foobars, "foobar-sample", "Running").await;
    let complete = json!({ "status": {
        "active": 0, "succeeded": 1, "completionTime": now,
        "conditions": [
            { "type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now, "lastProbeTime": now },
            { "type": "Complete", "status": "True", "lastTransitionTime": now, "lastProbeTime": now },
        ],
    } });
    jobs.patch_status(&job_name, &PatchParams::default(), &Patch::Merge(&complete)).await.unwrap();
    status(&foobars, "foobar-sample", "Succeeded").await;

    // A new command: a new Job, and the old one goes.
    let change = json!({ "spec": { "command": "echo again" } });
    foobars.patch("foobar-sample", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    let replaced = status(&foobars, "foobar-sample", "Pending").await;
    let new_name = replaced.job.unwrap();
    assert_ne!(new_name, job_name);
    let labelled = ListParams::default().labels("examples.bosun.dev/foobar=foobar-sample");
    eventually("only the new Job left", async || {
        let names: Vec<String> = jobs.list(&labelled).await.unwrap().items.iter().map(ResourceExt::name_any).collect();
        (names == [new_name.clone()]).then_some(())
    })
    .await;

    foobars.delete("foobar-sample", &DeleteParams::default()).await.unwrap();
    eventually("the Job deleted with its FooBar", async || jobs.list(&labelled).await.unwrap().items.is_empty().then_some(())).await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), controller).await.expect("the controller stops on shutdown").unwrap();
}
