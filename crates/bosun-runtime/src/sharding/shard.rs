//! One replica's side of sharding: its caches see only the objects labelled for it, its
//! controllers ask [`Shard::admit`] before each sync, and it hands objects over when the
//! coordinator asks. It trusts a label only as far as the ring agrees: it syncs an object only
//! if the ring, over the live shards it sees, picks it, and hands one over only to the shard
//! the ring picks — so whoever edits an object's shard or drain label cannot make two shards
//! sync it at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::members::Members;
use super::{Ring, ShardedTypes, ring};
use crate::{LeaderElectionConfig, ObjectKey, SharedCaches};

/// How long a view of the ring's members is used before the Leases are read again.
const MEMBERS_REFRESH: Duration = Duration::from_secs(2);

/// One replica of a ring.
pub struct Shard {
    ring: Ring,
    name: String,
    client: kube::Client,
    /// The view of the process's caches that selects this shard's objects.
    caches: SharedCaches,
    types: ShardedTypes,
    /// Per object UID: the syncs of it running in this process, and whether it is being handed over.
    syncs: Mutex<HashMap<String, Syncs>>,
    idle: tokio::sync::Notify,
    /// Per object UID handed over: the resourceVersion it had before, so that a reconcile
    /// that still reads that version from the cache leaves it alone.
    handed_over: Mutex<HashMap<String, String>>,
    /// The ring's members as this replica sees them, and when the Leases were last read.
    members: tokio::sync::Mutex<(Members, Option<Instant>)>,
    /// Per object UID whose hand-over failed: the objects it controls that were relabelled
    /// already, and so are no longer in this shard's caches — the retry relabels them again,
    /// for the shard it then hands over to.
    relabelled: Mutex<HashMap<String, Vec<(ApiResource, ObjectKey)>>>,
}

#[derive(Default)]
struct Syncs {
    running: usize,
    handing_over: bool,
}

/// Whether a controller may sync an object now.
pub enum Admission {
    /// Yes; the sync counts as running until the guard is dropped.
    Sync(SyncGuard),
    /// No: it is being (or has been) handed over to another shard.
    Skip,
    /// Not now: the ring picks another shard for it (a label edited by hand, or the ring
    /// changing); the coordinator moves it, or this replica's view catches up. Try again later.
    Elsewhere,
}

/// When an object the ring does not pick for this shard is looked at again.
pub const ELSEWHERE_RETRY: Duration = Duration::from_secs(5);

/// A sync that is running; dropping it ends it.
pub struct SyncGuard {
    shard: Arc<Shard>,
    uid: String,
}

impl Drop for SyncGuard {
    fn drop(&mut self) {
        let mut syncs = self.shard.syncs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = syncs.get_mut(&self.uid) {
            entry.running -= 1;
            if entry.running == 0 && !entry.handing_over {
                syncs.remove(&self.uid);
            }
        }
        drop(syncs);
        self.shard.idle.notify_waiters();
    }
}

/// Why handing an object over failed; it is retried.
#[derive(Debug, thiserror::Error)]
#[error("handing {key} over to shard {target}: {source}")]
pub struct HandOverError {
    /// The object.
    pub key: String,
    /// The shard it goes to.
    pub target: String,
    /// Why.
    pub source: kube::Error,
}

impl Shard {
    /// The shard `name` of `ring`, watching through a view of `caches`.
    pub fn new(client: kube::Client, caches: &SharedCaches, ring: Ring, name: impl Into<String>) -> Arc<Shard> {
        let name = name.into();
        let caches = caches.selecting(format!("{}={name}", ring.shard_label()));
        Arc::new(Shard {
            ring,
            name,
            client,
            caches,
            types: ShardedTypes::default(),
            syncs: Mutex::default(),
            idle: tokio::sync::Notify::new(),
            handed_over: Mutex::default(),
            members: tokio::sync::Mutex::new((Members::default(), None)),
            relabelled: Mutex::default(),
        })
    }

    /// The shards live now, as this replica sees their Leases (read again when the view is
    /// older than a couple of seconds; on a read error, the last view).
    pub async fn live(&self) -> BTreeSet<String> {
        let mut members = self.members.lock().await;
        if members.1.is_none_or(|read| read.elapsed() >= MEMBERS_REFRESH) {
            let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.ring.namespace);
            match leases.list(&ListParams::default().labels(&self.ring.lease_selector())).await {
                Ok(listed) => {
                    members.0.observe(&listed.items, Instant::now());
                    members.1 = Some(Instant::now());
                }
                Err(error) => tracing::warn!(ring = %self.ring.name, %error, "reading the ring's Leases failed"),
            }
        }
        members.0.live(Instant::now())
    }

    /// The shard the ring picks for `object` of `resource` among the live shards.
    async fn picked(&self, resource: &ApiResource, object: &DynamicObject) -> Option<String> {
        ring::owner_of(resource, &ObjectKey::of(object), &self.live().await)
    }

    /// Whether this replica may act on an object no live shard holds, or one it holds itself:
    /// one without the ring's shard label, labelled for this shard, or for a shard that is gone.
    /// (A controller releasing its finalizers once it is deleted leaves the others' parents to
    /// their shards, which may be finalizing them.)
    pub async fn may_release(&self, metadata: &ObjectMeta) -> bool {
        match metadata.labels.as_ref().and_then(|labels| labels.get(&self.ring.shard_label())) {
            None => true,
            Some(shard) if *shard == self.name => true,
            Some(shard) => !self.live().await.contains(shard),
        }
    }

    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// This shard's name (its Lease's name and the value of its objects' shard label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The caches of this shard's objects: parents and children of sharded controllers are
    /// read from these.
    pub fn caches(&self) -> &SharedCaches {
        &self.caches
    }

    /// Where controllers register the types they reconcile.
    pub fn types(&self) -> &ShardedTypes {
        &self.types
    }

    /// The label a controller writes on every object it creates for one of this shard's parents.
    pub fn label(&self) -> (String, String) {
        (self.ring.shard_label(), self.name.clone())
    }

    /// This shard's own Lease: `election`'s timing, named after the shard and labelled with
    /// the ring. A process runs its controllers only while it holds this Lease.
    pub fn lease(&self, election: &LeaderElectionConfig) -> LeaderElectionConfig {
        LeaderElectionConfig {
            lease_name: self.name.clone(),
            namespace: self.ring.namespace.clone(),
            identity: self.name.clone(),
            labels: [(super::RING_LABEL.to_owned(), self.ring.name.clone())].into(),
            ..election.clone()
        }
    }

    /// Decides whether a controller may sync `object` (of `resource`, from this shard's cache)
    /// now: only if the ring picks this shard for it. An object the coordinator asked to move
    /// to the shard the ring picks is handed over first: no new sync of it starts, the ones
    /// running finish, every object it controls in this shard's caches is relabelled for the
    /// new shard, and then the object itself, which removes the drain label. A drain label
    /// naming another shard than the ring's pick (set by hand) is ignored.
    pub async fn admit(self: &Arc<Self>, resource: &ApiResource, object: &DynamicObject) -> Result<Admission, HandOverError> {
        let uid = object.uid().unwrap_or_default();
        let version = object.resource_version().unwrap_or_default();
        if self.handed_over.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&uid) == Some(&version) {
            return Ok(Admission::Skip);
        }
        let picked = self.picked(resource, object).await;
        let drain =
            object.labels().get(&self.ring.drain_label()).filter(|target| picked.as_ref() == Some(*target) && **target != self.name);
        let drain = drain.cloned();
        {
            let mut syncs = self.syncs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let entry = syncs.entry(uid.clone()).or_default();
            if entry.handing_over {
                return Ok(Admission::Skip);
            }
            if drain.is_none() {
                if picked.as_deref() != Some(self.name.as_str()) {
                    if entry.running == 0 {
                        syncs.remove(&uid);
                    }
                    return Ok(Admission::Elsewhere);
                }
                entry.running += 1;
                return Ok(Admission::Sync(SyncGuard { shard: self.clone(), uid }));
            }
            entry.handing_over = true;
        }
        let target = drain.unwrap_or_default();
        let handed = self.hand_over(resource, object, &uid, &target).await;
        self.syncs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&uid);
        let key = object.namespace().map_or_else(|| object.name_any(), |namespace| format!("{namespace}/{}", object.name_any()));
        handed.map_err(|source| HandOverError { key: key.clone(), target: target.clone(), source })?;
        let mut handed_over = self.handed_over.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only an optimisation (a stale read would fail the patch's precondition instead): bounded.
        if handed_over.len() >= 10_000 {
            handed_over.clear();
        }
        handed_over.insert(uid, version);
        tracing::info!(ring = %self.ring.name, object = %key, kind = %resource.kind, to = %target, "handed over");
        Ok(Admission::Skip)
    }

    async fn hand_over(&self, resource: &ApiResource, object: &DynamicObject, uid: &str, target: &str) -> Result<(), kube::Error> {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let running = self.syncs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(uid).map_or(0, |entry| entry.running);
            if running == 0 {
                break;
            }
            // Notified when a sync ends; the timeout only guards against a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_secs(1), idle).await;
        }
        let label = self.ring.shard_label();
        let mut children: Vec<(ApiResource, ObjectKey)> =
            self.relabelled.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(uid).unwrap_or_default();
        for cache in self.caches.live() {
            for child in cache.controlled_by(uid) {
                let key = ObjectKey::of(&child);
                if child.labels().get(&label).map(String::as_str) != Some(target)
                    && !children.contains(&(cache.resource().clone(), key.clone()))
                {
                    children.push((cache.resource().clone(), key));
                }
            }
        }
        let relabelled = self.relabel(&children, &label, target).await;
        // The precondition fails if the object changed since it was read (the coordinator
        // may have picked another shard meanwhile); the next attempt reads it again.
        let patch = json!({ "metadata": {
            "resourceVersion": object.resource_version(),
            "labels": { &label: target, self.ring.drain_label(): null },
        } });
        let api = api_of(&self.client, resource, object.namespace().as_deref());
        let handed = match relabelled {
            Ok(()) => api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop),
            Err(error) => Err(error),
        };
        if handed.is_err() {
            let mut relabelled = self.relabelled.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // Only a shortcut (the coordinator's repair finds any child left behind): bounded.
            if relabelled.len() >= 10_000 {
                relabelled.clear();
            }
            relabelled.insert(uid.to_owned(), children);
        }
        handed
    }

    /// Labels each of `children` for shard `target`.
    async fn relabel(&self, children: &[(ApiResource, ObjectKey)], label: &str, target: &str) -> Result<(), kube::Error> {
        for (resource, key) in children {
            let api = api_of(&self.client, resource, key.namespace.as_deref());
            let patch = json!({ "metadata": { "labels": { label: target } } });
            match api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// The API of `resource` in `namespace` (cluster-scoped without one).
pub(crate) fn api_of(client: &kube::Client, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    }
}
