//! What a hosted controller does to the object it reconciles — a CompositeController's parent
//! or a DecoratorController's target: why a sync fails ([`SyncError`]), its finalizer and
//! status written with JSON patches guarded by its UID, the controller reference its children
//! carry, and what happens to its key in the queue after a sync.

use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_runtime::{Cache, ReconcileResult, WorkQueue};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::children::{ApplyError, ClaimError};
use crate::context::EngineContext;
use crate::api::HookVersion;
use crate::hooks::{self, HookError, ObjectMaps};
use crate::related::RelatedObjects;

/// Finalizers that mean the garbage collector is deleting the object's dependents itself.
pub const GC_FINALIZERS: [&str; 2] = ["foregroundDeletion", "orphan"];

/// Why a sync did not complete. Every variant but the last two is reported as a `SyncError`
/// event on the parent and retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The hook failed; nothing was changed.
    #[error("{0}")]
    Hook(Box<HookError>),
    /// The hook's response is not acceptable; nothing was changed.
    #[error("invalid {hook} hook response: {message}")]
    InvalidResponse {
        /// Which hook.
        hook: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The parent object is not acceptable (e.g. no selector).
    #[error("{0}")]
    InvalidParent(String),
    /// The related objects cannot be read.
    #[error("{0}")]
    Related(String),
    /// Claiming children failed.
    #[error("{0}")]
    Claim(#[from] ClaimError),
    /// Some children could not be written; the others were.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Children(Vec<ApplyError>),
    /// Updating the parent (finalizer, labels, status) failed.
    #[error("updating the parent: {0}")]
    Parent(Box<kube::Error>),
    /// The hook asked to be called later (429): requeue after the delay, without an event.
    #[error("the hook asked to retry later")]
    RetryAfter(Option<Duration>),
    /// The parent changed while we wrote it: sync again soon, without an event.
    #[error("the parent changed during the sync")]
    Conflict,
}

impl SyncError {
    /// A hook failure: 429 asks for a later retry, anything else is an error.
    pub fn from_hook(error: HookError) -> SyncError {
        match error {
            HookError::TooManyRequests { retry_after, .. } => SyncError::RetryAfter(retry_after),
            error => SyncError::Hook(Box::new(error)),
        }
    }
}

/// Whether a change from `old` to `new` is one `ignoreStatusChanges` skips: same generation,
/// labels and annotations, and not being deleted.
pub fn only_status_changed(old: &DynamicObject, new: &DynamicObject) -> bool {
    old.metadata.generation == new.metadata.generation
        && old.metadata.labels == new.metadata.labels
        && old.metadata.annotations == new.metadata.annotations
        && new.metadata.deletion_timestamp.is_none()
}

/// A response's `resyncAfterSeconds` as a delay, if positive.
pub fn resync_after(seconds: Option<f64>) -> Option<Duration> {
    seconds.filter(|seconds| *seconds > 0.0).and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
}

/// `related` laid out for a hook of `version`, for a parent in `parent_namespace`.
pub fn related_maps<'a>(related: &'a RelatedObjects, version: HookVersion, parent_namespace: Option<&str>) -> ObjectMaps<'a> {
    let mut maps = ObjectMaps::new();
    for (group, objects) in related {
        hooks::insert_objects(&mut maps, group, version, parent_namespace, objects.iter().map(Arc::as_ref));
    }
    maps
}

/// The controller reference a parent puts on its children.
pub fn controller_reference(parent: &DynamicObject, resource: &ApiResource) -> Value {
    json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "name": parent.name_any(),
        "uid": parent.uid().unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The API of `object`'s resource, in its namespace.
pub fn object_api(client: &kube::Client, resource: &ApiResource, object: &DynamicObject) -> Api<DynamicObject> {
    match object.namespace() {
        Some(namespace) => Api::namespaced_with(client.clone(), &namespace, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Adds `finalizer` to the parent's finalizers, or removes it.
pub async fn patch_finalizer(api: &Api<DynamicObject>, parent: &DynamicObject, finalizer: &str, add: bool) -> Result<(), SyncError> {
    let finalizers = parent.finalizers();
    let operation = match finalizers.iter().position(|existing| existing == finalizer) {
        None if add && finalizers.is_empty() => json!({ "op": "add", "path": "/metadata/finalizers", "value": [finalizer] }),
        None if add => json!({ "op": "add", "path": "/metadata/finalizers/-", "value": finalizer }),
        Some(index) if !add => json!({ "op": "remove", "path": format!("/metadata/finalizers/{index}") }),
        _ => return Ok(()),
    };
    patch_guarded(api, parent, vec![operation], false).await
}

/// Removes `finalizer` from every object in `parents`: once its controller is deleted, nothing
/// else would ever remove it.
pub async fn release_finalizer(client: &kube::Client, parents: &Cache, finalizer: &str) -> Result<(), SyncError> {
    for parent in parents.list() {
        if parent.finalizers().iter().any(|existing| existing == finalizer) {
            let api = object_api(client, parents.resource(), &parent);
            match patch_finalizer(&api, &parent, finalizer, false).await {
                Ok(()) | Err(SyncError::Conflict) => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(())
}

/// Applies JSON patch `operations` to the parent (or its status), guarded by its UID so a
/// recreated parent of the same name is never touched. A concurrent change or deletion is
/// not an error: the watch brings a new sync.
pub async fn patch_guarded(api: &Api<DynamicObject>, parent: &DynamicObject, operations: Vec<Value>, status: bool) -> Result<(), SyncError> {
    let mut patch = vec![json!({ "op": "test", "path": "/metadata/uid", "value": parent.uid() })];
    patch.extend(operations);
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(patch)).expect("a valid JSON patch");
    let name = parent.name_any();
    let result = if status {
        api.patch_status(&name, &PatchParams::default(), &Patch::<()>::Json(patch)).await
    } else {
        api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch)).await
    };
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 422 => Err(SyncError::Conflict),
        Err(error) => Err(SyncError::Parent(Box::new(error))),
    }
}

/// After a sync of `key` (started at `started`): counts it under `queue_name`, requeues it as
/// the outcome asks, and reports a failure as a `SyncError` event on `parent`.
pub async fn settle<K: Clone + Eq + Hash + Send + std::fmt::Display + 'static>(
    ctx: &EngineContext,
    queue: &WorkQueue<K>,
    queue_name: &str,
    key: &K,
    started: Instant,
    outcome: Result<Option<Duration>, SyncError>,
    parent: Option<(&DynamicObject, &ApiResource)>,
) {
    let result = match &outcome {
        Ok(None) => ReconcileResult::Success,
        Ok(Some(_)) | Err(SyncError::RetryAfter(_) | SyncError::Conflict) => ReconcileResult::RequeueAfter,
        Err(_) => ReconcileResult::Error,
    };
    ctx.metrics.reconcile(queue_name, result, started.elapsed());
    match outcome {
        Ok(resync_after) => {
            queue.forget(key);
            if let Some(delay) = resync_after {
                queue.add_after(key.clone(), delay);
            }
        }
        Err(SyncError::RetryAfter(Some(delay))) => queue.add_after(key.clone(), delay),
        Err(SyncError::RetryAfter(None)) => {
            queue.add_rate_limited(key.clone());
        }
        Err(SyncError::Conflict) => queue.add_after(key.clone(), Duration::from_millis(200)),
        Err(error) => {
            let delay = queue.add_rate_limited(key.clone());
            tracing::warn!(controller = %queue_name, parent = %key, %error, retry_in = ?delay, "sync failed");
            if let Some((parent, resource)) = parent {
                ctx.event(&parent.object_ref(resource), true, "SyncError", format!("Sync error: {error}")).await;
            }
        }
    }
}
