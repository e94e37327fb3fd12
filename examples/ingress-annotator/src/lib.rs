//! The tutorial's Ingress annotator as a native controller on bosun-runtime: every Ingress
//! gets the annotation `foo: bar`. The same parts as the tutorial's controller-runtime
//! version — a watch, a predicate, a queue, a reconcile that patches — with bosun-runtime's
//! shared cache, work queue and workers.
//!
//! Unlike the tutorial, which replaced all of an Ingress's annotations with its own, the
//! reconcile patches only its key: annotations set by others stay.

use std::sync::Arc;

use bosun_runtime::{Action, CacheEvent, Metrics, ObjectKey, SharedCaches, WorkQueue, run_workers};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

/// The annotation every Ingress gets.
pub const ANNOTATION: (&str, &str) = ("foo", "bar");

/// The controller's name in metrics and logs.
const NAME: &str = "ingress-annotator";

/// The predicate: only Ingresses without the annotation need a reconcile.
fn needs_annotation(ingress: &DynamicObject) -> bool {
    ingress.annotations().get(ANNOTATION.0).map(String::as_str) != Some(ANNOTATION.1)
}

/// Watches Ingresses through `caches` and annotates them with `workers` reconciles at once,
/// until `shutdown` completes.
pub async fn run(client: Client, caches: &SharedCaches, metrics: Metrics, workers: usize, shutdown: impl Future<Output = ()>) {
    let ingresses = caches.cache(&ApiResource::erase::<Ingress>(&()));
    let queue: WorkQueue<ObjectKey> = WorkQueue::default().with_metrics(metrics.queue(NAME));

    // Watch with a predicate: an event queues the Ingress only if it lacks the annotation,
    // so the update our own patch causes does not come back as work.
    let handler_queue = queue.clone();
    let _subscription = ingresses.subscribe(Arc::new(move |event: &CacheEvent<'_>| {
        if let CacheEvent::Applied { new, .. } = event
            && needs_annotation(new)
        {
            handler_queue.add(ObjectKey::of(new));
        }
    }));

    let reconcile = {
        let ingresses = ingresses.clone();
        move |key: ObjectKey| {
            let (client, ingresses) = (client.clone(), ingresses.clone());
            async move {
                // The cache is current to the last event; a deleted Ingress needs nothing.
                let Some(ingress) = ingresses.get(&key) else { return Ok(Action::Done) };
                if !needs_annotation(&ingress) {
                    return Ok(Action::Done);
                }
                let api: Api<Ingress> = Api::namespaced(client, key.namespace.as_deref().unwrap_or_default());
                let patch = serde_json::json!({ "metadata": { "annotations": { ANNOTATION.0: ANNOTATION.1 } } });
                api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                tracing::info!(ingress = %key, "annotated");
                Ok::<_, kube::Error>(Action::Done)
            }
        }
    };

    let workers = async {
        ingresses.wait_synced().await;
        for ingress in ingresses.list().iter().filter(|ingress| needs_annotation(ingress)) {
            queue.add(ObjectKey::of(ingress));
        }
        run_workers(NAME, queue.clone(), workers, metrics, reconcile).await;
    };
    tokio::pin!(workers);
    tokio::select! {
        () = &mut workers => {}
        () = shutdown => {
            queue.shut_down();
            workers.await;
        }
    }
}
