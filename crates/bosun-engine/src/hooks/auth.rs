//! TLS and authentication of hook calls: which settings apply to a hook (its own, else the
//! first `endpointConfigs` entry whose host matches its URL), and the credentials they name —
//! CA bundles, client certificates, bearer tokens, basic-auth passwords — read from Secrets and
//! ConfigMaps that are watched, so a rotated credential is used from the next call on
//! (Metacontroller only re-reads them when the controller's spec changes).
//!
//! Credentials never appear in logs, events or errors: those name the object and key only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use http::HeaderValue;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use url::Url;

use crate::api::{Authorization, BasicAuth, CaBundle, ClientTls, EndpointConfig, KeyReference, Webhook};

/// How long a call waits for a credential's object to be read the first time.
const FIRST_READ: Duration = Duration::from_secs(10);

/// What is wrong with a hook's TLS or authentication settings, or with the credentials they
/// name. It names objects and keys, never a credential.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialError {
    /// `caBundle` names no source, or more than one.
    #[error("caBundle needs exactly one of inline, secretRef and configMapRef")]
    CaBundleSources,
    /// Both header kinds are set.
    #[error("authorization and basicAuth cannot both be set")]
    AuthorizationAndBasicAuth,
    /// `authorization.type: Basic` would put a raw password in a header.
    #[error("authorization type Basic is not accepted: use basicAuth")]
    BasicAuthorizationType,
    /// The Secret or ConfigMap could not be read in time.
    #[error("{object} could not be read (is the engine allowed to get, list and watch it?)")]
    Unreadable {
        /// `Secret namespace/name` or `ConfigMap namespace/name`.
        object: String,
    },
    /// The Secret or ConfigMap does not exist.
    #[error("{object} does not exist")]
    Missing {
        /// `Secret namespace/name` or `ConfigMap namespace/name`.
        object: String,
    },
    /// The object has no such key.
    #[error("{object} has no key {key:?}")]
    MissingKey {
        /// `Secret namespace/name` or `ConfigMap namespace/name`.
        object: String,
        /// The key.
        key: String,
    },
    /// A token, username or password is not text.
    #[error("key {key} of {object} is not UTF-8 text")]
    NotText {
        /// `Secret namespace/name`.
        object: String,
        /// The key.
        key: String,
    },
    /// A basic-auth username with `:` cannot be encoded.
    #[error("the basicAuth username in {object} contains ':'")]
    UsernameColon {
        /// `Secret namespace/name`.
        object: String,
    },
    /// The header value would not be a valid HTTP header.
    #[error("the credential contains characters not allowed in an HTTP header")]
    HeaderCharacters,
    /// The certificates or key cannot be used for TLS.
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// The client certificate PEM does not parse.
    #[error("the client certificate is not valid PEM")]
    CertificatePem,
    /// The client certificate PEM holds no certificate.
    #[error("the client certificate PEM holds no certificate")]
    NoCertificate,
    /// The client key PEM does not parse.
    #[error("the client key is not valid PEM")]
    KeyPem,
    /// The client key is of a kind that cannot sign.
    #[error("the client key cannot be used: {0}")]
    Key(rustls::Error),
    /// The CA bundle PEM does not parse.
    #[error("the CA bundle is not valid PEM")]
    CaPem,
    /// The CA bundle holds no certificate.
    #[error("the CA bundle holds no certificate")]
    NoCaCertificate,
    /// A CA certificate is not acceptable as a root.
    #[error("the CA bundle: {0}")]
    Ca(rustls::Error),
    /// The TLS library refused the settings.
    #[error("TLS settings: {0}")]
    Settings(rustls::Error),
    /// The system's trusted roots cannot be loaded.
    #[error("the system's trusted roots: {0}")]
    SystemRoots(rustls::Error),
}

/// The TLS and authentication settings of one hook.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Security {
    /// CA certificates that replace the system roots.
    pub ca_bundle: Option<CaBundle>,
    /// A client certificate for mutual TLS.
    pub client_tls: Option<ClientTls>,
    /// An `Authorization: <type> <token>` header.
    pub authorization: Option<Authorization>,
    /// HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
}

impl Security {
    fn is_empty(&self) -> bool {
        *self == Security::default()
    }

    /// The settings of a hook at `url`: the webhook's own if it sets any, else those of the
    /// first endpoint config whose host matches. `None` if there are none.
    pub(crate) fn resolve(webhook: &Webhook, url: &Url, configs: &[EndpointConfig]) -> Result<Option<Security>, CredentialError> {
        let own = Security {
            ca_bundle: webhook.ca_bundle.clone(),
            client_tls: webhook.client_tls.clone(),
            authorization: webhook.authorization.clone(),
            basic_auth: webhook.basic_auth.clone(),
        };
        let chosen = if own.is_empty() {
            match configs.iter().find(|config| host_matches(&config.host, url)) {
                Some(config) => Security {
                    ca_bundle: config.ca_bundle.clone(),
                    client_tls: config.client_tls.clone(),
                    authorization: config.authorization.clone(),
                    basic_auth: config.basic_auth.clone(),
                },
                None => return Ok(None),
            }
        } else {
            own
        };
        chosen.validate()?;
        Ok((!chosen.is_empty()).then_some(chosen))
    }

    /// The credentials these settings send, as they may be printed: where each comes from,
    /// never its value.
    pub(crate) fn credentials(&self) -> Vec<String> {
        let mut sent = Vec::new();
        if let Some(authorization) = &self.authorization {
            let KeyReference { name, namespace, key } = &authorization.secret_ref;
            let scheme = authorization.type_.as_deref().unwrap_or("Bearer");
            sent.push(format!(
                "an Authorization: {scheme} header from Secret {namespace}/{name} key {}",
                key.as_deref().unwrap_or("token")
            ));
        }
        if let Some(basic) = &self.basic_auth {
            sent.push(format!("basic auth from Secret {}/{}", basic.secret_ref.namespace, basic.secret_ref.name));
        }
        if let Some(tls) = &self.client_tls {
            sent.push(format!("the client certificate in Secret {}/{}", tls.secret_ref.namespace, tls.secret_ref.name));
        }
        sent
    }

    fn validate(&self) -> Result<(), CredentialError> {
        if let Some(bundle) = &self.ca_bundle {
            let sources = [bundle.inline.is_some(), bundle.secret_ref.is_some(), bundle.config_map_ref.is_some()];
            if sources.iter().filter(|set| **set).count() != 1 {
                return Err(CredentialError::CaBundleSources);
            }
        }
        if self.authorization.is_some() && self.basic_auth.is_some() {
            return Err(CredentialError::AuthorizationAndBasicAuth);
        }
        if let Some(authorization) = &self.authorization
            && authorization.type_.as_deref().is_some_and(|type_| type_.eq_ignore_ascii_case("basic"))
        {
            return Err(CredentialError::BasicAuthorizationType);
        }
        Ok(())
    }
}

/// Whether endpoint config host `host` (`host` or `host:port`) matches `url`: hosts compare
/// case-insensitively, and an omitted port means the scheme's default.
pub(crate) fn host_matches(host: &str, url: &Url) -> bool {
    let Some(url_host) = url.host_str() else { return false };
    let url_port = url.port_or_known_default();
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') || name.ends_with(']') => (name, port.parse::<u16>().ok()),
        _ => (host, None),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let url_host = url_host.trim_start_matches('[').trim_end_matches(']');
    if !name.eq_ignore_ascii_case(url_host) {
        return false;
    }
    match port {
        Some(port) => url_port == Some(port),
        None => url.port().is_none() || url.port() == Some(if url.scheme() == "https" { 443 } else { 80 }),
    }
}

/// What a call needs from its settings: the TLS material and the `Authorization` header.
#[derive(Default, Hash, PartialEq, Eq)]
pub(crate) struct Material {
    /// PEM CA certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key.
    pub identity_pem: Option<Vec<u8>>,
    /// The header value.
    pub authorization: Option<String>,
}

impl Material {
    /// A fingerprint of the TLS material, to reuse HTTP clients (and their connections).
    pub(crate) fn tls_fingerprint(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.ca_pem.hash(&mut hasher);
        self.identity_pem.hash(&mut hasher);
        hasher.finish()
    }

    /// The `Authorization` header, marked sensitive.
    pub(crate) fn header(&self) -> Result<Option<HeaderValue>, CredentialError> {
        let Some(value) = &self.authorization else { return Ok(None) };
        let mut header = HeaderValue::from_str(value).map_err(|_| CredentialError::HeaderCharacters)?;
        header.set_sensitive(true);
        Ok(Some(header))
    }
}

/// The kind of object a credential is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Secret,
    ConfigMap,
}

type Data = BTreeMap<String, Vec<u8>>;

/// One watched Secret or ConfigMap: `None` until first read, then `Some(None)` while it does
/// not exist and `Some(Some(data))` when it does.
struct Watched {
    data: watch::Receiver<Option<Option<Data>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Secrets and ConfigMaps credentials are read from, each watched by name (so RBAC can
/// grant exactly those objects) from its first use on, until no controller that used it runs.
pub(crate) struct Credentials {
    client: kube::Client,
    /// Each watch, and the controllers that read through it.
    watched: Mutex<HashMap<WatchKey, (Arc<Watched>, Users)>>,
}

/// A watched object: its kind, namespace and name.
type WatchKey = (Source, String, String);

/// The controllers (`Kind/name`) that read a credential.
type Users = BTreeSet<String>;

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials read through `client`.
    pub(crate) fn new(client: kube::Client) -> Credentials {
        Credentials { client, watched: Mutex::default() }
    }

    /// The client credentials are read through.
    pub(crate) fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Stops the watches that only `user` read through: it has stopped.
    pub(crate) fn release(&self, user: &str) {
        self.watched.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|_, (_, users)| {
            users.remove(user);
            !users.is_empty()
        });
    }

    /// How many Secrets and ConfigMaps are watched.
    pub(crate) fn count(&self) -> usize {
        self.watched.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    /// Reads what `security` names, for `user` (a controller, until [`Credentials::release`]).
    pub(crate) async fn material(&self, security: &Security, user: &str) -> Result<Material, CredentialError> {
        let mut material = Material::default();
        if let Some(bundle) = &security.ca_bundle {
            material.ca_pem = Some(match (&bundle.inline, &bundle.secret_ref, &bundle.config_map_ref) {
                (Some(inline), _, _) => inline.clone().into_bytes(),
                (_, Some(reference), _) => {
                    self.value(user, Source::Secret, &reference.namespace, &reference.name, reference.key.as_deref().unwrap_or("ca.crt"))
                        .await?
                }
                (_, _, Some(reference)) => {
                    self.value(user, Source::ConfigMap, &reference.namespace, &reference.name, reference.key.as_deref().unwrap_or("ca.crt"))
                        .await?
                }
                _ => return Err(CredentialError::CaBundleSources),
            });
        }
        if let Some(tls) = &security.client_tls {
            let reference = &tls.secret_ref;
            let mut pem = self
                .value(user, Source::Secret, &reference.namespace, &reference.name, tls.cert_key.as_deref().unwrap_or("tls.crt"))
                .await?;
            pem.push(b'\n');
            pem.extend(
                self.value(
                    user,
                    Source::Secret,
                    &reference.namespace,
                    &reference.name,
                    tls.private_key_key.as_deref().unwrap_or("tls.key"),
                )
                .await?,
            );
            material.identity_pem = Some(pem);
        }
        if let Some(authorization) = &security.authorization {
            let reference = &authorization.secret_ref;
            let key = reference.key.as_deref().unwrap_or("token");
            let token = self.value(user, Source::Secret, &reference.namespace, &reference.name, key).await?;
            let token = String::from_utf8(token).map_err(|_| CredentialError::NotText {
                object: format!("Secret {}/{}", reference.namespace, reference.name),
                key: key.to_owned(),
            })?;
            material.authorization = Some(format!("{} {}", authorization.type_.as_deref().unwrap_or("Bearer"), token.trim()));
        }
        if let Some(basic) = &security.basic_auth {
            let reference = &basic.secret_ref;
            let object = format!("Secret {}/{}", reference.namespace, reference.name);
            let text = |bytes: Vec<u8>, key: &str| {
                String::from_utf8(bytes).map_err(|_| CredentialError::NotText { object: object.clone(), key: key.to_owned() })
            };
            let username_key = basic.username_key.as_deref().unwrap_or("username");
            let password_key = basic.password_key.as_deref().unwrap_or("password");
            let username =
                text(self.value(user, Source::Secret, &reference.namespace, &reference.name, username_key).await?, username_key)?;
            let password =
                text(self.value(user, Source::Secret, &reference.namespace, &reference.name, password_key).await?, password_key)?;
            if username.contains(':') {
                return Err(CredentialError::UsernameColon { object });
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            material.authorization = Some(format!("Basic {encoded}"));
        }
        Ok(material)
    }

    /// The value of `key` in the Secret or ConfigMap `namespace/name`.
    async fn value(&self, user: &str, source: Source, namespace: &str, name: &str, key: &str) -> Result<Vec<u8>, CredentialError> {
        let object = format!("{source:?} {namespace}/{name}");
        let watched = self.watch(user, source, namespace, name);
        let mut data = watched.data.clone();
        let current = match tokio::time::timeout(FIRST_READ, data.wait_for(Option::is_some)).await {
            Ok(Ok(current)) => current.clone().flatten(),
            _ => return Err(CredentialError::Unreadable { object }),
        };
        let Some(current) = current else { return Err(CredentialError::Missing { object }) };
        current.get(key).cloned().ok_or_else(|| CredentialError::MissingKey { object, key: key.to_owned() })
    }

    fn watch(&self, user: &str, source: Source, namespace: &str, name: &str) -> Arc<Watched> {
        let mut watched = self.watched.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (source, namespace.to_owned(), name.to_owned());
        if let Some((existing, users)) = watched.get_mut(&key) {
            users.insert(user.to_owned());
            return existing.clone();
        }
        let (send, data) = watch::channel(None);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = match source {
            Source::Secret => {
                tokio::spawn(follow(Api::<Secret>::namespaced(self.client.clone(), namespace), config, send, |secret: Secret| {
                    secret.data.unwrap_or_default().into_iter().map(|(key, value)| (key, value.0)).collect()
                }))
            }
            Source::ConfigMap => {
                tokio::spawn(follow(Api::<ConfigMap>::namespaced(self.client.clone(), namespace), config, send, |map: ConfigMap| {
                    let text = map.data.unwrap_or_default().into_iter().map(|(key, value)| (key, value.into_bytes()));
                    text.chain(map.binary_data.unwrap_or_default().into_iter().map(|(key, value)| (key, value.0))).collect()
                }))
            }
        };
        let entry = Arc::new(Watched { data, task });
        watched.insert(key, (entry.clone(), BTreeSet::from([user.to_owned()])));
        entry
    }
}

/// Keeps `send` current with the one object `api` and `config` select.
async fn follow<K>(api: Api<K>, config: watcher::Config, send: watch::Sender<Option<Option<Data>>>, data_of: fn(K) -> Data)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    // Backing off on errors: a Secret the engine may not read must not become a hot LIST loop.
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut listed: Option<Data> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listed = None,
            Ok(watcher::Event::InitApply(object)) => listed = Some(data_of(object)),
            Ok(watcher::Event::InitDone) => {
                send.send_replace(Some(listed.take()));
            }
            Ok(watcher::Event::Apply(object)) => {
                send.send_replace(Some(Some(data_of(object))));
            }
            Ok(watcher::Event::Delete(_)) => {
                send.send_replace(Some(None));
            }
            Err(error) => tracing::warn!(%error, "watching a hook credential failed; retrying with backoff"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{KeyReference, SecretReference};

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn hosts_match_case_insensitively_with_default_ports() {
        assert!(host_matches("Hooks.Example.com", &url("https://hooks.example.com/sync")));
        assert!(host_matches("hooks.example.com:443", &url("https://hooks.example.com/sync")));
        assert!(host_matches("hooks.example.com", &url("https://hooks.example.com:443/sync")));
        assert!(!host_matches("hooks.example.com", &url("https://hooks.example.com:8443/sync")));
        assert!(host_matches("hooks.example.com:8443", &url("https://hooks.example.com:8443/sync")));
        assert!(host_matches("127.0.0.1:9443", &url("https://127.0.0.1:9443/sync")));
        assert!(host_matches("hooks.ops:8080", &url("http://hooks.ops:8080/sync")), "service-form hooks");
        assert!(!host_matches("other.example.com", &url("https://hooks.example.com/sync")));
    }

    #[test]
    fn own_settings_win_over_endpoint_configs() {
        let bearer =
            |name: &str| Authorization { type_: None, secret_ref: KeyReference { name: name.into(), namespace: "ops".into(), key: None } };
        let configs = vec![
            EndpointConfig { host: "other".into(), authorization: Some(bearer("other")), ..Default::default() },
            EndpointConfig { host: "hooks".into(), authorization: Some(bearer("from-config")), ..Default::default() },
        ];
        let plain = Webhook::default();
        let chosen = Security::resolve(&plain, &url("http://hooks/sync"), &configs).unwrap().unwrap();
        assert_eq!(chosen.authorization.unwrap().secret_ref.name, "from-config");
        let own = Webhook { authorization: Some(bearer("own")), ..Default::default() };
        let chosen = Security::resolve(&own, &url("http://hooks/sync"), &configs).unwrap().unwrap();
        assert_eq!(chosen.authorization.unwrap().secret_ref.name, "own");
        assert_eq!(Security::resolve(&plain, &url("http://nowhere/sync"), &configs).unwrap(), None);
    }

    #[test]
    fn invalid_settings_are_refused() {
        let secret = SecretReference { name: "s".into(), namespace: "ops".into() };
        let both = Webhook {
            authorization: Some(Authorization {
                type_: None,
                secret_ref: KeyReference { name: "s".into(), namespace: "ops".into(), key: None },
            }),
            basic_auth: Some(BasicAuth { secret_ref: secret, username_key: None, password_key: None }),
            ..Default::default()
        };
        assert!(Security::resolve(&both, &url("http://h/"), &[]).unwrap_err().to_string().contains("cannot both be set"));
        let basic_type = Webhook {
            authorization: Some(Authorization {
                type_: Some("basic".into()),
                secret_ref: KeyReference { name: "s".into(), namespace: "ops".into(), key: None },
            }),
            ..Default::default()
        };
        assert!(Security::resolve(&basic_type, &url("http://h/"), &[]).unwrap_err().to_string().contains("use basicAuth"));
        let two_sources = Webhook {
            ca_bundle: Some(CaBundle {
                inline: Some("pem".into()),
                config_map_ref: Some(KeyReference { name: "c".into(), namespace: "ops".into(), key: None }),
                secret_ref: None,
            }),
            ..Default::default()
        };
        assert!(Security::resolve(&two_sources, &url("http://h/"), &[]).unwrap_err().to_string().contains("exactly one"));
    }
}
