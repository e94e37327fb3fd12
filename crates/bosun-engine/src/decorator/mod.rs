//! DecoratorController: adds labels, annotations, status and attachments to existing objects
//! of any kind. Each DecoratorController object runs as a hosted controller, built and started
//! by [`start`], whose [`policy`] says how its targets are synced; [`crate::hosting`] starts,
//! restarts and stops them.

pub(crate) mod policy;
pub(crate) mod start;

use std::sync::Arc;

pub(crate) use policy::finalizer_name;
pub(crate) use start::RunningDecorator;

use crate::api::{DecoratorController, DecoratorControllerSpec};
use crate::context::EngineContext;
use crate::hosting::{CreateError, HostedKind};

/// DecoratorControllers, as the engine hosts them.
pub(crate) struct Decorator;

impl HostedKind for Decorator {
    type Object = DecoratorController;
    type Spec = DecoratorControllerSpec;
    type Running = RunningDecorator;
    const KIND: &'static str = "DecoratorController";
    const NAME: &'static str = "decoratorcontrollers";

    fn spec(object: &DecoratorController) -> &DecoratorControllerSpec {
        &object.spec
    }

    fn running_spec(running: &RunningDecorator) -> &DecoratorControllerSpec {
        &running.spec
    }

    async fn start(ctx: Arc<EngineContext>, object: &DecoratorController) -> Result<RunningDecorator, CreateError> {
        RunningDecorator::start(ctx, object).await
    }

    async fn stop_gracefully(running: RunningDecorator) {
        running.stop_gracefully().await
    }

    /// Only a DecoratorController with a finalize hook puts its finalizer on targets.
    async fn release(ctx: &EngineContext, name: &str, spec: &DecoratorControllerSpec) -> bool {
        if spec.hooks.as_ref().and_then(|hooks| hooks.finalize.as_ref()).is_none() {
            return true;
        }
        let rules: Vec<(&str, &str)> = spec.resources.iter().map(|rule| (rule.api_version.as_str(), rule.resource.as_str())).collect();
        crate::hosting::release_finalizer(ctx, name, &finalizer_name(name), &rules).await
    }
}
