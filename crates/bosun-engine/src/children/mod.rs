//! Children: the objects a parent's hook declares. Claiming them by owner reference
//! ([`claim`]), validating and bringing about what the hook declares ([`desired`]), merging
//! desired onto observed state ([`merge`]), and writing them with the chosen apply strategy
//! ([`apply`]).

pub(crate) mod apply;
pub(crate) mod claim;
pub(crate) mod desired;
pub(crate) mod merge;

use std::sync::Arc;

use bosun_runtime::{Cache, SharedCaches};
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

use crate::api::ChildUpdateMethod;
use crate::discovery::ResolvedResource;

pub use apply::ApplyStrategy;
pub(crate) use apply::{Applied, Applier, ApplyError};
pub(crate) use claim::{ClaimError, Claimant, Claims};
pub(crate) use desired::Rules;

/// Metadata the server owns: a hook's desired state never sets it (what it echoes is removed)
/// and comparisons of desired and observed children ignore it.
pub(crate) const SYSTEM_METADATA: [&str; 8] = [
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
];

/// A resolved type of child (or attachment): what the rule names, and its shared cache.
#[derive(Clone)]
pub(crate) struct ChildType {
    /// The resource.
    pub resource: ApiResource,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// How differing children are updated.
    pub method: ChildUpdateMethod,
    /// The outer key of object maps: `Kind.apiVersion`.
    pub group_key: String,
    /// Every object of the type.
    pub cache: Arc<Cache>,
}

impl ChildType {
    /// The child type of `resolved`, declared as `api_version`, written with `method`, read
    /// from its cache in `caches`.
    pub(crate) fn of(resolved: ResolvedResource, api_version: &str, method: ChildUpdateMethod, caches: &SharedCaches) -> ChildType {
        ChildType {
            group_key: crate::hooks::group_key(&resolved.resource.kind, api_version),
            cache: caches.cache(&resolved.resource),
            resource: resolved.resource,
            namespaced: resolved.namespaced,
            method,
        }
    }

    /// The orphans of this type a parent in `parent_namespace` may adopt: a namespaced parent's
    /// in its own namespace, a cluster-scoped parent's anywhere (as Metacontroller). No
    /// cluster-scoped orphan goes to a namespaced parent: no owner reference could tie them.
    pub(crate) fn orphans_for(&self, parent_namespace: Option<&str>) -> Vec<Arc<DynamicObject>> {
        match (self.namespaced, parent_namespace) {
            (true, namespace) => self.cache.orphans(namespace),
            (false, None) => self.cache.orphans(Some("")),
            (false, Some(_)) => Vec::new(),
        }
    }
}

impl std::fmt::Debug for ChildType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildType").field("group_key", &self.group_key).field("method", &self.method).finish()
    }
}

/// The controller reference a parent puts on its children.
pub(crate) fn controller_reference(parent: &DynamicObject, resource: &ApiResource) -> Value {
    json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "name": parent.name_any(),
        "uid": parent.uid().unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}
