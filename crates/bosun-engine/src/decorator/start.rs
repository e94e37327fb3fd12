//! Starting a hosted DecoratorController: resolving its target and attachment types and its
//! hooks into a [`HostedDecorator`], subscribing to their shared caches so that every change
//! queues the targets it concerns, and running its workers until it is stopped.

use std::sync::Arc;

use bosun_runtime::Controller;
use bosun_runtime::sharding::Selection;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use super::policy::{DecoratorPolicy, HostedDecorator, TargetKey, TargetSelection, finalizer_name};
use crate::api::{ChildUpdateMethod, DecoratorController, DecoratorControllerSpec};
use crate::children::{ChildType, Tie};
use crate::context::EngineContext;
use crate::hosting::{CreateError, Tasks};
use crate::identity::Identity;
use crate::reconcile::{Hosted, ObjectType};

/// Resolves the DecoratorController's types and hooks: the hosted controller, and the runtime
/// controller its workers run on (not started yet).
pub(crate) async fn build(
    ctx: Arc<EngineContext>,
    controller: &DecoratorController,
) -> Result<(Arc<HostedDecorator>, Controller<TargetKey>), CreateError> {
    let spec = &controller.spec;
    let name = controller.name_any();
    if controller.annotations().contains_key(crate::children::anywhere::CHILDREN_ANYWHERE_ANNOTATION) {
        return Err(CreateError::Invalid(format!(
            "annotation {} is for CompositeControllers; a DecoratorController's attachments live beside its targets",
            crate::children::anywhere::CHILDREN_ANYWHERE_ANNOTATION
        )));
    }
    if spec.resources.is_empty() {
        return Err(CreateError::Invalid("spec.resources is empty: name at least one target resource".into()));
    }
    let (mut targets, mut selections) = (Vec::new(), Vec::new());
    for rule in &spec.resources {
        let resolved = ctx.resolve(&rule.api_version, &rule.resource, "target resource").await?;
        let annotations = rule.annotation_selector.as_ref().map(|selector| LabelSelector {
            match_labels: selector.match_annotations.clone(),
            match_expressions: selector.match_expressions.clone(),
        });
        targets.push(ObjectType { cache: ctx.owned.cache(&resolved.resource), resolved });
        selections.push(TargetSelection {
            labels: rule.label_selector.clone(),
            annotations,
            ignore_status_changes: rule.ignore_status_changes == Some(true),
        });
    }
    let mut attachments = Vec::new();
    for rule in spec.attachments.iter().flatten() {
        let resolved = ctx.resolve(&rule.api_version, &rule.resource, "attachment resource").await?;
        // Decorators accept the rolling methods but, as in Metacontroller, roll nothing.
        let method = match rule.update_strategy.as_ref().and_then(|strategy| strategy.method).unwrap_or_default() {
            ChildUpdateMethod::RollingRecreate => ChildUpdateMethod::Recreate,
            ChildUpdateMethod::RollingInPlace => ChildUpdateMethod::InPlace,
            method => method,
        };
        attachments.push(ChildType::of(resolved, &rule.api_version, method, Tie::Owner, &ctx.owned));
    }
    let hooks = {
        let declared = spec.hooks.as_ref().map(|hooks| [&hooks.sync, &hooks.finalize, &hooks.customize]);
        crate::hosting::Hooks::of(&ctx, "DecoratorController", &name, declared, spec.endpoint_configs.as_deref())?
    };
    let identity = Identity::of(&ctx, controller.annotations()).map_err(|error| CreateError::Invalid(error.to_string()))?;
    let controller_json = crate::hosting::controller_json(controller);
    let controller = crate::hosting::hosted_controller(&ctx, "DecoratorController", &name, controller, spec.resync_period_seconds);
    let attachment_types: Vec<_> = attachments.iter().map(|attachment| attachment.resource.clone()).collect();
    let sharded = ctx
        .shard
        .iter()
        .flat_map(|shard| {
            targets.iter().zip(&selections).map(|(target, selection)| {
                // Only the targets it selects are assigned to shards and moved between them.
                let selection = Selection { labels: selection.labels.clone(), annotations: selection.annotations.clone() };
                shard.types().register(target.resolved.resource.clone(), selection, attachment_types.clone())
            })
        })
        .collect();
    let hosted = Arc::new(Hosted {
        _sharded: sharded,
        related: crate::related::Related::new(ctx.clone(), hooks.customize, controller_json.clone(), controller.queue()),
        controller_json,
        finalizer: finalizer_name(&name),
        identity,
        name,
        objects: targets,
        child_types: attachments,
        sync_hook: hooks.sync,
        finalize_hook: hooks.finalize,
        policy: DecoratorPolicy { selections },
        ctx,
    });
    Ok((hosted, controller))
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
        let (hosted, controller) = build(ctx, controller).await?;

        // The watches hold the hosted controller weakly: it lives as long as its workers.
        let weak = Arc::downgrade(&hosted);
        let mut controller = controller;
        for (rule, target) in hosted.objects.iter().enumerate() {
            let weak = weak.clone();
            controller = controller.watches(target.cache.clone(), move |event| {
                weak.upgrade().map(|hosted| hosted.target_keys(rule, event)).unwrap_or_default()
            });
        }
        for index in 0..hosted.child_types.len() {
            let weak = weak.clone();
            controller = controller.watches(hosted.child_types[index].cache.clone(), move |event| {
                weak.upgrade().map(|hosted| hosted.attachment_keys(&hosted.child_types[index], event)).unwrap_or_default()
            });
        }
        let controller = controller.reconciles_all(move || weak.upgrade().map(|hosted| hosted.all_keys()).unwrap_or_default());
        let tasks = Tasks::start(controller, hosted);
        Ok(RunningDecorator { spec, tasks })
    }
}
