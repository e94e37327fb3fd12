//! A DecoratorController's [`Policy`] for the one reconciler: a target sees only the
//! attachments it controls (never adopted), its hooks get `object` and `attachments`, and the
//! response's label and annotation changes and status are applied to the target.
//!
//! As for CompositeControllers, nothing is written before the whole response has been
//! validated, and nothing is written that would not change. Only the target's labels,
//! annotations, status and finalizer are ever modified, key by key, so changes others make
//! to the target meanwhile are kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::api::{ApiResource, DynamicObject};
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::controller::{HostedDecorator, TargetKey};
use crate::children::{ChildType, Rules};
use crate::context::EngineContext;
use crate::hooks::{self, HookEndpoint, HookResponse, ObjectMaps};
use crate::invalid_response::InvalidResponse;
use crate::parent::{patch_guarded, write_status};
use crate::reconcile::{Common, Policy, SyncResponse};
use crate::related::Related;
use crate::sync_error::SyncError;

/// The annotation that marks an attachment as its DecoratorController's.
pub(crate) const DECORATOR_ANNOTATION: &str = "metacontroller.k8s.io/decorator-controller";

/// The finalizer a DecoratorController with a finalize hook puts on its targets.
pub(crate) fn finalizer_name(controller: &str) -> String {
    format!("metacontroller.io/decoratorcontroller-{controller}")
}

/// The request to a DecoratorController's sync and finalize hooks.
#[derive(Serialize)]
struct DecoratorRequest<'a> {
    controller: &'a Value,
    object: &'a DynamicObject,
    attachments: ObjectMaps<'a>,
    related: ObjectMaps<'a>,
    finalizing: bool,
}

/// The response of a DecoratorController's sync and finalize hooks.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DecoratorResponse {
    #[serde(default)]
    labels: Option<Value>,
    #[serde(default)]
    annotations: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    attachments: Option<Vec<Value>>,
    #[serde(default)]
    resync_after_seconds: Option<f64>,
    #[serde(default)]
    finalized: Option<bool>,
    /// bosun's extension: events to record on the target.
    #[serde(default)]
    events: Option<Vec<Value>>,
}

impl HookResponse for DecoratorResponse {
    const FIELDS: &'static [&'static str] =
        &["labels", "annotations", "status", "attachments", "resyncAfterSeconds", "finalized", "events"];
}

impl SyncResponse for DecoratorResponse {
    /// `labels`, `annotations` and `status`.
    type Rest = (Option<Value>, Option<Value>, Option<Value>);

    fn split(self) -> (Common, Self::Rest) {
        let common = Common {
            children: self.attachments,
            resync_after_seconds: self.resync_after_seconds,
            finalized: self.finalized,
            events: self.events,
        };
        (common, (self.labels, self.annotations, self.status))
    }
}

/// A `labels` or `annotations` response field: keys to set (to a string) or remove (null).
fn changes(field: &'static str, value: Option<Value>) -> Result<BTreeMap<String, Option<String>>, InvalidResponse> {
    match value {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key, Some(text))),
                Value::Null => Ok((key, None)),
                value => Err(InvalidResponse::MapValue { field, key, value }),
            })
            .collect(),
        Some(value) => Err(InvalidResponse::NotAMap { field, value }),
    }
}

/// JSON patch operations that apply `changes` to the map at `path` (`/metadata/labels`) of
/// `target`, key by key, given its `current` content. Keys others set are never touched: a
/// map that does not exist yet is created only if the target's resourceVersion is still the
/// one read, so a map another client added meanwhile is not replaced.
fn map_operations(
    path: &str,
    target: &DynamicObject,
    current: &BTreeMap<String, String>,
    exists: bool,
    changes: &BTreeMap<String, Option<String>>,
) -> Vec<Value> {
    let escape = |key: &str| key.replace('~', "~0").replace('/', "~1");
    let mut operations = Vec::new();
    for (key, value) in changes {
        match value {
            Some(value) if current.get(key) != Some(value) => {
                operations.push(json!({ "op": "add", "path": format!("{path}/{}", escape(key)), "value": value }))
            }
            None if current.contains_key(key) => operations.push(json!({ "op": "remove", "path": format!("{path}/{}", escape(key)) })),
            _ => {}
        }
    }
    if !exists && !operations.is_empty() {
        operations.insert(0, json!({ "op": "add", "path": path, "value": {} }));
        operations.insert(0, json!({ "op": "test", "path": "/metadata/resourceVersion", "value": target.resource_version() }));
    }
    operations
}

/// What a valid response writes on the target itself.
pub(crate) struct TargetUpdate {
    labels: BTreeMap<String, Option<String>>,
    annotations: BTreeMap<String, Option<String>>,
    status: Option<Value>,
}

impl Policy for HostedDecorator {
    type Key = TargetKey;
    /// The attachments of each type the target controls.
    type Observed = Vec<Vec<Arc<DynamicObject>>>;
    type Response = DecoratorResponse;
    type Update = TargetUpdate;

    fn ctx(&self) -> &EngineContext {
        &self.ctx
    }

    fn resource(&self, key: &TargetKey) -> &ApiResource {
        &self.targets[key.rule].resolved.resource
    }

    fn cached(&self, key: &TargetKey) -> Option<Arc<DynamicObject>> {
        self.targets[key.rule].cache.get(&key.key)
    }

    fn forget(&self, key: &TargetKey) {
        self.ctx.hooks.forget(&self.resource(key).kind, &key.key);
    }

    fn related(&self) -> &Related<TargetKey> {
        &self.related
    }

    fn finalizer(&self) -> String {
        finalizer_name(&self.name)
    }

    fn handles(&self, key: &TargetKey, target: &DynamicObject) -> bool {
        self.targets[key.rule].matches(target)
    }

    fn hooks(&self) -> (&Option<HookEndpoint>, &Option<HookEndpoint>) {
        (&self.sync_hook, &self.finalize_hook)
    }

    fn child_types(&self) -> &[ChildType] {
        &self.attachments
    }

    /// Attachments are never adopted: only those the target controls and that carry this
    /// decorator's name are its.
    async fn observe(&self, target: &DynamicObject) -> Result<Self::Observed, SyncError> {
        let uid = target.uid().unwrap_or_default();
        let target_namespace = target.namespace();
        Ok(self
            .attachments
            .iter()
            .map(|attachment_type| {
                let scoped = |object: &DynamicObject| {
                    target_namespace.is_none() || !attachment_type.namespaced || object.namespace() == target_namespace
                };
                attachment_type
                    .cache
                    .controlled_by(&uid)
                    .into_iter()
                    .filter(|object| object.annotations().get(DECORATOR_ANNOTATION) == Some(&self.name) && scoped(object))
                    .collect()
            })
            .collect())
    }

    fn shown<'a>(&self, observed: &'a Self::Observed) -> Vec<Vec<&'a DynamicObject>> {
        observed.iter().map(|objects| objects.iter().map(Arc::as_ref).collect()).collect()
    }

    fn request(&self, object: &DynamicObject, attachments: ObjectMaps<'_>, related: ObjectMaps<'_>, finalizing: bool) -> Vec<u8> {
        hooks::encode(&DecoratorRequest { controller: &self.controller_json, object, attachments, related, finalizing })
    }

    fn rules<'a>(&self, _: &DynamicObject, _: &'a Self::Observed) -> Rules<'a> {
        Rules {
            controller: "DecoratorController",
            field: "attachments",
            declared_in: "attachments",
            selector: None,
            labels: Vec::new(),
            annotations: vec![(DECORATOR_ANNOTATION, self.name.clone())],
        }
    }

    fn update(
        &self,
        (labels, annotations, status): (Option<Value>, Option<Value>, Option<Value>),
    ) -> Result<TargetUpdate, InvalidResponse> {
        Ok(TargetUpdate {
            labels: changes("labels", labels)?,
            annotations: changes("annotations", annotations)?,
            status: crate::parent::response_status(status)?,
        })
    }

    async fn settle(&self, _: &DynamicObject, observed: Self::Observed) -> Result<Vec<Vec<Arc<DynamicObject>>>, SyncError> {
        Ok(observed)
    }

    /// Applies the label and annotation changes key by key, and the status (through the status
    /// subresource where there is one); a target going away that we do not hold back is left
    /// alone.
    async fn write(
        &self,
        key: &TargetKey,
        api: &Api<DynamicObject>,
        target: &DynamicObject,
        update: TargetUpdate,
    ) -> Result<(), SyncError> {
        let has_status = self.targets[key.rule].resolved.has_status;
        let mut operations = map_operations("/metadata/labels", target, target.labels(), target.metadata.labels.is_some(), &update.labels);
        let annotations_exist = target.metadata.annotations.is_some();
        operations.extend(map_operations("/metadata/annotations", target, target.annotations(), annotations_exist, &update.annotations));
        if let Some(status) = update.status.filter(|status| target.data.get("status") != Some(status)) {
            if has_status {
                write_status(api, target, status).await?;
            } else {
                operations.push(json!({ "op": "add", "path": "/status", "value": status }));
            }
        }
        let held = target.finalizers().contains(&finalizer_name(&self.name));
        if !operations.is_empty() && (target.metadata.deletion_timestamp.is_none() || held) {
            patch_guarded::<serde::de::IgnoredAny>(api, target, operations, false).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_changes_become_per_key_operations() {
        let current = BTreeMap::from([("keep".to_owned(), "1".to_owned()), ("gone".to_owned(), "x".to_owned())]);
        let changes = BTreeMap::from([
            ("keep".to_owned(), Some("1".to_owned())),
            ("gone".to_owned(), None),
            ("absent".to_owned(), None),
            ("example.com/new".to_owned(), Some("y".to_owned())),
        ]);
        let target: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "t", "resourceVersion": "9" },
        }))
        .unwrap();
        let operations = map_operations("/metadata/labels", &target, &current, true, &changes);
        assert_eq!(
            operations,
            vec![
                json!({ "op": "add", "path": "/metadata/labels/example.com~1new", "value": "y" }),
                json!({ "op": "remove", "path": "/metadata/labels/gone" }),
            ]
        );
        let unchanged = BTreeMap::from([("keep".to_owned(), Some("1".to_owned()))]);
        assert!(map_operations("/metadata/labels", &target, &current, true, &unchanged).is_empty(), "no write when nothing changes");
        let first = map_operations(
            "/metadata/annotations",
            &target,
            &BTreeMap::new(),
            false,
            &BTreeMap::from([("a".to_owned(), Some("b".to_owned()))]),
        );
        assert_eq!(first[0], json!({ "op": "test", "path": "/metadata/resourceVersion", "value": "9" }), "a new map replaces none");
        assert_eq!(first[1], json!({ "op": "add", "path": "/metadata/annotations", "value": {} }));
    }

    #[test]
    fn changes_must_be_strings_or_null() {
        let parsed = changes("labels", Some(json!({ "a": "1", "b": null }))).unwrap();
        assert_eq!(parsed, BTreeMap::from([("a".to_owned(), Some("1".to_owned())), ("b".to_owned(), None)]));
        assert!(changes("labels", Some(json!({ "a": 1 }))).unwrap_err().to_string().contains("labels.a is 1"));
        assert!(changes("annotations", Some(json!(["a"]))).unwrap_err().to_string().contains("must be an object"));
    }
}
