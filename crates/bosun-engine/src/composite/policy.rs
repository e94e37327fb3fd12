//! A CompositeController's [`Policy`] for the one reconciler, and everything that answers a
//! question about its parents: which parents it handles, which parents a change concerns, how a
//! parent claims its children by its selector (adopting orphans only once the hook's answer is
//! valid and an uncached read confirmed the parent is live), the hook request with `parent` and
//! `children`, and the response's `status`, written with `observedGeneration` through the
//! status subresource.
//!
//! Nothing is written before the response has been validated as a whole: a hook that fails,
//! times out, answers garbage or declares a child it may not have changes nothing in the
//! cluster. Writes happen only where desired and observed differ, so a steady state costs no
//! write at all.

use std::collections::BTreeMap;
use std::sync::Arc;

use bosun_runtime::{CacheEvent, ObjectKey};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::DynamicObject;
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::rolling::{self, Rolling};
use crate::api::CompositeControllerSpec;
use crate::children::desired::DesiredChild;
use crate::children::{ChildType, ClaimError, Claims, Rules, Tie, claim, controller_reference};
use crate::finalizer::manages_children;
use crate::guarded::{object_api, write_status};
use crate::hooks::{self, HookResponse, ObjectMaps};
use crate::identity::Permission;
use crate::invalid_response::InvalidResponse;
use crate::reconcile::{Answer, Ask, Common, Hosted, Policy, SyncResponse};
use crate::selector;
use crate::sync_error::SyncError;
use bosun_runtime::cache::CONTROLLER_UID_LABEL;

/// The parent index by the labels their `spec.selector` requires, as `<namespace>/<key>=<value>`
/// (`<namespace>/*` when it requires no particular label): a child's labels find the parents
/// that may adopt it. Shared by every controller of the parent type.
const SELECTOR_INDEX: &str = "bosun.dev/child-selector";
/// The same for `generateSelector: true`: `<namespace>/controller-uid=<uid>`.
const GENERATED_SELECTOR_INDEX: &str = "bosun.dev/generated-child-selector";
/// The parent index by UID: a child tied by label names its parent only so.
const UID_INDEX: &str = "bosun.dev/uid";

/// The [`SELECTOR_INDEX`] values of `parent`. Every label a matching child must carry leads to
/// the parent; one of them is enough, since a match needs them all.
fn selector_index_values(parent: &DynamicObject) -> Vec<String> {
    let namespace = parent.namespace().unwrap_or_default();
    let Some(selector) =
        parent.data.pointer("/spec/selector").and_then(|selector| serde_json::from_value::<LabelSelector>(selector.clone()).ok())
    else {
        return Vec::new();
    };
    if selector::is_empty(&selector) {
        return Vec::new();
    }
    if let Some(labels) = selector.match_labels.as_ref().filter(|labels| !labels.is_empty()) {
        return labels.iter().map(|(key, value)| format!("{namespace}/{key}={value}")).collect();
    }
    let required = selector.match_expressions.iter().flatten().find(|expression| expression.operator == "In");
    match required {
        Some(expression) => expression.values.iter().flatten().map(|value| format!("{namespace}/{}={value}", expression.key)).collect(),
        None => vec![format!("{namespace}/*")],
    }
}

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

/// What a CompositeController adds to a hosted controller.
pub(crate) struct CompositePolicy {
    /// Its spec.
    pub spec: CompositeControllerSpec,
    /// The rolling-update configuration, when a child type rolls.
    pub rolling: Option<Rolling>,
}

/// A hosted CompositeController.
pub(crate) type HostedComposite = Hosted<CompositePolicy>;

impl Policy for CompositePolicy {
    type Key = ObjectKey;
    type Observed = Claims;
    type Response = CompositeResponse;
    /// The status.
    type Update = Value;

    fn handles(hosted: &HostedComposite, _: &ObjectKey, parent: &DynamicObject) -> bool {
        hosted.handles(parent)
    }

    /// Claims the children: those it controls, and the orphans its selector matches — adopted
    /// only after an uncached read confirms the parent is live.
    async fn observe(hosted: &HostedComposite, parent: &DynamicObject) -> Result<Claims, SyncError> {
        let selector = hosted.child_selector(parent)?;
        let owner = controller_reference(parent, &hosted.objects[0].resolved.resource);
        let may_adopt = parent.metadata.deletion_timestamp.is_none()
            && claim::may_adopt_with(&selector)?
            && hosted.has_adoptable_orphans(parent, &selector)?
            && hosted.parent_is_live(parent).await?;
        Ok(Claims::of(parent, &hosted.child_types, selector, owner, may_adopt)?)
    }

    fn shown(observed: &Claims) -> Vec<Vec<&DynamicObject>> {
        observed.shown()
    }

    fn request(
        hosted: &HostedComposite,
        parent: &DynamicObject,
        children: ObjectMaps<'_>,
        related: ObjectMaps<'_>,
        finalizing: bool,
    ) -> Vec<u8> {
        hooks::encode(&CompositeRequest { controller: &hosted.controller_json, parent, children, related, finalizing })
    }

    fn rules<'a>(hosted: &HostedComposite, parent: &DynamicObject, observed: &'a Claims) -> Rules<'a> {
        let uid_label = (hosted.policy.spec.generate_selector == Some(true)).then(|| ("controller-uid", parent.uid().unwrap_or_default()));
        Rules {
            controller: "CompositeController",
            field: "children",
            declared_in: "childResources",
            selector: Some(observed.selector()),
            labels: uid_label.into_iter().collect(),
            annotations: Vec::new(),
        }
    }

    /// With rolling child types, once per live revision (see [`super::rolling`]); else once.
    async fn respond(ask: &Ask<'_, Self>) -> Result<Answer<Value>, SyncError> {
        match &ask.hosted.policy.rolling {
            Some(rolling) if manages_children(ask.object, ask.finalizing) => rolling::respond(rolling, ask).await,
            _ => ask.once(ask.object).await,
        }
    }

    fn update(status: Option<Value>) -> Result<Value, InvalidResponse> {
        Ok(hooks::response_status(status)?.unwrap_or_else(|| json!({})))
    }

    /// Adopts and releases as claimed — and the orphans of types tied by label that the hook
    /// asks for by name, if the parent may adopt — writing owner references (or labels) only
    /// now, if the controller's identity may patch those children.
    async fn adopt(
        hosted: &HostedComposite,
        parent: &DynamicObject,
        mut claims: Claims,
        desired: &[DesiredChild],
    ) -> Result<Vec<Vec<Arc<DynamicObject>>>, SyncError> {
        let orphans = claims.desired_orphans(&hosted.child_types, desired.iter().map(|child| (child.child_type, &child.key)))?;
        if !orphans.is_empty()
            && parent.metadata.deletion_timestamp.is_none()
            && claim::may_adopt_with(claims.selector())?
            && hosted.parent_is_live(parent).await?
        {
            claims.adopt_also(orphans);
        }
        if hosted.identity.impersonates() {
            let needed = claims.patches().into_iter().map(|(index, namespace)| {
                let child_type = &hosted.child_types[index];
                Permission::of("patch", &child_type.resource, namespace.filter(|_| child_type.namespaced))
            });
            hosted.identity.check(needed.collect()).await?;
        }
        Ok(claims.adopt(parent, &hosted.identity.client, &hosted.child_types).await?)
    }

    /// Writes the hook's status plus `observedGeneration` through the status subresource,
    /// only if it differs from the parent's current status.
    async fn write(
        _: &HostedComposite,
        _: &ObjectKey,
        api: &Api<DynamicObject>,
        parent: &DynamicObject,
        mut status: Value,
    ) -> Result<(), SyncError> {
        status["observedGeneration"] = json!(parent.metadata.generation.unwrap_or(0));
        if parent.data.get("status") == Some(&status) {
            return Ok(());
        }
        write_status(api, parent, status).await
    }
}

impl HostedComposite {
    /// The parent type.
    fn parent_type(&self) -> &crate::reconcile::ObjectType {
        &self.objects[0]
    }

    /// Whether any child type has an orphan this parent's selector matches.
    fn has_adoptable_orphans(&self, parent: &DynamicObject, selector: &LabelSelector) -> Result<bool, SyncError> {
        let namespace = parent.namespace();
        for child_type in &self.child_types {
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
        let api = object_api(&self.ctx.client, &self.parent_type().resolved.resource, parent);
        let live = api.get_opt(&parent.name_any()).await.map_err(|error| SyncError::Parent(Box::new(error)))?;
        Ok(live.is_some_and(|live| live.uid() == parent.uid() && live.metadata.deletion_timestamp.is_none()))
    }

    /// Whether the parent's labels match `parentResource.labelSelector` (absent: all match).
    fn handles(&self, parent: &DynamicObject) -> bool {
        match &self.policy.spec.parent_resource.label_selector {
            None => true,
            Some(selector) => selector::matches(selector, parent.labels()).unwrap_or(false),
        }
    }

    /// Whether this controller syncs `parent`: it handles it, or its finalizer is still on it.
    fn ours(&self, parent: &DynamicObject) -> bool {
        self.handles(parent) || parent.finalizers().contains(&self.finalizer)
    }

    /// The selector of a parent's children: `controller-uid` with `generateSelector`, else
    /// the parent's `spec.selector`.
    fn child_selector(&self, parent: &DynamicObject) -> Result<LabelSelector, SyncError> {
        if self.policy.spec.generate_selector == Some(true) {
            let uid = parent.uid().unwrap_or_default();
            return Ok(LabelSelector { match_labels: Some(BTreeMap::from([("controller-uid".to_owned(), uid)])), ..Default::default() });
        }
        let selector = parent.data.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
        let selector: LabelSelector = serde_json::from_value(selector).map_err(|error| SyncError::NoSelector(Some(error)))?;
        if selector::is_empty(&selector) {
            return Err(SyncError::NoSelector(None));
        }
        Ok(selector)
    }

    /// The name of the parent index this controller finds adoptive parents through.
    fn selector_index(&self) -> &'static str {
        if self.policy.spec.generate_selector == Some(true) { GENERATED_SELECTOR_INDEX } else { SELECTOR_INDEX }
    }

    /// Files the parents in the index this controller finds adoptive parents through.
    pub(crate) fn add_selector_index(&self) {
        let parents = &self.parent_type().cache;
        if self.policy.spec.generate_selector == Some(true) {
            parents.add_index(GENERATED_SELECTOR_INDEX, |parent| {
                let uid = parent.uid().unwrap_or_default();
                vec![format!("{}/controller-uid={uid}", parent.namespace().unwrap_or_default())]
            });
        } else {
            parents.add_index(SELECTOR_INDEX, selector_index_values);
        }
        if self.child_types.iter().any(|child_type| child_type.tie == Tie::Label) {
            parents.add_index(UID_INDEX, |parent| parent.uid().into_iter().collect());
        }
    }

    /// The key under which `object`'s controller parent is queued, if it is one of ours: by its
    /// controller owner reference, or — for a child tied by label, which may be in another
    /// namespace — by the parent's UID.
    pub(crate) fn owner_key(&self, object: &DynamicObject) -> Option<ObjectKey> {
        let parent = &self.parent_type().resolved;
        bosun_runtime::controller_key(object, &parent.resource, parent.namespaced).or_else(|| {
            let uid = object.labels().get(CONTROLLER_UID_LABEL)?;
            self.parent_type().cache.by_index(UID_INDEX, uid).first().map(|parent| ObjectKey::of(parent))
        })
    }

    /// The parent a parent change concerns, if it is ours (before or after the change).
    pub(crate) fn parent_keys(&self, event: &CacheEvent<'_>) -> Vec<ObjectKey> {
        let CacheEvent::Applied { old, new } = event else { return Vec::new() };
        if self.policy.spec.parent_resource.ignore_status_changes == Some(true) && bosun_runtime::predicate::only_status_changed(event) {
            return Vec::new();
        }
        if self.ours(new) || old.is_some_and(|old| self.ours(old)) { vec![ObjectKey::of(new)] } else { Vec::new() }
    }

    /// The parents a child change concerns: its controller, or for an orphan every parent
    /// that may adopt it.
    pub(crate) fn child_keys(&self, child_type: &ChildType, event: &CacheEvent<'_>) -> Vec<ObjectKey> {
        let (old, new) = match event {
            CacheEvent::Applied { old, new } => (*old, Some(*new)),
            CacheEvent::Deleted(object) => {
                self.ctx.applier.forget(child_type, object);
                (Some(*object), None)
            }
        };
        let mut keys: Vec<ObjectKey> = old.into_iter().chain(new).filter_map(|object| self.owner_key(object)).collect();
        let owned = !keys.is_empty();
        // An orphan may be adopted by any parent whose selector matches it: the selector index
        // finds the candidates without reading every parent.
        if let Some(orphan) = new.filter(|object| !owned && object.metadata.deletion_timestamp.is_none())
            && bosun_runtime::cache::controller_uid(orphan).is_none()
        {
            let namespace = if self.parent_type().resolved.namespaced { orphan.namespace().unwrap_or_default() } else { String::new() };
            let index = self.selector_index();
            let mut candidates = BTreeMap::new();
            let values = orphan.labels().iter().map(|(key, value)| format!("{namespace}/{key}={value}")).chain([format!("{namespace}/*")]);
            for value in values {
                for parent in self.parent_type().cache.by_index(index, &value) {
                    candidates.entry(ObjectKey::of(&parent)).or_insert(parent);
                }
            }
            for parent in candidates.into_values() {
                let matches = self
                    .child_selector(&parent)
                    .ok()
                    .is_some_and(|selector| selector::matches(&selector, orphan.labels()).unwrap_or(false));
                if matches && self.handles(&parent) {
                    keys.push(ObjectKey::of(&parent));
                }
            }
        }
        keys
    }

    /// Every parent this controller syncs.
    pub(crate) fn all_keys(&self) -> Vec<ObjectKey> {
        self.parent_type().cache.keys_where(|parent| self.ours(parent))
    }

    /// The key under which `parent` is synced, or why this controller does not sync it.
    pub(crate) fn key_of(&self, parent: &DynamicObject) -> Result<ObjectKey, String> {
        let kind = parent.types.as_ref().map(|types| types.kind.as_str()).unwrap_or_default();
        let resource = &self.parent_type().resolved.resource;
        if kind != resource.kind || parent.types.as_ref().is_some_and(|types| types.api_version != resource.api_version) {
            return Err(format!("CompositeController {} syncs {} ({}), not {kind}", self.name, resource.plural, resource.api_version));
        }
        Ok(ObjectKey::of(parent))
    }

    /// Waits until the caches of the parents, children and revisions have listed them.
    pub(crate) async fn wait_synced(&self) {
        let revisions = self.policy.rolling.as_ref().map(Rolling::revision_type);
        self.wait_listed(revisions.as_slice()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(selector: Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "x/v1", "kind": "Thing", "metadata": { "name": "p", "namespace": "ns" }, "spec": { "selector": selector },
        }))
        .unwrap()
    }

    #[test]
    fn the_selector_index_files_a_parent_under_the_labels_a_child_must_carry() {
        let labels = parent(serde_json::json!({ "matchLabels": { "app": "web", "tier": "db" } }));
        assert_eq!(selector_index_values(&labels), ["ns/app=web", "ns/tier=db"]);
        let within = parent(serde_json::json!({ "matchExpressions": [{ "key": "app", "operator": "In", "values": ["a", "b"] }] }));
        assert_eq!(selector_index_values(&within), ["ns/app=a", "ns/app=b"]);
        let exists = parent(serde_json::json!({ "matchExpressions": [{ "key": "app", "operator": "Exists" }] }));
        assert_eq!(selector_index_values(&exists), ["ns/*"]);
        assert!(selector_index_values(&parent(serde_json::json!({}))).is_empty(), "an empty selector adopts nothing");
    }
}
