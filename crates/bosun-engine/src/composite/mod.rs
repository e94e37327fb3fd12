//! CompositeController: one hosted controller per CompositeController object, started when it
//! appears, restarted when its spec changes, stopped when it is deleted — and then its
//! finalizers are removed from the parents, which Metacontroller leaves behind (#1062).

mod controller;
mod sync;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bosun_runtime::{CacheEvent, Health, ObjectKey, WorkQueue};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};

pub use controller::{CreateError, Hosted, HostedController};
pub use sync::finalizer_name;

use crate::api::{CompositeController, CompositeControllerSpec};
use crate::context::EngineContext;

struct Running {
    controller: HostedController,
    reference: ObjectReference,
}

/// Runs a hosted controller for every CompositeController until `shutdown` completes, then
/// stops taking work and returns once the syncs in flight have finished. Reports ready in
/// `health` once the CompositeController cache has synced.
pub async fn run(ctx: Arc<EngineContext>, health: Health, shutdown: impl Future<Output = ()>) {
    let resource = ApiResource::erase::<CompositeController>(&());
    let cache = ctx.caches.cache(&resource);
    let synced = Arc::new(AtomicBool::new(false));
    health.add_readiness_check("compositecontrollers-synced", {
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
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut known: HashMap<String, CompositeControllerSpec> = HashMap::new();
        while let Some(name) = queue.next().await {
            let current = cache.get(&ObjectKey { namespace: None, name: name.clone() });
            if reconcile(&ctx, &mut running, &mut known, &name, current).await {
                queue.forget(&name);
            } else {
                queue.add_rate_limited(name.clone());
            }
            queue.done(&name);
        }
        let stopping: Vec<_> = running.into_values().map(|running| running.controller.stop_gracefully()).collect();
        futures::future::join_all(stopping).await;
    };
    let stop_taking_work = async {
        shutdown.await;
        queue.shut_down();
    };
    tokio::join!(reconcile, stop_taking_work);
}

/// Brings the hosted controller of `name` in line with its CompositeController; `false` to
/// retry later.
async fn reconcile(
    ctx: &Arc<EngineContext>,
    running: &mut HashMap<String, Running>,
    known: &mut HashMap<String, CompositeControllerSpec>,
    name: &str,
    current: Option<Arc<DynamicObject>>,
) -> bool {
    let targeted = |object: &DynamicObject| match &ctx.config.target_label_selector {
        Some(selector) => crate::selector::matches(selector, object.labels()).unwrap_or(false),
        None => true,
    };
    let Some(object) = current.filter(|object| object.metadata.deletion_timestamp.is_none() && targeted(object)) else {
        if let Some(old) = running.remove(name) {
            stop(ctx, name, old).await;
        }
        if let Some(spec) = known.get(name) {
            if !release(ctx, name, spec).await {
                return false;
            }
            known.remove(name);
        }
        return true;
    };
    let reference = object.object_ref(&ApiResource::erase::<CompositeController>(&()));
    let controller: CompositeController =
        match serde_json::to_value(object.as_ref()).and_then(serde_json::from_value) {
            Ok(controller) => controller,
            Err(error) => {
                ctx.event(&reference, true, "CreateError", format!("the CompositeController is not valid: {error}")).await;
                return true;
            }
        };
    known.insert(name.to_owned(), controller.spec.clone());
    if running.get(name).is_some_and(|old| old.controller.spec == controller.spec) {
        return true;
    }
    if let Some(old) = running.remove(name) {
        stop(ctx, name, old).await;
    }
    ctx.event(&reference, false, "Starting", format!("Starting controller {name}")).await;
    match HostedController::start(ctx.clone(), &controller).await {
        Ok(started) => {
            tracing::info!(controller = name, "started");
            ctx.event(&reference, false, "Started", format!("Started controller {name}")).await;
            running.insert(name.to_owned(), Running { controller: started, reference });
            true
        }
        Err(error) => {
            tracing::warn!(controller = name, %error, "cannot start");
            ctx.event(&reference, true, "CreateError", format!("Cannot create controller {name}: {error}")).await;
            // A missing CRD may be installed later; anything else needs a spec change.
            !matches!(error, CreateError::Discovery(_))
        }
    }
}

async fn stop(ctx: &EngineContext, name: &str, old: Running) {
    ctx.event(&old.reference, false, "Stopping", format!("Stopping controller {name}")).await;
    drop(old.controller);
    ctx.event(&old.reference, false, "Stopped", format!("Stopped controller {name}")).await;
    tracing::info!(controller = name, "stopped");
}

/// After a CompositeController with a finalize hook is deleted, removes its finalizer from
/// its parents (whether or not its hosted controller was running); `false` to retry later.
async fn release(ctx: &EngineContext, name: &str, spec: &CompositeControllerSpec) -> bool {
    if spec.hooks.as_ref().and_then(|hooks| hooks.finalize.as_ref()).is_none() {
        return true;
    }
    let rule = &spec.parent_resource;
    let parent = match ctx.discovery.resolve(&rule.api_version, &rule.resource).await {
        Ok(parent) => parent,
        Err(error) => {
            tracing::warn!(controller = name, %error, "cannot find its parents to remove its finalizer");
            return true;
        }
    };
    let parents = ctx.caches.cache(&parent.resource);
    parents.wait_synced().await;
    match crate::parent::release_finalizer(&ctx.client, &parents, &finalizer_name(name)).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(controller = name, %error, "removing its finalizer from parents failed");
            false
        }
    }
}
