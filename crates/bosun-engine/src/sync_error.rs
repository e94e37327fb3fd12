//! Why a sync of a parent (or target) did not complete, and which failures are reported as
//! `SyncError` events and retried with backoff rather than retried quietly.

use std::time::Duration;

use crate::children::{ApplyError, ClaimError};
use crate::hooks::HookError;
use crate::invalid_response::InvalidResponse;

/// Why a sync did not complete. Every variant but the last two is reported as a `SyncError`
/// event on the parent and retried with backoff.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    /// The hook failed; nothing was changed.
    #[error("{0}")]
    Hook(Box<HookError>),
    /// The hook's response is not acceptable; nothing was changed.
    #[error("invalid {hook} hook response: {source}")]
    InvalidResponse {
        /// Which hook.
        hook: &'static str,
        /// What is wrong.
        source: Box<InvalidResponse>,
    },
    /// The parent has no usable `spec.selector` (and the controller does not generate one);
    /// with why it does not decode, if it does not.
    #[error(
        ".spec.selector {}must have either matchLabels, matchExpressions, or both (or set generateSelector: true on the \
         CompositeController)",
        .0.as_ref().map(|error| format!("is not a label selector ({error}); it ")).unwrap_or_default()
    )]
    NoSelector(Option<serde_json::Error>),
    /// A related resource's watch has not listed it yet.
    #[error("the related resource {resource} in {api_version} is not readable yet (its watch has not listed it; is it allowed by RBAC?)")]
    RelatedNotReadable {
        /// The resource.
        resource: String,
        /// Its apiVersion.
        api_version: String,
    },
    /// Claiming children failed.
    #[error("{0}")]
    Claim(#[from] ClaimError),
    /// Some children could not be written; the others were.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Children(Vec<ApplyError>),
    /// The controller's ServiceAccount may not make some of the writes the sync needs; nothing
    /// was written.
    #[error(
        "ServiceAccount {account} may not {}; nothing was written: grant it with a Role or ClusterRole bound to that \
         ServiceAccount",
        .missing.join(", ")
    )]
    Forbidden {
        /// `namespace/name`.
        account: String,
        /// The writes it may not make, as `create secrets in namespace "a"`.
        missing: Vec<String>,
    },
    /// Asking the API server what the controller's ServiceAccount may do failed.
    #[error("checking what ServiceAccount {account} may do: {source}")]
    Permissions {
        /// `namespace/name`.
        account: String,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// Updating the parent (finalizer, labels, status) failed.
    #[error("updating the parent: {0}")]
    Parent(Box<kube::Error>),
    /// Handing the object over to another shard failed.
    #[error("{0}")]
    HandOver(Box<bosun_runtime::sharding::HandOverError>),
    /// The hook asked to be called later (429): requeue after the delay, without an event.
    #[error("the hook asked to retry later")]
    RetryAfter(Option<Duration>),
    /// The parent changed while we wrote it: sync again soon, without an event.
    #[error("the parent changed during the sync")]
    Conflict,
}

impl SyncError {
    /// The response of the `hook` hook is not acceptable.
    pub(crate) fn invalid_response(hook: &'static str, source: InvalidResponse) -> SyncError {
        SyncError::InvalidResponse { hook, source: Box::new(source) }
    }

    /// A failed hand-over: one that found the object changed is retried soon, quietly.
    pub(crate) fn from_hand_over(error: bosun_runtime::sharding::HandOverError) -> SyncError {
        match &error.source {
            kube::Error::Api(status) if status.code == 409 => SyncError::Conflict,
            _ => SyncError::HandOver(Box::new(error)),
        }
    }

    /// A hook failure: 429 asks for a later retry, anything else is an error.
    pub(crate) fn from_hook(error: HookError) -> SyncError {
        match error {
            HookError::TooManyRequests { retry_after, .. } => SyncError::RetryAfter(retry_after),
            error => SyncError::Hook(Box::new(error)),
        }
    }
}
