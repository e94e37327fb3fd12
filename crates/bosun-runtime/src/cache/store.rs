//! The store of one cache: every object as its JSON text, and the indexes over them — by
//! namespace, by controller owner UID, orphans, and the custom indexes controllers add.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DynamicObject, TypeMeta};

use super::ObjectKey;

/// The label that names the controller of an object no owner reference can tie to it — one
/// in another namespace than its namespaced controller, or a cluster-scoped one — by its UID.
/// Such an object counts as controlled by that UID, as one with a controller owner reference
/// does; its controller deletes it itself (the garbage collector cannot).
pub const CONTROLLER_UID_LABEL: &str = "bosun.dev/controller-uid";

/// The UID of `object`'s controller: its controller owner reference's, else the one its
/// [`CONTROLLER_UID_LABEL`] names.
pub fn controller_uid(object: &DynamicObject) -> Option<&str> {
    controller_uid_of(&object.metadata)
}

/// [`controller_uid`] of an object's metadata.
pub fn controller_uid_of(metadata: &ObjectMeta) -> Option<&str> {
    let reference = metadata.owner_references.iter().flatten().find(|owner| owner.controller == Some(true));
    reference.map(|owner| owner.uid.as_str()).or_else(|| metadata.labels.as_ref()?.get(CONTROLLER_UID_LABEL).map(String::as_str))
}

/// The values under which a custom index finds an object (none: it is not in the index).
pub type Indexer = Arc<dyn Fn(&DynamicObject) -> Vec<String> + Send + Sync>;

/// A key as the store holds it: one allocation shared by the object map and every index.
pub(super) type SharedKey = Arc<ObjectKey>;

/// A custom index: its function and the objects under each value.
#[derive(Clone)]
pub(super) struct Index {
    pub(super) indexer: Indexer,
    pub(super) entries: HashMap<String, HashSet<SharedKey>>,
}

impl Index {
    pub(super) fn add(&mut self, key: &SharedKey, object: &DynamicObject) {
        for value in (self.indexer)(object) {
            self.entries.entry(value).or_default().insert(key.clone());
        }
    }
}

/// An object as the store keeps it.
pub(super) struct Entry {
    pub(super) json: Box<str>,
    pub(super) resource_version: Option<Box<str>>,
}

impl Entry {
    pub(super) fn encode(object: &DynamicObject) -> Entry {
        Entry {
            json: serde_json::to_string(object).expect("a DynamicObject serializes").into(),
            resource_version: object.metadata.resource_version.as_deref().map(Into::into),
        }
    }

    pub(super) fn decode(&self) -> Arc<DynamicObject> {
        Arc::new(parse(&self.json).expect("the cache parses the JSON it wrote"))
    }
}

/// Parses an object as `DynamicObject`'s own decoding does, in one pass: that one, through
/// serde's `flatten`, first copies the whole object into an intermediate tree. Reads and
/// watch events parse every object they meet, so this is most of a cache's cost.
pub(super) fn parse(json: &str) -> serde_json::Result<DynamicObject> {
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
pub(super) struct Store {
    pub(super) objects: HashMap<SharedKey, Entry>,
    /// Controller owner UID → the objects it controls.
    pub(super) by_controller: HashMap<String, HashSet<SharedKey>>,
    /// Namespace (`""` for cluster-scoped objects) → the objects without a controller owner.
    pub(super) orphans: HashMap<String, HashSet<SharedKey>>,
    /// Namespace (`""` for cluster-scoped objects) → its objects.
    pub(super) by_namespace: HashMap<String, HashSet<SharedKey>>,
    /// Custom indexes by name.
    pub(super) indexes: HashMap<String, Index>,
}

impl Store {
    /// An empty store with the same custom indexes.
    pub(super) fn empty_like(&self) -> Store {
        let indexes = self
            .indexes
            .iter()
            .map(|(name, index)| (name.clone(), Index { indexer: index.indexer.clone(), entries: HashMap::new() }))
            .collect();
        Store { indexes, ..Store::default() }
    }

    /// Stores `object`, returning the object it replaces.
    pub(super) fn insert(&mut self, object: &DynamicObject) -> Option<Arc<DynamicObject>> {
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
    pub(super) fn add_index(&mut self, name: String, indexer: Indexer) {
        let mut index = Index { indexer, entries: HashMap::new() };
        for (key, entry) in &self.objects {
            index.add(key, &entry.decode());
        }
        self.indexes.insert(name, index);
    }

    /// Decodes the objects under `keys`.
    pub(super) fn decode<'a>(&self, keys: impl IntoIterator<Item = &'a SharedKey>) -> Vec<Arc<DynamicObject>> {
        keys.into_iter().filter_map(|key| self.objects.get(key).map(Entry::decode)).collect()
    }

    pub(super) fn remove(&mut self, key: &ObjectKey) -> Option<Arc<DynamicObject>> {
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
