//! The children (or attachments) a hook declares: validated as a whole before anything is
//! written, then brought about — observed ones the hook no longer declares deleted, the rest
//! created or updated.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use bosun_runtime::ObjectKey;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Applied, Applier, ApplyError, ChildType, Tie};
use crate::api::ChildUpdateMethod;
use crate::invalid_response::{ChildProblem, InvalidResponse};
use crate::selector;
use bosun_runtime::cache::CONTROLLER_UID_LABEL;

/// A validated desired child.
pub(crate) struct DesiredChild {
    /// Index into the controller's child types.
    pub child_type: usize,
    /// Its namespace and name.
    pub key: ObjectKey,
    /// The object to apply.
    pub object: Value,
}

/// The writes [`manage`] would make of `desired` given `observed`, as (verb, child type index,
/// namespace): what the controller's identity must be allowed before anything is written.
pub(crate) fn writes(
    applier: &Applier,
    types: &[ChildType],
    owner: &Value,
    observed: &[Vec<&DynamicObject>],
    desired: &[DesiredChild],
) -> BTreeSet<(&'static str, usize, Option<String>)> {
    let namespace = |index: usize, namespace: Option<String>| if types[index].namespaced { namespace } else { None };
    let mut writes = BTreeSet::new();
    let wanted: HashSet<(usize, &ObjectKey)> = desired.iter().map(|child| (child.child_type, &child.key)).collect();
    for (index, objects) in observed.iter().enumerate() {
        for object in objects.iter().filter(|object| object.metadata.deletion_timestamp.is_none()) {
            if !wanted.contains(&(index, &ObjectKey::of(object))) {
                writes.insert(("delete", index, namespace(index, object.namespace())));
            }
        }
    }
    for child in desired {
        let (index, child_type) = (child.child_type, &types[child.child_type]);
        let at = namespace(index, child.key.namespace.clone());
        match observed[index].iter().find(|object| ObjectKey::of(object) == child.key) {
            None => {
                writes.insert(("create", index, at.clone()));
                if applier.server_side() {
                    writes.insert(("patch", index, at));
                }
            }
            Some(existing) if existing.metadata.deletion_timestamp.is_some() => {}
            Some(existing) if applier.is_current(child_type, existing, &child.object, owner) => {}
            Some(_) => match child_type.method {
                ChildUpdateMethod::OnDelete => {}
                ChildUpdateMethod::Recreate | ChildUpdateMethod::RollingRecreate => {
                    writes.insert(("delete", index, at.clone()));
                    writes.insert(("create", index, at));
                }
                ChildUpdateMethod::InPlace | ChildUpdateMethod::RollingInPlace => {
                    writes.insert((if applier.server_side() { "patch" } else { "update" }, index, at));
                }
            },
        }
    }
    writes
}

/// What a controller requires of the children its hook declares.
pub(crate) struct Rules<'a> {
    /// `CompositeController` or `DecoratorController`, for messages.
    pub controller: &'static str,
    /// The response field, for messages: `children` or `attachments`.
    pub field: &'static str,
    /// The spec field that declares the types, for messages: `childResources` or `attachments`.
    pub declared_in: &'static str,
    /// Labels every child must match (a CompositeController's parent selector).
    pub selector: Option<&'a LabelSelector>,
    /// Labels added to every child (`controller-uid`, with generateSelector).
    pub labels: Vec<(&'static str, String)>,
    /// Annotations added to every child (a decorator's name on its attachments).
    pub annotations: Vec<(&'static str, String)>,
}

/// Validates every desired child before any is written: a declared type, a name, namespace
/// rules (a namespaced parent owns children in its own namespace only, and no cluster-scoped
/// ones — but of the types that may live anywhere, which get the label that ties them; and
/// none in a namespace the engine does not watch), labels matching the selector, no duplicates. Server-owned metadata and `status` are dropped.
pub(crate) fn validate(
    types: &[ChildType],
    parent: &DynamicObject,
    children: Vec<Value>,
    rules: &Rules<'_>,
    watched: Option<&[String]>,
) -> Result<Vec<DesiredChild>, InvalidResponse> {
    let parent_namespace = parent.namespace();
    let mut seen = HashSet::new();
    let mut desired = Vec::with_capacity(children.len());
    for (index, mut child) in children.into_iter().enumerate() {
        let at = format!("{}[{index}]", rules.field);
        let invalid = |child: &str, problem| InvalidResponse::Child { child: child.to_owned(), problem };
        if !child.is_object() {
            return Err(invalid(&at, ChildProblem::NotAnObject(child)));
        }
        let text = |value: &Value| value.as_str().filter(|text| !text.is_empty()).map(str::to_owned);
        let api_version = text(&child["apiVersion"]).ok_or_else(|| invalid(&at, ChildProblem::NoApiVersion))?;
        let kind = text(&child["kind"]).ok_or_else(|| invalid(&at, ChildProblem::NoKind))?;
        let name = text(&child["metadata"]["name"]).ok_or_else(|| invalid(&format!("{at} ({kind})"), ChildProblem::NoName))?;
        let described = format!("{at} ({kind} {name})");
        let invalid = |problem| invalid(&described, problem);
        let (type_index, child_type) = types
            .iter()
            .enumerate()
            .find(|(_, child_type)| child_type.resource.api_version == api_version && child_type.resource.kind == kind)
            .ok_or_else(|| {
                invalid(ChildProblem::Undeclared {
                    kind: kind.clone(),
                    api_version: api_version.clone(),
                    controller: rules.controller,
                    declared_in: rules.declared_in,
                })
            })?;
        let anywhere = child_type.tie == Tie::Label;
        let namespace = match (child_type.namespaced, text(&child["metadata"]["namespace"]), &parent_namespace) {
            (false, None, Some(_)) if anywhere => None,
            (false, None, Some(parent_namespace)) => {
                // The garbage collector cannot delete it, nor can claiming find it again.
                return Err(invalid(ChildProblem::ClusterScopedUnderNamespacedParent {
                    parent_namespace: parent_namespace.clone(),
                    field: rules.field,
                }));
            }
            (false, None, None) => None,
            (false, Some(namespace), _) => return Err(invalid(ChildProblem::ClusterScopedWithNamespace(namespace))),
            (true, None, Some(parent_namespace)) => Some(parent_namespace.clone()),
            (true, None, None) => return Err(invalid(ChildProblem::NeedsNamespace)),
            (true, Some(namespace), Some(parent_namespace)) if &namespace != parent_namespace && !anywhere => {
                return Err(invalid(ChildProblem::OtherNamespace {
                    namespace,
                    parent_namespace: parent_namespace.clone(),
                    field: rules.field,
                }));
            }
            (true, Some(namespace), _) => Some(namespace),
        };
        if let (Some(namespace), Some(watched)) = (&namespace, watched)
            && !watched.contains(namespace)
        {
            return Err(invalid(ChildProblem::NotWatched { namespace: namespace.clone(), watched: watched.join(",") }));
        }
        // Echoed back, it names this parent; naming another would make the child theirs.
        let label = &child["metadata"]["labels"][CONTROLLER_UID_LABEL];
        if !label.is_null() && label.as_str() != parent.metadata.uid.as_deref() {
            return Err(invalid(ChildProblem::ControllerLabel));
        }
        let metadata = child["metadata"].as_object_mut().expect("checked to have a name");
        if anywhere {
            // No owner reference can tie it: the label does.
            let labels = metadata.entry("labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            labels[CONTROLLER_UID_LABEL] = Value::String(parent.uid().unwrap_or_default());
        }
        match &namespace {
            Some(namespace) => metadata.insert("namespace".into(), Value::String(namespace.clone())),
            None => metadata.remove("namespace"),
        };
        // Hooks often echo observed children back; what the server owns is not theirs to set.
        for field in super::SYSTEM_METADATA {
            metadata.remove(field);
        }
        // The hook's own owner references are kept (Metacontroller appends its controller
        // reference to them); an echoed reference to the parent is the applier's to set, and
        // nobody else may be the child's controller.
        match metadata.remove("ownerReferences") {
            None | Some(Value::Null) => {}
            Some(Value::Array(references)) => {
                let mut kept = Vec::with_capacity(references.len());
                for reference in references {
                    if reference["uid"].as_str() == parent.metadata.uid.as_deref() {
                        continue;
                    }
                    if reference["controller"] == Value::Bool(true) {
                        return Err(invalid(ChildProblem::OtherController(format!(
                            "{} {}",
                            reference["kind"].as_str().unwrap_or_default(),
                            reference["name"].as_str().unwrap_or_default()
                        ))));
                    }
                    kept.push(reference);
                }
                if !kept.is_empty() {
                    metadata.insert("ownerReferences".into(), Value::Array(kept));
                }
            }
            Some(other) => return Err(invalid(ChildProblem::NotValid(format!("metadata.ownerReferences is {other}, not a list")))),
        }
        for (field, entries) in [("labels", &rules.labels), ("annotations", &rules.annotations)] {
            if entries.is_empty() {
                continue;
            }
            let map = metadata.entry(field).or_insert_with(|| json!({}));
            if !map.is_object() {
                *map = json!({});
            }
            for (key, value) in entries {
                // A label the hook set is its own (Metacontroller does not overwrite
                // `controller-uid`; a wrong one then fails the selector check below, clearly).
                let keep = field == "labels" && map.get(*key).is_some();
                if !keep {
                    map[*key] = Value::String(value.clone());
                }
            }
        }
        child.as_object_mut().expect("an object").remove("status");
        // apiVersion and kind are checked above and the rest of an object is free-form: the
        // metadata is what must be well-typed.
        if let Err(error) = ObjectMeta::deserialize(&child["metadata"]) {
            return Err(invalid(ChildProblem::NotValid(format!("metadata: {error}"))));
        }
        if let Some(selector) = rules.selector {
            let labels = BTreeMap::<String, String>::deserialize(&child["metadata"]["labels"])
                .or_else(|_| if child["metadata"]["labels"].is_null() { Ok(BTreeMap::new()) } else { Err(()) })
                .map_err(|()| invalid(ChildProblem::LabelsNotStrings))?;
            if !selector::matches(selector, &labels).map_err(InvalidResponse::Selector)? {
                return Err(invalid(ChildProblem::OutsideSelector {
                    labels: format!("{labels:?}"),
                    selector: serde_json::to_string(selector).unwrap_or_default(),
                }));
            }
        }
        let key = ObjectKey { namespace, name };
        if !seen.insert((type_index, key.clone())) {
            return Err(invalid(ChildProblem::Duplicate));
        }
        desired.push(DesiredChild { child_type: type_index, key, object: child });
    }
    Ok(desired)
}

/// Children of one parent written at once.
const WRITE_CONCURRENCY: usize = 8;

/// Deletes observed children the hook no longer declares, then creates and updates the rest —
/// each step's writes a few at a time, as they are independent, so a parent with several
/// children costs about one round trip per step rather than one per child. Failures are
/// collected; the other children are still written. `Ok(true)` when a write lost a race
/// ([`Applied::Raced`](super::apply::Applied::Raced)): some child does not have its desired
/// state yet.
pub(crate) async fn manage(
    client: &kube::Client,
    applier: &Applier,
    types: &[ChildType],
    owner: &Value,
    observed: &[Vec<Arc<DynamicObject>>],
    mut desired: Vec<DesiredChild>,
) -> Result<bool, Vec<ApplyError>> {
    let wanted: HashSet<(usize, &ObjectKey)> = desired.iter().map(|child| (child.child_type, &child.key)).collect();
    let mut deletes = Vec::new();
    for (index, (child_type, objects)) in types.iter().zip(observed).enumerate() {
        for object in objects {
            if object.metadata.deletion_timestamp.is_none() && !wanted.contains(&(index, &ObjectKey::of(object))) {
                deletes.push(applier.delete(client, child_type, object));
            }
        }
    }
    let mut errors: Vec<ApplyError> = futures::stream::iter(deletes)
        .buffer_unordered(WRITE_CONCURRENCY)
        .filter_map(|result| std::future::ready(result.err()))
        .collect()
        .await;
    drop(wanted);
    desired.sort_by(|a, b| (a.child_type, &a.key).cmp(&(b.child_type, &b.key)));
    let mut writes = Vec::new();
    for child in desired {
        let child_type = &types[child.child_type];
        let existing = observed[child.child_type].iter().find(|object| ObjectKey::of(object) == child.key);
        writes.push(async move {
            match existing {
                None => applier.create(client, child_type, child.object, owner).await,
                Some(existing) if existing.metadata.deletion_timestamp.is_some() => Ok(Applied::Unchanged),
                Some(existing) => applier.update(client, child_type, existing, child.object, owner, child_type.method).await,
            }
        });
    }
    let results: Vec<Result<Applied, ApplyError>> = futures::stream::iter(writes).buffer_unordered(WRITE_CONCURRENCY).collect().await;
    let mut raced = false;
    for result in results {
        match result {
            Ok(applied) => raced |= applied == Applied::Raced,
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() { Ok(raced) } else { Err(errors) }
}
