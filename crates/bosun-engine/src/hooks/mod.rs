//! The hook protocol: how observed objects are laid out for a hook (object maps keyed by
//! `Kind.apiVersion`, then by a name whose form depends on the hook version), and how a hook's
//! JSON response is decoded (`loose` or `strict`). Calling hooks is [`HookClient`]'s job:
//! programs run by `exec`, WebAssembly modules by `wasm`, webhooks over the connections of `transport`, with TLS and
//! authentication from [`auth`], opt-in response caching from [`etag`], and bodies logged at
//! trace level with Secret data redacted ([`redact`]).

pub(crate) mod auth;
mod client;
mod duration;
mod endpoint;
pub(crate) mod etag;
mod exchange;
mod exec;
mod metrics;
pub(crate) mod redact;
mod transport;
mod wasm;

use std::collections::{BTreeMap, BTreeSet};

use kube::api::DynamicObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{HookVersion, ResponseUnmarshallMode};
use crate::invalid_response::InvalidResponse;
use crate::limits::{MAX_HOOK_EVENTS, MAX_STATUS_BYTES};

pub use client::{DEFAULT_MAX_EXEC_PROCESSES, DEFAULT_MAX_RESPONSE_BYTES};
pub(crate) use client::{HookClient, HookError};
pub use duration::{DurationError, parse_duration};
pub(crate) use endpoint::{EndpointError, HookEndpoint, HookKind};
pub use exchange::HookExchange;

/// The outer key of an object map: `Kind.apiVersion`, e.g. `Pod.v1` or `Deployment.apps/v1`.
pub(crate) fn group_key(kind: &str, api_version: &str) -> String {
    format!("{kind}.{api_version}")
}

/// The inner key of an object in a request to a hook of `version`, for a parent in
/// `parent_namespace` (`None`: cluster-scoped). `None` when a v1 hook must not see the object:
/// v1 hides objects of other namespaces, and cluster-scoped objects, from namespaced parents.
pub(crate) fn object_key(version: HookVersion, parent_namespace: Option<&str>, namespace: Option<&str>, name: &str) -> Option<String> {
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
pub(crate) type ObjectMaps<'a> = BTreeMap<String, BTreeMap<String, &'a DynamicObject>>;

/// Adds `objects` of type `group` to `maps`, keyed for a hook of `version`. Objects that may
/// live `anywhere` (children of the types a controller lists in bosun.dev/children-anywhere)
/// are shown to v1 hooks too, those outside the parent's namespace keyed as v2 keys them
/// (`<namespace>/<name>`, or `<name>` when cluster-scoped).
pub(crate) fn insert_objects<'a>(
    maps: &mut ObjectMaps<'a>,
    group: &str,
    version: HookVersion,
    parent_namespace: Option<&str>,
    anywhere: bool,
    objects: impl IntoIterator<Item = &'a DynamicObject>,
) {
    let map = maps.entry(group.to_owned()).or_default();
    for object in objects {
        let (namespace, name) = (object.metadata.namespace.as_deref(), object.metadata.name.as_deref().unwrap_or_default());
        let key = object_key(version, parent_namespace, namespace, name)
            .or_else(|| anywhere.then(|| object_key(HookVersion::V2, None, namespace, name)).flatten());
        if let Some(key) = key {
            map.insert(key, object);
        }
    }
}

/// A response type and the top-level fields it knows, for strict decoding.
pub(crate) trait HookResponse: DeserializeOwned {
    /// The JSON names of the fields a hook may send.
    const FIELDS: &'static [&'static str];
}

/// Why a response could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The body is empty: nothing says what the hook wants, and an empty close-delimited body
    /// is also what a hook that died before answering leaves behind.
    #[error("the response is empty; answer with a JSON object (`{{}}` asks for nothing)")]
    Empty,
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
/// ignores unknown ones and keeps the last of duplicates, as Metacontroller does. The body is
/// decoded once into the response type; a second pass reads only what it must (the top-level
/// names in `strict` mode, or, when `loose` decoding meets duplicates, the fields as a map).
pub(crate) fn decode<T: HookResponse>(body: &[u8], mode: ResponseUnmarshallMode) -> Result<T, DecodeError> {
    // A byte-order mark is noise some Windows-born tools write; JSON text never needs it.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.trim_ascii().is_empty() {
        return Err(DecodeError::Empty);
    }
    match mode {
        ResponseUnmarshallMode::Loose => serde_json::from_slice(body).or_else(|error| {
            // The typed decoding refuses duplicate fields; a map keeps the last of each.
            let Ok(fields) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body) else { return Err(error.into()) };
            Ok(serde_json::from_value(serde_json::Value::Object(fields))?)
        }),
        ResponseUnmarshallMode::Strict => {
            // Skipped values cost nothing: only the names are kept.
            let fields: BTreeMap<String, serde::de::IgnoredAny> = serde_json::from_slice(body)?;
            let known: BTreeSet<&str> = T::FIELDS.iter().copied().collect();
            let unknown: Vec<String> = fields.into_keys().filter(|key| !known.contains(key.as_str())).collect();
            if !unknown.is_empty() {
                return Err(DecodeError::UnknownFields(unknown));
            }
            // Decoding the bytes themselves (not a map) makes duplicate fields an error.
            Ok(serde_json::from_slice(body)?)
        }
    }
}

/// The decoding mode of a hook: its `responseUnMarshallMode`, else `loose` for v1 and
/// `strict` for v2.
pub(crate) fn unmarshall_mode(version: HookVersion, configured: Option<ResponseUnmarshallMode>) -> ResponseUnmarshallMode {
    configured.unwrap_or(match version {
        HookVersion::V1 => ResponseUnmarshallMode::Loose,
        HookVersion::V2 => ResponseUnmarshallMode::Strict,
    })
}

/// An event a hook asks to have recorded on its parent or target: the optional `events` list
/// of sync and finalize responses, a bosun extension (Metacontroller's open request #249).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HookEvent {
    /// `type: Warning` (else `Normal`).
    pub warning: bool,
    /// A short CamelCase reason.
    pub reason: String,
    /// The message (longer ones are cut at 1,024 bytes, the API server's limit).
    pub message: String,
}

/// Validates a response's `events`: each `{type, reason, message}` with `type` `Normal`
/// (the default) or `Warning` and a reason of 1 to 128 characters without spaces.
pub(crate) fn hook_events(events: Option<Vec<serde_json::Value>>) -> Result<Vec<HookEvent>, InvalidResponse> {
    let events = events.unwrap_or_default();
    if events.len() > MAX_HOOK_EVENTS {
        return Err(InvalidResponse::TooManyEvents { count: events.len() });
    }
    let text = |event: &serde_json::Value, field: &str| event.get(field).and_then(serde_json::Value::as_str).map(str::to_owned);
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            if !event.is_object() {
                return Err(InvalidResponse::EventNotAnObject { index, value: event });
            }
            let warning = match text(&event, "type").as_deref() {
                None | Some("Normal") => false,
                Some("Warning") => true,
                Some(other) => return Err(InvalidResponse::EventType { index, value: other.to_owned() }),
            };
            let reason = text(&event, "reason").unwrap_or_default();
            if reason.is_empty() || reason.len() > 128 || reason.contains(char::is_whitespace) {
                return Err(InvalidResponse::EventReason { index, value: reason });
            }
            let message = text(&event, "message").ok_or(InvalidResponse::EventMessage { index })?;
            Ok(HookEvent { warning, reason, message })
        })
        .collect()
}

/// Refuses a status larger than [`MAX_STATUS_BYTES`], which the API server would refuse on
/// every retry.
pub(crate) fn check_status_size(status: &Value) -> Result<(), InvalidResponse> {
    let size = serde_json::to_vec(status).map(|encoded| encoded.len()).unwrap_or(usize::MAX);
    if size > MAX_STATUS_BYTES {
        return Err(InvalidResponse::StatusTooLarge { size });
    }
    Ok(())
}

/// A response's `status`: an object; `None` for null or absent.
pub(crate) fn response_status(status: Option<Value>) -> Result<Option<Value>, InvalidResponse> {
    match status {
        None | Some(Value::Null) => Ok(None),
        Some(status @ Value::Object(_)) => {
            check_status_size(&status)?;
            Ok(Some(status))
        }
        Some(value) => Err(InvalidResponse::StatusNotAnObject { value }),
    }
}

/// A request body, serialized once.
pub(crate) fn encode(request: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(request).expect("hook requests serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

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

    #[test]
    fn what_servers_add_around_the_json_is_accepted_and_an_empty_body_is_not() {
        for mode in [ResponseUnmarshallMode::Loose, ResponseUnmarshallMode::Strict] {
            for body in [&b"{\"status\":{}}\n"[..], b"\xEF\xBB\xBF{\"status\":{}}", b"\r\n{\"status\":{}}\r\n"] {
                assert!(decode::<Probe>(body, mode).is_ok(), "{:?}", String::from_utf8_lossy(body));
            }
            for empty in [&b""[..], b"\n", b"\xEF\xBB\xBF"] {
                assert!(matches!(decode::<Probe>(empty, mode), Err(DecodeError::Empty)), "{empty:?}");
            }
            let cut = decode::<Probe>(b"{\"status\":{\"a\":", mode).unwrap_err().to_string();
            assert!(cut.contains("EOF while parsing"), "a body cut short is refused: {cut}");
        }
    }

    #[test]
    fn hook_events_are_validated() {
        let events = hook_events(Some(vec![
            serde_json::json!({ "reason": "Ready", "message": "all good" }),
            serde_json::json!({ "type": "Warning", "reason": "QuotaLow", "message": "90% used" }),
        ]))
        .unwrap();
        assert_eq!(events[0], HookEvent { warning: false, reason: "Ready".into(), message: "all good".into() });
        assert!(events[1].warning);
        assert!(hook_events(None).unwrap().is_empty());
        let invalid = |event: serde_json::Value| hook_events(Some(vec![event])).unwrap_err().to_string();
        assert!(invalid(serde_json::json!({ "type": "Error", "reason": "X", "message": "m" })).contains("Normal or Warning"));
        assert!(invalid(serde_json::json!({ "reason": "two words", "message": "m" })).contains("without spaces"));
        assert!(invalid(serde_json::json!({ "reason": "X" })).contains("no message"));
        assert!(invalid(serde_json::json!("Ready")).contains("not an object"));
        let many = vec![serde_json::json!({ "reason": "X", "message": "m" }); MAX_HOOK_EVENTS + 1];
        assert!(hook_events(Some(many)).unwrap_err().to_string().contains("at most"));
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

    #[test]
    fn large_statuses_are_refused() {
        assert!(check_status_size(&json!({ "a": "b" })).is_ok());
        let huge = json!({ "data": "x".repeat(MAX_STATUS_BYTES) });
        assert!(check_status_size(&huge).unwrap_err().to_string().contains("at most"));
    }
}
