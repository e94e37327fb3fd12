//! Writes on the object a hosted controller reconciles — its status, a decorator's labels and
//! annotations — as JSON patches guarded by its UID (a recreated object of the same name is
//! never touched) and by the resourceVersion the hook was shown (a change meanwhile is a
//! conflict, synced again, never overwritten).

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::sync_error::SyncError;

/// The API of `object`'s resource, in its namespace.
pub(crate) fn object_api(client: &kube::Client, resource: &ApiResource, object: &DynamicObject) -> Api<DynamicObject> {
    match object.namespace() {
        Some(namespace) => Api::namespaced_with(client.clone(), &namespace, resource),
        None => Api::all_with(client.clone(), resource),
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
        Err(kube::Error::Api(status)) if bosun_runtime::client::is_patch_conflict(&status) => Err(SyncError::Conflict),
        Err(error) => Err(SyncError::Parent(Box::new(error))),
    }
}
