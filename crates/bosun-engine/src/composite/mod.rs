//! CompositeController: a parent resource whose children a sync hook declares. Each
//! CompositeController object runs as a hosted controller ([`controller`]) that syncs its
//! parents ([`sync`]), rolling children one at a time where asked ([`rolling`]);
//! [`crate::hosting`] starts, restarts and stops them.

pub(crate) mod controller;
pub(crate) mod rolling;
mod sync;

use std::sync::Arc;

pub(crate) use controller::RunningComposite;
pub(crate) use sync::finalizer_name;

use crate::api::{CompositeController, CompositeControllerSpec};
use crate::context::EngineContext;
use crate::hosting::{CreateError, HostedKind};

/// CompositeControllers, as the engine hosts them.
pub(crate) struct Composite;

impl HostedKind for Composite {
    type Object = CompositeController;
    type Spec = CompositeControllerSpec;
    type Running = RunningComposite;
    const KIND: &'static str = "CompositeController";
    const NAME: &'static str = "compositecontrollers";

    fn spec(object: &CompositeController) -> &CompositeControllerSpec {
        &object.spec
    }

    fn running_spec(running: &RunningComposite) -> &CompositeControllerSpec {
        &running.spec
    }

    async fn start(ctx: Arc<EngineContext>, object: &CompositeController) -> Result<RunningComposite, CreateError> {
        RunningComposite::start(ctx, object).await
    }

    async fn stop_gracefully(running: RunningComposite) {
        running.stop_gracefully().await
    }

    /// Only a CompositeController with a finalize hook puts its finalizer on parents.
    async fn release(ctx: &EngineContext, name: &str, spec: &CompositeControllerSpec) -> bool {
        if spec.hooks.as_ref().and_then(|hooks| hooks.finalize.as_ref()).is_none() {
            return true;
        }
        let rule = &spec.parent_resource;
        crate::hosting::release_finalizer(ctx, name, &finalizer_name(name), &[(&rule.api_version, &rule.resource)]).await
    }
}
