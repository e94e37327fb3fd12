//! CompositeController: a parent resource whose children a sync hook declares. Each
//! CompositeController object runs as a hosted controller, built and started by [`start`],
//! whose [`policy`] says how its parents are synced, rolling children one at a time where
//! asked ([`rolling`]); [`crate::hosting`] starts, restarts and stops them.

pub(crate) mod policy;
pub(crate) mod rolling;
pub(crate) mod start;

use std::sync::Arc;

pub(crate) use policy::finalizer_name;
pub(crate) use start::RunningComposite;

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
