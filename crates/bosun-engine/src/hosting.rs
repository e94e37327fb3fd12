//! Hosting: one hosted controller per CompositeController or DecoratorController object,
//! started when it appears, restarted when its spec changes, stopped when it is deleted — and
//! then its finalizers are removed from the objects it reconciled, which Metacontroller leaves
//! behind (#1062). Both kinds share this lifecycle through [`HostedKind`]. The lifecycle and
//! every hosted controller run on bosun-runtime's [`Controller`]; [`Tasks`] holds a running
//! hosted controller's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::{Action, Controller, Health, ObjectKey, predicate};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{EndpointConfig, Hook};
use crate::context::EngineContext;
use crate::hooks::{HookEndpoint, HookKind};
use crate::reconcile::{Hosted, Policy};

/// Why a controller object cannot run; reported in a `CreateError` event.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
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
    /// A hook is declared wrongly.
    #[error("{0}")]
    Endpoint(#[from] crate::hooks::EndpointError),
    /// The spec is invalid in another way.
    #[error("{0}")]
    Invalid(String),
    /// A cluster-scoped type, and the engine watches only some namespaces.
    #[error(
        "{role} {resource} is cluster-scoped, and this engine watches only the namespaces {namespaces} (bosun run \
         --namespace): run this controller on an engine that watches the whole cluster"
    )]
    ClusterScoped {
        /// What the controller declares it as: `parent resource`, `child resource`, ….
        role: &'static str,
        /// `plural.group`.
        resource: String,
        /// The namespaces watched, comma-separated.
        namespaces: String,
    },
}

/// A kind of controller object the engine hosts.
pub(crate) trait HostedKind: 'static {
    /// The controller object.
    type Object: Resource<DynamicType = ()> + DeserializeOwned + Send + Sync;
    /// Its spec: a change restarts the hosted controller.
    type Spec: PartialEq + Clone + Send + Sync;
    /// A running hosted controller; stopped when dropped.
    type Running: Send;
    /// `CompositeController` or `DecoratorController`.
    const KIND: &'static str;
    /// The lifecycle controller's name (`compositecontrollers`): in metrics, and the
    /// readiness check that passes once the controller objects' cache has synced.
    const NAME: &'static str;

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

/// What the lifecycle knows: the hosted controllers running, and the spec of every controller
/// object seen (to release its finalizers once it is gone).
struct Lifecycle<K: HostedKind> {
    running: HashMap<String, Running<K::Running>>,
    known: HashMap<String, K::Spec>,
}

/// Why a controller object's lifecycle step is retried with backoff.
#[derive(Debug, thiserror::Error)]
enum LifecycleError {
    /// Its finalizer is still on some objects.
    #[error("the finalizer of the deleted controller is not yet removed from every object")]
    Release,
    /// A resource it names is not served (yet): a CRD may be installed later.
    #[error(transparent)]
    Create(CreateError),
}

/// Runs a hosted controller for every object of kind `K` until `shutdown` completes, then
/// stops taking work and returns once the syncs in flight have finished. Reports ready in
/// `health` once the objects' cache has synced.
pub(crate) async fn run<K: HostedKind>(ctx: Arc<EngineContext>, health: Health, shutdown: impl Future<Output = ()>) {
    // Controller objects are cluster-scoped: read cluster-wide even by an engine that watches
    // only some namespaces (the one rule such an install needs beyond its Roles).
    let cache = ctx.caches.cluster_wide().cache(&ApiResource::erase::<K::Object>(&()));
    // One worker: starts and stops of hosted controllers happen one at a time.
    let controller = Controller::new(K::NAME, &ctx.metrics).with_health(&health).for_resource(cache.clone(), predicate::any);
    let lifecycle = Arc::new(tokio::sync::Mutex::new(Lifecycle::<K> { running: HashMap::new(), known: HashMap::new() }));
    let reconcile = {
        let lifecycle = lifecycle.clone();
        move |key: ObjectKey| {
            let (ctx, lifecycle, current) = (ctx.clone(), lifecycle.clone(), cache.get(&key));
            async move {
                let mut lifecycle = lifecycle.lock().await;
                reconcile::<K>(&ctx, &mut lifecycle, &key.name, current).await.map(|()| Action::Done)
            }
        }
    };
    controller.run(reconcile, |_, _| None, shutdown).await;
    let running = std::mem::take(&mut lifecycle.lock().await.running);
    futures::future::join_all(running.into_values().map(|running| K::stop_gracefully(running.controller))).await;
}

/// Brings the hosted controller of `name` in line with its object.
async fn reconcile<K: HostedKind>(
    ctx: &Arc<EngineContext>,
    lifecycle: &mut Lifecycle<K>,
    name: &str,
    current: Option<Arc<DynamicObject>>,
) -> Result<(), LifecycleError> {
    let Lifecycle { running, known } = lifecycle;
    let targeted = |object: &DynamicObject| targeted(ctx.config.target_label_selector.as_ref(), object);
    let Some(object) = current.filter(|object| object.metadata.deletion_timestamp.is_none() && targeted(object)) else {
        if let Some(old) = running.remove(name) {
            stop::<K>(ctx, name, old).await;
        }
        if let Some(spec) = known.get(name) {
            if !K::release(ctx, name, spec).await {
                return Err(LifecycleError::Release);
            }
            known.remove(name);
        }
        return Ok(());
    };
    let reference = object.object_ref(&ApiResource::erase::<K::Object>(&()));
    let controller: K::Object = match serde_json::to_value(object.as_ref()).and_then(serde_json::from_value) {
        Ok(controller) => controller,
        Err(error) => {
            ctx.event(&reference, true, "CreateError", format!("the {} is not valid: {error}", K::KIND)).await;
            return Ok(());
        }
    };
    known.insert(name.to_owned(), K::spec(&controller).clone());
    if running.get(name).is_some_and(|old| K::running_spec(&old.controller) == K::spec(&controller)) {
        return Ok(());
    }
    // A restart keeps the caches the old controller watched until the new one has taken them:
    // a spec change must not drop them and list every object of their types again.
    let warm: Vec<_> = ctx.caches.live().into_iter().chain(ctx.owned.live()).collect();
    if let Some(old) = running.remove(name) {
        stop::<K>(ctx, name, old).await;
    }
    ctx.event(&reference, false, "Starting", format!("Starting controller {name}")).await;
    let started = K::start(ctx.clone(), &controller).await;
    drop(warm);
    match started {
        Ok(started) => {
            tracing::info!(kind = K::KIND, controller = name, "started");
            ctx.event(&reference, false, "Started", format!("Started controller {name}")).await;
            running.insert(name.to_owned(), Running { controller: started, reference });
            Ok(())
        }
        Err(error) => {
            tracing::warn!(kind = K::KIND, controller = name, %error, "cannot start");
            ctx.event(&reference, true, "CreateError", format!("Cannot create controller {name}: {error}")).await;
            // A missing CRD may be installed later; anything else needs a spec change.
            match error {
                CreateError::Discovery(_) => Err(LifecycleError::Create(error)),
                _ => Ok(()),
            }
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
    ctx.hooks.release_controller(K::KIND, name);
    ctx.count_records();
    ctx.event(&old.reference, false, "Stopped", format!("Stopped controller {name}")).await;
    tracing::info!(controller = name, "stopped");
}

/// Removes `finalizer` from every object of the resources `rules` name (apiVersion,
/// resource); `false` to retry later.
pub(crate) async fn release_finalizer(ctx: &EngineContext, name: &str, finalizer: &str, rules: &[(&str, &str)]) -> bool {
    for (api_version, resource) in rules {
        let resolved = match ctx.discovery.resolve(api_version, resource).await {
            Ok(resolved) => resolved,
            Err(error) => {
                tracing::warn!(controller = name, %error, "cannot find its objects to remove its finalizer");
                continue;
            }
        };
        if let Err(error) = crate::finalizer::release_finalizer(
            &ctx.client,
            &resolved.resource,
            ctx.caches.apis(&resolved.resource, resolved.namespaced),
            finalizer,
            ctx.shard.as_deref(),
        )
        .await
        {
            tracing::warn!(controller = name, %error, "removing its finalizer failed");
            return false;
        }
    }
    true
}

/// Whether the engine's `--target-label-selector` (`selector`) selects the controller object
/// `object`: it runs only those.
pub(crate) fn targeted(selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>, object: &DynamicObject) -> bool {
    selector.is_none_or(|selector| crate::selector::matches(selector, object.labels()).unwrap_or(false))
}

/// A running hosted controller's [`Controller`]. Dropping it stops the controller at once;
/// [`Tasks::stop_gracefully`] lets the syncs in flight finish.
pub(crate) struct Tasks {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Tasks {
    /// Runs `controller`'s workers over `hosted`'s objects with the one reconciler; failed
    /// syncs are retried with the queue's backoff.
    pub(crate) fn start<P: Policy>(controller: Controller<P::Key>, hosted: Arc<Hosted<P>>) -> Tasks {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let reconcile = move |key| {
            let hosted = hosted.clone();
            async move { crate::reconcile::process(&hosted, key).await }
        };
        let task = tokio::spawn(controller.run(reconcile, |_, _| None, shutdown));
        Tasks { stop: Some(stop), task: Some(task) }
    }

    /// Stops taking work and waits for the syncs in flight to finish.
    pub(crate) async fn stop_gracefully(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The runtime [`Controller`] of a hosted controller: `<kind>-<name>` in metrics and
/// readiness, the engine's workers, its resync period, and — when its caches have not synced
/// in time — a `CreateError` event on its controller object naming the resources.
pub(crate) fn hosted_controller<K, O>(
    ctx: &Arc<EngineContext>,
    kind: &str,
    name: &str,
    object: &O,
    resync_seconds: Option<i32>,
) -> Controller<K>
where
    K: Clone + Eq + std::hash::Hash + std::fmt::Display + Send + Sync + 'static,
    O: Resource<DynamicType = ()>,
{
    let report = {
        let (ctx, reference, name) = (ctx.clone(), object.object_ref(&()), name.to_owned());
        move |waiting: Vec<String>| async move {
            let message = format!(
                "Controller {name} cannot sync: {} could not be listed within {:?}; check that the engine may list and watch them \
                 and that their CRDs are installed (still retrying)",
                waiting.join(", "),
                ctx.config.cache_sync_timeout
            );
            ctx.event(&reference, true, "CreateError", message).await;
        }
    };
    Controller::new(format!("{kind}-{name}"), &ctx.metrics)
        .workers(ctx.config.workers)
        .resync(resync_period(ctx, resync_seconds))
        .with_health(&ctx.health)
        .sync_timeout(ctx.config.cache_sync_timeout)
        .on_sync_timeout(report)
}

/// A controller's hook endpoints.
pub(crate) struct Hooks {
    /// The sync hook.
    pub sync: Option<HookEndpoint>,
    /// The finalize hook.
    pub finalize: Option<HookEndpoint>,
    /// The customize hook.
    pub customize: Option<HookEndpoint>,
}

impl Hooks {
    /// The endpoints of `kind` `name`'s `[sync, finalize, customize]` hooks: refused if there
    /// are none, if neither a sync nor a finalize hook is declared, or if one is invalid or
    /// would send credentials over plain HTTP or run a program without the engine's consent. A
    /// hook without a `webhook` (or `exec`) counts as none, as in Metacontroller.
    pub(crate) fn of(
        ctx: &EngineContext,
        kind: &'static str,
        name: &str,
        hooks: Option<[&Option<Hook>; 3]>,
        configs: Option<&[EndpointConfig]>,
    ) -> Result<Hooks, CreateError> {
        let [sync, finalize, customize] = hooks.ok_or_else(|| CreateError::Invalid("no hooks defined".into()))?;
        let endpoint = |hook_kind, hook: &Option<Hook>| -> Result<Option<HookEndpoint>, CreateError> {
            let Some(hook) = hook.as_ref().filter(|hook| hook.is_declared()) else { return Ok(None) };
            let endpoint = HookEndpoint::new(hook_kind, hook, (kind, name), configs.unwrap_or_default())?;
            endpoint.check_credentials_transport(ctx.config.allow_insecure_hook_credentials)?;
            endpoint.check_exec(ctx.config.exec_hooks)?;
            Ok(Some(endpoint))
        };
        let hooks = Hooks {
            sync: endpoint(HookKind::Sync, sync)?,
            finalize: endpoint(HookKind::Finalize, finalize)?,
            customize: endpoint(HookKind::Customize, customize)?,
        };
        if hooks.sync.is_none() && hooks.finalize.is_none() {
            return Err(CreateError::Invalid("no sync or finalize hook defined".into()));
        }
        Ok(hooks)
    }
}

/// A hosted controller's resync period: `resyncPeriodSeconds`, else the engine's interval.
pub(crate) fn resync_period(ctx: &EngineContext, seconds: Option<i32>) -> Duration {
    seconds.map(|seconds| Duration::from_secs(seconds.max(1) as u64)).unwrap_or(ctx.config.resync_interval)
}

/// The controller object as hook requests carry it: `status: {}` and no managed fields, as
/// Metacontroller sends it.
pub(crate) fn controller_json(object: &impl serde::Serialize) -> serde_json::Value {
    let mut json = serde_json::to_value(object).expect("a controller object serializes");
    json["status"] = serde_json::json!({});
    if let Some(metadata) = json["metadata"].as_object_mut() {
        metadata.remove("managedFields");
    }
    json
}
