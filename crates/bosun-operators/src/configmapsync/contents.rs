//! What ConfigMapSync knows of ConfigMaps' content. Its ConfigMap cache holds metadata only
//! (any tenant may create ConfigMaps, and caching them whole would let one fill the operator's
//! memory), so content is read by GET, only for the ConfigMaps a ConfigMapSync names — its
//! source, its copies, the destinations' consent records — and remembered by resourceVersion,
//! so that a steady state reads nothing: each source's content (up to the size the operator
//! copies), each copy's digest, each consent record's data.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bosun_runtime::ObjectKey;
use kube::Api;
use kube::api::{ApiResource, DynamicObject};
use serde_json::Value;
use sha2::Digest as _;

/// A ConfigMap's `data` and `binaryData`, empty maps as absent (the API server drops them).
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Content {
    pub data: Option<Value>,
    pub binary_data: Option<Value>,
}

impl Content {
    pub(super) fn of(config_map: &DynamicObject) -> Content {
        let field = |name: &str| config_map.data.get(name).filter(|value| value.as_object().is_some_and(|map| !map.is_empty())).cloned();
        Content { data: field("data"), binary_data: field("binaryData") }
    }

    /// A digest of the content: equal digests, equal content (maps serialize in key order).
    pub(super) fn digest(&self) -> [u8; 32] {
        let text = serde_json::to_vec(&(&self.data, &self.binary_data)).expect("JSON values serialize");
        sha2::Sha256::digest(text).into()
    }

    /// Its size as the API server limits it: the keys and values of `data`, the keys and
    /// decoded values of `binaryData`.
    pub(super) fn bytes(&self) -> usize {
        fn entries(field: &Option<Value>) -> impl Iterator<Item = (&String, &Value)> {
            field.iter().filter_map(Value::as_object).flatten()
        }
        let text: usize = entries(&self.data).map(|(key, value)| key.len() + value.as_str().map_or(0, str::len)).sum();
        let binary: usize = entries(&self.binary_data)
            .map(|(key, value)| {
                let encoded = value.as_str().unwrap_or_default();
                key.len() + (encoded.len() / 4 * 3).saturating_sub(encoded.bytes().rev().take_while(|byte| *byte == b'=').count())
            })
            .sum();
        text + binary
    }

    /// `data` as text entries (a consent record's).
    pub(super) fn entries(&self) -> BTreeMap<String, String> {
        serde_json::from_value(self.data.clone().unwrap_or_default()).unwrap_or_default()
    }
}

/// What is known of one ConfigMap at one resourceVersion.
struct Known {
    resource_version: String,
    uid: Option<String>,
    digest: [u8; 32],
    bytes: usize,
    /// Kept for sources and consent records within the size asked for; copies keep a digest.
    content: Option<Arc<Content>>,
}

/// A ConfigMap as read for a sync.
pub(super) struct Read {
    pub digest: [u8; 32],
    pub bytes: usize,
    /// The content, if it was kept.
    pub content: Option<Arc<Content>>,
    /// The whole object, when this read fetched it (an update is based on it).
    pub fetched: Option<DynamicObject>,
}

/// The contents known, by ConfigMap.
#[derive(Default)]
pub(super) struct Contents {
    known: Mutex<HashMap<ObjectKey, Known>>,
}

fn config_map_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&())
}

impl Contents {
    /// The content of the ConfigMap `cached` (a metadata cache entry) describes: known if it
    /// was read at the cached resourceVersion, else read now. Content up to `keep` bytes is
    /// kept (`0`: only a digest). `None` when it is gone.
    pub(super) async fn read(&self, client: &kube::Client, cached: &DynamicObject, keep: usize) -> Result<Option<Read>, kube::Error> {
        let key = ObjectKey::of(cached);
        {
            let known = self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(entry) = known.get(&key).filter(|entry| Some(&entry.resource_version) == cached.metadata.resource_version.as_ref())
                && (entry.content.is_some() || keep == 0 || entry.bytes > keep)
            {
                return Ok(Some(Read { digest: entry.digest, bytes: entry.bytes, content: entry.content.clone(), fetched: None }));
            }
        }
        let Some(object) = self.fetch(client, cached).await? else { return Ok(None) };
        let content = self.learn(&object, keep);
        let entry = Read { digest: content.digest(), bytes: content.bytes(), content: None, fetched: None };
        let kept = (entry.bytes <= keep && keep > 0).then(|| Arc::new(content));
        Ok(Some(Read { content: kept, fetched: Some(object), ..entry }))
    }

    /// Reads the ConfigMap `cached` describes as it is now (an update is based on it), and
    /// remembers its digest. `None` when it is gone.
    pub(super) async fn fetch(&self, client: &kube::Client, cached: &DynamicObject) -> Result<Option<DynamicObject>, kube::Error> {
        let key = ObjectKey::of(cached);
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &key.namespace.clone().unwrap_or_default(), &config_map_resource());
        let fetched = api.get_opt(&key.name).await?;
        match &fetched {
            Some(object) => {
                self.learn(object, 0);
            }
            None => self.forget(&key),
        }
        Ok(fetched)
    }

    /// Remembers what `object` (a ConfigMap as read or as a write returned it) holds, keeping
    /// its content if it is at most `keep` bytes; returns the content.
    pub(super) fn learn(&self, object: &DynamicObject, keep: usize) -> Content {
        let content = Content::of(object);
        let Some(resource_version) = object.metadata.resource_version.clone() else { return content };
        let bytes = content.bytes();
        let known = Known {
            resource_version,
            uid: object.metadata.uid.clone(),
            digest: content.digest(),
            bytes,
            content: (keep > 0 && bytes <= keep).then(|| Arc::new(content.clone())),
        };
        self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(ObjectKey::of(object), known);
        content
    }

    /// Forgets the ConfigMap under `key`: it was deleted, or is no longer any sync's business.
    pub(super) fn forget(&self, key: &ObjectKey) {
        self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
    }

    /// Forgets what is known of an object with this key but another UID (a replaced one).
    pub(super) fn forget_other_than(&self, object: &DynamicObject) {
        let key = ObjectKey::of(object);
        let mut known = self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.get(&key).is_some_and(|entry| entry.uid != object.metadata.uid) {
            known.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config_map(fields: Value) -> DynamicObject {
        let mut object =
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c", "namespace": "n", "resourceVersion": "1" } });
        object.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        serde_json::from_value(object).unwrap()
    }

    #[test]
    fn content_compares_as_the_api_server_stores_it() {
        let plain = Content::of(&config_map(json!({ "data": { "a": "1" } })));
        let with_empty = Content::of(&config_map(json!({ "data": { "a": "1" }, "binaryData": {} })));
        assert_eq!(plain.digest(), with_empty.digest(), "an empty map is absent");
        assert_ne!(plain.digest(), Content::of(&config_map(json!({ "data": { "a": "2" } }))).digest());
        assert_ne!(plain.digest(), Content::of(&config_map(json!({ "binaryData": { "a": "1" } }))).digest(), "data is not binaryData");
        let sized = Content::of(&config_map(json!({ "data": { "key": "value" }, "binaryData": { "bin": "AAEC" } })));
        assert_eq!(sized.bytes(), 3 + 5 + 3 + 3, "keys and values, binary values decoded");
    }

    /// How many ConfigMaps are known, and how many bytes of content are kept.
    fn footprint(contents: &Contents) -> (usize, usize) {
        let known = contents.known.lock().unwrap();
        (known.len(), known.values().filter(|entry| entry.content.is_some()).map(|entry| entry.bytes).sum())
    }

    #[test]
    fn what_is_learned_is_known_at_its_resource_version() {
        let contents = Contents::default();
        let source = config_map(json!({ "data": { "a": "1" } }));
        contents.learn(&source, 1024);
        assert_eq!(footprint(&contents), (1, 2));
        contents.learn(&config_map(json!({ "data": { "big": "x".repeat(2000) } })), 1024);
        assert_eq!(footprint(&contents), (1, 0), "over the size asked for, only a digest is kept");
        contents.forget(&ObjectKey::of(&source));
        assert_eq!(footprint(&contents), (0, 0));
    }
}
