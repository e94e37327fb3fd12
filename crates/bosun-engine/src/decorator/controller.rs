//! A hosted DecoratorController: resolves its target and attachment types, subscribes to their
//! shared caches, maps every change to the targets it concerns, and runs workers over a queue
//! of target keys.

use std::sync::Arc;

use bosun_runtime::sharding::Selection;
use bosun_runtime::{CacheEvent, Controller, ObjectKey};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::Value;

use super::sync::{DECORATOR_ANNOTATION, finalizer_name};
use crate::api::{ChildUpdateMethod, DecoratorController, DecoratorControllerSpec};
use crate::children::ChildType;
use crate::context::EngineContext;
use crate::discovery::ResolvedResource;
use crate::hooks::{HookEndpoint, HookKind, group_key};
use crate::hosting::{CreateError, Tasks};
use crate::selector;

/// One of a DecoratorController's `resources`: a target type and which of its objects match.
pub(crate) struct TargetType {
    /// The resource.
    pub resolved: ResolvedResource,
    /// Every object of the type.
    pub cache: Arc<bosun_runtime::Cache>,
    /// `labelSelector`; absent: every object.
    pub labels: Option<LabelSelector>,
    /// `annotationSelector`, as a label selector over annotations; absent: every object.
    pub annotations: Option<LabelSelector>,
    /// `ignoreStatusChanges`.
    pub ignore_status_changes: bool,
}

impl TargetType {
    /// Whether `object` matches both selectors.
    pub(crate) fn matches(&self, object: &DynamicObject) -> bool {
        let satisfies = |selector: &Option<LabelSelector>, map| {
            selector.as_ref().is_none_or(|selector| selector::matches(selector, map).unwrap_or(false))
        };
        satisfies(&self.labels, object.labels()) && satisfies(&self.annotations, object.annotations())
    }
}

/// Identifies a target: which resource rule, and the object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TargetKey {
    /// Index into the DecoratorController's `resources`.
    pub rule: usize,
    /// The object.
    pub key: ObjectKey,
}

impl std::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "resources[{}] {}", self.rule, self.key)
    }
}

/// Everything a sync of one target needs, shared by the workers.
pub(crate) struct HostedDecorator {
    /// The engine's shared parts.
    pub ctx: Arc<EngineContext>,
    /// The DecoratorController's name.
    pub name: String,
    /// It, as JSON for hook requests.
    pub controller_json: Value,
    /// The target types, in spec order.
    pub targets: Vec<TargetType>,
    /// The attachment types, in spec order.
    pub attachments: Vec<ChildType>,
    /// The sync hook, if any.
    pub sync_hook: Option<HookEndpoint>,
    /// The finalize hook, if any.
    pub finalize_hook: Option<HookEndpoint>,
    /// Related objects, from the customize hook.
    pub related: Arc<crate::related::Related<TargetKey>>,
    /// Tells the ring's coordinator about the target types, when sharded.
    _sharded: Vec<bosun_runtime::sharding::Registration>,
}

impl HostedDecorator {
    /// `metacontroller.io/decoratorcontroller-<name>`.
    pub(crate) fn finalizer(&self) -> String {
        finalizer_name(&self.name)
    }

    /// Whether this controller reconciles `object` of rule `rule`: it matches, or still
    /// carries our finalizer.
    fn ours(&self, rule: usize, object: &DynamicObject) -> bool {
        self.targets[rule].matches(object) || object.finalizers().contains(&self.finalizer())
    }

    /// The target a change of rule `rule`'s objects concerns, if it is ours (before or after).
    fn target_keys(&self, rule: usize, event: &CacheEvent<'_>) -> Vec<TargetKey> {
        let CacheEvent::Applied { old, new } = event else { return Vec::new() };
        if self.targets[rule].ignore_status_changes && old.is_some_and(|old| crate::parent::only_status_changed(old, new)) {
            return Vec::new();
        }
        if self.ours(rule, new) || old.is_some_and(|old| self.ours(rule, old)) {
            vec![TargetKey { rule, key: ObjectKey::of(new) }]
        } else {
            Vec::new()
        }
    }

    /// An attachment changed: the target that controls it, if it is one of ours.
    fn attachment_keys(&self, attachment_type: &ChildType, event: &CacheEvent<'_>) -> Vec<TargetKey> {
        let (old, new) = match event {
            CacheEvent::Applied { old, new } => (*old, Some(*new)),
            CacheEvent::Deleted(object) => {
                self.ctx.applier.forget(attachment_type, object);
                (Some(*object), None)
            }
        };
        let mut keys = Vec::new();
        for attachment in old.into_iter().chain(new) {
            if attachment.annotations().get(DECORATOR_ANNOTATION) != Some(&self.name) {
                continue;
            }
            let Some(owner) = attachment.owner_references().iter().find(|owner| owner.controller == Some(true)) else { continue };
            let group = owner.api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or_default();
            for (rule, target) in self.targets.iter().enumerate() {
                let resource = &target.resolved.resource;
                if resource.kind == owner.kind && resource.group == group {
                    let namespace = if target.resolved.namespaced { attachment.namespace() } else { None };
                    keys.push(TargetKey { rule, key: ObjectKey { namespace, name: owner.name.clone() } });
                }
            }
        }
        keys
    }

    /// Resolves the DecoratorController's types and hooks: the hosted controller, and the
    /// runtime controller its workers run on (not started yet).
    pub(crate) async fn build(
        ctx: Arc<EngineContext>,
        controller: &DecoratorController,
    ) -> Result<(Arc<HostedDecorator>, Controller<TargetKey>), CreateError> {
        let spec = &controller.spec;
        let name = controller.name_any();
        if spec.resources.is_empty() {
            return Err(CreateError::Invalid("spec.resources is empty: name at least one target resource".into()));
        }
        let mut targets = Vec::new();
        for rule in &spec.resources {
            let resolved = ctx.discovery.resolve(&rule.api_version, &rule.resource).await?;
            let annotations = rule.annotation_selector.as_ref().map(|selector| LabelSelector {
                match_labels: selector.match_annotations.clone(),
                match_expressions: selector.match_expressions.clone(),
            });
            targets.push(TargetType {
                cache: ctx.owned.cache(&resolved.resource),
                resolved,
                labels: rule.label_selector.clone(),
                annotations,
                ignore_status_changes: rule.ignore_status_changes == Some(true),
            });
        }
        let mut attachments = Vec::new();
        for rule in spec.attachments.iter().flatten() {
            let resolved = ctx.discovery.resolve(&rule.api_version, &rule.resource).await?;
            // Decorators accept the rolling methods but, as in Metacontroller, roll nothing.
            let method = match rule.update_strategy.as_ref().and_then(|strategy| strategy.method).unwrap_or_default() {
                ChildUpdateMethod::RollingRecreate => ChildUpdateMethod::Recreate,
                ChildUpdateMethod::RollingInPlace => ChildUpdateMethod::InPlace,
                method => method,
            };
            attachments.push(ChildType {
                group_key: group_key(&resolved.resource.kind, &rule.api_version),
                cache: ctx.owned.cache(&resolved.resource),
                resource: resolved.resource,
                namespaced: resolved.namespaced,
                method,
            });
        }
        let hooks = spec.hooks.clone().ok_or_else(|| CreateError::Invalid("no hooks defined".into()))?;
        let configs = spec.endpoint_configs.as_deref().unwrap_or_default();
        let endpoint = |kind, hook: &Option<crate::api::Hook>| {
            crate::hosting::hook_endpoint(&ctx, kind, hook.as_ref(), ("DecoratorController", &name), configs)
        };
        let sync_hook = endpoint(HookKind::Sync, &hooks.sync)?;
        let finalize_hook = endpoint(HookKind::Finalize, &hooks.finalize)?;
        if sync_hook.is_none() && finalize_hook.is_none() {
            return Err(CreateError::Invalid("no sync or finalize hook defined".into()));
        }
        let customize_hook = endpoint(HookKind::Customize, &hooks.customize)?;
        let controller_json = crate::hosting::controller_json(controller);
        let controller = crate::hosting::hosted_controller(&ctx, "DecoratorController", &name, controller, spec.resync_period_seconds);
        let attachment_types: Vec<_> = attachments.iter().map(|attachment| attachment.resource.clone()).collect();
        let _sharded = ctx
            .shard
            .iter()
            .flat_map(|shard| {
                targets.iter().map(|target| {
                    // Only the targets it selects are assigned to shards and moved between them.
                    let selection = Selection { labels: target.labels.clone(), annotations: target.annotations.clone() };
                    shard.types().register(target.resolved.resource.clone(), selection, attachment_types.clone())
                })
            })
            .collect();
        let decorated = Arc::new(HostedDecorator {
            _sharded,
            related: crate::related::Related::new(ctx.clone(), customize_hook, controller_json.clone(), controller.queue()),
            controller_json,
            name,
            targets,
            attachments,
            sync_hook,
            finalize_hook,
            ctx,
        });
        Ok((decorated, controller))
    }

    /// Waits until the caches of the targets and attachments have listed them.
    pub(crate) async fn wait_synced(&self) {
        for cache in self.targets.iter().map(|target| &target.cache).chain(self.attachments.iter().map(|attachment| &attachment.cache)) {
            cache.wait_synced().await;
        }
    }

    /// The key under which `target` is synced, or why this controller does not sync it.
    pub(crate) fn key_of(&self, target: &DynamicObject) -> Result<TargetKey, String> {
        let types = target.types.clone().unwrap_or_default();
        let rule = self.targets.iter().position(|candidate| {
            candidate.resolved.resource.kind == types.kind && candidate.resolved.resource.api_version == types.api_version
        });
        match rule {
            Some(rule) => Ok(TargetKey { rule, key: ObjectKey::of(target) }),
            None => Err(format!("DecoratorController {} decorates none of {} ({})", self.name, types.kind, types.api_version)),
        }
    }

    /// Every target this controller reconciles.
    fn all_keys(&self) -> Vec<TargetKey> {
        let mut keys = Vec::new();
        for (rule, target) in self.targets.iter().enumerate() {
            keys.extend(target.cache.keys_where(|object| self.ours(rule, object)).into_iter().map(|key| TargetKey { rule, key }));
        }
        keys
    }
}

/// A running hosted DecoratorController; stopped when dropped.
pub(crate) struct RunningDecorator {
    /// The spec it runs.
    pub spec: DecoratorControllerSpec,
    tasks: Tasks,
}

impl RunningDecorator {
    /// Stops taking work and waits for the syncs in flight to finish.
    pub(crate) async fn stop_gracefully(self) {
        self.tasks.stop_gracefully().await
    }

    /// Resolves the DecoratorController's types and hooks and starts its workers.
    pub(crate) async fn start(ctx: Arc<EngineContext>, controller: &DecoratorController) -> Result<RunningDecorator, CreateError> {
        let spec = controller.spec.clone();
        let (decorated, controller) = HostedDecorator::build(ctx, controller).await?;

        // The watches hold the decorator weakly: it lives as long as its workers.
        let weak = Arc::downgrade(&decorated);
        let mut controller = controller;
        for (rule, target) in decorated.targets.iter().enumerate() {
            let weak = weak.clone();
            controller = controller.watches(target.cache.clone(), move |event| {
                weak.upgrade().map(|decorated| decorated.target_keys(rule, event)).unwrap_or_default()
            });
        }
        for index in 0..decorated.attachments.len() {
            let weak = weak.clone();
            controller = controller.watches(decorated.attachments[index].cache.clone(), move |event| {
                weak.upgrade().map(|decorated| decorated.attachment_keys(&decorated.attachments[index], event)).unwrap_or_default()
            });
        }
        let controller = controller.reconciles_all(move || weak.upgrade().map(|decorated| decorated.all_keys()).unwrap_or_default());
        let tasks = Tasks::start(controller, {
            let decorated = decorated.clone();
            move |key| {
                let decorated = decorated.clone();
                async move { crate::reconcile::process(&*decorated, key).await }
            }
        });
        Ok(RunningDecorator { spec, tasks })
    }
}
