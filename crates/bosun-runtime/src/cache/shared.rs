//! The caches one process shares: one per resource type (and label selector, projection and
//! namespaces), its watch started on first use and stopped when the last user lets go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use kube::Client;
use kube::api::ApiResource;

use super::watch::supervise_watch;
use super::{Cache, Projection};

type CacheKey = (String, String, Option<String>, Option<Projection>, Option<Namespaces>);

/// The namespaces a view's caches watch, sorted; `None` in a view: every namespace.
pub type Namespaces = Arc<[String]>;

/// The process-wide set of caches, one per resource type (and label selector).
#[derive(Clone)]
pub struct SharedCaches {
    client: Client,
    caches: Arc<Mutex<HashMap<CacheKey, Weak<Cache>>>>,
    metrics: Option<crate::Metrics>,
    /// The label selector of the caches this view hands out.
    selector: Option<String>,
    /// The namespaces the caches of namespaced types watch, if not every namespace.
    namespaces: Option<Namespaces>,
}

impl SharedCaches {
    /// Caches that watch through `client`.
    pub fn new(client: Client) -> Self {
        SharedCaches { client, caches: Default::default(), metrics: None, selector: None, namespaces: None }
    }

    /// A view of the same caches that hands out caches of only the objects `selector` (a label
    /// selector, as `kubectl get -l` takes it) matches; a watch apart from the unselected one.
    pub fn selecting(&self, selector: impl Into<String>) -> SharedCaches {
        SharedCaches { selector: Some(selector.into()), ..self.clone() }
    }

    /// The label selector of this view's caches.
    pub fn selector(&self) -> Option<&str> {
        self.selector.as_deref()
    }

    /// A view of the same caches that watches only `namespaces` (one watch per namespace,
    /// merged into one cache): what a process needs that may read only there, with Roles and
    /// no ClusterRole. Its caches are for namespaced types; a cluster-scoped type is read
    /// through [`SharedCaches::cluster_wide`].
    pub fn within(&self, namespaces: impl IntoIterator<Item = impl Into<String>>) -> SharedCaches {
        let mut namespaces: Vec<String> = namespaces.into_iter().map(Into::into).collect();
        namespaces.sort();
        namespaces.dedup();
        SharedCaches { namespaces: Some(namespaces.into()), ..self.clone() }
    }

    /// The namespaces this view's caches watch; `None`: every namespace.
    pub fn namespaces(&self) -> Option<&[String]> {
        self.namespaces.as_deref()
    }

    /// This view without its namespaces: for cluster-scoped types, which no namespace holds.
    pub fn cluster_wide(&self) -> SharedCaches {
        SharedCaches { namespaces: None, ..self.clone() }
    }

    /// The APIs to read `resource`'s objects directly (to list them from the API server) where
    /// this view watches: one per namespace, or one for every namespace — and one for every
    /// namespace when the type is not `namespaced`.
    pub fn apis<K: kube::Resource<DynamicType = ApiResource, Scope = kube::core::DynamicResourceScope>>(
        &self,
        resource: &ApiResource,
        namespaced: bool,
    ) -> Vec<kube::Api<K>> {
        match self.namespaces.as_deref().filter(|_| namespaced) {
            Some(namespaces) => namespaces.iter().map(|namespace| super::api_in(self.client.clone(), Some(namespace), resource)).collect(),
            None => vec![super::api_in(self.client.clone(), None, resource)],
        }
    }

    /// The caches this view has handed out that are still in use.
    pub fn live(&self) -> Vec<Arc<Cache>> {
        let caches = self.caches.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        caches
            .iter()
            .filter(|((_, _, selector, _, namespaces), _)| *selector == self.selector && *namespaces == self.namespaces)
            .filter_map(|(_, cache)| cache.upgrade())
            .collect()
    }

    /// Counts the panics caught on the watches in `metrics` (`bosun_watch_panics_total`).
    pub fn with_metrics(mut self, metrics: &crate::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// The cache of `resource`, watching it from the first call until every returned `Arc` is
    /// dropped.
    pub fn cache(&self, resource: &ApiResource) -> Arc<Cache> {
        self.cache_of(resource, None)
    }

    /// A cache of the metadata of `resource`'s objects: a watch of metadata only (the API
    /// server sends no content), keeping each object's identity and lifecycle and the labels
    /// and annotations whose keys `keep` lists; nothing else of it is read or held. Objects
    /// read from it have no content (`data` is null) and no owner references.
    pub fn metadata(&self, resource: &ApiResource, keep: &[&str]) -> Arc<Cache> {
        let mut keep: Projection = keep.iter().map(|key| (*key).to_owned()).collect();
        keep.sort();
        self.cache_of(resource, Some(keep))
    }

    fn cache_of(&self, resource: &ApiResource, projection: Option<Projection>) -> Arc<Cache> {
        let key =
            (resource.api_version.clone(), resource.plural.clone(), self.selector.clone(), projection.clone(), self.namespaces.clone());
        let mut caches = self.caches.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cache) = caches.get(&key).and_then(Weak::upgrade) {
            return cache;
        }
        caches.retain(|_, cache| cache.strong_count() > 0);
        let cache = Arc::new(Cache {
            resource: resource.clone(),
            selector: self.selector.clone(),
            namespaces: self.namespaces.clone(),
            projection,
            store: RwLock::default(),
            handlers: Mutex::default(),
            next_handler: Default::default(),
            synced: tokio::sync::watch::channel(false).0,
            changed: tokio::sync::Notify::new(),
            watch: Mutex::new(None),
            metrics: self.metrics.clone(),
        });
        let watch = tokio::spawn(supervise_watch(self.client.clone(), Arc::downgrade(&cache)));
        *cache.watch.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(watch);
        caches.insert(key, Arc::downgrade(&cache));
        cache
    }
}
