//! The reconcile of one ConfigMapSync: work out from the caches which namespaces should hold
//! a copy and what each copy should contain, make only the writes that change something, wait
//! until the cache has seen them, and report the outcome in status (written only when it
//! changed) and events.
//!
//! Nothing is lost: a missing source, a source in another namespace, an invalid selector, a
//! source over the size limit or more destinations than allowed stop the reconcile before
//! any copy is touched; a namespace that does not accept copies (or a system namespace) is
//! never written, and loses the copies it held when it withdraws consent; a ConfigMap that is not a managed copy of
//! this ConfigMapSync is never written or deleted; every update and delete is conditional on
//! the resourceVersion the decision was based on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::{Action, EventType, ObjectKey};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::controller::{BY_OWNER, Shared, owner_id};
use super::{
    ACCEPT_FROM_ANNOTATION, ConfigMapSync, ConfigMapSyncStatus, DeletionPolicy, FINALIZER, MANAGED_BY, MANAGED_BY_LABEL, OWNER_ANNOTATION,
};

/// The field manager of status writes.
const FIELD_MANAGER: &str = "bosun-configmapsync";
/// How long a reconcile waits for the cache to show its own writes.
const READ_YOUR_WRITES: Duration = Duration::from_secs(10);
/// When a write lost a race (the object changed or appeared meanwhile), try again this soon.
const RACE_RETRY: Duration = Duration::from_millis(200);

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The cached object does not parse as a ConfigMapSync.
    #[error("ConfigMapSync {key} does not parse: {source}")]
    Parse {
        /// Which.
        key: ObjectKey,
        /// Why.
        source: serde_json::Error,
    },
    /// An API request failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The error.
        source: kube::Error,
    },
    /// Some copies could not be written.
    #[error("{0}")]
    Writes(String),
    /// Handing the ConfigMapSync over to another shard failed.
    #[error(transparent)]
    HandOver(#[from] bosun_runtime::sharding::HandOverError),
}

/// A problem that keeps a ConfigMapSync from being Ready: the condition's reason and message.
#[derive(Debug, Clone, PartialEq)]
struct Problem {
    reason: &'static str,
    message: String,
    /// Whether it stops every write (the source cannot be read, or the destination set is
    /// unknown), rather than only some destinations.
    blocking: bool,
}

/// One write to a ConfigMap.
enum Write {
    /// A new copy.
    Create(DynamicObject),
    /// A managed copy (`base`, as cached) brought back to the source's content (`body`).
    Update { base: Arc<DynamicObject>, body: DynamicObject },
    /// A managed copy in a namespace that left the set.
    Delete(Arc<DynamicObject>),
    /// A copy made an ordinary ConfigMap (deletion policy Orphan).
    Release(Arc<DynamicObject>),
}

/// How the cache shows that a write has been seen.
enum Seen {
    /// The object exists.
    Present(ObjectKey),
    /// The object's resourceVersion is no longer this one.
    Changed(ObjectKey, Option<String>),
    /// No object with this UID remains.
    Gone(ObjectKey, Option<String>),
}

impl Seen {
    fn holds(&self, cache: &bosun_runtime::Cache) -> bool {
        match self {
            Seen::Present(key) => cache.get(key).is_some(),
            Seen::Changed(key, version) => cache.get(key).is_none_or(|object| object.metadata.resource_version != *version),
            Seen::Gone(key, uid) => cache.get(key).is_none_or(|object| object.metadata.uid != *uid),
        }
    }
}

/// What the caches say should happen.
#[derive(Default)]
struct Plan {
    /// The namespaces that should hold a copy.
    selected: BTreeSet<String>,
    /// Of those, the ones whose copy is already right.
    in_sync: BTreeSet<String>,
    /// Named destinations that refuse copies (system namespaces, no consent).
    refused: BTreeSet<String>,
    problems: Vec<Problem>,
    writes: Vec<Write>,
}

/// A managed copy of `source` in `namespace`: `base` (the current copy) with the source's
/// content, or a new ConfigMap.
fn copy_of(source: &DynamicObject, base: Option<&DynamicObject>, namespace: &str, owner: &str) -> DynamicObject {
    let mut copy = match base {
        Some(base) => base.clone(),
        None => DynamicObject::new(&source.name_any(), &config_map_resource()).within(namespace),
    };
    copy.labels_mut().insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    copy.annotations_mut().insert(OWNER_ANNOTATION.to_owned(), owner.to_owned());
    if !copy.data.is_object() {
        copy.data = json!({});
    }
    let fields = copy.data.as_object_mut().expect("made an object above");
    for field in ["data", "binaryData"] {
        match source.data.get(field).filter(|value| !value.is_null()) {
            Some(value) => fields.insert(field.to_owned(), value.clone()),
            None => fields.remove(field),
        };
    }
    copy
}

/// Whether a namespace receives copies from a source namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Accepted,
    /// A system namespace the operator is not allowed to write to.
    Protected,
    /// Consent is required and the namespace does not give it.
    NotAccepted,
}

/// Whether `namespace`'s consent annotation names `source` (or `*`).
fn consents(namespace: &DynamicObject, source: &str) -> bool {
    namespace
        .annotations()
        .get(ACCEPT_FROM_ANNOTATION)
        .is_some_and(|accepted| accepted.split(',').map(str::trim).any(|entry| entry == "*" || entry == source))
}

/// The size of a ConfigMap's content as the API server limits it: the keys and values of
/// `data`, and the keys and decoded values of `binaryData`.
fn source_bytes(config_map: &DynamicObject) -> usize {
    let entries = |field: &str| config_map.data.get(field).and_then(Value::as_object).into_iter().flatten();
    let text: usize = entries("data").map(|(key, value)| key.len() + value.as_str().map_or(0, str::len)).sum();
    let binary: usize = entries("binaryData")
        .map(|(key, value)| {
            let encoded = value.as_str().unwrap_or_default();
            key.len() + (encoded.len() / 4 * 3).saturating_sub(encoded.bytes().rev().take_while(|byte| *byte == b'=').count())
        })
        .sum();
    text + binary
}

/// What the writes achieved.
#[derive(Default)]
struct Outcome {
    /// Namespaces whose copy was created or updated.
    synced: BTreeSet<String>,
    created: usize,
    updated: usize,
    deleted: usize,
    /// A write lost a race: reconcile again soon.
    raced: bool,
    /// `namespace: error` of the writes that failed.
    failures: Vec<String>,
}

/// Whether two `data` or `binaryData` values are the same; the API server drops empty maps.
fn same_content(a: Option<&Value>, b: Option<&Value>) -> bool {
    let empty = |value: Option<&Value>| value.is_none_or(|value| value.is_null() || value.as_object().is_some_and(|map| map.is_empty()));
    (empty(a) && empty(b)) || a == b
}

fn is_terminating(namespace: &DynamicObject) -> bool {
    namespace.metadata.deletion_timestamp.is_some()
        || namespace.data.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
}

fn config_map_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&())
}

impl Shared {
    /// Reconciles the ConfigMapSync under `key`.
    pub(super) async fn reconcile(&self, key: &ObjectKey) -> Result<Action, SyncError> {
        let Some(object) = self.syncs.get(key) else { return Ok(Action::Done) };
        // Sharded, it is synced only while it is this shard's, never while it is handed over.
        let _running = match &self.shard {
            Some(shard) => match shard.admit(&ApiResource::erase::<ConfigMapSync>(&()), &object).await? {
                bosun_runtime::sharding::Admission::Sync(running) => Some(running),
                bosun_runtime::sharding::Admission::Skip => return Ok(Action::Done),
            },
            None => None,
        };
        let sync: ConfigMapSync = serde_json::to_value(&*object)
            .and_then(serde_json::from_value)
            .map_err(|source| SyncError::Parse { key: key.clone(), source })?;
        if sync.metadata.deletion_timestamp.is_some() {
            return self.finalize(&sync).await;
        }
        if !sync.finalizers().iter().any(|finalizer| finalizer == FINALIZER) {
            let mut finalizers = sync.finalizers().to_vec();
            finalizers.push(FINALIZER.to_owned());
            if !self.patch_finalizers(&sync, finalizers).await? {
                return Ok(Action::RequeueAfter(RACE_RETRY));
            }
        }
        let plan = self.plan(&sync);
        let outcome = self.execute(&plan.writes).await;
        self.report(&sync, &plan, &outcome).await?;
        if !outcome.failures.is_empty() {
            return Err(SyncError::Writes(format!("writing copies failed: {}", outcome.failures.join("; "))));
        }
        Ok(if outcome.raced { Action::RequeueAfter(RACE_RETRY) } else { Action::Done })
    }

    /// Decides, from the caches alone, which namespaces should hold a copy and which writes
    /// bring them there.
    fn plan(&self, sync: &ConfigMapSync) -> Plan {
        let mut plan = Plan::default();
        let spec = &sync.spec;
        let own_namespace = sync.namespace().unwrap_or_default();
        let owner = owner_id(&own_namespace, &sync.name_any());
        let name = &spec.config_map_name;

        let named: BTreeSet<&String> = spec.destination_namespace.iter().chain(spec.destination_namespaces.iter().flatten()).collect();
        let (mut missing, mut protected, mut not_accepting) = (Vec::new(), Vec::new(), Vec::new());
        // The source is never its own copy.
        for namespace in named.into_iter().filter(|namespace| **namespace != own_namespace) {
            match self.namespaces.get(&ObjectKey { namespace: None, name: namespace.clone() }) {
                Some(object) if !is_terminating(&object) => match self.admission(&object, &own_namespace) {
                    Admission::Accepted => {
                        plan.selected.insert(namespace.clone());
                    }
                    Admission::Protected => protected.push(namespace.as_str()),
                    Admission::NotAccepted => not_accepting.push(namespace.as_str()),
                },
                _ => missing.push(namespace.as_str()),
            }
        }
        plan.refused = protected.iter().chain(&not_accepting).map(|namespace| (*namespace).to_owned()).collect();
        if let Some(selector) = &spec.namespace_selector {
            for namespace in self.namespaces.list() {
                match bosun_runtime::selector::matches(selector, namespace.labels()) {
                    // Matching namespaces that refuse copies are simply not destinations.
                    Ok(true)
                        if !is_terminating(&namespace)
                            && namespace.name_any() != own_namespace
                            && self.admission(&namespace, &own_namespace) == Admission::Accepted =>
                    {
                        plan.selected.insert(namespace.name_any());
                    }
                    Ok(_) => {}
                    Err(error) => {
                        plan.problems.push(Problem {
                            reason: "InvalidSelector",
                            message: format!("spec.namespaceSelector is invalid: {error}"),
                            blocking: true,
                        });
                        break;
                    }
                }
            }
        }

        if let Some(source_namespace) = spec.source_namespace.as_ref().filter(|namespace| **namespace != own_namespace) {
            plan.problems.push(Problem {
                reason: "CrossNamespaceSource",
                message: format!(
                    "spec.sourceNamespace is {source_namespace:?}, but a ConfigMapSync can only copy a ConfigMap from its own \
                     namespace {own_namespace:?}: create the ConfigMapSync in {source_namespace:?}, or remove sourceNamespace"
                ),
                blocking: true,
            });
        }
        let source = self.config_maps.get(&ObjectKey { namespace: Some(own_namespace.clone()), name: name.clone() });
        match &source {
            None => plan.problems.push(Problem {
                reason: "SourceNotFound",
                message: format!(
                    "ConfigMap {own_namespace}/{name} does not exist; the copies are kept as they are and resume syncing when it does"
                ),
                blocking: true,
            }),
            Some(source) if source_bytes(source) > self.options.max_source_bytes => plan.problems.push(Problem {
                reason: "SourceTooLarge",
                message: format!(
                    "ConfigMap {own_namespace}/{name} holds {} bytes, more than the {} this operator copies \
                     (--configmapsync-max-source-bytes); nothing is written and the copies are kept as they are",
                    source_bytes(source),
                    self.options.max_source_bytes
                ),
                blocking: true,
            }),
            Some(_) => {}
        }
        if plan.selected.len() > self.options.max_destinations {
            plan.problems.push(Problem {
                reason: "TooManyDestinations",
                message: format!(
                    "{} namespaces are selected, more than the {} one ConfigMapSync may write to \
                     (--configmapsync-max-destinations); nothing is written or deleted until the destinations are narrowed",
                    plan.selected.len(),
                    self.options.max_destinations
                ),
                blocking: true,
            });
        }
        if !missing.is_empty() {
            plan.problems.push(Problem {
                reason: "NamespaceNotFound",
                message: format!("destination namespaces {} do not exist (or are being deleted)", missing.join(", ")),
                blocking: false,
            });
        }
        if !protected.is_empty() {
            plan.problems.push(Problem {
                reason: "SystemNamespace",
                message: format!(
                    "{} {} system namespaces and never receive copies (the operator's \
                     --configmapsync-allow-system-namespace lists those that may)",
                    protected.join(", "),
                    if protected.len() == 1 { "is one of the" } else { "are" },
                ),
                blocking: false,
            });
        }
        if !not_accepting.is_empty() {
            let first = not_accepting[0];
            plan.problems.push(Problem {
                reason: "NotAccepted",
                message: format!(
                    "namespace{} {} {} not accept copies from {own_namespace}, so nothing is written there; to accept them: \
                     kubectl annotate namespace {first} {ACCEPT_FROM_ANNOTATION}={own_namespace} (a comma-separated list of \
                     source namespaces, or *)",
                    if not_accepting.len() == 1 { "" } else { "s" },
                    not_accepting.join(", "),
                    if not_accepting.len() == 1 { "does" } else { "do" },
                ),
                blocking: false,
            });
        }
        let Some(source) = source.filter(|_| !plan.problems.iter().any(|problem| problem.blocking)) else { return plan };

        let mut conflicts = Vec::new();
        for namespace in &plan.selected {
            let copy = self.config_maps.get(&ObjectKey { namespace: Some(namespace.clone()), name: name.clone() });
            match copy {
                None => plan.writes.push(Write::Create(copy_of(&source, None, namespace, &owner))),
                Some(copy) if copy.annotations().get(OWNER_ANNOTATION) != Some(&owner) => conflicts.push(namespace.as_str()),
                // Being deleted by someone: recreated once it is gone.
                Some(copy) if copy.metadata.deletion_timestamp.is_some() => {}
                Some(copy) if is_current(&copy, &source) => {
                    plan.in_sync.insert(namespace.clone());
                }
                Some(copy) => plan.writes.push(Write::Update { body: copy_of(&source, Some(&copy), namespace, &owner), base: copy }),
            }
        }
        if !conflicts.is_empty() {
            plan.problems.insert(
                0,
                Problem {
                    reason: "Conflict",
                    message: format!(
                        "ConfigMap {name} already exists in {} and is not managed by this ConfigMapSync, so it is left alone: \
                     delete or rename it there, or remove the namespace from the destinations",
                        conflicts.join(", ")
                    ),
                    blocking: false,
                },
            );
        }
        for copy in self.config_maps.by_index(BY_OWNER, &owner) {
            let namespace = copy.namespace().unwrap_or_default();
            let leaving = copy.name_any() != *name || !plan.selected.contains(&namespace);
            let namespace_going = self
                .namespaces
                .get(&ObjectKey { namespace: None, name: namespace.clone() })
                .is_none_or(|namespace| is_terminating(&namespace));
            if leaving && !namespace_going && copy.metadata.deletion_timestamp.is_none() {
                plan.writes.push(Write::Delete(copy));
            }
        }
        plan
    }

    /// Whether `namespace` receives copies from ConfigMapSyncs in `source`.
    fn admission(&self, namespace: &DynamicObject, source: &str) -> Admission {
        let name = namespace.name_any();
        if self.options.is_protected(&name) {
            Admission::Protected
        } else if self.options.require_consent && !consents(namespace, source) {
            Admission::NotAccepted
        } else {
            Admission::Accepted
        }
    }

    /// Makes `writes`, a bounded number at once, and waits until the cache has seen those
    /// that succeeded.
    async fn execute(&self, writes: &[Write]) -> Outcome {
        let mut outcome = Outcome::default();
        let mut seen = Vec::new();
        // Futures made up front: a closure in the stream would not be general enough to be Send.
        let pending: Vec<_> = writes.iter().map(|write| self.write(write)).collect();
        let mut results = futures::stream::iter(pending).buffer_unordered(self.options.write_concurrency.max(1));
        while let Some((write, result)) = results.next().await {
            let namespace = match write {
                Write::Create(object) | Write::Update { body: object, .. } => object.namespace(),
                Write::Delete(object) | Write::Release(object) => object.namespace(),
            }
            .unwrap_or_default();
            match result {
                Ok(expectation) => {
                    match write {
                        Write::Create(_) => outcome.created += 1,
                        Write::Update { .. } => outcome.updated += 1,
                        Write::Delete(_) | Write::Release(_) => outcome.deleted += 1,
                    }
                    if matches!(write, Write::Create(_) | Write::Update { .. }) {
                        outcome.synced.insert(namespace);
                    }
                    seen.push(expectation);
                }
                // Created, changed or deleted by someone else since the cache showed it.
                Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => outcome.raced = true,
                Err(error) => outcome.failures.push(format!("{namespace}: {error}")),
            }
        }
        drop(results);
        let all_seen = self
            .config_maps
            .wait_for(READ_YOUR_WRITES, |cache| {
                seen.retain(|expectation| !expectation.holds(cache));
                seen.is_empty()
            })
            .await;
        if !all_seen {
            tracing::warn!(pending = seen.len(), "the ConfigMap cache has not shown every write yet");
        }
        outcome
    }

    /// Makes one write; returns how the cache will show it.
    async fn write<'w>(&self, write: &'w Write) -> (&'w Write, Result<Seen, kube::Error>) {
        let api = |object: &DynamicObject| {
            Api::<DynamicObject>::namespaced_with(self.client.clone(), &object.namespace().unwrap_or_default(), &config_map_resource())
        };
        let preconditions = |object: &DynamicObject| Preconditions {
            uid: object.metadata.uid.clone(),
            resource_version: object.metadata.resource_version.clone(),
        };
        let result = match write {
            Write::Create(copy) => api(copy).create(&PostParams::default(), copy).await.map(|_| Seen::Present(ObjectKey::of(copy))),
            Write::Update { base, body } => api(body)
                .replace(&body.name_any(), &PostParams::default(), body)
                .await
                .map(|_| Seen::Changed(ObjectKey::of(base), base.metadata.resource_version.clone())),
            Write::Delete(copy) => {
                let params = DeleteParams { preconditions: Some(preconditions(copy)), ..DeleteParams::background() };
                match api(copy).delete(&copy.name_any(), &params).await {
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    result => result.map(|_| ()),
                }
                .map(|()| Seen::Gone(ObjectKey::of(copy), copy.metadata.uid.clone()))
            }
            Write::Release(copy) => {
                // The resourceVersion makes the patch conditional: 409 if the copy changed.
                let release = json!({ "metadata": {
                    "resourceVersion": copy.metadata.resource_version,
                    "annotations": { OWNER_ANNOTATION: null },
                    "labels": { MANAGED_BY_LABEL: null },
                }});
                api(copy)
                    .patch(&copy.name_any(), &PatchParams::default(), &Patch::Merge(&release))
                    .await
                    .map(|_| Seen::Changed(ObjectKey::of(copy), copy.metadata.resource_version.clone()))
            }
        };
        (write, result)
    }

    /// Writes the status if it changed, and records events for what changed.
    async fn report(&self, sync: &ConfigMapSync, plan: &Plan, outcome: &Outcome) -> Result<(), SyncError> {
        let mut problems = plan.problems.clone();
        if !outcome.failures.is_empty() {
            problems.push(Problem {
                reason: "WriteFailed",
                message: format!("writing copies failed (retrying): {}", outcome.failures.join("; ")),
                blocking: false,
            });
        }
        let synced: BTreeSet<String> = plan.in_sync.union(&outcome.synced).cloned().collect();
        let name = &sync.spec.config_map_name;
        let (status, reason, message) = match problems.first() {
            None if plan.selected.is_empty() => {
                ("True", "Synced", format!("no destination namespace is selected for ConfigMap {name} yet"))
            }
            None => ("True", "Synced", format!("ConfigMap {name} is copied to {} namespaces", synced.len())),
            Some(problem) => {
                let messages: Vec<&str> = problems.iter().map(|problem| problem.message.as_str()).collect();
                ("False", problem.reason, messages.join("; "))
            }
        };
        let old = sync.status.clone().unwrap_or_default();
        let old_ready = old.conditions.iter().find(|condition| condition.type_ == "Ready");
        let now = Time(Timestamp::now());
        let ready = Condition {
            type_: "Ready".to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: sync.metadata.generation,
            last_transition_time: match old_ready {
                Some(condition) if condition.status == status => condition.last_transition_time.clone(),
                _ => now.clone(),
            },
        };
        let wrote = outcome.created + outcome.updated + outcome.deleted > 0;
        let changed_ready = old_ready.is_none_or(|old| old.reason != ready.reason || old.message != ready.message);
        let new = ConfigMapSyncStatus {
            observed_generation: sync.metadata.generation,
            last_sync_time: if wrote { Some(now) } else { old.last_sync_time.clone() },
            destinations: Some(format!("{}/{}", synced.len(), plan.selected.len())),
            synced_namespaces: synced.into_iter().collect(),
            refused_namespaces: plan.refused.iter().cloned().collect(),
            conditions: vec![ready.clone()],
        };
        if new != old {
            let body = json!({
                "apiVersion": ConfigMapSync::api_version(&()),
                "kind": ConfigMapSync::kind(&()),
                "metadata": { "name": sync.name_any() },
                "status": new,
            });
            let api: Api<ConfigMapSync> = Api::namespaced(self.client.clone(), &sync.namespace().unwrap_or_default());
            api.patch_status(&sync.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
                .await
                .map_err(|source| SyncError::Api { action: "writing the status".into(), source })?;
        }
        if wrote {
            let note =
                format!("ConfigMap {name}: {} copies created, {} updated, {} deleted", outcome.created, outcome.updated, outcome.deleted);
            self.recorder.record(&sync.object_ref(&()), EventType::Normal, "Synced", &note).await;
        }
        if changed_ready && ready.status == "False" {
            self.recorder.record(&sync.object_ref(&()), EventType::Warning, &ready.reason, &ready.message).await;
        }
        Ok(())
    }

    /// Removes the copies (or, with deletion policy Orphan, releases them), then the finalizer.
    async fn finalize(&self, sync: &ConfigMapSync) -> Result<Action, SyncError> {
        if !sync.finalizers().iter().any(|finalizer| finalizer == FINALIZER) {
            return Ok(Action::Done);
        }
        let owner = owner_id(&sync.namespace().unwrap_or_default(), &sync.name_any());
        let orphan = sync.spec.deletion_policy == Some(DeletionPolicy::Orphan);
        let writes: Vec<Write> = self
            .config_maps
            .by_index(BY_OWNER, &owner)
            .into_iter()
            .filter(|copy| copy.metadata.deletion_timestamp.is_none())
            .map(|copy| if orphan { Write::Release(copy) } else { Write::Delete(copy) })
            .collect();
        let outcome = self.execute(&writes).await;
        if !outcome.failures.is_empty() {
            let error = format!("removing copies failed: {}", outcome.failures.join("; "));
            self.recorder.record(&sync.object_ref(&()), EventType::Warning, "FinalizeFailed", &error).await;
            return Err(SyncError::Writes(error));
        }
        if outcome.raced {
            return Ok(Action::RequeueAfter(RACE_RETRY));
        }
        let finalizers = sync.finalizers().iter().filter(|finalizer| *finalizer != FINALIZER).cloned().collect();
        if !self.patch_finalizers(sync, finalizers).await? {
            return Ok(Action::RequeueAfter(RACE_RETRY));
        }
        Ok(Action::Done)
    }

    /// Sets the finalizers, conditional on the cached resourceVersion; `false` if the object
    /// changed or went meanwhile.
    async fn patch_finalizers(&self, sync: &ConfigMapSync, finalizers: Vec<String>) -> Result<bool, SyncError> {
        let api: Api<ConfigMapSync> = Api::namespaced(self.client.clone(), &sync.namespace().unwrap_or_default());
        let patch = json!({ "metadata": { "resourceVersion": sync.resource_version(), "finalizers": finalizers } });
        match api.patch(&sync.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(false),
            Err(source) => Err(SyncError::Api { action: "updating the finalizers".into(), source }),
        }
    }
}

/// Whether `copy` has the source's content and is marked as managed.
fn is_current(copy: &DynamicObject, source: &DynamicObject) -> bool {
    same_content(copy.data.get("data"), source.data.get("data"))
        && same_content(copy.data.get("binaryData"), source.data.get("binaryData"))
        && copy.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ConfigMap with `fields` over a minimal one.
    fn object(fields: Value) -> DynamicObject {
        let mut value = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "x" } });
        for (field, content) in fields.as_object().expect("an object") {
            value[field] = content.clone();
        }
        serde_json::from_value(value).expect("a ConfigMap")
    }

    #[test]
    fn consent_names_the_source_or_anyone() {
        let with = |accepted: &str| object(json!({ "metadata": { "name": "x", "annotations": { ACCEPT_FROM_ANNOTATION: accepted } } }));
        assert!(consents(&with("team-a"), "team-a"));
        assert!(consents(&with("team-b, team-a"), "team-a"));
        assert!(consents(&with("*"), "team-a"));
        assert!(!consents(&with("team-ab"), "team-a"));
        assert!(!consents(&with(""), "team-a"));
        assert!(!consents(&object(json!({})), "team-a"));
    }

    #[test]
    fn source_bytes_count_keys_values_and_decoded_binary_data() {
        assert_eq!(source_bytes(&object(json!({}))), 0);
        assert_eq!(source_bytes(&object(json!({ "data": { "ab": "cde" } }))), 5);
        // "AAEC" is 3 bytes, "AA==" one.
        assert_eq!(source_bytes(&object(json!({ "binaryData": { "k": "AAEC", "l": "AA==" } }))), 1 + 3 + 1 + 1);
    }
}
