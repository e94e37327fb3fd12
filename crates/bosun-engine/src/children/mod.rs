//! Children: the objects a parent's hook declares. Claiming them by owner reference
//! ([`claim`]), validating and bringing about what the hook declares ([`desired`]), merging
//! desired onto observed state ([`merge`]), and writing them with the chosen apply strategy
//! ([`apply`]).

pub(crate) mod apply;
pub(crate) mod claim;
pub(crate) mod desired;
pub(crate) mod merge;

use std::sync::Arc;

use bosun_runtime::Cache;
use kube::api::{ApiResource, DynamicObject};

use crate::api::ChildUpdateMethod;

pub use apply::ApplyStrategy;
pub(crate) use apply::{Applied, Applier, ApplyError};
pub(crate) use claim::{Claim, ClaimError, Claimant};
pub(crate) use desired::Rules;

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
