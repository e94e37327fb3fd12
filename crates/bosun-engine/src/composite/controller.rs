//! A hosted controller: what one CompositeController object runs. It resolves the parent and
//! child types, subscribes to their shared caches, maps every change to the parents it
//! concerns, and runs a bounded set of workers over a queue of parent keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use bosun_runtime::sharding::Selection;
use bosun_runtime::{CacheEvent, Controller, ObjectKey};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::Value;

use super::sync::finalizer_name;
use crate::api::{ChildUpdateMethod, CompositeController, CompositeControllerSpec, ResourceRule};
use crate::children::ChildType;
use crate::context::EngineContext;
use crate::discovery::ResolvedResource;
use crate::hooks::{HookEndpoint, HookKind, group_key};
use crate::hosting::{CreateError, Tasks};
use crate::selector;
use crate::sync_error::SyncError;

/// The parent index by the labels their `spec.selector` requires, as `<namespace>/<key>=<value>`
/// (`<namespace>/*` when it requires no particular label): a child's labels find the parents
/// that may adopt it. Shared by every controller of the parent type.
const SELECTOR_INDEX: &str = "bosun.dev/child-selector";
/// The same for `generateSelector: true`: `<namespace>/controller-uid=<uid>`.
const GENERATED_SELECTOR_INDEX: &str = "bosun.dev/generated-child-selector";

/// The [`SELECTOR_INDEX`] values of `parent`. Every label a matching child must carry leads to
/// the parent; one of them is enough, since a match needs them all.
fn selector_index_values(parent: &DynamicObject) -> Vec<String> {
    let namespace = parent.namespace().unwrap_or_default();
    let Some(selector) =
        parent.data.pointer("/spec/selector").and_then(|selector| serde_json::from_value::<LabelSelector>(selector.clone()).ok())
    else {
        return Vec::new();
    };
    if selector::is_empty(&selector) {
        return Vec::new();
    }
    if let Some(labels) = selector.match_labels.as_ref().filter(|labels| !labels.is_empty()) {
        return labels.iter().map(|(key, value)| format!("{namespace}/{key}={value}")).collect();
    }
    let required = selector.match_expressions.iter().flatten().find(|expression| expression.operator == "In");
    match required {
        Some(expression) => expression.values.iter().flatten().map(|value| format!("{namespace}/{}={value}", expression.key)).collect(),
        None => vec![format!("{namespace}/*")],
    }
}

/// Everything a sync of one parent needs, shared by the workers.
pub(crate) struct HostedComposite {
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
    /// The rolling-update configuration, when a child type rolls.
    pub rolling: Option<super::rolling::Rolling>,
    /// Tells the ring's coordinator about the parent type, when sharded.
    _sharded: Option<bosun_runtime::sharding::Registration>,
}

impl HostedComposite {
    /// `metacontroller.io/compositecontroller-<name>`.
    pub(crate) fn finalizer(&self) -> String {
        finalizer_name(&self.name)
    }

    /// Whether the parent's labels match `parentResource.labelSelector` (absent: all match).
    pub(crate) fn handles(&self, parent: &DynamicObject) -> bool {
        match &self.spec.parent_resource.label_selector {
            None => true,
            Some(selector) => selector::matches(selector, parent.labels()).unwrap_or(false),
        }
    }

    /// The selector of a parent's children: `controller-uid` with `generateSelector`, else
    /// the parent's `spec.selector`.
    pub(crate) fn child_selector(&self, parent: &DynamicObject) -> Result<LabelSelector, SyncError> {
        if self.spec.generate_selector == Some(true) {
            let uid = parent.uid().unwrap_or_default();
            return Ok(LabelSelector { match_labels: Some(BTreeMap::from([("controller-uid".to_owned(), uid)])), ..Default::default() });
        }
        let selector = parent.data.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
        let selector: LabelSelector = serde_json::from_value(selector).map_err(|error| SyncError::NoSelector(Some(error)))?;
        if selector::is_empty(&selector) {
            return Err(SyncError::NoSelector(None));
        }
        Ok(selector)
    }

    /// The name of the parent index this controller finds adoptive parents through.
    fn selector_index(&self) -> &'static str {
        if self.spec.generate_selector == Some(true) { GENERATED_SELECTOR_INDEX } else { SELECTOR_INDEX }
    }

    /// The key under which `object`'s controller parent is queued, if it is one of ours.
    pub(crate) fn owner_key(&self, object: &DynamicObject) -> Option<ObjectKey> {
        let reference = object.owner_references().iter().find(|reference| reference.controller == Some(true))?;
        let group = |api_version: &str| api_version.rsplit_once('/').map(|(group, _)| group.to_owned()).unwrap_or_default();
        if reference.kind != self.parent.resource.kind || group(&reference.api_version) != self.parent.resource.group {
            return None;
        }
        Some(ObjectKey { namespace: if self.parent.namespaced { object.namespace() } else { None }, name: reference.name.clone() })
    }

    /// The parent a parent change concerns, if it is ours (before or after the change).
    fn parent_keys(&self, event: &CacheEvent<'_>) -> Vec<ObjectKey> {
        let CacheEvent::Applied { old, new } = event else { return Vec::new() };
        if self.spec.parent_resource.ignore_status_changes == Some(true)
            && old.is_some_and(|old| crate::parent::only_status_changed(old, new))
        {
            return Vec::new();
        }
        let ours = |parent: &DynamicObject| self.handles(parent) || parent.finalizers().contains(&self.finalizer());
        if ours(new) || old.is_some_and(|old| ours(old)) { vec![ObjectKey::of(new)] } else { Vec::new() }
    }

    /// The parents a child change concerns: its controller, or for an orphan every parent
    /// that may adopt it.
    fn child_keys(&self, child_type: &ChildType, event: &CacheEvent<'_>) -> Vec<ObjectKey> {
        let (old, new) = match event {
            CacheEvent::Applied { old, new } => (*old, Some(*new)),
            CacheEvent::Deleted(object) => {
                self.ctx.applier.forget(child_type, object);
                (Some(*object), None)
            }
        };
        let mut keys: Vec<ObjectKey> = old.into_iter().chain(new).filter_map(|object| self.owner_key(object)).collect();
        let owned = !keys.is_empty();
        // An orphan may be adopted by any parent whose selector matches it: the selector index
        // finds the candidates without reading every parent.
        if let Some(orphan) = new.filter(|object| !owned && object.metadata.deletion_timestamp.is_none())
            && bosun_runtime::cache::controller_uid(orphan).is_none()
        {
            let namespace = if self.parent.namespaced { orphan.namespace().unwrap_or_default() } else { String::new() };
            let index = self.selector_index();
            let mut candidates = BTreeMap::new();
            let values = orphan.labels().iter().map(|(key, value)| format!("{namespace}/{key}={value}")).chain([format!("{namespace}/*")]);
            for value in values {
                for parent in self.parents.by_index(index, &value) {
                    candidates.entry(ObjectKey::of(&parent)).or_insert(parent);
                }
            }
            for parent in candidates.into_values() {
                let matches = self
                    .child_selector(&parent)
                    .ok()
                    .is_some_and(|selector| selector::matches(&selector, orphan.labels()).unwrap_or(false));
                if matches && self.handles(&parent) {
                    keys.push(ObjectKey::of(&parent));
                }
            }
        }
        keys
    }

    /// Every parent this controller handles.
    pub(crate) fn all_keys(&self) -> Vec<ObjectKey> {
        self.parents.keys_where(|parent| self.handles(parent) || parent.finalizers().contains(&self.finalizer()))
    }

    /// Resolves the CompositeController's types and hooks: the hosted controller, and the
    /// runtime controller its workers run on (not started yet).
    pub(crate) async fn build(
        ctx: Arc<EngineContext>,
        controller: &CompositeController,
    ) -> Result<(Arc<HostedComposite>, Controller<ObjectKey>), CreateError> {
        let spec = controller.spec.clone();
        let rule = &spec.parent_resource;
        let parent = ctx.discovery.resolve(rule.api_version(), rule.resource()).await?;
        if !parent.has_status {
            return Err(CreateError::NoStatusSubresource { api_version: rule.api_version.clone(), resource: rule.resource.clone() });
        }
        let mut children = Vec::new();
        for rule in spec.child_resources.iter().flatten() {
            let resolved = ctx.discovery.resolve(rule.api_version(), rule.resource()).await?;
            children.push(ChildType {
                group_key: group_key(&resolved.resource.kind, &rule.api_version),
                cache: ctx.owned.cache(&resolved.resource),
                resource: resolved.resource,
                namespaced: resolved.namespaced,
                method: rule.method(),
            });
        }
        let revisions = if children.iter().any(|child_type| child_type.method.is_rolling()) {
            let resolved = ctx.discovery.resolve(&format!("{}/{}", crate::api::GROUP, crate::api::VERSION), "controllerrevisions").await?;
            Some(ChildType {
                group_key: group_key(&resolved.resource.kind, &resolved.resource.api_version),
                cache: ctx.owned.cache(&resolved.resource),
                resource: resolved.resource,
                namespaced: true,
                method: ChildUpdateMethod::OnDelete,
            })
        } else {
            None
        };
        let rolling = super::rolling::Rolling::of(&spec, parent.namespaced, &children, revisions)
            .map_err(|error| CreateError::Invalid(error.to_string()))?;
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
        let controller = crate::hosting::hosted_controller(&ctx, "CompositeController", &name, controller, spec.resync_period_seconds);
        let parents = ctx.owned.cache(&parent.resource);
        if spec.generate_selector == Some(true) {
            parents.add_index(GENERATED_SELECTOR_INDEX, |parent| {
                let uid = parent.uid().unwrap_or_default();
                vec![format!("{}/controller-uid={uid}", parent.namespace().unwrap_or_default())]
            });
        } else {
            parents.add_index(SELECTOR_INDEX, selector_index_values);
        }
        let _sharded = ctx.shard.as_ref().map(|shard| {
            let owned = children.iter().chain(rolling.as_ref().map(|rolling| rolling.revision_type())).map(|child| child.resource.clone());
            // Only the parents it handles are assigned to shards and moved between them.
            let selection = Selection { labels: spec.parent_resource.label_selector.clone(), annotations: None };
            shard.types().register(parent.resource.clone(), selection, owned.collect())
        });
        let hosted = Arc::new(HostedComposite {
            _sharded,
            parents,
            related: crate::related::Related::new(ctx.clone(), customize_hook, controller_json.clone(), controller.queue()),
            name,
            ctx,
            controller_json,
            spec: spec.clone(),
            parent,
            children,
            sync_hook,
            finalize_hook,
            rolling,
        });
        Ok((hosted, controller))
    }

    /// Waits until the caches of the parents, children and revisions have listed them.
    pub(crate) async fn wait_synced(&self) {
        self.parents.wait_synced().await;
        for child_type in self.children.iter().chain(self.rolling.as_ref().map(|rolling| rolling.revision_type())) {
            child_type.cache.wait_synced().await;
        }
    }

    /// The key under which `parent` is synced, or why this controller does not sync it.
    pub(crate) fn key_of(&self, parent: &DynamicObject) -> Result<ObjectKey, String> {
        let kind = parent.types.as_ref().map(|types| types.kind.as_str()).unwrap_or_default();
        let resource = &self.parent.resource;
        if kind != resource.kind || parent.types.as_ref().is_some_and(|types| types.api_version != resource.api_version) {
            return Err(format!("CompositeController {} syncs {} ({}), not {kind}", self.name, resource.plural, resource.api_version));
        }
        Ok(ObjectKey::of(parent))
    }
}

/// A running hosted controller; stopped when dropped.
pub(crate) struct RunningComposite {
    /// The spec it runs, to tell whether a change needs a restart.
    pub spec: CompositeControllerSpec,
    tasks: Tasks,
}

impl RunningComposite {
    /// Stops taking work and waits for the syncs in flight to finish.
    pub(crate) async fn stop_gracefully(self) {
        self.tasks.stop_gracefully().await
    }

    /// Resolves the CompositeController's types and hooks and starts its workers.
    pub(crate) async fn start(ctx: Arc<EngineContext>, controller: &CompositeController) -> Result<RunningComposite, CreateError> {
        let (hosted, controller) = HostedComposite::build(ctx, controller).await?;
        let spec = hosted.spec.clone();

        // The watches hold the hosted controller weakly: it lives as long as its workers.
        let weak = Arc::downgrade(&hosted);
        let mut controller = controller.watches(hosted.parents.clone(), {
            let weak = weak.clone();
            move |event| weak.upgrade().map(|hosted| hosted.parent_keys(event)).unwrap_or_default()
        });
        for index in 0..hosted.children.len() {
            let weak = weak.clone();
            controller = controller.watches(hosted.children[index].cache.clone(), move |event| {
                weak.upgrade().map(|hosted| hosted.child_keys(&hosted.children[index], event)).unwrap_or_default()
            });
        }
        if let Some(rolling) = &hosted.rolling {
            // A revision changed by someone else is put right by its parent's next sync.
            let weak = weak.clone();
            controller = controller.watches(rolling.revision_type().cache.clone(), move |event| {
                let object = match event {
                    CacheEvent::Applied { new, .. } => *new,
                    CacheEvent::Deleted(object) => *object,
                };
                weak.upgrade().and_then(|hosted| hosted.owner_key(object)).into_iter().collect()
            });
        }
        let controller = controller.reconciles_all(move || weak.upgrade().map(|hosted| hosted.all_keys()).unwrap_or_default());
        let tasks = Tasks::start(controller, {
            let hosted = hosted.clone();
            move |key| {
                let hosted = hosted.clone();
                async move { crate::reconcile::process(&*hosted, key).await }
            }
        });
        Ok(RunningComposite { spec, tasks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(selector: Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "x/v1", "kind": "Thing", "metadata": { "name": "p", "namespace": "ns" }, "spec": { "selector": selector },
        }))
        .unwrap()
    }

    #[test]
    fn the_selector_index_files_a_parent_under_the_labels_a_child_must_carry() {
        let labels = parent(serde_json::json!({ "matchLabels": { "app": "web", "tier": "db" } }));
        assert_eq!(selector_index_values(&labels), ["ns/app=web", "ns/tier=db"]);
        let within = parent(serde_json::json!({ "matchExpressions": [{ "key": "app", "operator": "In", "values": ["a", "b"] }] }));
        assert_eq!(selector_index_values(&within), ["ns/app=a", "ns/app=b"]);
        let exists = parent(serde_json::json!({ "matchExpressions": [{ "key": "app", "operator": "Exists" }] }));
        assert_eq!(selector_index_values(&exists), ["ns/*"]);
        assert!(selector_index_values(&parent(serde_json::json!({}))).is_empty(), "an empty selector adopts nothing");
    }
}
