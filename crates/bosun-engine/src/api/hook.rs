//! Hooks and webhooks, shared by CompositeController and DecoratorController: where a hook
//! is, which protocol version it speaks, and how to reach it securely.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A hook: a webhook and the protocol version it speaks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// The protocol version: `v1` (relative object-map keys, loose decoding) or `v2` (uniform
    /// `namespace/name` keys, strict decoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "HookVersion::default_v1")]
    pub version: Option<HookVersion>,
    /// The HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// bosun's extension: a program run for each call instead of a webhook (only where bosun
    /// runs with `--exec-hooks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecHook>,
    /// bosun's extension: a WebAssembly module run in bosun's process for each call,
    /// sandboxed, instead of a webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<WasmHook>,
}

impl Hook {
    /// Whether the hook says what to call: a webhook, a program or a module. One that does
    /// not counts as none, as in Metacontroller.
    pub fn is_declared(&self) -> bool {
        self.webhook.is_some() || self.exec.is_some() || self.wasm.is_some()
    }
}

/// A hook that is a WebAssembly module (bosun's extension): a WASI preview 1 program run in
/// bosun's process once per call — the request on its standard input, the response read from
/// its standard output — with no filesystem, network or clock of bosun's, bounded in fuel,
/// memory and time. Compiled once per content digest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WasmHook {
    /// The module, in a ConfigMap's `binaryData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<WasmConfigMap>,
    /// The module at an `https://` (or `http://`) URL; `sha256` is then required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The module's SHA-256 digest, in hex: a module with any other content is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// How long a call may run, as a duration (`10s`); default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "duration"))]
    pub timeout: Option<String>,
    /// The most linear memory the module may have, in bytes; default 64 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    /// The most fuel (roughly, WebAssembly instructions) a call may use; default 10^10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Environment variables the module sees; nothing else of bosun's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<ExecEnv>,
    /// `loose` (default for v1 hooks) or `strict` (default for v2 hooks).
    #[serde(default, rename = "responseUnMarshallMode", skip_serializing_if = "Option::is_none")]
    pub response_unmarshall_mode: Option<ResponseUnmarshallMode>,
}

/// Where in a ConfigMap a WebAssembly module is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct WasmConfigMap {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The `binaryData` key holding the module.
    pub key: String,
}

/// A hook that is a program (bosun's extension): run once per call with the request on its
/// standard input, its standard output read as the response and its standard error logged,
/// in a process group of its own that is killed at the timeout, with a clean environment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecHook {
    /// The program and its arguments. The program is an absolute path on bosun's host or in
    /// its image, or a name found on bosun's `PATH`.
    pub command: Vec<String>,
    /// The only environment variables the program gets, besides a default `PATH`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<ExecEnv>,
    /// How long the program may run, as a duration (`10s`); default 10s. At the timeout its
    /// whole process group is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "duration"))]
    pub timeout: Option<String>,
    /// `loose` (default for v1 hooks) or `strict` (default for v2 hooks).
    #[serde(default, rename = "responseUnMarshallMode", skip_serializing_if = "Option::is_none")]
    pub response_unmarshall_mode: Option<ResponseUnmarshallMode>,
}

/// An environment variable of an exec hook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ExecEnv {
    /// Its name.
    pub name: String,
    /// Its value.
    #[serde(default)]
    pub value: String,
}

/// The hook protocol version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HookVersion {
    /// Object maps keyed by name relative to the parent; other namespaces filtered out.
    #[default]
    #[serde(rename = "v1")]
    V1,
    /// Object maps keyed by `namespace/name`; nothing filtered; strict decoding.
    #[serde(rename = "v2")]
    V2,
}

impl HookVersion {
    fn default_v1() -> Option<HookVersion> {
        Some(HookVersion::V1)
    }
}

/// How a hook's JSON response is decoded.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseUnmarshallMode {
    /// Unknown fields are ignored.
    Loose,
    /// Unknown or duplicate fields are errors.
    Strict,
}

/// Where and how to call a hook. Its `Debug` shows the URL and path as they may be printed
/// ([`bosun_runtime::redact`]): they may hold credentials.
#[derive(Serialize, Deserialize, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The full URL; takes precedence over `service` and `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The request timeout as a duration (`10s`, `1m30s`); default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "duration"))]
    pub timeout: Option<String>,
    /// The path, with `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A Service to call, as `<protocol>://<name>.<namespace>:<port><path>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceReference>,
    /// Opt-in caching of responses by ETag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<WebhookEtagConfig>,
    /// `loose` (default for v1 hooks) or `strict` (default for v2 hooks).
    #[serde(default, rename = "responseUnMarshallMode", skip_serializing_if = "Option::is_none")]
    pub response_unmarshall_mode: Option<ResponseUnmarshallMode>,
    /// CA certificates that verify an HTTPS hook, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
    /// A client certificate for mutual TLS.
    #[serde(default, rename = "clientTLS", skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<ClientTls>,
    /// An `Authorization` header from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// HTTP basic authentication from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url.as_deref().map(bosun_runtime::redact::url_text))
            .field("timeout", &self.timeout)
            .field("path", &self.path.as_deref().map(bosun_runtime::redact::path_text))
            .field("service", &self.service)
            .field("etag", &self.etag)
            .field("response_unmarshall_mode", &self.response_unmarshall_mode)
            .field("ca_bundle", &self.ca_bundle)
            .field("client_tls", &self.client_tls)
            .field("authorization", &self.authorization)
            .field("basic_auth", &self.basic_auth)
            .finish()
    }
}

/// A Service that serves a hook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReference {
    /// The Service's name.
    pub name: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The port; default 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// `http` (default) or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// ETag caching of hook responses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEtagConfig {
    /// Whether to send `If-None-Match` and replay cached responses on 304.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long a cached response lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_timeout_seconds: Option<i32>,
    /// How often expired responses are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_cleanup_seconds: Option<i32>,
}

/// A key of a Secret or ConfigMap in a given namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyReference {
    /// The object's name.
    pub name: String,
    /// The object's namespace.
    pub namespace: String,
    /// The key; default `ca.crt` for CA bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A Secret in a given namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// The Secret's name.
    pub name: String,
    /// The Secret's namespace.
    pub namespace: String,
}

/// Exactly one source of PEM CA certificates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundle {
    /// The PEM certificates themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// A Secret key holding them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<KeyReference>,
    /// A ConfigMap key holding them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<KeyReference>,
}

/// A client certificate and key from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientTls {
    /// The Secret.
    pub secret_ref: SecretReference,
    /// The certificate's key in the Secret; default `tls.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_key: Option<String>,
    /// The private key's key in the Secret; default `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_key: Option<String>,
}

/// `Authorization: <type> <secret value>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// The scheme; default `Bearer`. `Basic` is refused: use `basicAuth`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The Secret key holding the credentials.
    pub secret_ref: KeyReference,
}

/// HTTP basic authentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// The Secret.
    pub secret_ref: SecretReference,
    /// The username's key; default `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    /// The password's key; default `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
}

/// TLS and authentication settings for every hook whose URL has this host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConfig {
    /// `host` or `host:port`, matched case-insensitively.
    pub host: String,
    /// As in [`Webhook`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
    /// As in [`Webhook`].
    #[serde(default, rename = "clientTLS", skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<ClientTls>,
    /// As in [`Webhook`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// As in [`Webhook`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
}
