//! A CompositeController's [`Policy`] for the one reconciler: a parent claims its children by
//! its selector (adopting orphans only once the hook's answer is valid and an uncached read
//! confirmed the parent is live), its hooks get `parent` and `children`, and the response's
//! `status` is written with `observedGeneration` through the status subresource.
//!
//! Nothing is written before the response has been validated as a whole: a hook that fails,
//! times out, answers garbage or declares a child it may not have changes nothing in the
//! cluster. Writes happen only where desired and observed differ, so a steady state costs no
//! write at all.

use std::sync::Arc;

use bosun_runtime::ObjectKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ApiResource, DynamicObject};
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::controller::HostedComposite;
use crate::children::{self, ChildType, Claim, ClaimError, Claimant, Rules};
use crate::context::EngineContext;
use crate::hooks::{self, HookEndpoint, HookResponse, ObjectMaps};
use crate::invalid_response::InvalidResponse;
use crate::parent::{controller_reference, manages_children, object_api, write_status};
use crate::reconcile::{Answer, Ask, Common, Policy, SyncResponse};
use crate::related::Related;
use crate::selector;
use crate::sync_error::SyncError;

/// The finalizer a CompositeController with a finalize hook puts on its parents.
pub(crate) fn finalizer_name(controller: &str) -> String {
    format!("metacontroller.io/compositecontroller-{controller}")
}

/// The request to a CompositeController's sync and finalize hooks.
#[derive(Serialize)]
struct CompositeRequest<'a> {
    controller: &'a Value,
    parent: &'a DynamicObject,
    children: ObjectMaps<'a>,
    related: ObjectMaps<'a>,
    finalizing: bool,
}

/// The response of a CompositeController's sync and finalize hooks.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CompositeResponse {
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    children: Option<Vec<Value>>,
    #[serde(default)]
    resync_after_seconds: Option<f64>,
    #[serde(default)]
    finalized: Option<bool>,
    /// bosun's extension: events to record on the parent.
    #[serde(default)]
    events: Option<Vec<Value>>,
}

impl HookResponse for CompositeResponse {
    const FIELDS: &'static [&'static str] = &["status", "children", "resyncAfterSeconds", "finalized", "events"];
}

impl SyncResponse for CompositeResponse {
    /// `status`.
    type Rest = Option<Value>;

    fn split(self) -> (Common, Option<Value>) {
        let common = Common {
            children: self.children,
            resync_after_seconds: self.resync_after_seconds,
            finalized: self.finalized,
            events: self.events,
        };
        (common, self.status)
    }
}

/// What a parent claims of each child type, and how it claims.
pub(crate) struct Claims {
    selector: LabelSelector,
    owner: Value,
    may_adopt: bool,
    claims: Vec<Claim>,
}

impl Claims {
    fn claimant<'a>(&'a self, parent: &'a DynamicObject) -> Claimant<'a> {
        Claimant { parent, owner: &self.owner, selector: &self.selector, may_adopt: self.may_adopt }
    }

    /// The parent's controller reference.
    pub(crate) fn owner(&self) -> &Value {
        &self.owner
    }

    /// Whether the parent may adopt orphans (see [`Claimant::may_adopt`]).
    pub(crate) fn may_adopt(&self) -> bool {
        self.may_adopt
    }

    /// The observed child of type `type_index` under `key`, if claimed.
    pub(crate) fn observed_child(&self, type_index: usize, key: &ObjectKey) -> Option<&DynamicObject> {
        self.claims[type_index].observed().map(Arc::as_ref).find(|child| ObjectKey::of(child) == *key)
    }
}

impl Policy for HostedComposite {
    type Key = ObjectKey;
    type Observed = Claims;
    type Response = CompositeResponse;
    /// The status.
    type Update = Value;

    fn ctx(&self) -> &EngineContext {
        &self.ctx
    }

    fn resource(&self, _: &ObjectKey) -> &ApiResource {
        &self.parent.resource
    }

    fn cached(&self, key: &ObjectKey) -> Option<Arc<DynamicObject>> {
        self.parents.get(key)
    }

    fn forget(&self, key: &ObjectKey) {
        self.ctx.hooks.forget(&self.parent.resource.kind, key);
    }

    fn related(&self) -> &Related<ObjectKey> {
        &self.related
    }

    fn finalizer(&self) -> String {
        finalizer_name(&self.name)
    }

    fn handles(&self, _: &ObjectKey, parent: &DynamicObject) -> bool {
        HostedComposite::handles(self, parent)
    }

    fn hooks(&self) -> (&Option<HookEndpoint>, &Option<HookEndpoint>) {
        (&self.sync_hook, &self.finalize_hook)
    }

    fn child_types(&self) -> &[ChildType] {
        &self.children
    }

    /// Claims the children: those it controls, and the orphans its selector matches — adopted
    /// only after an uncached read confirms the parent is live.
    async fn observe(&self, parent: &DynamicObject) -> Result<Claims, SyncError> {
        let selector = self.child_selector(parent)?;
        let owner = controller_reference(parent, &self.parent.resource);
        let may_adopt = parent.metadata.deletion_timestamp.is_none()
            && children::claim::may_adopt_with(&selector)?
            && self.has_adoptable_orphans(parent, &selector)?
            && self.parent_is_live(parent).await?;
        let mut claims = Claims { selector, owner, may_adopt, claims: Vec::new() };
        let claimant = claims.claimant(parent);
        let claimed = self.children.iter().map(|child_type| claimant.claim(child_type)).collect::<Result<Vec<_>, ClaimError>>()?;
        claims.claims = claimed;
        Ok(claims)
    }

    fn shown<'a>(&self, observed: &'a Claims) -> Vec<Vec<&'a DynamicObject>> {
        observed.claims.iter().map(|claim| claim.observed().map(Arc::as_ref).collect()).collect()
    }

    fn request(&self, parent: &DynamicObject, children: ObjectMaps<'_>, related: ObjectMaps<'_>, finalizing: bool) -> Vec<u8> {
        hooks::encode(&CompositeRequest { controller: &self.controller_json, parent, children, related, finalizing })
    }

    fn rules<'a>(&self, parent: &DynamicObject, observed: &'a Claims) -> Rules<'a> {
        let uid_label = (self.spec.generate_selector == Some(true)).then(|| ("controller-uid", parent.uid().unwrap_or_default()));
        Rules {
            controller: "CompositeController",
            field: "children",
            declared_in: "childResources",
            selector: Some(&observed.selector),
            labels: uid_label.into_iter().collect(),
            annotations: Vec::new(),
        }
    }

    /// With rolling child types, once per live revision (see [`super::rolling`]); else once.
    async fn respond(&self, ask: &Ask<'_, Self>) -> Result<Answer<Value>, SyncError> {
        match &self.rolling {
            Some(rolling) if manages_children(ask.object, ask.finalizing) => super::rolling::respond(self, rolling, ask).await,
            _ => ask.once(ask.object).await,
        }
    }

    fn update(&self, status: Option<Value>) -> Result<Value, InvalidResponse> {
        Ok(crate::parent::response_status(status)?.unwrap_or_else(|| json!({})))
    }

    /// Adopts and releases as claimed; owner references are written only now.
    async fn settle(&self, parent: &DynamicObject, mut observed: Claims) -> Result<Vec<Vec<Arc<DynamicObject>>>, SyncError> {
        let claims = std::mem::take(&mut observed.claims);
        let claimant = observed.claimant(parent);
        let mut owned = Vec::with_capacity(self.children.len());
        for (child_type, claim) in self.children.iter().zip(claims) {
            owned.push(claim.settle(&claimant, &self.ctx.client, child_type).await?);
        }
        Ok(owned)
    }

    /// Writes the hook's status plus `observedGeneration` through the status subresource,
    /// only if it differs from the parent's current status.
    async fn write(&self, _: &ObjectKey, api: &Api<DynamicObject>, parent: &DynamicObject, mut status: Value) -> Result<(), SyncError> {
        status["observedGeneration"] = json!(parent.metadata.generation.unwrap_or(0));
        if parent.data.get("status") == Some(&status) {
            return Ok(());
        }
        write_status(api, parent, status).await
    }
}

impl HostedComposite {
    /// Whether any child type has an orphan this parent's selector matches.
    fn has_adoptable_orphans(&self, parent: &DynamicObject, selector: &LabelSelector) -> Result<bool, SyncError> {
        let namespace = parent.namespace();
        for child_type in &self.children {
            for orphan in child_type.orphans_for(namespace.as_deref()) {
                if selector::matches(selector, orphan.labels()).map_err(ClaimError::from)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// An uncached read confirming the parent still exists, unchanged in identity and not
    /// being deleted, before adopting anything for it.
    async fn parent_is_live(&self, parent: &DynamicObject) -> Result<bool, SyncError> {
        let api = object_api(&self.ctx.client, &self.parent.resource, parent);
        let live = api.get_opt(&parent.name_any()).await.map_err(|error| SyncError::Parent(Box::new(error)))?;
        Ok(live.is_some_and(|live| live.uid() == parent.uid() && live.metadata.deletion_timestamp.is_none()))
    }
}
