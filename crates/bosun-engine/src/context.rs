//! What every hosted controller of one engine shares: the client, the shared caches,
//! discovery, the hook client, the applier, the event recorder and the settings.

use std::time::Duration;

use std::sync::Arc;

use bosun_runtime::sharding::Shard;
use bosun_runtime::{Context, EventRecorder, EventType, Health, Metrics, SharedCaches};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::children::{Applier, ApplyStrategy};
use crate::discovery::{Discovery, ResolvedResource};
use crate::hooks::HookClient;
use crate::hosting::CreateError;

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Concurrent syncs per hosted controller.
    pub workers: usize,
    /// How children are written.
    pub apply_strategy: ApplyStrategy,
    /// How long a discovery answer is trusted.
    pub discovery_interval: Duration,
    /// Every parent is synced this often even without events (Metacontroller's
    /// `--cache-flush-interval`).
    pub resync_interval: Duration,
    /// Only CompositeControllers whose labels match are run (Metacontroller's
    /// `--target-label-selector`), so several engines can share a cluster.
    pub target_label_selector: Option<LabelSelector>,
    /// Events per object per second after the burst (client-go's 1/300).
    pub events_qps: f64,
    /// Events per object at once (client-go's 25).
    pub events_burst: u32,
    /// The largest hook response body read; a larger one fails the sync.
    pub max_hook_response_bytes: usize,
    /// Whether hooks may be sent credentials (URL user information, bearer tokens, basic
    /// auth) over plain `http://`.
    pub allow_insecure_hook_credentials: bool,
    /// Whether hooks may be programs that bosun runs (`exec`), with its own identity.
    pub exec_hooks: bool,
    /// The most exec hooks' programs running at once.
    pub max_exec_processes: usize,
    /// Whether every controller must name the ServiceAccount it acts as
    /// ([`crate::SERVICE_ACCOUNT_ANNOTATION`]); one that does not is not run.
    pub require_service_account: bool,
    /// How long a hosted controller waits for its caches before it reports, with a
    /// `CreateError` event, the resources that cannot be listed.
    pub cache_sync_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 5,
            apply_strategy: ApplyStrategy::DynamicApply,
            discovery_interval: Duration::from_secs(30),
            resync_interval: Duration::from_secs(30 * 60),
            target_label_selector: None,
            events_qps: 1.0 / 300.0,
            events_burst: 25,
            max_hook_response_bytes: crate::hooks::DEFAULT_MAX_RESPONSE_BYTES,
            allow_insecure_hook_credentials: false,
            exec_hooks: false,
            max_exec_processes: crate::hooks::DEFAULT_MAX_EXEC_PROCESSES,
            require_service_account: false,
            cache_sync_timeout: bosun_runtime::controller::DEFAULT_SYNC_TIMEOUT,
        }
    }
}

/// Shared by every hosted controller.
pub(crate) struct EngineContext {
    /// The API client.
    pub client: kube::Client,
    /// One watch per resource type: the controllers, related objects.
    pub caches: SharedCaches,
    /// The caches of what the engine syncs — parents, children, revisions: the shard's
    /// view when sharded, else `caches`.
    pub owned: SharedCaches,
    /// This replica's shard, when sharded.
    pub shard: Option<Arc<Shard>>,
    /// Resource resolution.
    pub discovery: Discovery,
    /// Calls hooks.
    pub hooks: HookClient,
    /// Writes children.
    pub applier: Applier,
    /// The settings.
    pub config: EngineConfig,
    /// Where hook, reconcile and queue metrics go.
    pub metrics: Metrics,
    /// Where hosted controllers register their readiness (their caches have synced).
    pub health: Health,
    recorder: EventRecorder,
}

impl EngineContext {
    /// The engine's context within the process's: its client, caches, registry, readiness
    /// checks and shard (then it syncs only the shard's objects, and labels what it creates
    /// for the shard).
    pub(crate) fn new(process: &Context, config: EngineConfig) -> Self {
        let Context { client, caches, metrics, health, shard } = process.clone();
        let mut applier = Applier::new(config.apply_strategy.clone());
        if let Some(shard) = &shard {
            applier = applier.sharded(shard.label());
        }
        EngineContext {
            owned: process.owned_caches().clone(),
            shard,
            caches,
            discovery: Discovery::new(client.clone(), config.discovery_interval),
            hooks: HookClient::new(client.clone(), metrics.clone(), config.max_hook_response_bytes)
                .with_process_limit(config.max_exec_processes),
            metrics,
            health,
            applier,
            recorder: Self::recorder_of(&client, &config),
            client,
            config,
        }
    }

    /// An event recorder writing through `client`, as the engine's events are recorded.
    pub(crate) fn recorder_of(client: &kube::Client, config: &EngineConfig) -> EventRecorder {
        let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "bosun".into());
        EventRecorder::new(client.clone(), "metacontroller", instance, config.events_qps, config.events_burst)
    }

    /// Labels an object the engine creates for one of its parents with the parent's shard.
    pub(crate) fn stamp(&self, object: &mut serde_json::Value) {
        if let Some(shard) = &self.shard {
            let (key, value) = shard.label();
            let metadata = &mut object["metadata"];
            if !metadata["labels"].is_object() {
                metadata["labels"] = serde_json::json!({});
            }
            metadata["labels"][key] = value.into();
        }
    }

    /// Resolves a type a controller declares as `role` (`parent resource`, `child resource`,
    /// …); a cluster-scoped one is refused when the engine watches only some namespaces.
    pub(crate) async fn resolve(&self, api_version: &str, resource: &str, role: &'static str) -> Result<ResolvedResource, CreateError> {
        let resolved = self.discovery.resolve(api_version, resource).await?;
        match self.caches.namespaces() {
            Some(namespaces) if !resolved.namespaced => {
                Err(CreateError::ClusterScoped { role, resource: format!("{resource} in {api_version}"), namespaces: namespaces.join(",") })
            }
            _ => Ok(resolved),
        }
    }

    /// Publishes how many records per parent and child the engine keeps (`bosun_records`).
    pub(crate) fn count_records(&self) {
        self.metrics.set_records("hook_etag_responses", self.hooks.etag_records());
        self.metrics.set_records("server_side_apply_records", self.applier.records());
        self.metrics.set_records("credential_watches", self.hooks.credential_watches());
    }

    /// Records the events a hook asked for on `regarding`, through `recorder` (a controller's
    /// own identity's) or else the engine's.
    pub(crate) async fn hook_events(
        &self,
        recorder: Option<&EventRecorder>,
        regarding: &ObjectReference,
        events: Vec<crate::hooks::HookEvent>,
    ) {
        let recorder = recorder.unwrap_or(&self.recorder);
        for event in events {
            let type_ = if event.warning { EventType::Warning } else { EventType::Normal };
            recorder.record(regarding, type_, &event.reason, &event.message).await;
        }
    }

    /// Records an event on `regarding`; failing to record is logged, never fatal.
    pub(crate) async fn event(&self, regarding: &ObjectReference, warning: bool, reason: &str, note: String) {
        let type_ = if warning { EventType::Warning } else { EventType::Normal };
        self.recorder.record(regarding, type_, reason, &note).await;
    }
}
