//! `bosun run`: the engine against a cluster, configured with Metacontroller's flag names so
//! that existing Deployments need no change.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bosun_engine::{ApplyStrategy, Engine, EngineConfig};
use bosun_operators::configmapsync::{ConfigMapSync, ConfigMapSyncController, ConfigMapSyncOptions};
use bosun_runtime::sharding::{Ring, ShardingConfig};
use bosun_runtime::{LeaderElectionConfig, Manager, ManagerConfig, Metrics};
use clap::Args;

/// Which cluster to talk to.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Path to a kubeconfig. Without it: $KUBECONFIG, then ~/.kube/config, then the in-cluster
    /// ServiceAccount.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current context.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Client-side limit on requests per second to the API server; 0 or negative: none (the
    /// default, as in controller-runtime; the API server's priority and fairness governs).
    /// Metacontroller's default was 5.
    #[arg(long, default_value_t = -1.0, value_name = "QPS", allow_negative_numbers = true)]
    client_go_qps: f64,
    /// Requests allowed at once above --client-go-qps.
    #[arg(long, default_value_t = 10, value_name = "N")]
    client_go_burst: u32,
}

impl ClusterArgs {
    /// A client for the chosen cluster, counting its requests in `metrics`.
    pub async fn client(&self, metrics: &Metrics) -> anyhow::Result<kube::Client> {
        let config = self.config().await?;
        let limit = (self.client_go_qps > 0.0).then_some((self.client_go_qps, self.client_go_burst));
        Ok(bosun_runtime::client::connect(config, metrics, limit)?)
    }

    /// The client configuration of the chosen cluster.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        let options = kube::config::KubeConfigOptions { context: self.context.clone(), ..Default::default() };
        let config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let kubeconfig =
                    kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            (None, Some(_)) => kube::Config::from_kubeconfig(&options).await?,
            (None, None) => kube::Config::infer()
                .await
                .context("no cluster configured: pass --kubeconfig, set KUBECONFIG, or run in a Pod with a ServiceAccount")?,
        };
        Ok(config)
    }
}

/// An address to listen on, or `None` where the flag said `0` (disabled).
#[derive(Debug, Clone, Copy)]
struct ListenAddress(Option<SocketAddr>);

/// `:9999`, `127.0.0.1:9999`, `[::1]:9999`, or `0` to disable.
fn listen_address(text: &str) -> Result<ListenAddress, String> {
    if text == "0" {
        return Ok(ListenAddress(None));
    }
    let full = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.to_owned() };
    full.parse()
        .map(|address| ListenAddress(Some(address)))
        .map_err(|_| format!("{text:?} is not an address such as :9999 or 127.0.0.1:9999 (0 disables)"))
}

/// Where metrics and health probes are served (Metacontroller's flags).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve Prometheus metrics at /metrics on this address (`:9999`, `127.0.0.1:9999`; `0`
    /// disables). Default `:9999`; for `bosun dev` a free port of 127.0.0.1, printed.
    #[arg(long, value_name = "ADDRESS", value_parser = listen_address)]
    metrics_address: Option<ListenAddress>,
    /// Serve /healthz and /readyz on this address (`0` disables). Default `:8081`; for
    /// `bosun dev` a free port of 127.0.0.1, printed.
    #[arg(long, value_name = "ADDRESS", value_parser = listen_address)]
    health_probe_bind_address: Option<ListenAddress>,
    /// Serve /metrics over HTTPS, to callers whose bearer token the API server authenticates
    /// (TokenReview) and authorizes for `get` on the non-resource URL /metrics
    /// (SubjectAccessReview; the ClusterRole bosun-metrics-reader grants it). Default true;
    /// false for `bosun dev`, which serves plain HTTP on loopback.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    metrics_secure: Option<bool>,
    /// With --metrics-secure, serve the certificate in DIR (tls.crt, tls.key; re-read when
    /// they change, as cert-manager rotates them) instead of a self-signed one made at start.
    #[arg(long, value_name = "DIR")]
    metrics_cert_dir: Option<std::path::PathBuf>,
    /// How long in-flight syncs may take to finish after SIGTERM or SIGINT.
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION")]
    graceful_shutdown_timeout: Duration,
}

impl ServeArgs {
    /// The Manager's configuration; unset addresses default to their port on `host`.
    pub fn config(&self, host: IpAddr) -> ManagerConfig {
        ManagerConfig {
            metrics_address: self.metrics_address.map_or(Some(SocketAddr::new(host, 9999)), |address| address.0),
            health_address: self.health_probe_bind_address.map_or(Some(SocketAddr::new(host, 8081)), |address| address.0),
            shutdown_timeout: self.graceful_shutdown_timeout,
        }
    }

    /// The Manager's configuration for a local tool (`bosun dev`): on 127.0.0.1, each port
    /// that was not given (or given as 0) a free one, each port that was given checked now —
    /// so that a second `bosun dev` picks ports of its own, and one asked for a port in use
    /// refuses before it starts anything, saying which.
    #[cfg(feature = "dev")]
    pub fn local_config(&self) -> anyhow::Result<ManagerConfig> {
        let mut config = self.config(IpAddr::from([127, 0, 0, 1]));
        let given = [self.metrics_address.is_some(), self.health_probe_bind_address.is_some()];
        for ((address, given), flag) in [&mut config.metrics_address, &mut config.health_address]
            .into_iter()
            .zip(given)
            .zip(["--metrics-address", "--health-probe-bind-address"])
        {
            let Some(address) = address.as_mut() else { continue };
            if !given || address.port() == 0 {
                address.set_port(bosun_testenv::free_port());
            } else if let Err(error) = std::net::TcpListener::bind(*address) {
                anyhow::bail!("{flag} {address}: {error} (is another bosun dev running? leave {flag} out and a free port is picked)");
            }
        }
        Ok(config)
    }

    /// `manager`, serving /metrics securely (asking the API server through `client`) if
    /// `--metrics-secure` says so, or else if `default` does.
    pub fn secure_metrics(&self, manager: Manager, client: &kube::Client, default: bool) -> Manager {
        if !self.metrics_secure.unwrap_or(default) {
            return manager;
        }
        let certificate = match &self.metrics_cert_dir {
            Some(dir) => bosun_runtime::ServingCertificate::Directory(dir.clone()),
            None => bosun_runtime::ServingCertificate::SelfSigned,
        };
        manager.with_secure_metrics(client.clone(), certificate)
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    bosun_engine::parse_duration(text).map_err(|error| error.to_string())
}

/// Checks a label selector flag (`shard=a`, `tier in (x,y)`), keeping its text.
pub(crate) fn label_selector(text: &str) -> Result<String, String> {
    bosun_engine::selector::parse(text).map(|_| text.to_owned()).map_err(|error| error.to_string())
}

/// The engine's settings (Metacontroller's flags).
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Run the engine (CompositeControllers and DecoratorControllers). `false` runs only the
    /// native operators, as ConfigMapSync's own Deployment does under its own ServiceAccount.
    #[arg(long = "engine", default_value_t = true, value_name = "BOOL", action = clap::ArgAction::Set)]
    enabled: bool,
    /// Concurrent syncs per CompositeController.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// How children are written: `dynamic-apply` (client-side three-way merge with the
    /// last-applied annotation) or `server-side-apply`.
    #[arg(long, default_value = "dynamic-apply", value_parser = ["dynamic-apply", "server-side-apply"])]
    apply_strategy: String,
    /// The field manager of server-side apply.
    #[arg(long, default_value = "metacontroller", value_name = "NAME")]
    apply_strategy_ssa_field_manager: String,
    /// How long a discovery answer (which resources exist) is trusted.
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION")]
    discovery_interval: Duration,
    /// Every parent is synced this often even without changes.
    #[arg(long, default_value = "30m", value_parser = duration, value_name = "DURATION")]
    cache_flush_interval: Duration,
    /// Only run CompositeControllers whose labels match this selector (e.g. `shard=a`), so
    /// several engines can share a cluster.
    #[arg(long, default_value = "", value_parser = label_selector, value_name = "SELECTOR")]
    target_label_selector: String,
    /// Events per object per second after --events-burst (client-go's spam filter).
    #[arg(long, default_value_t = 1.0 / 300.0, value_name = "QPS")]
    events_qps: f64,
    /// Events per object at once.
    #[arg(long, default_value_t = 25, value_name = "N")]
    events_burst: u32,
    /// The largest hook response body read, in bytes; a hook answering more fails its sync
    /// with "response too large", and nothing is changed.
    #[arg(long, default_value_t = bosun_engine::DEFAULT_MAX_RESPONSE_BYTES, value_name = "BYTES")]
    max_hook_response_bytes: usize,
    /// How long a controller waits for the caches of its resources before it records a
    /// CreateError event naming those that cannot be listed (it keeps waiting, and /readyz
    /// fails meanwhile).
    #[arg(long, default_value = "2m", value_parser = duration, value_name = "DURATION")]
    cache_sync_timeout: Duration,
    /// Let hooks be sent credentials (a `user:password@` URL, bearer tokens, basic auth) over
    /// plain http://, where anyone on the network path can read them. Without it, such
    /// controllers fail to start with a CreateError event.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", value_name = "BOOL", action = clap::ArgAction::Set)]
    allow_insecure_hook_credentials: bool,
    /// Run only controllers that name the ServiceAccount they act as (annotation
    /// bosun.dev/service-account: <namespace>/<name>); any other fails to start with a
    /// CreateError event. See docs/engine.md, "Per-controller identity".
    #[arg(long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", value_name = "BOOL", action = clap::ArgAction::Set)]
    require_service_account: bool,
    /// Let hooks be programs that bosun runs (`exec` instead of `webhook`: the request on
    /// standard input, the response on standard output), on its host or in its image. They
    /// run with bosun's own identity and rights, so they are off unless enabled here; a
    /// controller with one otherwise fails to start with a CreateError event.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", value_name = "BOOL", action = clap::ArgAction::Set)]
    exec_hooks: bool,
    /// The most exec hooks' programs running at once; further calls wait their turn within
    /// their timeout.
    #[arg(long, default_value_t = bosun_engine::DEFAULT_MAX_EXEC_PROCESSES as u16, value_parser = clap::value_parser!(u16).range(1..), value_name = "N")]
    max_exec_hook_processes: u16,
}

impl EngineArgs {
    /// The engine configuration these flags describe.
    pub fn config(&self) -> EngineConfig {
        let apply_strategy = match self.apply_strategy.as_str() {
            "server-side-apply" => ApplyStrategy::ServerSideApply { field_manager: self.apply_strategy_ssa_field_manager.clone() },
            _ => ApplyStrategy::DynamicApply,
        };
        let selector = bosun_engine::selector::parse(&self.target_label_selector).expect("validated by clap");
        EngineConfig {
            workers: self.workers.into(),
            apply_strategy,
            discovery_interval: self.discovery_interval,
            resync_interval: self.cache_flush_interval,
            target_label_selector: (!bosun_engine::selector::is_empty(&selector)).then_some(selector),
            events_qps: self.events_qps,
            events_burst: self.events_burst,
            max_hook_response_bytes: self.max_hook_response_bytes,
            allow_insecure_hook_credentials: self.allow_insecure_hook_credentials,
            exec_hooks: self.exec_hooks,
            max_exec_processes: self.max_exec_hook_processes.into(),
            require_service_account: self.require_service_account,
            cache_sync_timeout: self.cache_sync_timeout,
        }
    }
}

/// Leader election (Metacontroller's flags, controller-runtime's durations).
#[derive(Debug, Args)]
pub struct LeaderElectionArgs {
    /// Run only while holding a coordination.k8s.io Lease, so that several replicas can run
    /// with one active.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", value_name = "BOOL", action = clap::ArgAction::Set)]
    leader_election: bool,
    /// The Lease's name.
    #[arg(long, default_value = "metacontroller", value_name = "NAME")]
    leader_election_id: String,
    /// The Lease's namespace. Default: the namespace of the Pod's ServiceAccount; required
    /// outside a cluster.
    #[arg(long, value_name = "NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// The lock type; only `leases` exists in current Kubernetes.
    #[arg(long, default_value = "leases", value_parser = ["leases"])]
    leader_election_resource_lock: String,
    /// How long a Lease that is not renewed stays with its holder.
    #[arg(long, default_value = "15s", value_parser = duration, value_name = "DURATION")]
    leader_election_lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up leadership.
    #[arg(long, default_value = "10s", value_parser = duration, value_name = "DURATION")]
    leader_election_renew_deadline: Duration,
    /// How often to try to acquire or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = duration, value_name = "DURATION")]
    leader_election_retry_period: Duration,
}

/// Where a Pod's ServiceAccount namespace is mounted.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl LeaderElectionArgs {
    /// The election to run, if enabled (sharding needs one: its winner coordinates).
    fn config(&self, sharding: bool) -> anyhow::Result<Option<LeaderElectionConfig>> {
        if !self.leader_election && !sharding {
            return Ok(None);
        }
        let flag = if sharding { "--sharding" } else { "--leader-election" };
        let namespace = match &self.leader_election_namespace {
            Some(namespace) => namespace.clone(),
            None => std::fs::read_to_string(POD_NAMESPACE_FILE)
                .map(|text| text.trim().to_owned())
                .map_err(|_| anyhow::anyhow!("{flag} needs --leader-election-namespace when not running in a Pod"))?,
        };
        if self.leader_election_renew_deadline >= self.leader_election_lease_duration {
            anyhow::bail!("--leader-election-renew-deadline must be shorter than --leader-election-lease-duration");
        }
        let mut config = LeaderElectionConfig::new(&self.leader_election_id, namespace);
        config.lease_duration = self.leader_election_lease_duration;
        config.renew_deadline = self.leader_election_renew_deadline;
        config.retry_period = self.leader_election_retry_period;
        Ok(Some(config))
    }
}

/// Sharding: every replica syncs a share of the parents (see `docs/operations.md`, "Sharding").
#[derive(Debug, Args)]
pub struct ShardingArgs {
    /// Share the parents among all replicas that run with the same --sharding-ring, each
    /// syncing its own and never two the same parent: a replica holds a Lease of its own
    /// (named --shard-name, in --leader-election-namespace, with the leader election timing),
    /// and the replica that wins leader election (--leader-election-id) assigns parents to
    /// replicas with the label shard.bosun.dev/<ring>. Implies --leader-election.
    #[arg(long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", value_name = "BOOL", action = clap::ArgAction::Set)]
    sharding: bool,
    /// This replica's shard: its Lease's name and the value of its objects' shard label.
    /// Default: $HOSTNAME (the Pod's name).
    #[arg(long, value_name = "NAME")]
    shard_name: Option<String>,
    /// The ring this replica is a shard of: replicas of one ring share its parents. Part of the
    /// labels (shard.bosun.dev/<ring>, drain.bosun.dev/<ring>).
    #[arg(long, default_value = "bosun", value_name = "NAME")]
    sharding_ring: String,
    /// How often the coordinator checks every shard and drain label of the ring and puts back
    /// what was edited (a parent's label, a child whose shard differs from its parent's).
    /// Each check lists the metadata of every parent and child of the sharded types.
    #[arg(long, default_value = "60s", value_parser = duration, value_name = "DURATION")]
    sharding_repair_period: Duration,
}

impl ShardingArgs {
    /// The sharding these flags ask for, given the leader election.
    fn sharding(&self, election: Option<&LeaderElectionConfig>) -> anyhow::Result<Option<ShardingConfig>> {
        let Some(election) = election.filter(|_| self.sharding) else { return Ok(None) };
        let name = match &self.shard_name {
            Some(name) => name.clone(),
            None => std::env::var("HOSTNAME")
                .ok()
                .filter(|name| !name.is_empty())
                .context("--sharding needs --shard-name when $HOSTNAME is not set")?,
        };
        for (flag, value) in [("--shard-name", &name), ("--sharding-ring", &self.sharding_ring)] {
            let valid = !value.is_empty()
                && value.len() <= 63
                && value.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'.')
                && value.starts_with(|c: char| c.is_ascii_alphanumeric())
                && value.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !valid {
                anyhow::bail!(
                    "{flag} {value:?} must be a lowercase name of at most 63 letters, digits, '-' and '.', starting and ending \
                     with a letter or digit: it is a Lease name and a label value"
                );
            }
        }
        let ring = Ring { name: self.sharding_ring.clone(), namespace: election.namespace.clone() };
        // The coordinator's Lease names the shard that holds it (`kubectl get lease` says which).
        let election = LeaderElectionConfig { identity: name.clone(), ..election.clone() };
        Ok(Some(ShardingConfig { ring, name, election, repair_period: self.sharding_repair_period }))
    }
}

/// Admission and conversion hooks (AdmissionControllers; see docs/admission.md).
#[derive(Debug, Args)]
pub struct AdmissionArgs {
    /// Serve admission and conversion reviews, reached by the API server through this
    /// Service (`<namespace>/<name>`, port 443, or `<namespace>/<name>:<port>`), whose
    /// endpoints are bosun's Pods on --admission-address. Every replica serves.
    #[arg(long, value_name = "NAMESPACE/NAME[:PORT]", value_parser = admission_service, conflicts_with = "admission_url")]
    admission_service: Option<(String, String, i32)>,
    /// Serve admission and conversion reviews, reached by the API server at this base URL
    /// (`https://10.0.0.5:9443`): for an API server outside the cluster's network.
    #[arg(long, value_name = "URL")]
    admission_url: Option<String>,
    /// Where the admission endpoint listens (HTTPS).
    #[arg(long, default_value = ":9443", value_parser = listen_address, value_name = "ADDRESS")]
    admission_address: ListenAddress,
    /// The Secret holding bosun's admission CA (made on first start, shared by every
    /// replica), as `<namespace>/<name>`. Default: bosun-admission-ca in bosun's namespace.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = crate::rbac::service_account)]
    admission_ca_secret: Option<(String, String)>,
    /// How long a replica that is shutting down keeps serving admission, unready, before it
    /// stops taking connections: the time for the Service's endpoints to drop it, so that a
    /// rolling restart loses no request. Keep it below --graceful-shutdown-timeout.
    #[arg(long, default_value = "5s", value_parser = duration, value_name = "DURATION")]
    admission_drain_delay: Duration,
}

fn admission_service(text: &str) -> Result<(String, String, i32), String> {
    let (service, port) = match text.rsplit_once(':') {
        Some((service, port)) => (service, port.parse::<i32>().map_err(|_| format!("{port:?} is not a port"))?),
        None => (text, 443),
    };
    let (namespace, name) = crate::rbac::service_account(service).map_err(|_| format!("{text:?} is not <namespace>/<name>[:<port>]"))?;
    Ok((namespace, name, port))
}

impl AdmissionArgs {
    /// The admission settings, if admission is on; `own_namespace` holds the CA by default.
    fn config(&self, engine: &EngineArgs, own_namespace: Option<&str>) -> anyhow::Result<Option<bosun_engine::admission::AdmissionConfig>> {
        use bosun_engine::admission::{AdmissionConfig, Endpoint};
        let endpoint = match (&self.admission_service, &self.admission_url) {
            (Some((namespace, name, port)), _) => Endpoint::Service { namespace: namespace.clone(), name: name.clone(), port: *port },
            (None, Some(url)) => Endpoint::Url(url.clone()),
            (None, None) => return Ok(None),
        };
        let Some(listen) = self.admission_address.0 else { anyhow::bail!("--admission-address 0: admission needs somewhere to listen") };
        let ca_secret = match (&self.admission_ca_secret, own_namespace) {
            (Some(secret), _) => secret.clone(),
            (None, Some(namespace)) => (namespace.to_owned(), "bosun-admission-ca".to_owned()),
            (None, None) => anyhow::bail!("admission needs --admission-ca-secret when not running in a Pod"),
        };
        Ok(Some(AdmissionConfig {
            listen: bosun_engine::admission::Listen::Address(listen),
            endpoint,
            ca_secret,
            allow_insecure_hook_credentials: engine.allow_insecure_hook_credentials,
            exec_hooks: engine.exec_hooks,
            max_hook_response_bytes: engine.max_hook_response_bytes,
            target_label_selector: engine.config().target_label_selector,
            rotation_overlap: bosun_engine::admission::ROTATION_OVERLAP,
            drain_delay: self.admission_drain_delay,
        }))
    }
}

/// Admission served on a free port of 127.0.0.1, for the local API server of `bosun dev`
/// (its CA kept in `default`).
#[cfg(feature = "dev")]
pub fn loopback_admission(engine: &EngineArgs) -> anyhow::Result<bosun_engine::admission::AdmissionConfig> {
    // Bound now: no hook started meanwhile can take its port.
    let mut config = bosun_engine::admission::AdmissionConfig::loopback(("default".into(), "bosun-admission-ca".into()))
        .context("binding the admission endpoint on 127.0.0.1")?;
    config.allow_insecure_hook_credentials = engine.allow_insecure_hook_credentials;
    config.exec_hooks = engine.exec_hooks;
    config.max_hook_response_bytes = engine.max_hook_response_bytes;
    config.target_label_selector = engine.config().target_label_selector;
    Ok(config)
}

/// The native operators that run next to the engine.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Run the ConfigMapSync operator (bosun.dev/v1alpha1). Default: run it if its CRD is
    /// installed (`bosun crds configmapsync | kubectl apply --server-side -f -`); `true`:
    /// refuse to start without the CRD; `false`: never.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    configmapsync: Option<bool>,
    /// ConfigMapSyncs reconciled at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..), value_name = "N")]
    configmapsync_workers: u16,
    /// Copies one ConfigMapSync writes at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..), value_name = "N")]
    configmapsync_write_concurrency: u16,
    /// Write copies only into namespaces that consent: their annotation
    /// `configmapsync.bosun.dev/accept-from` lists the source namespaces they accept (or `*`).
    /// `false` gives the original tutorial's behaviour, where anyone who may create a
    /// ConfigMapSync writes into every namespace but the system ones.
    #[arg(long, default_value_t = true, value_name = "BOOL", action = clap::ArgAction::Set)]
    configmapsync_require_consent: bool,
    /// A system namespace (`kube-*`, or bosun's own) that may receive copies all the same;
    /// repeat or separate with commas. Without it, no system namespace ever does.
    #[arg(long, value_name = "NAMESPACE", value_delimiter = ',')]
    configmapsync_allow_system_namespace: Vec<String>,
    /// The most namespaces one ConfigMapSync may write to; one selecting more is refused
    /// (reason TooManyDestinations) and writes nothing.
    #[arg(long, default_value_t = bosun_operators::configmapsync::DEFAULT_MAX_DESTINATIONS, value_name = "N")]
    configmapsync_max_destinations: usize,
    /// The largest source ConfigMap copied, in bytes of data and binaryData; a larger one is
    /// refused (reason SourceTooLarge) and nothing is written.
    #[arg(long, default_value_t = bosun_operators::configmapsync::DEFAULT_MAX_SOURCE_BYTES, value_name = "BYTES")]
    configmapsync_max_source_bytes: usize,
}

impl OperatorArgs {
    /// The ConfigMapSync operator's options; `own_namespace` is bosun's own, protected like
    /// the `kube-*` ones.
    fn configmapsync_options(&self, engine: &EngineArgs, own_namespace: Option<String>) -> ConfigMapSyncOptions {
        ConfigMapSyncOptions {
            workers: self.configmapsync_workers.into(),
            write_concurrency: self.configmapsync_write_concurrency.into(),
            events_qps: engine.events_qps,
            events_burst: engine.events_burst,
            require_consent: self.configmapsync_require_consent,
            own_namespace,
            allowed_system_namespaces: self.configmapsync_allow_system_namespace.iter().cloned().collect(),
            max_destinations: self.configmapsync_max_destinations,
            max_source_bytes: self.configmapsync_max_source_bytes,
        }
    }

    /// Whether to run the ConfigMapSync operator, given whether the API server serves its CRD.
    async fn run_configmapsync(&self, context: &bosun_runtime::Context) -> anyhow::Result<bool> {
        if self.configmapsync == Some(false) {
            return Ok(false);
        }
        if let Some(namespaces) = context.caches.namespaces() {
            if self.configmapsync == Some(true) {
                anyhow::bail!(
                    "--configmapsync=true, but this install watches only the namespaces {} (--namespace): ConfigMapSync copies \
                     into every namespace that consents, so it needs a cluster-wide install",
                    namespaces.join(",")
                );
            }
            tracing::info!(
                "watching only some namespaces (--namespace): the ConfigMapSync operator, which writes across namespaces, is not started"
            );
            return Ok(false);
        }
        let client = &context.client;
        let api_version = <ConfigMapSync as kube::Resource>::api_version(&());
        let served = match client.list_api_group_resources(&api_version).await {
            Ok(resources) => resources.resources.iter().any(|resource| resource.name == "configmapsyncs"),
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(error) => return Err(error).context("discovering whether the ConfigMapSync CRD is installed"),
        };
        match (served, self.configmapsync) {
            (true, _) => Ok(true),
            (false, Some(true)) => anyhow::bail!(
                "--configmapsync=true, but the API server does not serve configmapsyncs.{api_version}: install the CRD with \
                 `bosun crds configmapsync | kubectl apply --server-side -f -`"
            ),
            (false, _) => {
                tracing::info!("the ConfigMapSync CRD is not installed; the ConfigMapSync operator is not started");
                Ok(false)
            }
        }
    }
}

/// A namespace name (a DNS-1123 label), as `--namespace` takes it.
fn namespace_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid { Ok(text.to_owned()) } else { Err(format!("{text:?} is not a namespace name (lowercase letters, digits and '-')")) }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Watch and write only in this namespace (repeat, or separate with commas): a
    /// namespace-scoped install, which needs Roles in these namespaces and only one
    /// cluster-wide rule, to read CompositeControllers and DecoratorControllers (see
    /// docs/operations.md, "Namespace-scoped install"). Parents elsewhere are ignored;
    /// controllers with cluster-scoped parents, children or targets fail to start with a
    /// CreateError event. The ConfigMapSync operator, which writes across namespaces, does not
    /// run. Not with --sharding. Default: every namespace.
    #[arg(long = "namespace", value_name = "NAMESPACE", value_delimiter = ',', value_parser = namespace_name)]
    namespaces: Vec<String>,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    operators: OperatorArgs,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    election: LeaderElectionArgs,
    #[command(flatten)]
    sharding: ShardingArgs,
    #[command(flatten)]
    admission: AdmissionArgs,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let election = args.election.config(args.sharding.sharding)?;
        let sharding = args.sharding.sharding(election.as_ref())?;
        let own_namespace = std::fs::read_to_string(POD_NAMESPACE_FILE)
            .ok()
            .map(|text| text.trim().to_owned())
            .or_else(|| args.election.leader_election_namespace.clone());
        let mut manager = Manager::new(args.serve.config(IpAddr::from([0, 0, 0, 0])));
        let client = args.cluster.client(&manager.metrics()).await?;
        manager = args.serve.secure_metrics(manager, &client, true).with_client(client.clone());
        if !args.namespaces.is_empty() {
            if sharding.is_some() {
                anyhow::bail!("--sharding and --namespace cannot be combined yet: shard a cluster-wide install, or run one engine per set of namespaces");
            }
            manager = manager.with_namespaces(&args.namespaces);
        }
        let version = client.apiserver_version().await.context("reaching the API server")?;
        tracing::info!(server = %version.git_version, "connected");
        match sharding {
            Some(sharding) => manager = manager.with_sharding(sharding),
            None => {
                if let Some(election) = election {
                    tracing::info!(lease = %election.lease_name, namespace = %election.namespace, identity = %election.identity, "leader election enabled");
                    manager = manager.with_leader_election(client, election);
                }
            }
        }
        let admission = args.admission.config(&args.engine, own_namespace.as_deref())?;
        serve(manager, &args.engine, &args.operators, admission, own_namespace).await
    })
}

/// Runs the engine (unless `--engine=false`), admission (if configured) and the native
/// operators under `manager` (which has its client, and its shard when sharded), sharing its
/// watch caches, until SIGINT or SIGTERM, then shuts down gracefully. `own_namespace` is
/// bosun's namespace, which never receives ConfigMapSync copies.
pub async fn serve(
    mut manager: Manager,
    engine: &EngineArgs,
    operators: &OperatorArgs,
    admission: Option<bosun_engine::admission::AdmissionConfig>,
    own_namespace: Option<String>,
) -> anyhow::Result<()> {
    let context = manager.context();
    let configmapsync = operators.run_configmapsync(&context).await?;
    if !engine.enabled && !configmapsync && admission.is_none() {
        anyhow::bail!("--engine=false, the ConfigMapSync operator is not running and admission is off: there is nothing to run");
    }
    if configmapsync {
        let options = operators.configmapsync_options(engine, own_namespace);
        tracing::info!(workers = options.workers, require_consent = options.require_consent, "ConfigMapSync operator starting");
        let controller = ConfigMapSyncController::new(&context, options);
        manager.add("configmapsync", move |shutdown| controller.run(shutdown.requested()));
    }
    if let Some(config) = admission {
        tracing::info!(endpoint = ?config.endpoint, "admission starting");
        let admission = bosun_engine::admission::Admission::new(&context, config);
        // Every replica answers reviews; the leader keeps the configurations wired.
        let serving = admission.clone();
        manager.add_everywhere("admission-server", move |shutdown| serving.serve(shutdown.requested()));
        manager.add("admission-wiring", move |shutdown| admission.wire(shutdown.requested()));
    }
    if engine.enabled {
        let config = engine.config();
        tracing::info!(workers = config.workers, apply_strategy = ?config.apply_strategy, "engine starting");
        let engine = Engine::new(&context, config);
        manager.add("engine", move |shutdown| engine.run(shutdown.requested()));
    }
    manager.run(bosun_runtime::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
