//! Rolling updates: a CompositeController whose child types use `RollingRecreate` or
//! `RollingInPlace` moves its children to a parent's new spec one at a time, as Metacontroller
//! does. A *revision* is the parent's fields at `revisionHistory.fieldPaths` (default `spec`),
//! recorded in a `metacontroller.k8s.io` ControllerRevision owned by the parent together with
//! the names of the children that belong to it. Each sync asks the hook once per live revision
//! (with the parent as of that revision), keeps every child on its revision's version, and
//! moves one more child to the latest revision only while every child already there is
//! observed, up to date and passes the child type's `statusChecks`. The parent's `Updated`
//! condition says where the rollout stands; revisions that hold no child are deleted.
//!
//! Nothing is written before every revision's answer has been validated; then the
//! ControllerRevisions are written, before any child.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ApiResource, DeleteParams, DynamicObject, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use crate::api::{ChildUpdateMethod, StatusConditionCheck};
use crate::children::desired::DesiredChild;
use crate::children::{ChildType, ClaimError, Claimant, Claims};
use crate::context::EngineContext;
use crate::finalizer::manages_children;
use crate::identity::Permission;
use crate::reconcile::{Answer, Ask, Hosted, Policy};
use crate::sync_error::SyncError;

const LABEL_API_GROUP: &str = "metacontroller.k8s.io/apiGroup";
const LABEL_RESOURCE: &str = "metacontroller.k8s.io/resource";
const UPDATED: &str = "Updated";

/// A CompositeController's rolling configuration.
pub(crate) struct Rolling {
    /// The parent fields that make a revision, each split at its dots.
    field_paths: Vec<Vec<String>>,
    /// ControllerRevisions, claimed like children.
    revisions: ChildType,
    /// Per child type: its status checks (empty when it does not roll).
    checks: Vec<Vec<StatusConditionCheck>>,
}

/// Why a rolling configuration cannot run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RollingError {
    /// ControllerRevisions live in the parent's namespace.
    #[error(
        "child resource {0} uses a rolling update method, which needs a namespaced parent (ControllerRevisions live in the \
         parent's namespace); use Recreate or InPlace"
    )]
    ClusterScopedParent(String),
    /// A field path is empty or has an empty segment.
    #[error("parentResource.revisionHistory.fieldPaths[{index}] {path:?} is not a dotted field path such as spec.template")]
    FieldPath {
        /// Its position.
        index: usize,
        /// The path.
        path: String,
    },
}

impl Rolling {
    /// The rolling configuration, given the ControllerRevision type when a child type rolls.
    pub(crate) fn of(
        spec: &crate::api::CompositeControllerSpec,
        parent_namespaced: bool,
        children: &[ChildType],
        revisions: Option<ChildType>,
    ) -> Result<Option<Rolling>, RollingError> {
        let rules: Vec<_> = spec.child_resources.iter().flatten().collect();
        let (Some(revisions), Some(rolling)) = (revisions, rules.iter().find(|rule| rule.method().is_rolling())) else {
            return Ok(None);
        };
        if !parent_namespaced {
            return Err(RollingError::ClusterScopedParent(rolling.resource.clone()));
        }
        let paths = spec.parent_resource.revision_history.as_ref().and_then(|history| history.field_paths.clone());
        let paths = paths.filter(|paths| !paths.is_empty()).unwrap_or_else(|| vec!["spec".to_owned()]);
        let mut field_paths = Vec::with_capacity(paths.len());
        for (index, path) in paths.into_iter().enumerate() {
            let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
            if segments.iter().any(String::is_empty) {
                return Err(RollingError::FieldPath { index, path });
            }
            field_paths.push(segments);
        }
        let checks = rules
            .iter()
            .zip(children)
            .map(|(rule, child_type)| {
                let checks = rule.update_strategy.as_ref().and_then(|strategy| strategy.status_checks.as_ref());
                let conditions = checks.and_then(|checks| checks.conditions.clone()).unwrap_or_default();
                if child_type.method.is_rolling() { conditions } else { Vec::new() }
            })
            .collect();
        Ok(Some(Rolling { field_paths, revisions, checks }))
    }

    /// The ControllerRevision resource.
    pub(crate) fn revision_type(&self) -> &ChildType {
        &self.revisions
    }
}

/// The children of one kind a ControllerRevision holds, as Metacontroller writes them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct RevisionChildren {
    api_group: String,
    kind: String,
    names: Vec<String>,
}

/// A child, version-agnostic: group, kind and name relative to the parent's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ChildId {
    group: String,
    kind: String,
    name: String,
}

/// One live revision of a parent during a sync.
struct Revision {
    /// The parent as of this revision.
    parent: DynamicObject,
    /// Its ControllerRevision, if it exists.
    observed: Option<Arc<DynamicObject>>,
    name: String,
    patch: Value,
    /// The children it holds, in order.
    children: Vec<ChildId>,
}

/// The parent fields at `paths`, as a patch (`{spec: …}`).
fn make_patch(parent: &Value, paths: &[Vec<String>]) -> Value {
    let mut patch = json!({});
    for path in paths {
        if let Some(value) = parent.pointer(&pointer(path)) {
            set(&mut patch, path, value.clone());
        }
    }
    patch
}

/// The JSON pointer of a field path.
fn pointer(path: &[String]) -> String {
    path.iter().map(|segment| format!("/{}", segment.replace('~', "~0").replace('/', "~1"))).collect()
}

/// Sets `value[path…]`, creating objects on the way (replacing non-objects).
fn set(target: &mut Value, path: &[String], leaf: Value) {
    let mut current = target;
    for segment in &path[..path.len() - 1] {
        if !current[segment.as_str()].is_object() {
            current[segment.as_str()] = json!({});
        }
        current = &mut current[segment.as_str()];
    }
    current[path[path.len() - 1].as_str()] = leaf;
}

/// The parent with a revision's patch applied at `paths`.
fn apply_patch(parent: &DynamicObject, patch: &Value, paths: &[Vec<String>]) -> DynamicObject {
    let mut value = serde_json::to_value(parent).expect("objects serialize");
    for path in paths {
        if let Some(field) = patch.pointer(&pointer(path)) {
            set(&mut value, path, field.clone());
        }
    }
    serde_json::from_value(value).unwrap_or_else(|_| parent.clone())
}

/// JSON as Go's `encoding/json` writes a map: sorted keys, compact, `<`, `>`, `&`, U+2028 and
/// U+2029 escaped — so revision names match Metacontroller's for the same patch.
fn go_json(value: &Value) -> String {
    serde_json::to_string(value)
        .expect("JSON serializes")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// `<resource>.<group or core>-<sha1(parent UID ‖ patch)>`, as Metacontroller names revisions.
fn revision_name(parent: &ApiResource, uid: &str, patch: &Value) -> String {
    let group = if parent.group.is_empty() { "core" } else { parent.group.as_str() };
    let mut prefix = format!("{}.{group}", parent.plural);
    prefix.truncate(253 - 41);
    let mut hasher = Sha1::new();
    hasher.update(uid.as_bytes());
    hasher.update(go_json(patch).as_bytes());
    let digest: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{prefix}-{digest}")
}

/// The identity of a desired child in a revision's `children`.
fn child_id(child_types: &[ChildType], parent: &DynamicObject, child: &DesiredChild) -> ChildId {
    let child_type = &child_types[child.child_type];
    let name = match &child.key.namespace {
        Some(namespace) if Some(namespace) != parent.metadata.namespace.as_ref() => format!("{namespace}/{}", child.key.name),
        _ => child.key.name.clone(),
    };
    ChildId { group: child_type.resource.group.clone(), kind: child_type.resource.kind.clone(), name }
}

/// Whether one of `child_types` of `group`/`kind` rolls.
fn rolls(child_types: &[ChildType], group: &str, kind: &str) -> bool {
    child_types
        .iter()
        .any(|child_type| child_type.method.is_rolling() && child_type.resource.group == group && child_type.resource.kind == kind)
}

/// The selector of a parent's ControllerRevisions: its children's, plus the parent type.
fn revision_selector(parent_type: &ApiResource, child_selector: &LabelSelector) -> LabelSelector {
    let mut selector = child_selector.clone();
    let labels = selector.match_labels.get_or_insert_with(BTreeMap::new);
    labels.insert(LABEL_API_GROUP.to_owned(), parent_type.group.clone());
    labels.insert(LABEL_RESOURCE.to_owned(), parent_type.plural.clone());
    selector
}

/// The labels of a new ControllerRevision: what its selector requires, the parent's
/// `spec.template.metadata.labels` as Metacontroller puts them, and the parent type.
fn revision_labels(ctx: &EngineContext, parent: &DynamicObject, selector: &LabelSelector) -> BTreeMap<String, String> {
    let template = parent.data.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
    let mut labels: BTreeMap<String, String> =
        template.into_iter().flatten().filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned()))).collect();
    labels.extend(selector.match_labels.clone().unwrap_or_default());
    if let Some(shard) = &ctx.shard {
        labels.extend([shard.label()]);
    }
    labels
}

/// What a child must show before the rollout moves on; `Err` says what it waits for.
fn check_child<P: Policy>(
    hosted: &Hosted<P>,
    rolling: &Rolling,
    claims: &Claims,
    type_index: usize,
    desired: &DesiredChild,
    id: &ChildId,
) -> Result<(), String> {
    let child_type = &hosted.child_types[type_index];
    let Some(child) = claims.observed_child(type_index, &desired.key) else {
        return Err(format!("missing child {} {}", id.kind, id.name));
    };
    if !hosted.ctx.applier.is_current(child_type, child, &desired.object, claims.owner()) {
        return Err(format!("child {} {} is not updated yet", id.kind, id.name));
    }
    if child_type.method == ChildUpdateMethod::RollingInPlace {
        let observed_generation = child.data.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
        if observed_generation > 0 && observed_generation < child.metadata.generation.unwrap_or(0) {
            return Err(format!("child {} {} with RollingInPlace update strategy hasn't observed latest spec", id.kind, id.name));
        }
    }
    let conditions = child.data.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    for check in &rolling.checks[type_index] {
        let failed = |problem: String| Err(format!("child {} {} failed status check: {problem}", id.kind, id.name));
        let Some(condition) = conditions.iter().find(|condition| condition["type"] == check.type_.as_str()) else {
            return failed(format!("required condition type missing: {:?}", check.type_));
        };
        let field = |name: &str| condition[name].as_str().unwrap_or_default().to_owned();
        if let Some(status) = &check.status
            && field("status") != *status
        {
            return failed(format!("{:?} condition status is {:?} (want {status:?})", check.type_, field("status")));
        }
        if let Some(reason) = &check.reason
            && field("reason") != *reason
        {
            return failed(format!("{:?} condition reason is {:?} (want {reason:?})", check.type_, field("reason")));
        }
    }
    Ok(())
}

/// Sets the `Updated` condition in a parent status.
fn set_updated(status: &mut Value, state: &str, reason: &str, message: String) {
    if !status.is_object() {
        *status = json!({});
    }
    let condition = json!({ "type": UPDATED, "status": state, "reason": reason, "message": message });
    match status["conditions"].as_array_mut() {
        Some(conditions) => match conditions.iter_mut().find(|existing| existing["type"] == UPDATED) {
            Some(existing) => *existing = condition,
            None => conditions.push(condition),
        },
        None => status["conditions"] = json!([condition]),
    }
}

/// Asks the hook once per live revision of the parent and rolls one child forward if it may;
/// writes the ControllerRevisions once every answer is valid. The answer: the latest
/// revision's children with those still held by older revisions in their version, the latest
/// status with the `Updated` condition, the smallest `resyncAfterSeconds`, `finalized` when
/// every revision says so, and every revision's events.
pub(crate) async fn respond<P: Policy<Observed = Claims, Update = Value>>(
    rolling: &Rolling,
    ask: &Ask<'_, P>,
) -> Result<Answer<Value>, SyncError> {
    let (hosted, parent, claims) = (ask.hosted, ask.object, ask.observed);
    let parent_type = &hosted.objects[0].resolved.resource;
    let selector = revision_selector(parent_type, claims.selector());
    let owner = claims.owner();
    let may_adopt = claims.may_adopt() && {
        let orphans = rolling.revisions.cache.orphans(parent.namespace().as_deref());
        orphans.iter().any(|orphan| crate::selector::matches(&selector, orphan.labels()).unwrap_or(false))
    };
    let claimant = Claimant { parent, owner, selector: &selector, may_adopt };
    let claim = claimant.claim(&rolling.revisions)?;

    // The latest revision first, then the others as claimed.
    let parent_value = serde_json::to_value(parent).expect("objects serialize");
    let latest_patch = make_patch(&parent_value, &rolling.field_paths);
    let uid = parent.uid().unwrap_or_default();
    let mut revisions = vec![Revision {
        parent: parent.clone(),
        observed: None,
        name: revision_name(parent_type, &uid, &latest_patch),
        patch: latest_patch.clone(),
        children: Vec::new(),
    }];
    for observed in claim.observed() {
        let patch = observed.data.get("parentPatch").cloned().unwrap_or_else(|| json!({}));
        let children: Vec<RevisionChildren> =
            observed.data.get("children").cloned().and_then(|children| serde_json::from_value(children).ok()).unwrap_or_default();
        let children = children
            .into_iter()
            .flat_map(|held| {
                held.names.into_iter().map(move |name| ChildId { group: held.api_group.clone(), kind: held.kind.clone(), name })
            })
            .collect();
        if patch == latest_patch && revisions[0].observed.is_none() {
            revisions[0].observed = Some(observed.clone());
            revisions[0].name = observed.name_any();
            revisions[0].children = children;
            continue;
        }
        let revision_parent = apply_patch(parent, &patch, &rolling.field_paths);
        revisions.push(Revision { parent: revision_parent, observed: Some(observed.clone()), name: observed.name_any(), patch, children });
    }

    let answers = futures::future::try_join_all(revisions.iter().map(|revision| ask.once(&revision.parent))).await?;

    // Which revision holds each rolling child the latest answer still declares: the latest
    // wins, then the order above.
    let latest_ids: HashMap<ChildId, usize> =
        answers[0].desired.iter().enumerate().map(|(index, child)| (child_id(&hosted.child_types, parent, child), index)).collect();
    let mut holder: HashMap<ChildId, usize> = HashMap::new();
    for (index, revision) in revisions.iter_mut().enumerate() {
        revision.children.retain(|id| {
            let keep = rolls(&hosted.child_types, &id.group, &id.kind) && latest_ids.contains_key(id) && !holder.contains_key(id);
            if keep {
                holder.insert(id.clone(), index);
            }
            keep
        });
    }
    // Unheld children go to the latest revision, and so do held ones already as it wants them.
    let rolling_desired: Vec<(usize, &DesiredChild, ChildId)> = answers[0]
        .desired
        .iter()
        .filter(|child| hosted.child_types[child.child_type].method.is_rolling())
        .map(|child| (child.child_type, child, child_id(&hosted.child_types, parent, child)))
        .collect();
    let move_to_latest = |revisions: &mut Vec<Revision>, holder: &mut HashMap<ChildId, usize>, id: &ChildId| {
        if let Some(previous) = holder.insert(id.clone(), 0) {
            revisions[previous].children.retain(|held| held != id);
        }
        if !revisions[0].children.contains(id) {
            revisions[0].children.push(id.clone());
        }
    };
    for (type_index, child, id) in &rolling_desired {
        match holder.get(id) {
            None => move_to_latest(&mut revisions, &mut holder, id),
            Some(0) => {}
            Some(_) => {
                let current = claims.observed_child(*type_index, &child.key).is_some_and(|observed| {
                    hosted.ctx.applier.is_current(&hosted.child_types[*type_index], observed, &child.object, owner)
                });
                if current {
                    move_to_latest(&mut revisions, &mut holder, id);
                }
            }
        }
    }
    // One more child moves, in the latest answer's order, while those already moved are happy.
    let mut status = answers[0].update.clone();
    let next = rolling_desired.iter().find(|(_, _, id)| holder.get(id) != Some(&0));
    match next {
        None => set_updated(&mut status, "True", "OnLatestRevision", format!("latest ControllerRevision: {}", revisions[0].name)),
        Some((_, _, next_id)) => {
            let waiting = rolling_desired
                .iter()
                .filter(|(_, _, id)| holder.get(id) == Some(&0))
                .find_map(|(type_index, child, id)| check_child(hosted, rolling, claims, *type_index, child, id).err());
            match waiting {
                Some(reason) => set_updated(&mut status, "False", "RolloutWaiting", reason),
                None => {
                    move_to_latest(&mut revisions, &mut holder, next_id);
                    set_updated(&mut status, "False", "RolloutProgressing", format!("updating {} {}", next_id.kind, next_id.name));
                }
            }
        }
    }

    // Each held child in its revision's version.
    let mut desired = Vec::with_capacity(answers[0].desired.len());
    let mut answers = answers.into_iter();
    let latest = answers.next().expect("the latest revision was asked");
    let older: Vec<Answer<Value>> = answers.collect();
    let mut older_desired: Vec<HashMap<ChildId, DesiredChild>> = Vec::with_capacity(older.len());
    let (mut resync_after, mut finalized, mut events) = (latest.resync_after, latest.finalized == Some(true), latest.events);
    for answer in older {
        resync_after = match (resync_after, answer.resync_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        finalized &= answer.finalized == Some(true);
        events.extend(answer.events);
        older_desired.push(answer.desired.into_iter().map(|child| (child_id(&hosted.child_types, parent, &child), child)).collect());
    }
    for child in latest.desired {
        let id = child_id(&hosted.child_types, parent, &child);
        let held = holder.get(&id).copied().filter(|index| *index > 0);
        match held.and_then(|index| older_desired[index - 1].remove(&id)) {
            Some(old) => desired.push(old),
            None => desired.push(child),
        }
    }

    // The answers are valid. The controller's identity must be allowed every write — the
    // children's too — before the first: the revisions.
    if hosted.identity.impersonates() && manages_children(parent, ask.finalizing) {
        let mut needed = crate::reconcile::child_writes(hosted, owner, &P::shown(claims), &desired);
        for verb in ["create", "update", "patch", "delete"] {
            needed.insert(Permission::of(verb, &rolling.revisions.resource, parent.namespace()));
        }
        hosted.identity.check(needed).await?;
    }
    // Adopt the revisions claimed, then write them, before any child.
    let claimed = claim.adopt(&claimant, &hosted.identity.client, &rolling.revisions).await?;
    write_revisions(hosted, rolling, parent, &selector, owner, &revisions, &claimed).await?;
    Ok(Answer { desired, events, update: status, resync_after, finalized: Some(finalized) })
}

/// How long a sync waits for the cache to show its own revision writes.
const READ_YOUR_WRITES: std::time::Duration = std::time::Duration::from_secs(5);

/// Deletes the ControllerRevisions that hold no child (but the latest), then creates or
/// updates the rest — each only if it changes — and waits until the cache shows the writes:
/// the parent's next sync must not roll from revisions as they were before (it would hand a
/// moved child back to its old revision and recreate it again).
async fn write_revisions<P: Policy>(
    hosted: &Hosted<P>,
    rolling: &Rolling,
    parent: &DynamicObject,
    selector: &LabelSelector,
    owner: &Value,
    revisions: &[Revision],
    claimed: &[Arc<DynamicObject>],
) -> Result<(), SyncError> {
    let namespace = parent.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(hosted.identity.client.clone(), &namespace, &rolling.revisions.resource);
    let failed = |action: &'static str, name: &str| {
        let key = format!("{namespace}/{name}");
        move |source: kube::Error| {
            SyncError::from(ClaimError::Api { action, kind: "ControllerRevision".into(), key, source: Box::new(source) })
        }
    };
    // (name, the resourceVersion written, or None for deleted).
    let mut written: Vec<(String, Option<String>)> = Vec::new();
    let live: Vec<&Revision> =
        revisions.iter().enumerate().filter(|(index, revision)| *index == 0 || !revision.children.is_empty()).map(|(_, r)| r).collect();
    for observed in claimed {
        if !live.iter().any(|revision| revision.name == observed.name_any()) {
            let params = DeleteParams::background().preconditions(Preconditions { uid: observed.uid(), resource_version: None });
            match api.delete(&observed.name_any(), &params).await {
                Ok(_) => {
                    tracing::info!(parent = %parent.name_any(), revision = %observed.name_any(), "deleted ControllerRevision");
                    written.push((observed.name_any(), None));
                }
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(error) => return Err(failed("deleting", &observed.name_any())(error)),
            }
        }
    }
    for revision in live {
        let mut grouped: Vec<RevisionChildren> = Vec::new();
        for id in &revision.children {
            match grouped.iter_mut().find(|held| held.api_group == id.group && held.kind == id.kind) {
                Some(held) => held.names.push(id.name.clone()),
                None => grouped.push(RevisionChildren { api_group: id.group.clone(), kind: id.kind.clone(), names: vec![id.name.clone()] }),
            }
        }
        let children = serde_json::to_value(&grouped).expect("revision children serialize");
        let observed = claimed.iter().find(|observed| observed.name_any() == revision.name);
        match observed {
            Some(observed) => {
                let current = observed.data.get("children").cloned().unwrap_or_else(|| json!([]));
                if current == children {
                    continue;
                }
                let mut updated = (**observed).clone();
                updated.data["children"] = children;
                match api.replace(&revision.name, &PostParams::default(), &updated).await {
                    Ok(replaced) => written.push((revision.name.clone(), replaced.resource_version())),
                    // Changed meanwhile: its watch event brings a new sync.
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(error) => return Err(failed("updating", &revision.name)(error)),
                }
            }
            None => {
                let object = json!({
                    "apiVersion": rolling.revisions.resource.api_version,
                    "kind": "ControllerRevision",
                    "metadata": {
                        "name": revision.name,
                        "namespace": namespace,
                        "labels": revision_labels(&hosted.ctx, parent, selector),
                        "ownerReferences": [owner],
                    },
                    "parentPatch": revision.patch,
                    "children": children,
                });
                let object: DynamicObject = serde_json::from_value(object).expect("a ControllerRevision");
                match api.create(&PostParams::default(), &object).await {
                    Ok(created) => {
                        tracing::info!(parent = %parent.name_any(), revision = %revision.name, "created ControllerRevision");
                        written.push((revision.name.clone(), created.resource_version()));
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(error) => return Err(failed("creating", &revision.name)(error)),
                }
            }
        }
    }
    if !written.is_empty() {
        let shown = |cache: &bosun_runtime::Cache| {
            written.iter().all(|(name, version)| {
                let key = bosun_runtime::ObjectKey { namespace: Some(namespace.clone()), name: name.clone() };
                match version {
                    Some(version) => cache.shows(&key, version),
                    None => cache.get(&key).is_none(),
                }
            })
        };
        rolling.revisions.cache.wait_for(READ_YOUR_WRITES, shown).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(paths: &[&str]) -> Vec<Vec<String>> {
        paths.iter().map(|path| path.split('.').map(str::to_owned).collect()).collect()
    }

    #[test]
    fn a_patch_holds_the_revision_fields_and_applies_back() {
        let parent: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "x/v1", "kind": "Set", "metadata": { "name": "s", "namespace": "n" },
            "spec": { "replicas": 3, "template": { "image": "a" } },
        }))
        .unwrap();
        let value = serde_json::to_value(&parent).unwrap();
        assert_eq!(make_patch(&value, &paths(&["spec.template"])), json!({ "spec": { "template": { "image": "a" } } }));
        assert_eq!(make_patch(&value, &paths(&["spec.missing"])), json!({}));
        let old = json!({ "spec": { "template": { "image": "old" } } });
        let applied = apply_patch(&parent, &old, &paths(&["spec.template"]));
        assert_eq!(applied.data["spec"], json!({ "replicas": 3, "template": { "image": "old" } }));
    }

    #[test]
    fn revisions_are_named_as_metacontroller_names_them() {
        let resource = ApiResource {
            group: "ctl.example.com".into(),
            version: "v1".into(),
            api_version: "ctl.example.com/v1".into(),
            kind: "CatSet".into(),
            plural: "catsets".into(),
        };
        // sha1("uid-1" + `{"spec":{"a":"<b>"}}` with Go's HTML escaping).
        let mut hasher = Sha1::new();
        hasher.update(b"uid-1{\"spec\":{\"a\":\"\\u003cb\\u003e\"}}");
        let expected: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
        let name = revision_name(&resource, "uid-1", &json!({ "spec": { "a": "<b>" } }));
        assert_eq!(name, format!("catsets.ctl.example.com-{expected}"));
        let core = ApiResource { group: String::new(), ..resource };
        assert!(revision_name(&core, "u", &json!({})).starts_with("catsets.core-"));
    }

    #[test]
    fn the_updated_condition_replaces_its_predecessor() {
        let mut status = json!({ "conditions": [{ "type": "Ready", "status": "True" }, { "type": "Updated", "status": "False" }] });
        set_updated(&mut status, "True", "OnLatestRevision", "latest ControllerRevision: r".into());
        assert_eq!(
            status["conditions"][1],
            json!({ "type": "Updated", "status": "True", "reason": "OnLatestRevision", "message": "latest ControllerRevision: r" })
        );
        let mut empty = Value::Null;
        set_updated(&mut empty, "False", "RolloutWaiting", "x".into());
        assert_eq!(empty["conditions"].as_array().unwrap().len(), 1);
    }
}
