//! Claiming children by Kubernetes' ControllerRef rules: a parent controls the objects whose
//! controller owner reference names its UID. It *adopts* orphans (no controller) that match
//! its selector, and *releases* the objects it controls that no longer match, so another
//! parent can adopt them. Objects controlled by someone else are never touched.
//!
//! Claiming happens in two steps. [`Claimant::claim`] only reads: it finds what the parent
//! controls, what it would adopt and what it would release, and the hook is shown the
//! controlled and adoptable objects. Only once the hook has answered and its response has been
//! validated does [`Claim::adopt`] write — so a failing hook changes nothing, not even owner
//! references, and nothing is adopted that the hook did not see. Adoption and release are JSON
//! patches with a `test` of the `resourceVersion`: they change only the owner references, and
//! fail rather than overwrite a concurrent change; an object whose adoption fails is left out
//! of the sync.
//!
//! Children tied by label ([`super::anywhere`]) are released by removing the label, and an
//! orphan of such a type is adopted only when the hook asks for it by name and it matches the
//! selector ([`Claims::adopt_desired`]): a selector alone must not reach into every namespace.
//!
//! A selector that matches an object without labels (empty, or only `DoesNotExist` and
//! `NotIn` requirements) adopts nothing: it would hand the parent's author every unlabelled
//! object of the child types in the namespace — Secrets an administrator made, say — to
//! delete with the engine's rights.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::{ChildType, Tie};
use bosun_runtime::cache::CONTROLLER_UID_LABEL;

/// The JSON pointer of the label that ties a child to its parent ([`Tie::Label`]).
const LABEL_PATH: &str = "/metadata/labels/bosun.dev~1controller-uid";
use crate::selector;

/// Why claiming failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClaimError {
    /// Adopting or releasing a child failed.
    #[error("{action} {kind} {key}: {source}")]
    Api {
        /// `adopting` or `releasing`.
        action: &'static str,
        /// The child's kind.
        kind: String,
        /// `namespace/name`.
        key: String,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// The parent's selector cannot be evaluated.
    #[error("the parent's selector: {0}")]
    Selector(#[from] selector::SelectorError),
}

/// The parent doing the claiming.
pub(crate) struct Claimant<'a> {
    /// The parent.
    pub parent: &'a DynamicObject,
    /// Its controller reference, as put on adopted children.
    pub owner: &'a Value,
    /// Which children it selects.
    pub selector: &'a LabelSelector,
    /// Whether adoption is allowed: the parent exists, is not being deleted, an uncached read
    /// confirmed both (Metacontroller's check against adopting for a deleted parent), and its
    /// selector passes [`may_adopt_with`].
    pub may_adopt: bool,
}

fn labels_of(object: &DynamicObject) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    object.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

fn controller_index(object: &DynamicObject) -> Option<usize> {
    object.owner_references().iter().position(|reference| reference.controller == Some(true))
}

/// Whether `selector` may adopt: it requires some label, so unlabelled objects are safe.
pub(crate) fn may_adopt_with(selector: &LabelSelector) -> Result<bool, ClaimError> {
    Ok(!selector::matches(selector, &BTreeMap::new())?)
}

/// What a parent claims of each of its child types, and how it claims: what a
/// CompositeController's sync observes before its hook is called.
pub(crate) struct Claims {
    selector: LabelSelector,
    owner: Value,
    may_adopt: bool,
    claims: Vec<Claim>,
}

impl Claims {
    /// Claims each of `child_types` for `parent` (see [`Claimant`]); reads the cache only.
    pub(crate) fn of(
        parent: &DynamicObject,
        child_types: &[ChildType],
        selector: LabelSelector,
        owner: Value,
        may_adopt: bool,
    ) -> Result<Claims, ClaimError> {
        let mut claims = Claims { selector, owner, may_adopt, claims: Vec::new() };
        let claimant = claims.claimant(parent);
        let claimed = child_types.iter().map(|child_type| claimant.claim(child_type)).collect::<Result<Vec<_>, _>>()?;
        claims.claims = claimed;
        Ok(claims)
    }

    /// The parent as the claimant of these claims.
    pub(crate) fn claimant<'a>(&'a self, parent: &'a DynamicObject) -> Claimant<'a> {
        Claimant { parent, owner: &self.owner, selector: &self.selector, may_adopt: self.may_adopt }
    }

    /// The parent's child selector.
    pub(crate) fn selector(&self) -> &LabelSelector {
        &self.selector
    }

    /// The parent's controller reference.
    pub(crate) fn owner(&self) -> &Value {
        &self.owner
    }

    /// Whether the parent may adopt orphans (see [`Claimant::may_adopt`]).
    pub(crate) fn may_adopt(&self) -> bool {
        self.may_adopt
    }

    /// What the hook is shown, per child type: the controlled and adoptable children.
    pub(crate) fn shown(&self) -> Vec<Vec<&DynamicObject>> {
        self.claims.iter().map(|claim| claim.observed().map(Arc::as_ref).collect()).collect()
    }

    /// The observed child of type `type_index` under `key`, if claimed.
    pub(crate) fn observed_child(&self, type_index: usize, key: &bosun_runtime::ObjectKey) -> Option<&DynamicObject> {
        self.claims[type_index].observed().map(Arc::as_ref).find(|child| bosun_runtime::ObjectKey::of(child) == *key)
    }

    /// The children adopting and releasing will patch, as (child type index, namespace).
    pub(crate) fn patches(&self) -> std::collections::BTreeSet<(usize, Option<String>)> {
        let mut patches = std::collections::BTreeSet::new();
        for (index, claim) in self.claims.iter().enumerate() {
            patches.extend(claim.adoptable.iter().chain(&claim.releasable).map(|child| (index, child.namespace())));
        }
        patches
    }

    /// The orphans of types tied by label that the hook asks for by name (`desired`, as
    /// (child type index, key)) and the selector matches, as (child type index, orphan):
    /// adopted with [`Claims::adopt_also`] only once the hook has answered, the selector may
    /// adopt ([`may_adopt_with`]) and the parent is confirmed live, as for [`Claimant::may_adopt`].
    pub(crate) fn desired_orphans<'k>(
        &self,
        child_types: &[ChildType],
        desired: impl IntoIterator<Item = (usize, &'k bosun_runtime::ObjectKey)>,
    ) -> Result<Vec<(usize, Arc<DynamicObject>)>, ClaimError> {
        let mut orphans = Vec::new();
        for (index, key) in desired {
            let child_type = &child_types[index];
            if child_type.tie != Tie::Label || self.claims[index].observed().any(|child| bosun_runtime::ObjectKey::of(child) == *key) {
                continue;
            }
            let Some(orphan) = child_type.cache.get(key) else { continue };
            let orphaned = bosun_runtime::cache::controller_uid(&orphan).is_none() && orphan.metadata.deletion_timestamp.is_none();
            if orphaned && selector::matches(&self.selector, labels_of(&orphan))? {
                orphans.push((index, orphan));
            }
        }
        Ok(orphans)
    }

    /// Adopts `orphans` (from [`Claims::desired_orphans`]) too.
    pub(crate) fn adopt_also(&mut self, orphans: Vec<(usize, Arc<DynamicObject>)>) {
        for (index, orphan) in orphans {
            self.claims[index].adoptable.push(orphan);
        }
    }

    /// Adopts and releases as claimed, once the hook's answer is valid; returns the children the
    /// parent controls now, per child type.
    pub(crate) async fn adopt(
        mut self,
        parent: &DynamicObject,
        client: &kube::Client,
        child_types: &[ChildType],
    ) -> Result<Vec<Vec<Arc<DynamicObject>>>, ClaimError> {
        let claims = std::mem::take(&mut self.claims);
        let claimant = self.claimant(parent);
        let mut owned = Vec::with_capacity(child_types.len());
        for (child_type, claim) in child_types.iter().zip(claims) {
            owned.push(claim.adopt(&claimant, client, child_type).await?);
        }
        Ok(owned)
    }
}

/// What a parent claims of one child type, before anything is written.
#[derive(Default)]
pub(crate) struct Claim {
    /// The objects it controls that still match its selector.
    pub controlled: Vec<Arc<DynamicObject>>,
    /// Orphans it would adopt.
    pub adoptable: Vec<Arc<DynamicObject>>,
    /// Objects it controls that no longer match its selector.
    pub releasable: Vec<Arc<DynamicObject>>,
}

impl Claim {
    /// The objects the hook is shown: controlled and adoptable.
    pub(crate) fn observed(&self) -> impl Iterator<Item = &Arc<DynamicObject>> {
        self.controlled.iter().chain(&self.adoptable)
    }

    /// Releases and adopts as claimed, after the hook has answered; returns the children the
    /// parent controls now. An orphan that changed or vanished meanwhile is left out: its
    /// watch event brings a new sync.
    pub(crate) async fn adopt(
        self,
        claimant: &Claimant<'_>,
        client: &kube::Client,
        child_type: &ChildType,
    ) -> Result<Vec<Arc<DynamicObject>>, ClaimError> {
        for child in &self.releasable {
            let operation = match child_type.tie {
                Tie::Owner => {
                    controller_index(child).map(|index| json!({ "op": "remove", "path": format!("/metadata/ownerReferences/{index}") }))
                }
                Tie::Label => Some(json!({ "op": "remove", "path": LABEL_PATH })),
            };
            if let Some(operation) = operation {
                claimant.patch(client, child_type, child, "releasing", operation).await?;
            }
        }
        let mut claimed = self.controlled;
        for orphan in &self.adoptable {
            let operation = match (child_type.tie, orphan.metadata.owner_references.is_some(), orphan.metadata.labels.is_some()) {
                (Tie::Owner, true, _) => json!({ "op": "add", "path": "/metadata/ownerReferences/-", "value": claimant.owner }),
                (Tie::Owner, false, _) => json!({ "op": "add", "path": "/metadata/ownerReferences", "value": [claimant.owner] }),
                (Tie::Label, _, true) => json!({ "op": "add", "path": LABEL_PATH, "value": claimant.owner["uid"] }),
                (Tie::Label, _, false) => {
                    json!({ "op": "add", "path": "/metadata/labels", "value": { CONTROLLER_UID_LABEL: claimant.owner["uid"] } })
                }
            };
            if let Some(adopted) = claimant.patch(client, child_type, orphan, "adopting", operation).await? {
                claimed.push(Arc::new(adopted));
            }
        }
        Ok(claimed)
    }
}

impl Claimant<'_> {
    /// What this parent claims of `child_type`; reads the cache only.
    pub(crate) fn claim(&self, child_type: &ChildType) -> Result<Claim, ClaimError> {
        let uid = self.parent.uid().unwrap_or_default();
        let parent_namespace = self.parent.namespace();
        let deleting = self.parent.metadata.deletion_timestamp.is_some();
        let mut claim = Claim::default();
        for child in child_type.controlled_by(&uid, parent_namespace.as_deref()) {
            if deleting || selector::matches(self.selector, labels_of(&child))? {
                claim.controlled.push(child);
            } else {
                claim.releasable.push(child);
            }
        }
        if !self.may_adopt {
            return Ok(claim);
        }
        for orphan in child_type.orphans_for(parent_namespace.as_deref()) {
            if orphan.metadata.deletion_timestamp.is_none() && selector::matches(self.selector, labels_of(&orphan))? {
                claim.adoptable.push(orphan);
            }
        }
        Ok(claim)
    }

    /// Applies one owner-reference operation, guarded by the child's resourceVersion.
    /// `None` when the child changed or vanished meanwhile: its watch event brings a new sync.
    async fn patch(
        &self,
        client: &kube::Client,
        child_type: &ChildType,
        child: &DynamicObject,
        action: &'static str,
        operation: Value,
    ) -> Result<Option<DynamicObject>, ClaimError> {
        let api: Api<DynamicObject> = match child.namespace() {
            Some(namespace) => Api::namespaced_with(client.clone(), &namespace, &child_type.resource),
            None => Api::all_with(client.clone(), &child_type.resource),
        };
        let patch: json_patch::Patch = serde_json::from_value(json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": child.resource_version() },
            operation,
        ]))
        .expect("a valid JSON patch");
        match api.patch(&child.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
            Ok(patched) => {
                tracing::info!(parent = %self.parent.name_any(), kind = %child_type.resource.kind, child = %child.name_any(), "{action} child");
                Ok(Some(patched))
            }
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409 | 422) => Ok(None),
            Err(source) => Err(ClaimError::Api {
                action,
                kind: child_type.resource.kind.clone(),
                key: format!("{}/{}", child.namespace().unwrap_or_default(), child.name_any()),
                source: Box::new(source),
            }),
        }
    }
}
