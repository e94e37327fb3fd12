//! A DecoratorController's [`Policy`] for the one reconciler, and everything that answers a
//! question about its targets: which objects of its target types it selects, which targets a
//! change concerns, what a target owns (only the attachments it controls, never adopted), the
//! hook request with `object` and `attachments`, and the response's label and annotation
//! changes and status, applied to the target.
//!
//! As for CompositeControllers, nothing is written before the whole response has been
//! validated, and nothing is written that would not change. Only the target's labels,
//! annotations, status and finalizer are ever modified, key by key, so changes others make
//! to the target meanwhile are kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use bosun_runtime::{CacheEvent, ObjectKey};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::DynamicObject;
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::children::desired::DesiredChild;
use crate::children::{ChildType, Rules};
use crate::guarded::{patch_guarded, write_status};
use crate::hooks::{self, HookResponse, ObjectMaps};
use crate::invalid_response::InvalidResponse;
use crate::reconcile::{Common, Hosted, HostedKey, Policy, SyncResponse};
use crate::selector;
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

/// Which objects of one of a DecoratorController's `resources` it decorates.
pub(crate) struct TargetSelection {
    /// `labelSelector`; absent: every object.
    pub labels: Option<LabelSelector>,
    /// `annotationSelector`, as a label selector over annotations; absent: every object.
    pub annotations: Option<LabelSelector>,
    /// `ignoreStatusChanges`.
    pub ignore_status_changes: bool,
}

impl TargetSelection {
    /// Whether `object` matches both selectors.
    pub(crate) fn matches(&self, object: &DynamicObject) -> bool {
        let satisfies = |selector: &Option<LabelSelector>, map| {
            selector.as_ref().is_none_or(|selector| selector::matches(selector, map).unwrap_or(false))
        };
        satisfies(&self.labels, object.labels()) && satisfies(&self.annotations, object.annotations())
    }
}

/// Identifies a target: which resource rule, and the object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TargetKey {
    /// Index into the DecoratorController's `resources`.
    pub rule: usize,
    /// The object.
    pub key: ObjectKey,
}

impl std::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "resources[{}] {}", self.rule, self.key)
    }
}

impl HostedKey for TargetKey {
    fn rule(&self) -> usize {
        self.rule
    }

    fn object(&self) -> &ObjectKey {
        &self.key
    }
}

/// What a DecoratorController adds to a hosted controller.
pub(crate) struct DecoratorPolicy {
    /// Per target type (in the order of [`Hosted::objects`]): which objects it decorates.
    pub selections: Vec<TargetSelection>,
}

/// A hosted DecoratorController.
pub(crate) type HostedDecorator = Hosted<DecoratorPolicy>;

/// What a valid response writes on the target itself.
pub(crate) struct TargetUpdate {
    labels: BTreeMap<String, Option<String>>,
    annotations: BTreeMap<String, Option<String>>,
    status: Option<Value>,
}

impl Policy for DecoratorPolicy {
    type Key = TargetKey;
    /// The attachments of each type the target controls.
    type Observed = Vec<Vec<Arc<DynamicObject>>>;
    type Response = DecoratorResponse;
    type Update = TargetUpdate;

    fn handles(hosted: &HostedDecorator, key: &TargetKey, target: &DynamicObject) -> bool {
        hosted.policy.selections[key.rule].matches(target)
    }

    /// Attachments are never adopted: only those the target controls and that carry this
    /// decorator's name are its.
    async fn observe(hosted: &HostedDecorator, target: &DynamicObject) -> Result<Self::Observed, SyncError> {
        let uid = target.uid().unwrap_or_default();
        let target_namespace = target.namespace();
        Ok(hosted
            .child_types
            .iter()
            .map(|attachment_type| {
                let scoped = |object: &DynamicObject| {
                    target_namespace.is_none() || !attachment_type.namespaced || object.namespace() == target_namespace
                };
                attachment_type
                    .cache
                    .controlled_by(&uid)
                    .into_iter()
                    .filter(|object| object.annotations().get(DECORATOR_ANNOTATION) == Some(&hosted.name) && scoped(object))
                    .collect()
            })
            .collect())
    }

    fn shown(observed: &Self::Observed) -> Vec<Vec<&DynamicObject>> {
        observed.iter().map(|objects| objects.iter().map(Arc::as_ref).collect()).collect()
    }

    fn request(
        hosted: &HostedDecorator,
        object: &DynamicObject,
        attachments: ObjectMaps<'_>,
        related: ObjectMaps<'_>,
        finalizing: bool,
    ) -> Vec<u8> {
        hooks::encode(&DecoratorRequest { controller: &hosted.controller_json, object, attachments, related, finalizing })
    }

    fn rules<'a>(hosted: &HostedDecorator, _: &DynamicObject, _: &'a Self::Observed) -> Rules<'a> {
        Rules {
            controller: "DecoratorController",
            field: "attachments",
            declared_in: "attachments",
            selector: None,
            labels: Vec::new(),
            annotations: vec![(DECORATOR_ANNOTATION, hosted.name.clone())],
        }
    }

    fn update((labels, annotations, status): (Option<Value>, Option<Value>, Option<Value>)) -> Result<TargetUpdate, InvalidResponse> {
        Ok(TargetUpdate {
            labels: changes("labels", labels)?,
            annotations: changes("annotations", annotations)?,
            status: hooks::response_status(status)?,
        })
    }

    /// Attachments are never adopted: what was observed is owned.
    async fn adopt(
        _: &HostedDecorator,
        _: &DynamicObject,
        observed: Self::Observed,
        _: &[DesiredChild],
    ) -> Result<Vec<Vec<Arc<DynamicObject>>>, SyncError> {
        Ok(observed)
    }

    /// Applies the label and annotation changes key by key, and the status (through the status
    /// subresource where there is one); a target going away that we do not hold back is left
    /// alone.
    async fn write(
        hosted: &HostedDecorator,
        key: &TargetKey,
        api: &Api<DynamicObject>,
        target: &DynamicObject,
        update: TargetUpdate,
    ) -> Result<(), SyncError> {
        let has_status = hosted.objects[key.rule].resolved.has_status;
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
        let held = target.finalizers().contains(&hosted.finalizer);
        if !operations.is_empty() && (target.metadata.deletion_timestamp.is_none() || held) {
            patch_guarded::<serde::de::IgnoredAny>(api, target, operations, false).await?;
        }
        Ok(())
    }
}

impl HostedDecorator {
    /// Whether this controller reconciles `object` of rule `rule`: it matches, or still
    /// carries our finalizer.
    fn ours(&self, rule: usize, object: &DynamicObject) -> bool {
        self.policy.selections[rule].matches(object) || object.finalizers().contains(&self.finalizer)
    }

    /// The target a change of rule `rule`'s objects concerns, if it is ours (before or after).
    pub(crate) fn target_keys(&self, rule: usize, event: &CacheEvent<'_>) -> Vec<TargetKey> {
        let CacheEvent::Applied { old, new } = event else { return Vec::new() };
        if self.policy.selections[rule].ignore_status_changes && bosun_runtime::predicate::only_status_changed(event) {
            return Vec::new();
        }
        if self.ours(rule, new) || old.is_some_and(|old| self.ours(rule, old)) {
            vec![TargetKey { rule, key: ObjectKey::of(new) }]
        } else {
            Vec::new()
        }
    }

    /// An attachment changed: the target that controls it, if it is one of ours.
    pub(crate) fn attachment_keys(&self, attachment_type: &ChildType, event: &CacheEvent<'_>) -> Vec<TargetKey> {
        let (old, new) = match event {
            CacheEvent::Applied { old, new } => (*old, Some(*new)),
            CacheEvent::Deleted(object) => {
                self.ctx.applier.forget(attachment_type, object);
                (Some(*object), None)
            }
        };
        let mut keys = Vec::new();
        for attachment in old.into_iter().chain(new) {
            if attachment.annotations().get(DECORATOR_ANNOTATION) != Some(&self.name) {
                continue;
            }
            for (rule, target) in self.objects.iter().enumerate() {
                if let Some(key) = bosun_runtime::controller_key(attachment, &target.resolved.resource, target.resolved.namespaced) {
                    keys.push(TargetKey { rule, key });
                }
            }
        }
        keys
    }

    /// Every target this controller reconciles.
    pub(crate) fn all_keys(&self) -> Vec<TargetKey> {
        let mut keys = Vec::new();
        for (rule, target) in self.objects.iter().enumerate() {
            keys.extend(target.cache.keys_where(|object| self.ours(rule, object)).into_iter().map(|key| TargetKey { rule, key }));
        }
        keys
    }

    /// The key under which `target` is synced, or why this controller does not sync it.
    pub(crate) fn key_of(&self, target: &DynamicObject) -> Result<TargetKey, String> {
        let types = target.types.clone().unwrap_or_default();
        let rule = self.objects.iter().position(|candidate| {
            candidate.resolved.resource.kind == types.kind && candidate.resolved.resource.api_version == types.api_version
        });
        match rule {
            Some(rule) => Ok(TargetKey { rule, key: ObjectKey::of(target) }),
            None => Err(format!("DecoratorController {} decorates none of {} ({})", self.name, types.kind, types.api_version)),
        }
    }

    /// Waits until the caches of the targets and attachments have listed them.
    pub(crate) async fn wait_synced(&self) {
        self.wait_listed(&[]).await
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
