//! Syncing one parent: claim its children, call its sync (or finalize) hook, validate the
//! whole response, then delete, create and update children and write the parent's status.
//!
//! Nothing is written before the response has been validated as a whole: a hook that fails,
//! times out, answers garbage or declares a child it may not have changes nothing in the
//! cluster. Writes happen only where desired and observed differ, so a steady state costs no
//! write at all.

use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::ObjectKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::DynamicObject;
use kube::{Api, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::controller::Hosted;
use crate::children::{self, ClaimError, Claimant, Rules};
use crate::hooks::{self, HookResponse, ObjectMaps};
use crate::parent::{controller_reference, hook_for, manages_children, object_api, patch_finalizer, patch_guarded, related_maps};
use crate::selector;
use crate::sync_error::SyncError;

/// The finalizer a CompositeController with a finalize hook puts on its parents.
pub fn finalizer_name(controller: &str) -> String {
    format!("metacontroller.io/compositecontroller-{controller}")
}

/// The request to a CompositeController's sync and finalize hooks.
#[derive(Serialize)]
struct SyncRequest<'a> {
    controller: &'a Value,
    parent: &'a DynamicObject,
    children: ObjectMaps<'a>,
    related: ObjectMaps<'a>,
    finalizing: bool,
}

/// The response of a CompositeController's sync and finalize hooks.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SyncResponse {
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

impl HookResponse for SyncResponse {
    const FIELDS: &'static [&'static str] = &["status", "children", "resyncAfterSeconds", "finalized", "events"];
}

impl Hosted {
    /// Syncs one parent; returns when to sync it again (`resyncAfterSeconds`).
    pub async fn sync(&self, key: &ObjectKey) -> Result<Option<Duration>, SyncError> {
        let Some(parent) = self.parents.get(key) else {
            self.related.forget(key);
            self.ctx.hooks.forget(&self.parent.resource.kind, key);
            return Ok(None);
        };
        let finalizer = self.finalizer();
        let Some((hook, finalizing)) =
            hook_for(&self.parent_api(&parent), &parent, &finalizer, self.handles(&parent), &self.sync_hook, &self.finalize_hook).await?
        else {
            return Ok(None);
        };
        let has_finalizer = parent.finalizers().contains(&finalizer);
        let deleting = parent.metadata.deletion_timestamp.is_some();

        let selector = self.child_selector(&parent)?;
        let owner = controller_reference(&parent, &self.parent.resource);
        let may_adopt = !deleting
            && children::claim::may_adopt_with(&selector)?
            && self.has_adoptable_orphans(&parent, &selector)?
            && self.parent_is_live(&parent).await?;
        let claimant = Claimant { parent: &parent, owner: &owner, selector: &selector, may_adopt };
        let claims = self.children.iter().map(|child_type| claimant.claim(child_type)).collect::<Result<Vec<_>, ClaimError>>()?;

        let related = self.related.gather(key, &parent).await?;
        let parent_namespace = parent.namespace();
        let mut children = ObjectMaps::new();
        for (child_type, claim) in self.children.iter().zip(&claims) {
            hooks::insert_objects(
                &mut children,
                &child_type.group_key,
                hook.version,
                parent_namespace.as_deref(),
                claim.observed().map(Arc::as_ref),
            );
        }
        let request = SyncRequest {
            controller: &self.controller_json,
            parent: &parent,
            children,
            related: related_maps(&related, hook.version, parent_namespace.as_deref()),
            finalizing,
        };
        let response: SyncResponse = self.ctx.hooks.call(hook, hooks::encode(&request), &parent).await.map_err(SyncError::from_hook)?;
        let hook_name = hook.kind.name();
        let invalid = |source| SyncError::invalid_response(hook_name, source);
        let uid_label = (self.spec.generate_selector == Some(true)).then(|| ("controller-uid", parent.uid().unwrap_or_default()));
        let rules = Rules {
            controller: "CompositeController",
            field: "children",
            declared_in: "childResources",
            selector: Some(&selector),
            labels: uid_label.into_iter().collect(),
            annotations: Vec::new(),
        };
        let desired =
            children::desired::validate(&self.children, &parent, response.children.unwrap_or_default(), &rules).map_err(invalid)?;
        let events = hooks::hook_events(response.events).map_err(invalid)?;
        let status = crate::parent::response_status(response.status).map_err(invalid)?.unwrap_or_else(|| json!({}));
        let resync_after = crate::parent::resync_after(response.resync_after_seconds);

        // The response is valid: only now are owner references written.
        let mut observed: Vec<Vec<Arc<DynamicObject>>> = Vec::with_capacity(self.children.len());
        for (child_type, claim) in self.children.iter().zip(claims) {
            observed.push(claim.settle(&claimant, &self.ctx.client, child_type).await?);
        }
        if finalizing && response.finalized == Some(true) && has_finalizer {
            self.patch_finalizers(&parent, false).await?;
        }
        let children_result = if manages_children(&parent, finalizing) {
            children::desired::manage(&self.ctx.client, &self.ctx.applier, &self.children, &owner, &observed, desired)
                .await
                .map_err(SyncError::Children)
        } else {
            Ok(())
        };
        self.write_status(&parent, status).await?;
        if !events.is_empty() {
            self.ctx.hook_events(&parent.object_ref(&self.parent.resource), events).await;
        }
        children_result.map(|()| resync_after)
    }

    /// Whether any child type has an orphan this parent's selector matches.
    fn has_adoptable_orphans(&self, parent: &DynamicObject, selector: &LabelSelector) -> Result<bool, SyncError> {
        let namespace = parent.namespace();
        for child_type in &self.children {
            let scope = if child_type.namespaced { namespace.as_deref().unwrap_or_default() } else { "" };
            for orphan in child_type.cache.orphans(Some(scope)) {
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
        let live = self.parent_api(parent).get_opt(&parent.name_any()).await.map_err(|error| SyncError::Parent(Box::new(error)))?;
        Ok(live.is_some_and(|live| live.uid() == parent.uid() && live.metadata.deletion_timestamp.is_none()))
    }

    fn parent_api(&self, parent: &DynamicObject) -> Api<DynamicObject> {
        object_api(&self.ctx.client, &self.parent.resource, parent)
    }

    /// Adds this controller's finalizer to the parent, or removes it.
    async fn patch_finalizers(&self, parent: &DynamicObject, add: bool) -> Result<(), SyncError> {
        patch_finalizer(&self.parent_api(parent), parent, &self.finalizer(), add).await
    }

    /// Writes the hook's status plus `observedGeneration` through the status subresource,
    /// only if it differs from the parent's current status.
    async fn write_status(&self, parent: &DynamicObject, mut status: Value) -> Result<(), SyncError> {
        status["observedGeneration"] = json!(parent.metadata.generation.unwrap_or(0));
        if parent.data.get("status") == Some(&status) {
            return Ok(());
        }
        let operation = json!({ "op": "add", "path": "/status", "value": status });
        patch_guarded(&self.parent_api(parent), parent, vec![operation], true).await
    }
}
