//! Calling a hook over HTTP: POST the JSON request with a `Content-Length` (the
//! standard-library Python servers most hooks run on need it), accept only 200, honour 429 with
//! `Retry-After`, and turn every other outcome into an error that says what happened.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use kube::ResourceExt;
use kube::api::DynamicObject;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH, RETRY_AFTER};

use bosun_runtime::{HookLabels, Metrics};

use super::auth::{CredentialError, Credentials, Material, Security, TlsError};
use super::etag::{EtagCache, EtagSettings};
use super::{DecodeError, HookResponse, decode, parse_duration, unmarshall_mode};
use crate::api::{EndpointConfig, Hook, HookVersion, ResponseUnmarshallMode};
use crate::dry_run::HookExchange;

/// Which hook of a controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HookKind {
    /// `sync`.
    Sync,
    /// `finalize`.
    Finalize,
    /// `customize`.
    Customize,
}

impl HookKind {
    /// The hook's name in the API and in metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HookKind::Sync => "sync",
            HookKind::Finalize => "finalize",
            HookKind::Customize => "customize",
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A hook ready to be called: its URL, timeout, version and decoding mode.
#[derive(Clone, PartialEq)]
pub(crate) struct HookEndpoint {
    /// Which hook this is.
    pub kind: HookKind,
    /// Where to POST, with any `user:password@` in it: never print it, print `redacted_url`.
    pub url: Url,
    /// The URL without credentials, for logs, events, errors and metric labels.
    pub redacted_url: Url,
    /// The request timeout.
    pub timeout: Duration,
    /// The protocol version.
    pub version: HookVersion,
    /// How responses are decoded.
    pub mode: ResponseUnmarshallMode,
    /// `CompositeController` or `DecoratorController`, and its name: metric labels.
    pub controller: (&'static str, String),
    /// TLS and authentication, if any.
    pub security: Option<Security>,
    /// ETag caching, if enabled.
    pub etag: Option<EtagSettings>,
}

impl std::fmt::Debug for HookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookEndpoint").field("kind", &self.kind).field("url", &self.redacted_url.as_str()).finish_non_exhaustive()
    }
}

/// The default hook timeout, as in Metacontroller.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default bound on a hook response's body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// How much of a failed response's body an error quotes.
const QUOTED_BODY_BYTES: usize = 512;

/// The shortest and longest delay a 429's `Retry-After` may ask for: `0` must not become a
/// hot loop, nor a huge value a parent that is never synced again.
pub(crate) const RETRY_AFTER_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(10 * 60));

/// `url` without its user information (`user:password@`), which may hold credentials.
pub(crate) fn redact(url: &Url) -> Url {
    let mut redacted = url.clone();
    // Only URLs that cannot have a host refuse these, and hook URLs have one.
    let _ = redacted.set_username("");
    let _ = redacted.set_password(None);
    redacted
}

/// What is wrong with a hook's declaration in a controller's spec.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EndpointError {
    /// The hook has no `webhook`.
    #[error("the {kind} hook has no webhook")]
    NoWebhook {
        /// Which hook.
        kind: HookKind,
    },
    /// The webhook says neither where nor how to call.
    #[error("the {kind} hook's webhook needs either url, or service and path")]
    NoTarget {
        /// Which hook.
        kind: HookKind,
    },
    /// The URL does not parse (not quoted: it may hold a password).
    #[error("the {kind} hook's URL is not valid: {source}")]
    Url {
        /// Which hook.
        kind: HookKind,
        /// Why.
        source: url::ParseError,
    },
    /// The URL's scheme is not HTTP.
    #[error("the {kind} hook's URL {url} must be http or https")]
    Scheme {
        /// Which hook.
        kind: HookKind,
        /// The URL, without credentials.
        url: Url,
    },
    /// The timeout is not a duration.
    #[error("the {kind} hook's timeout: {source}")]
    Timeout {
        /// Which hook.
        kind: HookKind,
        /// Why.
        source: super::DurationError,
    },
    /// The TLS or authentication settings are contradictory.
    #[error("the {kind} hook's TLS or authentication: {source}")]
    Security {
        /// Which hook.
        kind: HookKind,
        /// Why.
        source: CredentialError,
    },
    /// Credentials would travel in clear text.
    #[error(
        "the {kind} hook {url} would send credentials over plain http://; use https (with caBundle if \
         needed), or start bosun with --allow-insecure-hook-credentials"
    )]
    InsecureCredentials {
        /// Which hook.
        kind: HookKind,
        /// The URL, without credentials.
        url: Url,
    },
}

impl HookEndpoint {
    /// Resolves a hook of the controller of type `controller.0` named `controller.1`, with the
    /// controller's `endpointConfigs`, to an endpoint, or says what is wrong with it.
    pub(crate) fn new(
        kind: HookKind,
        hook: &Hook,
        controller: (&'static str, &str),
        configs: &[EndpointConfig],
    ) -> Result<HookEndpoint, EndpointError> {
        let webhook = hook.webhook.as_ref().ok_or(EndpointError::NoWebhook { kind })?;
        let url = match (&webhook.url, &webhook.service, &webhook.path) {
            (Some(url), _, _) => url.clone(),
            (None, Some(service), Some(path)) => format!(
                "{}://{}.{}:{}{path}",
                service.protocol.as_deref().unwrap_or("http"),
                service.name,
                service.namespace,
                service.port.unwrap_or(80)
            ),
            _ => return Err(EndpointError::NoTarget { kind }),
        };
        // The text is not quoted: it may hold a password.
        let url = Url::parse(&url).map_err(|source| EndpointError::Url { kind, source })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EndpointError::Scheme { kind, url: redact(&url) });
        }
        // As in Metacontroller, a timeout of zero or less means the default.
        let timeout = match &webhook.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) if text.strip_prefix('-').is_some_and(|magnitude| parse_duration(magnitude).is_ok()) => DEFAULT_TIMEOUT,
            Some(text) => match parse_duration(text) {
                Ok(timeout) if timeout.is_zero() => DEFAULT_TIMEOUT,
                Ok(timeout) => timeout,
                Err(source) => return Err(EndpointError::Timeout { kind, source }),
            },
        };
        let version = hook.version.unwrap_or_default();
        let security = Security::resolve(webhook, &url, configs).map_err(|source| EndpointError::Security { kind, source })?;
        Ok(HookEndpoint {
            security,
            etag: EtagSettings::of(webhook.etag.as_ref()),
            kind,
            redacted_url: redact(&url),
            url,
            timeout,
            version,
            mode: unmarshall_mode(version, webhook.response_unmarshall_mode),
            controller: (controller.0, controller.1.to_owned()),
        })
    }

    /// Whether calls carry credentials: a `user:password@` in the URL, a bearer token or a
    /// basic-auth password.
    pub(crate) fn sends_credentials(&self) -> bool {
        let configured = self.security.as_ref().is_some_and(|security| security.authorization.is_some() || security.basic_auth.is_some());
        configured || !self.url.username().is_empty() || self.url.password().is_some()
    }

    /// Refuses a hook that would send credentials over plain `http://`, where anyone on the
    /// path can read them, unless `allow_insecure` (the engine's
    /// `--allow-insecure-hook-credentials`).
    pub(crate) fn check_credentials_transport(&self, allow_insecure: bool) -> Result<(), EndpointError> {
        if allow_insecure || self.url.scheme() != "http" || !self.sends_credentials() {
            return Ok(());
        }
        Err(EndpointError::InsecureCredentials { kind: self.kind, url: self.redacted_url.clone() })
    }
}

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
    http: reqwest::Client,
    /// Clients with custom TLS material, by its fingerprint.
    secured: Mutex<HashMap<u64, reqwest::Client>>,
    credentials: Credentials,
    etags: EtagCache,
    metrics: Metrics,
    max_response_bytes: usize,
    /// The exchanges kept for a dry run, when it asked for them.
    recorded: Mutex<Option<Vec<HookExchange>>>,
}

/// Bound on clients kept for distinct TLS material (rotations leave old ones behind).
const MAX_SECURED_CLIENTS: usize = 64;

fn builder() -> reqwest::ClientBuilder {
    // A redirect would send the request body, which may hold related Secrets, to another host.
    reqwest::Client::builder().user_agent(concat!("bosun/", env!("CARGO_PKG_VERSION"))).redirect(reqwest::redirect::Policy::none())
}

impl HookClient {
    /// A client that verifies HTTPS hooks against the system's trusted roots (or a hook's
    /// CA bundle), reading credentials through `client`, and reads at most
    /// `max_response_bytes` of a response.
    pub(crate) fn new(client: kube::Client, metrics: Metrics, max_response_bytes: usize) -> Self {
        // reqwest is built without a default crypto provider; ring is the one kube uses too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = builder().build().expect("an HTTP client with the default settings builds");
        HookClient {
            http,
            secured: Mutex::default(),
            credentials: Credentials::new(client),
            etags: EtagCache::default(),
            metrics,
            max_response_bytes,
            recorded: Mutex::default(),
        }
    }

    /// The HTTP client and `Authorization` header for `security`.
    async fn secured(&self, security: &Security, user: &str) -> Result<(reqwest::Client, Option<HeaderValue>), CredentialError> {
        let material: Material = self.credentials.material(security, user).await?;
        let header = material.header()?;
        if material.ca_pem.is_none() && material.identity_pem.is_none() {
            return Ok((self.http.clone(), header));
        }
        let fingerprint = material.tls_fingerprint();
        if let Some(client) = self.secured.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&fingerprint) {
            return Ok((client.clone(), header));
        }
        let mut builder = builder();
        if let Some(pem) = &material.identity_pem {
            builder = builder.use_preconfigured_tls(client_certificate_tls(material.ca_pem.as_deref(), pem)?);
        } else if let Some(pem) = &material.ca_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|_| TlsError::CaPem)?;
            if roots.is_empty() {
                return Err(TlsError::NoCaCertificate.into());
            }
            builder = builder.tls_certs_only(roots);
        }
        let client = builder.build().map_err(|error| TlsError::Client(innermost_message(&error)))?;
        let mut secured = self.secured.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if secured.len() >= MAX_SECURED_CLIENTS {
            secured.clear();
        }
        secured.insert(fingerprint, client.clone());
        Ok((client, header))
    }

    /// Drops what is kept about the object of `kind` at `key`: it is gone.
    pub(crate) fn forget(&self, kind: &str, key: &bosun_runtime::ObjectKey) {
        self.etags.forget(&super::etag::object_key(kind, key.namespace.as_deref(), &key.name));
    }

    /// Stops watching the credentials only the controller of kind `kind` named `name` used.
    pub(crate) fn release_credentials(&self, kind: &str, name: &str) {
        self.credentials.release(&format!("{kind}/{name}"));
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
            let key = (url.to_string(), super::etag::object_key(kind_of, object.namespace().as_deref(), &object.name_any()));
            (settings, key)
        });
        let request = self.metrics.hook_request(
            kind.name(),
            HookLabels {
                controller_name: endpoint.controller.1.clone(),
                controller_type: endpoint.controller.0.to_owned(),
                url: endpoint.redacted_url.to_string(),
                method: "POST".into(),
            },
        );
        let transport = |error: reqwest::Error| {
            let message = if error.is_timeout() {
                format!("no response within the timeout of {:?}", endpoint.timeout)
            } else {
                innermost_message(&error.without_url())
            };
            HookError::Transport { kind, url: endpoint.redacted_url.clone(), message }
        };
        let mut post =
            http.post(endpoint.url.clone()).header(CONTENT_TYPE, HeaderValue::from_static("application/json")).timeout(endpoint.timeout);
        if let Some(authorization) = authorization {
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
        let mut response = post.body(body).send().await.map_err(transport)?;
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
        if status != 200 {
            // Only the start is quoted; the rest is not worth reading.
            let mut quoted = Vec::new();
            while quoted.len() < QUOTED_BODY_BYTES
                && let Ok(Some(chunk)) = response.chunk().await
            {
                quoted.extend_from_slice(&chunk);
            }
            quoted.truncate(QUOTED_BODY_BYTES);
            let body = String::from_utf8_lossy(&quoted).trim_end_matches(char::REPLACEMENT_CHARACTER).to_owned();
            let body = if matches!(status, 301..=308) { format!("{body} (redirects are not followed)") } else { body };
            return Err(HookError::Status { kind, url, status, body });
        }
        let limit = self.max_response_bytes;
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Err(HookError::TooLarge { kind, url, limit });
        }
        // Read chunk by chunk, so that a hook streaming without end costs at most the limit.
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > limit {
                return Err(HookError::TooLarge { kind, url, limit });
            }
            bytes.extend_from_slice(&chunk);
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

/// A hook's answer as read: the body, and the ETag to keep with it once it decodes.
struct Fetched {
    body: bytes::Bytes,
    etag: Option<((String, String), HeaderValue)>,
}

/// A TLS configuration that presents the client certificate and key in `identity_pem` and
/// verifies servers against `ca_pem`, else the system's roots. Built here rather than by
/// reqwest, whose identity check parses the certificate with webpki, which refuses X.509 v1
/// certificates — what `openssl x509 -req` makes without an extensions file, and what Go's
/// crypto/tls and OpenSSL accept. The server is still verified as strictly as before.
fn client_certificate_tls(ca_pem: Option<&[u8]>, identity_pem: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls_platform_verifier::BuilderVerifierExt;

    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity_pem).collect::<Result<_, _>>().map_err(|_| TlsError::CertificatePem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(identity_pem).map_err(|_| TlsError::KeyPem)?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let signing_key = provider.key_provider.load_private_key(key).map_err(TlsError::Key)?;
    let builder =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().map_err(TlsError::Settings)?;
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
    use crate::api::{ServiceReference, Webhook};

    const CONTROLLER: (&str, &str) = ("CompositeController", "things");

    fn hook(webhook: Webhook) -> Hook {
        Hook { version: None, webhook: Some(webhook) }
    }

    #[test]
    fn url_or_service_and_path() {
        let by_url = hook(Webhook { url: Some("http://127.0.0.1:8080/sync".into()), ..Default::default() });
        let endpoint = HookEndpoint::new(HookKind::Sync, &by_url, CONTROLLER, &[]).unwrap();
        assert_eq!(endpoint.url.as_str(), "http://127.0.0.1:8080/sync");
        assert_eq!(endpoint.timeout, DEFAULT_TIMEOUT);
        assert_eq!(endpoint.mode, ResponseUnmarshallMode::Loose, "v1 decodes loosely");

        let by_service = hook(Webhook {
            service: Some(ServiceReference { name: "hooks".into(), namespace: "ops".into(), port: None, protocol: None }),
            path: Some("/sync".into()),
            timeout: Some("2s".into()),
            ..Default::default()
        });
        let endpoint = HookEndpoint::new(HookKind::Sync, &by_service, CONTROLLER, &[]).unwrap();
        assert_eq!(endpoint.url.as_str(), "http://hooks.ops/sync", "port 80 is implied");
        assert_eq!(endpoint.timeout, Duration::from_secs(2));

        let neither = hook(Webhook { path: Some("/sync".into()), ..Default::default() });
        assert!(HookEndpoint::new(HookKind::Sync, &neither, CONTROLLER, &[]).unwrap_err().to_string().contains("url, or service and path"));
        let secret = hook(Webhook { url: Some("http://user:s3cret@hooks.ops/sync".into()), ..Default::default() });
        let endpoint = HookEndpoint::new(HookKind::Sync, &secret, CONTROLLER, &[]).unwrap();
        assert_eq!(endpoint.redacted_url.as_str(), "http://hooks.ops/sync");
        assert!(!format!("{endpoint:?}").contains("s3cret"));
        let refused = endpoint.check_credentials_transport(false).unwrap_err().to_string();
        assert!(refused.contains("plain http://") && !refused.contains("s3cret"), "{refused}");
        assert!(endpoint.check_credentials_transport(true).is_ok(), "opted in");
        let plain = HookEndpoint::new(HookKind::Sync, &by_url, CONTROLLER, &[]).unwrap();
        assert!(plain.check_credentials_transport(false).is_ok(), "no credentials");
        let invalid = hook(Webhook { url: Some("http://user:s3cret@[bad/sync".into()), ..Default::default() });
        assert!(!HookEndpoint::new(HookKind::Sync, &invalid, CONTROLLER, &[]).unwrap_err().to_string().contains("s3cret"));
        for zero_or_less in ["0", "0s", "-5s"] {
            let hook = hook(Webhook { url: Some("http://h/".into()), timeout: Some(zero_or_less.into()), ..Default::default() });
            assert_eq!(HookEndpoint::new(HookKind::Sync, &hook, CONTROLLER, &[]).unwrap().timeout, DEFAULT_TIMEOUT, "{zero_or_less}");
        }
        let bad_timeout = hook(Webhook { url: Some("http://h/".into()), timeout: Some("soon".into()), ..Default::default() });
        assert!(HookEndpoint::new(HookKind::Sync, &bad_timeout, CONTROLLER, &[]).unwrap_err().to_string().contains("timeout"));
    }

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
