//! The controller runtime: what kube-rs leaves to each operator and controller-runtime
//! provides — shared watch caches with indexes ([`cache`]), a work queue with sane backoff
//! defaults ([`queue`]), the one controller runner ([`Controller`]: watches, predicates
//! ([`predicate`]), workers, backoff, resync, graceful drain), finalizers with a documented flow
//! ([`finalizer`]), an event recorder that keeps distinct messages apart ([`events`]), Prometheus metrics under Metacontroller's and
//! controller-runtime's names ([`metrics`]), health probes ([`health`]), leader election with a
//! Lease ([`leader`]), sharding across replicas ([`sharding`]), a kube client with timeouts and
//! keepalive ([`client`]), label selectors ([`selector`]), URLs as they may be printed
//! ([`redact`]), HTTPS serving that asks the API server who is calling ([`secure_serving`]),
//! CRD installation ([`crds`]), and a [`Manager`] that owns what components share (a
//! [`Context`]: client, caches, metrics, health, shard) and runs them with one lifecycle and a
//! graceful shutdown.

#![warn(missing_docs)]

pub mod cache;
pub mod client;
pub mod context;
pub mod controller;
pub mod crds;
pub mod events;
pub mod finalizer;
pub mod health;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod predicate;
pub mod queue;
pub mod rate_limit;
pub mod redact;
pub mod secure_serving;
pub mod selector;
pub mod sharding;

pub use cache::{Cache, CacheEvent, Handler, Indexer, ObjectKey, SharedCaches, Subscription};
pub use context::Context;
pub use controller::{Action, Controller, controller_key};
pub use events::{EventRecorder, EventType};
pub use health::Health;
pub use leader::{LeaderElectionConfig, LeaderElector, LeadershipLost};
pub use manager::{Manager, ManagerConfig, ManagerError, RunningManager, Shutdown, shutdown_signal};
pub use metrics::{Metrics, QueueMetrics, ReconcileResult};
pub use queue::{Backoff, WorkQueue};
pub use rate_limit::{RateLimitLayer, TokenBucket};
pub use secure_serving::ServingCertificate;
