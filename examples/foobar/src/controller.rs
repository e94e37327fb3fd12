//! The FooBar controller, on bosun-runtime's [`Controller`]: `for_resource` FooBars (unless
//! only their status changed: the generation predicate), `owns` Jobs (a Job change queues the
//! FooBar controlling it). Index: Jobs by `<namespace>/<name>` of the FooBar controlling them.
//! Workers: [`reconcile`] for one FooBar key at a time.

use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::{Action, Cache, Controller, EventRecorder, EventType, ObjectKey, SharedCaches, predicate};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::types::{FooBar, FooBarStatus};

/// The controller's name in logs and events.
pub const NAME: &str = "foobar";
/// The index of Jobs by the FooBar controlling them.
const BY_FOOBAR: &str = "foobar.examples.bosun.dev/owner";
/// The label on every Job, naming its FooBar (for `kubectl get jobs -l`).
pub const FOOBAR_LABEL: &str = "examples.bosun.dev/foobar";

/// Why a reconcile failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A request to the API server failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// A cached FooBar did not parse (the CRD's schema should prevent it).
    #[error("FooBar {key} does not parse: {source}")]
    Parse {
        /// The FooBar.
        key: ObjectKey,
        /// Why.
        source: kube::core::dynamic::ParseDynamicObjectError,
    },
}

struct Shared {
    client: Client,
    foobars: Arc<Cache>,
    jobs: Arc<Cache>,
    recorder: EventRecorder,
}

/// The `<namespace>/<name>` of the FooBar controlling `job`, if one does.
fn owner_of(job: &DynamicObject) -> Option<String> {
    let owner = job.owner_references().iter().find(|owner| owner.controller == Some(true) && owner.kind == "FooBar")?;
    Some(format!("{}/{}", job.namespace()?, owner.name))
}

/// Runs the FooBar controller as `controller` (its name, workers and metrics) until
/// `shutdown` completes.
pub async fn run(client: Client, caches: &SharedCaches, controller: Controller, shutdown: impl Future<Output = ()>) {
    let foobars = caches.cache(&ApiResource::erase::<FooBar>(&()));
    let jobs = caches.cache(&ApiResource::erase::<Job>(&()));
    jobs.add_index(BY_FOOBAR, |job| owner_of(job).into_iter().collect());
    let controller = controller.for_resource(foobars.clone(), predicate::generation_changed).owns(jobs.clone());
    let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| NAME.into());
    let shared = Arc::new(Shared { recorder: EventRecorder::new(client.clone(), NAME, instance, 1.0 / 300.0, 25), client, foobars, jobs });
    let reconcile = move |key: ObjectKey| {
        let shared = shared.clone();
        async move { reconcile(&shared, &key).await }
    };
    controller.run(reconcile, |_, _| None, shutdown).await;
}

/// FNV-1a: a hash that stays the same across Rust releases, so Job names do too.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

/// The Job that runs `foobar`'s current spec: its name changes with what it runs.
pub fn desired_job(foobar: &FooBar) -> Job {
    let spec = &foobar.spec;
    let name = foobar.name_any();
    let runs = serde_json::to_string(&json!([spec.image(), spec.command, spec.foo, spec.barz])).expect("JSON serializes");
    // Job names become pod labels: at most 63 characters.
    let job_name = format!("{}-{:08x}", &name[..name.len().min(54)], fnv1a(&runs));
    let labels = json!({ FOOBAR_LABEL: name });
    serde_json::from_value(json!({
        "metadata": {
            "name": job_name,
            "namespace": foobar.namespace(),
            "labels": labels,
            "ownerReferences": [foobar.controller_owner_ref(&()).expect("a FooBar from the API server has a UID")],
        },
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "foobar",
                        "image": spec.image(),
                        "command": ["sh", "-c", spec.command],
                        "env": [{ "name": "FOO", "value": spec.foo }, { "name": "BARZ", "value": spec.barz }],
                    }],
                },
            },
        },
    }))
    .expect("a valid Job")
}

/// The phase of `job` as FooBar status reports it, and the message of a failure.
fn phase(job: &Job) -> (&'static str, Option<String>) {
    let Some(status) = &job.status else { return ("Pending", None) };
    let condition =
        |type_: &str| status.conditions.iter().flatten().find(|condition| condition.type_ == type_ && condition.status == "True");
    if condition("Complete").is_some() {
        ("Succeeded", None)
    } else if let Some(failed) = condition("Failed") {
        ("Failed", failed.message.clone())
    } else if status.active.unwrap_or(0) > 0 {
        ("Running", None)
    } else {
        ("Pending", None)
    }
}

/// Brings one FooBar's Job to its spec and its status to its Job.
async fn reconcile(shared: &Shared, key: &ObjectKey) -> Result<Action, ReconcileError> {
    let Some(object) = shared.foobars.get(key) else { return Ok(Action::Done) };
    let foobar: FooBar = (*object).clone().try_parse().map_err(|source| ReconcileError::Parse { key: key.clone(), source })?;
    if foobar.metadata.deletion_timestamp.is_some() {
        return Ok(Action::Done);
    }
    let namespace = key.namespace.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(shared.client.clone(), &namespace);
    let desired = desired_job(&foobar);
    let desired_name = desired.name_any();
    let uid = foobar.uid().unwrap_or_default();

    // The Jobs of an older spec go; only those this FooBar (this UID) controls.
    let owned = shared.jobs.by_index(BY_FOOBAR, &format!("{namespace}/{}", key.name));
    for old in owned.iter().filter(|job| job.name_any() != desired_name) {
        let controlled = old.owner_references().iter().any(|owner| owner.controller == Some(true) && owner.uid == uid);
        if controlled {
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: old.uid(), resource_version: None }),
                ..DeleteParams::background()
            };
            match jobs.delete(&old.name_any(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    let current = owned.iter().find(|job| job.name_any() == desired_name).map(|job| (**job).clone().try_parse::<Job>());
    let (job, message) = match current {
        Some(Ok(job)) => (Some(job), None),
        Some(Err(source)) => return Err(ReconcileError::Parse { key: key.clone(), source }),
        None => match jobs.create(&PostParams::default(), &desired).await {
            Ok(job) => {
                let note = format!("created Job {desired_name} to run {:?}", foobar.spec.command);
                shared.recorder.record(&foobar.object_ref(&()), EventType::Normal, "JobCreated", &note).await;
                // Read our own write, so the Job's event does not find it missing and create it again.
                let created = ObjectKey { namespace: Some(namespace.clone()), name: desired_name.clone() };
                shared.jobs.wait_for(Duration::from_secs(5), |jobs| jobs.get(&created).is_some()).await;
                (Some(job), None)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // A Job of that name that this FooBar does not control (it would be in the index).
                let note = format!("Job {desired_name} already exists and is not controlled by this FooBar; delete or rename it");
                shared.recorder.record(&foobar.object_ref(&()), EventType::Warning, "JobExists", &note).await;
                (None, Some(note))
            }
            Err(error) => return Err(error.into()),
        },
    };

    let (phase, failure) = job.as_ref().map(phase).unwrap_or(("Pending", None));
    let status = FooBarStatus {
        observed_generation: foobar.metadata.generation,
        job: job.is_some().then(|| desired_name.clone()),
        phase: Some(phase.to_owned()),
        message: message.or(failure),
    };
    if foobar.status.as_ref() != Some(&status) {
        let api: Api<FooBar> = Api::namespaced(shared.client.clone(), &namespace);
        let patch = json!({ "status": status });
        api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(Action::Done)
}
