//! DecoratorController: adds labels, annotations, status and attachments to existing objects
//! of any kind.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ChildUpdateMethod, EndpointConfig, Hook};

/// The desired behaviour of a DecoratorController.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metacontroller.k8s.io",
    version = "v1alpha1",
    kind = "DecoratorController",
    plural = "decoratorcontrollers",
    singular = "decoratorcontroller",
    shortname = "dec",
    shortname = "decorators",
    status = "DecoratorControllerStatus",
    annotation("api-approved.kubernetes.io", "unapproved, request not yet submitted"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorControllerSpec {
    /// The target resources and which of their objects are decorated.
    pub resources: Vec<DecoratorControllerResourceRule>,
    /// The attachment resources the hooks manage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<DecoratorControllerAttachmentRule>>,
    /// The hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<DecoratorControllerHooks>,
    /// TLS and authentication per hook host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_configs: Option<Vec<EndpointConfig>>,
    /// Sync every target this often, in addition to event-driven syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync_period_seconds: Option<i32>,
}

/// The DecoratorController's status; it is never written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct DecoratorControllerStatus {}

/// A target resource and the selectors its objects must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorControllerResourceRule {
    /// `group/version`, or `v1` for the core group.
    pub api_version: String,
    /// The plural resource name.
    pub resource: String,
    /// Only objects whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Only objects whose annotations match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<AnnotationSelector>,
    /// Do not sync when only a target's status changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_status_changes: Option<bool>,
}

/// A label selector evaluated over annotations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnnotationSelector {
    /// Annotations that must have exactly these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_annotations: Option<BTreeMap<String, String>>,
    /// Requirements over annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// A type of attachment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorControllerAttachmentRule {
    /// `group/version`, or `v1` for the core group.
    pub api_version: String,
    /// The plural resource name.
    pub resource: String,
    /// How attachments of this type are updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<DecoratorControllerAttachmentUpdateStrategy>,
}

/// How attachments of one type are updated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorControllerAttachmentUpdateStrategy {
    /// The update method; `OnDelete` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<ChildUpdateMethod>,
}

/// A DecoratorController's hooks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecoratorControllerHooks {
    /// Chooses related objects for each target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customize: Option<Hook>,
    /// Declares the desired labels, annotations, status and attachments of a target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Hook>,
    /// Cleans up when a target is deleted or stops matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalize: Option<Hook>,
}
