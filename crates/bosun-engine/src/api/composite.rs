//! CompositeController: a parent resource whose children a sync hook declares.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{EndpointConfig, Hook};

/// The desired behaviour of a CompositeController.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metacontroller.k8s.io",
    version = "v1alpha1",
    kind = "CompositeController",
    plural = "compositecontrollers",
    singular = "compositecontroller",
    shortname = "cc",
    shortname = "cctl",
    status = "CompositeControllerStatus",
    annotation("api-approved.kubernetes.io", "unapproved, request not yet submitted"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parentResource.resource"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerSpec {
    /// The parent resource: a CRD with the status subresource.
    pub parent_resource: CompositeControllerParentResourceRule,
    /// The child resources the hooks manage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_resources: Option<Vec<CompositeControllerChildResourceRule>>,
    /// The hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<CompositeControllerHooks>,
    /// TLS and authentication per hook host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_configs: Option<Vec<EndpointConfig>>,
    /// Sync every parent this often, in addition to event-driven syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync_period_seconds: Option<i32>,
    /// Select children by a `controller-uid: <parent UID>` label instead of `spec.selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_selector: Option<bool>,
}

/// The CompositeController's status; it is never written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct CompositeControllerStatus {}

/// Which parent objects a CompositeController handles.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerParentResourceRule {
    /// `group/version` of the parent resource.
    pub api_version: String,
    /// The parent resource's plural name.
    pub resource: String,
    /// Parent fields that make up a revision (rolling updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history: Option<CompositeControllerRevisionHistory>,
    /// Only parents whose labels match are handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Do not sync when only a parent's status changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_status_changes: Option<bool>,
}

/// Parent fields that make up a revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerRevisionHistory {
    /// Dotted paths such as `spec.template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_paths: Option<Vec<String>>,
}

/// A type of child.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerChildResourceRule {
    /// `group/version`, or `v1` for the core group.
    pub api_version: String,
    /// The plural resource name.
    pub resource: String,
    /// How children of this type are updated when the hook's desired state differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<CompositeControllerChildUpdateStrategy>,
}

impl CompositeControllerChildResourceRule {
    /// The update method, `OnDelete` when unset.
    pub fn method(&self) -> ChildUpdateMethod {
        self.update_strategy.as_ref().and_then(|strategy| strategy.method).unwrap_or_default()
    }
}

/// How children of one type are updated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerChildUpdateStrategy {
    /// The update method; `OnDelete` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<ChildUpdateMethod>,
    /// Conditions a child must meet before a rolling update moves on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_checks: Option<ChildUpdateStatusChecks>,
}

/// How a child that differs from the hook's desired state is brought in line.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ChildUpdateMethod {
    /// Leave it until someone deletes it; the replacement has the new state.
    #[default]
    OnDelete,
    /// Delete it now; the next sync creates the new one.
    Recreate,
    /// Update it in place.
    InPlace,
    /// Recreate, one child at a time, each once the ones before it are ready (a rolling update).
    RollingRecreate,
    /// Update in place, one child at a time, each once the ones before it are ready (a rolling
    /// update).
    RollingInPlace,
}

impl ChildUpdateMethod {
    /// Whether this is one of the rolling methods.
    pub fn is_rolling(self) -> bool {
        matches!(self, ChildUpdateMethod::RollingRecreate | ChildUpdateMethod::RollingInPlace)
    }
}

/// Status checks for rolling updates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildUpdateStatusChecks {
    /// Conditions that must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<StatusConditionCheck>>,
}

/// One status condition a child must have.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusConditionCheck {
    /// The condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// The status it must have, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The reason it must have, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A CompositeController's hooks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompositeControllerHooks {
    /// Chooses related objects for each parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customize: Option<Hook>,
    /// Declares the desired children and status of a parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Hook>,
    /// Cleans up before a parent is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalize: Option<Hook>,
    /// Accepted for compatibility; Metacontroller never calls it either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_update_child: Option<Hook>,
    /// Accepted for compatibility; Metacontroller never calls it either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_update_child: Option<Hook>,
}
