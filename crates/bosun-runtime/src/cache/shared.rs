//! The caches one process shares: one per resource type (and label selector, and projection),
//! its watch started on first use and stopped when the last user lets go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use kube::Client;
use kube::api::ApiResource;

use super::watch::supervise_watch;
use super::{Cache, Projection};

type CacheKey = (String, String, Option<String>, Option<Projection>);

/// The process-wide set of caches, one per resource type (and label selector).
#[derive(Clone)]
pub struct SharedCaches {
    client: Client,
    caches: Arc<Mutex<HashMap<CacheKey, Weak<Cache>>>>,
    metrics: Option<crate::Metrics>,
    /// The label selector of the caches this view hands out.
    selector: Option<String>,
}

impl SharedCaches {
    /// Caches that watch through `client`.
    pub fn new(client: Client) -> Self {
        SharedCaches { client, caches: Default::default(), metrics: None, selector: None }
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

    /// The caches this view has handed out that are still in use.
    pub fn live(&self) -> Vec<Arc<Cache>> {
        let caches = self.caches.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        caches.iter().filter(|((_, _, selector, _), _)| *selector == self.selector).filter_map(|(_, cache)| cache.upgrade()).collect()
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
        let key = (resource.api_version.clone(), resource.plural.clone(), self.selector.clone(), projection.clone());
        let mut caches = self.caches.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cache) = caches.get(&key).and_then(Weak::upgrade) {
            return cache;
        }
        caches.retain(|_, cache| cache.strong_count() > 0);
        let cache = Arc::new(Cache {
            resource: resource.clone(),
            selector: self.selector.clone(),
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
