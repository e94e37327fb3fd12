//! What a component run by the [`Manager`](crate::Manager) is handed: the process's API client,
//! its shared watch caches (one watch per resource type for every component), its metrics
//! registry, its readiness checks, and — when the replica is a shard of a ring — the shard,
//! whose view of the caches holds only the objects the shard syncs. Components take a
//! `&Context` instead of each being wired by hand, so none makes a second set of caches or a
//! registry the process does not serve.

use std::sync::Arc;

use crate::sharding::Shard;
use crate::{Health, Metrics, SharedCaches};

/// The process's shared parts, as a component gets them.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// One watch per resource type for the whole process.
    pub caches: SharedCaches,
    /// The registry served at `/metrics`.
    pub metrics: Metrics,
    /// The checks `/readyz` evaluates.
    pub health: Health,
    /// This replica's shard, when sharded.
    pub shard: Option<Arc<Shard>>,
}

impl Context {
    /// A context for a component run on its own, without a Manager (a tool, a test): caches,
    /// a registry and readiness checks of its own.
    pub fn standalone(client: kube::Client) -> Context {
        let metrics = Metrics::new();
        Context {
            caches: SharedCaches::new(client.clone()).with_metrics(&metrics),
            client,
            metrics,
            health: Health::default(),
            shard: None,
        }
    }

    /// The caches of the objects this replica syncs and what they own: the shard's view when
    /// sharded, else [`Context::caches`].
    pub fn owned_caches(&self) -> &SharedCaches {
        self.shard.as_ref().map_or(&self.caches, |shard| shard.caches())
    }
}
