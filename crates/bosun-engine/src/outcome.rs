//! What the outcome of a sync asks of the work queue: done, again after a delay (a resync, a
//! hook's Retry-After, a conflict: none of them failures), or a failure retried with backoff
//! and reported as a `SyncError` event on the object.

use std::time::Duration;

use bosun_runtime::Action;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject};

use crate::context::EngineContext;
use crate::sync_error::SyncError;

/// How soon a sync that met a concurrent change runs again.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// The action for a sync's `outcome`, reporting a failure on `object`.
pub(crate) async fn action(
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
