//! The `metacontroller.k8s.io/v1alpha1` API: CompositeController, DecoratorController and
//! ControllerRevision, with the field names, enums and short names of Metacontroller v4.17, so
//! that existing manifests apply unchanged. The CRDs are generated from these types
//! ([`crds`]); `deploy/crds/` holds them, checked by a test to be current.

mod composite;
mod controller_revision;
mod decorator;
mod hook;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use composite::*;
pub use controller_revision::*;
pub use decorator::*;
pub use hook::*;

/// The API group of every bosun engine resource, shared with Metacontroller.
pub const GROUP: &str = "metacontroller.k8s.io";
/// The only API version.
pub const VERSION: &str = "v1alpha1";
/// Required by the API server for CRDs in a `*.k8s.io` group; the value Metacontroller uses.
pub const API_APPROVED_ANNOTATION: (&str, &str) = ("api-approved.kubernetes.io", "unapproved, request not yet submitted");

/// The three CRDs, in the order they should be applied.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![CompositeController::crd(), DecoratorController::crd(), controller_revision_crd()]
}

/// The CRDs as one multi-document YAML stream, as committed under `deploy/crds/`.
pub fn crds_yaml() -> String {
    crds().iter().map(|crd| serde_yaml::to_string(crd).expect("a CRD serializes")).collect::<Vec<_>>().join("---\n")
}

/// A rule naming a resource by `apiVersion` and plural `resource`, as every rule does.
pub trait ResourceRule {
    /// `group/version`, or `version` for the core group.
    fn api_version(&self) -> &str;
    /// The lowercase plural resource name.
    fn resource(&self) -> &str;
}

macro_rules! resource_rule {
    ($($rule:ty),* $(,)?) => {$(
        impl ResourceRule for $rule {
            fn api_version(&self) -> &str { &self.api_version }
            fn resource(&self) -> &str { &self.resource }
        }
    )*};
}

resource_rule!(
    CompositeControllerParentResourceRule,
    CompositeControllerChildResourceRule,
    DecoratorControllerResourceRule,
    DecoratorControllerAttachmentRule,
);
