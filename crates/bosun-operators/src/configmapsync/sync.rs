//! The reconcile of one ConfigMapSync: work out from the caches (and the contents the
//! operator remembers, [`super::contents`]) which namespaces should hold a copy and what each
//! copy should contain, make only the writes that change something, wait until the cache has
//! seen them, and report the outcome in status (written only when it changed) and events.
//!
//! Nothing is lost: a missing source, a source in another namespace, an invalid selector, a
//! source over the size limit or more destinations than allowed stop the reconcile before
//! any copy is touched; a namespace that does not accept copies (or a system namespace) is
//! never written, and loses the copies it held when it withdraws consent; consent binds the
//! namespace it named when first used ([`super::consent`]); a ConfigMap that is not a managed
//! copy of this ConfigMapSync is never written, and one that merely carries its owner
//! annotation is deleted only when it provably is a copy — one the status records as written
//! (`status.copies`), or holding exactly the source's content — and otherwise released, so that
//! an annotation cannot turn the operator's right to delete against someone's ConfigMap; every
//! update and delete is conditional on the resourceVersion the decision was based on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::finalizer::{self, Event, FinalizerError, finalizer};
use bosun_runtime::{Action, EventType, ObjectKey};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::consent::{self, Binding, CONSENT_RECORD, RECORD_LIMIT};
use super::contents::Content;
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
    /// A managed copy brought back to the source's content: the copy as read, with the
    /// source's content (its resourceVersion makes the replace conditional).
    Update(DynamicObject),
    /// A managed copy in a namespace that left the set.
    Delete(Arc<DynamicObject>),
    /// A copy made an ordinary ConfigMap (deletion policy Orphan), or a ConfigMap carrying the
    /// owner annotation that is not provably a copy, freed of it.
    Release(Arc<DynamicObject>),
    /// Records in `namespace`'s consent record that `source` is the namespace with UID `uid`
    /// (`record`: the record, as cached, if there is one).
    Bind { namespace: String, source: String, uid: String, record: Option<Arc<DynamicObject>> },
    /// Drops `source` from the consent record `record`: consent was withdrawn.
    Unbind { source: String, record: Arc<DynamicObject> },
}

impl Write {
    /// The namespace written to.
    fn namespace(&self) -> String {
        match self {
            Write::Create(object) | Write::Update(object) => object.namespace(),
            Write::Delete(object) | Write::Release(object) | Write::Unbind { record: object, .. } => object.namespace(),
            Write::Bind { namespace, .. } => Some(namespace.clone()),
        }
        .unwrap_or_default()
    }

    /// Whether it is about consent, and goes before the copies.
    fn is_consent(&self) -> bool {
        matches!(self, Write::Bind { .. } | Write::Unbind { .. })
    }
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
    /// Named destinations that refuse copies (system namespaces, no consent, consent given
    /// to another namespace of the source's name).
    refused: BTreeSet<String>,
    problems: Vec<Problem>,
    writes: Vec<Write>,
}

/// A managed copy named `name` of `source` in `namespace`: `base` (the current copy) with the
/// source's content, or a new ConfigMap.
fn copy_of(name: &str, source: &Content, base: Option<DynamicObject>, namespace: &str, owner: &str) -> DynamicObject {
    let mut copy = base.unwrap_or_else(|| DynamicObject::new(name, &config_map_resource()).within(namespace));
    copy.labels_mut().insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    copy.annotations_mut().insert(OWNER_ANNOTATION.to_owned(), owner.to_owned());
    if !copy.data.is_object() {
        copy.data = json!({});
    }
    let fields = copy.data.as_object_mut().expect("made an object above");
    for (field, value) in [("data", &source.data), ("binaryData", &source.binary_data)] {
        match value {
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
    consent::accepted(namespace).any(|entry| entry == "*" || entry == source)
}

/// What the writes achieved.
#[derive(Default)]
struct Outcome {
    /// `namespace/name` of the copies written (created or updated).
    written: BTreeSet<String>,
    /// `namespace/name` of the ConfigMaps deleted or released.
    removed: BTreeSet<String>,
    /// Namespaces whose copy was created or updated.
    synced: BTreeSet<String>,
    created: usize,
    updated: usize,
    deleted: usize,
    /// ConfigMaps freed of an owner annotation they carried without being copies.
    released: Vec<String>,
    /// A write lost a race: reconcile again soon.
    raced: bool,
    /// `namespace: error` of the writes that failed.
    failures: Vec<String>,
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
                bosun_runtime::sharding::Admission::Elsewhere => return Ok(Action::RequeueAfter(bosun_runtime::sharding::ELSEWHERE_RETRY)),
            },
            None => None,
        };
        let sync: ConfigMapSync = serde_json::to_value(&*object)
            .and_then(serde_json::from_value)
            .map_err(|source| SyncError::Parse { key: key.clone(), source })?;
        let api: Api<ConfigMapSync> = Api::namespaced(self.client.clone(), &sync.namespace().unwrap_or_default());
        let reconciled = finalizer(&api, FINALIZER, Arc::new(sync), |event| async move {
            match event {
                Event::Apply(sync) => self.apply(&sync).await,
                Event::Cleanup(sync) => self.finalize(&sync).await,
            }
        })
        .await;
        match reconciled {
            Ok(action) => Ok(action),
            Err(finalizer::Error::Apply(error) | finalizer::Error::Cleanup(error)) => Err(error),
            // Another client changed it meanwhile: soon again, with what it wrote.
            Err(finalizer::Error::Finalizer(FinalizerError::Conflict)) => Ok(Action::RequeueAfter(RACE_RETRY)),
            Err(finalizer::Error::Finalizer(FinalizerError::Api(source))) => {
                Err(SyncError::Api { action: "updating the finalizers".into(), source })
            }
        }
    }

    /// Writes the copies the ConfigMapSync asks for and reports on it.
    async fn apply(&self, sync: &ConfigMapSync) -> Result<Action, SyncError> {
        let plan = self.plan(sync).await?;
        let outcome = self.execute(&plan.writes).await;
        self.report(sync, &plan, &outcome).await?;
        if !outcome.failures.is_empty() {
            return Err(SyncError::Writes(format!("writing copies failed: {}", outcome.failures.join("; "))));
        }
        Ok(if outcome.raced { Action::RequeueAfter(RACE_RETRY) } else { Action::Done })
    }

    /// Decides, from the caches and the contents known, which namespaces should hold a copy
    /// and which writes bring them there.
    async fn plan(&self, sync: &ConfigMapSync) -> Result<Plan, SyncError> {
        let mut plan = Plan::default();
        let spec = &sync.spec;
        let own_namespace = sync.namespace().unwrap_or_default();
        let owner = owner_id(&own_namespace, &sync.name_any());
        let name = &spec.config_map_name;

        let named: BTreeSet<&String> = spec.destination_namespace.iter().chain(spec.destination_namespaces.iter().flatten()).collect();
        let (mut missing, mut protected, mut not_accepting) = (Vec::new(), Vec::new(), Vec::new());
        // Namespaces that do not (or no longer) accept copies from here.
        let mut withdrawn = Vec::new();
        // The source is never its own copy.
        for namespace in named.into_iter().filter(|namespace| **namespace != own_namespace) {
            match self.namespaces.get(&ObjectKey { namespace: None, name: namespace.clone() }) {
                Some(object) if !is_terminating(&object) => match self.admission(&object, &own_namespace) {
                    Admission::Accepted => {
                        plan.selected.insert(namespace.clone());
                    }
                    Admission::Protected => protected.push(namespace.as_str()),
                    Admission::NotAccepted => {
                        not_accepting.push(namespace.as_str());
                        withdrawn.push(namespace.clone());
                    }
                },
                _ => missing.push(namespace.as_str()),
            }
        }
        if let Some(selector) = &spec.namespace_selector {
            for namespace in self.namespaces.list() {
                match bosun_runtime::selector::matches(selector, namespace.labels()) {
                    // Matching namespaces that refuse copies are simply not destinations.
                    Ok(true) if !is_terminating(&namespace) && namespace.name_any() != own_namespace => {
                        match self.admission(&namespace, &own_namespace) {
                            Admission::Accepted => {
                                plan.selected.insert(namespace.name_any());
                            }
                            Admission::NotAccepted => withdrawn.push(namespace.name_any()),
                            Admission::Protected => {}
                        }
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
        let recreated = self.bind_consent(&mut plan, &own_namespace, &withdrawn).await?;
        plan.refused = protected.iter().chain(&not_accepting).map(|namespace| (*namespace).to_owned()).collect();
        plan.refused.extend(recreated.iter().map(|(namespace, _)| namespace.clone()));

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
        if *name == CONSENT_RECORD {
            plan.problems.push(Problem {
                reason: "ReservedName",
                message: format!(
                    "ConfigMap {CONSENT_RECORD} records consent in each destination and cannot be copied: copy another ConfigMap"
                ),
                blocking: true,
            });
        }
        let source_key = ObjectKey { namespace: Some(own_namespace.clone()), name: name.clone() };
        let source = match self.config_maps.get(&source_key) {
            Some(cached) => {
                self.contents.read(&self.client, &cached, self.options.max_source_bytes).await.map_err(api("reading the source"))?
            }
            None => None,
        };
        match &source {
            None => plan.problems.push(Problem {
                reason: "SourceNotFound",
                message: format!(
                    "ConfigMap {own_namespace}/{name} does not exist; the copies are kept as they are and resume syncing when it does"
                ),
                blocking: true,
            }),
            Some(source) if source.bytes > self.options.max_source_bytes => plan.problems.push(Problem {
                reason: "SourceTooLarge",
                message: format!(
                    "ConfigMap {own_namespace}/{name} holds {} bytes, more than the {} this operator copies \
                     (--configmapsync-max-source-bytes); nothing is written and the copies are kept as they are",
                    source.bytes, self.options.max_source_bytes
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
        if !recreated.is_empty() {
            let (first, _) = &recreated[0];
            let namespaces: Vec<&str> = recreated.iter().map(|(namespace, _)| namespace.as_str()).collect();
            let why = &recreated[0].1;
            plan.problems.push(Problem {
                reason: "ConsentForAnotherNamespace",
                message: format!(
                    "{} accepted copies from an earlier namespace named {own_namespace} ({why}), so nothing is written there: \
                     a namespace deleted and created again does not inherit the consent given to the old one. If {own_namespace} \
                     is the one meant, its owner renews consent: kubectl -n {first} delete configmap {CONSENT_RECORD} (or \
                     remove {own_namespace} from its {ACCEPT_FROM_ANNOTATION} annotation and add it again)",
                    namespaces.join(", ")
                ),
                blocking: false,
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
        let source = source.filter(|_| !plan.problems.iter().any(|problem| problem.blocking));
        let Some(source) = source.and_then(|source| source.content) else {
            // Nothing is written to the copies: the consent records wait too.
            plan.writes.retain(|write| matches!(write, Write::Unbind { .. }));
            return Ok(plan);
        };
        let source_digest = source.digest();

        // The copies in the selected namespaces, read concurrently (known ones cost nothing).
        let cached: Vec<(String, Option<Arc<DynamicObject>>)> = plan
            .selected
            .iter()
            .map(|namespace| {
                (namespace.clone(), self.config_maps.get(&ObjectKey { namespace: Some(namespace.clone()), name: name.clone() }))
            })
            .collect();
        let owner_ref = &owner;
        let reads = futures::stream::iter(cached.into_iter().map(|(namespace, copy)| async move {
            let read = match &copy {
                Some(copy) if copy.annotations().get(OWNER_ANNOTATION) == Some(owner_ref) && copy.metadata.deletion_timestamp.is_none() => {
                    self.contents.read(&self.client, copy, 0).await.map(Some)
                }
                _ => Ok(None),
            };
            (namespace, copy, read)
        }))
        .buffer_unordered(self.options.write_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
        let mut conflicts = Vec::new();
        for (namespace, copy, read) in reads {
            let read = read.map_err(api("reading a copy"))?;
            match (copy, read) {
                (None, _) | (Some(_), Some(None)) => plan.writes.push(Write::Create(copy_of(name, &source, None, &namespace, &owner))),
                (Some(copy), _) if copy.annotations().get(OWNER_ANNOTATION) != Some(&owner) => conflicts.push(namespace),
                // Being deleted by someone: recreated once it is gone.
                (Some(_), None) => {}
                (Some(copy), Some(Some(read))) => {
                    if read.digest == source_digest && copy.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY) {
                        plan.in_sync.insert(namespace);
                        continue;
                    }
                    let base = match read.fetched {
                        Some(base) => base,
                        None => match self.contents.fetch(&self.client, &copy).await.map_err(api("reading a copy"))? {
                            Some(base) => base,
                            None => {
                                plan.writes.push(Write::Create(copy_of(name, &source, None, &namespace, &owner)));
                                continue;
                            }
                        },
                    };
                    plan.writes.push(Write::Update(copy_of(name, &source, Some(base), &namespace, &owner)));
                }
            }
        }
        if !conflicts.is_empty() {
            conflicts.sort();
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
        let copies = sync.status.as_ref().map(|status| status.copies.clone()).unwrap_or_default();
        for copy in self.config_maps.by_index(BY_OWNER, &owner) {
            let namespace = copy.namespace().unwrap_or_default();
            let leaving = copy.name_any() != *name || !plan.selected.contains(&namespace);
            let namespace_going = self
                .namespaces
                .get(&ObjectKey { namespace: None, name: namespace.clone() })
                .is_none_or(|namespace| is_terminating(&namespace));
            if leaving && !namespace_going && copy.metadata.deletion_timestamp.is_none() {
                let write = self.removal(copy, &copies, Some(source_digest)).await?;
                plan.writes.push(write);
            }
        }
        Ok(plan)
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

    /// Binds the consent of each selected namespace that names `own_namespace` to its UID
    /// (a `Bind` write where none is recorded yet), drops from `plan.selected` those whose
    /// consent is bound to another namespace of that name (returned, with why), and unbinds
    /// `own_namespace` in the records of the `withdrawn` namespaces.
    async fn bind_consent(&self, plan: &mut Plan, own_namespace: &str, withdrawn: &[String]) -> Result<Vec<(String, String)>, SyncError> {
        let mut recreated = Vec::new();
        if !self.options.require_consent {
            return Ok(recreated);
        }
        let own_uid =
            self.namespaces.get(&ObjectKey { namespace: None, name: own_namespace.to_owned() }).and_then(|namespace| namespace.uid());
        // The namespace the ConfigMapSync lives in is not in the cache yet: retried with backoff.
        let Some(own_uid) = own_uid else { return Err(SyncError::Writes(format!("namespace {own_namespace} is not known yet"))) };
        for namespace in plan.selected.clone() {
            let Some(destination) = self.namespaces.get(&ObjectKey { namespace: None, name: namespace.clone() }) else { continue };
            if !consent::names(&destination, own_namespace) {
                continue;
            }
            let record = self.config_maps.get(&ObjectKey { namespace: Some(namespace.clone()), name: CONSENT_RECORD.to_owned() });
            let entries = match &record {
                Some(record) => {
                    match self.contents.read(&self.client, record, RECORD_LIMIT).await.map_err(api("reading a consent record"))? {
                        Some(read) => match read.content {
                            Some(content) => Some(content.entries()),
                            None => {
                                plan.selected.remove(&namespace);
                                recreated.push((
                                    namespace,
                                    format!("its {CONSENT_RECORD} is larger than {RECORD_LIMIT} bytes and was not read"),
                                ));
                                continue;
                            }
                        },
                        None => None,
                    }
                }
                None => None,
            };
            match consent::binding(&destination, own_namespace, &own_uid, entries.as_ref()) {
                Binding::Any | Binding::Bound => {}
                Binding::Unbound => plan.writes.push(Write::Bind {
                    namespace: namespace.clone(),
                    source: own_namespace.to_owned(),
                    uid: own_uid.clone(),
                    record: record.filter(|_| entries.is_some()),
                }),
                Binding::Recreated { recorded } => {
                    plan.selected.remove(&namespace);
                    recreated.push((namespace, format!("UID {recorded}; {own_namespace} now has UID {own_uid}")));
                }
            }
        }
        for namespace in withdrawn {
            let Some(record) = self.config_maps.get(&ObjectKey { namespace: Some(namespace.clone()), name: CONSENT_RECORD.to_owned() })
            else {
                continue;
            };
            let read = self.contents.read(&self.client, &record, RECORD_LIMIT).await.map_err(api("reading a consent record"))?;
            if read.and_then(|read| read.content).is_some_and(|content| content.entries().contains_key(own_namespace)) {
                plan.writes.push(Write::Unbind { source: own_namespace.to_owned(), record });
            }
        }
        Ok(recreated)
    }

    /// How a ConfigMap carrying this ConfigMapSync's owner annotation leaves: deleted when it
    /// provably is a copy — one `copies` (the status) records as written, or one holding
    /// exactly the source's content (digest `source`) — and otherwise released, so that
    /// whoever may only annotate a ConfigMap cannot have the operator delete it.
    async fn removal(&self, copy: Arc<DynamicObject>, copies: &[String], source: Option<[u8; 32]>) -> Result<Write, SyncError> {
        if copies.contains(&format!("{}/{}", copy.namespace().unwrap_or_default(), copy.name_any())) {
            return Ok(Write::Delete(copy));
        }
        if let Some(source) = source {
            let read = self.contents.read(&self.client, &copy, 0).await.map_err(api("reading a copy"))?;
            if read.is_some_and(|read| read.digest == source) {
                return Ok(Write::Delete(copy));
            }
        }
        Ok(Write::Release(copy))
    }

    /// Makes `writes` — consent records first, then a bounded number of the others at once,
    /// none in a namespace whose consent record could not be written — and waits until the
    /// cache has seen those that succeeded.
    async fn execute(&self, writes: &[Write]) -> Outcome {
        let mut outcome = Outcome::default();
        let mut seen = Vec::new();
        let (consent, copies): (Vec<&Write>, Vec<&Write>) = writes.iter().partition(|write| write.is_consent());
        let mut unbound = BTreeSet::new();
        for phase in [consent, copies] {
            let phase: Vec<&Write> = phase.into_iter().filter(|write| !unbound.contains(&write.namespace())).collect();
            // Futures made up front: a closure in the stream would not be general enough to be Send.
            let pending: Vec<_> = phase.into_iter().map(|write| self.write(write)).collect();
            let mut results = futures::stream::iter(pending).buffer_unordered(self.options.write_concurrency.max(1));
            while let Some((write, result)) = results.next().await {
                let namespace = write.namespace();
                match result {
                    Ok(expectation) => {
                        match write {
                            Write::Create(_) => outcome.created += 1,
                            Write::Update(_) => outcome.updated += 1,
                            Write::Delete(_) => outcome.deleted += 1,
                            Write::Release(copy) if copy.annotations().contains_key(OWNER_ANNOTATION) => {
                                outcome.released.push(format!("{namespace}/{}", copy.name_any()))
                            }
                            Write::Release(_) | Write::Bind { .. } | Write::Unbind { .. } => {}
                        }
                        match write {
                            Write::Create(copy) | Write::Update(copy) => {
                                outcome.written.insert(format!("{namespace}/{}", copy.name_any()));
                                outcome.synced.insert(namespace);
                            }
                            Write::Delete(copy) | Write::Release(copy) => {
                                outcome.removed.insert(format!("{namespace}/{}", copy.name_any()));
                            }
                            Write::Bind { .. } | Write::Unbind { .. } => {}
                        }
                        seen.push(expectation);
                    }
                    Err(error) => {
                        if matches!(write, Write::Bind { .. }) {
                            unbound.insert(namespace.clone());
                        }
                        match error {
                            // Created, changed or deleted by someone else since the cache showed it.
                            kube::Error::Api(status) if status.code == 409 || status.code == 404 => outcome.raced = true,
                            error => outcome.failures.push(format!("{namespace}: {error}")),
                        }
                    }
                }
            }
        }
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

    /// Makes one write; returns how the cache will show it. What a write returns is
    /// remembered ([`super::contents`]), so the next reconcile does not read it again.
    async fn write<'w>(&self, write: &'w Write) -> (&'w Write, Result<Seen, kube::Error>) {
        let api = |namespace: &str| Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &config_map_resource());
        let preconditions = |object: &DynamicObject| Preconditions {
            uid: object.metadata.uid.clone(),
            resource_version: object.metadata.resource_version.clone(),
        };
        let namespace = write.namespace();
        let result = match write {
            Write::Create(copy) => api(&namespace).create(&PostParams::default(), copy).await.map(|written| {
                self.contents.learn(&written, 0);
                Seen::Present(ObjectKey::of(copy))
            }),
            Write::Update(copy) => api(&namespace).replace(&copy.name_any(), &PostParams::default(), copy).await.map(|written| {
                self.contents.learn(&written, 0);
                Seen::Changed(ObjectKey::of(copy), copy.metadata.resource_version.clone())
            }),
            Write::Delete(copy) => {
                let params = DeleteParams { preconditions: Some(preconditions(copy)), ..DeleteParams::background() };
                self.contents.forget(&ObjectKey::of(copy));
                match api(&namespace).delete(&copy.name_any(), &params).await {
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
                api(&namespace)
                    .patch(&copy.name_any(), &PatchParams::default(), &Patch::Merge(&release))
                    .await
                    .map(|_| Seen::Changed(ObjectKey::of(copy), copy.metadata.resource_version.clone()))
            }
            Write::Bind { source, uid, record: Some(record), .. } => {
                let bind = json!({ "metadata": { "resourceVersion": record.metadata.resource_version }, "data": { source: uid } });
                api(&namespace).patch(CONSENT_RECORD, &PatchParams::default(), &Patch::Merge(&bind)).await.map(|written| {
                    self.contents.learn(&written, RECORD_LIMIT);
                    Seen::Changed(ObjectKey::of(record), record.metadata.resource_version.clone())
                })
            }
            Write::Bind { source, uid, record: None, .. } => {
                let record = DynamicObject::new(CONSENT_RECORD, &config_map_resource()).within(&namespace).data(json!({
                    "metadata": { "labels": { MANAGED_BY_LABEL: MANAGED_BY } },
                    "data": { source: uid },
                }));
                api(&namespace).create(&PostParams::default(), &record).await.map(|written| {
                    self.contents.learn(&written, RECORD_LIMIT);
                    Seen::Present(ObjectKey::of(&record))
                })
            }
            Write::Unbind { source, record } => {
                let unbind = json!({ "metadata": { "resourceVersion": record.metadata.resource_version }, "data": { source: null } });
                api(&namespace).patch(CONSENT_RECORD, &PatchParams::default(), &Patch::Merge(&unbind)).await.map(|written| {
                    self.contents.learn(&written, RECORD_LIMIT);
                    Seen::Changed(ObjectKey::of(record), record.metadata.resource_version.clone())
                })
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
        // The copies it wrote: kept through a reconcile that stopped early (the copies are kept
        // as they are), and forgotten once removed or gone.
        let mut copies: BTreeSet<String> = old.copies.iter().cloned().collect();
        copies.extend(plan.in_sync.iter().map(|namespace| format!("{namespace}/{name}")));
        copies.extend(outcome.written.iter().cloned());
        copies.retain(|copy| !outcome.removed.contains(copy) && self.config_maps.get(&copy_key(copy)).is_some());
        let new = ConfigMapSyncStatus {
            observed_generation: sync.metadata.generation,
            last_sync_time: if wrote { Some(now) } else { old.last_sync_time.clone() },
            destinations: Some(format!("{}/{}", synced.len(), plan.selected.len())),
            synced_namespaces: synced.into_iter().collect(),
            refused_namespaces: plan.refused.iter().cloned().collect(),
            copies: copies.into_iter().collect(),
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
            let written = api
                .patch_status(&sync.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
                .await
                .map_err(|source| SyncError::Api { action: "writing the status".into(), source })?;
            // The next reconcile starts from the status in the cache (its lastSyncTime, the
            // copies it wrote): it must find this one, not the one before it.
            if let Some(version) = written.resource_version() {
                let key = ObjectKey { namespace: sync.namespace(), name: sync.name_any() };
                // (Deleted meanwhile: nothing more to read back.)
                self.syncs.wait_for(READ_YOUR_WRITES, |cache| cache.get(&key).is_none() || cache.shows(&key, &version)).await;
            }
        }
        if wrote {
            let note =
                format!("ConfigMap {name}: {} copies created, {} updated, {} deleted", outcome.created, outcome.updated, outcome.deleted);
            self.recorder.record(&sync.object_ref(&()), EventType::Normal, "Synced", &note).await;
        }
        if changed_ready && ready.status == "False" {
            self.recorder.record(&sync.object_ref(&()), EventType::Warning, &ready.reason, &ready.message).await;
        }
        if !outcome.released.is_empty() {
            let note = format!(
                "{} carried this ConfigMapSync's owner annotation without being a copy it wrote (not in a namespace its status \
                 records, content not the source's); the annotation and label were removed and the ConfigMaps left in place",
                outcome.released.join(", ")
            );
            self.recorder.record(&sync.object_ref(&()), EventType::Warning, "NotACopy", &note).await;
        }
        Ok(())
    }

    /// Removes the copies (or, with deletion policy Orphan, releases them); done once all are,
    /// and then the finalizer goes.
    async fn finalize(&self, sync: &ConfigMapSync) -> Result<Action, SyncError> {
        let own_namespace = sync.namespace().unwrap_or_default();
        let owner = owner_id(&own_namespace, &sync.name_any());
        let orphan = sync.spec.deletion_policy == Some(DeletionPolicy::Orphan);
        let name = &sync.spec.config_map_name;
        let source = match self.config_maps.get(&ObjectKey { namespace: Some(own_namespace), name: name.clone() }) {
            Some(cached) => self.contents.read(&self.client, &cached, 0).await.map_err(api("reading the source"))?.map(|read| read.digest),
            None => None,
        };
        let copies = sync.status.as_ref().map(|status| status.copies.clone()).unwrap_or_default();
        let mut writes = Vec::new();
        for copy in self.config_maps.by_index(BY_OWNER, &owner).into_iter().filter(|copy| copy.metadata.deletion_timestamp.is_none()) {
            writes.push(if orphan { Write::Release(copy) } else { self.removal(copy, &copies, source).await? });
        }
        let outcome = self.execute(&writes).await;
        if !outcome.failures.is_empty() {
            let error = format!("removing copies failed: {}", outcome.failures.join("; "));
            self.recorder.record(&sync.object_ref(&()), EventType::Warning, "FinalizeFailed", &error).await;
            return Err(SyncError::Writes(error));
        }
        Ok(if outcome.raced { Action::RequeueAfter(RACE_RETRY) } else { Action::Done })
    }
}

/// The key of a ConfigMap named `namespace/name`.
fn copy_key(copy: &str) -> ObjectKey {
    let (namespace, name) = copy.split_once('/').unwrap_or_default();
    ObjectKey { namespace: Some(namespace.to_owned()), name: name.to_owned() }
}

/// Maps a failed API request to the error of `action`.
fn api(action: &'static str) -> impl Fn(kube::Error) -> SyncError {
    move |source| SyncError::Api { action: action.into(), source }
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
    fn a_copy_carries_the_sources_content_over_its_base() {
        let source = Content { data: Some(json!({ "a": "1" })), binary_data: None };
        let base =
            object(json!({ "metadata": { "name": "x", "namespace": "n", "labels": { "team": "t" } }, "binaryData": { "b": "AA==" } }));
        let copy = copy_of("x", &source, Some(base), "n", "home/share");
        assert_eq!(copy.data["data"], json!({ "a": "1" }));
        assert!(copy.data.get("binaryData").is_none(), "what the source lacks goes");
        assert_eq!(copy.labels()["team"], "t", "what others put on it stays");
        assert_eq!(copy.annotations()[OWNER_ANNOTATION], "home/share");
    }
}
