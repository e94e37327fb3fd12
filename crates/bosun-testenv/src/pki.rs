//! The control plane's certificates and keys, generated in-process for every start: a
//! serving CA and the kube-apiserver's serving certificate, a client CA that signs client
//! certificates (the admin user is in `system:masters`), and the service-account signing key.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub(crate) struct CertifiedKey {
    pub(crate) cert: String,
    pub(crate) key: String,
}

/// The public key infrastructure of one control plane.
pub(crate) struct Pki {
    pub(crate) serving_ca: String,
    pub(crate) serving: CertifiedKey,
    pub(crate) client_ca_cert: String,
    client_ca: CertifiedIssuer<'static, KeyPair>,
    /// The service-account token signing key pair (private key PEM, public key PEM).
    pub(crate) service_account_key: String,
    pub(crate) service_account_public_key: String,
}

fn params(common_name: &str, names: &[&str]) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(names.iter().map(|name| name.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    // Throw-away credentials: valid long enough for any test run or `bosun dev` session.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(7);
    Ok(params)
}

fn certificate_authority(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = params(common_name, &[])?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

impl Pki {
    /// Generates fresh keys and certificates; the serving certificate is valid for `hosts`.
    pub(crate) fn generate(hosts: &[&str]) -> Result<Pki, rcgen::Error> {
        let serving_ca = certificate_authority("bosun-testenv-serving-ca")?;
        let mut serving = params("kube-apiserver", hosts)?;
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        serving.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let serving_key = KeyPair::generate()?;
        let serving_cert = serving.signed_by(&serving_key, &serving_ca)?;
        let client_ca = certificate_authority("bosun-testenv-client-ca")?;
        let service_account = KeyPair::generate()?;
        Ok(Pki {
            serving_ca: serving_ca.pem(),
            serving: CertifiedKey { cert: serving_cert.pem(), key: serving_key.serialize_pem() },
            client_ca_cert: client_ca.pem(),
            client_ca,
            service_account_key: service_account.serialize_pem(),
            service_account_public_key: service_account.public_key_pem(),
        })
    }

    /// A client certificate for `user` in `groups`, signed by the client CA: the API server
    /// authenticates it as that user.
    pub(crate) fn client_certificate(&self, user: &str, groups: &[&str]) -> Result<CertifiedKey, rcgen::Error> {
        let mut params = params(user, &[])?;
        for group in groups {
            params.distinguished_name.push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.client_ca)?;
        Ok(CertifiedKey { cert: cert.pem(), key: key.serialize_pem() })
    }
}
