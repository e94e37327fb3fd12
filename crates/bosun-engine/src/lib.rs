//! The Metacontroller-compatible engine: declare a `CompositeController` or a
//! `DecoratorController` (`metacontroller.k8s.io/v1alpha1`), write its sync logic as an HTTP
//! hook in any language, and the engine watches the parents (or targets) and their children,
//! calls the hook, and applies what it declares.
//!
//! - [`api`]: the resource types and their CRDs (public).
//!
//! The rest is internal to the crate (its public API is [`Engine`], [`EngineConfig`],
//! [`ApplyStrategy`], [`install_crds`] and [`api`]):
//!
//! - `hooks`: the hook protocol and HTTP client.
//! - `children`: claiming, validating, merging and applying children and attachments.
//! - `hosting`: one hosted controller per controller object, its workers and resync.
//! - `reconcile`: the one reconciler both kinds run: the hosted controller's state, and a
//!   per-kind policy.
//! - `finalizer`, `guarded`, `outcome`, `limits`: what a sync does to the object it reconciles
//!   — the finalizer life cycle, guarded writes, what the work queue is told, the bounds.
//! - `related`: the customize hook, and the related objects its rules select.
//! - `invalid_response`: what can be wrong with a hook's response.
//! - `composite`: hosted CompositeControllers and the sync of each parent.
//! - `decorator`: hosted DecoratorControllers and the sync of each target.
//!
//! `docs/architecture.md` follows one sync through these files.
//! - [`dry_run`]: one sync on a client that cannot write, for `bosun hook test` (public).
//!
//! [`Engine::run`] ties them together; `bosun run` and `bosun dev` call it.

#![warn(missing_docs, unreachable_pub)]

pub mod admission;
pub mod api;
mod children;
mod composite;
mod context;
mod decorator;
mod discovery;
pub mod dry_run;
mod finalizer;
mod guarded;
mod hooks;
mod hosting;
mod identity;
mod invalid_response;
mod limits;
mod outcome;
mod reconcile;
mod related;
mod sync_error;

pub use bosun_runtime::selector;
pub use children::anywhere::CHILDREN_ANYWHERE_ANNOTATION;
pub use hooks::{DEFAULT_MAX_EXEC_PROCESSES, DEFAULT_MAX_RESPONSE_BYTES, DurationError, parse_duration};
pub use identity::SERVICE_ACCOUNT_ANNOTATION;

use std::sync::Arc;

use bosun_runtime::Context;

pub use children::ApplyStrategy;
pub use context::EngineConfig;
use context::EngineContext;

/// The Metacontroller-compatible engine.
pub struct Engine {
    ctx: Arc<EngineContext>,
}

impl Engine {
    /// An engine with `config` in the process's `context` (usually a
    /// [`Manager`](bosun_runtime::Manager)'s): it watches through the process's shared caches,
    /// records into its registry, registers its readiness (its controller caches have synced)
    /// in its health checks, and, when the context has a shard, syncs only the shard's parents
    /// and targets (reading them and what they own from the shard's caches, labelling what it
    /// creates for the shard, handing objects over when the ring's coordinator asks).
    pub fn new(context: &Context, config: EngineConfig) -> Self {
        Engine { ctx: Arc::new(EngineContext::new(context, config)) }
    }

    /// Runs every CompositeController and DecoratorController until `shutdown` completes;
    /// then stops taking work and returns once the syncs in flight have finished.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let ctx = self.ctx;
        // One shutdown signal for both kinds of hosted controller.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let requested = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let health = ctx.health.clone();
        tokio::join!(
            signal,
            hosting::run::<composite::Composite>(ctx.clone(), health.clone(), requested(stopping.clone())),
            hosting::run::<decorator::Decorator>(ctx, health, requested(stopping)),
        );
    }
}

/// Installs (or updates) the engine's CRDs — Metacontroller's and the AdmissionController —
/// with server-side apply and waits until the API server serves them.
pub async fn install_crds(client: &kube::Client) -> Result<(), kube::Error> {
    let mut crds = api::crds();
    crds.push(admission::crd());
    bosun_runtime::crds::install(client, &crds).await
}
