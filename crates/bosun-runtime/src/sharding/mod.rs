//! Sharding: several replicas of one process each reconcile a share of the objects, and never
//! two of them the same object at once. It is label-based sharding (the design of
//! kubernetes-controller-sharding) built into the runtime, with no sharder to install:
//!
//! - Every replica is a *shard* of a [`Ring`]: it holds a Lease named after itself and
//!   labelled with the ring ([`members`]), and its caches watch only the objects labelled
//!   for it ([`Shard::caches`]).
//! - The *coordinator* — whichever replica holds the leader election Lease — assigns every
//!   parent to a live shard by rendezvous hashing of its key ([`ring`]) and writes the
//!   shard's name in the parent's label `shard.bosun.dev/<ring>`. Children carry their
//!   parent's label, written by the shard that creates them.
//! - Moving a parent off a live shard is a handshake: the coordinator labels it
//!   `drain.bosun.dev/<ring>=<new shard>`; the old shard starts no more syncs of it, waits for
//!   the one in flight, relabels its children and then the parent for the new shard, removing
//!   the drain label ([`Shard::admit`]) — only then can the new shard see it. A shard whose
//!   Lease has expired or was released has stopped working, so the coordinator moves its
//!   objects itself ([`coordinator`]).
//!
//! Labels can be edited by whoever may patch an object, so none is trusted alone: a shard syncs
//! an object only if the ring, as it sees the live shards, also picks it (and hands one over
//! only to the shard the ring picks), and the coordinator puts back, every repair period, what
//! was edited — a parent's shard or drain label, a child whose shard differs from its
//! controller's.
//!
//! Controllers register the types they reconcile and which of their objects ([`ShardedTypes`],
//! [`Selection`]) so that the coordinator assigns and moves those and no others.

pub mod coordinator;
pub mod members;
pub mod ring;
mod shard;
mod unassigned;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::ApiResource;

pub use coordinator::Coordinator;
pub use shard::{Admission, ELSEWHERE_RETRY, HandOverError, Shard, SyncGuard};

/// The label on a shard's Lease that names its ring.
pub const RING_LABEL: &str = "sharding.bosun.dev/ring";

/// A set of shards that share the objects of the types registered with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// The ring's name: part of the label keys, so several rings can share a cluster.
    pub name: String,
    /// Where the shards' Leases are.
    pub namespace: String,
}

impl Ring {
    /// The label whose value names the shard an object belongs to.
    pub fn shard_label(&self) -> String {
        format!("shard.bosun.dev/{}", self.name)
    }

    /// The label that asks an object's shard to hand it over to the shard it names.
    pub fn drain_label(&self) -> String {
        format!("drain.bosun.dev/{}", self.name)
    }

    /// Selects the Leases of the ring's shards.
    pub fn lease_selector(&self) -> String {
        format!("{RING_LABEL}={}", self.name)
    }
}

/// How a replica takes part in a ring (see [`crate::Manager::with_sharding`]).
#[derive(Debug, Clone)]
pub struct ShardingConfig {
    /// The ring.
    pub ring: Ring,
    /// The replica's shard: its Lease's name and the value of its objects' shard label.
    pub name: String,
    /// The coordinator's election; also the timing of the shard's own Lease.
    pub election: crate::LeaderElectionConfig,
    /// How often the coordinator checks every label of the ring.
    pub repair_period: std::time::Duration,
}

/// Which objects of a type a controller reconciles: those whose labels and annotations match
/// both selectors (an absent one matches every object).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Over the labels.
    pub labels: Option<LabelSelector>,
    /// Over the annotations, with label selector semantics (a DecoratorController's
    /// `annotationSelector`).
    pub annotations: Option<LabelSelector>,
}

impl Selection {
    /// Every object.
    pub fn all() -> Selection {
        Selection::default()
    }

    /// Whether it selects every object.
    pub fn is_all(&self) -> bool {
        let empty = |selector: &Option<LabelSelector>| selector.as_ref().is_none_or(crate::selector::is_empty);
        empty(&self.labels) && empty(&self.annotations)
    }

    /// Whether it selects the object with this metadata.
    pub fn matches(&self, metadata: &ObjectMeta) -> bool {
        let empty = BTreeMap::new();
        let satisfies = |selector: &Option<LabelSelector>, map: &Option<BTreeMap<String, String>>| {
            selector.as_ref().is_none_or(|selector| crate::selector::matches(selector, map.as_ref().unwrap_or(&empty)).unwrap_or(false))
        };
        satisfies(&self.labels, &metadata.labels) && satisfies(&self.annotations, &metadata.annotations)
    }

    /// The label selector a list request can narrow by (annotations cannot be listed by):
    /// `None` when the labels cannot be put as a query, and the objects are filtered after.
    pub fn query(&self) -> Option<String> {
        self.labels.as_ref().and_then(|labels| crate::selector::to_query(labels).ok()).filter(|query| !query.is_empty())
    }
}

/// A reconciled type: the parents and the types of what they control.
#[derive(Debug, Clone)]
pub struct ShardedType {
    /// The parents' resource.
    pub parent: ApiResource,
    /// Which parents are reconciled (any of these); empty: all. Only these are assigned to
    /// shards and moved between them.
    pub selections: Vec<Selection>,
    /// The resources of the objects a parent controls (controller owner reference).
    pub children: Vec<ApiResource>,
}

impl ShardedType {
    /// Whether a parent with this metadata is reconciled.
    pub fn handles(&self, metadata: &ObjectMeta) -> bool {
        self.selections.is_empty() || self.selections.iter().any(|selection| selection.matches(metadata))
    }
}

/// The types the controllers of a process reconcile, for the coordinator.
#[derive(Debug, Clone, Default)]
pub struct ShardedTypes {
    registered: Arc<Mutex<BTreeMap<u64, ShardedType>>>,
    /// Counts registrations and deregistrations.
    version: Arc<std::sync::atomic::AtomicU64>,
}

/// Keeps a type registered; dropping it deregisters.
#[must_use = "dropping a registration deregisters the type"]
pub struct Registration {
    types: ShardedTypes,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.types.registered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.id);
        self.types.version.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl ShardedTypes {
    /// Registers the objects of `parent` that `selection` selects and the types its objects
    /// control.
    pub fn register(&self, parent: ApiResource, selection: Selection, children: Vec<ApiResource>) -> Registration {
        let id = self.version.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let selections = if selection.is_all() { Vec::new() } else { vec![selection] };
        self.registered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(id, ShardedType { parent, selections, children });
        Registration { types: self.clone(), id }
    }

    /// Every registered parent type once, with the union of its selections and of its
    /// children's types.
    pub fn snapshot(&self) -> Vec<ShardedType> {
        let registered = self.registered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut merged: BTreeMap<(String, String), (ShardedType, bool)> = BTreeMap::new();
        for sharded in registered.values() {
            let key = (sharded.parent.api_version.clone(), sharded.parent.plural.clone());
            let (entry, all) = merged
                .entry(key)
                .or_insert_with(|| (ShardedType { parent: sharded.parent.clone(), selections: Vec::new(), children: Vec::new() }, false));
            *all |= sharded.selections.is_empty();
            for selection in &sharded.selections {
                if !entry.selections.contains(selection) {
                    entry.selections.push(selection.clone());
                }
            }
            for child in &sharded.children {
                if !entry.children.iter().any(|known| known.api_version == child.api_version && known.plural == child.plural) {
                    entry.children.push(child.clone());
                }
            }
        }
        merged
            .into_values()
            .map(|(mut sharded, all)| {
                if all {
                    sharded.selections.clear();
                }
                sharded
            })
            .collect()
    }

    /// Changes with every registration and deregistration.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Relaxed)
    }
}
