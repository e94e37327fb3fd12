//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go does it: one process
//! holds the Lease and renews it every retry period; the others watch it and take it over once
//! it has not been renewed for the lease duration. Expiry is judged by the local time at which
//! a process last saw the record change, never by comparing clocks between machines. A leader
//! that shuts down cleanly releases the Lease, so a standby takes over at its next retry.
//! Every request has a deadline, so a leader whose API traffic hangs gives up in time.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// How leadership is decided; controller-runtime's defaults.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// The Lease's name (`--leader-election-id`).
    pub lease_name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This process's identity in `holderIdentity`.
    pub identity: String,
    /// How long a Lease that is not renewed stays with its holder (15 s).
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it gives up leadership (10 s).
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew (2 s).
    pub retry_period: Duration,
    /// Labels the Lease carries (a shard's Lease names its ring).
    pub labels: std::collections::BTreeMap<String, String>,
}

impl LeaderElectionConfig {
    /// controller-runtime's durations (15 s, 10 s, 2 s) for `lease_name` in `namespace`, with
    /// an identity of `<hostname>_<pid>_<random>`.
    pub fn new(lease_name: impl Into<String>, namespace: impl Into<String>) -> Self {
        let host = std::env::var("HOSTNAME").ok().filter(|host| !host.is_empty()).unwrap_or_else(|| "bosun".into());
        LeaderElectionConfig {
            lease_name: lease_name.into(),
            namespace: namespace.into(),
            identity: format!("{host}_{}_{:08x}", std::process::id(), fastrand::u32(..)),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            labels: Default::default(),
        }
    }
}

/// Why leadership ended without a shutdown.
#[derive(Debug, Clone, thiserror::Error)]
#[error("lost the leader election Lease {namespace}/{name}: not renewed within {deadline:?}")]
pub struct LeadershipLost {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// The renew deadline that passed.
    pub deadline: Duration,
}

/// Tries for and holds one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    /// The holder and renew time last seen, and when this process saw them.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
    /// Whether the last attempt reached the API server.
    pub(crate) healthy: bool,
    /// When the last attempt that took or renewed the Lease started.
    renewed_at: Instant,
}

impl LeaderElector {
    /// An elector for `config`'s Lease.
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> Self {
        LeaderElector { api: Api::namespaced(client, &config.namespace), config, observed: None, healthy: true, renewed_at: Instant::now() }
    }

    /// The configuration.
    pub fn config(&self) -> &LeaderElectionConfig {
        &self.config
    }

    /// One attempt to acquire the Lease, bounded by the renew deadline; `true` if this process
    /// now holds it.
    pub async fn try_once(&mut self) -> bool {
        let deadline = self.config.renew_deadline;
        let acquired = tokio::time::timeout(deadline, self.try_acquire_or_renew()).await.unwrap_or(false);
        if acquired {
            tracing::info!(lease = %self.config.lease_name, identity = %self.config.identity, "became leader");
        }
        acquired
    }

    /// Renews the Lease every retry period; returns when no renewal has succeeded for the
    /// renew deadline. Every attempt is bounded by what is left of that deadline — a request
    /// that hangs (a frozen connection) counts as failed — so this returns in time for the
    /// caller to stop working before the Lease can expire for the others: they wait the lease
    /// duration from the last renewal they saw, which is no earlier than the start of the last
    /// attempt that succeeded here.
    pub async fn hold(&mut self) -> LeadershipLost {
        let deadline = self.config.renew_deadline;
        loop {
            let left = deadline.saturating_sub(self.renewed_at.elapsed());
            tokio::time::sleep(self.config.retry_period.min(left)).await;
            let left = deadline.saturating_sub(self.renewed_at.elapsed());
            let renewed = !left.is_zero() && tokio::time::timeout(left, self.try_acquire_or_renew()).await == Ok(true);
            if !renewed && self.renewed_at.elapsed() >= deadline {
                tracing::error!(lease = %self.config.lease_name, ?deadline, "could not renew the Lease in time");
                return LeadershipLost { namespace: self.config.namespace.clone(), name: self.config.lease_name.clone(), deadline };
            }
        }
    }

    /// Gives the Lease up, so a standby can take over at its next retry.
    pub async fn release(&mut self) {
        if tokio::time::timeout(self.config.renew_deadline, self.try_release()).await.is_err() {
            tracing::warn!(lease = %self.config.lease_name, "releasing leadership timed out; the Lease expires by itself");
        }
    }

    async fn try_release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.lease_name).await else { return };
        let spec = lease.spec.get_or_insert_default();
        if spec.holder_identity.as_deref() != Some(&self.config.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.config.lease_name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.config.lease_name, "released leadership"),
            Err(error) => tracing::warn!(lease = %self.config.lease_name, %error, "releasing leadership failed"),
        }
    }

    /// One round: take or renew the Lease if it is free, expired or ours. `true` if we hold it.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let started = Instant::now();
        let now = MicroTime(Timestamp::now());
        let seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let existing = match self.api.get_opt(&self.config.lease_name).await {
            Ok(existing) => existing,
            Err(error) => {
                self.healthy = false;
                tracing::warn!(%error, "reading the leader election Lease failed");
                return false;
            }
        };
        self.healthy = true;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    labels: Some(self.config.labels.clone()).filter(|labels| !labels.is_empty()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            let created = self.api.create(&PostParams::default(), &lease).await.is_ok();
            if created {
                self.renewed_at = started;
            }
            return created;
        };
        let spec = lease.spec.get_or_insert_default();
        let holder = spec.holder_identity.clone().filter(|holder| !holder.is_empty());
        let ours = holder.as_deref() == Some(&self.config.identity);
        let record = (holder.clone(), spec.renew_time.clone());
        if self.observed.as_ref().is_none_or(|(holder, renewed, _)| (holder, renewed) != (&record.0, &record.1)) {
            self.observed = Some((record.0, record.1, Instant::now()));
        }
        let held_for = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(0) as u64);
        let expired = self.observed.as_ref().is_some_and(|(_, _, seen)| seen.elapsed() >= held_for);
        if holder.is_some() && !ours && !expired {
            return false;
        }
        if !ours {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(now);
        if !self.config.labels.is_empty() {
            lease.metadata.labels.get_or_insert_default().extend(self.config.labels.clone());
        }
        // The resourceVersion in the body makes a concurrent update by another candidate fail.
        match self.api.replace(&self.config.lease_name, &PostParams::default(), &lease).await {
            Ok(updated) => {
                let spec = updated.spec.unwrap_or_default();
                self.observed = Some((spec.holder_identity, spec.renew_time, Instant::now()));
                self.renewed_at = started;
                true
            }
            Err(_) => false,
        }
    }
}
