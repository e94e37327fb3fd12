//! The controller runtime: what kube-rs leaves to each operator and controller-runtime
//! provides — shared watch caches with indexes ([`cache`]), a work queue with sane backoff
//! defaults ([`queue`]), an event recorder that keeps distinct messages apart ([`events`]), and (to come) a Manager with leader election, metrics, health probes
//! and graceful shutdown.

pub mod cache;
pub mod events;
pub mod queue;

pub use events::{EventRecorder, EventType};
pub use cache::{Cache, CacheEvent, Handler, ObjectKey, SharedCaches, Subscription};
pub use queue::{Backoff, WorkQueue};
