//! Calling a hook over HTTP: POST the JSON request with a `Content-Length` (the
//! standard-library Python servers most hooks run on need it), accept only 200, honour 429 with
//! `Retry-After`, and turn every other outcome into an error that says what happened.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use kube::ResourceExt;
use kube::api::DynamicObject;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH, RETRY_AFTER};

use bosun_runtime::{HookLabels, Metrics};

use super::auth::{Credentials, Material, Security};
use super::etag::{EtagCache, EtagSettings};
use super::{DecodeError, HookResponse, decode, parse_duration, unmarshall_mode};
use crate::api::{EndpointConfig, Hook, HookVersion, ResponseUnmarshallMode};

/// Which hook of a controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// `sync`.
    Sync,
    /// `finalize`.
    Finalize,
    /// `customize`.
    Customize,
}

impl HookKind {
    /// The hook's name in the API and in metrics.
    pub fn name(self) -> &'static str {
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
#[derive(Debug, Clone, PartialEq)]
pub struct HookEndpoint {
    /// Which hook this is.
    pub kind: HookKind,
    /// Where to POST.
    pub url: Url,
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

/// The default hook timeout, as in Metacontroller.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl HookEndpoint {
    /// Resolves a hook of the controller of type `controller.0` named `controller.1`, with the
    /// controller's `endpointConfigs`, to an endpoint, or says what is wrong with it.
    pub fn new(kind: HookKind, hook: &Hook, controller: (&'static str, &str), configs: &[EndpointConfig]) -> Result<HookEndpoint, String> {
        let webhook = hook.webhook.as_ref().ok_or_else(|| format!("the {kind} hook has no webhook"))?;
        let url = match (&webhook.url, &webhook.service, &webhook.path) {
            (Some(url), _, _) => url.clone(),
            (None, Some(service), Some(path)) => format!(
                "{}://{}.{}:{}{path}",
                service.protocol.as_deref().unwrap_or("http"),
                service.name,
                service.namespace,
                service.port.unwrap_or(80)
            ),
            _ => return Err(format!("the {kind} hook's webhook needs either url, or service and path")),
        };
        let url = Url::parse(&url).map_err(|error| format!("the {kind} hook's URL {url:?} is not valid: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("the {kind} hook's URL {url} must be http or https"));
        }
        let timeout = match &webhook.timeout {
            None => DEFAULT_TIMEOUT,
            Some(text) => match parse_duration(text) {
                Ok(timeout) if timeout.is_zero() => DEFAULT_TIMEOUT,
                Ok(timeout) => timeout,
                Err(error) => return Err(format!("the {kind} hook's timeout: {error}")),
            },
        };
        let version = hook.version.unwrap_or_default();
        let security = Security::resolve(webhook, &url, configs).map_err(|error| format!("the {kind} hook's TLS or authentication: {error}"))?;
        Ok(HookEndpoint {
            security,
            etag: EtagSettings::of(webhook.etag.as_ref()),
            kind,
            url,
            timeout,
            version,
            mode: unmarshall_mode(version, webhook.response_unmarshall_mode),
            controller: (controller.0, controller.1.to_owned()),
        })
    }
}

/// Why a hook call failed. None of these change anything in the cluster.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
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
    #[error("{kind} hook {url}: {message}")]
    Credentials {
        /// Which hook.
        kind: HookKind,
        /// Its URL.
        url: Url,
        /// What is wrong (never the credential itself).
        message: String,
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
pub struct HookClient {
    http: reqwest::Client,
    /// Clients with custom TLS material, by its fingerprint.
    secured: Mutex<HashMap<u64, reqwest::Client>>,
    credentials: Credentials,
    etags: EtagCache,
    metrics: Metrics,
}

/// Bound on clients kept for distinct TLS material (rotations leave old ones behind).
const MAX_SECURED_CLIENTS: usize = 64;

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(concat!("bosun/", env!("CARGO_PKG_VERSION")))
}

impl HookClient {
    /// A client that verifies HTTPS hooks against the system's trusted roots (or a hook's
    /// CA bundle), reading credentials through `client`.
    pub fn new(client: kube::Client, metrics: Metrics) -> Self {
        // reqwest is built without a default crypto provider; ring is the one kube uses too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = builder().build().expect("an HTTP client with the default settings builds");
        HookClient { http, secured: Mutex::default(), credentials: Credentials::new(client), etags: EtagCache::default(), metrics }
    }

    /// The HTTP client and `Authorization` header for `security`.
    async fn secured(&self, security: &Security) -> Result<(reqwest::Client, Option<HeaderValue>), String> {
        let material: Material = self.credentials.material(security).await?;
        let header = material.header()?;
        if material.ca_pem.is_none() && material.identity_pem.is_none() {
            return Ok((self.http.clone(), header));
        }
        let fingerprint = material.tls_fingerprint();
        if let Some(client) = self.secured.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&fingerprint) {
            return Ok((client.clone(), header));
        }
        let mut builder = builder();
        if let Some(pem) = &material.ca_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|_| "the CA bundle is not valid PEM".to_owned())?;
            if roots.is_empty() {
                return Err("the CA bundle holds no certificate".into());
            }
            builder = builder.tls_certs_only(roots);
        }
        if let Some(pem) = &material.identity_pem {
            let identity = reqwest::Identity::from_pem(pem).map_err(|_| "the client certificate or key is not valid PEM".to_owned())?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|error| format!("building a TLS client: {}", innermost_message(&error)))?;
        let mut secured = self.secured.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if secured.len() >= MAX_SECURED_CLIENTS {
            secured.clear();
        }
        secured.insert(fingerprint, client.clone());
        Ok((client, header))
    }

    /// POSTs `body` to the hook, about `object` (the parent or target), and decodes its
    /// response.
    pub async fn call<T: HookResponse>(&self, endpoint: &HookEndpoint, body: Vec<u8>, object: &DynamicObject) -> Result<T, HookError> {
        let kind = endpoint.kind;
        let url = endpoint.url.clone();
        let (http, authorization) = match &endpoint.security {
            None => (self.http.clone(), None),
            Some(security) => self
                .secured(security)
                .await
                .map_err(|message| HookError::Credentials { kind, url: url.clone(), message })?,
        };
        let etag = endpoint.etag.map(|settings| {
            let kind_of = object.types.as_ref().map(|types| types.kind.clone()).unwrap_or_default();
            let key = (url.to_string(), format!("{kind_of}/{}/{}", object.namespace().unwrap_or_default(), object.name_any()));
            (settings, key)
        });
        let request = self.metrics.hook_request(
            kind.name(),
            HookLabels {
                controller_name: endpoint.controller.1.clone(),
                controller_type: endpoint.controller.0.to_owned(),
                url: url.to_string(),
                method: "POST".into(),
            },
        );
        let transport = |error: reqwest::Error| {
            let message = if error.is_timeout() {
                format!("no response within the timeout of {:?}", endpoint.timeout)
            } else {
                innermost_message(&error)
            };
            HookError::Transport { kind, url: endpoint.url.clone(), message }
        };
        let mut post = http.post(url.clone()).header(CONTENT_TYPE, HeaderValue::from_static("application/json")).timeout(endpoint.timeout);
        if let Some(authorization) = authorization {
            post = post.header(AUTHORIZATION, authorization);
        }
        let sent_etag = etag.as_ref().and_then(|(settings, key)| self.etags.etag(settings, key));
        if let Some(value) = &sent_etag {
            post = post.header(IF_NONE_MATCH, value.clone());
        }
        let response = post.body(body).send().await.map_err(transport)?;
        let status = response.status().as_u16();
        request.finish(Some(status));
        if sent_etag.is_some()
            && (status == 304 || status == 412)
            && let Some(body) = etag.as_ref().and_then(|(_, key)| self.etags.body(key))
        {
            return decode(&body, endpoint.mode).map_err(|source| HookError::Decode { kind, url, source });
        }
        let response_etag = response.headers().get(ETAG).cloned();
        if status == 429 {
            let retry_after = response.headers().get(RETRY_AFTER).and_then(|value| parse_retry_after(value.to_str().ok()?));
            return Err(HookError::TooManyRequests { kind, url, retry_after });
        }
        let bytes = response.bytes().await.map_err(transport)?;
        if status != 200 {
            let text = String::from_utf8_lossy(&bytes);
            let body: String = text.chars().take(512).collect();
            return Err(HookError::Status { kind, url, status, body });
        }
        let decoded = decode(&bytes, endpoint.mode).map_err(|source| HookError::Decode { kind, url, source })?;
        if let (Some((_, key)), Some(value)) = (etag, response_etag) {
            self.etags.keep(key, value, bytes);
        }
        Ok(decoded)
    }
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

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
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
        assert!(HookEndpoint::new(HookKind::Sync, &neither, CONTROLLER, &[]).unwrap_err().contains("url, or service and path"));
        let bad_timeout = hook(Webhook { url: Some("http://h/".into()), timeout: Some("soon".into()), ..Default::default() });
        assert!(HookEndpoint::new(HookKind::Sync, &bad_timeout, CONTROLLER, &[]).unwrap_err().contains("timeout"));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let parsed = parse_retry_after(&later).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120), "{parsed:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }
}
