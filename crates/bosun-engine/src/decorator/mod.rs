//! DecoratorController: adds labels, annotations, status and attachments to existing objects
//! of any kind. Each DecoratorController object runs as a hosted controller ([`controller`])
//! that syncs its targets ([`sync`]); [`crate::hosting`] starts, restarts and stops them.

pub(crate) mod controller;
mod sync;

use std::sync::Arc;

pub(crate) use controller::RunningDecorator;
pub(crate) use sync::finalizer_name;

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
