//! Calling a hook: run its program (an exec hook, [`super::exec`]), or over HTTP: POST the JSON request with a `Content-Length` (the
//! standard-library Python servers most hooks run on need it), accept only 200, honour 429 with
//! `Retry-After`, and turn every other outcome into an error that says what happened. The
//! connections are [`super::transport`]'s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH, RETRY_AFTER, USER_AGENT};
use http_body_util::BodyExt;
use kube::ResourceExt;
use kube::api::DynamicObject;
use url::Url;

use super::metrics::{HookLabels, HookMetrics};

use super::auth::{CredentialError, Credentials, Material, Security, TlsError};
use super::endpoint::{HookEndpoint, HookKind};
use super::etag::EtagCache;
use super::transport::{Body, Transport};
use super::{DecodeError, HookExchange, HookResponse, decode};
use super::{exec, wasm};

/// The default bound on a hook response's body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// How much of a failed response's body an error quotes.
const QUOTED_BODY_BYTES: usize = 512;

/// The shortest and longest delay a 429's `Retry-After` may ask for: `0` must not become a
/// hot loop, nor a huge value a parent that is never synced again.
pub(crate) const RETRY_AFTER_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(10 * 60));

/// Why a hook call failed. None of these change anything in the cluster.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HookError {
    /// The request could not be sent or the response not received.
    #[error("{kind} hook {url}: {message}")]
    Transport {
        /// Which hook.
        kind: HookKind,
        /// Its URL.
        url: Url,
        /// What went wrong, from the innermost cause.
        message: String,
    },
    /// The hook answered with a status other than 200 (and 429).
    #[error("{kind} hook {url} answered HTTP {status}: {body}")]
    Status {
        /// Which hook.
        kind: HookKind,
        /// Its URL.
        url: Url,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The hook answered 429: try again later, without counting a failure.
    #[error("{kind} hook {url} answered 429 Too Many Requests (retry after {retry_after:?})")]
    TooManyRequests {
        /// Which hook.
        kind: HookKind,
        /// Its URL.
        url: Url,
        /// From `Retry-After`, if the hook sent a valid one.
        retry_after: Option<Duration>,
    },
    /// The hook's TLS or authentication settings name credentials that cannot be used.
    #[error("{kind} hook {url}: {source}")]
    Credentials {
        /// Which hook.
        kind: HookKind,
        /// Its URL.
        url: Url,
        /// What is wrong (never the credential itself).
        source: CredentialError,
    },
    /// The response body is larger than the engine accepts (`--max-hook-response-bytes`).
    #[error("{kind} hook {url}: the response is too large: more than {limit} bytes (see --max-hook-response-bytes)")]
    TooLarge {
        /// Which hook.
        kind: HookKind,
        /// Its URL.
        url: Url,
        /// The limit it exceeded.
        limit: usize,
    },
    /// An exec hook's program or a WebAssembly hook's module ended unsuccessfully.
    #[error("{kind} hook {url} {status}; its standard error ends: {stderr:?}")]
    Exited {
        /// Which hook.
        kind: HookKind,
        /// Its program or module, as `exec://<path>` or `wasm:<source>`.
        url: Url,
        /// How it ended: `exited with status 3`, `trapped: …`.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// The response body could not be decoded.
    #[error("{kind} hook {url}: {source}")]
    Decode {
        /// Which hook.
        kind: HookKind,
        /// Its URL.
        url: Url,
        /// What is wrong with it.
        source: DecodeError,
    },
}

/// Calls hooks, reusing connections where servers allow it, and records Metacontroller's
/// hook metrics.
#[derive(Debug)]
pub(crate) struct HookClient {
    /// Connections verified against the system's trusted roots.
    http: Transport,
    /// Connections with custom TLS material, by its fingerprint.
    secured: Mutex<HashMap<u64, Transport>>,
    credentials: Credentials,
    etags: EtagCache,
    metrics: HookMetrics,
    max_response_bytes: usize,
    /// The exchanges kept for a dry run, when it asked for them.
    recorded: Mutex<Option<Vec<HookExchange>>>,
    /// Bounds the exec hooks' processes running at once.
    processes: tokio::sync::Semaphore,
}

/// The default bound on exec hooks' processes running at once.
pub const DEFAULT_MAX_EXEC_PROCESSES: usize = 16;

/// Bound on clients kept for distinct TLS material (rotations leave old ones behind).
const MAX_SECURED_CLIENTS: usize = 64;

const USER_AGENT_VALUE: &str = concat!("bosun/", env!("CARGO_PKG_VERSION"));

impl HookClient {
    /// A client that verifies HTTPS hooks against the system's trusted roots (or a hook's
    /// CA bundle), reading credentials through `client`, and reads at most
    /// `max_response_bytes` of a response.
    pub(crate) fn new(client: kube::Client, metrics: bosun_runtime::Metrics, max_response_bytes: usize) -> Self {
        let tls = tls_config(None, None).expect("the system's trusted roots load");
        HookClient {
            http: Transport::new(tls),
            secured: Mutex::default(),
            credentials: Credentials::new(client),
            etags: EtagCache::default(),
            metrics: HookMetrics::new(metrics),
            max_response_bytes,
            recorded: Mutex::default(),
            processes: tokio::sync::Semaphore::new(DEFAULT_MAX_EXEC_PROCESSES),
        }
    }

    /// At most `processes` exec hooks' programs run at once; calls beyond wait their turn
    /// (within their timeout).
    pub(crate) fn with_process_limit(mut self, processes: usize) -> Self {
        self.processes = tokio::sync::Semaphore::new(processes.max(1));
        self
    }

    /// The connections and `Authorization` header for `security`.
    async fn secured(&self, security: &Security, user: &str) -> Result<(Transport, Option<HeaderValue>), CredentialError> {
        let material: Material = self.credentials.material(security, user).await?;
        let header = material.header()?;
        if material.ca_pem.is_none() && material.identity_pem.is_none() {
            return Ok((self.http.clone(), header));
        }
        let fingerprint = material.tls_fingerprint();
        if let Some(transport) = self.secured.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&fingerprint) {
            return Ok((transport.clone(), header));
        }
        let transport = Transport::new(tls_config(material.ca_pem.as_deref(), material.identity_pem.as_deref())?);
        let mut secured = self.secured.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if secured.len() >= MAX_SECURED_CLIENTS {
            secured.clear();
        }
        secured.insert(fingerprint, transport.clone());
        Ok((transport, header))
    }

    /// Drops what is kept about the object of `kind` at `key`: it is gone.
    pub(crate) fn forget(&self, kind: &str, key: &bosun_runtime::ObjectKey) {
        self.etags.forget(&super::etag::object_key(kind, key.namespace.as_deref(), &key.name));
    }

    /// Lets go of what the controller of kind `kind` named `name` held, once it stopped: the
    /// credentials only it used stop being watched, its kept ETag responses are dropped.
    pub(crate) fn release_controller(&self, kind: &str, name: &str) {
        let controller = format!("{kind}/{name}");
        self.credentials.release(&controller);
        self.etags.forget_controller(&controller);
    }

    /// How many Secrets and ConfigMaps are watched for credentials.
    pub(crate) fn credential_watches(&self) -> usize {
        self.credentials.count()
    }

    /// How many responses are kept for ETag replay.
    pub(crate) fn etag_records(&self) -> usize {
        self.etags.count()
    }

    /// From now on keeps every hook exchange, for [`HookClient::exchanges`] (dry runs).
    pub(crate) fn record_exchanges(&self) {
        *self.recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Vec::new());
    }

    /// The hook exchanges kept since [`HookClient::record_exchanges`].
    pub(crate) fn exchanges(&self) -> Vec<HookExchange> {
        self.recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone().unwrap_or_default()
    }

    /// POSTs `body` to the hook, about `object` (the parent or target), and decodes its
    /// response.
    pub(crate) async fn call<T: HookResponse>(
        &self,
        endpoint: &HookEndpoint,
        body: Vec<u8>,
        object: &DynamicObject,
    ) -> Result<T, HookError> {
        let recording = self.recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some();
        let sent = recording.then(|| (body.clone(), Instant::now()));
        let fetched = self.fetch(endpoint, body, object).await;
        if let Some((request, started)) = sent {
            let (status, response) = match &fetched {
                Ok(fetched) => (Some(200), serde_json::from_slice(&fetched.body).ok()),
                Err(HookError::Status { status, .. }) => (Some(*status), None),
                Err(HookError::TooManyRequests { .. }) => (Some(429), None),
                Err(_) => (None, None),
            };
            let mut exchange = HookExchange {
                hook: endpoint.kind.name(),
                url: endpoint.redacted_url.to_string(),
                request: serde_json::from_slice(&request).unwrap_or_default(),
                status,
                response,
                duration: started.elapsed(),
                credentials: endpoint.credentials(),
            };
            super::redact::redact_secrets(&mut exchange.request);
            if let Some(response) = &mut exchange.response {
                super::redact::redact_secrets(response);
            }
            if let Some(recorded) = self.recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_mut() {
                recorded.push(exchange);
            }
        }
        let Fetched { body, etag } = fetched?;
        let (kind, url) = (endpoint.kind, endpoint.redacted_url.clone());
        let decoded = decode(&body, endpoint.mode).map_err(|source| HookError::Decode { kind, url, source })?;
        if let Some((key, value)) = etag {
            self.etags.keep(key, value, body);
        }
        Ok(decoded)
    }

    /// POSTs `body` to the hook and reads its answer: the body to decode, and the ETag to keep
    /// with it once it decodes.
    async fn fetch(&self, endpoint: &HookEndpoint, body: Vec<u8>, object: &DynamicObject) -> Result<Fetched, HookError> {
        if endpoint.program.is_some() || endpoint.module.is_some() {
            return self.run_here(endpoint, body, object).await;
        }
        let kind = endpoint.kind;
        let url = endpoint.redacted_url.clone();
        let (http, authorization) = match &endpoint.security {
            None => (self.http.clone(), None),
            Some(security) => self
                .secured(security, &format!("{}/{}", endpoint.controller.0, endpoint.controller.1))
                .await
                .map_err(|source| HookError::Credentials { kind, url: url.clone(), source })?,
        };
        let etag = endpoint.etag.map(|settings| {
            let kind_of = object.types.as_ref().map(|types| types.kind.as_str()).unwrap_or_default();
            let key = super::etag::EtagKey {
                controller: format!("{}/{}", endpoint.controller.0, endpoint.controller.1),
                url: endpoint.url.to_string(),
                object: super::etag::object_key(kind_of, object.namespace().as_deref(), &object.name_any()),
            };
            (settings, key)
        });
        let request = self.metrics.started(
            kind.name(),
            HookLabels {
                controller_name: endpoint.controller.1.clone(),
                controller_type: endpoint.controller.0.to_owned(),
                url: endpoint.redacted_url.to_string(),
                method: "POST".into(),
            },
        );
        let transport = |message: String| HookError::Transport { kind, url: endpoint.redacted_url.clone(), message };
        let timed_out = || transport(format!("no response within the timeout of {:?}", endpoint.timeout));
        let (uri, url_authorization) = target(&endpoint.url);
        let mut post = http::Request::post(uri)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(authorization) = authorization.or(url_authorization) {
            post = post.header(AUTHORIZATION, authorization);
        }
        let sent_etag = etag.as_ref().and_then(|(settings, key)| self.etags.etag(settings, key));
        if let Some(value) = &sent_etag {
            post = post.header(IF_NONE_MATCH, value.clone());
        }
        let object_key = || format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any());
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(hook = kind.name(), %url, object = %object_key(), body = %super::redact::for_log(&body), "hook request");
        }
        let post = post.body(Body::from(body)).map_err(|error| transport(error.to_string()))?;
        // One deadline for the whole exchange, the body included.
        let deadline = tokio::time::Instant::now() + endpoint.timeout;
        let response = match tokio::time::timeout_at(deadline, http.send(post)).await {
            Ok(response) => response.map_err(|error| transport(innermost_message(&error)))?,
            Err(_) => return Err(timed_out()),
        };
        let status = response.status().as_u16();
        request.finish(Some(status));
        if sent_etag.is_some()
            && (status == 304 || status == 412)
            && let Some(body) = etag.as_ref().and_then(|(_, key)| self.etags.body(key))
        {
            return Ok(Fetched { body, etag: None });
        }
        let response_etag = response.headers().get(ETAG).cloned();
        if status == 429 {
            let retry_after = response.headers().get(RETRY_AFTER).and_then(|value| parse_retry_after(value.to_str().ok()?));
            return Err(HookError::TooManyRequests { kind, url, retry_after });
        }
        let mut response_body = response.into_body();
        if status != 200 {
            // Only the start is quoted; the rest is not worth reading.
            let mut quoted = Vec::new();
            while quoted.len() < QUOTED_BODY_BYTES
                && let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, response_body.frame()).await
            {
                quoted.extend_from_slice(frame.data_ref().map(|data| &data[..]).unwrap_or_default());
            }
            quoted.truncate(QUOTED_BODY_BYTES);
            let body = String::from_utf8_lossy(&quoted).trim_end_matches(char::REPLACEMENT_CHARACTER).to_owned();
            let body = if matches!(status, 301..=308) { format!("{body} (redirects are not followed)") } else { body };
            return Err(HookError::Status { kind, url, status, body });
        }
        let limit = self.max_response_bytes;
        if http_body::Body::size_hint(&response_body).lower() > limit as u64 {
            return Err(HookError::TooLarge { kind, url, limit });
        }
        // Read frame by frame, so that a hook streaming without end costs at most the limit.
        let mut bytes = Vec::new();
        loop {
            let frame = match tokio::time::timeout_at(deadline, response_body.frame()).await {
                Ok(Some(frame)) => frame.map_err(|error| transport(innermost_message(&error)))?,
                Ok(None) => break,
                Err(_) => return Err(timed_out()),
            };
            let Ok(data) = frame.into_data() else { continue };
            if bytes.len() + data.len() > limit {
                return Err(HookError::TooLarge { kind, url, limit });
            }
            bytes.extend_from_slice(&data);
        }
        let bytes = bytes::Bytes::from(bytes);
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(hook = kind.name(), %url, object = %object_key(), body = %super::redact::for_log(&bytes), "hook response");
        }
        let etag = match (etag, response_etag) {
            (Some((_, key)), Some(value)) => Some((key, value)),
            _ => None,
        };
        Ok(Fetched { body: bytes, etag })
    }
}

impl HookClient {
    /// Calls a hook that runs here — an exec hook's program, a WebAssembly hook's module —
    /// with `body` on its input; its output.
    async fn run_here(&self, endpoint: &HookEndpoint, body: Vec<u8>, object: &DynamicObject) -> Result<Fetched, HookError> {
        let (kind, url) = (endpoint.kind, endpoint.redacted_url.clone());
        let transport = |message: String| HookError::Transport { kind, url: url.clone(), message };
        let timed_out = |what: &str| transport(format!("no response within the timeout of {:?}{what}", endpoint.timeout));
        let deadline = tokio::time::Instant::now() + endpoint.timeout;
        let limit = self.max_response_bytes;
        let method = if endpoint.program.is_some() { "EXEC" } else { "WASM" };
        let request = self.metrics.started(
            kind.name(),
            HookLabels {
                controller_name: endpoint.controller.1.clone(),
                controller_type: endpoint.controller.0.to_owned(),
                url: url.to_string(),
                method: method.into(),
            },
        );
        let object_key = || format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any());
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(hook = kind.name(), %url, object = %object_key(), body = %super::redact::for_log(&body), "hook request");
        }
        let output = if let Some(program) = &endpoint.program {
            // Waiting for a turn counts against the timeout, as a slow server's queue would.
            match tokio::time::timeout_at(deadline, self.processes.acquire()).await {
                Ok(Ok(_turn)) => match super::exec::run(program, body, deadline, limit).await {
                    Ok(output) => Ok(output),
                    Err(exec::RunError::Start(error)) => Err(transport(format!("cannot start its program: {error}"))),
                    Err(exec::RunError::TimedOut) => Err(timed_out("; its process group was killed")),
                    Err(exec::RunError::Failed { status, stderr }) => Err(HookError::Exited { kind, url: url.clone(), status, stderr }),
                    Err(exec::RunError::TooLarge) => Err(HookError::TooLarge { kind, url: url.clone(), limit }),
                    Err(exec::RunError::Io(error)) => Err(transport(format!("reading its output: {error}"))),
                },
                _ => Err(timed_out(" (waiting for a turn among --max-exec-hook-processes)")),
            }
        } else if let Some(module) = &endpoint.module {
            let fetch = async |source: &Url| self.fetch_module(source).await;
            match super::wasm::Runtime::shared() {
                Err(error) => Err(transport(format!("cannot start the WebAssembly runtime: {error}"))),
                Ok(runtime) => match runtime.run(self.credentials.client(), fetch, module, body, deadline, limit).await {
                    Ok(output) => Ok(output),
                    Err(wasm::RunError::Load(message)) => Err(transport(message)),
                    Err(wasm::RunError::TimedOut) => Err(timed_out("; the module was stopped")),
                    Err(wasm::RunError::OutOfFuel(fuel)) => Err(transport(format!("the module used all its fuel ({fuel})"))),
                    Err(wasm::RunError::Failed { what, stderr }) => Err(HookError::Exited { kind, url: url.clone(), status: what, stderr }),
                    Err(wasm::RunError::TooLarge) => Err(HookError::TooLarge { kind, url: url.clone(), limit }),
                },
            }
        } else {
            unreachable!("a hook that runs here is a program or a module")
        };
        request.finish(output.as_ref().ok().map(|_| 200));
        let output = output?;
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(hook = kind.name(), %url, object = %object_key(), body = %super::redact::for_log(&output), "hook response");
        }
        Ok(Fetched { body: output.into(), etag: None })
    }

    /// A WebAssembly module at `url`, read whole (within bounds).
    async fn fetch_module(&self, url: &Url) -> Result<Vec<u8>, String> {
        let shown = bosun_runtime::redact::url(url);
        let (uri, authorization) = target(url);
        let mut get = http::Request::get(uri).header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(authorization) = authorization {
            get = get.header(AUTHORIZATION, authorization);
        }
        let get = get.body(Body::from(Vec::new())).map_err(|error| error.to_string())?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let response = tokio::time::timeout_at(deadline, self.http.send(get))
            .await
            .map_err(|_| format!("fetching {shown}: no answer within 60 s"))?
            .map_err(|error| format!("fetching {shown}: {}", innermost_message(&error)))?;
        if response.status() != 200 {
            return Err(format!("fetching {shown}: HTTP {}", response.status().as_u16()));
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(frame)) => frame.map_err(|error| format!("fetching {shown}: {}", innermost_message(&error)))?,
                Ok(None) => break,
                Err(_) => return Err(format!("fetching {shown}: not read whole within 60 s")),
            };
            let Ok(data) = frame.into_data() else { continue };
            if bytes.len() + data.len() > wasm::MAX_MODULE_BYTES {
                return Err(format!("fetching {shown}: the module is larger than {} bytes", wasm::MAX_MODULE_BYTES));
            }
            bytes.extend_from_slice(&data);
        }
        Ok(bytes)
    }
}

/// Where to send a request for `url`, and the basic-auth header its `user:password@` stands
/// for: it goes in the header, as Go's and every other HTTP client send it, never in the
/// request line.
fn target(url: &Url) -> (http::Uri, Option<HeaderValue>) {
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    let uri = bare.as_str().parse().expect("a URL without user information is a valid URI");
    if url.username().is_empty() && url.password().is_none() {
        return (uri, None);
    }
    let decode = |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
    let credentials = format!("{}:{}", decode(url.username()), decode(url.password().unwrap_or_default()));
    let mut header = HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)))
        .expect("base64 is a valid header value");
    header.set_sensitive(true);
    (uri, Some(header))
}

/// A hook's answer as read: the body, and the ETag to keep with it once it decodes.
struct Fetched {
    body: bytes::Bytes,
    etag: Option<(super::etag::EtagKey, HeaderValue)>,
}

/// A TLS configuration that verifies servers against `ca_pem`, else the system's roots, and
/// presents the client certificate and key in `identity_pem`, if any. The certificate is taken
/// as it is — webpki, which reqwest's own identity check uses, refuses X.509 v1 certificates,
/// what `openssl x509 -req` makes without an extensions file and what Go's crypto/tls and
/// OpenSSL accept — while the server is verified strictly.
fn tls_config(ca_pem: Option<&[u8]>, identity_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls_platform_verifier::BuilderVerifierExt;

    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(TlsError::Settings)?;
    let builder = match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate = certificate.map_err(|_| TlsError::CaPem)?;
                roots.add(certificate).map_err(TlsError::Ca)?;
            }
            if roots.is_empty() {
                return Err(TlsError::NoCaCertificate);
            }
            builder.with_root_certificates(roots)
        }
        None => builder.with_platform_verifier().map_err(TlsError::SystemRoots)?,
    };
    let Some(identity_pem) = identity_pem else { return Ok(builder.with_no_client_auth()) };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity_pem).collect::<Result<_, _>>().map_err(|_| TlsError::CertificatePem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(identity_pem).map_err(|_| TlsError::KeyPem)?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(TlsError::Key)?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing_key);
    Ok(builder.with_client_cert_resolver(std::sync::Arc::new(rustls::sign::SingleCertAndKey::from(certified))))
}

/// The innermost cause of an error, which says what happened ("Connection refused") where the
/// outer ones only say what was being done.
fn innermost_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// `Retry-After` as seconds or as an HTTP date, within [`RETRY_AFTER_BOUNDS`].
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO),
    };
    let (floor, cap) = RETRY_AFTER_BOUNDS;
    Some(delay.clamp(floor, cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let parsed = parse_retry_after(&later).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120), "{parsed:?}");
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(120));
        assert_eq!(parse_retry_after(&past), Some(RETRY_AFTER_BOUNDS.0));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-5"), None);
        assert_eq!(parse_retry_after("0"), Some(RETRY_AFTER_BOUNDS.0), "no hot loop");
        assert_eq!(parse_retry_after("18446744073709551615"), Some(RETRY_AFTER_BOUNDS.1), "no overflow");
    }
}
