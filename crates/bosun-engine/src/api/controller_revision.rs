//! ControllerRevision (`metacontroller.k8s.io`, not `apps/v1`): the parent fields of one
//! revision and the children that belong to it, used by rolling updates. Its fields sit at the
//! top level rather than under `spec`, so its CRD is written here rather than derived.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::json;

use super::{API_APPROVED_ANNOTATION, GROUP, VERSION};

/// The ControllerRevision CRD, with Metacontroller's schema.
pub fn controller_revision_crd() -> CustomResourceDefinition {
    let (annotation, approval) = API_APPROVED_ANNOTATION;
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("controllerrevisions.{GROUP}"),
            "annotations": { annotation: approval },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": "ControllerRevision",
                "listKind": "ControllerRevisionList",
                "plural": "controllerrevisions",
                "singular": "controllerrevision",
            },
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "description": "The parent fields of one revision and the children that belong to it.",
                    "type": "object",
                    "required": ["metadata", "parentPatch"],
                    "properties": {
                        "apiVersion": { "type": "string" },
                        "kind": { "type": "string" },
                        "metadata": { "type": "object" },
                        "parentPatch": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                        "children": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["apiGroup", "kind", "names"],
                                "properties": {
                                    "apiGroup": { "type": "string" },
                                    "kind": { "type": "string" },
                                    "names": { "type": "array", "items": { "type": "string" } },
                                },
                            },
                        },
                    },
                }},
            }],
        },
    }))
    .expect("a valid CRD")
}
