//! Shared watch caches: one watch per resource type for the whole process, however many
//! controllers read it, kept as an in-memory store with the indexes controllers need.
//!
//! A [`Cache`] holds every object of one resource type, indexed by namespace and by the UID of
//! each object's controller owner, plus any custom index a controller adds
//! ([`Cache::add_index`], controller-runtime's field indexers), and tells subscribed
//! [`Handler`]s about every change. [`SharedCaches`] hands out the cache of a resource type,
//! starting its watch on first use and stopping it when the last user lets go. A view of the
//! caches can select objects by label ([`SharedCaches::selecting`]): a shard of a sharded
//! controller watches only the objects labelled for it. A view can watch only some namespaces
//! ([`SharedCaches::within`]): one watch per namespace fills one cache, so a process that may
//! read only there (a namespace-scoped install, with Roles and no ClusterRole) has the same
//! caches as one that reads everywhere.
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
//!
//! The files: the key objects are found by (`key`), the store and its indexes (`store`), the
//! caches one process shares ([`SharedCaches`], `shared`), and the watch that fills each cache
//! (`watch`).

mod key;
mod shared;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, TypeMeta};

pub use key::ObjectKey;
pub use shared::{Namespaces, SharedCaches};
pub use store::{CONTROLLER_UID_LABEL, Indexer, controller_uid, controller_uid_of};
use store::{Entry, SharedKey, Store};

/// The API of `resource`'s objects in `namespace`, or in every namespace.
fn api_in<K: kube::Resource<DynamicType = ApiResource, Scope = kube::core::DynamicResourceScope>>(
    client: kube::Client,
    namespace: Option<&str>,
    resource: &ApiResource,
) -> kube::Api<K> {
    match namespace {
        Some(namespace) => kube::Api::namespaced_with(client, namespace, resource),
        None => kube::Api::all_with(client, resource),
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

/// What a metadata cache keeps of each object: besides its identity and lifecycle (name,
/// namespace, UID, resourceVersion, generation, creation and deletion timestamps), the labels
/// and annotations with these keys.
pub type Projection = Vec<String>;

/// The watched objects of one resource type.
pub struct Cache {
    resource: ApiResource,
    /// The label selector of its watch, if it watches only some objects.
    selector: Option<String>,
    /// The namespaces it watches (one watch each), if not every namespace.
    namespaces: Option<Namespaces>,
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

    /// Whether the cache shows the write of the object under `key` that the API server
    /// answered with `resource_version`: it holds the object at that version or a later one
    /// (not at all: not yet, for a creation). Resource versions are compared as numbers when
    /// both are (etcd's are), else only for equality. With [`Cache::wait_for`], how a
    /// controller reads its own write back.
    pub fn shows(&self, key: &ObjectKey, resource_version: &str) -> bool {
        let store = self.read();
        let Some(entry) = store.objects.get(key) else { return false };
        let Some(cached) = entry.resource_version.as_deref() else { return false };
        match (cached.parse::<u64>(), resource_version.parse::<u64>()) {
            (Ok(cached), Ok(written)) => cached >= written,
            _ => cached == resource_version,
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

    /// Replaces the objects of `namespace` (a relist of one namespace's watch) with those of
    /// `fresh`, reporting what changed meanwhile; the other namespaces' objects stay.
    fn replace_namespace(&self, fresh: Store, namespace: &str) {
        let (mut applied, mut deleted) = (Vec::new(), Vec::new());
        {
            let mut store = self.store.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            let gone: Vec<SharedKey> =
                store.by_namespace.get(namespace).into_iter().flatten().filter(|key| !fresh.objects.contains_key(*key)).cloned().collect();
            deleted.extend(gone.iter().filter_map(|key| store.remove(key)));
            for (key, entry) in &fresh.objects {
                if store.objects.get(key).is_none_or(|previous| previous.resource_version != entry.resource_version) {
                    let new = entry.decode();
                    applied.push((store.insert(&new), new));
                }
            }
        }
        self.changed.notify_waiters();
        for (old, new) in &applied {
            self.notify(&CacheEvent::Applied { old: old.as_ref(), new });
        }
        for old in &deleted {
            self.notify(&CacheEvent::Deleted(old));
        }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::store::{Index, parse};
    use super::watch::Watched;
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

    /// An object no owner reference can tie to its controller names it by label: it is
    /// controlled, not an orphan; a controller owner reference wins over the label.
    #[test]
    fn the_controller_uid_label_counts_as_a_controller() {
        let mut store = Store::default();
        let mut labelled = object("elsewhere", "z", None);
        labelled.metadata.labels = Some([(CONTROLLER_UID_LABEL.to_owned(), "u2".to_owned())].into());
        store.insert(&labelled);
        assert_eq!(store.by_controller["u2"].len(), 1);
        assert!(store.orphans.is_empty());
        let mut both = object("elsewhere", "z", Some("u1"));
        both.metadata.labels = labelled.metadata.labels.clone();
        assert_eq!(controller_uid(&both), Some("u1"));
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
