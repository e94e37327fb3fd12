//! The FooBar custom resource (group `examples.bosun.dev`: the tutorial's `k8s.io` is
//! reserved for Kubernetes' own APIs).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Runs a command once, as a Job.
// Several printer columns share `type_ = "string"`, which the lint mistakes for a repeat.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "examples.bosun.dev",
    version = "v1",
    kind = "FooBar",
    plural = "foobars",
    singular = "foobar",
    namespaced,
    status = "FooBarStatus",
    doc = "Runs spec.command once, as a Job owned by the FooBar, and reports the Job's state.",
    printcolumn(name = "Command", type_ = "string", json_path = ".spec.command"),
    printcolumn(name = "Job", type_ = "string", json_path = ".status.job"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct FooBarSpec {
    /// Given to the command as `$FOO`.
    pub foo: String,
    /// Given to the command as `$BARZ`.
    pub barz: String,
    /// The shell command to run (`sh -c`).
    #[schemars(length(min = 1))]
    pub command: String,
    /// The image to run it in; `busybox:1.37` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// What became of the command.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FooBarStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Job running the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// `Pending` (no pod has started), `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why, when the Job failed or could not be created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl FooBarSpec {
    /// The image the Job runs.
    pub fn image(&self) -> &str {
        self.image.as_deref().unwrap_or("busybox:1.37")
    }
}
