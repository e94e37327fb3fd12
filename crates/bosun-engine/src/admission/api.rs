//! The `AdmissionController` (`bosun.dev/v1alpha1`, cluster-scoped): which objects the API
//! server sends for admission, to which `validate` and `mutate` hooks, how it behaves when they
//! do not answer, and which CRDs' versions its `convert` hook converts between. Metacontroller's
//! CRDs are left untouched.

use k8s_openapi::api::admissionregistration::v1::RuleWithOperations;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{EndpointConfig, Hook};

/// Objects to validate, default and convert through hooks.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "bosun.dev",
    version = "v1alpha1",
    kind = "AdmissionController",
    plural = "admissioncontrollers",
    singular = "admissioncontroller",
    shortname = "adc",
    status = "AdmissionControllerStatus",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionControllerSpec {
    /// The objects the API server sends to the `validate` and `mutate` hooks: API groups,
    /// versions, resources and operations, as in a ValidatingWebhookConfiguration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleWithOperations>,
    /// Only objects in namespaces whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Only objects whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
    /// What the API server does when a hook cannot be reached, fails or times out: `Fail`
    /// refuses the request (the default), `Ignore` admits it unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// How long the API server waits for a verdict, 1 to 30 seconds (default 10). The hook's
    /// own `timeout` should be shorter: bosun answers within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// The hooks.
    pub hooks: AdmissionControllerHooks,
    /// The CRDs whose versions the `convert` hook converts between: bosun sets their
    /// `spec.conversion` to call it, and puts `None` back when this controller goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Conversion>,
    /// TLS and authentication per hook host, as for CompositeControllers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_configs: Option<Vec<EndpointConfig>>,
}

/// The API server's behaviour when a hook does not give a verdict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FailurePolicy {
    /// Refuse the request.
    #[default]
    Fail,
    /// Admit the request unchanged.
    Ignore,
}

impl FailurePolicy {
    /// The name Kubernetes uses.
    pub fn name(self) -> &'static str {
        match self {
            FailurePolicy::Fail => "Fail",
            FailurePolicy::Ignore => "Ignore",
        }
    }
}

/// The hooks of an AdmissionController; at least one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionControllerHooks {
    /// Says whether an object may be stored, and why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Hook>,
    /// Returns the object as it should be stored (defaults filled in); bosun sends the API
    /// server the JSON patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutate: Option<Hook>,
    /// Converts objects between the versions of the CRDs in `conversion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert: Option<Hook>,
}

/// Which CRDs the `convert` hook serves.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversion {
    /// CustomResourceDefinition names, such as `podservices.examples.bosun.dev`.
    pub custom_resource_definitions: Vec<String>,
}

/// What bosun has wired for the AdmissionController.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionControllerStatus {
    /// `Ready`: the webhook configurations and conversion settings are in place (or why not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
