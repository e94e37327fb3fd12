//! The FooBar controller against a real control plane with simulated nodes, where the job
//! controller runs each Job's Pod to completion: the sample FooBar gets its Job and reports it
//! `Succeeded`, a new command replaces the Job, deleting the FooBar deletes the Job (the
//! garbage collector follows the owner reference), and the committed CRD is current.

use std::time::Duration;

use bosun_runtime::{Controller, Metrics, SharedCaches};
use bosun_testenv::{TestEnv, eventually};
use foobar::FooBar;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
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
    let env = TestEnv::shared_with_nodes();
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

    // The job controller runs the Job's Pod on a simulated node, where it completes.
    let succeeded = status(&foobars, "foobar-sample", "Succeeded").await;
    let job_name = succeeded.job.expect("the status names the Job");
    let job = jobs.get(&job_name).await.unwrap();
    let owner = &job.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("FooBar", created.uid().unwrap().as_str(), Some(true)));
    let container = &job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.command.as_deref().unwrap(), ["sh", "-c", "echo foobar"]);
    let env_vars: Vec<(String, String)> =
        container.env.iter().flatten().map(|var| (var.name.clone(), var.value.clone().unwrap_or_default())).collect();
    assert_eq!(env_vars, [("FOO".into(), "bar".into()), ("BARZ".into(), "false".into())]);
    assert_eq!(job.status.and_then(|status| status.succeeded), Some(1));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pod = pods.list(&ListParams::default().labels(&format!("job-name={job_name}"))).await.unwrap().items.remove(0);
    assert_eq!(pod.status.and_then(|status| status.phase).as_deref(), Some("Succeeded"));

    // A new command: a new Job, which runs too, and the old one goes.
    let change = json!({ "spec": { "command": "echo again" } });
    foobars.patch("foobar-sample", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    let replaced = status(&foobars, "foobar-sample", "Succeeded").await;
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
