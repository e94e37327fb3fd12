//! Why a sync of a parent (or target) did not complete, and which failures are reported as
//! `SyncError` events and retried with backoff rather than retried quietly.

use std::time::Duration;

use crate::children::{ApplyError, ClaimError};
use crate::hooks::HookError;

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
