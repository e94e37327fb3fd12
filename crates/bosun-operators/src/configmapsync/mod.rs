//! ConfigMapSync: copies a ConfigMap from the ConfigMapSync's own namespace to a set of
//! destination namespaces — named, or chosen by a label selector over namespaces — and keeps
//! every copy equal to the source: source changes propagate, hand edits and deletions of a
//! copy are undone, namespaces that leave the set lose their copy, and deleting the
//! ConfigMapSync removes the copies (unless `deletionPolicy: Orphan`).
//!
//! Copies carry the label `app.kubernetes.io/managed-by: bosun-configmapsync` and the
//! annotation `configmapsync.bosun.dev/owner: <namespace>/<name>`; a ConfigMap without that
//! annotation is never overwritten or deleted. The source must live in the ConfigMapSync's
//! namespace, so creating a ConfigMapSync never reveals a ConfigMap its author could not read.
//!
//! A namespace receives copies only when it consents: its annotation
//! `configmapsync.bosun.dev/accept-from` names the source namespaces it accepts (or `*`), and
//! a name is bound to the namespace it stood for when first used ([`consent`]).
//! System namespaces (`kube-*` and the operator's own) never receive copies unless the
//! operator is configured to allow them, and a ConfigMapSync may reach only so many
//! namespaces with only so large a source ([`ConfigMapSyncOptions`]).
//!
//! - [`controller`]: what is watched, and how a change finds the ConfigMapSyncs it concerns.
//! - [`sync`]: the reconcile of one ConfigMapSync.
//! - `contents`: what it knows of the ConfigMaps it reads, by resourceVersion.
//! - `consent`: consent bound to the namespace it named.

pub mod consent;
mod contents;
pub mod controller;
pub mod sync;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use consent::CONSENT_RECORD;
pub use controller::{ConfigMapSyncController, ConfigMapSyncOptions, DEFAULT_MAX_DESTINATIONS, DEFAULT_MAX_SOURCE_BYTES};

/// The label every copy carries, for `kubectl get configmaps -l …`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "bosun-configmapsync";
/// The annotation naming a copy's ConfigMapSync as `<namespace>/<name>`: what makes a copy
/// managed.
pub const OWNER_ANNOTATION: &str = "configmapsync.bosun.dev/owner";
/// The namespace annotation that consents to copies: a comma-separated list of the source
/// namespaces whose ConfigMapSyncs may write into this namespace, or `*` for any.
pub const ACCEPT_FROM_ANNOTATION: &str = "configmapsync.bosun.dev/accept-from";
/// The finalizer that lets the copies be removed before the ConfigMapSync goes (owner
/// references cannot cross namespaces).
pub const FINALIZER: &str = "configmapsync.bosun.dev/copies";

/// Copy a ConfigMap from this namespace to other namespaces and keep the copies in sync.
// Several printer columns share `type_ = "string"`, which the lint mistakes for a repeat.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "bosun.dev",
    version = "v1alpha1",
    kind = "ConfigMapSync",
    plural = "configmapsyncs",
    singular = "configmapsync",
    shortname = "cms",
    namespaced,
    status = "ConfigMapSyncStatus",
    doc = "Copies a ConfigMap from this namespace to other namespaces and keeps the copies in sync.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.configMapName"),
    printcolumn(
        name = "Destinations",
        type_ = "string",
        json_path = ".status.destinations",
        description = "namespaces in sync / namespaces selected"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.destinationNamespace) || has(self.destinationNamespaces) || has(self.namespaceSelector)",
    "message": "set destinationNamespace, destinationNamespaces or namespaceSelector",
}]))]
pub struct ConfigMapSyncSpec {
    /// The ConfigMap to copy, in this ConfigMapSync's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: String,
    /// The source's namespace. Optional, and if set it must be this ConfigMapSync's own
    /// namespace: a ConfigMapSync cannot read another namespace's ConfigMaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    /// One destination namespace (the original tutorial's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_namespace: Option<String>,
    /// Destination namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_namespaces: Option<Vec<String>>,
    /// Every namespace whose labels match and that accepts copies from this namespace is a
    /// destination, including namespaces created later. An empty selector (`{}`) selects
    /// every namespace that accepts copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// What happens to the copies when this ConfigMapSync is deleted: `Delete` (the default)
    /// removes them, `Orphan` keeps them as unmanaged ConfigMaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// What happens to the copies when their ConfigMapSync is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Remove them.
    #[default]
    Delete,
    /// Keep them, no longer managed.
    Orphan,
}

/// What the operator last observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSyncStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When copies were last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// `<in sync>/<selected>`, e.g. `3/4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<String>,
    /// The destination namespaces whose copy equals the source, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synced_namespaces: Vec<String>,
    /// The namespaces named as destinations that receive no copy because they do not accept
    /// copies from this namespace or are system namespaces, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_namespaces: Vec<String>,
    /// `namespace/name` of every copy this ConfigMapSync wrote and has not removed, sorted:
    /// what it deletes when a copy leaves the set or the ConfigMapSync goes. Another ConfigMap
    /// carrying its owner annotation is deleted only if it holds exactly the source's content,
    /// and otherwise released.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<String>,
    /// `Ready`: every selected namespace has an up-to-date copy; if not, the reason says why
    /// (`SourceNotFound`, `CrossNamespaceSource`, `InvalidSelector`, `SourceTooLarge`,
    /// `TooManyDestinations`, `NotAccepted`, `SystemNamespace`, `Conflict`,
    /// `NamespaceNotFound`, `WriteFailed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The CRD as YAML, as committed under `deploy/crds/`.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&<ConfigMapSync as kube::CustomResourceExt>::crd()).expect("a CRD serializes")
}
