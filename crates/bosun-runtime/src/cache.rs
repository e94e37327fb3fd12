//! Shared watch caches: one watch per resource type for the whole process, however many
//! controllers read it, kept as an in-memory store with the indexes controllers need.
//!
//! A [`Cache`] holds every object of one resource type, indexed by namespace and by the UID of
//! each object's controller owner, plus any custom index a controller adds
//! ([`Cache::add_index`], controller-runtime's field indexers), and tells subscribed
//! [`Handler`]s about every change. [`SharedCaches`] hands out the cache of a resource type,
//! starting its watch on first use and stopping it when the last user lets go. A view of the
//! caches can select objects by label ([`SharedCaches::selecting`]): a shard of a sharded
//! controller watches only the objects labelled for it.
//!
//! Objects are kept as their JSON text and parsed again on every read: a parsed
//! `DynamicObject` takes five to seven times the memory of its text (every small map is a tree
//! node), and reads are few — a sync reads its parent and its children, not the whole cache.
//! Managed fields are dropped on the way in: no controller reads them, and they are often the
//! largest part of an object.
//!
//! An object that cannot be parsed — nested deeper than serde_json's 128 levels, which a
//! custom resource with `x-kubernetes-preserve-unknown-fields` allows — is left out of the
//! cache with a warning, instead of failing the whole list, and so the cache, for every other
//! object of its type.
//!
//! A controller that needs only to know which objects exist can watch their metadata instead
//! ([`SharedCaches::metadata`]): the API server sends no content, and the cache keeps each
//! object's identity, lifecycle and the labels and annotations the controller names — so what
//! anyone who may create such objects puts in them costs the process almost nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, PartialObjectMeta, TypeMeta};
use kube::core::DynamicResourceScope;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Deserialize;

/// Identifies an object within its resource type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The namespace, or `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `object`.
    pub fn of(object: &DynamicObject) -> ObjectKey {
        ObjectKey { namespace: object.namespace(), name: object.name_any() }
    }
}

impl std::fmt::Display for ObjectKey {
    /// `namespace/name`, or `name` for a cluster-scoped object.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A change to a cache.
#[derive(Debug)]
pub enum CacheEvent<'a> {
    /// An object was added (`old` is `None`) or changed.
    Applied {
        /// The object before the change.
        old: Option<&'a Arc<DynamicObject>>,
        /// The object now.
        new: &'a Arc<DynamicObject>,
    },
    /// An object was deleted.
    Deleted(&'a Arc<DynamicObject>),
}

/// Called for every change, on the cache's watch task: it should only map the change to keys
/// and queue them, never block.
pub type Handler = Arc<dyn Fn(&CacheEvent<'_>) + Send + Sync>;

/// The UID of `object`'s controller owner, if it has one.
pub fn controller_uid(object: &DynamicObject) -> Option<&str> {
    object.metadata.owner_references.as_deref()?.iter().find(|owner| owner.controller == Some(true)).map(|owner| owner.uid.as_str())
}

/// The values under which a custom index finds an object (none: it is not in the index).
pub type Indexer = Arc<dyn Fn(&DynamicObject) -> Vec<String> + Send + Sync>;

/// A key as the store holds it: one allocation shared by the object map and every index.
type SharedKey = Arc<ObjectKey>;

/// A custom index: its function and the objects under each value.
#[derive(Clone)]
struct Index {
    indexer: Indexer,
    entries: HashMap<String, HashSet<SharedKey>>,
}

impl Index {
    fn add(&mut self, key: &SharedKey, object: &DynamicObject) {
        for value in (self.indexer)(object) {
            self.entries.entry(value).or_default().insert(key.clone());
        }
    }
}

/// An object as the store keeps it.
struct Entry {
    json: Box<str>,
    resource_version: Option<Box<str>>,
}

impl Entry {
    fn encode(object: &DynamicObject) -> Entry {
        Entry {
            json: serde_json::to_string(object).expect("a DynamicObject serializes").into(),
            resource_version: object.metadata.resource_version.as_deref().map(Into::into),
        }
    }

    fn decode(&self) -> Arc<DynamicObject> {
        Arc::new(parse(&self.json).expect("the cache parses the JSON it wrote"))
    }
}

/// Parses an object as `DynamicObject`'s own decoding does, in one pass: that one, through
/// serde's `flatten`, first copies the whole object into an intermediate tree. Reads and
/// watch events parse every object they meet, so this is most of a cache's cost.
fn parse(json: &str) -> serde_json::Result<DynamicObject> {
    struct Fields;
    impl<'de> serde::de::Visitor<'de> for Fields {
        type Value = DynamicObject;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a Kubernetes object")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut fields: A) -> Result<DynamicObject, A::Error> {
            let (mut api_version, mut kind, mut metadata) = (None, None, ObjectMeta::default());
            let mut data = serde_json::Map::new();
            while let Some(field) = fields.next_key::<String>()? {
                match field.as_str() {
                    "apiVersion" => api_version = Some(fields.next_value::<serde_json::Value>()?),
                    "kind" => kind = Some(fields.next_value::<serde_json::Value>()?),
                    "metadata" => metadata = fields.next_value()?,
                    _ => {
                        data.insert(field, fields.next_value()?);
                    }
                }
            }
            // Incomplete or mistyped, the type is dropped, as `DynamicObject` drops it.
            let types = match (api_version, kind) {
                (Some(serde_json::Value::String(api_version)), Some(serde_json::Value::String(kind))) => {
                    Some(TypeMeta { api_version, kind })
                }
                _ => None,
            };
            Ok(DynamicObject { types, metadata, data: serde_json::Value::Object(data) })
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let object = serde::Deserializer::deserialize_map(&mut deserializer, Fields)?;
    deserializer.end()?;
    Ok(object)
}

#[derive(Default)]
struct Store {
    objects: HashMap<SharedKey, Entry>,
    /// Controller owner UID → the objects it controls.
    by_controller: HashMap<String, HashSet<SharedKey>>,
    /// Namespace (`""` for cluster-scoped objects) → the objects without a controller owner.
    orphans: HashMap<String, HashSet<SharedKey>>,
    /// Namespace (`""` for cluster-scoped objects) → its objects.
    by_namespace: HashMap<String, HashSet<SharedKey>>,
    /// Custom indexes by name.
    indexes: HashMap<String, Index>,
}

impl Store {
    /// An empty store with the same custom indexes.
    fn empty_like(&self) -> Store {
        let indexes = self
            .indexes
            .iter()
            .map(|(name, index)| (name.clone(), Index { indexer: index.indexer.clone(), entries: HashMap::new() }))
            .collect();
        Store { indexes, ..Store::default() }
    }

    /// Stores `object`, returning the object it replaces.
    fn insert(&mut self, object: &DynamicObject) -> Option<Arc<DynamicObject>> {
        let key = Arc::new(ObjectKey::of(object));
        let old = self.remove(&key);
        let namespace = || key.namespace.clone().unwrap_or_default();
        match controller_uid(object) {
            Some(uid) => self.by_controller.entry(uid.to_owned()).or_default().insert(key.clone()),
            None => self.orphans.entry(namespace()).or_default().insert(key.clone()),
        };
        self.by_namespace.entry(namespace()).or_default().insert(key.clone());
        for index in self.indexes.values_mut() {
            index.add(&key, object);
        }
        self.objects.insert(key, Entry::encode(object));
        old
    }

    /// Adds the index `name`, built over the objects stored.
    fn add_index(&mut self, name: String, indexer: Indexer) {
        let mut index = Index { indexer, entries: HashMap::new() };
        for (key, entry) in &self.objects {
            index.add(key, &entry.decode());
        }
        self.indexes.insert(name, index);
    }

    /// Decodes the objects under `keys`.
    fn decode<'a>(&self, keys: impl IntoIterator<Item = &'a SharedKey>) -> Vec<Arc<DynamicObject>> {
        keys.into_iter().filter_map(|key| self.objects.get(key).map(Entry::decode)).collect()
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<DynamicObject>> {
        let old = self.objects.remove(key)?.decode();
        let namespace = key.namespace.clone().unwrap_or_default();
        if let Some(keys) = self.by_namespace.get_mut(&namespace) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_namespace.remove(&namespace);
            }
        }
        for index in self.indexes.values_mut() {
            for value in (index.indexer)(&old) {
                if let Some(keys) = index.entries.get_mut(&value) {
                    keys.remove(key);
                    if keys.is_empty() {
                        index.entries.remove(&value);
                    }
                }
            }
        }
        let index = match controller_uid(&old) {
            Some(uid) => self.by_controller.get_mut(uid).map(|keys| (keys, uid.to_owned(), true)),
            None => {
                let namespace = key.namespace.clone().unwrap_or_default();
                self.orphans.get_mut(&namespace).map(|keys| (keys, namespace, false))
            }
        };
        if let Some((keys, index_key, controlled)) = index {
            keys.remove(key);
            if keys.is_empty() {
                if controlled {
                    self.by_controller.remove(&index_key);
                } else {
                    self.orphans.remove(&index_key);
                }
            }
        }
        Some(old)
    }
}

/// What a metadata cache keeps of each object: besides its identity and lifecycle (name,
/// namespace, UID, resourceVersion, generation, creation and deletion timestamps), the labels
/// and annotations with these keys.
pub type Projection = Vec<String>;

/// The watched objects of one resource type.
pub struct Cache {
    resource: ApiResource,
    /// The label selector of its watch, if it watches only some objects.
    selector: Option<String>,
    /// Set for a cache of metadata only.
    projection: Option<Projection>,
    store: RwLock<Store>,
    handlers: Mutex<BTreeMap<u64, Handler>>,
    next_handler: std::sync::atomic::AtomicU64,
    synced: tokio::sync::watch::Sender<bool>,
    /// Woken after every change, for [`Cache::wait_for`].
    changed: tokio::sync::Notify,
    watch: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Where caught panics are counted.
    metrics: Option<crate::Metrics>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("resource", &self.resource).finish_non_exhaustive()
    }
}

/// Keeps a handler subscribed; dropping it unsubscribes.
#[must_use = "dropping a subscription unsubscribes its handler"]
pub struct Subscription {
    cache: Weak<Cache>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.upgrade() {
            cache.handlers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.id);
        }
    }
}

impl Cache {
    /// The resource type this cache holds.
    pub fn resource(&self) -> &ApiResource {
        &self.resource
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The object with this key.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<DynamicObject>> {
        self.read().objects.get(key).map(Entry::decode)
    }

    /// The keys of the objects `keep` accepts. The objects are decoded one at a time: a
    /// controller that goes through every object (queueing all it handles, on start and on each
    /// resync) holds one parsed object, not all of them — at 10,000 parents, 30 MiB less.
    pub fn keys_where(&self, mut keep: impl FnMut(&DynamicObject) -> bool) -> Vec<ObjectKey> {
        let keys: Vec<SharedKey> = self.read().objects.keys().cloned().collect();
        keys.into_iter()
            .filter(|key| {
                // Decoded under the lock, judged after it: `keep` may read this cache too.
                let object = self.read().objects.get(key).map(Entry::decode);
                object.is_some_and(|object| keep(&object))
            })
            .map(Arc::unwrap_or_clone)
            .collect()
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<DynamicObject>> {
        self.read().objects.values().map(Entry::decode).collect()
    }

    /// The objects whose controller owner has this UID.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<DynamicObject>> {
        let store = self.read();
        store.decode(store.by_controller.get(uid).into_iter().flatten())
    }

    /// The objects in `namespace` (`""`: the cluster-scoped ones).
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<DynamicObject>> {
        let store = self.read();
        store.decode(store.by_namespace.get(namespace).into_iter().flatten())
    }

    /// The objects without a controller owner in `namespace` (`None`: every namespace and
    /// cluster-scoped objects).
    pub fn orphans(&self, namespace: Option<&str>) -> Vec<Arc<DynamicObject>> {
        let store = self.read();
        match namespace {
            Some(namespace) => store.decode(store.orphans.get(namespace).into_iter().flatten()),
            None => store.decode(store.orphans.values().flatten()),
        }
    }

    /// Adds a custom index named `name` (unless one by that name exists: controllers sharing
    /// the cache share its indexes), finding each object under the values `indexer` returns.
    pub fn add_index(&self, name: &str, indexer: impl Fn(&DynamicObject) -> Vec<String> + Send + Sync + 'static) {
        let mut store = self.store.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if store.indexes.contains_key(name) {
            return;
        }
        store.add_index(name.to_owned(), Arc::new(indexer));
    }

    /// The objects the index `name` finds under `value` (none if there is no such index).
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<DynamicObject>> {
        let store = self.read();
        store.decode(store.indexes.get(name).and_then(|index| index.entries.get(value)).into_iter().flatten())
    }

    /// Waits until `done` holds — checked now and after every change — or `timeout` passes,
    /// and says whether it held. A controller reads its own writes with it: after writing, it
    /// waits until the cache has seen them, so that its next reconcile does not act on the
    /// objects as they were before (and write them again).
    pub async fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&Cache) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return done(self);
            }
        }
    }

    /// Whether the initial list has completed.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the initial list has completed.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Calls `handler` for every future change until the subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, handler: Handler) -> Subscription {
        let id = self.next_handler.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.handlers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(id, handler);
        Subscription { cache: Arc::downgrade(self), id }
    }

    fn notify(&self, event: &CacheEvent<'_>) {
        let handlers: Vec<Handler> = self.handlers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().cloned().collect();
        for handler in handlers {
            // One faulty handler must not silence the others, nor take the watch down.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(event))).is_err() {
                tracing::error!(resource = %self.resource.plural, "an event handler panicked; the event is skipped for it");
                self.panicked();
            }
        }
    }

    fn panicked(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.watch_panicked(&self.name());
        }
    }

    /// `plural.group` (`plural` for the core group): how logs, metrics and reports name it.
    pub fn name(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }

    fn prepare(&self, mut object: DynamicObject) -> Arc<DynamicObject> {
        object.metadata.managed_fields = None;
        if let Some(keep) = &self.projection {
            object = project(object, keep);
        }
        // Watch and list items of built-in types can lack apiVersion and kind; hooks need them.
        object.types = Some(TypeMeta { api_version: self.resource.api_version.clone(), kind: self.resource.kind.clone() });
        Arc::new(object)
    }

    fn apply(&self, object: DynamicObject) {
        let new = self.prepare(object);
        let old = self.store.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(&new);
        if old.as_ref().is_some_and(|old| old.resource_version() == new.resource_version()) {
            return;
        }
        self.changed.notify_waiters();
        self.notify(&CacheEvent::Applied { old: old.as_ref(), new: &new });
    }

    fn delete(&self, object: DynamicObject) {
        let key = ObjectKey::of(&object);
        let old = self.store.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&key);
        let deleted = old.unwrap_or_else(|| self.prepare(object));
        self.changed.notify_waiters();
        self.notify(&CacheEvent::Deleted(&deleted));
    }

    /// An empty store with this cache's indexes, to gather a relist in.
    fn empty_store(&self) -> Store {
        self.read().empty_like()
    }

    /// Replaces the store with `fresh`, a complete relist, reporting what changed meanwhile.
    fn replace(&self, mut fresh: Store) {
        let old = {
            let mut store = self.store.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            // An index added while the list ran is built now.
            for (name, index) in &store.indexes {
                if !fresh.indexes.contains_key(name) {
                    fresh.add_index(name.clone(), index.indexer.clone());
                }
            }
            std::mem::replace(&mut *store, fresh)
        };
        self.changed.notify_waiters();
        // Decoded and reported one at a time: a relist never holds every object parsed at once.
        let changed: Vec<SharedKey> = self
            .read()
            .objects
            .iter()
            .filter(|(key, entry)| old.objects.get(*key).is_none_or(|previous| previous.resource_version != entry.resource_version))
            .map(|(key, _)| key.clone())
            .collect();
        for key in changed {
            let Some(new) = self.read().objects.get(&key).map(Entry::decode) else { continue };
            let previous = old.objects.get(&key).map(Entry::decode);
            self.notify(&CacheEvent::Applied { old: previous.as_ref(), new: &new });
        }
        let deleted: Vec<&Entry> = {
            let store = self.read();
            old.objects.iter().filter(|(key, _)| !store.objects.contains_key(*key)).map(|(_, entry)| entry).collect()
        };
        for entry in deleted {
            self.notify(&CacheEvent::Deleted(&entry.decode()));
        }
        self.synced.send_replace(true);
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            watch.abort();
        }
    }
}

/// `object`'s identity, lifecycle, and the labels and annotations whose keys `keep` lists.
fn project(object: DynamicObject, keep: &Projection) -> DynamicObject {
    let metadata = object.metadata;
    let kept = |map: Option<BTreeMap<String, String>>| {
        let kept: BTreeMap<String, String> = map.into_iter().flatten().filter(|(key, _)| keep.contains(key)).collect();
        (!kept.is_empty()).then_some(kept)
    };
    DynamicObject {
        types: object.types,
        metadata: ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            resource_version: metadata.resource_version,
            generation: metadata.generation,
            creation_timestamp: metadata.creation_timestamp,
            deletion_timestamp: metadata.deletion_timestamp,
            labels: kept(metadata.labels),
            annotations: kept(metadata.annotations),
            ..ObjectMeta::default()
        },
        data: serde_json::Value::Null,
    }
}

/// A cache's identity among the caches: (apiVersion, plural, label selector, projection).
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

/// An object as the watch delivers it: parsed, or, when it cannot be parsed, its metadata and
/// why. Lists and watch events are decoded item by item into this, so one unreadable object
/// costs only itself.
#[derive(Clone, Debug)]
enum Watched {
    Parsed(DynamicObject),
    Unreadable { metadata: ObjectMeta, error: String },
}

impl<'de> Deserialize<'de> for Watched {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Capturing the text skips over it without recursion, so no depth limit applies here.
        let text = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        match parse(text.get()) {
            Ok(object) => Ok(Watched::Parsed(object)),
            Err(error) => {
                // Only what identifies it: `managedFields` mirror the object's shape, depth too.
                #[derive(Deserialize, Default)]
                #[serde(rename_all = "camelCase")]
                struct Identity {
                    name: Option<String>,
                    namespace: Option<String>,
                    uid: Option<String>,
                    resource_version: Option<String>,
                }
                #[derive(Deserialize)]
                struct IdentityOnly {
                    #[serde(default)]
                    metadata: Identity,
                }
                let IdentityOnly { metadata } = serde_json::from_str(text.get()).map_err(serde::de::Error::custom)?;
                let metadata = ObjectMeta {
                    name: metadata.name,
                    namespace: metadata.namespace,
                    uid: metadata.uid,
                    resource_version: metadata.resource_version,
                    ..ObjectMeta::default()
                };
                Ok(Watched::Unreadable { metadata, error: error.to_string() })
            }
        }
    }
}

impl Resource for Watched {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(resource: &ApiResource) -> std::borrow::Cow<'_, str> {
        DynamicObject::group(resource)
    }

    fn version(resource: &ApiResource) -> std::borrow::Cow<'_, str> {
        DynamicObject::version(resource)
    }

    fn kind(resource: &ApiResource) -> std::borrow::Cow<'_, str> {
        DynamicObject::kind(resource)
    }

    fn api_version(resource: &ApiResource) -> std::borrow::Cow<'_, str> {
        DynamicObject::api_version(resource)
    }

    fn plural(resource: &ApiResource) -> std::borrow::Cow<'_, str> {
        DynamicObject::plural(resource)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Watched::Parsed(object) => &object.metadata,
            Watched::Unreadable { metadata, .. } => metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Watched::Parsed(object) => &mut object.metadata,
            Watched::Unreadable { metadata, .. } => metadata,
        }
    }
}

/// Says that the object `metadata` names cannot be read, and why.
fn warn_unreadable(resource: &ApiResource, metadata: &ObjectMeta, error: &str) {
    let key = ObjectKey { namespace: metadata.namespace.clone(), name: metadata.name.clone().unwrap_or_default() };
    tracing::warn!(kind = %resource.kind, object = %key, %error, "cannot read this object; controllers will not see it");
}

/// An object with only `metadata`: enough to find an unreadable object's entry.
fn stub(metadata: ObjectMeta) -> DynamicObject {
    DynamicObject { types: None, metadata, data: serde_json::Value::Null }
}

/// The first and the longest pause before a watch that panicked is restarted.
const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Runs the watch of `cache`, restarting it — with a fresh list, after a pause that doubles
/// up to [`RESTART_BACKOFF`]'s cap — if it panics (in decoding or an indexer). Until the
/// restarted watch has listed, the cache is not synced, which readiness checks report.
async fn supervise_watch(client: Client, cache: Weak<Cache>) {
    use futures::FutureExt;
    let mut pause = RESTART_BACKOFF.0;
    loop {
        let watch = std::panic::AssertUnwindSafe(run_watch(client.clone(), cache.clone()));
        if watch.catch_unwind().await.is_ok() {
            return;
        }
        let Some(cache) = cache.upgrade() else { return };
        tracing::error!(resource = %cache.name(), restart_in = ?pause, "the watch panicked; restarting it with a fresh list");
        cache.panicked();
        cache.synced.send_replace(false);
        drop(cache);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RESTART_BACKOFF.1);
    }
}

/// Objects per list request.
const LIST_PAGE_SIZE: u32 = 100;

/// A metadata watch's event, as the object watches deliver: objects without content.
fn with_metadata(event: watcher::Event<PartialObjectMeta<DynamicObject>>, resource: &ApiResource) -> watcher::Event<Watched> {
    let object = |partial: PartialObjectMeta<DynamicObject>| {
        let types = TypeMeta { api_version: resource.api_version.clone(), kind: resource.kind.clone() };
        Watched::Parsed(DynamicObject { types: Some(types), metadata: partial.metadata, data: serde_json::Value::Null })
    };
    match event {
        watcher::Event::Apply(partial) => watcher::Event::Apply(object(partial)),
        watcher::Event::Delete(partial) => watcher::Event::Delete(object(partial)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(partial) => watcher::Event::InitApply(object(partial)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

async fn run_watch(client: Client, cache: Weak<Cache>) {
    let (resource, selector, metadata_only) = match cache.upgrade() {
        Some(cache) => (cache.resource.clone(), cache.selector.clone(), cache.projection.is_some()),
        None => return,
    };
    // A list page is held parsed while it is stored: smaller pages than kube's 500 bound that
    // peak, for a few more list requests.
    let mut config = watcher::Config::default().page_size(LIST_PAGE_SIZE);
    if let Some(selector) = &selector {
        config = config.labels(selector);
    }
    let mut events = if metadata_only {
        // kube asks for metadata only when the type is `PartialObjectMeta`.
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource);
        let events = watcher(api, config).default_backoff();
        events.map(|event| event.map(|event| with_metadata(event, &resource))).boxed()
    } else {
        watcher(Api::<Watched>::all_with(client, &resource), config).default_backoff().boxed()
    };
    // A relist is gathered apart, each object stored as it arrives, and swapped in when complete.
    let mut listing: Option<Store> = None;
    while let Some(event) = events.next().await {
        let Some(cache) = cache.upgrade() else { return };
        match event {
            Ok(watcher::Event::Init) => listing = Some(cache.empty_store()),
            Ok(watcher::Event::InitApply(Watched::Parsed(object))) => {
                let object = cache.prepare(object);
                listing.get_or_insert_with(|| cache.empty_store()).insert(&object);
            }
            Ok(watcher::Event::InitApply(Watched::Unreadable { metadata, error })) => warn_unreadable(&resource, &metadata, &error),
            Ok(watcher::Event::InitDone) => cache.replace(listing.take().unwrap_or_else(|| cache.empty_store())),
            Ok(watcher::Event::Apply(Watched::Parsed(object))) => cache.apply(object),
            Ok(watcher::Event::Apply(Watched::Unreadable { metadata, error })) => {
                warn_unreadable(&resource, &metadata, &error);
                // What the cache held of it is outdated: controllers must not act on it.
                cache.delete(stub(metadata))
            }
            Ok(watcher::Event::Delete(Watched::Parsed(object))) => cache.delete(object),
            Ok(watcher::Event::Delete(Watched::Unreadable { metadata, .. })) => cache.delete(stub(metadata)),
            Err(error) => {
                tracing::warn!(resource = %resource.plural, api_version = %resource.api_version, %error, "watch failed; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(namespace: &str, name: &str, controller: Option<&str>) -> DynamicObject {
        let owners = controller.map(|uid| json!([{ "apiVersion": "v1", "kind": "X", "name": "p", "uid": uid, "controller": true }]));
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "namespace": namespace, "name": name, "resourceVersion": "1", "ownerReferences": owners },
        }))
        .unwrap()
    }

    #[test]
    fn the_indexes_follow_changes_of_controller() {
        let mut store = Store::default();
        store.insert(&object("a", "x", Some("u1")));
        store.insert(&object("a", "y", None));
        assert_eq!(store.by_controller["u1"].len(), 1);
        assert_eq!(store.orphans["a"].len(), 1);
        // Released: x loses its controller.
        store.insert(&object("a", "x", None));
        assert!(!store.by_controller.contains_key("u1"));
        assert_eq!(store.orphans["a"].len(), 2);
        assert_eq!(store.by_namespace["a"].len(), 2);
        store.remove(&ObjectKey { namespace: Some("a".into()), name: "x".into() });
        store.remove(&ObjectKey { namespace: Some("a".into()), name: "y".into() });
        assert!(store.orphans.is_empty() && store.objects.is_empty() && store.by_namespace.is_empty());
    }

    #[test]
    fn custom_indexes_follow_changes_and_relists() {
        let mut store = Store::default();
        let by_owner: Indexer = Arc::new(|object: &DynamicObject| controller_uid(object).map(str::to_owned).into_iter().collect());
        store.indexes.insert("owner".into(), Index { indexer: by_owner, entries: HashMap::new() });
        store.insert(&object("a", "x", Some("u1")));
        store.insert(&object("b", "y", Some("u1")));
        assert_eq!(store.indexes["owner"].entries["u1"].len(), 2);
        store.insert(&object("a", "x", Some("u2")));
        assert_eq!(store.indexes["owner"].entries["u1"].len(), 1);
        assert_eq!(store.indexes["owner"].entries["u2"].len(), 1);
        store.remove(&ObjectKey { namespace: Some("b".into()), name: "y".into() });
        assert!(!store.indexes["owner"].entries.contains_key("u1"));
        let fresh = store.empty_like();
        assert!(fresh.indexes["owner"].entries.is_empty() && fresh.objects.is_empty());
    }

    #[test]
    fn an_object_nested_too_deep_costs_only_itself() {
        let mut deep = json!("bottom");
        for _ in 0..200 {
            deep = json!({ "nested": deep });
        }
        let list = json!({
            "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "5" },
            "items": [
                { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "fine", "namespace": "a" } },
                {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "deep", "namespace": "a", "managedFields": [{ "fieldsV1": deep.clone() }] },
                "spec": deep,
            },
            ],
        });
        let decoded: kube::core::ObjectList<Watched> = serde_json::from_str(&list.to_string()).unwrap();
        assert!(matches!(&decoded.items[0], Watched::Parsed(object) if object.name_any() == "fine"));
        let Watched::Unreadable { metadata, error } = &decoded.items[1] else { panic!("the deep object parsed") };
        assert_eq!(metadata.name.as_deref(), Some("deep"));
        assert!(error.contains("recursion limit"), "{error}");
    }

    #[test]
    fn objects_parse_as_dynamic_objects_do() {
        for text in [
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"x":"y"}},"data":{"k":"v"}}"#,
            r#"{"metadata":{"name":"a"},"spec":{"n":[1,2,{"m":null}]}}"#,
            r#"{"apiVersion":"v1","spec":{}}"#,
            r#"{"kind":"X","apiVersion":5}"#,
            r#"{}"#,
        ] {
            assert_eq!(parse(text).unwrap(), serde_json::from_str::<DynamicObject>(text).unwrap(), "{text}");
        }
        for text in [r#"{"metadata":{"name":5}}"#, r#"{"a":1} x"#, "[]"] {
            assert!(parse(text).is_err() && serde_json::from_str::<DynamicObject>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_projection_keeps_identity_lifecycle_and_the_named_keys_only() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "x", "namespace": "a", "uid": "u", "resourceVersion": "7", "deletionTimestamp": "2026-12-07T00:00:00Z",
                "labels": { "keep": "1", "drop": "2" },
                "annotations": { "owner": "a/s", "kubectl.kubernetes.io/last-applied-configuration": "{\"huge\":true}" },
                "ownerReferences": [{ "apiVersion": "v1", "kind": "X", "name": "p", "uid": "o" }],
                "finalizers": ["f"],
            },
            "data": { "big": "x".repeat(1000) },
        }))
        .unwrap();
        let projected = project(object, &vec!["keep".to_owned(), "owner".to_owned()]);
        assert_eq!(
            serde_json::to_value(&projected).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {
                    "name": "x", "namespace": "a", "uid": "u", "resourceVersion": "7", "deletionTimestamp": "2026-12-07T00:00:00Z",
                    "labels": { "keep": "1" }, "annotations": { "owner": "a/s" },
                },
            })
        );
    }

    #[test]
    fn keys_print_as_namespace_slash_name() {
        assert_eq!(ObjectKey { namespace: Some("ns".into()), name: "n".into() }.to_string(), "ns/n");
        assert_eq!(ObjectKey { namespace: None, name: "n".into() }.to_string(), "n");
    }
}
