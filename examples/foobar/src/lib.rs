//! The tutorial's FooBar controller on bosun-runtime, in the informer style it teaches:
//! shared caches (informers) of FooBars and Jobs, an index of Jobs by the FooBar that owns
//! them, event handlers that turn every change into a FooBar key on a work queue, and workers
//! that reconcile one key at a time.
//!
//! A FooBar runs `spec.command` once, as a Job it owns (`sh -c <command>`, with `$FOO` and
//! `$BARZ` from the spec), and reports the Job's state in `status`. A changed spec gets a new
//! Job (the name carries a hash of what the Job runs) and the old one is deleted; deleting the
//! FooBar deletes its Job through the owner reference.
//!
//! - [`types`]: the FooBar resource.
//! - [`controller`]: caches, index, handlers, queue and the reconcile.

pub mod controller;
pub mod types;

pub use controller::{NAME, run};
pub use types::{FooBar, FooBarSpec, FooBarStatus};
