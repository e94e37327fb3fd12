//! The hook protocol: how observed objects are laid out for a hook (object maps keyed by
//! `Kind.apiVersion`, then by a name whose form depends on the hook version), and how a hook's
//! JSON response is decoded (`loose` or `strict`).

mod client;
mod duration;

use std::collections::{BTreeMap, BTreeSet};

use kube::api::DynamicObject;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{HookVersion, ResponseUnmarshallMode};

pub use client::{HookClient, HookEndpoint, HookError, HookKind};
pub use duration::parse_duration;

/// The outer key of an object map: `Kind.apiVersion`, e.g. `Pod.v1` or `Deployment.apps/v1`.
pub fn group_key(kind: &str, api_version: &str) -> String {
    format!("{kind}.{api_version}")
}

/// The inner key of an object in a request to a hook of `version`, for a parent in
/// `parent_namespace` (`None`: cluster-scoped). `None` when a v1 hook must not see the object:
/// v1 hides objects of other namespaces, and cluster-scoped objects, from namespaced parents.
pub fn object_key(
    version: HookVersion,
    parent_namespace: Option<&str>,
    namespace: Option<&str>,
    name: &str,
) -> Option<String> {
    let uniform = || match namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    };
    match version {
        HookVersion::V2 => Some(uniform()),
        HookVersion::V1 => match (parent_namespace, namespace) {
            (Some(parent), Some(namespace)) if parent == namespace => Some(name.to_owned()),
            (Some(_), _) => None,
            (None, _) => Some(uniform()),
        },
    }
}

/// Objects by `Kind.apiVersion`, then by key: the `children`, `attachments` and `related`
/// fields of hook requests. Every configured type is present, possibly empty.
pub type ObjectMaps<'a> = BTreeMap<String, BTreeMap<String, &'a DynamicObject>>;

/// Adds `objects` of type `group` to `maps`, keyed for a hook of `version`.
pub fn insert_objects<'a>(
    maps: &mut ObjectMaps<'a>,
    group: &str,
    version: HookVersion,
    parent_namespace: Option<&str>,
    objects: impl IntoIterator<Item = &'a DynamicObject>,
) {
    let map = maps.entry(group.to_owned()).or_default();
    for object in objects {
        let name = object.metadata.name.as_deref().unwrap_or_default();
        if let Some(key) = object_key(version, parent_namespace, object.metadata.namespace.as_deref(), name) {
            map.insert(key, object);
        }
    }
}

/// A response type and the top-level fields it knows, for strict decoding.
pub trait HookResponse: DeserializeOwned {
    /// The JSON names of the fields a hook may send.
    const FIELDS: &'static [&'static str];
}

/// Why a response could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or fields of the wrong type.
    #[error("the response is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// Strict decoding met fields the protocol does not have.
    #[error(
        "the response has unknown field(s) {0:?}; strict decoding (the v2 default) refuses them \
         (set the hook's responseUnMarshallMode: loose to ignore them)"
    )]
    UnknownFields(Vec<String>),
}

/// Decodes a response. `strict` refuses unknown and duplicate top-level fields; `loose`
/// ignores unknown ones and keeps the last of duplicates, as Metacontroller does.
pub fn decode<T: HookResponse>(body: &[u8], mode: ResponseUnmarshallMode) -> Result<T, DecodeError> {
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)?;
    match mode {
        ResponseUnmarshallMode::Loose => Ok(serde_json::from_value(serde_json::Value::Object(fields))?),
        ResponseUnmarshallMode::Strict => {
            let known: BTreeSet<&str> = T::FIELDS.iter().copied().collect();
            let unknown: Vec<String> = fields.keys().filter(|key| !known.contains(key.as_str())).cloned().collect();
            if !unknown.is_empty() {
                return Err(DecodeError::UnknownFields(unknown));
            }
            // Decoding the bytes themselves (not the map) makes duplicate fields an error.
            Ok(serde_json::from_slice(body)?)
        }
    }
}

/// The decoding mode of a hook: its `responseUnMarshallMode`, else `loose` for v1 and
/// `strict` for v2.
pub fn unmarshall_mode(version: HookVersion, configured: Option<ResponseUnmarshallMode>) -> ResponseUnmarshallMode {
    configured.unwrap_or(match version {
        HookVersion::V1 => ResponseUnmarshallMode::Loose,
        HookVersion::V2 => ResponseUnmarshallMode::Strict,
    })
}

/// A request body, serialized once.
pub fn encode(request: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(request).expect("hook requests serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v1_keys_are_relative_and_filtered() {
        let key = |parent, namespace, name| object_key(HookVersion::V1, parent, namespace, name);
        assert_eq!(key(Some("a"), Some("a"), "x").as_deref(), Some("x"));
        assert_eq!(key(Some("a"), Some("b"), "x"), None, "another namespace");
        assert_eq!(key(Some("a"), None, "x"), None, "cluster-scoped, namespaced parent");
        assert_eq!(key(None, Some("b"), "x").as_deref(), Some("b/x"));
        assert_eq!(key(None, None, "x").as_deref(), Some("x"));
    }

    #[test]
    fn v2_keys_are_uniform() {
        let key = |parent, namespace, name| object_key(HookVersion::V2, parent, namespace, name);
        assert_eq!(key(Some("a"), Some("a"), "x").as_deref(), Some("a/x"));
        assert_eq!(key(Some("a"), Some("b"), "x").as_deref(), Some("b/x"));
        assert_eq!(key(Some("a"), None, "x").as_deref(), Some("x"));
        assert_eq!(key(None, Some("b"), "x").as_deref(), Some("b/x"));
    }

    #[derive(serde::Deserialize, Debug)]
    struct Probe {
        #[serde(default)]
        status: Option<serde_json::Value>,
    }

    impl HookResponse for Probe {
        const FIELDS: &'static [&'static str] = &["status"];
    }

    #[test]
    fn strict_refuses_what_loose_ignores() {
        let body = br#"{"status": {"a": 1}, "extra": true}"#;
        assert!(decode::<Probe>(body, ResponseUnmarshallMode::Loose).unwrap().status.is_some());
        let error = decode::<Probe>(body, ResponseUnmarshallMode::Strict).unwrap_err();
        assert!(matches!(&error, DecodeError::UnknownFields(fields) if fields == &["extra"]), "{error}");
        let duplicate = br#"{"status": {"a": 1}, "status": {"a": 2}}"#;
        assert_eq!(decode::<Probe>(duplicate, ResponseUnmarshallMode::Loose).unwrap().status.unwrap()["a"], 2);
        assert!(decode::<Probe>(duplicate, ResponseUnmarshallMode::Strict).is_err());
        assert!(decode::<Probe>(b"not json", ResponseUnmarshallMode::Loose).is_err());
    }

    proptest! {
        /// v2 keys never collide: distinct (namespace, name) pairs get distinct keys.
        #[test]
        fn v2_keys_are_injective(
            a in (proptest::option::of("[a-z]{1,3}"), "[a-z]{1,3}"),
            b in (proptest::option::of("[a-z]{1,3}"), "[a-z]{1,3}"),
        ) {
            let key = |(namespace, name): &(Option<String>, String)| object_key(HookVersion::V2, None, namespace.as_deref(), name);
            prop_assert_eq!(a == b, key(&a) == key(&b));
        }

        /// A v1 key for a namespaced parent is the bare name of an object in its namespace.
        #[test]
        fn v1_keys_for_namespaced_parents_are_names(namespace in "[a-z]{1,5}", name in "[a-z0-9-]{1,10}") {
            prop_assert_eq!(object_key(HookVersion::V1, Some(&namespace), Some(&namespace), &name), Some(name));
        }
    }
}
