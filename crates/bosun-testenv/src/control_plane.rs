//! A running local control plane: etcd, kube-apiserver and kube-controller-manager on
//! random loopback ports, with RBAC authorization and client-certificate authentication, and
//! on request kube-scheduler with simulated nodes (see [`crate::nodes`]) so that Pods run.
//!
//! Startup follows envtest's recipe (see `reference/frameworks.md` §3.2) with two
//! differences that matter for controllers: kube-controller-manager runs too, so garbage
//! collection, namespace deletion and ServiceAccount tokens behave as in a real cluster, and
//! every certificate is generated in-process for each start.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::binaries::{Binaries, BuildError, Component};
use crate::kubeconfig::{self, Credentials};
use crate::pki::Pki;
use crate::process::ManagedProcess;
use crate::progress::Progress;

/// The kube-controller-manager controllers started by default: enough for owner references,
/// namespace deletion, ServiceAccounts with tokens, and aggregated ClusterRoles to behave as in
/// a real cluster. Without nodes ([`ControlPlaneBuilder::nodes`]) no scheduler or kubelet
/// runs, so Pods stay Pending.
pub const DEFAULT_CONTROLLERS: &[&str] =
    &["garbagecollector", "namespace", "serviceaccount", "serviceaccount-token", "clusterrole-aggregation"];

/// The admin user's name; it is in the `system:masters` group.
pub const ADMIN_USER: &str = "bosun-admin";

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why the control plane could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The binaries could not be built or found.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Generating certificates failed.
    #[error("generating the control plane's certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    /// A file in the control plane's directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A process exited while starting.
    #[error("{name} exited while starting; its last output:\n{output}")]
    Exited {
        /// Which process.
        name: &'static str,
        /// The end of its log.
        output: String,
    },
    /// A process did not become ready in time.
    #[error("{name} was not ready after {timeout:?}; its last output:\n{output}")]
    NotReady {
        /// Which process.
        name: &'static str,
        /// How long we waited.
        timeout: Duration,
        /// The end of its log.
        output: String,
    },
    /// A kubeconfig could not be turned into a client configuration.
    #[error("loading the generated kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A client could not be built.
    #[error("building a client: {0}")]
    Client(#[from] kube::Error),
    /// A ServiceAccount token could not be had.
    #[error("requesting a token for ServiceAccount {account}: {source}")]
    Token {
        /// `namespace/name`.
        account: String,
        /// The API's answer.
        source: kube::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// Configures and starts a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct ControlPlaneBuilder {
    controllers: Vec<String>,
    apiserver_args: Vec<String>,
    binaries: Option<Binaries>,
    nodes: usize,
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        ControlPlaneBuilder {
            controllers: DEFAULT_CONTROLLERS.iter().map(|name| name.to_string()).collect(),
            apiserver_args: Vec::new(),
            binaries: None,
            nodes: 0,
        }
    }
}

impl ControlPlaneBuilder {
    /// Also run this kube-controller-manager controller (e.g. `job`, `deployment`).
    pub fn controller(mut self, name: impl Into<String>) -> Self {
        self.controllers.push(name.into());
        self
    }

    /// Also pass this flag to kube-apiserver (e.g. `--etcd-compaction-interval=1s`).
    pub fn apiserver_arg(mut self, arg: impl Into<String>) -> Self {
        self.apiserver_args.push(arg.into());
        self
    }

    /// Run `count` simulated nodes (named `node-1` …): kube-scheduler places Pods on them,
    /// KWOK's `kwok` runs them (see [`crate::nodes`]), and kube-controller-manager also runs
    /// [`NODE_CONTROLLERS`](crate::NODE_CONTROLLERS) (Deployments, StatefulSets, Jobs,
    /// EndpointSlices, …). 0, the default, runs none: Pods stay Pending and the control plane
    /// starts faster and uses less memory.
    pub fn nodes(mut self, count: usize) -> Self {
        self.nodes = count;
        self
    }

    /// Use these binaries instead of [`Binaries::ensure`].
    pub fn binaries(mut self, binaries: Binaries) -> Self {
        self.binaries = Some(binaries);
        self
    }

    /// Builds the binaries if needed, then starts etcd, kube-apiserver and
    /// kube-controller-manager (and with nodes kube-scheduler and `kwok`) and waits until each
    /// is ready, and with nodes until every node is Ready.
    pub async fn start(mut self) -> Result<ControlPlane, Error> {
        let binaries = match self.binaries {
            Some(binaries) => binaries,
            None => tokio::task::spawn_blocking(Binaries::ensure).await.expect("building does not panic")?,
        };
        let started = Instant::now();
        let dir = work_dir()?;
        let mut plane = ControlPlane {
            dir,
            server: String::new(),
            kubeconfig: PathBuf::new(),
            config: None,
            pki: Pki::generate(&["localhost", "127.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc"])?,
            processes: Mutex::new(Vec::new()),
            binaries,
            apiserver: None,
        };
        plane.write_pki()?;
        let etcd = plane.start_etcd().await?;
        plane.start_apiserver(&etcd, &self.apiserver_args).await?;
        if self.nodes > 0 {
            self.controllers.extend(crate::NODE_CONTROLLERS.iter().map(|name| name.to_string()));
        }
        plane.start_controller_manager(&self.controllers).await?;
        if self.nodes > 0 {
            plane.start_scheduler().await?;
            plane.start_nodes(self.nodes).await?;
        }
        tracing::info!(elapsed = ?started.elapsed(), server = %plane.server, nodes = self.nodes, "local control plane ready");
        Ok(plane)
    }
}

/// A running local control plane. Dropping it (or [`ControlPlane::stop`]) stops every process
/// and removes its directory; the processes also die with the current process.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    kubeconfig: PathBuf,
    config: Option<kube::Config>,
    pki: Pki,
    /// In start order; stopped in reverse.
    processes: Mutex<Vec<ManagedProcess>>,
    binaries: Binaries,
    /// kube-apiserver's arguments and the admin kubeconfig that probes it, to restart it as it was.
    apiserver: Option<(Vec<String>, String)>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pki { .. }")
    }
}

impl ControlPlane {
    /// A builder, to choose more kube-controller-manager controllers.
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    /// Starts a control plane with the defaults.
    pub async fn start() -> Result<ControlPlane, Error> {
        Self::builder().start().await
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The admin kubeconfig file (user [`ADMIN_USER`] in `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory holding the control plane's certificates, logs and etcd data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The binaries this control plane runs.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// The admin client configuration.
    pub fn config(&self) -> kube::Config {
        self.config.clone().expect("set once the API server is ready")
    }

    /// A new admin client. Clients belong to the tokio runtime they are made in, so make one
    /// per runtime (per test) rather than sharing one.
    pub fn client(&self) -> Result<kube::Client, Error> {
        Ok(kube::Client::try_from(self.config())?)
    }

    /// A client configuration that authenticates with a bearer token, such as a
    /// ServiceAccount token from the TokenRequest API.
    pub async fn config_for_token(&self, token: &str) -> Result<kube::Config, Error> {
        Ok(kubeconfig::client_config(&self.kubeconfig_for_token(token)).await?)
    }

    /// A kubeconfig document that authenticates with a bearer token, for a process (kubectl,
    /// `bosun run`) that should act as a ServiceAccount, as in a Pod.
    pub fn kubeconfig_for_token(&self, token: &str) -> String {
        kubeconfig::document(&self.server, &self.pki.serving_ca, Credentials::Token(token))
    }

    /// A token for ServiceAccount `name` in `namespace` from the TokenRequest API, valid for an
    /// hour: what a Pod running as that account presents. The account is created if missing.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> Result<String, Error> {
        let token_error = |source| Error::Token { account: format!("{namespace}/{name}"), source };
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client()?, namespace);
        let account = ServiceAccount { metadata: ObjectMeta { name: Some(name.to_owned()), ..Default::default() }, ..Default::default() };
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(token_error(error)),
        }
        let request =
            TokenRequest { spec: Some(TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() }), ..Default::default() };
        let response = accounts.create_token_request(name, &PostParams::default(), &request).await.map_err(token_error)?;
        Ok(response.status.and_then(|status| status.token).unwrap_or_default())
    }

    /// The process ids of etcd, kube-apiserver, kube-controller-manager (and with nodes
    /// kube-scheduler and kwok), while running.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let processes = self.processes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        processes.iter().map(|process| (process.name(), process.pid())).collect()
    }

    /// Stops kube-apiserver (SIGTERM) and starts it again on the same address with the same
    /// settings, as an upgrade or a crash does, and waits until it is ready; etcd keeps every
    /// object. Clients see their connections and watches break. Returns how long the API
    /// server was away. (Blocks the calling thread while the old process exits.)
    pub async fn restart_apiserver(&self) -> Result<Duration, Error> {
        const NAME: &str = "kube-apiserver";
        let (args, document) = self.apiserver.clone().expect("a started control plane has an API server");
        let started = Instant::now();
        {
            let mut processes = self.processes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let old = processes.iter_mut().find(|process| process.name() == NAME).expect("kube-apiserver is running");
            old.stop(STOP_GRACE);
        }
        let binary = self.binaries.path(Component::KubeApiserver);
        let mut process =
            ManagedProcess::spawn(NAME, &binary, &args, self.dir.join("kube-apiserver.restarted.log")).map_err(io_error(&binary))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while !get_ok(&document, "/readyz").await {
            if !process.is_running() || Instant::now() > deadline {
                let output = process.log_tail(40);
                return Err(if process.is_running() {
                    Error::NotReady { name: NAME, timeout: READY_TIMEOUT, output }
                } else {
                    Error::Exited { name: NAME, output }
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut processes = self.processes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(old) = processes.iter_mut().find(|process| process.name() == NAME) {
            *old = process;
        }
        Ok(started.elapsed())
    }

    /// Stops every process, newest first, and removes the control plane's directory.
    /// Calling it again does nothing.
    pub fn stop(&self) {
        let mut processes = self.processes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if processes.is_empty() {
            return;
        }
        while let Some(mut process) = processes.pop() {
            process.stop(STOP_GRACE);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn write_pki(&self) -> Result<(), Error> {
        let pki = self.dir.join("pki");
        std::fs::create_dir_all(&pki).map_err(io_error(&pki))?;
        for (name, contents) in [
            ("serving-ca.crt", &self.pki.serving_ca),
            ("serving.crt", &self.pki.serving.cert),
            ("serving.key", &self.pki.serving.key),
            ("client-ca.crt", &self.pki.client_ca_cert),
            ("service-account.key", &self.pki.service_account_key),
            ("service-account.pub", &self.pki.service_account_public_key),
        ] {
            let path = pki.join(name);
            kubeconfig::write_private(&path, contents).map_err(io_error(&path))?;
        }
        Ok(())
    }

    fn pki_path(&self, name: &str) -> String {
        self.dir.join("pki").join(name).display().to_string()
    }

    fn admit(&self, process: ManagedProcess) {
        self.processes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(process);
    }

    /// Starts etcd and returns its client URL.
    async fn start_etcd(&self) -> Result<String, Error> {
        let data = self.dir.join("etcd");
        let binary = self.binaries.path(Component::Etcd);
        let (process, client_port) = self
            .start_process(
                "etcd",
                &binary,
                || {
                    let (client, peer) = (crate::free_port(), crate::free_port());
                    let client_url = format!("http://127.0.0.1:{client}");
                    let peer_url = format!("http://127.0.0.1:{peer}");
                    let args = vec![
                        "--name=bosun-testenv".to_owned(),
                        format!("--data-dir={}", data.display()),
                        format!("--listen-client-urls={client_url}"),
                        format!("--advertise-client-urls={client_url}"),
                        format!("--listen-peer-urls={peer_url}"),
                        format!("--initial-advertise-peer-urls={peer_url}"),
                        format!("--initial-cluster=bosun-testenv={peer_url}"),
                        // Throw-away data: durability costs time and buys nothing here.
                        "--unsafe-no-fsync=true".to_owned(),
                        "--log-level=warn".to_owned(),
                    ];
                    (args, client)
                },
                async |port| etcd_healthy(*port).await,
            )
            .await?;
        self.admit(process);
        Ok(format!("http://127.0.0.1:{client_port}"))
    }

    async fn start_apiserver(&mut self, etcd: &str, extra: &[String]) -> Result<(), Error> {
        let admin = self.pki.client_certificate(ADMIN_USER, &["system:masters"])?;
        let binary = self.binaries.path(Component::KubeApiserver);
        let serving_ca = self.pki.serving_ca.clone();
        let (process, (server, document, args)) = self
            .start_process(
                "kube-apiserver",
                &binary,
                || {
                    let port = crate::free_port();
                    let mut args = vec![
                        format!("--etcd-servers={etcd}"),
                        "--bind-address=127.0.0.1".to_owned(),
                        format!("--secure-port={port}"),
                        format!("--tls-cert-file={}", self.pki_path("serving.crt")),
                        format!("--tls-private-key-file={}", self.pki_path("serving.key")),
                        format!("--client-ca-file={}", self.pki_path("client-ca.crt")),
                        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
                        format!("--service-account-key-file={}", self.pki_path("service-account.pub")),
                        format!("--service-account-signing-key-file={}", self.pki_path("service-account.key")),
                        "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
                        "--authorization-mode=RBAC".to_owned(),
                        "--allow-privileged=true".to_owned(),
                        // As in envtest: no kubelet mounts tokens, and a fresh namespace's default
                        // ServiceAccount must not race Pod creation.
                        "--disable-admission-plugins=ServiceAccount".to_owned(),
                    ];
                    args.extend_from_slice(extra);
                    let server = format!("https://127.0.0.1:{port}");
                    let document = kubeconfig::document(&server, &serving_ca, Credentials::Certificate(&admin));
                    (args.clone(), (server, document, args))
                },
                async |(_, document, _)| get_ok(document, "/readyz").await,
            )
            .await?;
        self.admit(process);
        let path = self.dir.join("kubeconfig");
        kubeconfig::write_private(&path, &document).map_err(io_error(&path))?;
        self.config = Some(kubeconfig::client_config(&document).await?);
        self.server = server;
        self.kubeconfig = path;
        self.apiserver = Some((args, document));
        Ok(())
    }

    /// Writes a kubeconfig for component `name` (a user of that name in `system:masters`) and
    /// returns its path and the certificate it authenticates with.
    fn component_kubeconfig(&self, name: &str) -> Result<(PathBuf, crate::pki::CertifiedKey), Error> {
        let identity = self.pki.client_certificate(name, &["system:masters"])?;
        let document = kubeconfig::document(&self.server, &self.pki.serving_ca, Credentials::Certificate(&identity));
        let path = self.dir.join(format!("{}.kubeconfig", name.trim_start_matches("system:")));
        kubeconfig::write_private(&path, &document).map_err(io_error(&path))?;
        Ok((path, identity))
    }

    /// A kubeconfig document that reaches a component's own HTTPS port on loopback with its
    /// identity, to probe its health over verified TLS.
    fn health_document(&self, port: u16, identity: &crate::pki::CertifiedKey) -> String {
        kubeconfig::document(&format!("https://127.0.0.1:{port}"), &self.pki.serving_ca, Credentials::Certificate(identity))
    }

    async fn start_controller_manager(&self, controllers: &[String]) -> Result<(), Error> {
        let (kubeconfig_path, identity) = self.component_kubeconfig("system:kube-controller-manager")?;
        let binary = self.binaries.path(Component::KubeControllerManager);
        let (process, _) = self
            .start_process(
                "kube-controller-manager",
                &binary,
                || {
                    let port = crate::free_port();
                    let args = vec![
                        format!("--kubeconfig={}", kubeconfig_path.display()),
                        format!("--controllers={}", controllers.join(",")),
                        "--leader-elect=false".to_owned(),
                        // client-go's 20 requests/s would make garbage collection of a thousand
                        // children take most of a minute.
                        "--kube-api-qps=200".to_owned(),
                        "--kube-api-burst=400".to_owned(),
                        "--bind-address=127.0.0.1".to_owned(),
                        format!("--secure-port={port}"),
                        // The loopback serving certificate, so that its health is probed over verified TLS.
                        format!("--tls-cert-file={}", self.pki_path("serving.crt")),
                        format!("--tls-private-key-file={}", self.pki_path("serving.key")),
                        format!("--service-account-private-key-file={}", self.pki_path("service-account.key")),
                        format!("--root-ca-file={}", self.pki_path("serving-ca.crt")),
                        "--use-service-account-credentials=false".to_owned(),
                        // Serves the default StorageClass of simulated nodes (crate::storage).
                        "--enable-hostpath-provisioner=true".to_owned(),
                    ];
                    (args, self.health_document(port, &identity))
                },
                async |health| get_ok(health, "/healthz").await,
            )
            .await?;
        self.admit(process);
        Ok(())
    }

    async fn start_scheduler(&self) -> Result<(), Error> {
        let (kubeconfig_path, identity) = self.component_kubeconfig("system:kube-scheduler")?;
        let config = self.dir.join("kube-scheduler.yaml");
        std::fs::write(&config, crate::nodes::scheduler_config(&kubeconfig_path)).map_err(io_error(&config))?;
        let binary = self.binaries.path(Component::KubeScheduler);
        let (process, _) = self
            .start_process(
                "kube-scheduler",
                &binary,
                || {
                    let port = crate::free_port();
                    let args = vec![
                        format!("--config={}", config.display()),
                        "--bind-address=127.0.0.1".to_owned(),
                        format!("--secure-port={port}"),
                        format!("--tls-cert-file={}", self.pki_path("serving.crt")),
                        format!("--tls-private-key-file={}", self.pki_path("serving.key")),
                    ];
                    (args, self.health_document(port, &identity))
                },
                async |health| get_ok(health, "/healthz").await,
            )
            .await?;
        self.admit(process);
        Ok(())
    }

    /// Starts `kwok` as the kubelet of `count` simulated nodes, creates the nodes and waits
    /// until each reports Ready.
    async fn start_nodes(&self, count: usize) -> Result<(), Error> {
        const NAME: &str = "kwok";
        let (kubeconfig_path, _) = self.component_kubeconfig("system:kwok")?;
        let stages = self.dir.join("kwok-stages.yaml");
        std::fs::write(&stages, crate::nodes::STAGES).map_err(io_error(&stages))?;
        let binary = self.binaries.path(Component::Kwok);
        let (process, _) = self
            .start_process(
                NAME,
                &binary,
                || {
                    let port = crate::free_port();
                    let (key, value) = crate::nodes::MANAGED_BY_KWOK;
                    let args = vec![
                        format!("--kubeconfig={}", kubeconfig_path.display()),
                        format!("--config={}", stages.display()),
                        format!("--manage-nodes-with-annotation-selector={key}={value}"),
                        format!("--cidr={}", crate::nodes::POD_CIDR),
                        format!("--node-lease-duration-seconds={}", crate::nodes::LEASE_SECONDS),
                        format!("--server-address=127.0.0.1:{port}"),
                    ];
                    (args, port)
                },
                async |port| http_ok(*port, "/healthz").await,
            )
            .await?;
        self.admit(process);
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(self.client()?);
        crate::nodes::create(&nodes, count).await?;
        crate::storage::create(&kube::Api::all(self.client()?)).await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = nodes.list(&Default::default()).await?.items.iter().filter(|node| crate::nodes::is_ready(node)).count();
            if ready >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                let output = self.log_tail(NAME);
                return Err(Error::NotReady { name: "simulated nodes", timeout: READY_TIMEOUT, output });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The end of the log of the running process `name`.
    fn log_tail(&self, name: &str) -> String {
        let processes = self.processes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        processes.iter().find(|process| process.name() == name).map(|process| process.log_tail(40)).unwrap_or_default()
    }

    /// Starts a process with fresh ports from `configure` until it becomes ready, retrying when
    /// another process took one of its ports between our check and its bind.
    async fn start_process<T>(
        &self,
        name: &'static str,
        binary: &Path,
        mut configure: impl FnMut() -> (Vec<String>, T),
        ready: impl AsyncFn(&T) -> bool,
    ) -> Result<(ManagedProcess, T), Error> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (args, value) = configure();
            let log = self.dir.join(format!("{name}.log"));
            let mut process = ManagedProcess::spawn(name, binary, &args, log.clone()).map_err(io_error(binary))?;
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if ready(&value).await {
                    tracing::debug!(name, elapsed = ?started.elapsed(), "ready");
                    return Ok((process, value));
                }
                if !process.is_running() {
                    let output = process.log_tail(40);
                    if output.contains("address already in use") && attempt < START_ATTEMPTS {
                        Progress::line(format_args!("{name}: a port was taken, retrying with new ports"));
                        break;
                    }
                    return Err(Error::Exited { name, output });
                }
                if Instant::now() > deadline {
                    let output = process.log_tail(40);
                    process.stop(STOP_GRACE);
                    return Err(Error::NotReady { name, timeout: READY_TIMEOUT, output });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A new directory for this control plane under `$TMPDIR/bosun-testenv`, after removing the
/// directories of control planes whose process is gone (a `kill -9` leaves them behind).
fn work_dir() -> Result<PathBuf, Error> {
    let root = std::env::temp_dir().join("bosun-testenv");
    std::fs::create_dir_all(&root).map_err(io_error(&root))?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let owner = name.to_str().and_then(|name| name.split('-').next()).and_then(|pid| pid.parse::<u32>().ok());
            if owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    for _ in 0..100 {
        let dir = root.join(format!("{}-{}", std::process::id(), crate::unique_suffix()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(io_error(&dir)(error)),
        }
    }
    Err(io_error(&root)(std::io::Error::other("no unused directory name")))
}

/// etcd answers `{"health":"true"}` on its client port.
async fn etcd_healthy(port: u16) -> bool {
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response.contains("\"health\":\"true\""))
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), request).await, Ok(Ok(true)))
}

/// Whether plain-HTTP `GET path` on a loopback port answers `ok` (kwok's health endpoint).
async fn http_ok(port: u16, path: &str) -> bool {
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response.starts_with("HTTP/1.") && response.contains(" 200 ") && response.ends_with("ok"))
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), request).await, Ok(Ok(true)))
}

/// Whether `GET path` answers `ok`, asked with the credentials of a kubeconfig `document`.
/// A bare HTTP client over kube's TLS settings: kube's own client would log every refused
/// connection and every 500 of a server that is still starting.
async fn get_ok(document: &str, path: &str) -> bool {
    use http_body_util::BodyExt;
    use kube::client::ConfigExt;
    let Ok(config) = kubeconfig::client_config(document).await else { return false };
    let Ok(connector) = config.rustls_https_connector() else { return false };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(connector);
    let Ok(uri) = format!("{}{}", config.cluster_url.to_string().trim_end_matches('/'), path).parse::<http::Uri>() else {
        return false;
    };
    let request = async {
        let response = client.get(uri).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(body.as_ref() == b"ok")
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), request).await, Ok(Some(true)))
}
