//! Children: the objects a parent's hook declares. Claiming them by owner reference, or by
//! label for children outside their parent's namespace ([`claim`], [`anywhere`]), validating and bringing about what the hook declares ([`desired`]), merging
//! desired onto observed state ([`merge`]), and writing them with the chosen apply strategy
//! ([`apply`]).

pub(crate) mod anywhere;
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
    /// How its objects are tied to their parent.
    pub tie: Tie,
}

/// How a child is tied to its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tie {
    /// By a controller owner reference: in the parent's namespace (or under a cluster-scoped
    /// parent), collected by the garbage collector.
    Owner,
    /// By the label [`bosun_runtime::cache::CONTROLLER_UID_LABEL`]: anywhere, deleted by the
    /// engine when the parent goes (see [`anywhere`]).
    Label,
}

impl ChildType {
    /// The child type of `resolved`, declared as `api_version`, written with `method`, tied
    /// to parents by `tie`, read from its cache in `caches`.
    pub(crate) fn of(
        resolved: ResolvedResource,
        api_version: &str,
        method: ChildUpdateMethod,
        tie: Tie,
        caches: &SharedCaches,
    ) -> ChildType {
        ChildType {
            group_key: crate::hooks::group_key(&resolved.resource.kind, api_version),
            cache: caches.cache(&resolved.resource),
            resource: resolved.resource,
            namespaced: resolved.namespaced,
            method,
            tie,
        }
    }

    /// The orphans of this type a parent in `parent_namespace` may adopt by its selector: a
    /// namespaced parent's in its own namespace, a cluster-scoped parent's anywhere (as
    /// Metacontroller). No cluster-scoped orphan goes to a namespaced parent: no owner
    /// reference could tie them. Children tied by label are adopted only when the hook asks
    /// for them by name ([`Claims::adopt_desired`]): a selector must not reach into every
    /// namespace.
    pub(crate) fn orphans_for(&self, parent_namespace: Option<&str>) -> Vec<Arc<DynamicObject>> {
        match (self.tie, self.namespaced, parent_namespace) {
            (Tie::Label, ..) => Vec::new(),
            (Tie::Owner, true, namespace) => self.cache.orphans(namespace),
            (Tie::Owner, false, None) => self.cache.orphans(Some("")),
            (Tie::Owner, false, Some(_)) => Vec::new(),
        }
    }

    /// The children of this type the parent `uid` in `parent_namespace` controls: tied by
    /// label, anywhere; by owner reference, in its namespace only (a namespaced parent cannot
    /// own objects elsewhere).
    pub(crate) fn controlled_by(&self, uid: &str, parent_namespace: Option<&str>) -> Vec<Arc<DynamicObject>> {
        let mut children = self.cache.controlled_by(uid);
        let tied = |child: &DynamicObject| match self.tie {
            Tie::Label => child.owner_references().iter().all(|owner| owner.controller != Some(true)),
            Tie::Owner => {
                child.owner_references().iter().any(|owner| owner.controller == Some(true))
                    && (parent_namespace.is_none() || child.namespace().as_deref() == parent_namespace)
            }
        };
        children.retain(|child| tied(child));
        children
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
