//! Kubeconfig documents for the local control plane: one for the admin user (written to disk
//! for kubectl and `bosun run`), one for kube-controller-manager, and in-memory ones for the
//! ServiceAccount clients of tests.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::pki::CertifiedKey;

/// The name of the cluster, user and context in every kubeconfig written here.
pub const CONTEXT: &str = "bosun-testenv";

/// How a kubeconfig's user proves who it is.
pub(crate) enum Credentials<'a> {
    /// A client certificate signed by the control plane's client CA.
    Certificate(&'a CertifiedKey),
    /// A bearer token, such as a ServiceAccount token.
    Token(&'a str),
}

/// A kubeconfig with one cluster, user and context. It is JSON, which is also valid YAML, so
/// kubectl, client-go and kube-rs all read it.
pub(crate) fn document(server: &str, ca_pem: &str, credentials: Credentials<'_>) -> String {
    let user = match credentials {
        Credentials::Certificate(certified) => json!({
            "client-certificate-data": STANDARD.encode(&certified.cert),
            "client-key-data": STANDARD.encode(&certified.key),
        }),
        Credentials::Token(token) => json!({ "token": token }),
    };
    let document = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": CONTEXT,
            "cluster": { "server": server, "certificate-authority-data": STANDARD.encode(ca_pem) },
        }],
        "users": [{ "name": CONTEXT, "user": user }],
        "contexts": [{
            "name": CONTEXT,
            "context": { "cluster": CONTEXT, "user": CONTEXT, "namespace": "default" },
        }],
        "current-context": CONTEXT,
    });
    serde_json::to_string_pretty(&document).expect("a JSON value serializes")
}

/// A kube-rs client configuration from a kubeconfig document.
pub(crate) async fn client_config(document: &str) -> Result<kube::Config, kube::config::KubeconfigError> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(document)?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await
}

/// Writes `contents` readable by the owner only: kubeconfigs and keys are credentials.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())
}
