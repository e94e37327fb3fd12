//! Finalizers: how a controller makes sure it cleans up before an object it manages is gone,
//! in the spirit of kube-runtime's `finalizer`. [`finalizer`] runs one reconcile through the
//! flow below; [`add`] and [`remove`] are its guarded patches, for a controller whose
//! finalizer life cycle is its own (the engine's, where a hook decides when it is finalized).
//!
//! The flow, for an object and the controller's finalizer name:
//!
//! 1. Live, without the finalizer: the finalizer is added, then [`Event::Apply`] runs with the
//!    object as written.
//! 2. Live, with it: [`Event::Apply`].
//! 3. Being deleted, with it: [`Event::Cleanup`]; when that returns [`Action::Done`] the
//!    finalizer is removed and the API server may let the object go. Any other action (a
//!    requeue: cleanup not finished) or an error keeps it.
//! 4. Being deleted, without it: nothing (cleaned up already, or never applied).
//!
//! Guarantees: `Apply` never runs before the finalizer is stored, so every object the
//! controller acted on gets its `Cleanup`; the finalizer is removed only after a `Cleanup`
//! said it is done; other clients' finalizers are never lost — each patch tests the exact list
//! it changes (the resourceVersion when there is none yet) and the object's UID, and on a
//! concurrent change the object is read again and the change retried. Caveats: `Cleanup` may
//! run more than once (after a failure, or when the removal raced), so it must be idempotent;
//! an object deleted between the add and `Apply` gets its `Cleanup` at the next reconcile.

use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Action;

/// What a reconcile is asked to do with the object.
#[derive(Debug)]
pub enum Event<K> {
    /// Make the world match the object.
    Apply(Arc<K>),
    /// The object is being deleted: undo what applying it did.
    Cleanup(Arc<K>),
}

/// Why a finalizer could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError {
    /// The API server refused the patch or the read.
    #[error("changing the finalizers: {0}")]
    Api(#[source] kube::Error),
    /// Other clients kept changing the object; the next reconcile tries again.
    #[error("the object kept changing while its finalizers were updated")]
    Conflict,
}

/// Why [`finalizer`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Error<E: std::error::Error + 'static> {
    /// The reconcile's `Apply` failed.
    #[error("apply failed: {0}")]
    Apply(#[source] E),
    /// The reconcile's `Cleanup` failed.
    #[error("cleanup failed: {0}")]
    Cleanup(#[source] E),
    /// The finalizer could not be changed.
    #[error(transparent)]
    Finalizer(FinalizerError),
}

/// Attempts at a finalizer change before giving up until the next reconcile.
const ATTEMPTS: usize = 5;

/// Runs `reconcile` for `object` through the flow the module describes, with the finalizer
/// `name`. `api` is the object's API (in its namespace).
pub async fn finalizer<K, F, Fut, E>(api: &Api<K>, name: &str, object: Arc<K>, reconcile: F) -> Result<Action, Error<E>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    F: FnOnce(Event<K>) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: std::error::Error + 'static,
{
    let present = object.finalizers().iter().any(|existing| existing == name);
    match (object.meta().deletion_timestamp.is_some(), present) {
        (false, present) => {
            let object = if present {
                object
            } else {
                match add(api, &object, name).await.map_err(Error::Finalizer)? {
                    Some(written) => Arc::new(written),
                    // Gone or replaced meanwhile: its own events bring the next reconcile.
                    None => return Ok(Action::Done),
                }
            };
            reconcile(Event::Apply(object)).await.map_err(Error::Apply)
        }
        (true, true) => match reconcile(Event::Cleanup(object.clone())).await.map_err(Error::Cleanup)? {
            Action::Done => remove(api, &object, name).await.map(|_| Action::Done).map_err(Error::Finalizer),
            not_finished => Ok(not_finished),
        },
        (true, false) => Ok(Action::Done),
    }
}

/// Adds finalizer `name` to `object`, keeping everyone else's; returns the object as written,
/// `None` if it is gone or was replaced by another of the same name (or already had it).
pub async fn add<K>(api: &Api<K>, object: &K, name: &str) -> Result<Option<K>, FinalizerError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    change(api, object, name, true).await
}

/// Removes finalizer `name` from `object`, keeping everyone else's; returns the object as
/// written, `None` if it is gone, was replaced, or did not have it.
pub async fn remove<K>(api: &Api<K>, object: &K, name: &str) -> Result<Option<K>, FinalizerError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    change(api, object, name, false).await
}

async fn change<K>(api: &Api<K>, object: &K, name: &str, add: bool) -> Result<Option<K>, FinalizerError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut live: Option<K> = None;
    for _ in 0..ATTEMPTS {
        let current = live.as_ref().unwrap_or(object);
        let Some(operations) = operations(current, name, add) else { return Ok(None) };
        let patch = Patch::<()>::Json(serde_json::from_value(Value::Array(operations)).expect("a valid JSON patch"));
        match api.patch(&object.name_any(), &PatchParams::default(), &patch).await {
            Ok(written) => return Ok(Some(written)),
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
            Err(kube::Error::Api(status)) if crate::client::is_patch_conflict(&status) => {}
            Err(error) => return Err(FinalizerError::Api(error)),
        }
        live = match api.get_opt(&object.name_any()).await.map_err(FinalizerError::Api)? {
            Some(read) if read.uid() == object.uid() => Some(read),
            _ => return Ok(None),
        };
    }
    Err(FinalizerError::Conflict)
}

/// The JSON patch that adds or removes `name`, guarded by the object's UID and the exact list
/// it changes (its resourceVersion when there is no list yet); `None` if there is nothing to do.
fn operations<K: Resource>(object: &K, name: &str, add: bool) -> Option<Vec<Value>> {
    let finalizers = object.finalizers();
    let index = finalizers.iter().position(|existing| existing == name);
    let guard = if finalizers.is_empty() {
        json!({ "op": "test", "path": "/metadata/resourceVersion", "value": object.resource_version() })
    } else {
        json!({ "op": "test", "path": "/metadata/finalizers", "value": finalizers })
    };
    let change = match index {
        None if add && finalizers.is_empty() => json!({ "op": "add", "path": "/metadata/finalizers", "value": [name] }),
        None if add => json!({ "op": "add", "path": "/metadata/finalizers/-", "value": name }),
        Some(index) if !add => json!({ "op": "remove", "path": format!("/metadata/finalizers/{index}") }),
        _ => return None,
    };
    let uid = json!({ "op": "test", "path": "/metadata/uid", "value": object.uid() });
    Some(vec![uid, guard, change])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn with_finalizers(finalizers: &[&str]) -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": { "name": "p", "uid": "u-1", "resourceVersion": "7", "finalizers": finalizers },
        }))
        .unwrap()
    }

    #[test]
    fn changes_test_the_uid_and_the_list_they_change() {
        let ours = "example.com/cleanup";
        let removal = operations(&with_finalizers(&["t/a", ours, "t/b"]), ours, false).unwrap();
        assert_eq!(removal[0], json!({ "op": "test", "path": "/metadata/uid", "value": "u-1" }));
        assert_eq!(removal[1], json!({ "op": "test", "path": "/metadata/finalizers", "value": ["t/a", ours, "t/b"] }));
        assert_eq!(removal[2], json!({ "op": "remove", "path": "/metadata/finalizers/1" }));
        let first = operations(&with_finalizers(&[]), ours, true).unwrap();
        assert_eq!(first[1], json!({ "op": "test", "path": "/metadata/resourceVersion", "value": "7" }));
        let appended = operations(&with_finalizers(&["t/a"]), ours, true).unwrap();
        assert_eq!(appended[2], json!({ "op": "add", "path": "/metadata/finalizers/-", "value": ours }));
        assert!(operations(&with_finalizers(&[ours]), ours, true).is_none());
        assert!(operations(&with_finalizers(&["t/a"]), ours, false).is_none());
    }
}
