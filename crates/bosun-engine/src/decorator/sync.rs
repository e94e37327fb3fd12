//! Syncing one target: call the sync (or finalize) hook with the target and its attachments,
//! validate the whole response, then bring the attachments about and apply the hook's label
//! and annotation changes and status to the target.
//!
//! As for CompositeControllers, nothing is written before the whole response has been
//! validated, and nothing is written that would not change. Only the target's labels,
//! annotations, status and finalizer are ever modified, key by key, so changes others make
//! to the target meanwhile are kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::DynamicObject;
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::controller::{Decorated, TargetKey};
use crate::children::{self, Rules};
use crate::hooks::{self, HookResponse, ObjectMaps};
use crate::invalid_response::InvalidResponse;
use crate::parent::{controller_reference, hook_for, manages_children, object_api, patch_finalizer, patch_guarded, related_maps};
use crate::sync_error::SyncError;

/// The annotation that marks an attachment as its DecoratorController's.
pub const DECORATOR_ANNOTATION: &str = "metacontroller.k8s.io/decorator-controller";

/// The finalizer a DecoratorController with a finalize hook puts on its targets.
pub fn finalizer_name(controller: &str) -> String {
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
struct DecoratorResponse {
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

impl Decorated {
    /// Syncs one target; returns when to sync it again (`resyncAfterSeconds`).
    pub async fn sync(&self, key: &TargetKey) -> Result<Option<Duration>, SyncError> {
        let target_type = &self.targets[key.rule];
        let resource = &target_type.resolved.resource;
        let Some(target) = target_type.cache.get(&key.key) else {
            self.related.forget(key);
            self.ctx.hooks.forget(&resource.kind, &key.key);
            return Ok(None);
        };
        let finalizer = self.finalizer();
        let api = object_api(&self.ctx.client, resource, &target);
        let Some((hook, finalizing)) =
            hook_for(&api, &target, &finalizer, target_type.matches(&target), &self.sync_hook, &self.finalize_hook).await?
        else {
            return Ok(None);
        };
        let has_finalizer = target.finalizers().contains(&finalizer);
        let deleting = target.metadata.deletion_timestamp.is_some();

        // Attachments are never adopted: only those the target controls and that carry this
        // decorator's name are its.
        let uid = target.uid().unwrap_or_default();
        let target_namespace = target.namespace();
        let observed: Vec<Vec<Arc<DynamicObject>>> = self
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
            .collect();
        let related = self.related.gather(key, &target).await?;
        let mut attachments = ObjectMaps::new();
        for (attachment_type, objects) in self.attachments.iter().zip(&observed) {
            let objects = objects.iter().map(Arc::as_ref);
            hooks::insert_objects(&mut attachments, &attachment_type.group_key, hook.version, target_namespace.as_deref(), objects);
        }
        let request = DecoratorRequest {
            controller: &self.controller_json,
            object: &target,
            attachments,
            related: related_maps(&related, hook.version, target_namespace.as_deref()),
            finalizing,
        };
        let response: DecoratorResponse =
            self.ctx.hooks.call(hook, hooks::encode(&request), &target).await.map_err(SyncError::from_hook)?;

        let hook_name = hook.kind.name();
        let invalid = |source| SyncError::invalid_response(hook_name, source);
        let rules = Rules {
            controller: "DecoratorController",
            field: "attachments",
            declared_in: "attachments",
            selector: None,
            labels: Vec::new(),
            annotations: vec![(DECORATOR_ANNOTATION, self.name.clone())],
        };
        let desired =
            children::desired::validate(&self.attachments, &target, response.attachments.unwrap_or_default(), &rules).map_err(invalid)?;
        let labels = changes("labels", response.labels).map_err(invalid)?;
        let annotations = changes("annotations", response.annotations).map_err(invalid)?;
        let status = crate::parent::response_status(response.status).map_err(invalid)?;
        let events = hooks::hook_events(response.events).map_err(invalid)?;
        let resync_after = crate::parent::resync_after(response.resync_after_seconds);

        if finalizing && response.finalized == Some(true) && has_finalizer {
            patch_finalizer(&api, &target, &finalizer, false).await?;
        }
        let attachments_result = if manages_children(&target, finalizing) {
            let owner = controller_reference(&target, resource);
            children::desired::manage(&self.ctx.client, &self.ctx.applier, &self.attachments, &owner, &observed, desired)
                .await
                .map_err(SyncError::Children)
        } else {
            Ok(())
        };

        let mut operations = map_operations("/metadata/labels", &target, target.labels(), target.metadata.labels.is_some(), &labels);
        let annotations_exist = target.metadata.annotations.is_some();
        operations.extend(map_operations("/metadata/annotations", &target, target.annotations(), annotations_exist, &annotations));
        if let Some(status) = status.filter(|status| target.data.get("status") != Some(status)) {
            let operation = json!({ "op": "add", "path": "/status", "value": status });
            if target_type.resolved.has_status {
                patch_guarded(&api, &target, vec![operation], true).await?;
            } else {
                operations.push(operation);
            }
        }
        // A target going away that we do not hold back is left alone.
        if !operations.is_empty() && (!deleting || has_finalizer) {
            patch_guarded(&api, &target, operations, false).await?;
        }
        if !events.is_empty() {
            self.ctx.hook_events(&target.object_ref(resource), events).await;
        }
        attachments_result.map(|()| resync_after)
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
