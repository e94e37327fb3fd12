//! What a hosted controller does to the object it reconciles — a CompositeController's parent
//! or a DecoratorController's target: its finalizer life cycle ([`hook_for`]), its finalizer and
//! status written with JSON patches guarded by its UID, the controller reference its children
//! carry, and what happens to its key in the queue after a sync.

use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::Action;
use bosun_runtime::sharding::Shard;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::api::HookVersion;
use crate::context::EngineContext;
use crate::hooks::{self, HookEndpoint, ObjectMaps};
use crate::invalid_response::InvalidResponse;
use crate::related::RelatedObjects;
use crate::sync_error::SyncError;

/// Finalizers that mean the garbage collector is deleting the object's dependents itself.
const GC_FINALIZERS: [&str; 2] = ["foregroundDeletion", "orphan"];

/// Whether a change from `old` to `new` is one `ignoreStatusChanges` skips: same generation,
/// labels and annotations, and not being deleted.
pub(crate) fn only_status_changed(old: &DynamicObject, new: &DynamicObject) -> bool {
    old.metadata.generation == new.metadata.generation
        && old.metadata.labels == new.metadata.labels
        && old.metadata.annotations == new.metadata.annotations
        && new.metadata.deletion_timestamp.is_none()
}

/// The shortest and longest delay `resyncAfterSeconds` may ask for: a tiny value must not
/// become a hot loop (a couple of hook calls in ten seconds at most), nor a huge one overflow a
/// timer.
pub(crate) const RESYNC_AFTER_BOUNDS: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(24 * 60 * 60));

/// A response's `resyncAfterSeconds` as a delay within [`RESYNC_AFTER_BOUNDS`]; none unless
/// it is a positive number (as in Metacontroller, zero and negative values ask for none).
pub(crate) fn resync_after(seconds: Option<f64>) -> Option<Duration> {
    let seconds = seconds.filter(|seconds| *seconds > 0.0)?;
    let (floor, cap) = RESYNC_AFTER_BOUNDS;
    Some(Duration::try_from_secs_f64(seconds).unwrap_or(cap).clamp(floor, cap))
}

/// The largest status a hook may ask for, encoded: etcd refuses objects over 1.5 MiB, and the
/// parent's spec and metadata need room too.
pub(crate) const MAX_STATUS_BYTES: usize = 1024 * 1024;

/// Refuses a status larger than [`MAX_STATUS_BYTES`], which the API server would refuse on
/// every retry.
pub(crate) fn check_status_size(status: &Value) -> Result<(), InvalidResponse> {
    let size = serde_json::to_vec(status).map(|encoded| encoded.len()).unwrap_or(usize::MAX);
    if size > MAX_STATUS_BYTES {
        return Err(InvalidResponse::StatusTooLarge { size });
    }
    Ok(())
}

/// A response's `status`: an object; `None` for null or absent.
pub(crate) fn response_status(status: Option<Value>) -> Result<Option<Value>, InvalidResponse> {
    match status {
        None | Some(Value::Null) => Ok(None),
        Some(status @ Value::Object(_)) => {
            check_status_size(&status)?;
            Ok(Some(status))
        }
        Some(value) => Err(InvalidResponse::StatusNotAnObject { value }),
    }
}

/// `related` laid out for a hook of `version`, for a parent in `parent_namespace`.
pub(crate) fn related_maps<'a>(related: &'a RelatedObjects, version: HookVersion, parent_namespace: Option<&str>) -> ObjectMaps<'a> {
    let mut maps = ObjectMaps::new();
    for (group, objects) in related {
        hooks::insert_objects(&mut maps, group, version, parent_namespace, objects.iter().map(Arc::as_ref));
    }
    maps
}

/// The controller reference a parent puts on its children.
pub(crate) fn controller_reference(parent: &DynamicObject, resource: &ApiResource) -> Value {
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
pub(crate) fn object_api(client: &kube::Client, resource: &ApiResource, object: &DynamicObject) -> Api<DynamicObject> {
    match object.namespace() {
        Some(namespace) => Api::namespaced_with(client.clone(), &namespace, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// What a sync of a parent (or target) calls: `(hook, finalizing)`, or `None` when there is
/// nothing to call. The finalizer state machine both kinds share: the controller's finalizer
/// is added to a handled, live object when there is a finalize hook and removed when the hook
/// was removed from the controller; an object that is going without our finalizer (finalized
/// already, or never started) is left alone, and its children go with it; the finalize hook
/// is called while the object is deleted or no longer handled, the sync hook otherwise.
pub(crate) async fn hook_for<'h>(
    api: &Api<DynamicObject>,
    object: &mut Arc<DynamicObject>,
    finalizer: &str,
    handled: bool,
    sync_hook: &'h Option<HookEndpoint>,
    finalize_hook: &'h Option<HookEndpoint>,
) -> Result<Option<(&'h HookEndpoint, bool)>, SyncError> {
    let has_finalizer = object.finalizers().iter().any(|present| present == finalizer);
    if !handled && !has_finalizer {
        return Ok(None);
    }
    let deleting = object.metadata.deletion_timestamp.is_some();
    match (finalize_hook, has_finalizer) {
        (Some(_), false) if handled && !deleting => {
            // The sync goes on with the object as written, so its status write is not refused.
            if let Some(written) = patch_finalizer(api, object, finalizer, true).await? {
                *object = Arc::new(written);
            }
        }
        (None, true) => {
            // The finalize hook was removed from the controller: let go of the object.
            patch_finalizer(api, object, finalizer, false).await?;
            return Ok(None);
        }
        _ => {}
    }
    if deleting && finalize_hook.is_some() && !has_finalizer {
        return Ok(None);
    }
    let finalizing = finalize_hook.is_some() && (deleting || !handled);
    let hook = if finalizing { finalize_hook } else { sync_hook };
    Ok(hook.as_ref().map(|hook| (hook, finalizing)))
}

/// Whether a sync writes the children (or attachments): always while the object lives; while
/// it is deleted only when finalizing, and not while the garbage collector deletes the
/// dependents itself (foreground or orphan deletion). Without a finalize hook they are left
/// to their owner references.
pub(crate) fn manages_children(object: &DynamicObject, finalizing: bool) -> bool {
    let gc_acting = object.finalizers().iter().any(|finalizer| GC_FINALIZERS.contains(&finalizer.as_str()));
    object.metadata.deletion_timestamp.is_none() || (finalizing && !gc_acting)
}

/// Attempts at a finalizer change before giving up until the next sync.
const FINALIZER_ATTEMPTS: usize = 5;

/// Adds `finalizer` to the object's finalizers, or removes it, without losing anyone else's:
/// the patch tests the exact list it changes (the resourceVersion, when there is no list yet),
/// and when another client changed it meanwhile the object is read again and the change
/// retried. Returns the object as written, if it was.
pub(crate) async fn patch_finalizer(
    api: &Api<DynamicObject>,
    object: &DynamicObject,
    finalizer: &str,
    add: bool,
) -> Result<Option<DynamicObject>, SyncError> {
    let mut live: Option<DynamicObject> = None;
    for _ in 0..FINALIZER_ATTEMPTS {
        let current = live.as_ref().unwrap_or(object);
        let Some(operations) = finalizer_operations(current, finalizer, add) else { return Ok(None) };
        match patch_guarded(api, current, operations, false).await {
            Err(SyncError::Conflict) => {}
            done => return done,
        }
        live = match api.get_opt(&object.name_any()).await.map_err(|error| SyncError::Parent(Box::new(error)))? {
            Some(read) if read.uid() == object.uid() => Some(read),
            _ => return Ok(None),
        };
    }
    Err(SyncError::Conflict)
}

/// The JSON patch operations that add or remove `finalizer`, guarded; `None` if there is
/// nothing to do.
fn finalizer_operations(object: &DynamicObject, finalizer: &str, add: bool) -> Option<Vec<Value>> {
    let finalizers = object.finalizers();
    let index = finalizers.iter().position(|existing| existing == finalizer);
    let guard = if finalizers.is_empty() {
        json!({ "op": "test", "path": "/metadata/resourceVersion", "value": object.resource_version() })
    } else {
        json!({ "op": "test", "path": "/metadata/finalizers", "value": finalizers })
    };
    let change = match index {
        None if add && finalizers.is_empty() => json!({ "op": "add", "path": "/metadata/finalizers", "value": [finalizer] }),
        None if add => json!({ "op": "add", "path": "/metadata/finalizers/-", "value": finalizer }),
        Some(index) if !add => json!({ "op": "remove", "path": format!("/metadata/finalizers/{index}") }),
        _ => return None,
    };
    Some(vec![guard, change])
}

/// Objects per page when the finalizers of a deleted controller are released.
const RELEASE_PAGE: u32 = 500;

/// Removes `finalizer` from every object of `resource`: once its controller is deleted,
/// nothing else would ever remove it. The objects are listed from the API server, not a
/// cache, so that a finalizer added just before the controller stopped is seen too — as
/// metadata, a page at a time. Sharded, only the objects `shard` may act on
/// ([`Shard::may_release`]): another live shard's are its own to release, after its syncs in
/// flight (a finalize hook among them) have finished.
pub(crate) async fn release_finalizer(
    client: &kube::Client,
    resource: &ApiResource,
    finalizer: &str,
    shard: Option<&Shard>,
) -> Result<(), SyncError> {
    let all: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let mut params = ListParams::default().limit(RELEASE_PAGE);
    loop {
        let page = all.list_metadata(&params).await.map_err(|error| SyncError::Parent(Box::new(error)))?;
        for object in page.items.into_iter().filter(|object| object.finalizers().iter().any(|existing| existing == finalizer)) {
            if let Some(shard) = shard
                && !shard.may_release(&object.metadata).await
            {
                continue;
            }
            let object = DynamicObject { types: None, metadata: object.metadata, data: Value::Null };
            patch_finalizer(&object_api(client, resource, &object), &object, finalizer, false).await?;
        }
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Writes a hook's `status` to the object through its status subresource, guarded by the
/// resourceVersion the hook was shown: had anyone changed the object since, the write is
/// refused as a [`SyncError::Conflict`] and the sync runs again on what they wrote, rather than
/// overwriting it with a status computed from the older object.
pub(crate) async fn write_status(api: &Api<DynamicObject>, object: &DynamicObject, status: Value) -> Result<(), SyncError> {
    let operations = vec![
        json!({ "op": "test", "path": "/metadata/resourceVersion", "value": object.resource_version() }),
        json!({ "op": "add", "path": "/status", "value": status }),
    ];
    // The written parent is not read: the watch brings it.
    patch_guarded::<serde::de::IgnoredAny>(api, object, operations, true).await.map(drop)
}

/// Applies JSON patch `operations` to the parent (or its status), guarded by its UID so a
/// recreated parent of the same name is never touched; returns the object as written (`None`
/// if it is gone), decoded as `T`. A concurrent change is a [`SyncError::Conflict`], retried soon.
pub(crate) async fn patch_guarded<T: serde::de::DeserializeOwned>(
    api: &Api<DynamicObject>,
    parent: &DynamicObject,
    operations: Vec<Value>,
    status: bool,
) -> Result<Option<T>, SyncError> {
    let mut patch = vec![json!({ "op": "test", "path": "/metadata/uid", "value": parent.uid() })];
    patch.extend(operations);
    let patch = Patch::<()>::Json(serde_json::from_value(Value::Array(patch)).expect("a valid JSON patch"));
    let (name, params, request) = (parent.name_any(), PatchParams::default(), kube::core::Request::new(api.resource_url()));
    let request = if status { request.patch_subresource("status", &name, &params, &patch) } else { request.patch(&name, &params, &patch) };
    match bosun_runtime::client::send::<T>(&api.clone().into_client(), request).await {
        Ok(written) => Ok(Some(written)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(kube::Error::Api(status)) if is_patch_conflict(&status) => Err(SyncError::Conflict),
        Err(error) => Err(SyncError::Parent(Box::new(error))),
    }
}

/// Whether a refused JSON patch met a concurrent change — a failed `test`, or a path that
/// another client removed — rather than an invalid result (a bad label value from a hook, say),
/// which is an error to report, not a conflict to retry quietly.
pub(crate) fn is_patch_conflict(status: &kube::core::Status) -> bool {
    status.code == 409 || (status.code == 422 && status.details.as_ref().is_none_or(|details| details.causes.is_empty()))
}

/// How soon a sync that met a concurrent change runs again.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// After a sync: what its outcome asks of the runner — done, again after a delay (a resync,
/// a hook's Retry-After, a conflict: none of them failures), or a failure retried with
/// backoff and reported as a `SyncError` event on `object`.
pub(crate) async fn settle(
    ctx: &EngineContext,
    outcome: Result<Option<Duration>, SyncError>,
    object: Option<(&DynamicObject, &ApiResource)>,
) -> Result<Action, SyncError> {
    ctx.count_records();
    match outcome {
        Ok(None) => Ok(Action::Done),
        Ok(Some(delay)) | Err(SyncError::RetryAfter(Some(delay))) => Ok(Action::RequeueAfter(delay)),
        Err(SyncError::Conflict) => Ok(Action::RequeueAfter(CONFLICT_RETRY)),
        Err(error) => {
            if let Some((object, resource)) = object.filter(|_| !matches!(error, SyncError::RetryAfter(None))) {
                ctx.event(&object.object_ref(resource), true, "SyncError", format!("Sync error: {error}")).await;
            }
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_finalizers(finalizers: &[&str]) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "p", "resourceVersion": "7", "finalizers": finalizers },
        }))
        .unwrap()
    }

    #[test]
    fn finalizer_changes_test_the_list_they_change() {
        let ours = "metacontroller.io/compositecontroller-x";
        let removal = finalizer_operations(&with_finalizers(&["t/a", ours, "t/b"]), ours, false).unwrap();
        assert_eq!(removal[0], json!({ "op": "test", "path": "/metadata/finalizers", "value": ["t/a", ours, "t/b"] }));
        assert_eq!(removal[1], json!({ "op": "remove", "path": "/metadata/finalizers/1" }));
        let first = finalizer_operations(&with_finalizers(&[]), ours, true).unwrap();
        assert_eq!(first[0], json!({ "op": "test", "path": "/metadata/resourceVersion", "value": "7" }));
        let appended = finalizer_operations(&with_finalizers(&["t/a"]), ours, true).unwrap();
        assert_eq!(appended[1], json!({ "op": "add", "path": "/metadata/finalizers/-", "value": ours }));
        assert!(finalizer_operations(&with_finalizers(&[ours]), ours, true).is_none());
        assert!(finalizer_operations(&with_finalizers(&["t/a"]), ours, false).is_none());
    }

    #[test]
    fn resync_after_is_bounded() {
        let (floor, cap) = RESYNC_AFTER_BOUNDS;
        for none in [None, Some(0.0), Some(-1.0), Some(f64::NAN), Some(f64::NEG_INFINITY)] {
            assert_eq!(resync_after(none), None, "{none:?}");
        }
        assert_eq!(resync_after(Some(1e-9)), Some(floor));
        assert_eq!(resync_after(Some(7.5)), Some(Duration::from_millis(7500)));
        for huge in [9_223_372_036_854_775_807.0, 18_446_744_073_709_551_615.0, f64::INFINITY, f64::MAX] {
            assert_eq!(resync_after(Some(huge)), Some(cap), "{huge}");
        }
    }

    #[test]
    fn large_statuses_are_refused() {
        assert!(check_status_size(&json!({ "a": "b" })).is_ok());
        let huge = json!({ "data": "x".repeat(MAX_STATUS_BYTES) });
        assert!(check_status_size(&huge).unwrap_err().to_string().contains("at most"));
    }
}
