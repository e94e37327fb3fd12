//! Calling a hook over HTTP: POST the JSON request with a `Content-Length` (the
//! standard-library Python servers most hooks run on need it), accept only 200, honour 429 with
//! `Retry-After`, and turn every other outcome into an error that says what happened.

use std::time::{Duration, SystemTime};

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use bosun_runtime::{HookLabels, Metrics};

use super::{DecodeError, HookResponse, decode, parse_duration, unmarshall_mode};
use crate::api::{Hook, HookVersion, ResponseUnmarshallMode};

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
}

/// The default hook timeout, as in Metacontroller.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl HookEndpoint {
    /// Resolves a hook of the controller of type `controller.0` named `controller.1` to an
    /// endpoint, or says what is wrong with it.
    pub fn new(kind: HookKind, hook: &Hook, controller: (&'static str, &str)) -> Result<HookEndpoint, String> {
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
        Ok(HookEndpoint {
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
#[derive(Debug, Clone)]
pub struct HookClient {
    http: reqwest::Client,
    metrics: Metrics,
}

impl HookClient {
    /// A client that verifies HTTPS hooks against the system's trusted roots.
    pub fn new(metrics: Metrics) -> Self {
        // reqwest is built without a default crypto provider; ring is the one kube uses too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("bosun/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with the default settings builds");
        HookClient { http, metrics }
    }

    /// POSTs `body` to the hook and decodes its response.
    pub async fn call<T: HookResponse>(&self, endpoint: &HookEndpoint, body: Vec<u8>) -> Result<T, HookError> {
        let kind = endpoint.kind;
        let url = endpoint.url.clone();
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
        let response = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .timeout(endpoint.timeout)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        request.finish(Some(status));
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
        decode(&bytes, endpoint.mode).map_err(|source| HookError::Decode { kind, url, source })
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
        let endpoint = HookEndpoint::new(HookKind::Sync, &by_url, CONTROLLER).unwrap();
        assert_eq!(endpoint.url.as_str(), "http://127.0.0.1:8080/sync");
        assert_eq!(endpoint.timeout, DEFAULT_TIMEOUT);
        assert_eq!(endpoint.mode, ResponseUnmarshallMode::Loose, "v1 decodes loosely");

        let by_service = hook(Webhook {
            service: Some(ServiceReference { name: "hooks".into(), namespace: "ops".into(), port: None, protocol: None }),
            path: Some("/sync".into()),
            timeout: Some("2s".into()),
            ..Default::default()
        });
        let endpoint = HookEndpoint::new(HookKind::Sync, &by_service, CONTROLLER).unwrap();
        assert_eq!(endpoint.url.as_str(), "http://hooks.ops/sync", "port 80 is implied");
        assert_eq!(endpoint.timeout, Duration::from_secs(2));

        let neither = hook(Webhook { path: Some("/sync".into()), ..Default::default() });
        assert!(HookEndpoint::new(HookKind::Sync, &neither, CONTROLLER).unwrap_err().contains("url, or service and path"));
        let bad_timeout = hook(Webhook { url: Some("http://h/".into()), timeout: Some("soon".into()), ..Default::default() });
        assert!(HookEndpoint::new(HookKind::Sync, &bad_timeout, CONTROLLER).unwrap_err().contains("timeout"));
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
