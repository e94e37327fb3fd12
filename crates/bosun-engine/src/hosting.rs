//! Hosting: one hosted controller per CompositeController or DecoratorController object,
//! started when it appears, restarted when its spec changes, stopped when it is deleted — and
//! then its finalizers are removed from the objects it reconciled, which Metacontroller leaves
//! behind (#1062). Both kinds share this lifecycle through [`HostedKind`], and the workers and
//! resync of a running hosted controller through [`Reconciler`] and [`Tasks`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bosun_runtime::{Cache, CacheEvent, Health, ObjectKey, Subscription, WorkQueue};
use futures::FutureExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{EndpointConfig, Hook};
use crate::context::EngineContext;
use crate::hooks::{HookEndpoint, HookKind};

/// Why a controller object cannot run; reported in a `CreateError` event.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// A resource rule names something the API server does not serve.
    #[error("{0}")]
    Discovery(#[from] crate::discovery::DiscoveryError),
    /// The parent resource has no status subresource.
    #[error(
        "parent resource {resource} in {api_version} does not have the status subresource enabled; \
         bosun writes status.observedGeneration through it (add `subresources: {{status: {{}}}}` to the CRD version)"
    )]
    NoStatusSubresource {
        /// The parent's apiVersion.
        api_version: String,
        /// The parent's resource.
        resource: String,
    },
    /// The spec is invalid in another way.
    #[error("{0}")]
    Invalid(String),
}

/// A kind of controller object the engine hosts.
pub trait HostedKind: 'static {
    /// The controller object.
    type Object: Resource<DynamicType = ()> + DeserializeOwned + Send + Sync;
    /// Its spec: a change restarts the hosted controller.
    type Spec: PartialEq + Clone + Send + Sync;
    /// A running hosted controller; stopped when dropped.
    type Running: Send;
    /// `CompositeController` or `DecoratorController`.
    const KIND: &'static str;
    /// The readiness check that passes once the controller objects' cache has synced.
    const READINESS_CHECK: &'static str;

    /// The spec of `object`.
    fn spec(object: &Self::Object) -> &Self::Spec;
    /// The spec a running hosted controller runs.
    fn running_spec(running: &Self::Running) -> &Self::Spec;
    /// Resolves the object's types and hooks and starts its workers.
    fn start(ctx: Arc<EngineContext>, object: &Self::Object) -> impl Future<Output = Result<Self::Running, CreateError>> + Send;
    /// Stops taking work and waits for the syncs in flight.
    fn stop_gracefully(running: Self::Running) -> impl Future<Output = ()> + Send;
    /// After the controller object named `name` is gone: removes its finalizer from the
    /// objects it reconciled; `false` to retry later.
    fn release(ctx: &EngineContext, name: &str, spec: &Self::Spec) -> impl Future<Output = bool> + Send;
}

struct Running<R> {
    controller: R,
    reference: ObjectReference,
}

/// Runs a hosted controller for every object of kind `K` until `shutdown` completes, then
/// stops taking work and returns once the syncs in flight have finished. Reports ready in
/// `health` once the objects' cache has synced.
pub async fn run<K: HostedKind>(ctx: Arc<EngineContext>, health: Health, shutdown: impl Future<Output = ()>) {
    let resource = ApiResource::erase::<K::Object>(&());
    let cache = ctx.caches.cache(&resource);
    let synced = Arc::new(AtomicBool::new(false));
    health.add_readiness_check(K::READINESS_CHECK, {
        let synced = synced.clone();
        move || synced.load(Ordering::Relaxed)
    });
    let queue: WorkQueue<String> = WorkQueue::default();
    let _subscription = cache.subscribe(Arc::new({
        let queue = queue.clone();
        move |event| {
            let object = match event {
                CacheEvent::Applied { new, .. } => new,
                CacheEvent::Deleted(object) => object,
            };
            queue.add(object.name_any());
        }
    }));
    let reconcile = async {
        cache.wait_synced().await;
        synced.store(true, Ordering::Relaxed);
        for controller in cache.list() {
            queue.add(controller.name_any());
        }
        let mut running: HashMap<String, Running<K::Running>> = HashMap::new();
        let mut known: HashMap<String, K::Spec> = HashMap::new();
        while let Some(name) = queue.next().await {
            let current = cache.get(&ObjectKey { namespace: None, name: name.clone() });
            if reconcile::<K>(&ctx, &mut running, &mut known, &name, current).await {
                queue.forget(&name);
            } else {
                queue.add_rate_limited(name.clone());
            }
            queue.done(&name);
        }
        let stopping: Vec<_> = running.into_values().map(|running| K::stop_gracefully(running.controller)).collect();
        futures::future::join_all(stopping).await;
    };
    let stop_taking_work = async {
        shutdown.await;
        queue.shut_down();
    };
    tokio::join!(reconcile, stop_taking_work);
}

/// Brings the hosted controller of `name` in line with its object; `false` to retry later.
async fn reconcile<K: HostedKind>(
    ctx: &Arc<EngineContext>,
    running: &mut HashMap<String, Running<K::Running>>,
    known: &mut HashMap<String, K::Spec>,
    name: &str,
    current: Option<Arc<DynamicObject>>,
) -> bool {
    let targeted = |object: &DynamicObject| match &ctx.config.target_label_selector {
        Some(selector) => crate::selector::matches(selector, object.labels()).unwrap_or(false),
        None => true,
    };
    let Some(object) = current.filter(|object| object.metadata.deletion_timestamp.is_none() && targeted(object)) else {
        if let Some(old) = running.remove(name) {
            stop::<K>(ctx, name, old).await;
        }
        if let Some(spec) = known.get(name) {
            if !K::release(ctx, name, spec).await {
                return false;
            }
            known.remove(name);
        }
        return true;
    };
    let reference = object.object_ref(&ApiResource::erase::<K::Object>(&()));
    let controller: K::Object = match serde_json::to_value(object.as_ref()).and_then(serde_json::from_value) {
        Ok(controller) => controller,
        Err(error) => {
            ctx.event(&reference, true, "CreateError", format!("the {} is not valid: {error}", K::KIND)).await;
            return true;
        }
    };
    known.insert(name.to_owned(), K::spec(&controller).clone());
    if running.get(name).is_some_and(|old| K::running_spec(&old.controller) == K::spec(&controller)) {
        return true;
    }
    if let Some(old) = running.remove(name) {
        stop::<K>(ctx, name, old).await;
    }
    ctx.event(&reference, false, "Starting", format!("Starting controller {name}")).await;
    match K::start(ctx.clone(), &controller).await {
        Ok(started) => {
            tracing::info!(kind = K::KIND, controller = name, "started");
            ctx.event(&reference, false, "Started", format!("Started controller {name}")).await;
            running.insert(name.to_owned(), Running { controller: started, reference });
            true
        }
        Err(error) => {
            tracing::warn!(kind = K::KIND, controller = name, %error, "cannot start");
            ctx.event(&reference, true, "CreateError", format!("Cannot create controller {name}: {error}")).await;
            // A missing CRD may be installed later; anything else needs a spec change.
            !matches!(error, CreateError::Discovery(_))
        }
    }
}

/// How long a stopping hosted controller's syncs in flight may take to finish.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Stops a hosted controller once its syncs in flight have finished (or [`STOP_GRACE`] has
/// passed): a finalizer one of them is adding must land before the finalizers are released.
async fn stop<K: HostedKind>(ctx: &EngineContext, name: &str, old: Running<K::Running>) {
    ctx.event(&old.reference, false, "Stopping", format!("Stopping controller {name}")).await;
    if tokio::time::timeout(STOP_GRACE, K::stop_gracefully(old.controller)).await.is_err() {
        tracing::warn!(controller = name, "syncs still running after {STOP_GRACE:?}; stopped them");
    }
    ctx.hooks.release_credentials(K::KIND, name);
    ctx.count_records();
    ctx.event(&old.reference, false, "Stopped", format!("Stopped controller {name}")).await;
    tracing::info!(controller = name, "stopped");
}

/// Removes `finalizer` from every object of the resources `rules` name (apiVersion,
/// resource); `false` to retry later.
pub async fn release_finalizer(ctx: &EngineContext, name: &str, finalizer: &str, rules: &[(&str, &str)]) -> bool {
    for (api_version, resource) in rules {
        let resolved = match ctx.discovery.resolve(api_version, resource).await {
            Ok(resolved) => resolved,
            Err(error) => {
                tracing::warn!(controller = name, %error, "cannot find its objects to remove its finalizer");
                continue;
            }
        };
        if let Err(error) = crate::parent::release_finalizer(&ctx.client, &resolved.resource, finalizer).await {
            tracing::warn!(controller = name, %error, "removing its finalizer failed");
            return false;
        }
    }
    true
}

/// What the workers of a hosted controller need from it.
pub trait Reconciler: Send + Sync + 'static {
    /// What its queue holds.
    type Key: Clone + Eq + std::hash::Hash + std::fmt::Display + Send + Sync + 'static;
    /// Its name, for logs.
    fn name(&self) -> &str;
    /// Its queue.
    fn queue(&self) -> &WorkQueue<Self::Key>;
    /// The caches that must have synced before the first sync.
    fn caches(&self) -> Vec<Arc<Cache>>;
    /// Queues every object it reconciles (at start and on every resync).
    fn queue_all(&self);
    /// Syncs one key, and requeues it as the outcome asks.
    fn process(&self, key: &Self::Key) -> impl Future<Output = ()> + Send;
}

/// The tasks and subscriptions of a running hosted controller: its workers and its resync
/// ticker. Dropping it stops them at once; [`Tasks::stop_gracefully`] lets syncs finish.
pub struct Tasks {
    stop: Box<dyn Fn() + Send + Sync>,
    workers: Option<tokio::task::JoinHandle<()>>,
    ticker: tokio::task::JoinHandle<()>,
    _subscriptions: Vec<Subscription>,
}

impl Tasks {
    /// Starts `workers` workers over `reconciler`'s queue once its caches have synced, and
    /// queues everything every `resync`. `subscriptions` feed the queue and live as long.
    pub fn start<R: Reconciler>(reconciler: Arc<R>, workers: usize, resync: Duration, subscriptions: Vec<Subscription>) -> Tasks {
        let queue = reconciler.queue().clone();
        let weak = Arc::downgrade(&reconciler);
        let ticker = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(resync);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(reconciler) = weak.upgrade() else { return };
                reconciler.queue_all();
            }
        });
        Tasks {
            stop: Box::new(move || queue.shut_down()),
            workers: Some(tokio::spawn(run_workers(reconciler, workers))),
            ticker,
            _subscriptions: subscriptions,
        }
    }

    /// Stops taking work and waits for the syncs in flight to finish.
    pub async fn stop_gracefully(mut self) {
        (self.stop)();
        if let Some(workers) = self.workers.take() {
            let _ = workers.await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        (self.stop)();
        self.ticker.abort();
        if let Some(workers) = &self.workers {
            workers.abort();
        }
    }
}

async fn run_workers<R: Reconciler>(reconciler: Arc<R>, workers: usize) {
    for cache in reconciler.caches() {
        cache.wait_synced().await;
    }
    reconciler.queue_all();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let reconciler = reconciler.clone();
        tasks.spawn(async move {
            while let Some(key) = reconciler.queue().next().await {
                // A bug in one sync must not take its worker, or its key, with it.
                if std::panic::AssertUnwindSafe(reconciler.process(&key)).catch_unwind().await.is_err() {
                    tracing::error!(controller = %reconciler.name(), object = %key, "sync panicked; retrying with backoff");
                    reconciler.queue().add_rate_limited(key.clone());
                }
                reconciler.queue().done(&key);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// The endpoint of one of a controller's hooks (`None` if it has none), refused if it is
/// invalid or would send credentials over plain HTTP without the engine's consent.
pub fn hook_endpoint(
    ctx: &EngineContext,
    kind: HookKind,
    hook: Option<&Hook>,
    controller: (&'static str, &str),
    configs: &[EndpointConfig],
) -> Result<Option<HookEndpoint>, CreateError> {
    let Some(hook) = hook else { return Ok(None) };
    let endpoint = HookEndpoint::new(kind, hook, controller, configs).map_err(CreateError::Invalid)?;
    endpoint.check_credentials_transport(ctx.config.allow_insecure_hook_credentials).map_err(CreateError::Invalid)?;
    Ok(Some(endpoint))
}

/// A hosted controller's resync period: `resyncPeriodSeconds`, else the engine's interval.
pub fn resync_period(ctx: &EngineContext, seconds: Option<i32>) -> Duration {
    seconds.map(|seconds| Duration::from_secs(seconds.max(1) as u64)).unwrap_or(ctx.config.resync_interval)
}

/// The controller object as hook requests carry it: `status: {}` and no managed fields, as
/// Metacontroller sends it.
pub fn controller_json(object: &impl serde::Serialize) -> serde_json::Value {
    let mut json = serde_json::to_value(object).expect("a controller object serializes");
    json["status"] = serde_json::json!({});
    if let Some(metadata) = json["metadata"].as_object_mut() {
        metadata.remove("managedFields");
    }
    json
}
