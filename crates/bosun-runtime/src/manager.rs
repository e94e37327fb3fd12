//! The Manager: runs a set of runnables (controllers, the engine) with one lifecycle, serves
//! `/metrics` (over HTTPS to authorized users only, with [`Manager::with_secure_metrics`]) and
//! the health probes, and shuts down gracefully — on a signal it tells every
//! runnable to stop taking work and gives them a deadline to finish what is in flight.
//!
//! With leader election, runnables start only once this process holds the Lease; a standby
//! is ready (for its readiness probe) as long as it can reach the API server. A leader that
//! shuts down keeps renewing the Lease while its runnables drain and releases it after they
//! have finished; one that cannot renew in time aborts its runnables before the Lease can
//! expire for the others, and [`Manager::run`] returns [`ManagerError::LeadershipLost`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::leader::{LeaderElectionConfig, LeaderElector, LeadershipLost};
use crate::secure_serving::ServingCertificate;
use crate::sharding::{Coordinator, Shard, ShardingConfig};
use crate::{Context, Health, Metrics, SharedCaches};

/// Leadership as the readiness probe sees it.
const LEADING: u8 = 0;
const STANDBY: u8 = 1;
const STANDBY_UNREACHABLE: u8 = 2;

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends a terminating pod): the
/// signal a process's Manager runs until, as `manager.run(shutdown_signal())`.
///
/// # Panics
///
/// If the SIGTERM handler cannot be installed (outside a Tokio runtime with signals).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Where the Manager serves, and how long shutdown may take.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// `/metrics`; `None` to disable.
    pub metrics_address: Option<SocketAddr>,
    /// `/healthz` and `/readyz`; `None` to disable.
    pub health_address: Option<SocketAddr>,
    /// How long runnables get to finish in-flight work after a shutdown signal.
    pub shutdown_timeout: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            metrics_address: Some(SocketAddr::from(([0, 0, 0, 0], 9999))),
            health_address: Some(SocketAddr::from(([0, 0, 0, 0], 8081))),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the Manager could not run.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// A server could not listen.
    #[error("serving {what} on {address}: {source}")]
    Bind {
        /// `metrics` or `health probes`.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Another process took the Lease; this one must stop.
    #[error(transparent)]
    LeadershipLost(#[from] LeadershipLost),
    /// The metrics server's TLS cannot be set up.
    #[error(transparent)]
    Serving(#[from] crate::secure_serving::ServingError),
}

/// Tells a runnable that the Manager is shutting down.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Completes when shutdown begins.
    pub async fn requested(mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

type Runnable = Box<dyn FnOnce(Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Runs runnables, metrics and health with one lifecycle, and owns what they share: the
/// client, the watch caches, the metrics registry and the readiness checks ([`Context`]).
pub struct Manager {
    config: ManagerConfig,
    metrics: Metrics,
    health: Health,
    /// The client and the caches, once given one.
    shared: Option<(kube::Client, SharedCaches)>,
    shard: Option<Arc<Shard>>,
    /// Each with whether it runs only while leading.
    runnables: Vec<(String, Runnable, bool)>,
    elector: Option<LeaderElector>,
    /// Serves `/metrics` over HTTPS to authorized users only, when set.
    secure_metrics: Option<(kube::Client, ServingCertificate)>,
}

/// A started Manager.
pub struct RunningManager {
    /// Where `/metrics` is served (the bound address, when the port was 0).
    pub metrics_address: Option<SocketAddr>,
    /// Where the health probes are served.
    pub health_address: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    runnables: tokio::task::JoinSet<String>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    shutdown_timeout: Duration,
    leader: Option<Leader>,
}

/// The election task of a running Manager.
struct Leader {
    /// Holds the Lease until `drained` is sent (then releases it) or until it is lost.
    task: tokio::task::JoinHandle<()>,
    /// Tells the task that the runnables have finished.
    drained: Option<tokio::sync::oneshot::Sender<()>>,
    /// Becomes `Some` when leadership is lost.
    lost: watch::Receiver<Option<LeadershipLost>>,
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Leader {
    /// Completes when leadership is lost; never without leader election.
    async fn lost(leader: &mut Option<Leader>) -> LeadershipLost {
        let Some(leader) = leader else { return std::future::pending().await };
        let lost = leader.lost.wait_for(Option::is_some).await.ok().and_then(|lost| lost.clone());
        match lost {
            Some(lost) => lost,
            // The task ended without losing: it released or never led.
            None => std::future::pending().await,
        }
    }
}

impl Manager {
    /// A Manager with this configuration and a fresh metrics registry.
    pub fn new(config: ManagerConfig) -> Self {
        Manager {
            config,
            metrics: Metrics::new(),
            health: Health::default(),
            shared: None,
            shard: None,
            runnables: Vec::new(),
            elector: None,
            secure_metrics: None,
        }
    }

    /// Talks to the API server through `client` (best built recording into
    /// [`Manager::metrics`]), and keeps one set of watch caches on it for every component.
    pub fn with_client(mut self, client: kube::Client) -> Self {
        let caches = SharedCaches::new(client.clone()).with_metrics(&self.metrics);
        self.shared = Some((client, caches));
        self
    }

    /// Watches only `namespaces` (for namespaced types; see [`SharedCaches::within`]): every
    /// component's caches hold only their objects, so the process needs Roles there and no
    /// ClusterRole to read. Components read the list from [`SharedCaches::namespaces`].
    ///
    /// # Panics
    ///
    /// Without [`Manager::with_client`] first.
    pub fn with_namespaces(mut self, namespaces: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let (client, caches) = self.shared.take().expect("Manager::with_namespaces needs with_client first");
        let caches = caches.within(namespaces);
        tracing::info!(namespaces = ?caches.namespaces().unwrap_or_default(), "watching only these namespaces");
        self.shared = Some((client, caches));
        self
    }

    /// Makes this replica a shard of `sharding.ring` (see [`crate::sharding`]): the runnables
    /// run only while it holds its shard's Lease, components sync only the shard's objects
    /// ([`Context::shard`]), and the replica stands for election as the ring's coordinator.
    ///
    /// # Panics
    ///
    /// Without [`Manager::with_client`] first.
    pub fn with_sharding(mut self, sharding: ShardingConfig) -> Self {
        let (client, caches) = self.shared.clone().expect("Manager::with_sharding needs with_client first");
        let ShardingConfig { ring, name, election, repair_period } = sharding;
        tracing::info!(ring = %ring.name, shard = %name, namespace = %ring.namespace, "sharding enabled");
        let shard = Shard::new(client.clone(), &caches, ring, name);
        self = self.with_leader_election(client.clone(), shard.lease(&election));
        let coordinator = Coordinator::new(client, &shard, election, &self.metrics).with_repair_period(repair_period);
        self.add("sharding-coordinator", move |shutdown| coordinator.run(shutdown.requested()));
        self.shard = Some(shard);
        self
    }

    /// What a component needs to run under this Manager: its client, caches, metrics, health
    /// and shard.
    ///
    /// # Panics
    ///
    /// Without [`Manager::with_client`] first.
    pub fn context(&self) -> Context {
        let (client, caches) = self.shared.clone().expect("Manager::context needs with_client first");
        Context { client, caches, metrics: self.metrics.clone(), health: self.health.clone(), shard: self.shard.clone() }
    }

    /// Serves `/metrics` over HTTPS with `certificate`, to requests whose bearer token the API
    /// server (asked through `client`) authenticates and authorizes for `get` on `/metrics`
    /// ([`crate::secure_serving`]).
    pub fn with_secure_metrics(mut self, client: kube::Client, certificate: ServingCertificate) -> Self {
        self.secure_metrics = Some((client, certificate));
        self
    }

    /// Runs the runnables only while this process holds the Lease of `election`.
    pub fn with_leader_election(mut self, client: kube::Client, election: LeaderElectionConfig) -> Self {
        self.metrics.set_leader(&election.lease_name, false);
        self.elector = Some(LeaderElector::new(client, election));
        self
    }

    /// The metrics registry runnables record into.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// The readiness checks `/readyz` evaluates.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// A controller called `name` recording into this Manager's metrics, with its readiness
    /// check in this Manager's health; add it with [`Manager::add`] to run it.
    pub fn controller<K>(&self, name: impl Into<String>) -> crate::Controller<K>
    where
        K: Clone + Eq + std::hash::Hash + std::fmt::Display + Send + Sync + 'static,
    {
        crate::Controller::new(name, &self.metrics).with_health(&self.health)
    }

    /// Adds a runnable: it gets a [`Shutdown`] and should return soon after it is requested,
    /// having finished its in-flight work.
    pub fn add<F, Fut>(&mut self, name: impl Into<String>, runnable: F)
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.runnables.push((name.into(), Box::new(move |shutdown| Box::pin(runnable(shutdown))), true));
    }

    /// Adds a runnable that runs on every replica, leading or not — a server every replica
    /// answers on (controller-runtime's `NeedLeaderElection() == false`), such as the
    /// admission webhooks the API server calls on whichever replica its Service picks.
    pub fn add_everywhere<F, Fut>(&mut self, name: impl Into<String>, runnable: F)
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.runnables.push((name.into(), Box::new(move |shutdown| Box::pin(runnable(shutdown))), false));
    }

    /// Binds the servers and starts every runnable.
    pub async fn start(self) -> Result<RunningManager, ManagerError> {
        let mut servers = Vec::new();
        let metrics_address = match self.config.metrics_address {
            Some(address) => {
                let metrics = self.metrics.clone();
                let mut router = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let metrics = metrics.clone();
                        async move {
                            ([(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.encode())
                        }
                    }),
                );
                let tls = match &self.secure_metrics {
                    Some((client, certificate)) => {
                        let authorizer = crate::secure_serving::Authorizer::new(client.clone());
                        router = router.layer(axum::middleware::from_fn_with_state(authorizer, crate::secure_serving::authorize));
                        Some(crate::secure_serving::tls_config(certificate)?)
                    }
                    None => None,
                };
                Some(serve("metrics", address, router, tls, &mut servers).await?)
            }
            None => None,
        };
        let leadership = Arc::new(AtomicU8::new(if self.elector.is_some() { STANDBY } else { LEADING }));
        let health_address = match self.config.health_address {
            Some(address) => {
                let health = self.health.clone();
                let leadership = leadership.clone();
                let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" })).route(
                    "/readyz",
                    axum::routing::get(move || {
                        let (code, body) = match leadership.load(Ordering::Relaxed) {
                            LEADING => health.readyz(),
                            STANDBY => health.readyz_standby(),
                            _ => (503, "[-]leader-election failed: the Lease cannot be read\nreadyz check failed".to_owned()),
                        };
                        async move { (http::StatusCode::from_u16(code).expect("a valid status"), body) }
                    }),
                );
                Some(serve("health probes", address, router, None, &mut servers).await?)
            }
            None => None,
        };
        let (stop, stopped) = watch::channel(false);
        // Opens when this process leads (at once without leader election).
        let (lead, gate) = watch::channel(self.elector.is_none());
        let mut runnables = tokio::task::JoinSet::new();
        for (name, runnable, elected) in self.runnables {
            let shutdown = Shutdown(stopped.clone());
            let mut gate = gate.clone();
            let mut stopping = stopped.clone();
            runnables.spawn(async move {
                let leading = !elected
                    || tokio::select! {
                        // An open gate wins: without leader election the runnable always runs.
                        biased;
                        opened = gate.wait_for(|open| *open) => opened.is_ok(),
                        _ = stopping.wait_for(|stop| *stop) => false,
                    };
                if leading {
                    runnable(shutdown).await;
                }
                name
            });
        }
        let leader = self.elector.map(|elector| {
            let (drained, until_drained) = tokio::sync::oneshot::channel();
            let (report, lost) = watch::channel(None);
            let election =
                Election { lead, shutdown: Shutdown(stopped), until_drained, lost: report, leadership, metrics: self.metrics.clone() };
            Leader { task: tokio::spawn(election.run(elector)), drained: Some(drained), lost }
        });
        Ok(RunningManager {
            metrics_address,
            health_address,
            stop,
            runnables,
            servers,
            shutdown_timeout: self.config.shutdown_timeout,
            leader,
        })
    }

    /// Starts, runs until `signal` completes (or every runnable returns), then shuts down;
    /// `signal` is usually [`shutdown_signal()`].
    /// Returns [`ManagerError::LeadershipLost`] at once if another process takes the Lease.
    pub async fn run(self, signal: impl Future<Output = ()>) -> Result<(), ManagerError> {
        let mut running = self.start().await?;
        let mut leader = running.leader.take();
        tokio::select! {
            _ = signal => {}
            _ = running.all_returned() => {}
            lost = Leader::lost(&mut leader) => {
                running.abort().await;
                return Err(lost.into());
            }
        }
        running.leader = leader;
        running.shutdown().await?;
        Ok(())
    }
}

/// What the election task of a running Manager works with.
struct Election {
    /// Opens the runnables' gate.
    lead: watch::Sender<bool>,
    shutdown: Shutdown,
    until_drained: tokio::sync::oneshot::Receiver<()>,
    lost: watch::Sender<Option<LeadershipLost>>,
    leadership: Arc<AtomicU8>,
    metrics: Metrics,
}

impl Election {
    /// Acquires the Lease (unless shutdown comes first), opens the gate, and renews the Lease
    /// until the runnables have drained after a shutdown — then releases it — or until it
    /// cannot be renewed in time, which it reports through `lost`.
    async fn run(self, mut elector: LeaderElector) {
        let Election { lead, shutdown, until_drained, lost, leadership, metrics } = self;
        let lease = elector.config().lease_name.clone();
        let acquire = async {
            loop {
                if elector.try_once().await {
                    return;
                }
                leadership.store(if elector.healthy { STANDBY } else { STANDBY_UNREACHABLE }, Ordering::Relaxed);
                tokio::time::sleep(elector.config().retry_period).await;
            }
        };
        tokio::select! {
            _ = acquire => {}
            _ = shutdown.requested() => return,
        }
        leadership.store(LEADING, Ordering::Relaxed);
        metrics.set_leader(&lease, true);
        let _ = lead.send(true);
        tokio::select! {
            lost_lease = elector.hold() => {
                let _ = lost.send(Some(lost_lease));
            }
            _ = until_drained => {
                elector.release().await;
            }
        }
        metrics.set_leader(&lease, false);
    }
}

/// Serves `router` on `address`, over TLS with `tls` if given.
async fn serve(
    what: &'static str,
    address: SocketAddr,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    servers: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<SocketAddr, ManagerError> {
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|source| ManagerError::Bind { what, address, source })?;
    let bound = listener.local_addr().map_err(|source| ManagerError::Bind { what, address, source })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%bound, %scheme, "serving {what}");
    servers.push(tokio::spawn(async move {
        match tls {
            Some(tls) => crate::secure_serving::serve_tls(listener, router, tls, std::future::pending()).await,
            None => {
                if let Err(error) = axum::serve(listener, router).await {
                    tracing::error!(%error, "serving {what} failed");
                }
            }
        }
    }));
    Ok(bound)
}

impl RunningManager {
    /// Completes when every runnable has returned by itself.
    async fn all_returned(&mut self) {
        while let Some(result) = self.runnables.join_next().await {
            match result {
                Ok(name) => tracing::info!(runnable = %name, "returned"),
                Err(error) => tracing::error!(%error, "a runnable panicked"),
            }
        }
    }

    /// Asks every runnable to stop and waits for them up to the shutdown timeout (then aborts
    /// the rest); a leader keeps renewing its Lease meanwhile and releases it afterwards. If
    /// the Lease cannot be renewed while draining, the runnables are aborted at once and this
    /// returns [`ManagerError::LeadershipLost`].
    pub async fn shutdown(mut self) -> Result<(), ManagerError> {
        let _ = self.stop.send(true);
        let timeout = self.shutdown_timeout;
        let mut leader = self.leader.take();
        let drained = tokio::select! {
            drained = tokio::time::timeout(timeout, self.all_returned()) => drained.is_ok(),
            lost = Leader::lost(&mut leader) => {
                self.abort().await;
                return Err(lost.into());
            }
        };
        if !drained {
            tracing::warn!(?timeout, remaining = self.runnables.len(), "runnables did not finish in time; aborting them");
        }
        self.abort().await;
        if let Some(mut leader) = leader {
            if let Some(drained) = leader.drained.take() {
                let _ = drained.send(());
            }
            let _ = (&mut leader.task).await;
        }
        Ok(())
    }

    /// Stops every runnable, the election and the servers at once.
    async fn abort(&mut self) {
        self.runnables.abort_all();
        while self.runnables.join_next().await.is_some() {}
        if let Some(leader) = &self.leader {
            leader.task.abort();
        }
        for server in &self.servers {
            server.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    fn loopback() -> ManagerConfig {
        ManagerConfig {
            metrics_address: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            health_address: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            shutdown_timeout: Duration::from_millis(500),
        }
    }

    #[tokio::test]
    async fn shutdown_lets_runnables_finish_and_aborts_stragglers() {
        let mut manager = Manager::new(loopback());
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        manager.add("tidy", move |shutdown| async move {
            shutdown.requested().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, Ordering::SeqCst);
        });
        manager.add("stubborn", |_shutdown| std::future::pending::<()>());
        let running = manager.start().await.unwrap();
        let started = std::time::Instant::now();
        running.shutdown().await.unwrap();
        assert!(finished.load(Ordering::SeqCst), "the tidy runnable finished its work");
        assert!(started.elapsed() < Duration::from_secs(5), "the stubborn one was aborted at the deadline");
    }

    #[tokio::test]
    async fn serves_metrics_and_probes() {
        let manager = Manager::new(loopback());
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        manager.health().add_readiness_check("warm", move || flag.load(Ordering::SeqCst));
        manager.metrics().set_leader("bosun", true);
        let running = manager.start().await.unwrap();
        let (metrics, health) = (running.metrics_address.unwrap(), running.health_address.unwrap());
        assert!(get(metrics, "/metrics").await.contains("leader_election_master_status{name=\"bosun\"} 1"));
        assert!(get(health, "/healthz").await.starts_with("HTTP/1.0 200"));
        let not_ready = get(health, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.0 503") && not_ready.contains("[-]warm failed"), "{not_ready}");
        ready.store(true, Ordering::SeqCst);
        assert!(get(health, "/readyz").await.starts_with("HTTP/1.0 200"));
        running.shutdown().await.unwrap();
    }
}
