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
//! Controllers register the types they reconcile ([`ShardedTypes`]) so that the coordinator
//! knows what to assign.

pub mod coordinator;
pub mod members;
pub mod ring;
mod shard;
mod unassigned;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::api::ApiResource;

pub use coordinator::Coordinator;
pub use shard::{Admission, HandOverError, Shard, SyncGuard};

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

/// A reconciled type: the parents and the types of what they control.
#[derive(Debug, Clone)]
pub struct ShardedType {
    /// The parents' resource.
    pub parent: ApiResource,
    /// Label selectors (as list requests take them) of the parents reconciled; empty: all.
    /// Only these are assigned to shards.
    pub selectors: Vec<String>,
    /// The resources of the objects a parent controls (controller owner reference).
    pub children: Vec<ApiResource>,
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
    /// Registers the objects of `parent` that `selector` selects (`None`: all of them) and the
    /// types its objects control.
    pub fn register(&self, parent: ApiResource, selector: Option<String>, children: Vec<ApiResource>) -> Registration {
        let id = self.version.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let selectors = selector.into_iter().collect();
        self.registered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(id, ShardedType { parent, selectors, children });
        Registration { types: self.clone(), id }
    }

    /// Every registered parent type once, with the union of its selectors and of its
    /// children's types.
    pub fn snapshot(&self) -> Vec<ShardedType> {
        let registered = self.registered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut merged: BTreeMap<(String, String), (ShardedType, bool)> = BTreeMap::new();
        for sharded in registered.values() {
            let key = (sharded.parent.api_version.clone(), sharded.parent.plural.clone());
            let (entry, all) = merged
                .entry(key)
                .or_insert_with(|| (ShardedType { parent: sharded.parent.clone(), selectors: Vec::new(), children: Vec::new() }, false));
            *all |= sharded.selectors.is_empty();
            for selector in &sharded.selectors {
                if !entry.selectors.contains(selector) {
                    entry.selectors.push(selector.clone());
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
                    sharded.selectors.clear();
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
