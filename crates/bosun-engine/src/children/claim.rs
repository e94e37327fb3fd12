//! Claiming children by Kubernetes' ControllerRef rules: a parent controls the objects whose
//! controller owner reference names its UID. It *adopts* orphans (no controller) that match
//! its selector, and *releases* the objects it controls that no longer match, so another
//! parent can adopt them. Objects controlled by someone else are never touched.
//!
//! Adoption and release are JSON patches with a `test` of the `resourceVersion`: they change
//! only the owner references, and fail rather than overwrite a concurrent change.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::ChildType;
use crate::selector;

/// Why claiming failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
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
pub struct Claimant<'a> {
    /// The parent.
    pub parent: &'a DynamicObject,
    /// Its controller reference, as put on adopted children.
    pub owner: &'a Value,
    /// Which children it selects.
    pub selector: &'a LabelSelector,
    /// Whether adoption is allowed: the parent exists, is not being deleted, and an uncached
    /// read confirmed both (Metacontroller's check against adopting for a deleted parent).
    pub may_adopt: bool,
}

fn labels_of(object: &DynamicObject) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    object.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

fn controller_index(object: &DynamicObject) -> Option<usize> {
    object.owner_references().iter().position(|reference| reference.controller == Some(true))
}

impl Claimant<'_> {
    /// The children of `child_type` this parent controls after adopting and releasing.
    pub async fn claim(&self, client: &kube::Client, child_type: &ChildType) -> Result<Vec<Arc<DynamicObject>>, ClaimError> {
        let uid = self.parent.uid().unwrap_or_default();
        let parent_namespace = self.parent.namespace();
        let deleting = self.parent.metadata.deletion_timestamp.is_some();
        let mut claimed = Vec::new();
        for child in child_type.cache.controlled_by(&uid) {
            // A namespaced parent can only own children in its own namespace.
            if parent_namespace.is_some() && child.namespace() != parent_namespace {
                continue;
            }
            if deleting || selector::matches(self.selector, labels_of(&child))? {
                claimed.push(child);
            } else if let Some(index) = controller_index(&child) {
                self.patch(client, child_type, &child, "releasing", json!({ "op": "remove", "path": format!("/metadata/ownerReferences/{index}") }))
                    .await?;
            }
        }
        if !self.may_adopt {
            return Ok(claimed);
        }
        let orphans = if child_type.namespaced {
            child_type.cache.orphans(Some(parent_namespace.as_deref().unwrap_or_default()))
        } else {
            child_type.cache.orphans(Some(""))
        };
        for orphan in orphans {
            if orphan.metadata.deletion_timestamp.is_some() || !selector::matches(self.selector, labels_of(&orphan))? {
                continue;
            }
            // A cluster-scoped parent adopts across namespaces; a namespaced one only its own.
            if parent_namespace.is_some() && orphan.namespace() != parent_namespace {
                continue;
            }
            let operation = if orphan.metadata.owner_references.is_some() {
                json!({ "op": "add", "path": "/metadata/ownerReferences/-", "value": self.owner })
            } else {
                json!({ "op": "add", "path": "/metadata/ownerReferences", "value": [self.owner] })
            };
            if let Some(adopted) = self.patch(client, child_type, &orphan, "adopting", operation).await? {
                claimed.push(Arc::new(adopted));
            }
        }
        Ok(claimed)
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
