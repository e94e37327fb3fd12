//! The admission CA: a certificate authority of bosun's own, made once and kept in a Secret
//! (`ca.crt`, `ca.key`) that every replica reads, so that every replica's serving certificate
//! — issued by each replica for itself, in memory — is trusted through the one `caBundle` the
//! webhook configurations carry. The CA's key never leaves the Secret and the process.
//!
//! Rotation (before the CA expires, or when the Secret is annotated `bosun.dev/rotate-ca`)
//! goes in three steps, each kept in the Secret so that a new leader picks it up where the
//! last one stopped, with an overlap between them so that no request fails: the next CA is
//! added (`next.crt`, `next.key`: trusted in every `caBundle`, not yet signing); it takes over
//! (`ca.*`, the old one kept as `previous.crt`: replicas serve certificates it issued); the old
//! one is dropped.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// The Secret's keys.
const CERT: &str = "ca.crt";
const KEY: &str = "ca.key";
const NEXT_CERT: &str = "next.crt";
const NEXT_KEY: &str = "next.key";
const PREVIOUS_CERT: &str = "previous.crt";
/// When the CA in `ca.crt` expires, RFC 3339 (rcgen cannot read it back from the certificate).
const EXPIRES: &str = "ca.expires";
/// Annotating the Secret with it asks for a rotation now.
pub const ROTATE_ANNOTATION: &str = "bosun.dev/rotate-ca";
/// A CA this close to expiring is rotated.
const RENEW_BEFORE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The CA's common name: the issuer every serving certificate names.
const CA_NAME: &str = "bosun admission CA";
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a serving certificate is valid; each replica issues a new one when it starts.
const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why the CA cannot be had or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing its Secret failed.
    #[error("the admission CA Secret {namespace}/{name}: {source}")]
    Secret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// The Secret holds no usable CA.
    #[error("the admission CA Secret {0} has no usable ca.crt and ca.key: {1}")]
    Unusable(String, String),
    /// Making a certificate failed.
    #[error("making a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// bosun's admission CA, as its Secret holds it.
#[derive(Clone, PartialEq)]
pub struct Authority {
    /// `ca.crt`, PEM: the CA that signs serving certificates.
    pub certificate_pem: String,
    key_pem: String,
    /// When it expires.
    expires: Option<time::OffsetDateTime>,
    /// During a rotation: the CA that takes over next (certificate, key).
    next: Option<(String, String)>,
    /// During a rotation: the CA it replaced, still trusted.
    previous: Option<String>,
    /// Whether a rotation was asked for.
    rotate: bool,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// The parameters of the CA certificate: the same each time they are made, so that a CA read
/// back from its Secret issues certificates naming the issuer its certificate names.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

impl Authority {
    /// A new CA.
    pub fn generate() -> Result<Authority, CaError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params()?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + CA_VALIDITY;
        let certificate = params.self_signed(&key)?;
        Ok(Authority {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            expires: Some(params.not_after),
            next: None,
            previous: None,
            rotate: false,
        })
    }

    /// Every CA to trust now, PEM: the webhook configurations' `caBundle`.
    pub fn bundle(&self) -> String {
        let next = self.next.as_ref().map(|(certificate, _)| certificate.as_str());
        [Some(self.certificate_pem.as_str()), next, self.previous.as_deref()].into_iter().flatten().collect::<Vec<_>>().join("")
    }

    /// Whether a rotation is due or under way.
    pub fn rotating(&self) -> bool {
        let expiring = self.expires.is_some_and(|expires| expires - time::OffsetDateTime::now_utc() < RENEW_BEFORE);
        self.rotate || expiring || self.next.is_some() || self.previous.is_some()
    }

    /// The Secret's data for this CA.
    fn data(&self) -> std::collections::BTreeMap<String, ByteString> {
        let mut data = std::collections::BTreeMap::new();
        let mut put = |key: &str, value: &str| data.insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
        put(CERT, &self.certificate_pem);
        put(KEY, &self.key_pem);
        if let Some(expires) = self.expires.and_then(|expires| expires.format(&time::format_description::well_known::Rfc3339).ok()) {
            put(EXPIRES, &expires);
        }
        if let Some((certificate, key)) = &self.next {
            put(NEXT_CERT, certificate);
            put(NEXT_KEY, key);
        }
        if let Some(previous) = &self.previous {
            put(PREVIOUS_CERT, previous);
        }
        data
    }

    /// The CA in Secret `namespace/name`, made and stored there first if there is none yet
    /// (by whichever replica gets there first: the others read what it stored).
    pub async fn load_or_create(client: &kube::Client, namespace: &str, name: &str) -> Result<Authority, CaError> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let failed =
            |source: kube::Error| CaError::Secret { namespace: namespace.to_owned(), name: name.to_owned(), source: Box::new(source) };
        if let Some(secret) = secrets.get_opt(name).await.map_err(failed)? {
            return Authority::from_secret(&secret, &format!("{namespace}/{name}"));
        }
        let authority = Authority::generate()?;
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some([("app.kubernetes.io/managed-by".to_owned(), "bosun".to_owned())].into()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(authority.data()),
            ..Default::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(authority),
            // Another replica stored one meanwhile: theirs is the CA.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let secret = secrets.get(name).await.map_err(failed)?;
                Authority::from_secret(&secret, &format!("{namespace}/{name}"))
            }
            Err(error) => Err(failed(error)),
        }
    }

    /// The CA the Secret holds.
    pub fn from_secret(secret: &Secret, described: &str) -> Result<Authority, CaError> {
        let field =
            |key: &str| secret.data.as_ref().and_then(|data| data.get(key)).and_then(|bytes| String::from_utf8(bytes.0.clone()).ok());
        let required = |key: &str| field(key).ok_or_else(|| CaError::Unusable(described.to_owned(), format!("{key} is missing")));
        let authority = Authority {
            certificate_pem: required(CERT)?,
            key_pem: required(KEY)?,
            expires: field(EXPIRES)
                .and_then(|text| time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).ok()),
            next: field(NEXT_CERT).zip(field(NEXT_KEY)),
            previous: field(PREVIOUS_CERT),
            rotate: secret.metadata.annotations.as_ref().is_some_and(|annotations| annotations.contains_key(ROTATE_ANNOTATION)),
        };
        KeyPair::from_pem(&authority.key_pem).map_err(|error| CaError::Unusable(described.to_owned(), error.to_string()))?;
        Ok(authority)
    }

    /// The next step of a rotation, from this state: the CA as it should be stored next.
    /// `None` when no rotation is due.
    pub fn rotated(&self) -> Result<Option<Authority>, CaError> {
        if !self.rotating() {
            return Ok(None);
        }
        let mut next = self.clone();
        next.rotate = false;
        match (&self.next, &self.previous) {
            // Stage 3: the old CA is no longer needed.
            (None, Some(_)) => next.previous = None,
            // Stage 2: the next CA takes over; the old one is still trusted.
            (Some((certificate, key)), _) => {
                next.previous = Some(self.certificate_pem.clone());
                next.certificate_pem = certificate.clone();
                next.key_pem = key.clone();
                next.expires = Some(time::OffsetDateTime::now_utc() + CA_VALIDITY);
                next.next = None;
            }
            // Stage 1: a next CA, trusted but not yet signing.
            (None, None) => {
                let fresh = Authority::generate()?;
                next.next = Some((fresh.certificate_pem, fresh.key_pem));
            }
        }
        Ok(Some(next))
    }

    /// Stores this CA in `secret` (replacing its data, guarded by its resourceVersion; the
    /// rotation annotation removed).
    pub async fn store(&self, client: &kube::Client, secret: &Secret) -> Result<(), CaError> {
        let (namespace, name) = (secret.metadata.namespace.clone().unwrap_or_default(), secret.metadata.name.clone().unwrap_or_default());
        let mut replaced = secret.clone();
        replaced.data = Some(self.data());
        if let Some(annotations) = replaced.metadata.annotations.as_mut() {
            annotations.remove(ROTATE_ANNOTATION);
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        api.replace(&name, &PostParams::default(), &replaced).await.map_err(|source| CaError::Secret {
            namespace,
            name,
            source: Box::new(source),
        })?;
        Ok(())
    }

    /// A serving certificate for `names` (DNS names or IP addresses) signed by this CA, ready
    /// for rustls.
    pub fn issue(&self, names: &[String]) -> Result<Arc<CertifiedKey>, CaError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "bosun".into()));
        params.distinguished_name = name;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + SERVING_VALIDITY;
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let certificate = params.signed_by(&key, &issuer)?;
        let unusable = |error: String| CaError::Unusable("the serving certificate".into(), error);
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).map_err(|error| unusable(error.to_string()))?;
        let chain = vec![
            certificate.der().clone(),
            CertificateDer::from_pem_slice(self.certificate_pem.as_bytes()).map_err(|error| unusable(error.to_string()))?,
        ];
        let provider = rustls::crypto::ring::default_provider();
        Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider).map_err(|error| unusable(error.to_string()))?))
    }
}

/// Follows the CA Secret `namespace/name` (a watch of that one object), calling `changed`
/// with the CA and the Secret each time it changes, until the task is dropped.
pub(crate) async fn follow(client: kube::Client, namespace: String, name: String, mut changed: impl FnMut(Authority, Secret)) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().applied_objects().boxed();
    let described = format!("{namespace}/{name}");
    let mut last: Option<Authority> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(secret) => match Authority::from_secret(&secret, &described) {
                Ok(authority) if last.as_ref() != Some(&authority) => {
                    last = Some(authority.clone());
                    changed(authority, secret);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "the admission CA Secret changed to something unusable; keeping the CA as it was"),
            },
            Err(error) => tracing::warn!(secret = %described, %error, "watching the admission CA failed; retrying"),
        }
    }
}

/// The serving certificate a replica presents: replaced when the CA that signs it changes.
#[derive(Debug)]
pub(crate) struct ServingKey(std::sync::RwLock<Arc<CertifiedKey>>);

impl ServingKey {
    pub(crate) fn new(key: Arc<CertifiedKey>) -> Arc<ServingKey> {
        Arc::new(ServingKey(std::sync::RwLock::new(key)))
    }

    pub(crate) fn replace(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = key;
    }
}

impl rustls::server::ResolvesServerCert for ServingKey {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}
