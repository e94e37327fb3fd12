//! The ring's coordinator: whichever replica holds the leader election Lease assigns objects
//! to shards. It watches the ring's Leases ([`super::members`]) and the parents that have no
//! shard label yet, and
//!
//! - labels each unassigned parent for the shard that rendezvous hashing picks among the live
//!   shards — after labelling the objects it already controls (sharding turned on for
//!   existing objects), so that its shard sees them before it syncs it;
//! - when the live shards change, and every repair period anyway, asks each parent that
//!   should move off a live shard to drain (its shard hands it over, see
//!   [`super::Shard::admit`]), moves the parents and children of shards that are gone itself
//!   (they have stopped working), and removes drain labels that ask for nothing — so a shard or
//!   drain label edited by hand is put back;
//! - every repair period, relabels each child whose shard differs from its controller's (one a
//!   hand-over left behind, or one relabelled by hand);
//! - assigns and moves only the objects a controller selects ([`super::Selection`]);
//! - leaves alone an object controlled by a parent of a sharded type: it follows its parent.
//!
//! Every write to a parent carries the resourceVersion it was read at, so two coordinators
//! (one losing its Lease while another takes it) cannot assign one parent twice; a pass that
//! could not finish is repeated.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::members::Members;
use super::shard::api_of;
use super::unassigned::{Pending, Unassigned, controller_kind};
use super::{Selection, Shard, ShardedType, ring};
use crate::{LeaderElectionConfig, LeaderElector, Metrics, ObjectKey};

/// How many objects one list page or one assignment round takes.
const PAGE: u32 = 500;
/// How many labels the coordinator writes at once.
const WRITE_CONCURRENCY: usize = 32;

/// Assigns a ring's objects while it holds the leader election Lease.
pub struct Coordinator {
    client: kube::Client,
    shard: Arc<Shard>,
    election: LeaderElectionConfig,
    metrics: Metrics,
    repair_period: Duration,
}

/// How often the coordinator checks every label of the ring, unless told otherwise.
pub const DEFAULT_REPAIR_PERIOD: Duration = Duration::from_secs(60);

/// A write of a merge patch on an object.
type Write = (ObjectKey, serde_json::Value);

impl Coordinator {
    /// The coordinator of `shard`'s ring, elected with `election`; whether it leads is
    /// reported in `metrics` (`leader_election_master_status`), as for unsharded leader
    /// election.
    pub fn new(client: kube::Client, shard: &Arc<Shard>, election: LeaderElectionConfig, metrics: &Metrics) -> Self {
        metrics.set_leader(&election.lease_name, false);
        Coordinator { client, shard: shard.clone(), election, metrics: metrics.clone(), repair_period: DEFAULT_REPAIR_PERIOD }
    }

    /// Checks every parent's and child's label this often ([`DEFAULT_REPAIR_PERIOD`]): each
    /// check lists the metadata of every object of the sharded types.
    pub fn with_repair_period(mut self, period: Duration) -> Self {
        self.repair_period = period;
        self
    }

    /// Takes part in the election until `shutdown` completes, and coordinates while leading;
    /// releases the Lease on shutdown.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut elector = LeaderElector::new(self.client.clone(), self.election.clone());
        let retry = self.election.retry_period;
        tokio::pin!(shutdown);
        loop {
            let acquire = async {
                while !elector.try_once().await {
                    tokio::time::sleep(retry).await;
                }
            };
            tokio::select! {
                () = acquire => {}
                () = &mut shutdown => return,
            }
            tracing::info!(ring = %self.shard.ring().name, "coordinating the ring");
            self.metrics.set_leader(&self.election.lease_name, true);
            let stopping = tokio::select! {
                lost = elector.hold() => {
                    tracing::warn!(%lost, "no longer coordinating the ring");
                    false
                }
                () = self.coordinate() => false,
                () = &mut shutdown => true,
            };
            self.metrics.set_leader(&self.election.lease_name, false);
            if stopping {
                elector.release().await;
                return;
            }
        }
    }

    async fn coordinate(&self) {
        let ring = self.shard.ring();
        let wake = Arc::new(tokio::sync::Notify::new());
        // Read every round rather than watched: a handful of objects, in one namespace (no
        // cluster-wide permission on Leases needed).
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &ring.namespace);
        let mut unassigned: HashMap<WatchKey, Unassigned> = HashMap::new();
        let mut members = Members::default();
        let mut settled: Option<(BTreeSet<String>, u64, Instant)> = None;
        loop {
            let listed = match leases.list(&ListParams::default().labels(&ring.lease_selector())).await {
                Ok(listed) => listed.items,
                Err(error) => {
                    tracing::warn!(ring = %ring.name, %error, "listing the shards' Leases failed");
                    Vec::new()
                }
            };
            members.observe(&listed, Instant::now());
            let live = members.live(Instant::now());
            let version = self.shard.types().version();
            let types = self.shard.types().snapshot();
            let wanted: Vec<(WatchKey, &ApiResource, bool)> = types
                .iter()
                .flat_map(|sharded| {
                    let annotations = sharded.selections.iter().any(|selection| selection.annotations.is_some());
                    unassigned_selectors(&ring.shard_label(), sharded)
                        .into_iter()
                        .map(move |selector| (watch_key(&sharded.parent, &selector), &sharded.parent, annotations))
                })
                .collect();
            unassigned.retain(|key, _| wanted.iter().any(|(wanted, _, _)| wanted == key));
            for (key, resource, annotations) in wanted {
                let selector = key.2.clone();
                unassigned
                    .entry(key)
                    .or_insert_with(|| Unassigned::watch(self.client.clone(), resource, &selector, annotations, wake.clone()));
            }
            if !live.is_empty() {
                let due = settled
                    .as_ref()
                    .is_none_or(|(shards, registered, at)| *shards != live || *registered != version || at.elapsed() >= self.repair_period);
                if due {
                    match self.rebalance(&live, &types).await {
                        Ok(true) => {
                            settled = Some((live.clone(), version, Instant::now()));
                            match self.repair(&types).await {
                                Ok(0) => {}
                                Ok(repaired) => {
                                    tracing::info!(ring = %ring.name, repaired, "relabelled children for their parents' shards")
                                }
                                Err(error) => tracing::warn!(ring = %ring.name, %error, "repairing children's labels failed; trying again"),
                            }
                            // Nothing is assigned to the shards that are gone any more: their Leases go.
                            let gone = listed.iter().filter(|lease| !live.contains(&lease.name_any()));
                            for lease in gone {
                                let preconditions = Preconditions { resource_version: lease.resource_version(), uid: None };
                                let params = DeleteParams { preconditions: Some(preconditions), ..DeleteParams::default() };
                                if leases.delete(&lease.name_any(), &params).await.is_ok() {
                                    tracing::info!(ring = %ring.name, shard = %lease.name_any(), "removed the Lease of a shard that is gone");
                                }
                            }
                        }
                        Ok(false) => tracing::info!(ring = %ring.name, "some objects could not be moved yet; trying again"),
                        Err(error) => tracing::warn!(ring = %ring.name, %error, "rebalancing failed; trying again"),
                    }
                }
                if let Err(error) = self.assign(&live, &types, &unassigned).await {
                    tracing::warn!(ring = %ring.name, %error, "assigning new objects failed; trying again");
                }
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            // Objects created together are assigned together.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Labels the unassigned parents for their shards, after the objects they control.
    async fn assign(
        &self,
        live: &BTreeSet<String>,
        types: &[ShardedType],
        unassigned: &HashMap<WatchKey, Unassigned>,
    ) -> Result<(), kube::Error> {
        let label = self.shard.ring().shard_label();
        let parent_kinds = parent_kinds(types);
        for sharded in types {
            let mut parents: HashMap<String, Pending> = HashMap::new();
            for selector in unassigned_selectors(&label, sharded) {
                let Some(watched) = unassigned.get(&watch_key(&sharded.parent, &selector)) else { continue };
                let room = PAGE as usize - parents.len();
                let keep = |pending: &Pending| {
                    sharded.handles(&pending.selected_by)
                        && !follows_owner(pending.controller.as_ref(), &parent_kinds)
                        && !parents.contains_key(&pending.uid)
                };
                for pending in watched.some(room, keep).unwrap_or_default() {
                    parents.insert(pending.uid.clone(), pending);
                }
            }
            if parents.is_empty() {
                continue;
            }
            let targets: HashMap<String, String> = parents
                .iter()
                .filter_map(|(uid, parent)| Some((uid.clone(), ring::owner_of(&sharded.parent, &parent.key, live)?)))
                .collect();
            for child_type in &sharded.children {
                self.relabel_children(child_type, &format!("!{label}"), &targets).await?;
            }
            let patches = parents.into_values().filter_map(|parent| {
                let target = targets.get(&parent.uid)?;
                let patch = json!({ "metadata": { "resourceVersion": parent.resource_version, "labels": { &label: target } } });
                Some((parent.key, patch))
            });
            let (assigned, _) = self.patch_all(&sharded.parent, patches.collect()).await?;
            tracing::info!(ring = %self.shard.ring().name, kind = %sharded.parent.kind, assigned, "assigned new objects to shards");
        }
        Ok(())
    }

    /// Moves what should move for `live` shards: drains parents off live shards, moves those
    /// of shards that are gone. `Ok(false)` if something could not be written yet.
    async fn rebalance(&self, live: &BTreeSet<String>, types: &[ShardedType]) -> Result<bool, kube::Error> {
        let ring = self.shard.ring();
        let (label, drain) = (ring.shard_label(), ring.drain_label());
        let parent_kinds = parent_kinds(types);
        let mut complete = true;
        let (mut draining, mut moved) = (0, 0);
        for sharded in types {
            // Per parent UID, the shard its children belong with.
            let mut shard_of: HashMap<String, String> = HashMap::new();
            let (mut orphaned, mut drains): (Vec<Write>, Vec<Write>) = (Vec::new(), Vec::new());
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &sharded.parent);
            for_each_metadata(&api, &label, |parent| {
                let metadata = &parent.metadata;
                // Objects no controller selects are never moved.
                if !sharded.handles(metadata)
                    || follows_owner(controller_kind(metadata.owner_references.as_deref()).as_ref(), &parent_kinds)
                {
                    return;
                }
                let key = ObjectKey { namespace: parent.namespace(), name: parent.name_any() };
                let (Some(uid), Some(target)) = (metadata.uid.clone(), ring::owner_of(&sharded.parent, &key, live)) else { return };
                let labels = parent.labels();
                let current = labels.get(&label).cloned().unwrap_or_default();
                if !live.contains(&current) {
                    shard_of.insert(uid, target.clone());
                    let patch =
                        json!({ "metadata": { "resourceVersion": metadata.resource_version, "labels": { &label: target, &drain: null } } });
                    orphaned.push((key, patch));
                    return;
                }
                let asked = labels.get(&drain);
                let patch = if target != current && asked != Some(&target) {
                    draining += 1;
                    json!({ "metadata": { "resourceVersion": metadata.resource_version, "labels": { &drain: target } } })
                } else if target == current && asked.is_some() {
                    json!({ "metadata": { "resourceVersion": metadata.resource_version, "labels": { &drain: null } } })
                } else {
                    shard_of.insert(uid, current);
                    return;
                };
                shard_of.insert(uid, current);
                drains.push((key, patch));
            })
            .await?;
            let (written, tried) = self.patch_all(&sharded.parent, drains).await?;
            complete &= written == tried;
            // Children of shards that are gone follow their parents, before the parents move.
            let live_names = live.iter().map(String::as_str).collect::<Vec<_>>().join(",");
            let gone = format!("{label},{label} notin ({live_names})");
            for child_type in &sharded.children {
                self.relabel_children(child_type, &gone, &shard_of).await?;
            }
            let (written, tried) = self.patch_all(&sharded.parent, orphaned).await?;
            moved += written;
            complete &= written == tried;
        }
        tracing::info!(ring = %ring.name, shards = ?live, draining, moved, "rebalanced the ring");
        Ok(complete)
    }

    /// Relabels each child that carries the ring's shard label for its controller's shard,
    /// where they differ: one a hand-over left behind (created as the shard was drained, or
    /// relabelled for a target that then changed) or one relabelled by hand. The children are
    /// read before their parents and each write is conditional on the child's
    /// resourceVersion, so a child a hand-over moved meanwhile is left to it; the children of a
    /// parent being drained are left to its hand-over. Returns how many were relabelled.
    async fn repair(&self, types: &[ShardedType]) -> Result<usize, kube::Error> {
        let ring = self.shard.ring();
        let (label, drain) = (ring.shard_label(), ring.drain_label());
        let mut repaired = 0;
        for sharded in types {
            // (child type, key, controller UID, shard label, resourceVersion)
            let mut children = Vec::new();
            for (index, child_type) in sharded.children.iter().enumerate() {
                let api: Api<DynamicObject> = Api::all_with(self.client.clone(), child_type);
                for_each_metadata(&api, &label, |child| {
                    let metadata = &child.metadata;
                    let controller = crate::cache::controller_uid_of(metadata);
                    let (Some(controller), Some(shard)) = (controller, metadata.labels.as_ref().and_then(|labels| labels.get(&label)))
                    else {
                        return;
                    };
                    let key = ObjectKey { namespace: child.namespace(), name: child.name_any() };
                    children.push((index, key, controller.to_owned(), shard.clone(), metadata.resource_version.clone()));
                })
                .await?;
            }
            if children.is_empty() {
                continue;
            }
            let mut shard_of: HashMap<String, String> = HashMap::new();
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &sharded.parent);
            for_each_metadata(&api, &label, |parent| {
                let labels = parent.labels();
                if let (Some(uid), Some(shard), None) = (parent.metadata.uid.clone(), labels.get(&label), labels.get(&drain)) {
                    shard_of.insert(uid, shard.clone());
                }
            })
            .await?;
            let mut patches: Vec<Vec<Write>> = vec![Vec::new(); sharded.children.len()];
            for (index, key, controller, shard, resource_version) in children {
                match shard_of.get(&controller) {
                    Some(parents) if *parents != shard => {
                        let patch = json!({ "metadata": { "resourceVersion": resource_version, "labels": { &label: parents } } });
                        patches[index].push((key, patch));
                    }
                    _ => {}
                }
            }
            for (child_type, patches) in sharded.children.iter().zip(patches) {
                repaired += self.patch_all(child_type, patches).await?.0;
            }
        }
        Ok(repaired)
    }

    /// Labels the objects of `child_type` that `selector` selects for their controller's
    /// shard in `shard_of` (by controller UID).
    async fn relabel_children(
        &self,
        child_type: &ApiResource,
        selector: &str,
        shard_of: &HashMap<String, String>,
    ) -> Result<(), kube::Error> {
        if shard_of.is_empty() {
            return Ok(());
        }
        let label = self.shard.ring().shard_label();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), child_type);
        let mut patches = Vec::new();
        for_each_metadata(&api, selector, |child| {
            if let Some(target) = crate::cache::controller_uid_of(&child.metadata).and_then(|uid| shard_of.get(uid)) {
                let patch = json!({ "metadata": { "labels": { &label: target } } });
                patches.push((ObjectKey { namespace: child.namespace(), name: child.name_any() }, patch));
            }
        })
        .await?;
        self.patch_all(child_type, patches).await.map(drop)
    }

    /// Writes each merge patch on its object, a few at a time; (written, tried): an object
    /// that changed (the patch's resourceVersion precondition failed) or went is not written.
    async fn patch_all(&self, resource: &ApiResource, patches: Vec<Write>) -> Result<(usize, usize), kube::Error> {
        let tried = patches.len();
        let writes = patches.into_iter().map(|(key, patch)| async move {
            let api = api_of(&self.client, resource, key.namespace.as_deref());
            match api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
                Err(error) => Err(error),
            }
        });
        let results: Vec<Result<bool, kube::Error>> = futures::stream::iter(writes).buffer_unordered(WRITE_CONCURRENCY).collect().await;
        let mut written = 0;
        for result in results {
            written += usize::from(result?);
        }
        Ok((written, tried))
    }
}

/// Calls `visit` with the metadata of every object of `api` that `selector` selects, listed a
/// page at a time: only one page is held at once, however many objects there are.
async fn for_each_metadata(
    api: &Api<DynamicObject>,
    selector: &str,
    mut visit: impl FnMut(PartialObjectMeta<DynamicObject>),
) -> Result<(), kube::Error> {
    let mut params = ListParams::default().labels(selector).limit(PAGE);
    loop {
        let page = api.list_metadata(&params).await?;
        page.items.into_iter().for_each(&mut visit);
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// A watch of unassigned parents: (apiVersion, plural, label selector).
type WatchKey = (String, String, String);

fn watch_key(resource: &ApiResource, selector: &str) -> WatchKey {
    (resource.api_version.clone(), resource.plural.clone(), selector.to_owned())
}

/// The label selectors that find the unassigned parents of `sharded`: without the shard
/// label, and narrowed by its controllers' label selectors where a list can be (what a
/// selection's annotations or an inexpressible selector select is filtered after).
fn unassigned_selectors(label: &str, sharded: &ShardedType) -> Vec<String> {
    let queries: Option<BTreeSet<String>> = sharded.selections.iter().map(Selection::query).collect();
    match queries {
        Some(queries) if !queries.is_empty() => queries.into_iter().map(|query| format!("!{label},{query}")).collect(),
        _ => vec![format!("!{label}")],
    }
}

/// (group, kind) of every sharded parent type.
fn parent_kinds(types: &[ShardedType]) -> HashSet<(String, String)> {
    types.iter().map(|sharded| (sharded.parent.group.clone(), sharded.parent.kind.clone())).collect()
}

/// Whether a parent of another sharded type controls this object: then it is that parent's
/// child, and belongs with it.
fn follows_owner(controller: Option<&(String, String)>, parent_kinds: &HashSet<(String, String)>) -> bool {
    controller.is_some_and(|controller| parent_kinds.contains(controller))
}
