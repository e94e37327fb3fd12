//! The finalizer life cycle of a hosted controller's objects — a CompositeController's parents
//! and a DecoratorController's targets — as Metacontroller has it: which hook a sync calls
//! ([`hook_for`]), whether it writes children while the object goes ([`manages_children`]), the
//! finalizer removed once the finalize hook says `finalized` ([`remove`]), and released from
//! every object when the controller is deleted ([`release_finalizer`]). The guarded patches are
//! bosun-runtime's [`finalizer`](bosun_runtime::finalizer).

use std::sync::Arc;

use bosun_runtime::finalizer::{self, FinalizerError};
use bosun_runtime::sharding::Shard;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::guarded::object_api;
use crate::hooks::HookEndpoint;
use crate::sync_error::SyncError;

/// Finalizers that mean the garbage collector is deleting the object's dependents itself.
const GC_FINALIZERS: [&str; 2] = ["foregroundDeletion", "orphan"];

/// What a sync of a parent (or target) does.
pub(crate) enum Step<'h> {
    /// Calls `hook`, the finalize hook when `finalizing`.
    Call {
        /// The hook.
        hook: &'h HookEndpoint,
        /// Whether it is the finalize hook.
        finalizing: bool,
    },
    /// Nothing to call: the object goes (or is no longer handled) and only its children tied
    /// by label are to be deleted before the finalizer is removed.
    CleanUp,
}

/// What a sync of a parent (or target) does, or `None` when there is nothing to do. The
/// finalizer state machine both kinds share: the controller's finalizer is added to a handled,
/// live object when there is a finalize hook or children tied by label to delete later
/// (`cleans_up`), and removed when neither is left; an object that is going without our
/// finalizer (finalized already, or never started) is left alone, and its children go with
/// it; the finalize hook is called while the object is deleted or no longer handled (without
/// one, its children tied by label are deleted), the sync hook otherwise.
pub(crate) async fn hook_for<'h>(
    api: &Api<DynamicObject>,
    object: &mut Arc<DynamicObject>,
    finalizer: &str,
    handled: bool,
    sync_hook: &'h Option<HookEndpoint>,
    finalize_hook: &'h Option<HookEndpoint>,
    cleans_up: bool,
) -> Result<Option<Step<'h>>, SyncError> {
    let has_finalizer = object.finalizers().iter().any(|present| present == finalizer);
    if !handled && !has_finalizer {
        return Ok(None);
    }
    let deleting = object.metadata.deletion_timestamp.is_some();
    let keeps_finalizer = finalize_hook.is_some() || cleans_up;
    match (keeps_finalizer, has_finalizer) {
        (true, false) if handled && !deleting => {
            // The sync goes on with the object as written, so its status write is not refused.
            if let Some(written) = finalizer::add(api, object.as_ref(), finalizer).await.map_err(from_finalizer)? {
                *object = Arc::new(written);
            }
        }
        (false, true) => {
            // The finalize hook was removed from the controller: let go of the object.
            finalizer::remove(api, object.as_ref(), finalizer).await.map_err(from_finalizer)?;
            return Ok(None);
        }
        _ => {}
    }
    if deleting && keeps_finalizer && !has_finalizer {
        return Ok(None);
    }
    let going = deleting || !handled;
    if going && finalize_hook.is_none() && cleans_up {
        return Ok(Some(Step::CleanUp));
    }
    let finalizing = finalize_hook.is_some() && going;
    let hook = if finalizing { finalize_hook } else { sync_hook };
    Ok(hook.as_ref().map(|hook| Step::Call { hook, finalizing }))
}

/// Whether a sync writes the children (or attachments): always while the object lives; while
/// it is deleted only when finalizing, and not while the garbage collector deletes the
/// dependents itself (foreground or orphan deletion). Without a finalize hook they are left
/// to their owner references.
pub(crate) fn manages_children(object: &DynamicObject, finalizing: bool) -> bool {
    let gc_acting = object.finalizers().iter().any(|finalizer| GC_FINALIZERS.contains(&finalizer.as_str()));
    object.metadata.deletion_timestamp.is_none() || (finalizing && !gc_acting)
}

/// Removes `finalizer` from `object` (a finalize hook answered `finalized: true`); returns the
/// object as written, if it was.
pub(crate) async fn remove(api: &Api<DynamicObject>, object: &DynamicObject, finalizer: &str) -> Result<Option<DynamicObject>, SyncError> {
    finalizer::remove(api, object, finalizer).await.map_err(from_finalizer)
}

fn from_finalizer(error: FinalizerError) -> SyncError {
    match error {
        FinalizerError::Api(error) => SyncError::Parent(Box::new(error)),
        FinalizerError::Conflict => SyncError::Conflict,
    }
}

/// Objects per page when the finalizers of a deleted controller are released.
const RELEASE_PAGE: u32 = 500;

/// Removes `finalizer` from every object of `resource` that `lists` list (one per namespace
/// the engine watches, or one for all): once its controller is deleted,
/// nothing else would ever remove it. The objects are listed from the API server, not a
/// cache, so that a finalizer added just before the controller stopped is seen too — as
/// metadata, a page at a time. Sharded, only the objects `shard` may act on
/// ([`Shard::may_release`]): another live shard's are its own to release, after its syncs in
/// flight (a finalize hook among them) have finished.
pub(crate) async fn release_finalizer(
    client: &kube::Client,
    resource: &ApiResource,
    lists: Vec<Api<DynamicObject>>,
    finalizer: &str,
    shard: Option<&Shard>,
) -> Result<(), SyncError> {
    for list in lists {
        let mut params = ListParams::default().limit(RELEASE_PAGE);
        loop {
            let page = list.list_metadata(&params).await.map_err(|error| SyncError::Parent(Box::new(error)))?;
            for object in page.items.into_iter().filter(|object| object.finalizers().iter().any(|existing| existing == finalizer)) {
                if let Some(shard) = shard
                    && !shard.may_release(&object.metadata).await
                {
                    continue;
                }
                let object = DynamicObject { types: None, metadata: object.metadata, data: Value::Null };
                finalizer::remove(&object_api(client, resource, &object), &object, finalizer).await.map_err(from_finalizer)?;
            }
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(())
}
