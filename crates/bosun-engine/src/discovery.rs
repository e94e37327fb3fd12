//! Resolving a rule's `apiVersion` and plural `resource` to a type the API server serves: its
//! kind, scope, and whether it has a status subresource. Answers are cached per group-version
//! and looked up again after the discovery interval, so CRDs installed later are found.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::ApiResource;
use kube::core::GroupVersion;
use kube::discovery::{ApiCapabilities, Scope, pinned_group};

/// A served resource type.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedResource {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether `status` is a subresource.
    pub has_status: bool,
}

/// Why a rule's resource could not be resolved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    /// `apiVersion` is not `group/version` or `version`.
    #[error("apiVersion {0:?} is not of the form group/version (or v1 for the core group)")]
    ApiVersion(String),
    /// The group-version is served, but not this resource.
    #[error(
        "the API server does not serve resource {resource:?} in {api_version} (is its CRD installed, and `resource` the lowercase plural?)"
    )]
    UnknownResource {
        /// The rule's apiVersion.
        api_version: String,
        /// The rule's resource.
        resource: String,
    },
    /// Discovery itself failed (including an unknown group-version).
    #[error("discovering {api_version}: {source}")]
    Api {
        /// The rule's apiVersion.
        api_version: String,
        /// The API error.
        source: kube::Error,
    },
}

/// The resources of one group-version, and when they were discovered.
type Discovered = (Instant, Vec<(ApiResource, ApiCapabilities)>);

/// Cached discovery.
pub(crate) struct Discovery {
    client: kube::Client,
    interval: Duration,
    groups: Mutex<HashMap<String, Discovered>>,
}

impl Discovery {
    /// Discovery through `client`, refreshing a group-version at most every `interval`.
    pub(crate) fn new(client: kube::Client, interval: Duration) -> Self {
        Discovery { client, interval, groups: Mutex::default() }
    }

    /// Resolves `resource` in `api_version`, asking the API server when the cached answer is
    /// older than the interval or does not have it.
    pub(crate) async fn resolve(&self, api_version: &str, resource: &str) -> Result<ResolvedResource, DiscoveryError> {
        let group_version: GroupVersion = api_version.parse().map_err(|_| DiscoveryError::ApiVersion(api_version.to_owned()))?;
        let cached = {
            let groups = self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            groups.get(api_version).and_then(|(at, resources)| {
                let fresh = at.elapsed() < self.interval;
                find(resources, resource).filter(|_| fresh)
            })
        };
        if let Some(found) = cached {
            return Ok(found);
        }
        let group = pinned_group(&self.client, &group_version)
            .await
            .map_err(|source| DiscoveryError::Api { api_version: api_version.to_owned(), source })?;
        let resources = group.versioned_resources(&group_version.version);
        let found = find(&resources, resource);
        self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(api_version.to_owned(), (Instant::now(), resources));
        found.ok_or_else(|| DiscoveryError::UnknownResource { api_version: api_version.to_owned(), resource: resource.to_owned() })
    }
}

fn find(resources: &[(ApiResource, ApiCapabilities)], plural: &str) -> Option<ResolvedResource> {
    resources.iter().find(|(resource, _)| resource.plural == plural).map(|(resource, capabilities)| ResolvedResource {
        resource: resource.clone(),
        namespaced: capabilities.scope == Scope::Namespaced,
        has_status: capabilities.subresources.iter().any(|(subresource, _)| subresource.plural == "status"),
    })
}
