//! The ConfigMapSync controller: watches ConfigMapSyncs, ConfigMaps and Namespaces through the
//! process's shared caches and turns each change into the keys of the ConfigMapSyncs it
//! concerns — through indexes, so that a ConfigMap change looks at the ConfigMapSyncs naming
//! that ConfigMap rather than at all of them:
//!
//! - a ConfigMapSync: itself, unless only its status changed;
//! - a ConfigMap: the ConfigMapSync named in its owner annotation (a copy was edited or
//!   deleted), and the ConfigMapSyncs copying a ConfigMap of that name whose source it is or
//!   whose destinations may include its namespace (a source changed, or an unmanaged
//!   ConfigMap in the way appeared or went);
//! - a Namespace (created, deleted, relabelled, or its consent changed): the ConfigMapSyncs
//!   naming it, and those with a namespace selector.
//!
//! - a consent record (`configmapsync-consent`): the ConfigMapSyncs whose destinations may
//!   include its namespace.
//!
//! ConfigMaps are watched as metadata only — identity, the owner annotation and the managed-by
//! label — so that the ConfigMaps anyone creates cost the operator almost nothing; content is
//! read for the ConfigMaps a ConfigMapSync names ([`super::contents`]).
//!
//! Sharded (a [`Context`] with a shard), a replica watches only its shard's
//! ConfigMapSyncs; ConfigMaps and Namespaces it watches in full, as it must to see sources and
//! consent, so copies carry no shard label and nothing but the ConfigMapSync moves.

use std::collections::BTreeSet;
use std::sync::Arc;

use bosun_runtime::sharding::{Registration, Selection, Shard};
use bosun_runtime::{Cache, CacheEvent, Context, Controller, EventRecorder, ObjectKey, predicate};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ApiResource, DynamicObject};
use kube::{Client, ResourceExt};

use super::{ACCEPT_FROM_ANNOTATION, CONSENT_RECORD, ConfigMapSync, ConfigMapSyncSpec, MANAGED_BY_LABEL, OWNER_ANNOTATION};

/// Index of ConfigMapSyncs by `spec.configMapName`.
const BY_CONFIG_MAP_NAME: &str = "configmapsync.bosun.dev/config-map-name";
/// Index of ConfigMapSyncs by each destination namespace they name, and `*` for those with
/// a namespace selector.
const BY_DESTINATION: &str = "configmapsync.bosun.dev/destination";
/// Index of ConfigMaps by their owner annotation.
pub(super) const BY_OWNER: &str = "configmapsync.bosun.dev/owner";
/// The [`BY_DESTINATION`] value of ConfigMapSyncs with a namespace selector.
const ANY_NAMESPACE: &str = "*";

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ConfigMapSyncOptions {
    /// ConfigMapSyncs reconciled at once.
    pub workers: usize,
    /// Copies written at once by one reconcile.
    pub write_concurrency: usize,
    /// Events per ConfigMapSync per second after `events_burst`.
    pub events_qps: f64,
    /// Events per ConfigMapSync at once.
    pub events_burst: u32,
    /// Whether a namespace receives copies only when its `configmapsync.bosun.dev/accept-from`
    /// annotation names the source namespace (or `*`). `false` is the original tutorial's
    /// behaviour: every namespace but the system ones receives what it is sent.
    pub require_consent: bool,
    /// The operator's own namespace, which never receives copies (nor do `kube-*`
    /// namespaces) unless listed in `allowed_system_namespaces`.
    pub own_namespace: Option<String>,
    /// System namespaces that may receive copies nonetheless (with consent, if required).
    pub allowed_system_namespaces: BTreeSet<String>,
    /// The most namespaces one ConfigMapSync may write to; above it, nothing is written.
    pub max_destinations: usize,
    /// The largest source copied, in bytes of `data` and `binaryData` (keys and values, as
    /// the API server counts them); above it, nothing is written.
    pub max_source_bytes: usize,
}

/// The default of [`ConfigMapSyncOptions::max_destinations`].
pub const DEFAULT_MAX_DESTINATIONS: usize = 1000;
/// The default of [`ConfigMapSyncOptions::max_source_bytes`]: a quarter of the API server's
/// 1 MiB limit, so that a thousand copies stay within a few hundred MiB of etcd.
pub const DEFAULT_MAX_SOURCE_BYTES: usize = 256 * 1024;

impl Default for ConfigMapSyncOptions {
    fn default() -> Self {
        ConfigMapSyncOptions {
            workers: 4,
            write_concurrency: 16,
            events_qps: 1.0 / 300.0,
            events_burst: 25,
            require_consent: true,
            own_namespace: None,
            allowed_system_namespaces: BTreeSet::new(),
            max_destinations: DEFAULT_MAX_DESTINATIONS,
            max_source_bytes: DEFAULT_MAX_SOURCE_BYTES,
        }
    }
}

impl ConfigMapSyncOptions {
    /// Whether `namespace` is a system namespace that may not receive copies.
    pub fn is_protected(&self, namespace: &str) -> bool {
        (namespace.starts_with("kube-") || self.own_namespace.as_deref() == Some(namespace))
            && !self.allowed_system_namespaces.contains(namespace)
    }
}

/// What reconciles share.
pub(super) struct Shared {
    pub client: Client,
    pub syncs: Arc<Cache>,
    /// Every ConfigMap's metadata.
    pub config_maps: Arc<Cache>,
    /// The content of the ConfigMaps ConfigMapSyncs name.
    pub contents: Arc<super::contents::Contents>,
    pub namespaces: Arc<Cache>,
    pub recorder: EventRecorder,
    pub options: ConfigMapSyncOptions,
    /// This replica's shard, when sharded.
    pub shard: Option<Arc<Shard>>,
    _sharded: Option<Registration>,
}

/// The ConfigMapSync operator.
pub struct ConfigMapSyncController {
    shared: Arc<Shared>,
    controller: Controller,
}

/// The name under which the controller's queue, reconciles and events are reported.
const NAME: &str = "configmapsync";

/// The spec of a cached ConfigMapSync, if it parses.
pub(super) fn spec_of(object: &DynamicObject) -> Option<ConfigMapSyncSpec> {
    serde_json::from_value(object.data.get("spec")?.clone()).ok()
}

/// `namespace/name`: how copies name their ConfigMapSync.
pub(super) fn owner_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl ConfigMapSyncController {
    /// A controller in the process's `context` (usually a [`Manager`](bosun_runtime::Manager)'s):
    /// it watches through its caches, records into its registry and registers its readiness
    /// (the caches have synced) in its health checks; with a shard, it reconciles only the
    /// shard's ConfigMapSyncs (see [`bosun_runtime::sharding`]).
    pub fn new(context: &Context, options: ConfigMapSyncOptions) -> Self {
        let Context { client, caches, metrics, health, shard } = context;
        let shard = shard.as_ref();
        let resource = ApiResource::erase::<ConfigMapSync>(&());
        let syncs = context.owned_caches().cache(&resource);
        let _sharded = shard.map(|shard| shard.types().register(resource, Selection::all(), Vec::new()));
        let config_maps = caches.metadata(&ApiResource::erase::<ConfigMap>(&()), &[OWNER_ANNOTATION, MANAGED_BY_LABEL]);
        let contents = Arc::new(super::contents::Contents::default());
        let namespaces = caches.cache(&ApiResource::erase::<Namespace>(&()));
        syncs.add_index(BY_CONFIG_MAP_NAME, |object| spec_of(object).map(|spec| spec.config_map_name).into_iter().collect());
        syncs.add_index(BY_DESTINATION, |object| {
            let Some(spec) = spec_of(object) else { return Vec::new() };
            let mut values: BTreeSet<String> =
                spec.destination_namespace.into_iter().chain(spec.destination_namespaces.into_iter().flatten()).collect();
            if spec.namespace_selector.is_some() {
                values.insert(ANY_NAMESPACE.to_owned());
            }
            values.into_iter().collect()
        });
        config_maps.add_index(BY_OWNER, |object| object.annotations().get(OWNER_ANNOTATION).cloned().into_iter().collect());
        let instance = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "bosun".into());
        let controller = Controller::new(NAME, metrics)
            .with_health(health)
            .workers(options.workers)
            // Status writes (its own) queue nothing.
            .for_resource(syncs.clone(), predicate::spec_or_lifecycle_changed)
            .watches(config_maps.clone(), {
                let (syncs, contents) = (syncs.clone(), contents.clone());
                move |event| {
                    match event {
                        CacheEvent::Deleted(gone) => contents.forget(&ObjectKey::of(gone)),
                        CacheEvent::Applied { new, .. } => contents.forget_other_than(new),
                    }
                    config_map_keys(&syncs, event)
                }
            })
            .watches(namespaces.clone(), {
                let syncs = syncs.clone();
                move |event| namespace_keys(&syncs, event)
            });
        let shared = Shared {
            recorder: EventRecorder::new(client.clone(), NAME, instance, options.events_qps, options.events_burst),
            client: client.clone(),
            syncs,
            config_maps,
            contents,
            namespaces,
            options,
            shard: shard.cloned(),
            _sharded,
        };
        ConfigMapSyncController { shared: Arc::new(shared), controller }
    }

    /// Runs until `shutdown` completes, then finishes the reconciles in flight and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shared = self.shared;
        let reconcile = move |key: ObjectKey| {
            let shared = shared.clone();
            async move { shared.reconcile(&key).await }
        };
        self.controller.run(reconcile, |_, _| None, shutdown).await;
    }
}

/// The ConfigMapSyncs a ConfigMap change concerns: the one named in its owner annotation (a
/// copy was edited or deleted), and those copying a ConfigMap of that name whose source it is
/// or whose destinations may include its namespace.
fn config_map_keys(syncs: &Cache, event: &CacheEvent<'_>) -> Vec<ObjectKey> {
    let (old, new) = match event {
        CacheEvent::Applied { old, new } => (*old, Some(*new)),
        CacheEvent::Deleted(object) => (Some(*object), None),
    };
    let mut keys = BTreeSet::new();
    let mut names = BTreeSet::new();
    for config_map in old.into_iter().chain(new) {
        if let Some((namespace, name)) = config_map.annotations().get(OWNER_ANNOTATION).and_then(|owner| owner.split_once('/')) {
            keys.insert(ObjectKey { namespace: Some(namespace.to_owned()), name: name.to_owned() });
        }
        names.insert(config_map.name_any());
    }
    let namespace = new.or(old).and_then(|config_map| config_map.namespace()).unwrap_or_default();
    if names.contains(CONSENT_RECORD) {
        keys.extend(syncs_naming(syncs, &namespace));
    }
    for name in names {
        for sync in syncs.by_index(BY_CONFIG_MAP_NAME, &name) {
            let Some(spec) = spec_of(&sync) else { continue };
            let source = sync.namespace().as_deref() == Some(namespace.as_str());
            let destination = spec.namespace_selector.is_some()
                || spec.destination_namespace.as_deref() == Some(namespace.as_str())
                || spec.destination_namespaces.iter().flatten().any(|destination| *destination == namespace);
            if source || destination {
                keys.insert(ObjectKey::of(&sync));
            }
        }
    }
    keys.into_iter().collect()
}

/// The ConfigMapSyncs a Namespace change concerns: those naming it, and those with a selector.
fn namespace_keys(syncs: &Cache, event: &CacheEvent<'_>) -> Vec<ObjectKey> {
    let namespace = match event {
        CacheEvent::Applied { old: Some(old), new } => {
            let unchanged = old.metadata.labels == new.metadata.labels
                && old.annotations().get(ACCEPT_FROM_ANNOTATION) == new.annotations().get(ACCEPT_FROM_ANNOTATION)
                && old.metadata.deletion_timestamp == new.metadata.deletion_timestamp
                && old.data.get("status") == new.data.get("status");
            if unchanged {
                return Vec::new();
            }
            new
        }
        CacheEvent::Applied { old: None, new } => new,
        CacheEvent::Deleted(old) => old,
    };
    syncs_naming(syncs, &namespace.name_any())
}

/// The ConfigMapSyncs whose destinations may include `namespace`: those naming it, and those
/// with a selector.
fn syncs_naming(syncs: &Cache, namespace: &str) -> Vec<ObjectKey> {
    let syncs = syncs.by_index(BY_DESTINATION, namespace).into_iter().chain(syncs.by_index(BY_DESTINATION, ANY_NAMESPACE));
    syncs.map(|sync| ObjectKey::of(&sync)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_namespaces_are_protected_unless_allowed() {
        let mut options = ConfigMapSyncOptions { own_namespace: Some("bosun-system".into()), ..Default::default() };
        for namespace in ["kube-system", "kube-public", "kube-node-lease", "bosun-system"] {
            assert!(options.is_protected(namespace), "{namespace}");
        }
        assert!(!options.is_protected("default") && !options.is_protected("team-kube-a"));
        options.allowed_system_namespaces.insert("kube-public".into());
        assert!(!options.is_protected("kube-public") && options.is_protected("kube-system"));
    }
}
