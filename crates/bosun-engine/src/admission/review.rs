//! bosun's admission protocol: what a `validate`, `mutate` or `convert` hook is sent and may
//! answer, and how the answer becomes the API server's AdmissionReview or ConversionReview
//! response. Hooks get the object, the old object, the operation, who asks and whether it is
//! a dry run — not the review's envelope — and answer `allowed`, `message`, `warnings` and, to
//! mutate, the object as it should be stored; bosun computes the JSON patch. Described in
//! docs/admission.md; its vectors are in `protocol/admission/`.

use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hooks::HookResponse;

/// What a `validate` or `mutate` hook is sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdmissionHookRequest<'a> {
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'a str,
    /// The object's kind: `{group, version, kind}`.
    pub kind: Value,
    /// The object's resource: `{group, version, resource}`.
    pub resource: Value,
    /// The subresource, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_resource: Option<&'a String>,
    /// The object's namespace, if namespaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a String>,
    /// The object's name (empty for a create with `generateName`).
    pub name: &'a str,
    /// The object as it would be stored (none for a delete), without managed fields.
    pub object: Option<Value>,
    /// The object as it is (updates and deletes), without managed fields.
    pub old_object: Option<Value>,
    /// Who is asking.
    pub user_info: &'a k8s_openapi::api::authentication::v1::UserInfo,
    /// A dry run: the hook must have no side effects.
    pub dry_run: bool,
    /// The AdmissionController.
    pub controller: &'a Value,
}

impl<'a> AdmissionHookRequest<'a> {
    /// The hook's view of `request`.
    pub(crate) fn of(request: &'a AdmissionRequest<DynamicObject>, controller: &'a Value) -> Self {
        AdmissionHookRequest {
            operation: operation_name(&request.operation),
            kind: serde_json::json!({ "group": request.kind.group, "version": request.kind.version, "kind": request.kind.kind }),
            resource: serde_json::json!({
                "group": request.resource.group, "version": request.resource.version, "resource": request.resource.resource,
            }),
            sub_resource: request.sub_resource.as_ref(),
            namespace: request.namespace.as_ref(),
            name: &request.name,
            object: request.object.as_ref().map(without_managed_fields),
            old_object: request.old_object.as_ref().map(without_managed_fields),
            user_info: &request.user_info,
            dry_run: request.dry_run,
            controller,
        }
    }
}

/// `object` as a hook sees it: managed fields are the API server's bookkeeping, often the
/// largest part of an object, and nothing a hook decides on.
fn without_managed_fields(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).expect("objects serialize");
    if let Some(metadata) = value["metadata"].as_object_mut() {
        metadata.remove("managedFields");
    }
    value
}

fn operation_name(operation: &kube::core::admission::Operation) -> &'static str {
    use kube::core::admission::Operation;
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// What a `validate` or `mutate` hook answers.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdmissionHookResponse {
    /// Whether the request may go on; default true.
    #[serde(default)]
    pub allowed: Option<bool>,
    /// Why not (shown to the user), or a note.
    #[serde(default)]
    pub message: Option<String>,
    /// Warnings shown to the client (kubectl prints them).
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
    /// `mutate` only: the object as it should be stored.
    #[serde(default)]
    pub object: Option<Value>,
    /// `mutate` only: a JSON patch to the object, instead of `object`.
    #[serde(default)]
    pub patch: Option<json_patch::Patch>,
}

impl HookResponse for AdmissionHookResponse {
    const FIELDS: &'static [&'static str] = &["allowed", "message", "warnings", "object", "patch"];
}

/// Why a hook's answer cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum AnswerError {
    /// A `validate` hook sent `object` or `patch`.
    #[error("a validate hook cannot change the object (it sent {0}); use a mutate hook")]
    ValidateMutates(&'static str),
    /// Both `object` and `patch`.
    #[error("send either object or patch, not both")]
    Both,
    /// The patch does not apply.
    #[error("its patch does not apply to the object: {0}")]
    Patch(String),
    /// The mutated object changed what identifies it.
    #[error("it changed the object's {0}, which a mutation cannot change")]
    Identity(&'static str),
    /// Something to change, but no object (a delete).
    #[error("there is no object to change on a {0}")]
    NoObject(&'static str),
}

/// `response`, denied with `message` as 403 Forbidden (kubectl says "Error from server
/// (Forbidden)").
pub(crate) fn deny(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result.code = 403;
    response.result.reason = "Forbidden".into();
    response
}

/// The AdmissionReview response for `request` from the hook's `answer`: allowed or denied with
/// its message and warnings, and for a `mutate` hook the JSON patch from the object sent to
/// the object answered (none when they are equal).
pub(crate) fn respond(
    request: &AdmissionRequest<DynamicObject>,
    answer: AdmissionHookResponse,
    mutate: bool,
) -> Result<AdmissionResponse, AnswerError> {
    let mut response = AdmissionResponse::from(request);
    if let Some(warnings) = answer.warnings.filter(|warnings| !warnings.is_empty()) {
        response.warnings = Some(warnings);
    }
    if answer.allowed == Some(false) {
        return Ok(deny(response, answer.message.unwrap_or_else(|| "denied by the admission hook".to_owned())));
    }
    let changed = match (answer.object, answer.patch) {
        (Some(_), Some(_)) => return Err(AnswerError::Both),
        (None, None) => None,
        (Some(_), None) if !mutate => return Err(AnswerError::ValidateMutates("object")),
        (None, Some(_)) if !mutate => return Err(AnswerError::ValidateMutates("patch")),
        (Some(object), None) => Some(object),
        (None, Some(patch)) => {
            let mut object = object_value(request)?;
            json_patch::patch(&mut object, &patch).map_err(|error| AnswerError::Patch(error.to_string()))?;
            Some(object)
        }
    };
    let Some(mut changed) = changed else { return Ok(response) };
    // Managed fields are the API server's: an echo of them changes nothing.
    if let Some(metadata) = changed["metadata"].as_object_mut() {
        metadata.remove("managedFields");
    }
    let original = object_value(request)?;
    for (pointer, what) in [
        ("/apiVersion", "apiVersion"),
        ("/kind", "kind"),
        ("/metadata/name", "metadata.name"),
        ("/metadata/namespace", "metadata.namespace"),
    ] {
        if original.pointer(pointer) != changed.pointer(pointer) {
            return Err(AnswerError::Identity(what));
        }
    }
    let patch = json_patch::diff(&original, &changed);
    if patch.0.is_empty() {
        return Ok(response);
    }
    Ok(response.with_patch(patch).expect("a JSON patch serializes"))
}

/// The object as the hook saw it: what its answer is compared with, or its patch applied to.
fn object_value(request: &AdmissionRequest<DynamicObject>) -> Result<Value, AnswerError> {
    let object = request.object.as_ref().ok_or(AnswerError::NoObject(operation_name(&request.operation)))?;
    Ok(without_managed_fields(object))
}

/// What a `convert` hook is sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConvertHookRequest<'a> {
    /// The `apiVersion` every object must be converted to.
    #[serde(rename = "desiredAPIVersion")]
    pub desired_api_version: &'a str,
    /// The objects, in any version of the CRD.
    pub objects: &'a [Value],
    /// The AdmissionController.
    pub controller: &'a Value,
}

/// What a `convert` hook answers: the objects in the desired version, in the same order, or
/// why it cannot.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConvertHookResponse {
    /// The converted objects.
    #[serde(default)]
    pub objects: Option<Vec<Value>>,
    /// Why the objects cannot be converted.
    #[serde(default)]
    pub message: Option<String>,
}

impl HookResponse for ConvertHookResponse {
    const FIELDS: &'static [&'static str] = &["objects", "message"];
}

/// Checks converted `objects` against the `sent` ones: as many, each in `desired_api_version`,
/// with the same kind, name, namespace and UID (the API server refuses anything else, less
/// clearly).
pub(crate) fn check_converted(sent: &[Value], objects: &[Value], desired_api_version: &str) -> Result<(), String> {
    if sent.len() != objects.len() {
        return Err(format!("{} objects sent, {} returned", sent.len(), objects.len()));
    }
    for (index, (sent, converted)) in sent.iter().zip(objects).enumerate() {
        if converted["apiVersion"] != desired_api_version {
            return Err(format!("objects[{index}] has apiVersion {}, not {desired_api_version}", converted["apiVersion"]));
        }
        for pointer in ["/kind", "/metadata/name", "/metadata/namespace", "/metadata/uid"] {
            if sent.pointer(pointer) != converted.pointer(pointer) {
                return Err(format!("objects[{index}] changed {pointer}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(object: Value) -> AdmissionRequest<DynamicObject> {
        let review: kube::core::admission::AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u1", "kind": { "group": "x", "version": "v1", "kind": "Thing" },
                "resource": { "group": "x", "version": "v1", "resource": "things" },
                "requestKind": { "group": "x", "version": "v1", "kind": "Thing" },
                "requestResource": { "group": "x", "version": "v1", "resource": "things" },
                "name": "t", "namespace": "ns", "operation": "CREATE", "userInfo": { "username": "alice" },
                "object": object, "dryRun": false,
            },
        }))
        .unwrap();
        review.try_into().unwrap()
    }

    fn thing(spec: Value) -> Value {
        json!({ "apiVersion": "x/v1", "kind": "Thing", "metadata": { "name": "t", "namespace": "ns", "managedFields": [{ "manager": "kubectl" }] }, "spec": spec })
    }

    fn answer(value: Value) -> AdmissionHookResponse {
        serde_json::from_value(value).unwrap()
    }

    fn patch_of(response: &AdmissionResponse) -> Value {
        serde_json::from_slice(response.patch.as_deref().unwrap_or(b"null")).unwrap()
    }

    #[test]
    fn a_denial_carries_the_message_and_warnings() {
        let response =
            respond(&request(thing(json!({}))), answer(json!({ "allowed": false, "message": "no", "warnings": ["w"] })), false).unwrap();
        assert!(!response.allowed);
        assert_eq!(response.result.message, "no");
        assert_eq!(response.warnings, Some(vec!["w".to_owned()]));
        let response = respond(&request(thing(json!({}))), answer(json!({})), false).unwrap();
        assert!(response.allowed && response.patch.is_none(), "an empty answer allows");
    }

    #[test]
    fn a_mutation_becomes_a_patch_against_what_the_hook_saw() {
        let mut defaulted = thing(json!({ "replicas": 1 }));
        defaulted["metadata"].as_object_mut().unwrap().remove("managedFields");
        defaulted["spec"]["host"] = json!("h");
        let response = respond(&request(thing(json!({ "replicas": 1 }))), answer(json!({ "object": defaulted })), true).unwrap();
        assert_eq!(patch_of(&response), json!([{ "op": "add", "path": "/spec/host", "value": "h" }]), "managed fields left alone");
        let patched = answer(json!({ "patch": [{ "op": "add", "path": "/spec/host", "value": "h" }] }));
        let response = respond(&request(thing(json!({ "replicas": 1 }))), patched, true).unwrap();
        assert_eq!(patch_of(&response), json!([{ "op": "add", "path": "/spec/host", "value": "h" }]));
        // The object echoed back, managed fields and all: nothing to change.
        let unchanged = respond(&request(thing(json!({}))), answer(json!({ "object": thing(json!({})) })), true).unwrap();
        let mut seen = thing(json!({}));
        seen["metadata"].as_object_mut().unwrap().remove("managedFields");
        let echoed = respond(&request(thing(json!({}))), answer(json!({ "object": seen })), true).unwrap();
        assert!(echoed.patch.is_none(), "{:?}", patch_of(&echoed));
        assert!(unchanged.patch.is_none(), "{:?}", patch_of(&unchanged));
    }

    #[test]
    fn answers_that_cannot_be_used_say_why() {
        let renamed = {
            let mut object = thing(json!({}));
            object["metadata"]["name"] = json!("other");
            object
        };
        let object = request(thing(json!({})));
        assert_eq!(respond(&object, answer(json!({ "object": renamed })), true).unwrap_err(), AnswerError::Identity("metadata.name"));
        assert_eq!(
            respond(&object, answer(json!({ "object": thing(json!({})) })), false).unwrap_err(),
            AnswerError::ValidateMutates("object")
        );
        let both = answer(json!({ "object": thing(json!({})), "patch": [] }));
        assert_eq!(respond(&object, both, true).unwrap_err(), AnswerError::Both);
        let bad = answer(json!({ "patch": [{ "op": "remove", "path": "/spec/missing" }] }));
        assert!(matches!(respond(&object, bad, true).unwrap_err(), AnswerError::Patch(_)));
    }

    /// What bosun answers the API server, as a vector's `expect.json` holds it: the review's
    /// response without its UID, a patch decoded from base64.
    fn answered(response: &AdmissionResponse) -> Value {
        let mut value = serde_json::to_value(response).unwrap();
        value.as_object_mut().unwrap().remove("uid");
        if let Some(patch) = &response.patch {
            value["patch"] = serde_json::from_slice(patch).unwrap();
        }
        value
    }

    /// The shared vectors of `protocol/admission/`: for each, the request bosun sends the hook
    /// (without `controller`) is `request.json`, and bosun's answer to the API server, given
    /// the hook's `response.json`, is `expect.json`. `BOSUN_BLESS_VECTORS=1` writes them.
    #[test]
    fn the_admission_vectors_hold() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../protocol/admission");
        let bless = std::env::var_os("BOSUN_BLESS_VECTORS").is_some();
        let read = |path: std::path::PathBuf| -> Value { serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap() };
        let mut seen = 0;
        for entry in std::fs::read_dir(&root).unwrap() {
            let dir = entry.unwrap().path();
            let given = read(dir.join("review.json"));
            let answer = read(dir.join("response.json"));
            let (mut sent, expected) = match given["hook"].as_str().unwrap() {
                "convert" => {
                    let request = &given["review"]["request"];
                    let desired = request["desiredAPIVersion"].as_str().unwrap();
                    let objects = request["objects"].as_array().unwrap().clone();
                    let sent = serde_json::to_value(ConvertHookRequest {
                        desired_api_version: desired,
                        objects: &objects,
                        controller: &Value::Null,
                    })
                    .unwrap();
                    let answer: ConvertHookResponse = serde_json::from_value(answer).unwrap();
                    let converted = answer.objects.unwrap();
                    check_converted(&objects, &converted, desired).unwrap();
                    (sent, json!({ "convertedObjects": converted, "result": { "status": "Success" } }))
                }
                hook => {
                    let review: kube::core::admission::AdmissionReview<DynamicObject> =
                        serde_json::from_value(given["review"].clone()).unwrap();
                    let request: AdmissionRequest<DynamicObject> = review.try_into().unwrap();
                    let sent = serde_json::to_value(AdmissionHookRequest::of(&request, &Value::Null)).unwrap();
                    let answer: AdmissionHookResponse = serde_json::from_value(answer).unwrap();
                    (sent, answered(&respond(&request, answer, hook == "mutate").unwrap()))
                }
            };
            sent.as_object_mut().unwrap().remove("controller");
            for (file, value) in [("request.json", &sent), ("expect.json", &expected)] {
                let path = dir.join(file);
                if bless {
                    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap() + "\n").unwrap();
                } else {
                    assert_eq!(&read(path.clone()), value, "{}", path.display());
                }
            }
            seen += 1;
        }
        assert!(seen >= 6, "{seen} vectors");
    }

    #[test]
    fn converted_objects_keep_their_identity_and_take_the_desired_version() {
        let sent = [json!({ "apiVersion": "x/v1", "kind": "Thing", "metadata": { "name": "a", "uid": "1" } })];
        let good = [json!({ "apiVersion": "x/v2", "kind": "Thing", "metadata": { "name": "a", "uid": "1" } })];
        assert_eq!(check_converted(&sent, &good, "x/v2"), Ok(()));
        assert!(check_converted(&sent, &good, "x/v3").unwrap_err().contains("apiVersion"));
        assert!(check_converted(&sent, &[], "x/v2").unwrap_err().contains("1 objects sent, 0 returned"));
        let renamed = [json!({ "apiVersion": "x/v2", "kind": "Thing", "metadata": { "name": "b", "uid": "1" } })];
        assert!(check_converted(&sent, &renamed, "x/v2").unwrap_err().contains("/metadata/name"));
    }
}
