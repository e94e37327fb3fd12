//! Admission and conversion hooks. An `AdmissionController` (`bosun.dev/v1alpha1`,
//! cluster-scoped, [`api`]) names the objects the API server should send for admission and
//! its `validate`, `mutate` and `convert` hooks — HTTP handlers in any language, declared as
//! sync hooks are. bosun does everything Kubernetes demands around them: it serves the HTTPS
//! endpoint the API server calls, on every replica (`server`), with a serving certificate
//! from its own CA kept in a Secret (`ca`); it keeps the webhook configurations and CRD
//! conversion settings in line with each declaration, on the leader (`wiring`); and it
//! forwards each review to the hook in a small protocol of its own (`review`).

pub mod api;
mod ca;
mod review;
mod server;
mod wiring;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::{Context, ServingCertificate};
use kube::api::ApiResource;

pub use ca::{Authority, CaError, ROTATE_ANNOTATION};
pub use server::{Verdict, trial};
pub use wiring::FINALIZER;

/// The AdmissionController CRD.
pub fn crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    <api::AdmissionController as kube::CustomResourceExt>::crd()
}

/// The CRD as YAML, as committed in `deploy/crds/admissioncontrollers.bosun.dev.yaml`.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&crd()).expect("a CRD serializes")
}

/// How the API server reaches bosun's admission endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// At this base URL (`https://127.0.0.1:9443`): a local API server, as `bosun dev` runs.
    Url(String),
    /// Through this Service, as in a cluster.
    Service {
        /// The Service's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its port.
        port: i32,
    },
}

impl Endpoint {
    /// Whether a webhook's or a CRD conversion's `clientConfig` calls this endpoint.
    pub(crate) fn reached_by(&self, client_config: &serde_json::Value) -> bool {
        match self {
            Endpoint::Url(base) => {
                client_config["url"].as_str().is_some_and(|url| url.starts_with(&format!("{}/", base.trim_end_matches('/'))))
            }
            Endpoint::Service { namespace, name, .. } => {
                client_config["service"]["namespace"] == namespace.as_str() && client_config["service"]["name"] == name.as_str()
            }
        }
    }

    /// The names the serving certificate must carry for the API server to trust it.
    pub fn serving_names(&self) -> Vec<String> {
        match self {
            Endpoint::Url(base) => {
                let host = url::Url::parse(base).ok().and_then(|url| url.host_str().map(|host| host.trim_matches(['[', ']']).to_owned()));
                host.into_iter().collect()
            }
            Endpoint::Service { namespace, name, .. } => {
                vec![format!("{name}.{namespace}.svc"), format!("{name}.{namespace}.svc.cluster.local"), format!("{name}.{namespace}")]
            }
        }
    }
}

/// Where the admission endpoint listens.
#[derive(Debug, Clone)]
pub enum Listen {
    /// This address (`:9443`), bound when serving starts.
    Address(SocketAddr),
    /// A loopback listener bound already ([`Listen::loopback`]), so that no other server
    /// takes its port before admission serves on it.
    Bound(Arc<std::sync::Mutex<Option<std::net::TcpListener>>>),
}

impl Listen {
    /// A listener on a free port of 127.0.0.1, bound now, and its port.
    fn loopback() -> std::io::Result<(Listen, u16)> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        Ok((Listen::Bound(Arc::new(std::sync::Mutex::new(Some(listener)))), port))
    }

    /// The listener to serve on.
    async fn bind(&self) -> std::io::Result<tokio::net::TcpListener> {
        match self {
            Listen::Address(address) => tokio::net::TcpListener::bind(address).await,
            Listen::Bound(bound) => {
                let listener = bound.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
                let listener = listener.ok_or_else(|| std::io::Error::other("the admission listener is already in use"))?;
                listener.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(listener)
            }
        }
    }
}

/// The admission settings.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// Where the endpoint listens.
    pub listen: Listen,
    /// How the API server reaches it.
    pub endpoint: Endpoint,
    /// The Secret holding the admission CA, as (namespace, name).
    pub ca_secret: (String, String),
    /// Whether hooks may be sent credentials over plain http.
    pub allow_insecure_hook_credentials: bool,
    /// Whether hooks may be programs bosun runs (`exec`).
    pub exec_hooks: bool,
    /// The largest hook answer read.
    pub max_hook_response_bytes: usize,
    /// Only AdmissionControllers whose labels match are served and wired (the engine's
    /// `--target-label-selector`), so several installs can share a cluster.
    pub target_label_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// How long each step of a CA rotation waits for the one before to take effect everywhere
    /// (the API server's view of the `caBundle`, every replica's certificate).
    pub rotation_overlap: Duration,
    /// How long a replica that is shutting down keeps serving, unready, before it stops
    /// taking connections: the time for the Service's endpoints (and every node's routing) to
    /// drop it, so that a rolling restart loses no request.
    pub drain_delay: Duration,
}

impl AdmissionConfig {
    /// Admission on a free port of 127.0.0.1 (bound now), reached at that address — for a
    /// local API server, as `bosun dev` and tests run one — with its CA in `ca_secret` and the
    /// other settings at their defaults.
    pub fn loopback(ca_secret: (String, String)) -> std::io::Result<AdmissionConfig> {
        let (listen, port) = Listen::loopback()?;
        Ok(AdmissionConfig {
            listen,
            endpoint: Endpoint::Url(format!("https://127.0.0.1:{port}")),
            ca_secret,
            allow_insecure_hook_credentials: false,
            exec_hooks: false,
            max_hook_response_bytes: crate::DEFAULT_MAX_RESPONSE_BYTES,
            target_label_selector: None,
            rotation_overlap: ROTATION_OVERLAP,
            // The API server calls the address itself: no routing to wait for.
            drain_delay: Duration::ZERO,
        })
    }
}

/// The default [`AdmissionConfig::rotation_overlap`].
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(30);

/// The readiness check that passes once this replica serves admission.
const READY_CHECK: &str = "admission-server";
/// The first and the longest pause between tries to get the CA.
const CA_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Admission and conversion: [`Admission::serve`] on every replica, [`Admission::wire`] on
/// the leader.
#[derive(Clone)]
pub struct Admission {
    context: Context,
    config: AdmissionConfig,
}

impl Admission {
    /// Admission within the process's `context` (its client, caches, metrics, health).
    pub fn new(context: &Context, config: AdmissionConfig) -> Admission {
        Admission { context: context.clone(), config }
    }

    fn resource() -> ApiResource {
        ApiResource::erase::<api::AdmissionController>(&())
    }

    /// The admission CA, made once by whichever replica comes first; retried until it can be
    /// had (callers stop waiting at shutdown).
    async fn authority(&self) -> Authority {
        let (namespace, name) = &self.config.ca_secret;
        let mut pause = CA_RETRY.0;
        loop {
            match Authority::load_or_create(&self.context.client, namespace, name).await {
                Ok(authority) => return authority,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?pause, "cannot get the admission CA");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(CA_RETRY.1);
                }
            }
        }
    }

    /// Serves the admission endpoint on this replica until `shutdown`; ready (for `/readyz`,
    /// which gates the Service's endpoints) once it listens with its certificate. At
    /// `shutdown` it turns unready and keeps serving for the drain delay, each answer closing
    /// its connection, then stops taking connections and returns once the requests in flight
    /// are answered.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let health = self.context.health.clone();
        health.add_replica_check(READY_CHECK, || false);
        let mut shutdown = std::pin::pin!(shutdown);
        let prepared = tokio::select! {
            prepared = self.prepare() => prepared,
            () = &mut shutdown => None,
        };
        if let Some((listener, router, tls, _reissue)) = prepared {
            health.remove_readiness_check(READY_CHECK);
            health.add_replica_check(READY_CHECK, || true);
            // While draining, every answer closes its connection, so that clients move to
            // the other replicas between requests rather than meet a connection closed under
            // them; only connections left idle all the while are closed at the end.
            let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let router = {
                let closing = closing.clone();
                router.layer(axum::middleware::map_response(move |mut response: axum::response::Response| {
                    if closing.load(std::sync::atomic::Ordering::Relaxed) {
                        response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                    }
                    std::future::ready(response)
                }))
            };
            let draining = async {
                shutdown.await;
                closing.store(true, std::sync::atomic::Ordering::Relaxed);
                health.remove_readiness_check(READY_CHECK);
                health.add_replica_check(READY_CHECK, || false);
                let delay = self.config.drain_delay;
                tracing::info!(?delay, "admission draining: serving, unready, until the Service's endpoints drop this replica");
                tokio::time::sleep(delay).await;
            };
            bosun_runtime::secure_serving::serve_tls(listener, router, tls, draining).await;
        }
        health.remove_readiness_check(READY_CHECK);
    }

    /// What serving needs: the listener, the routes, TLS with a certificate from the CA, and
    /// the task that reissues it when the CA rotates (stopped when dropped); `None` (logged)
    /// when it cannot serve.
    async fn prepare(&self) -> Option<(tokio::net::TcpListener, axum::Router, Arc<rustls::ServerConfig>, AbortOnDrop)> {
        let authority = self.authority().await;
        let names = self.config.endpoint.serving_names();
        let certificate = match authority.issue(&names) {
            Ok(certificate) => certificate,
            Err(error) => {
                tracing::error!(%error, "cannot issue the admission serving certificate");
                return None;
            }
        };
        let serving_key = ca::ServingKey::new(certificate);
        // A new signing CA (a rotation's second step) brings a new certificate.
        let (namespace, name) = self.config.ca_secret.clone();
        let reissue = {
            let (serving_key, names, mut signing) = (serving_key.clone(), names.clone(), authority.certificate_pem.clone());
            ca::follow(self.context.client.clone(), namespace, name, move |authority, _| {
                if authority.certificate_pem == signing {
                    return;
                }
                match authority.issue(&names) {
                    Ok(certificate) => {
                        serving_key.replace(certificate);
                        signing = authority.certificate_pem;
                        tracing::info!("serving a certificate from the rotated admission CA");
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot issue a certificate from the rotated admission CA; serving the old one")
                    }
                }
            })
        };
        let reissue = AbortOnDrop(tokio::spawn(reissue));
        let tls = match bosun_runtime::secure_serving::tls_config(&ServingCertificate::Resolved(serving_key)) {
            Ok(tls) => tls,
            Err(error) => {
                tracing::error!(%error, "cannot serve admission");
                return None;
            }
        };
        let listener = match self.config.listen.bind().await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(listen = ?self.config.listen, %error, "cannot listen for admission reviews");
                return None;
            }
        };
        let controllers = self.context.caches.cluster_wide().cache(&Self::resource());
        controllers.wait_synced().await;
        let hooks = Arc::new(crate::hooks::HookClient::new(
            self.context.client.clone(),
            self.context.metrics.clone(),
            self.config.max_hook_response_bytes,
        ));
        let router = server::Routes::new(controllers, hooks, &self.config).router();
        tracing::info!(address = ?listener.local_addr().ok(), ?names, "serving admission");
        Some((listener, router, tls, reissue))
    }

    /// Keeps every AdmissionController wired into the API server until `shutdown` (the
    /// leader's job).
    pub async fn wire(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let authority = tokio::select! {
            authority = self.authority() => authority,
            () = &mut shutdown => return,
        };
        let wiring = wiring::Wiring {
            client: self.context.client.clone(),
            controllers: self.context.caches.cluster_wide().cache(&Self::resource()),
            config: self.config.clone(),
            ca_bundle: Arc::new(std::sync::RwLock::new(authority.bundle())),
        };
        wiring.run(&self.context.metrics, &self.context.health, shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Endpoint;

    #[test]
    fn an_endpoint_knows_the_client_configs_that_call_it() {
        let url = Endpoint::Url("https://127.0.0.1:9443".into());
        assert!(url.reached_by(&json!({ "url": "https://127.0.0.1:9443/validate/things" })));
        assert!(!url.reached_by(&json!({ "url": "https://127.0.0.1:94431/validate/things" })));
        let service = Endpoint::Service { namespace: "bosun-system".into(), name: "bosun-admission".into(), port: 443 };
        assert!(service.reached_by(&json!({ "service": { "namespace": "bosun-system", "name": "bosun-admission", "path": "/mutate/a" } })));
        assert!(!service.reached_by(&json!({ "service": { "namespace": "team-a", "name": "bosun-admission" } })));
        assert!(!service.reached_by(&json!({ "url": "https://bosun-admission.bosun-system.svc/mutate/a" })));
    }
}
