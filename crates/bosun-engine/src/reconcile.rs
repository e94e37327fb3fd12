//! One reconciler for both kinds of hosted controller. A sync of one object — a
//! CompositeController's parent or a DecoratorController's target — always goes the same way:
//! find it in the cache (or forget it), pick the hook through the finalizer state machine,
//! observe what it owns, gather its related objects, call the hook, validate the whole
//! response, and only then write: claims, the finalizer, owned objects, the object itself, the
//! hook's events. Nothing is written before the response has been validated as a whole, and
//! nothing that would not change, so a steady state costs no write.
//!
//! A [`Policy`] is what differs between the kinds: how objects are keyed and found, what they
//! own and how that is observed (a parent claims and adopts children by selector; a target
//! only sees attachments it controls), the request and response shapes, and what a response
//! writes on the object itself (a parent's status; a target's labels, annotations and status).

use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::Action;
use bosun_runtime::sharding::Admission;
use kube::api::{ApiResource, DynamicObject};
use kube::{Api, Resource, ResourceExt};
use serde_json::Value;

use crate::children::{self, ChildType, Rules};
use crate::context::EngineContext;
use crate::hooks::{self, HookEndpoint, HookResponse, ObjectMaps};
use crate::invalid_response::InvalidResponse;
use crate::parent::{controller_reference, hook_for, manages_children, object_api, patch_finalizer, related_maps, resync_after};
use crate::related::Related;
use crate::sync_error::SyncError;

/// The fields every sync and finalize response has, whatever the kind.
pub(crate) struct Common {
    /// `children` or `attachments`.
    pub children: Option<Vec<Value>>,
    /// `resyncAfterSeconds`.
    pub resync_after_seconds: Option<f64>,
    /// `finalized`.
    pub finalized: Option<bool>,
    /// `events` (bosun's extension).
    pub events: Option<Vec<Value>>,
}

/// A kind's hook response: the common fields, and the rest for [`Policy::update`].
pub(crate) trait SyncResponse: HookResponse + Send {
    /// What only this kind's response has.
    type Rest;
    /// Splits the response.
    fn split(self) -> (Common, Self::Rest);
}

/// What differs between syncing a parent and syncing a target.
pub(crate) trait Policy: Send + Sync {
    /// How objects are queued.
    type Key: Clone + Eq + std::hash::Hash + std::fmt::Display + Send + Sync + 'static;
    /// What the object owns, as observed before the hook is called.
    type Observed: Send + Sync;
    /// The hook response.
    type Response: SyncResponse;
    /// What a valid response writes on the object itself.
    type Update: Send;

    /// The engine's shared parts.
    fn ctx(&self) -> &EngineContext;
    /// The object's resource.
    fn resource(&self, key: &Self::Key) -> &ApiResource;
    /// The object, from the cache.
    fn cached(&self, key: &Self::Key) -> Option<Arc<DynamicObject>>;
    /// Forgets what is kept about an object that is gone.
    fn forget(&self, key: &Self::Key);
    /// Related objects, from the customize hook.
    fn related(&self) -> &Related<Self::Key>;
    /// This controller's finalizer.
    fn finalizer(&self) -> String;
    /// Whether this controller reconciles the object (else only its finalizer is released).
    fn handles(&self, key: &Self::Key, object: &DynamicObject) -> bool;
    /// The sync and finalize hooks.
    fn hooks(&self) -> (&Option<HookEndpoint>, &Option<HookEndpoint>);
    /// The types of what the object owns.
    fn child_types(&self) -> &[ChildType];
    /// Observes what the object owns; reads only.
    fn observe(&self, object: &DynamicObject) -> impl Future<Output = Result<Self::Observed, SyncError>> + Send;
    /// What the hook is shown of `observed`, per child type.
    fn shown<'a>(&self, observed: &'a Self::Observed) -> Vec<Vec<&'a DynamicObject>>;
    /// The request body.
    fn request(&self, object: &DynamicObject, children: ObjectMaps<'_>, related: ObjectMaps<'_>, finalizing: bool) -> Vec<u8>;
    /// What the declared children must satisfy.
    fn rules<'a>(&self, object: &DynamicObject, observed: &'a Self::Observed) -> Rules<'a>;
    /// Validates what the response writes on the object itself.
    fn update(&self, rest: <Self::Response as SyncResponse>::Rest) -> Result<Self::Update, InvalidResponse>;
    /// Makes the observation true (adopts and releases) once the response is valid; returns
    /// the owned objects per child type.
    fn settle(
        &self,
        object: &DynamicObject,
        observed: Self::Observed,
    ) -> impl Future<Output = Result<Vec<Vec<Arc<DynamicObject>>>, SyncError>> + Send;
    /// Calls the hook and validates its answer. The default asks once; a CompositeController
    /// with rolling updates asks once per revision and combines the answers (see
    /// [`crate::composite::rolling`]).
    fn respond(&self, ask: &Ask<'_, Self>) -> impl Future<Output = Result<Answer<Self::Update>, SyncError>> + Send
    where
        Self: Sized,
    {
        ask.once(ask.object)
    }
    /// Writes `update` on the object, if it changes anything.
    fn write(
        &self,
        key: &Self::Key,
        api: &Api<DynamicObject>,
        object: &DynamicObject,
        update: Self::Update,
    ) -> impl Future<Output = Result<(), SyncError>> + Send;
}

/// A hook's answer, validated as a whole.
pub(crate) struct Answer<U> {
    /// The children (or attachments) it declares, in the order it declared them.
    pub desired: Vec<children::desired::DesiredChild>,
    /// The events it asks for.
    pub events: Vec<hooks::HookEvent>,
    /// What it writes on the object itself.
    pub update: U,
    /// `resyncAfterSeconds`, bounded.
    pub resync_after: Option<Duration>,
    /// `finalized`.
    pub finalized: Option<bool>,
}

/// One sync's question to the hook: the object, what it owns and its related objects.
pub(crate) struct Ask<'a, P: Policy> {
    /// The policy asking.
    pub policy: &'a P,
    /// The object as cached.
    pub object: &'a DynamicObject,
    /// What it owns, as observed.
    pub observed: &'a P::Observed,
    related: &'a crate::related::RelatedObjects,
    hook: &'a HookEndpoint,
    /// Whether this is a finalize call.
    pub finalizing: bool,
}

impl<P: Policy> Ask<'_, P> {
    /// Calls the hook once with `object` (the cached object, or an older revision of it) and
    /// validates the answer; writes nothing.
    pub(crate) async fn once(&self, object: &DynamicObject) -> Result<Answer<P::Update>, SyncError> {
        let (policy, hook) = (self.policy, self.hook);
        let namespace = object.namespace();
        let mut children = ObjectMaps::new();
        for (child_type, objects) in policy.child_types().iter().zip(policy.shown(self.observed)) {
            hooks::insert_objects(&mut children, &child_type.group_key, hook.version, namespace.as_deref(), objects);
        }
        let body = policy.request(object, children, related_maps(self.related, hook.version, namespace.as_deref()), self.finalizing);
        let response: P::Response = policy.ctx().hooks.call(hook, body, object).await.map_err(SyncError::from_hook)?;
        let invalid = |source| SyncError::invalid_response(hook.kind.name(), source);
        let (common, rest) = response.split();
        let rules = policy.rules(object, self.observed);
        let mut desired =
            children::desired::validate(policy.child_types(), object, common.children.unwrap_or_default(), &rules).map_err(invalid)?;
        for child in &mut desired {
            policy.ctx().stamp(&mut child.object);
        }
        Ok(Answer {
            desired,
            events: hooks::hook_events(common.events).map_err(invalid)?,
            update: policy.update(rest).map_err(invalid)?,
            resync_after: resync_after(common.resync_after_seconds),
            finalized: common.finalized,
        })
    }
}

/// Syncs the object under `key`; returns when to sync it again (`resyncAfterSeconds`).
pub(crate) async fn sync<P: Policy>(policy: &P, key: &P::Key) -> Result<Option<Duration>, SyncError> {
    let Some(object) = policy.cached(key) else {
        policy.related().forget(key);
        policy.forget(key);
        return Ok(None);
    };
    // A sharded engine syncs an object only while it is this shard's, never while it is handed over.
    let _running = match &policy.ctx().shard {
        Some(shard) => match shard.admit(policy.resource(key), &object).await.map_err(SyncError::from_hand_over)? {
            Admission::Sync(running) => Some(running),
            Admission::Skip => return Ok(None),
            Admission::Elsewhere => return Ok(Some(bosun_runtime::sharding::ELSEWHERE_RETRY)),
        },
        None => None,
    };
    sync_object(policy, key, object).await
}

/// Syncs `object`, the object under `key` as cached (or, in a dry run, as given).
async fn sync_object<P: Policy>(policy: &P, key: &P::Key, mut object: Arc<DynamicObject>) -> Result<Option<Duration>, SyncError> {
    let (ctx, resource) = (policy.ctx(), policy.resource(key));
    let api = object_api(&ctx.client, resource, &object);
    let finalizer = policy.finalizer();
    let (sync_hook, finalize_hook) = policy.hooks();
    let handled = policy.handles(key, &object);
    let Some((hook, finalizing)) = hook_for(&api, &mut object, &finalizer, handled, sync_hook, finalize_hook).await? else {
        return Ok(None);
    };
    let has_finalizer = object.finalizers().contains(&finalizer);

    let observed = policy.observe(&object).await?;
    let related = policy.related().gather(key, &object).await?;
    let ask = Ask { policy, object: &object, observed: &observed, related: &related, hook, finalizing };
    let Answer { desired, events, update, resync_after, finalized } = policy.respond(&ask).await?;

    // The response is valid: only now is anything written (but a rolling update's revisions).
    let owned = policy.settle(&object, observed).await?;
    if finalizing
        && finalized == Some(true)
        && has_finalizer
        && let Some(written) = patch_finalizer(&api, &object, &finalizer, false).await?
    {
        object = Arc::new(written);
    }
    let children_result = if manages_children(&object, finalizing) {
        let owner = controller_reference(&object, resource);
        children::desired::manage(&ctx.client, &ctx.applier, policy.child_types(), &owner, &owned, desired)
            .await
            .map_err(SyncError::Children)
    } else {
        Ok(false)
    };
    // A child whose write lost a race does not have its desired state: nothing may say the
    // sync is done (no status, no hook events) until a sync moments later has written it.
    if matches!(children_result, Ok(true)) {
        return Err(SyncError::Conflict);
    }
    policy.write(key, &api, &object, update).await?;
    if !events.is_empty() {
        ctx.hook_events(&object.object_ref(resource), events).await;
    }
    children_result.map(|_| resync_after)
}

/// Syncs the object under `key`; the outcome as the runner takes it (see
/// [`crate::parent::settle`]).
pub(crate) async fn process<P: Policy>(policy: &P, key: P::Key) -> Result<Action, SyncError> {
    let outcome = sync(policy, &key).await;
    let object = if outcome.is_err() { policy.cached(&key) } else { None };
    crate::parent::settle(policy.ctx(), outcome, object.as_deref().map(|object| (object, policy.resource(&key)))).await
}

/// Syncs `object` under `key` as [`process`] does, its `SyncError` event included, for a dry
/// run (see [`crate::dry_run`]); the outcome as the work queue would take it.
pub(crate) async fn dry_sync<P: Policy>(policy: &P, key: P::Key, object: Arc<DynamicObject>) -> crate::dry_run::Outcome {
    use crate::dry_run::Outcome;
    let outcome = sync_object(policy, &key, object.clone()).await;
    match crate::parent::settle(policy.ctx(), outcome, Some((&object, policy.resource(&key)))).await {
        Ok(Action::Done) => Outcome::Done,
        Ok(Action::RequeueAfter(delay)) => Outcome::RequeueAfter(delay),
        Err(error) => Outcome::Failed(error.to_string()),
    }
}
