//! One reconciler for both kinds of hosted controller. A sync of one object — a
//! CompositeController's parent or a DecoratorController's target — always goes the same way:
//! find it in the cache (or forget it), pick the hook through the finalizer state machine,
//! observe what it owns, gather its related objects, call the hook, validate the whole
//! response, and only then write: claims, the finalizer, owned objects, the object itself, the
//! hook's events. Nothing is written before the response has been validated as a whole, and
//! nothing that would not change, so a steady state costs no write.
//!
//! A [`Hosted`] controller holds what a sync needs — the engine's context, the object types and
//! their caches, the child types, the hooks, related objects, the finalizer — and its
//! [`Policy`] is only what differs between the kinds: which objects it handles, what they own
//! and how that is observed (a parent claims and adopts children by selector; a target
//! only sees attachments it controls), the request and response shapes, and what a response
//! writes on the object itself (a parent's status; a target's labels, annotations and status).

use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::sharding::Admission;
use bosun_runtime::{Action, Cache, ObjectKey};
use kube::api::{ApiResource, DynamicObject};
use kube::{Api, Resource, ResourceExt};
use serde_json::Value;

use crate::children::{self, ChildType, Rules, Tie, controller_reference};
use crate::context::EngineContext;
use crate::discovery::ResolvedResource;
use crate::finalizer::{Step, hook_for, manages_children};
use crate::guarded::object_api;
use crate::hooks::{self, HookEndpoint, HookResponse, ObjectMaps};
use crate::identity::{Identity, Permission};
use crate::invalid_response::InvalidResponse;
use crate::limits::resync_after;
use crate::related::{Related, related_maps};
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

/// How a hosted controller queues its objects: which of its object types (`rule`) and which
/// object of it.
pub(crate) trait HostedKey: Clone + Eq + std::hash::Hash + std::fmt::Display + Send + Sync + 'static {
    /// The index of the object's type in [`Hosted::objects`].
    fn rule(&self) -> usize;
    /// The object.
    fn object(&self) -> &ObjectKey;
}

/// A CompositeController has one parent type.
impl HostedKey for ObjectKey {
    fn rule(&self) -> usize {
        0
    }

    fn object(&self) -> &ObjectKey {
        self
    }
}

/// A type of the objects a hosted controller syncs (a parent type, a target type).
pub(crate) struct ObjectType {
    /// The resource.
    pub resolved: ResolvedResource,
    /// Every object of the type.
    pub cache: Arc<Cache>,
}

/// A hosted controller: everything a sync of one of its objects needs, shared by its workers
/// and owned by the reconciler; `policy` is what its kind adds.
pub(crate) struct Hosted<P: Policy> {
    /// The engine's shared parts.
    pub ctx: Arc<EngineContext>,
    /// The CompositeController's or DecoratorController's name.
    pub name: String,
    /// It, as JSON for hook requests.
    pub controller_json: Value,
    /// The finalizer it puts on its objects when it has a finalize hook.
    pub finalizer: String,
    /// Who its syncs write as: the engine, or the ServiceAccount the controller names.
    pub identity: Identity,
    /// The types of the objects it syncs: one parent type, or the decorator's target types.
    pub objects: Vec<ObjectType>,
    /// The types of what an object owns (children or attachments), in spec order.
    pub child_types: Vec<ChildType>,
    /// The sync hook, if any.
    pub sync_hook: Option<HookEndpoint>,
    /// The finalize hook, if any.
    pub finalize_hook: Option<HookEndpoint>,
    /// Related objects, from the customize hook.
    pub related: Arc<Related<P::Key>>,
    /// What the kind adds.
    pub policy: P,
    /// Tells the ring's coordinator about the object types, when sharded.
    pub _sharded: Vec<bosun_runtime::sharding::Registration>,
}

impl<P: Policy> Hosted<P> {
    /// The resource of the object under `key`.
    pub(crate) fn resource(&self, key: &P::Key) -> &ApiResource {
        &self.objects[key.rule()].resolved.resource
    }

    /// The object under `key`, from the cache.
    pub(crate) fn cached(&self, key: &P::Key) -> Option<Arc<DynamicObject>> {
        self.objects[key.rule()].cache.get(key.object())
    }

    /// Forgets what is kept about an object that is gone.
    fn forget(&self, key: &P::Key) {
        self.related.forget(key);
        self.ctx.hooks.forget(&self.resource(key).kind, key.object());
    }

    /// Waits until the caches of the objects and of what they own have listed them, and those
    /// of `more` types.
    pub(crate) async fn wait_listed(&self, more: &[&ChildType]) {
        let owned = self.child_types.iter().chain(more.iter().copied()).map(|child_type| &child_type.cache);
        for cache in self.objects.iter().map(|object_type| &object_type.cache).chain(owned) {
            cache.wait_synced().await;
        }
    }
}

/// What differs between syncing a parent and syncing a target: behaviour only; the state is
/// the [`Hosted`] controller's.
pub(crate) trait Policy: Send + Sync + Sized + 'static {
    /// How objects are queued.
    type Key: HostedKey;
    /// What the object owns, as observed before the hook is called.
    type Observed: Send + Sync;
    /// The hook response.
    type Response: SyncResponse;
    /// What a valid response writes on the object itself.
    type Update: Send;

    /// Whether this controller reconciles the object (else only its finalizer is released).
    fn handles(hosted: &Hosted<Self>, key: &Self::Key, object: &DynamicObject) -> bool;
    /// Observes what the object owns; reads only.
    fn observe(hosted: &Hosted<Self>, object: &DynamicObject) -> impl Future<Output = Result<Self::Observed, SyncError>> + Send;
    /// What the hook is shown of `observed`, per child type.
    fn shown(observed: &Self::Observed) -> Vec<Vec<&DynamicObject>>;
    /// The request body.
    fn request(
        hosted: &Hosted<Self>,
        object: &DynamicObject,
        children: ObjectMaps<'_>,
        related: ObjectMaps<'_>,
        finalizing: bool,
    ) -> Vec<u8>;
    /// What the declared children must satisfy.
    fn rules<'a>(hosted: &Hosted<Self>, object: &DynamicObject, observed: &'a Self::Observed) -> Rules<'a>;
    /// Validates what the response writes on the object itself.
    fn update(rest: <Self::Response as SyncResponse>::Rest) -> Result<Self::Update, InvalidResponse>;
    /// Makes the observation true (adopts and releases) once the response is valid, with the
    /// `desired` children it declares; returns the owned objects per child type.
    fn adopt(
        hosted: &Hosted<Self>,
        object: &DynamicObject,
        observed: Self::Observed,
        desired: &[children::desired::DesiredChild],
    ) -> impl Future<Output = Result<Vec<Vec<Arc<DynamicObject>>>, SyncError>> + Send;
    /// Calls the hook and validates its answer. The default asks once; a CompositeController
    /// with rolling updates asks once per revision and combines the answers (see
    /// `composite::rolling`).
    fn respond(ask: &Ask<'_, Self>) -> impl Future<Output = Result<Answer<Self::Update>, SyncError>> + Send {
        ask.once(ask.object)
    }
    /// Writes `update` on the object, if it changes anything.
    fn write(
        hosted: &Hosted<Self>,
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
    /// The controller asking.
    pub hosted: &'a Hosted<P>,
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
        let (hosted, hook) = (self.hosted, self.hook);
        let namespace = object.namespace();
        let mut children = ObjectMaps::new();
        for (child_type, objects) in hosted.child_types.iter().zip(P::shown(self.observed)) {
            let anywhere = child_type.tie == Tie::Label;
            hooks::insert_objects(&mut children, &child_type.group_key, hook.version, namespace.as_deref(), anywhere, objects);
        }
        let related = related_maps(self.related, hook.version, namespace.as_deref());
        let body = P::request(hosted, object, children, related, self.finalizing);
        let response: P::Response = hosted.ctx.hooks.call(hook, body, object).await.map_err(SyncError::from_hook)?;
        let invalid = |source| SyncError::invalid_response(hook.kind.name(), source);
        let (common, rest) = response.split();
        let rules = P::rules(hosted, object, self.observed);
        let mut desired = children::desired::validate(
            &hosted.child_types,
            object,
            common.children.unwrap_or_default(),
            &rules,
            hosted.ctx.caches.namespaces(),
        )
        .map_err(invalid)?;
        for child in &mut desired {
            hosted.ctx.stamp(&mut child.object);
        }
        Ok(Answer {
            desired,
            events: hooks::hook_events(common.events).map_err(invalid)?,
            update: P::update(rest).map_err(invalid)?,
            resync_after: resync_after(common.resync_after_seconds),
            finalized: common.finalized,
        })
    }
}

/// Syncs the object under `key`; returns when to sync it again (`resyncAfterSeconds`).
pub(crate) async fn sync<P: Policy>(hosted: &Hosted<P>, key: &P::Key) -> Result<Option<Duration>, SyncError> {
    let Some(object) = hosted.cached(key) else {
        hosted.forget(key);
        return Ok(None);
    };
    // A sharded engine syncs an object only while it is this shard's, never while it is handed over.
    let _running = match &hosted.ctx.shard {
        Some(shard) => match shard.admit(hosted.resource(key), &object).await.map_err(SyncError::from_hand_over)? {
            Admission::Sync(running) => Some(running),
            Admission::Skip => return Ok(None),
            Admission::Elsewhere => return Ok(Some(bosun_runtime::sharding::ELSEWHERE_RETRY)),
        },
        None => None,
    };
    sync_object(hosted, key, object).await
}

/// Syncs `object`, the object under `key` as cached (or, in a dry run, as given).
pub(crate) async fn sync_object<P: Policy>(
    hosted: &Hosted<P>,
    key: &P::Key,
    mut object: Arc<DynamicObject>,
) -> Result<Option<Duration>, SyncError> {
    let (ctx, resource, finalizer) = (&hosted.ctx, hosted.resource(key), &hosted.finalizer);
    let api = object_api(&hosted.identity.client, resource, &object);
    let handled = P::handles(hosted, key, &object);
    let cleans_up = hosted.child_types.iter().any(|child_type| child_type.tie == Tie::Label);
    let step = hook_for(&api, &mut object, finalizer, handled, &hosted.sync_hook, &hosted.finalize_hook, cleans_up).await?;
    let (hook, finalizing) = match step {
        None => return Ok(None),
        Some(Step::Call { hook, finalizing }) => (hook, finalizing),
        Some(Step::CleanUp) => {
            if delete_tied_by_label(hosted, &object).await? {
                crate::finalizer::remove(&api, &object, finalizer).await?;
            }
            return Ok(None);
        }
    };
    let has_finalizer = object.finalizers().contains(finalizer);

    let observed = P::observe(hosted, &object).await?;
    let related = hosted.related.gather(key, &object).await?;
    // The hook is shown only what the controller's identity may read.
    if hosted.identity.impersonates() {
        hosted.identity.check(reads(hosted, resource, &object, &P::shown(&observed), &related)).await?;
    }
    let ask = Ask { hosted, object: &object, observed: &observed, related: &related, hook, finalizing };
    let Answer { mut desired, events, update, resync_after, finalized } = P::respond(&ask).await?;
    let finalized = finalizing && finalized == Some(true) && has_finalizer;
    if finalized && cleans_up {
        // Done: what is tied by label goes now (below), whatever the last answer still lists.
        desired.retain(|child| hosted.child_types[child.child_type].tie == Tie::Owner);
    }

    // The response is valid; the controller's identity must be allowed every write it asks for.
    let owner = controller_reference(&object, resource);
    if hosted.identity.impersonates() && manages_children(&object, finalizing) {
        hosted.identity.check(child_writes(hosted, &owner, &P::shown(&observed), &desired)).await?;
    }

    // Only now is anything written (but a rolling update's revisions).
    let mut owned = P::adopt(hosted, &object, observed, &desired).await?;
    if finalized && cleans_up {
        let none_left = delete_tied_by_label(hosted, &object).await?;
        // Deleted just now: not again below.
        for (child_type, children) in hosted.child_types.iter().zip(&mut owned) {
            if child_type.tie == Tie::Label {
                children.clear();
            }
        }
        if !none_left {
            return Ok(None);
        }
    }
    if finalized && let Some(written) = crate::finalizer::remove(&api, &object, finalizer).await? {
        object = Arc::new(written);
    }
    let children_result = if manages_children(&object, finalizing) {
        children::desired::manage(&hosted.identity.client, &ctx.applier, &hosted.child_types, &owner, &owned, desired)
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
    P::write(hosted, key, &api, &object, update).await?;
    if !events.is_empty() {
        ctx.hook_events(hosted.identity.recorder.as_ref(), &object.object_ref(resource), events).await;
    }
    children_result.map(|_| resync_after)
}

/// What a sync showed its hook, as the reads the controller's identity must be allowed: the
/// object itself, its children (or attachments) of each type where they were looked for, and
/// its related objects. The engine reads them from its shared caches; a controller acting as a
/// ServiceAccount is shown nothing that account could not read.
fn reads<P: Policy>(
    hosted: &Hosted<P>,
    resource: &ApiResource,
    object: &DynamicObject,
    shown: &[Vec<&DynamicObject>],
    related: &crate::related::RelatedObjects,
) -> std::collections::BTreeSet<Permission> {
    let namespace = object.namespace();
    let mut reads = std::collections::BTreeSet::from([Permission::of("get", resource, namespace.clone())]);
    for (child_type, children) in hosted.child_types.iter().zip(shown) {
        let scope = |namespace: Option<String>| namespace.filter(|_| child_type.namespaced);
        reads.insert(Permission::of("list", &child_type.resource, scope(namespace.clone())));
        reads.extend(children.iter().map(|child| Permission::of("list", &child_type.resource, scope(child.namespace()))));
    }
    for group in related {
        let scope = |namespace: Option<String>| namespace.filter(|_| group.namespaced);
        reads.extend(group.objects.iter().map(|object| Permission::of("list", &group.resource, scope(object.namespace()))));
    }
    reads
}

/// The writes of children (or attachments) a valid answer's `desired` asks for, given what the
/// hook was `shown`, as the permissions the controller's identity needs.
pub(crate) fn child_writes<P: Policy>(
    hosted: &Hosted<P>,
    owner: &Value,
    shown: &[Vec<&DynamicObject>],
    desired: &[children::desired::DesiredChild],
) -> std::collections::BTreeSet<Permission> {
    let writes = children::desired::writes(&hosted.ctx.applier, &hosted.child_types, owner, shown, desired);
    writes.into_iter().map(|(verb, index, namespace)| Permission::of(verb, &hosted.child_types[index].resource, namespace)).collect()
}

/// Deletes the children tied by label of `object`, which goes or is no longer handled: the
/// garbage collector cannot, as no owner reference ties them. `true` once none is left (their
/// deletions bring the next sync, which removes the finalizer).
async fn delete_tied_by_label<P: Policy>(hosted: &Hosted<P>, object: &DynamicObject) -> Result<bool, SyncError> {
    let uid = object.uid().unwrap_or_default();
    let left: Vec<(&ChildType, Arc<DynamicObject>)> = hosted
        .child_types
        .iter()
        .filter(|child_type| child_type.tie == Tie::Label)
        .flat_map(|child_type| child_type.controlled_by(&uid, None).into_iter().map(move |child| (child_type, child)))
        .collect();
    if left.is_empty() {
        return Ok(true);
    }
    let live: Vec<_> = left.iter().filter(|(_, child)| child.metadata.deletion_timestamp.is_none()).collect();
    if hosted.identity.impersonates() {
        let needed = live
            .iter()
            .map(|(child_type, child)| Permission::of("delete", &child_type.resource, child.namespace().filter(|_| child_type.namespaced)));
        hosted.identity.check(needed.collect()).await?;
    }
    let mut errors = Vec::new();
    for (child_type, child) in live {
        if let Err(error) = hosted.ctx.applier.delete(&hosted.identity.client, child_type, child).await {
            errors.push(error);
        }
    }
    if errors.is_empty() { Ok(false) } else { Err(SyncError::Children(errors)) }
}

/// Syncs the object under `key`; the outcome as the runner takes it (see
/// [`crate::outcome`]).
pub(crate) async fn process<P: Policy>(hosted: &Hosted<P>, key: P::Key) -> Result<Action, SyncError> {
    let outcome = sync(hosted, &key).await;
    let object = if outcome.is_err() { hosted.cached(&key) } else { None };
    crate::outcome::action(&hosted.ctx, outcome, object.as_deref().map(|object| (object, hosted.resource(&key)))).await
}
