//! What a hook's request or response looks like wherever it is printed — a trace log, `bosun
//! hook test`'s output and saved vectors: its JSON with the data of every Secret in it —
//! parent, children, related objects, attachments — redacted, and the hook URLs of the
//! controller object it carries printed as [`bosun_runtime::redact::url`] prints them, so that a
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
/// hold a copy of them; and redacts the hook URLs and paths of every CompositeController and
/// DecoratorController within it.
pub(crate) fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let kind = object.get("kind").and_then(Value::as_str);
            let (controller, secret) = (matches!(kind, Some("CompositeController" | "DecoratorController")), kind == Some("Secret"));
            if controller {
                redact_hook_urls(object);
            }
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

/// Redacts `spec.hooks.*.webhook.url` and `.path` of a controller object.
fn redact_hook_urls(controller: &mut serde_json::Map<String, Value>) {
    let Some(Value::Object(hooks)) = controller.get_mut("spec").and_then(|spec| spec.get_mut("hooks")) else { return };
    for hook in hooks.values_mut() {
        let Some(Value::Object(webhook)) = hook.get_mut("webhook") else { continue };
        if let Some(Value::String(url)) = webhook.get_mut("url") {
            *url = bosun_runtime::redact::url_text(url);
        }
        if let Some(Value::String(path)) = webhook.get_mut("path") {
            *path = bosun_runtime::redact::path_text(path);
        }
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

    #[test]
    fn the_controllers_hook_urls_are_redacted() {
        let request = json!({
            "controller": { "kind": "CompositeController", "spec": { "hooks": {
                "sync": { "webhook": { "url": "https://u:PW@h/sync?code=S1#S3" } },
                "finalize": { "webhook": { "service": { "name": "s", "namespace": "n" }, "path": "/finalize?token=S2" } },
            } } },
        });
        let logged = for_log(request.to_string().as_bytes());
        for secret in ["PW", "S1", "S2", "S3"] {
            assert!(!logged.contains(secret), "{secret} in {logged}");
        }
        assert!(
            logged.contains("/finalize?token=REDACTED") && logged.contains("https://REDACTED@h/sync?code=REDACTED#REDACTED"),
            "{logged}"
        );
    }
}
