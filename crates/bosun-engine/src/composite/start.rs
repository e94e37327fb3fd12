//! Starting a hosted CompositeController: resolving its parent and child types and its hooks
//! into a [`HostedComposite`], subscribing to their shared caches so that every change queues
//! the parents it concerns, and running its workers until it is stopped.

use std::sync::Arc;

use bosun_runtime::sharding::Selection;
use bosun_runtime::{CacheEvent, Controller, ObjectKey};
use kube::ResourceExt;

use super::policy::{CompositePolicy, HostedComposite, finalizer_name};
use super::rolling::Rolling;
use crate::api::{ChildUpdateMethod, CompositeController, CompositeControllerSpec, ResourceRule};
use crate::children::{ChildType, Tie};
use crate::context::EngineContext;
use crate::hosting::{CreateError, Tasks};
use crate::identity::Identity;
use crate::reconcile::{Hosted, ObjectType};

/// Resolves the CompositeController's types and hooks: the hosted controller, and the runtime
/// controller its workers run on (not started yet).
pub(crate) async fn build(
    ctx: Arc<EngineContext>,
    controller: &CompositeController,
) -> Result<(Arc<HostedComposite>, Controller<ObjectKey>), CreateError> {
    let spec = controller.spec.clone();
    let rule = &spec.parent_resource;
    let parent = ctx.resolve(rule.api_version(), rule.resource(), "parent resource").await?;
    if !parent.has_status {
        return Err(CreateError::NoStatusSubresource { api_version: rule.api_version.clone(), resource: rule.resource.clone() });
    }
    let declared: Vec<(&str, &str)> = spec.child_resources.iter().flatten().map(|rule| (rule.api_version(), rule.resource())).collect();
    let ties = crate::children::anywhere::ties(controller.annotations(), &declared).map_err(CreateError::Invalid)?;
    let mut children = Vec::new();
    for (rule, tie) in spec.child_resources.iter().flatten().zip(ties) {
        let resolved = ctx.resolve(rule.api_version(), rule.resource(), "child resource").await?;
        children.push(ChildType::of(resolved, &rule.api_version, rule.method(), tie, &ctx.owned));
    }
    let revisions = if children.iter().any(|child_type| child_type.method.is_rolling()) {
        let api_version = format!("{}/{}", crate::api::GROUP, crate::api::VERSION);
        let resolved = ctx.resolve(&api_version, "controllerrevisions", "revision resource").await?;
        let api_version = resolved.resource.api_version.clone();
        Some(ChildType::of(resolved, &api_version, ChildUpdateMethod::OnDelete, Tie::Owner, &ctx.owned))
    } else {
        None
    };
    let rolling = Rolling::of(&spec, parent.namespaced, &children, revisions).map_err(|error| CreateError::Invalid(error.to_string()))?;
    let name = controller.name_any();
    let hooks = {
        let declared = spec.hooks.as_ref().map(|hooks| [&hooks.sync, &hooks.finalize, &hooks.customize]);
        crate::hosting::Hooks::of(&ctx, "CompositeController", &name, declared, spec.endpoint_configs.as_deref())?
    };
    let identity = Identity::of(&ctx, controller.annotations()).map_err(|error| CreateError::Invalid(error.to_string()))?;
    let controller_json = crate::hosting::controller_json(controller);
    let controller = crate::hosting::hosted_controller(&ctx, "CompositeController", &name, controller, spec.resync_period_seconds);
    let sharded = ctx.shard.iter().map(|shard| {
        let owned = children.iter().chain(rolling.as_ref().map(Rolling::revision_type)).map(|child| child.resource.clone());
        // Only the parents it handles are assigned to shards and moved between them.
        let selection = Selection { labels: spec.parent_resource.label_selector.clone(), annotations: None };
        shard.types().register(parent.resource.clone(), selection, owned.collect())
    });
    let hosted = Arc::new(Hosted {
        _sharded: sharded.collect(),
        objects: vec![ObjectType { cache: ctx.owned.cache(&parent.resource), resolved: parent }],
        related: crate::related::Related::new(ctx.clone(), hooks.customize, controller_json.clone(), controller.queue()),
        finalizer: finalizer_name(&name),
        identity,
        name,
        ctx,
        controller_json,
        child_types: children,
        sync_hook: hooks.sync,
        finalize_hook: hooks.finalize,
        policy: CompositePolicy { spec, rolling },
    });
    hosted.add_selector_index();
    Ok((hosted, controller))
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
        let (hosted, controller) = build(ctx, controller).await?;
        let spec = hosted.policy.spec.clone();

        // The watches hold the hosted controller weakly: it lives as long as its workers.
        let weak = Arc::downgrade(&hosted);
        let mut controller = controller.watches(hosted.objects[0].cache.clone(), {
            let weak = weak.clone();
            move |event| weak.upgrade().map(|hosted| hosted.parent_keys(event)).unwrap_or_default()
        });
        for index in 0..hosted.child_types.len() {
            let weak = weak.clone();
            controller = controller.watches(hosted.child_types[index].cache.clone(), move |event| {
                weak.upgrade().map(|hosted| hosted.child_keys(&hosted.child_types[index], event)).unwrap_or_default()
            });
        }
        if let Some(rolling) = &hosted.policy.rolling {
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
        let tasks = Tasks::start(controller, hosted);
        Ok(RunningComposite { spec, tasks })
    }
}
