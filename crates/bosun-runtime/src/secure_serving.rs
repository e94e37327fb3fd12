//! Serving an endpoint that asks who you are, as controller-runtime serves the metrics of
//! kubebuilder projects: HTTPS, with a certificate from a directory (`tls.crt`, `tls.key`,
//! re-read when they change, as cert-manager rotates them) or a self-signed one made at start;
//! every request authenticated by a `TokenReview` of its bearer token and authorized by a
//! `SubjectAccessReview` of `get` on the request's path as a non-resource URL — so Prometheus
//! scrapes with a ServiceAccount bound to a ClusterRole allowing `get` on `/metrics`.
//!
//! No token is 401, a token the API server does not accept 401, a user without the right 403.
//! Verdicts are kept for a minute per token (hashed), so a scrape every few seconds costs two
//! API requests a minute, not two a scrape; the tokens themselves are never kept or logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::Api;
use kube::api::PostParams;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::Digest;

/// Where the serving certificate comes from.
#[derive(Clone, Default)]
pub enum ServingCertificate {
    /// A self-signed certificate made at start (clients skip verification, or pin it).
    #[default]
    SelfSigned,
    /// `tls.crt` and `tls.key` in this directory, re-read when they change.
    Directory(PathBuf),
    /// Certificates chosen by the caller for each connection, such as those its own CA issues
    /// and replaces as it rotates.
    Resolved(Arc<dyn ResolvesServerCert>),
}

impl std::fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServingCertificate::SelfSigned => f.write_str("SelfSigned"),
            ServingCertificate::Directory(dir) => f.debug_tuple("Directory").field(dir).finish(),
            ServingCertificate::Resolved(resolver) => f.debug_tuple("Resolved").field(resolver).finish(),
        }
    }
}

/// Why secure serving cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// The certificate or key cannot be read or used.
    #[error("the serving certificate in {dir}: {reason}")]
    Certificate {
        /// The directory.
        dir: String,
        /// What is wrong.
        reason: String,
    },
    /// A self-signed certificate could not be made.
    #[error("making a self-signed serving certificate: {0}")]
    SelfSigned(String),
}

/// How long a verdict about a token is kept.
const VERDICT_TTL: Duration = Duration::from_secs(60);
/// The most verdicts kept.
const MAX_VERDICTS: usize = 256;

/// A verdict kept: for (token hash, path), the status and when it was decided.
type Verdicts = HashMap<([u8; 32], String), (StatusCode, Instant)>;

/// The authentication and authorization of requests by the API server.
#[derive(Clone)]
pub(crate) struct Authorizer {
    client: kube::Client,
    verdicts: Arc<Mutex<Verdicts>>,
}

impl Authorizer {
    pub(crate) fn new(client: kube::Client) -> Self {
        Authorizer { client, verdicts: Arc::default() }
    }

    /// 200 if the bearer token in `authorization` belongs to a user who may `get` `path`, else
    /// 401 or 403; 500 when the API server cannot be asked.
    async fn verdict(&self, authorization: Option<&str>, path: &str) -> StatusCode {
        let Some(token) = authorization.and_then(|value| value.strip_prefix("Bearer ")).map(str::trim).filter(|token| !token.is_empty())
        else {
            return StatusCode::UNAUTHORIZED;
        };
        let key = (sha2::Sha256::digest(token.as_bytes()).into(), path.to_owned());
        if let Some((status, at)) = self.verdicts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&key)
            && at.elapsed() < VERDICT_TTL
        {
            return *status;
        }
        let status = match self.review(token, path).await {
            Ok(status) => status,
            Err(error) => {
                tracing::warn!(%error, "cannot ask the API server who is scraping; answering 500");
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
        };
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        verdicts.retain(|_, (_, at)| at.elapsed() < VERDICT_TTL);
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.clear();
        }
        verdicts.insert(key, (status, Instant::now()));
        status
    }

    async fn review(&self, token: &str, path: &str) -> Result<StatusCode, kube::Error> {
        let review = TokenReview { spec: TokenReviewSpec { token: token.to_owned(), ..Default::default() }, ..Default::default() };
        let reviewed = Api::<TokenReview>::all(self.client.clone()).create(&PostParams::default(), &review).await?;
        let status = reviewed.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else { return Ok(StatusCode::UNAUTHORIZED) };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes { path: Some(path.to_owned()), verb: Some("get".into()) }),
                ..Default::default()
            },
            ..Default::default()
        };
        let decided = Api::<SubjectAccessReview>::all(self.client.clone()).create(&PostParams::default(), &access).await?;
        Ok(if decided.status.is_some_and(|status| status.allowed) { StatusCode::OK } else { StatusCode::FORBIDDEN })
    }
}

/// The axum middleware that lets through only requests [`Authorizer::verdict`] allows.
pub(crate) async fn authorize(
    axum::extract::State(authorizer): axum::extract::State<Authorizer>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request.headers().get(http::header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    match authorizer.verdict(authorization, request.uri().path()).await {
        StatusCode::OK => next.run(request).await,
        StatusCode::UNAUTHORIZED => (
            StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, "Bearer")],
            "Unauthorized: send a ServiceAccount token as a bearer token\n",
        )
            .into_response(),
        StatusCode::FORBIDDEN => {
            (StatusCode::FORBIDDEN, "Forbidden: get on this URL is not allowed (bind the ClusterRole bosun-metrics-reader)\n")
                .into_response()
        }
        status => (status, "Cannot authorize the request now\n").into_response(),
    }
}

/// The TLS settings of a server for `certificate`.
pub fn tls_config(certificate: &ServingCertificate) -> Result<Arc<rustls::ServerConfig>, ServingError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver: Arc<dyn ResolvesServerCert> = match certificate {
        ServingCertificate::SelfSigned => {
            let names = vec!["localhost".to_owned(), std::env::var("HOSTNAME").unwrap_or_else(|_| "bosun".into())];
            let made = rcgen::generate_simple_self_signed(names).map_err(|error| ServingError::SelfSigned(error.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(made.signing_key.serialize_pem().as_bytes())
                .map_err(|error| ServingError::SelfSigned(error.to_string()))?;
            let key = CertifiedKey::from_der(vec![made.cert.der().clone()], key, &provider)
                .map_err(|error| ServingError::SelfSigned(error.to_string()))?;
            Arc::new(rustls::sign::SingleCertAndKey::from(key))
        }
        ServingCertificate::Resolved(resolver) => resolver.clone(),
        ServingCertificate::Directory(dir) => {
            let watched = WatchedCertificate { dir: dir.clone(), provider: provider.clone(), current: Mutex::new(None) };
            watched.load()?;
            Arc::new(watched)
        }
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ServingError::SelfSigned(error.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(Arc::new(config))
}

/// A certificate as read from its files.
struct Loaded {
    certified: Arc<CertifiedKey>,
    /// The files' modification times when they were read.
    modified: Vec<SystemTime>,
    /// When the files were last looked at.
    checked: Instant,
}

/// A certificate read from a directory and re-read when its files change.
struct WatchedCertificate {
    dir: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<Option<Loaded>>,
}

impl std::fmt::Debug for WatchedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedCertificate").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// How often the files are looked at for a change.
const RECHECK: Duration = Duration::from_secs(10);

impl WatchedCertificate {
    fn modified(&self) -> Vec<SystemTime> {
        ["tls.crt", "tls.key"]
            .iter()
            .filter_map(|file| std::fs::metadata(self.dir.join(file)).and_then(|meta| meta.modified()).ok())
            .collect()
    }

    /// Reads the files into `current`.
    fn load(&self) -> Result<Arc<CertifiedKey>, ServingError> {
        let error = |reason: String| ServingError::Certificate { dir: self.dir.display().to_string(), reason };
        let read = |file: &str| std::fs::read(self.dir.join(file)).map_err(|io| error(format!("reading {file}: {io}")));
        let modified = self.modified();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read("tls.crt")?).collect::<Result<_, _>>().map_err(|_| error("tls.crt is not PEM".into()))?;
        let key = PrivateKeyDer::from_pem_slice(&read("tls.key")?).map_err(|_| error("tls.key is not a PEM private key".into()))?;
        let certified = Arc::new(CertifiedKey::from_der(chain, key, &self.provider).map_err(|reason| error(reason.to_string()))?);
        *self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(Loaded { certified: certified.clone(), modified, checked: Instant::now() });
        Ok(certified)
    }
}

impl ResolvesServerCert for WatchedCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let (certified, stale) = {
            let mut current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let loaded = current.as_mut()?;
            let stale = loaded.checked.elapsed() >= RECHECK && {
                loaded.checked = Instant::now();
                self.modified() != loaded.modified
            };
            (loaded.certified.clone(), stale)
        };
        if !stale {
            return Some(certified);
        }
        match self.load() {
            Ok(reloaded) => {
                tracing::info!(dir = %self.dir.display(), "serving a renewed certificate");
                Some(reloaded)
            }
            Err(error) => {
                tracing::warn!(%error, "keeping the previous serving certificate");
                Some(certified)
            }
        }
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then stops accepting,
/// lets the requests in flight finish (their responses close their connections; idle
/// connections are closed) and returns once every connection has ended.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, router, mut stopping) = (acceptor.clone(), router.clone(), stopping.clone());
        connections.spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let stop = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
        // Ended connections are reaped as they go, so the set holds the open ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    stop.send_replace(true);
    while connections.join_next().await.is_some() {}
}
