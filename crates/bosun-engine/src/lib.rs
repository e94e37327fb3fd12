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
//! - `reconcile`: the one reconciler both kinds run, with a per-kind policy.
//! - `parent`: what a sync does to the object it reconciles: finalizer, status, requeue.
//! - `related`: the customize hook, and the related objects its rules select.
//! - `invalid_response`: what can be wrong with a hook's response.
//! - `composite`: hosted CompositeControllers and the sync of each parent.
//! - `decorator`: hosted DecoratorControllers and the sync of each target.
//! - [`dry_run`]: one sync on a client that cannot write, for `bosun hook test` (public).
//!
//! [`Engine::run`] ties them together; `bosun run` and `bosun dev` call it.

#![warn(missing_docs, unreachable_pub)]

pub mod api;
mod children;
mod composite;
mod context;
mod decorator;
mod discovery;
pub mod dry_run;
mod hooks;
mod hosting;
mod invalid_response;
mod parent;
mod reconcile;
mod related;
mod sync_error;

pub use bosun_runtime::selector;
pub use hooks::{DEFAULT_MAX_RESPONSE_BYTES, DurationError, parse_duration};

use std::sync::Arc;

use bosun_runtime::{Health, Metrics, SharedCaches};

pub use children::ApplyStrategy;
pub use context::EngineConfig;
use context::EngineContext;

/// The Metacontroller-compatible engine.
pub struct Engine {
    client: kube::Client,
    config: EngineConfig,
    caches: SharedCaches,
    metrics: Metrics,
    health: Health,
    shard: Option<Arc<bosun_runtime::sharding::Shard>>,
}

impl Engine {
    /// An engine on `client` with `config`.
    pub fn new(client: kube::Client, config: EngineConfig) -> Self {
        Engine {
            caches: SharedCaches::new(client.clone()),
            client,
            config,
            metrics: Metrics::new(),
            health: Health::default(),
            shard: None,
        }
    }

    /// Watches through `caches`, shared with the process's other controllers, instead of
    /// caches of its own: one watch per resource type for the whole process.
    pub fn with_caches(mut self, caches: SharedCaches) -> Self {
        self.caches = caches;
        self
    }

    /// Syncs only the parents and targets of `shard` (see [`bosun_runtime::sharding`]): reads
    /// them and what they own from the shard's caches, labels what it creates for the shard,
    /// and hands objects over when the ring's coordinator asks.
    pub fn with_shard(mut self, shard: Arc<bosun_runtime::sharding::Shard>) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Records hook, reconcile and work-queue metrics into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Registers the engine's readiness (its CompositeController cache has synced) in `health`.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Runs every CompositeController and DecoratorController until `shutdown` completes;
    /// then stops taking work and returns once the syncs in flight have finished.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut ctx = EngineContext::new(self.client, self.config, self.caches, self.metrics, self.health.clone());
        if let Some(shard) = self.shard {
            ctx = ctx.sharded(shard);
        }
        let ctx = Arc::new(ctx);
        // One shutdown signal for both kinds of hosted controller.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let requested = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        tokio::join!(
            signal,
            hosting::run::<composite::Composite>(ctx.clone(), self.health.clone(), requested(stopping.clone())),
            hosting::run::<decorator::Decorator>(ctx, self.health, requested(stopping)),
        );
    }
}

/// Installs (or updates) the engine's CRDs with server-side apply and waits until the API
/// server serves them.
pub async fn install_crds(client: &kube::Client) -> Result<(), kube::Error> {
    bosun_runtime::crds::install(client, &api::crds()).await
}
