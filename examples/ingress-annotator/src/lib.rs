//! The tutorial's Ingress annotator as a native controller on bosun-runtime: every Ingress
//! gets the annotation `foo: bar`. The same parts as the tutorial's controller-runtime
//! version — a watch, a predicate, a queue, a reconcile that patches — with bosun-runtime's
//! shared cache and [`Controller`].
//!
//! Unlike the tutorial, which replaced all of an Ingress's annotations with its own, the
//! reconcile patches only its key: annotations set by others stay.

use bosun_runtime::{Action, CacheEvent, Controller, ObjectKey, SharedCaches};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

/// The annotation every Ingress gets.
pub const ANNOTATION: (&str, &str) = ("foo", "bar");

fn lacks_annotation(ingress: &DynamicObject) -> bool {
    ingress.annotations().get(ANNOTATION.0).map(String::as_str) != Some(ANNOTATION.1)
}

/// Runs the annotator as `controller` (its name, workers and metrics) until `shutdown`.
pub async fn run(client: Client, caches: &SharedCaches, controller: Controller, shutdown: impl Future<Output = ()>) {
    let ingresses = caches.cache(&ApiResource::erase::<Ingress>(&()));
    // The predicate: only an Ingress without the annotation needs a reconcile, so the update
    // our own patch causes does not come back as work.
    let needs_annotation = |event: &CacheEvent<'_>| matches!(event, CacheEvent::Applied { new, .. } if lacks_annotation(new));
    let controller = controller.for_resource(ingresses.clone(), needs_annotation);
    let reconcile = move |key: ObjectKey| {
        let (client, ingress) = (client.clone(), ingresses.get(&key));
        async move {
            // The cache is current to the last event; a deleted or annotated Ingress needs nothing.
            let Some(ingress) = ingress.filter(|ingress| lacks_annotation(ingress)) else { return Ok(Action::Done) };
            let api: Api<Ingress> = Api::namespaced(client, &ingress.namespace().unwrap_or_default());
            let patch = serde_json::json!({ "metadata": { "annotations": { ANNOTATION.0: ANNOTATION.1 } } });
            api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            tracing::info!(ingress = %key, "annotated");
            Ok::<_, kube::Error>(Action::Done)
        }
    };
    controller.run(reconcile, |_, _| None, shutdown).await;
}
