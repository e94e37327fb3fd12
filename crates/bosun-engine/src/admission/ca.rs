//! The admission CA: a certificate authority of bosun's own, made once and kept in a Secret
//! (`ca.crt`, `ca.key`) that every replica reads, so that every replica's serving certificate
//! — issued by each replica for itself, in memory — is trusted through the one `caBundle` the
//! webhook configurations carry. The CA's key never leaves the Secret and the process.

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

/// bosun's admission CA.
#[derive(Clone)]
pub struct Authority {
    /// `ca.crt`, PEM: the webhook configurations' `caBundle`.
    pub certificate_pem: String,
    key_pem: String,
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
        Ok(Authority { certificate_pem: certificate.pem(), key_pem: key.serialize_pem() })
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
            data: Some(
                [
                    ("ca.crt".to_owned(), ByteString(authority.certificate_pem.clone().into_bytes())),
                    ("ca.key".to_owned(), ByteString(authority.key_pem.clone().into_bytes())),
                ]
                .into(),
            ),
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

    fn from_secret(secret: &Secret, described: &str) -> Result<Authority, CaError> {
        let field = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|data| data.get(key))
                .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
                .ok_or_else(|| CaError::Unusable(described.to_owned(), format!("{key} is missing")))
        };
        let authority = Authority { certificate_pem: field("ca.crt")?, key_pem: field("ca.key")? };
        KeyPair::from_pem(&authority.key_pem).map_err(|error| CaError::Unusable(described.to_owned(), error.to_string()))?;
        Ok(authority)
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
