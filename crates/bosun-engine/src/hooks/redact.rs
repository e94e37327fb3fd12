//! What a hook's request or response looks like in a trace log: its JSON with the data of
//! every Secret in it — parent, children, related objects, attachments — redacted, so that a
//! hook can be debugged from its bodies (as with Metacontroller's `--zap-log-level=5`) without
//! credentials reaching the logs.

use serde_json::Value;

const REDACTED: &str = "<redacted>";

/// `body` as logged: compact JSON with Secret data redacted; a body that is not JSON is
/// described by its length alone, since nothing in it could be told apart from a secret.
pub(crate) fn for_log(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            redact_secrets(&mut value);
            value.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON>", body.len()),
    }
}

/// Replaces the values of `data` and `stringData` in every object of kind `Secret` within
/// `value` (keys are kept: they say what is there), and its last-applied annotations, which
/// hold a copy of them.
pub(crate) fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let secret = object.get("kind").and_then(Value::as_str) == Some("Secret");
            for (key, field) in object.iter_mut() {
                match (secret, key.as_str(), field) {
                    (true, "data" | "stringData", Value::Object(entries)) => {
                        entries.values_mut().for_each(|entry| *entry = Value::String(REDACTED.into()));
                    }
                    (true, "data" | "stringData", field) => *field = Value::String(REDACTED.into()),
                    (true, "metadata", Value::Object(metadata)) => {
                        if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
                            for (name, annotation) in annotations.iter_mut() {
                                if name.ends_with("last-applied-configuration") {
                                    *annotation = Value::String(REDACTED.into());
                                }
                            }
                        }
                    }
                    (_, _, field) => redact_secrets(field),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_data_is_redacted_wherever_it_is() {
        let secret = |name: &str| {
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": name, "annotations": {
                    "metacontroller.k8s.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}",
                    "note": "kept",
                }},
                "data": { "password": "aHVudGVyMg==" }, "stringData": { "token": "hunter2" },
            })
        };
        let request = json!({
            "parent": { "kind": "Thing", "metadata": { "name": "p" }, "spec": { "data": { "keep": "me" } } },
            "children": { "Secret.v1": { "s": secret("s") } },
            "related": { "Secret.v1": { "ns/r": secret("r") } },
            "attachments": [secret("a")],
        });
        let logged = for_log(request.to_string().as_bytes());
        assert!(!logged.contains("aHVudGVyMg==") && !logged.contains("hunter2"), "{logged}");
        for kept in ["\"password\":\"<redacted>\"", "\"token\":\"<redacted>\"", "\"note\":\"kept\"", "\"keep\":\"me\""] {
            assert!(logged.contains(kept), "{kept} missing from {logged}");
        }
        assert_eq!(for_log(b"not json"), "<8 bytes, not JSON>");
    }
}
