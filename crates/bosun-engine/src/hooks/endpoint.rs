//! What a controller declares of a hook, resolved: which hook it is, where to POST (a URL, or a
//! Service and path), its timeout, protocol version, response decoding, security (TLS and
//! credentials) and ETag caching — checked once, when the controller starts, so that a sync
//! only calls it.

use std::time::Duration;

use url::Url;

use super::auth::{CredentialError, Security};
use super::etag::EtagSettings;
use super::exec::{Program, ProgramError};
use super::wasm::{ModuleError, WasmModule};
use super::{parse_duration, unmarshall_mode};
use crate::api::{EndpointConfig, Hook, HookVersion, ResponseUnmarshallMode};

/// Which hook of a controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HookKind {
    /// `sync`.
    Sync,
    /// `finalize`.
    Finalize,
    /// `customize`.
    Customize,
    /// An AdmissionController's `validate`.
    Validate,
    /// An AdmissionController's `mutate`.
    Mutate,
    /// An AdmissionController's `convert`.
    Convert,
}

impl HookKind {
    /// The hook's name in the API and in metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HookKind::Sync => "sync",
            HookKind::Finalize => "finalize",
            HookKind::Customize => "customize",
            HookKind::Validate => "validate",
            HookKind::Mutate => "mutate",
            HookKind::Convert => "convert",
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
    /// Where to POST, with any credential it holds (user information, query, fragment): never
    /// print it, print `redacted_url`.
    pub url: Url,
    /// The URL as it may be printed ([`bosun_runtime::redact::url`]): for logs, events, errors
    /// and metric labels.
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
    /// For an exec hook, the program run instead of a POST (`url` is then `exec://<path>`).
    pub program: Option<Program>,
    /// For a WebAssembly hook, the module run instead of a POST (`url` is then `wasm:…`).
    pub module: Option<WasmModule>,
}

impl std::fmt::Debug for HookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookEndpoint").field("kind", &self.kind).field("url", &self.redacted_url.as_str()).finish_non_exhaustive()
    }
}

/// The default hook timeout, as in Metacontroller.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What is wrong with a hook's declaration in a controller's spec.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EndpointError {
    /// The hook has no `webhook` (or `exec`).
    #[error("the {kind} hook has no webhook")]
    NoWebhook {
        /// Which hook.
        kind: HookKind,
    },
    /// The hook declares more than one of a webhook, a program and a module.
    #[error("the {kind} hook declares more than one of webhook, exec and wasm: give one")]
    SeveralKinds {
        /// Which hook.
        kind: HookKind,
    },
    /// The program of an exec hook cannot be run.
    #[error("the {kind} hook: {source}")]
    Program {
        /// Which hook.
        kind: HookKind,
        /// Why.
        source: ProgramError,
    },
    /// The module of a WebAssembly hook cannot be loaded as declared.
    #[error("the {kind} hook: {source}")]
    Module {
        /// Which hook.
        kind: HookKind,
        /// Why.
        source: ModuleError,
    },
    /// Exec hooks are off.
    #[error(
        "the {kind} hook runs a program (exec), and exec hooks are off: they run with bosun's own identity, so an \
         operator enables them by starting bosun with --exec-hooks"
    )]
    ExecDisabled {
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
        let declared = [hook.webhook.is_some(), hook.exec.is_some(), hook.wasm.is_some()].into_iter().filter(|is| *is).count();
        match declared {
            0 => return Err(EndpointError::NoWebhook { kind }),
            1 => {}
            _ => return Err(EndpointError::SeveralKinds { kind }),
        }
        let version = hook.version.unwrap_or_default();
        // A program or a module: run here, named by a URL of its own.
        let here = match (&hook.exec, &hook.wasm) {
            (Some(exec), _) => {
                let program = Program::resolve(exec).map_err(|source| EndpointError::Program { kind, source })?;
                Some((program.url(), exec.timeout.as_deref(), exec.response_unmarshall_mode, Some(program), None))
            }
            (_, Some(wasm)) => {
                let module = WasmModule::resolve(wasm).map_err(|source| EndpointError::Module { kind, source })?;
                Some((module.url(), wasm.timeout.as_deref(), wasm.response_unmarshall_mode, None, Some(module)))
            }
            _ => None,
        };
        if let Some((url, declared_timeout, mode, program, module)) = here {
            return Ok(HookEndpoint {
                security: None,
                etag: None,
                kind,
                redacted_url: url.clone(),
                url,
                timeout: timeout(kind, declared_timeout)?,
                version,
                mode: unmarshall_mode(version, mode),
                controller: (controller.0, controller.1.to_owned()),
                program,
                module,
            });
        }
        let webhook = hook.webhook.as_ref().expect("a webhook when there is no program or module");
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
            return Err(EndpointError::Scheme { kind, url: bosun_runtime::redact::url(&url) });
        }
        let security = Security::resolve(webhook, &url, configs).map_err(|source| EndpointError::Security { kind, source })?;
        Ok(HookEndpoint {
            security,
            etag: EtagSettings::of(webhook.etag.as_ref()),
            kind,
            redacted_url: bosun_runtime::redact::url(&url),
            url,
            timeout: timeout(kind, webhook.timeout.as_deref())?,
            version,
            mode: unmarshall_mode(version, webhook.response_unmarshall_mode),
            controller: (controller.0, controller.1.to_owned()),
            program: None,
            module: None,
        })
    }

    /// Refuses an exec hook unless `allowed` (the engine's `--exec-hooks`).
    pub(crate) fn check_exec(&self, allowed: bool) -> Result<(), EndpointError> {
        match self.program {
            Some(_) if !allowed => Err(EndpointError::ExecDisabled { kind: self.kind }),
            _ => Ok(()),
        }
    }

    /// Whether calls carry credentials: a `user:password@` in the URL, a bearer token or a
    /// basic-auth password.
    pub(crate) fn sends_credentials(&self) -> bool {
        let configured = self.security.as_ref().is_some_and(|security| security.authorization.is_some() || security.basic_auth.is_some());
        configured || !self.url.username().is_empty() || self.url.password().is_some()
    }

    /// The credentials each call sends, as they may be printed (where from, never what).
    pub(crate) fn credentials(&self) -> Vec<String> {
        let mut sent = self.security.as_ref().map(Security::credentials).unwrap_or_default();
        if !self.url.username().is_empty() || self.url.password().is_some() {
            sent.push("basic auth from the URL's user information".into());
        }
        sent
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

/// A hook's timeout as declared: as in Metacontroller, none, zero or less means the default.
fn timeout(kind: HookKind, declared: Option<&str>) -> Result<Duration, EndpointError> {
    match declared {
        None => Ok(DEFAULT_TIMEOUT),
        Some(text) if text.strip_prefix('-').is_some_and(|magnitude| parse_duration(magnitude).is_ok()) => Ok(DEFAULT_TIMEOUT),
        Some(text) => match parse_duration(text) {
            Ok(timeout) if timeout.is_zero() => Ok(DEFAULT_TIMEOUT),
            Ok(timeout) => Ok(timeout),
            Err(source) => Err(EndpointError::Timeout { kind, source }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ServiceReference, Webhook};

    const CONTROLLER: (&str, &str) = ("CompositeController", "things");

    fn hook(webhook: Webhook) -> Hook {
        Hook { version: None, webhook: Some(webhook), exec: None, wasm: None }
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
        assert_eq!(endpoint.redacted_url.as_str(), "http://REDACTED@hooks.ops/sync");
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
}
