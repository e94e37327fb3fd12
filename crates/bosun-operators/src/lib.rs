//! Native operators: controllers written in Rust on bosun-runtime rather than as hooks for the
//! engine, each with its CRD generated from its Rust types.
//!
//! - [`configmapsync`]: copies a ConfigMap from its namespace to others and keeps the copies
//!   in sync.

#![warn(missing_docs)]

pub mod configmapsync;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CRDs of every native operator.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![configmapsync::ConfigMapSync::crd()]
}

/// Installs (or updates) the CRDs of every native operator and waits until they are served.
pub async fn install_crds(client: &kube::Client) -> Result<(), kube::Error> {
    bosun_runtime::crds::install(client, &crds()).await
}
