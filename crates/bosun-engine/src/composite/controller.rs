//! A hosted controller: what one CompositeController object runs. It resolves the parent and
//! child types, subscribes to their shared caches, maps every change to the parents it
//! concerns, and runs a bounded set of workers over a queue of parent keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use bosun_runtime::{CacheEvent, ObjectKey, WorkQueue};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::Value;

use super::sync::finalizer_name;
use crate::api::{CompositeController, CompositeControllerSpec, ResourceRule};
use crate::children::ChildType;
use crate::context::EngineContext;
use crate::discovery::ResolvedResource;
use crate::hooks::{HookEndpoint, HookKind, group_key};
use crate::hosting::{CreateError, Reconciler, Tasks};
use crate::parent::SyncError;
use crate::selector;

/// Everything a sync of one parent needs, shared by the workers.
pub struct Hosted {
    /// The engine's shared parts.
    pub ctx: Arc<EngineContext>,
    /// The CompositeController's name.
    pub name: String,
    /// It, as JSON for hook requests (with `status: {}`, as Metacontroller sends it).
    pub controller_json: Value,
    /// Its spec.
    pub spec: CompositeControllerSpec,
    /// The parent type.
    pub parent: ResolvedResource,
    /// Every parent object.
    pub parents: Arc<bosun_runtime::Cache>,
    /// The child types, in spec order.
    pub children: Vec<ChildType>,
    /// The sync hook, if any.
    pub sync_hook: Option<HookEndpoint>,
    /// The finalize hook, if any.
    pub finalize_hook: Option<HookEndpoint>,
    /// Related objects, from the customize hook.
    pub related: Arc<crate::related::Related<ObjectKey>>,
    /// Parent keys to sync.
    pub queue: WorkQueue<ObjectKey>,
    /// `CompositeController-<name>`: the queue's and the reconcile metrics' name.
    pub queue_name: String,
}

impl Hosted {
    /// `metacontroller.io/compositecontroller-<name>`.
    pub fn finalizer(&self) -> String {
        finalizer_name(&self.name)
    }

    /// Whether the parent's labels match `parentResource.labelSelector` (absent: all match).
    pub fn handles(&self, parent: &DynamicObject) -> bool {
        match &self.spec.parent_resource.label_selector {
            None => true,
            Some(selector) => selector::matches(selector, parent.labels()).unwrap_or(false),
        }
    }

    /// The selector of a parent's children: `controller-uid` with `generateSelector`, else
    /// the parent's `spec.selector`.
    pub fn child_selector(&self, parent: &DynamicObject) -> Result<LabelSelector, SyncError> {
        if self.spec.generate_selector == Some(true) {
            let uid = parent.uid().unwrap_or_default();
            return Ok(LabelSelector { match_labels: Some(BTreeMap::from([("controller-uid".to_owned(), uid)])), ..Default::default() });
        }
        let selector = parent.data.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
        let selector: LabelSelector = serde_json::from_value(selector)
            .map_err(|error| SyncError::InvalidParent(format!(".spec.selector is not a label selector: {error}")))?;
        if selector::is_empty(&selector) {
            return Err(SyncError::InvalidParent(
                ".spec.selector must have either matchLabels, matchExpressions, or both \
                 (or set generateSelector: true on the CompositeController)"
                    .into(),
            ));
        }
        Ok(selector)
    }

    /// The key under which `object`'s controller parent is queued, if it is one of ours.
    fn owner_key(&self, object: &DynamicObject) -> Option<ObjectKey> {
        let reference = object.owner_references().iter().find(|reference| reference.controller == Some(true))?;
        let group = |api_version: &str| api_version.rsplit_once('/').map(|(group, _)| group.to_owned()).unwrap_or_default();
        if reference.kind != self.parent.resource.kind || group(&reference.api_version) != self.parent.resource.group {
            return None;
        }
        Some(ObjectKey { namespace: if self.parent.namespaced { object.namespace() } else { None }, name: reference.name.clone() })
    }

    fn on_parent_event(&self, event: &CacheEvent<'_>) {
        let CacheEvent::Applied { old, new } = event else { return };
        if self.spec.parent_resource.ignore_status_changes == Some(true)
            && old.is_some_and(|old| crate::parent::only_status_changed(old, new))
        {
            return;
        }
        let ours = |parent: &DynamicObject| self.handles(parent) || parent.finalizers().contains(&self.finalizer());
        if ours(new) || old.is_some_and(|old| ours(old)) {
            self.queue.add(ObjectKey::of(new));
        }
    }

    fn on_child_event(&self, child_type: &ChildType, event: &CacheEvent<'_>) {
        let (old, new) = match event {
            CacheEvent::Applied { old, new } => (*old, Some(*new)),
            CacheEvent::Deleted(object) => {
                self.ctx.applier.forget(child_type, object);
                (Some(*object), None)
            }
        };
        let mut owned = false;
        for object in old.into_iter().chain(new) {
            if let Some(key) = self.owner_key(object) {
                owned = true;
                self.queue.add(key);
            }
        }
        // An orphan may be adopted by any parent whose selector matches it.
        if let Some(orphan) = new.filter(|object| !owned && object.metadata.deletion_timestamp.is_none())
            && bosun_runtime::cache::controller_uid(orphan).is_none()
        {
            for parent in self.parents.list() {
                if self.parent.namespaced && parent.namespace() != orphan.namespace() {
                    continue;
                }
                let matches = self
                    .child_selector(&parent)
                    .ok()
                    .is_some_and(|selector| selector::matches(&selector, orphan.labels()).unwrap_or(false));
                if matches && self.handles(&parent) {
                    self.queue.add(ObjectKey::of(&parent));
                }
            }
        }
    }

    /// Queues every parent this controller handles.
    pub fn queue_all(&self) {
        for parent in self.parents.list() {
            if self.handles(&parent) || parent.finalizers().contains(&self.finalizer()) {
                self.queue.add(ObjectKey::of(&parent));
            }
        }
    }
}

/// A running hosted controller; stopped when dropped.
pub struct HostedController {
    /// The spec it runs, to tell whether a change needs a restart.
    pub spec: CompositeControllerSpec,
    /// Shared with its workers.
    pub hosted: Arc<Hosted>,
    tasks: Tasks,
}

impl HostedController {
    /// Stops taking work and waits for the syncs in flight to finish.
    pub async fn stop_gracefully(self) {
        self.tasks.stop_gracefully().await
    }

    /// Resolves the CompositeController's types and hooks and starts its workers.
    pub async fn start(ctx: Arc<EngineContext>, controller: &CompositeController) -> Result<HostedController, CreateError> {
        let spec = controller.spec.clone();
        let rule = &spec.parent_resource;
        let parent = ctx.discovery.resolve(rule.api_version(), rule.resource()).await?;
        if !parent.has_status {
            return Err(CreateError::NoStatusSubresource { api_version: rule.api_version.clone(), resource: rule.resource.clone() });
        }
        let mut children = Vec::new();
        for rule in spec.child_resources.iter().flatten() {
            if rule.method().is_rolling() {
                return Err(CreateError::Invalid(format!(
                    "child resource {} uses update method {:?}; rolling updates are not supported yet \
                     (use OnDelete, Recreate or InPlace)",
                    rule.resource,
                    rule.method()
                )));
            }
            let resolved = ctx.discovery.resolve(rule.api_version(), rule.resource()).await?;
            children.push(ChildType {
                group_key: group_key(&resolved.resource.kind, &rule.api_version),
                cache: ctx.caches.cache(&resolved.resource),
                resource: resolved.resource,
                namespaced: resolved.namespaced,
                method: rule.method(),
            });
        }
        let hooks = spec.hooks.clone().ok_or_else(|| CreateError::Invalid("no hooks defined".into()))?;
        let name = controller.name_any();
        let configs = spec.endpoint_configs.as_deref().unwrap_or_default();
        let endpoint = |kind, hook: &Option<crate::api::Hook>| {
            crate::hosting::hook_endpoint(&ctx, kind, hook.as_ref(), ("CompositeController", &name), configs)
        };
        let sync_hook = endpoint(HookKind::Sync, &hooks.sync)?;
        let finalize_hook = endpoint(HookKind::Finalize, &hooks.finalize)?;
        if sync_hook.is_none() && finalize_hook.is_none() {
            return Err(CreateError::Invalid("no sync or finalize hook defined".into()));
        }
        let customize_hook = endpoint(HookKind::Customize, &hooks.customize)?;
        let controller_json = crate::hosting::controller_json(controller);
        let queue_name = format!("CompositeController-{name}");
        let queue = WorkQueue::default().with_metrics(ctx.metrics.queue(&queue_name));
        let hosted = Arc::new(Hosted {
            parents: ctx.caches.cache(&parent.resource),
            related: crate::related::Related::new(ctx.clone(), customize_hook, controller_json.clone(), queue.clone()),
            queue,
            queue_name,
            name,
            ctx,
            controller_json,
            spec: spec.clone(),
            parent,
            children,
            sync_hook,
            finalize_hook,
        });

        let mut subscriptions = Vec::new();
        let weak = Arc::downgrade(&hosted);
        subscriptions.push(hosted.parents.subscribe(Arc::new(move |event| {
            if let Some(hosted) = weak.upgrade() {
                hosted.on_parent_event(event);
            }
        })));
        for index in 0..hosted.children.len() {
            let weak = Arc::downgrade(&hosted);
            subscriptions.push(hosted.children[index].cache.subscribe(Arc::new(move |event| {
                if let Some(hosted) = weak.upgrade() {
                    hosted.on_child_event(&hosted.children[index], event);
                }
            })));
        }

        let resync = crate::hosting::resync_period(&hosted.ctx, spec.resync_period_seconds);
        let tasks = Tasks::start(hosted.clone(), hosted.ctx.config.workers, resync, subscriptions);
        Ok(HostedController { spec, hosted, tasks })
    }
}

impl Reconciler for Hosted {
    type Key = ObjectKey;

    fn name(&self) -> &str {
        &self.name
    }

    fn queue(&self) -> &WorkQueue<ObjectKey> {
        &self.queue
    }

    fn caches(&self) -> Vec<Arc<bosun_runtime::Cache>> {
        std::iter::once(self.parents.clone()).chain(self.children.iter().map(|child| child.cache.clone())).collect()
    }

    fn queue_all(&self) {
        Hosted::queue_all(self)
    }

    async fn process(&self, key: &ObjectKey) {
        let started = std::time::Instant::now();
        let outcome = self.sync(key).await;
        let parent = if outcome.is_err() { self.parents.get(key) } else { None };
        let parent = parent.as_deref().map(|parent| (parent, &self.parent.resource));
        crate::parent::settle(&self.ctx, &self.queue, &self.queue_name, key, started, outcome, parent).await;
    }
}
