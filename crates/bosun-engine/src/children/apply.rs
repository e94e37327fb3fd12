//! Writing a child's desired state, by the chosen apply strategy and the child type's update
//! method. A child whose desired state equals its observed state is never written.
//!
//! - `dynamic-apply` merges client-side ([`super::merge`]) and sends a full update with the
//!   observed `resourceVersion`, so a concurrent change makes it fail rather than be lost.
//! - `server-side-apply` sends an apply patch with `force`. A process-wide record of the last
//!   apply per child (hash of the body, UID, resulting `resourceVersion`) skips applies that
//!   cannot change anything: nothing was applied differently, and nobody changed the object
//!   since. The first apply of each child after a restart is sent (and is a no-op on the
//!   server when nothing changed).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::merge::{LAST_APPLIED_ANNOTATION, MergeError, contains, merge};
use super::{ChildType, Tie};
use crate::api::ChildUpdateMethod;
use bosun_runtime::cache::CONTROLLER_UID_LABEL;

/// How children are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyStrategy {
    /// Client-side three-way merge with the last-applied annotation (the default).
    DynamicApply,
    /// Server-side apply with this field manager, forcing conflicts.
    ServerSideApply {
        /// The field manager name.
        field_manager: String,
    },
}

impl std::str::FromStr for ApplyStrategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "dynamic-apply" => Ok(ApplyStrategy::DynamicApply),
            "server-side-apply" => Ok(ApplyStrategy::ServerSideApply { field_manager: "metacontroller".into() }),
            other => Err(format!("unknown apply strategy {other:?}: use dynamic-apply or server-side-apply")),
        }
    }
}

/// What applying did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The child was created.
    Created,
    /// The child was updated in place.
    Updated,
    /// The child differed and was deleted, to be recreated by a later sync (`Recreate`).
    Deleted,
    /// The child already had its desired state, or differs under `OnDelete`: nothing written.
    Unchanged,
    /// The write lost a race: the child existed though the cache did not show it (just
    /// created, or — sharded — labelled for another shard, now relabelled for this one), or it
    /// changed or went meanwhile. It does not have its desired state yet: the sync must not be
    /// reported done, and runs again soon.
    Raced,
}

/// Why a child could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The API server refused the write.
    #[error("{action} {kind} {key}: {source}")]
    Api {
        /// `creating`, `updating` or `deleting`.
        action: &'static str,
        /// The child's kind.
        kind: String,
        /// `namespace/name`.
        key: String,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// The desired state cannot be merged onto the observed one.
    #[error("merging the desired state of {kind} {key}: {source}")]
    Merge {
        /// The child's kind.
        kind: String,
        /// `namespace/name`.
        key: String,
        /// Where the types disagree.
        source: MergeError,
    },
    /// A child of that name exists but belongs to someone else.
    #[error("{kind} {key} already exists and is not controlled by this parent{detail}; rename the child or delete the existing object")]
    Taken {
        /// The child's kind.
        kind: String,
        /// `namespace/name`.
        key: String,
        /// Who controls it, if anyone.
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AppliedRecord {
    body_hash: u64,
    uid: String,
    resource_version: String,
}

/// Writes children with one strategy; shared by every hosted controller of the process.
#[derive(Debug)]
pub(crate) struct Applier {
    strategy: ApplyStrategy,
    /// Server-side apply only: the last apply of each child, by (apiVersion/plural, namespace/name).
    applied: Mutex<HashMap<(String, String), AppliedRecord>>,
    /// Sharded: the label (key, value) of this shard, which every child of its parents carries.
    shard_label: Option<(String, String)>,
}

fn key_of(object: &DynamicObject) -> String {
    match object.namespace() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}

fn key_of_value(desired: &Value) -> String {
    let name = desired["metadata"]["name"].as_str().unwrap_or_default();
    match desired["metadata"]["namespace"].as_str() {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{name}"),
        _ => name.to_owned(),
    }
}

/// Sets `value[path…]`, creating objects on the way.
fn set_path(value: &mut Value, path: &[&str], leaf: Value) {
    let mut current = value;
    for segment in &path[..path.len() - 1] {
        if !current[*segment].is_object() {
            current[*segment] = json!({});
        }
        current = &mut current[*segment];
    }
    current[path[path.len() - 1]] = leaf;
}

impl Applier {
    /// An applier with this strategy.
    pub(crate) fn new(strategy: ApplyStrategy) -> Self {
        Applier { strategy, applied: Mutex::default(), shard_label: None }
    }

    /// Whether it writes with server-side apply (a `patch`, creations included).
    pub(crate) fn server_side(&self) -> bool {
        matches!(self.strategy, ApplyStrategy::ServerSideApply { .. })
    }

    /// An applier for a shard labelled `label`: a child of its parents found labelled for
    /// another shard (left behind by a hand-over, or relabelled by hand) is taken back.
    pub(crate) fn sharded(mut self, label: (String, String)) -> Self {
        self.shard_label = Some(label);
        self
    }

    /// Drops the record of the last apply to `child`: it is gone.
    pub(crate) fn forget(&self, child_type: &ChildType, child: &DynamicObject) {
        self.applied.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&Self::record_key(child_type, &key_of(child)));
    }

    /// How many applies are remembered.
    pub(crate) fn records(&self) -> usize {
        self.applied.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    fn record_key(child_type: &ChildType, key: &str) -> (String, String) {
        (format!("{}/{}", child_type.resource.api_version, child_type.resource.plural), key.to_owned())
    }

    fn api(child_type: &ChildType, client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(namespace) if child_type.namespaced => Api::namespaced_with(client.clone(), namespace, &child_type.resource),
            _ => Api::all_with(client.clone(), &child_type.resource),
        }
    }

    fn api_error(action: &'static str, child_type: &ChildType, key: String) -> impl FnOnce(kube::Error) -> ApplyError {
        let kind = child_type.resource.kind.clone();
        move |source| ApplyError::Api { action, kind, key, source: Box::new(source) }
    }

    /// Creates a child that does not exist yet. `desired` is the validated desired object;
    /// `owner` the parent's controller reference.
    pub(crate) async fn create(
        &self,
        client: &kube::Client,
        child_type: &ChildType,
        mut desired: Value,
        owner: &Value,
    ) -> Result<Applied, ApplyError> {
        let key = key_of_value(&desired);
        let namespace = desired["metadata"]["namespace"].as_str().map(str::to_owned);
        let api = Self::api(child_type, client, namespace.as_deref());
        let name = desired["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        match &self.strategy {
            ApplyStrategy::DynamicApply => {
                let last_applied = serde_json::to_string(&desired).expect("JSON serializes");
                set_path(&mut desired, &["metadata", "annotations", LAST_APPLIED_ANNOTATION], Value::String(last_applied));
                with_owner(&mut desired, reference_for(child_type, owner));
                let body = serde_json::to_vec(&desired).expect("JSON serializes");
                let request = kube::core::Request::new(api.resource_url()).create(&PostParams::default(), body);
                match bosun_runtime::client::write(client, request).await {
                    Ok(()) => Ok(Applied::Created),
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        self.explain_existing(&api, child_type, &name, &key, owner).await
                    }
                    Err(error) => Err(Self::api_error("creating", child_type, key)(error)),
                }
            }
            ApplyStrategy::ServerSideApply { .. } => {
                // Apply creates, but would also take over an object someone else controls.
                if let Some(existing) = api.get_opt(&name).await.map_err(Self::api_error("creating", child_type, key.clone()))? {
                    return self.explain_taken(&api, child_type, &existing, &key, owner).await;
                }
                self.server_side_apply(&api, child_type, &name, &key, desired, owner).await?;
                Ok(Applied::Created)
            }
        }
    }

    /// After a create found the name taken: a race if the object is ours or an orphan our
    /// cache has not seen yet (the next sync updates or claims it), an error if someone else
    /// controls it.
    async fn explain_existing(
        &self,
        api: &Api<DynamicObject>,
        child_type: &ChildType,
        name: &str,
        key: &str,
        owner: &Value,
    ) -> Result<Applied, ApplyError> {
        match api.get_opt(name).await.map_err(Self::api_error("creating", child_type, key.to_owned()))? {
            Some(existing) => self.explain_taken(api, child_type, &existing, key, owner).await,
            None => Ok(Applied::Raced),
        }
    }

    /// What an existing object in a desired child's place means: someone else's (an error),
    /// or ours or an orphan that the cache does not show (a race). Sharded, a child of ours
    /// labelled for another shard is labelled for this one, so that the next sync sees it.
    async fn explain_taken(
        &self,
        api: &Api<DynamicObject>,
        child_type: &ChildType,
        existing: &DynamicObject,
        key: &str,
        owner: &Value,
    ) -> Result<Applied, ApplyError> {
        match bosun_runtime::cache::controller_uid(existing) {
            Some(uid) if uid == owner["uid"].as_str().unwrap_or_default() => {
                if let Some((label, shard)) = &self.shard_label
                    && existing.labels().get(label) != Some(shard)
                {
                    let patch = json!({ "metadata": { "resourceVersion": existing.resource_version(), "labels": { label: shard } } });
                    match api.patch(&existing.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(_) => {
                            tracing::info!(kind = %child_type.resource.kind, child = key, %shard, "took back a child labelled for another shard")
                        }
                        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                        Err(error) => return Err(Self::api_error("relabelling", child_type, key.to_owned())(error)),
                    }
                }
                Ok(Applied::Raced)
            }
            Some(uid) => {
                let controller = existing.owner_references().iter().find(|reference| reference.controller == Some(true));
                let detail = match controller {
                    Some(reference) => format!(" (it is controlled by {} {})", reference.kind, reference.name),
                    None => format!(" (its label {CONTROLLER_UID_LABEL} names another parent, UID {uid})"),
                };
                Err(ApplyError::Taken { kind: child_type.resource.kind.clone(), key: key.to_owned(), detail })
            }
            // An orphan: claimed on the next sync if the parent's selector matches it.
            None => Ok(Applied::Raced),
        }
    }

    async fn server_side_apply(
        &self,
        api: &Api<DynamicObject>,
        child_type: &ChildType,
        name: &str,
        key: &str,
        mut desired: Value,
        owner: &Value,
    ) -> Result<DynamicObject, ApplyError> {
        let ApplyStrategy::ServerSideApply { field_manager } = &self.strategy else { unreachable!("only called for server-side apply") };
        with_owner(&mut desired, reference_for(child_type, owner));
        let body_hash = hash_of(&desired);
        let params = PatchParams::apply(field_manager).force();
        let applied =
            api.patch(name, &params, &Patch::Apply(&desired)).await.map_err(Self::api_error("applying", child_type, key.to_owned()))?;
        self.applied.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(
            Self::record_key(child_type, key),
            AppliedRecord {
                body_hash,
                uid: applied.uid().unwrap_or_default(),
                resource_version: applied.resource_version().unwrap_or_default(),
            },
        );
        Ok(applied)
    }

    /// Brings an existing child to its desired state according to `method`.
    pub(crate) async fn update(
        &self,
        client: &kube::Client,
        child_type: &ChildType,
        observed: &DynamicObject,
        desired: Value,
        owner: &Value,
        method: ChildUpdateMethod,
    ) -> Result<Applied, ApplyError> {
        let key = key_of(observed);
        let api = Self::api(child_type, client, observed.namespace().as_deref());
        let name = observed.name_any();
        match &self.strategy {
            ApplyStrategy::DynamicApply => {
                let merged = dynamic_apply_merge(observed, desired, reference_for(child_type, owner), true)
                    .map_err(|source| ApplyError::Merge { kind: child_type.resource.kind.clone(), key: key.clone(), source })?;
                let Some(merged) = merged else { return Ok(Applied::Unchanged) };
                match method {
                    ChildUpdateMethod::OnDelete => Ok(Applied::Unchanged),
                    ChildUpdateMethod::Recreate | ChildUpdateMethod::RollingRecreate => {
                        self.delete(client, child_type, observed).await.map(|()| Applied::Deleted)
                    }
                    ChildUpdateMethod::InPlace | ChildUpdateMethod::RollingInPlace => {
                        let body = serde_json::to_vec(&merged).expect("JSON serializes");
                        let request = kube::core::Request::new(api.resource_url()).replace(&name, &PostParams::default(), body);
                        match bosun_runtime::client::write(client, request).await {
                            Ok(()) => Ok(Applied::Updated),
                            // Changed or deleted meanwhile: the watch event brings a new sync.
                            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(Applied::Raced),
                            Err(error) => Err(Self::api_error("updating", child_type, key)(error)),
                        }
                    }
                }
            }
            ApplyStrategy::ServerSideApply { .. } => {
                if method == ChildUpdateMethod::OnDelete || self.unchanged_since_applied(child_type, &key, observed, &desired, owner) {
                    return Ok(Applied::Unchanged);
                }
                match method {
                    ChildUpdateMethod::Recreate | ChildUpdateMethod::RollingRecreate => {
                        let mut body = desired;
                        with_owner(&mut body, reference_for(child_type, owner));
                        let ApplyStrategy::ServerSideApply { field_manager } = &self.strategy else { unreachable!() };
                        let dry_run = PatchParams { dry_run: true, ..PatchParams::apply(field_manager).force() };
                        let preview = match api.patch(&name, &dry_run, &Patch::Apply(&body)).await {
                            Ok(preview) => preview,
                            // Metacontroller skips rather than deletes when it cannot tell.
                            Err(kube::Error::Api(status)) if status.code == 400 || status.code == 403 => return Ok(Applied::Unchanged),
                            Err(error) => return Err(Self::api_error("previewing", child_type, key)(error)),
                        };
                        if comparable(&preview) == comparable(observed) {
                            return Ok(Applied::Unchanged);
                        }
                        self.delete(client, child_type, observed).await.map(|()| Applied::Deleted)
                    }
                    _ => {
                        if observed.annotations().contains_key(LAST_APPLIED_ANNOTATION) {
                            // Switched from dynamic-apply: the annotation is no longer ours to keep.
                            let escaped = LAST_APPLIED_ANNOTATION.replace('~', "~0").replace('/', "~1");
                            let patch: json_patch::Patch =
                                serde_json::from_value(json!([{ "op": "remove", "path": format!("/metadata/annotations/{escaped}") }]))
                                    .expect("a valid JSON patch");
                            api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch)).await.map_err(Self::api_error(
                                "updating",
                                child_type,
                                key.clone(),
                            ))?;
                        }
                        let applied = self.server_side_apply(&api, child_type, &name, &key, desired, owner).await?;
                        Ok(if applied.resource_version() == observed.resource_version() { Applied::Unchanged } else { Applied::Updated })
                    }
                }
            }
        }
    }

    /// Whether `observed` already is what `desired` asks for, so an update would change nothing;
    /// reads nothing. With dynamic apply this is the update's own three-way merge; with
    /// server-side apply, the record of the last apply or, lacking one, whether every field of
    /// `desired` already has that value (what Metacontroller checks for rolling updates).
    pub(crate) fn is_current(&self, child_type: &ChildType, observed: &DynamicObject, desired: &Value, owner: &Value) -> bool {
        let keep_last_applied = matches!(self.strategy, ApplyStrategy::DynamicApply);
        if !keep_last_applied && self.unchanged_since_applied(child_type, &key_of(observed), observed, desired, owner) {
            return true;
        }
        dynamic_apply_merge(observed, desired.clone(), reference_for(child_type, owner), keep_last_applied)
            .is_ok_and(|merged| merged.is_none())
    }

    /// Whether this exact body was applied to this object and nobody changed it since.
    fn unchanged_since_applied(&self, child_type: &ChildType, key: &str, observed: &DynamicObject, desired: &Value, owner: &Value) -> bool {
        let mut body = desired.clone();
        with_owner(&mut body, reference_for(child_type, owner));
        let records = self.applied.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        records.get(&Self::record_key(child_type, key)).is_some_and(|record| {
            record.body_hash == hash_of(&body)
                && Some(&record.uid) == observed.metadata.uid.as_ref()
                && Some(&record.resource_version) == observed.metadata.resource_version.as_ref()
        })
    }

    /// Deletes a child in the background, only if it is still the object we observed.
    pub(crate) async fn delete(&self, client: &kube::Client, child_type: &ChildType, observed: &DynamicObject) -> Result<(), ApplyError> {
        let key = key_of(observed);
        let api = Self::api(child_type, client, observed.namespace().as_deref());
        let params = DeleteParams::background().preconditions(Preconditions { uid: observed.uid(), resource_version: None });
        self.applied.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&Self::record_key(child_type, &key));
        match api.delete(&observed.name_any(), &params).await {
            Ok(_) => Ok(()),
            // Gone already, or replaced by a new object of the same name.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(error) => Err(Self::api_error("deleting", child_type, key)(error)),
        }
    }
}

/// Dynamic apply's merge of `desired` into `observed` (three-way, with the last-applied
/// annotation; with `annotate`, the new annotation included), with server-owned fields put
/// back and the parent's controller reference kept: the merged object, or `None` when an
/// update would change nothing.
fn dynamic_apply_merge(observed: &DynamicObject, mut desired: Value, owner: &Value, annotate: bool) -> Result<Option<Value>, MergeError> {
    let recorded = observed.annotations().get(LAST_APPLIED_ANNOTATION).filter(|_| annotate);
    let last_applied = annotate.then(|| serde_json::to_string(&desired).expect("JSON serializes"));
    // Without the annotation, nothing recorded is compared: the merge removes nothing either.
    let unchanged_since_applied = recorded == last_applied.as_ref();
    if let Some(last_applied) = last_applied {
        set_path(&mut desired, &["metadata", "annotations", LAST_APPLIED_ANNOTATION], Value::String(last_applied));
    }
    // Most syncs find their children as desired: tell without building the merge.
    if unchanged_since_applied && already_applied(observed, &desired, owner) {
        return Ok(None);
    }
    let observed_value = serde_json::to_value(observed).expect("objects serialize");
    let previous = recorded.and_then(|text| serde_json::from_str::<Value>(text).ok()).unwrap_or_else(|| json!({}));
    let mut merged = merge(&observed_value, &previous, &desired)?;
    revert_server_owned(&mut merged, &observed_value);
    // The hook's owner references merge by name, which must not replace the parent's.
    with_owner(&mut merged, owner);
    Ok((merged != observed_value).then_some(merged))
}

/// Whether `observed` has every field of `desired` and the controller reference `owner` (if
/// any), so that a merge that removes nothing (the last-applied state is `desired`'s) changes
/// nothing.
fn already_applied(observed: &DynamicObject, desired: &Value, owner: &Value) -> bool {
    let Some(fields) = desired.as_object() else { return false };
    let has_owner =
        owner.is_null() || observed.metadata.owner_references.iter().flatten().any(|reference| owner["uid"] == reference.uid.as_str());
    has_owner
        && fields.iter().all(|(field, wanted)| match field.as_str() {
            "apiVersion" => observed.types.as_ref().is_some_and(|types| wanted == types.api_version.as_str()),
            "kind" => observed.types.as_ref().is_some_and(|types| wanted == types.kind.as_str()),
            "metadata" => contains(&serde_json::to_value(&observed.metadata).expect("metadata serializes"), wanted),
            _ => observed.data.get(field).is_some_and(|current| contains(current, wanted)),
        })
}

/// The controller reference a child of `child_type` carries: `owner`, or none for a child tied
/// by label (its desired state carries the label).
fn reference_for<'a>(child_type: &ChildType, owner: &'a Value) -> &'a Value {
    static NONE: Value = Value::Null;
    match child_type.tie {
        Tie::Owner => owner,
        Tie::Label => &NONE,
    }
}

/// Adds the parent's controller reference `owner` (if any) to the child's owner references
/// (the hook's own, if any), unless it is there.
fn with_owner(child: &mut Value, owner: &Value) {
    if owner.is_null() {
        return;
    }
    let metadata = &mut child["metadata"];
    if !metadata["ownerReferences"].is_array() {
        metadata["ownerReferences"] = json!([]);
    }
    let references = metadata["ownerReferences"].as_array_mut().expect("made a list");
    if !references.iter().any(|reference| reference["uid"] == owner["uid"]) {
        references.push(owner.clone());
    }
}

fn hash_of(value: &Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

/// Puts back what only the server may change: system metadata and status.
fn revert_server_owned(merged: &mut Value, observed: &Value) {
    for field in super::SYSTEM_METADATA {
        match observed["metadata"].get(field) {
            Some(value) => merged["metadata"][field] = value.clone(),
            None => {
                if let Some(metadata) = merged["metadata"].as_object_mut() {
                    metadata.remove(field);
                }
            }
        }
    }
    match observed.get("status") {
        Some(status) => merged["status"] = status.clone(),
        None => {
            if let Some(object) = merged.as_object_mut() {
                object.remove("status");
            }
        }
    }
}

/// An object without server-owned metadata, for comparing a dry run with what exists.
fn comparable(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).expect("objects serialize");
    // An apply never changes status, and the live object's status (in a dry run's answer) may
    // be newer than the cached one's: comparing it would recreate a child for being observed.
    if let Some(fields) = value.as_object_mut() {
        fields.remove("status");
    }
    if let Some(metadata) = value["metadata"].as_object_mut() {
        for field in super::SYSTEM_METADATA {
            metadata.remove(field);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_owned_fields_are_reverted() {
        let observed = json!({ "metadata": { "name": "a", "resourceVersion": "5", "uid": "u" }, "status": { "ok": true } });
        let mut merged =
            json!({ "metadata": { "name": "a", "resourceVersion": "1", "generation": 3 }, "status": { "ok": false }, "data": {} });
        revert_server_owned(&mut merged, &observed);
        assert_eq!(
            merged,
            json!({ "metadata": { "name": "a", "resourceVersion": "5", "uid": "u" }, "status": { "ok": true }, "data": {} })
        );
    }

    #[test]
    fn strategies_parse_from_flags() {
        assert_eq!("dynamic-apply".parse::<ApplyStrategy>(), Ok(ApplyStrategy::DynamicApply));
        assert!(matches!("server-side-apply".parse::<ApplyStrategy>(), Ok(ApplyStrategy::ServerSideApply { .. })));
        assert!("kubectl".parse::<ApplyStrategy>().is_err());
    }
}
