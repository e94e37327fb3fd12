//! Secure webhooks against a real control plane and real HTTPS hook servers on 127.0.0.1:
//! a private CA (inline, from a ConfigMap, from a Secret), mutual TLS, bearer and basic
//! authentication — each first with a wrong credential, which fails the sync with a SyncError
//! event and creates nothing, then with the right one after the Secret is rotated — settings
//! chosen by `endpointConfigs` host, and ETag replay.

mod support;

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use bosun_engine::ApplyStrategy;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use support::{Fixture, desired_config_map, eventually};

/// A certificate and its key, PEM.
struct Pem {
    cert: String,
    key: String,
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Pem {
    let mut params = CertificateParams::new(names.iter().map(|name| name.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    Pem { cert: params.signed_by(&key, issuer).unwrap().pem(), key: key.serialize_pem() }
}

type Answer = dyn Fn(&HeaderMap, &Value) -> (StatusCode, HeaderMap, String) + Send + Sync;

/// A hook server on 127.0.0.1: HTTPS with `serving`, requiring a client certificate signed by
/// `client_ca` if given; `answer` sees each request's headers and body.
struct SecureHook {
    url: String,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SecureHook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SecureHook {
    async fn start(
        serving: &Pem,
        client_ca: Option<&str>,
        answer: impl Fn(&HeaderMap, &Value) -> (StatusCode, HeaderMap, String) + Send + Sync + 'static,
    ) -> SecureHook {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(serving.cert.as_bytes()).map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_slice(serving.key.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder();
        let config = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
                builder.with_client_cert_verifier(verifier).with_single_cert(certs, key).unwrap()
            }
            None => builder.with_no_client_auth().with_single_cert(certs, key).unwrap(),
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let headers: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let seen = headers.clone();
        let app = axum::Router::new().route(
            "/{hook}",
            axum::routing::post(move |request_headers: HeaderMap, body: String| {
                let (answer, seen) = (answer.clone(), seen.clone());
                async move {
                    seen.lock().unwrap().push(request_headers.clone());
                    answer(&request_headers, &serde_json::from_str(&body).unwrap_or(Value::Null))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                });
            }
        });
        SecureHook { url, headers, task }
    }

    fn hook(&self, extra: Value) -> Value {
        let mut hook = json!({ "webhook": { "url": format!("{}/sync", self.url) } });
        support::merge_into(&mut hook["webhook"], extra);
        hook
    }
}

/// The standard answer: one ConfigMap per parent.
fn ok(request: &Value) -> (StatusCode, HeaderMap, String) {
    (StatusCode::OK, HeaderMap::new(), desired_config_map(request).to_string())
}

/// Answers only requests whose `Authorization` header is `expected`.
fn authorized(expected: String) -> impl Fn(&HeaderMap, &Value) -> (StatusCode, HeaderMap, String) + Send + Sync + 'static {
    move |headers, request| {
        let given = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
        if given == expected { ok(request) } else { (StatusCode::UNAUTHORIZED, HeaderMap::new(), "wrong credentials".into()) }
    }
}

async fn put_secret(fixture: &Fixture, name: &str, data: Value) {
    let secret = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name }, "stringData": data });
    Api::<Secret>::namespaced(fixture.client.clone(), &fixture.namespace)
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&secret))
        .await
        .unwrap();
}

/// Starts the test's CompositeController with sync hook `hook` and creates parent `p`.
async fn controller_and_parent(fixture: &Fixture, hook: Value, extra: Value) {
    let mut spec = json!({ "hooks": { "sync": hook } });
    support::merge_into(&mut spec, extra);
    fixture.composite_controller(spec).await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
}

/// Waits for a SyncError about `p` containing `text`, and checks nothing was created.
async fn refused(fixture: &Fixture, text: &str) {
    eventually(&format!("a SyncError containing {text:?}"), async || {
        fixture.events("p", None).await.into_iter().find(|(_, reason, message)| reason == "SyncError" && message.contains(text))
    })
    .await;
    assert!(fixture.config_maps().get_opt("p-config").await.unwrap().is_none(), "nothing is created");
}

async fn created(fixture: &Fixture) {
    eventually("the child", async || fixture.config_maps().get_opt("p-config").await.unwrap()).await;
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let ca = authority("hooks-ca");
    let hook = SecureHook::start(&leaf(&ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth), None, |_, request| ok(request)).await;
    controller_and_parent(&fixture, hook.hook(json!({})), json!({})).await;
    refused(&fixture, "invalid peer certificate: UnknownIssuer").await;

    // The CA from a ConfigMap.
    let bundle: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "hooks-ca" }, "data": { "ca.crt": ca.pem() } })).unwrap();
    Api::<ConfigMap>::namespaced(fixture.client.clone(), &fixture.namespace).create(&Default::default(), &bundle).await.unwrap();
    let reference = json!({ "name": "hooks-ca", "namespace": fixture.namespace });
    restart_with(&fixture, json!({ "hooks": { "sync": hook.hook(json!({ "caBundle": { "configMapRef": reference } })) } })).await;
    created(&fixture).await;

    // Inline, and from a Secret (the merge patch clears the previous source: exactly one is allowed).
    put_secret(&fixture, "hooks-ca", json!({ "ca.crt": ca.pem() })).await;
    for bundle in [json!({ "inline": ca.pem(), "configMapRef": null }), json!({ "secretRef": reference, "inline": null })] {
        fixture.config_maps().delete("p-config", &Default::default()).await.unwrap();
        restart_with(&fixture, json!({ "hooks": { "sync": hook.hook(json!({ "caBundle": bundle })) } })).await;
        created(&fixture).await;
    }
}

#[tokio::test]
async fn mutual_tls_with_a_rotated_client_certificate() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let (server_ca, client_ca, stranger_ca) = (authority("server-ca"), authority("client-ca"), authority("stranger-ca"));
    let serving = leaf(&server_ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let hook = SecureHook::start(&serving, Some(&client_ca.pem()), |_, request| ok(request)).await;
    let wrong = leaf(&stranger_ca, &["bosun"], ExtendedKeyUsagePurpose::ClientAuth);
    put_secret(&fixture, "client-tls", json!({ "tls.crt": wrong.cert, "tls.key": wrong.key })).await;
    let settings = json!({
        "caBundle": { "inline": server_ca.pem() },
        "clientTLS": { "secretRef": { "name": "client-tls", "namespace": fixture.namespace } },
    });
    controller_and_parent(&fixture, hook.hook(settings), json!({})).await;
    refused(&fixture, "received fatal alert: UnknownCA").await;

    // Rotating the Secret is enough: no change to the CompositeController.
    let right = leaf(&client_ca, &["bosun"], ExtendedKeyUsagePurpose::ClientAuth);
    put_secret(&fixture, "client-tls", json!({ "tls.crt": right.cert, "tls.key": right.key })).await;
    created(&fixture).await;
}

#[tokio::test]
async fn bearer_token_from_a_rotated_secret() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let ca = authority("hooks-ca");
    let hook =
        SecureHook::start(&leaf(&ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth), None, authorized("Bearer right-token".into()))
            .await;
    put_secret(&fixture, "hook-token", json!({ "token": "wrong-token\n" })).await;
    let settings = json!({
        "caBundle": { "inline": ca.pem() },
        "authorization": { "secretRef": { "name": "hook-token", "namespace": fixture.namespace, "key": "token" } },
    });
    controller_and_parent(&fixture, hook.hook(settings), json!({})).await;
    refused(&fixture, "HTTP 401").await;
    let events = fixture.events("p", None).await;
    assert!(events.iter().all(|(_, _, message)| !message.contains("wrong-token")), "credentials never appear in events: {events:?}");

    put_secret(&fixture, "hook-token", json!({ "token": "right-token\n" })).await;
    created(&fixture).await;

    // The Secret is watched while a controller uses it, and no longer once it is gone.
    assert_eq!(fixture.records("credential_watches"), 1);
    let controller = fixture.controllers().list(&Default::default()).await.unwrap();
    let name = controller.items.iter().map(kube::ResourceExt::name_any).find(|name| name.ends_with(&fixture.id)).unwrap();
    fixture.controllers().delete(&name, &Default::default()).await.unwrap();
    eventually("the credential watch to stop", async || (fixture.records("credential_watches") == 0).then_some(())).await;
}

#[tokio::test]
async fn basic_auth_from_a_rotated_secret() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let ca = authority("hooks-ca");
    use base64::Engine as _;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("bosun:right"));
    let hook = SecureHook::start(&leaf(&ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth), None, authorized(expected)).await;
    put_secret(&fixture, "hook-basic", json!({ "username": "bosun", "password": "wrong" })).await;
    let settings = json!({
        "caBundle": { "inline": ca.pem() },
        "basicAuth": { "secretRef": { "name": "hook-basic", "namespace": fixture.namespace } },
    });
    controller_and_parent(&fixture, hook.hook(settings), json!({})).await;
    refused(&fixture, "HTTP 401").await;
    put_secret(&fixture, "hook-basic", json!({ "username": "bosun", "password": "right" })).await;
    created(&fixture).await;
}

/// A hook without settings of its own uses the first endpoint config whose host matches.
#[tokio::test]
async fn endpoint_configs_are_chosen_by_host() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let ca = authority("hooks-ca");
    let hook =
        SecureHook::start(&leaf(&ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth), None, authorized("Bearer right-token".into()))
            .await;
    put_secret(&fixture, "right", json!({ "token": "right-token" })).await;
    put_secret(&fixture, "wrong", json!({ "token": "wrong-token" })).await;
    let host = hook.url.trim_start_matches("https://").to_owned();
    let bearer = |name: &str| json!({ "secretRef": { "name": name, "namespace": fixture.namespace, "key": "token" } });
    let configs = json!({ "endpointConfigs": [
        { "host": "hooks.example.com", "caBundle": { "inline": ca.pem() }, "authorization": bearer("wrong") },
        { "host": host.to_uppercase(), "caBundle": { "inline": ca.pem() }, "authorization": bearer("right") },
    ]});
    controller_and_parent(&fixture, hook.hook(json!({})), configs).await;
    created(&fixture).await;
}

/// With `etag.enabled`, a 304 answer replays the last response: the children stay.
#[tokio::test]
async fn etag_responses_are_replayed() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let ca = authority("hooks-ca");
    let hook = SecureHook::start(&leaf(&ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth), None, |headers, request| {
        if headers.get("if-none-match").is_some_and(|value| value == "\"v1\"") {
            return (StatusCode::NOT_MODIFIED, HeaderMap::new(), String::new());
        }
        let (status, mut headers, body) = ok(request);
        headers.insert("etag", "\"v1\"".parse().unwrap());
        (status, headers, body)
    })
    .await;
    let settings = json!({ "caBundle": { "inline": ca.pem() }, "etag": { "enabled": true, "cacheTimeoutSeconds": 600 } });
    controller_and_parent(&fixture, hook.hook(settings), json!({ "resyncPeriodSeconds": 1 })).await;
    created(&fixture).await;
    eventually("three replayed answers", async || {
        let replayed = hook.headers.lock().unwrap().iter().filter(|headers| headers.contains_key("if-none-match")).count();
        (replayed >= 3).then_some(())
    })
    .await;
    assert!(fixture.config_maps().get_opt("p-config").await.unwrap().is_some(), "a 304 keeps the children");
    let events = fixture.events("p", None).await;
    assert!(events.iter().all(|(_, reason, _)| reason != "SyncError"), "{events:?}");

    // A new hook URL: what was kept for the old one goes; deleting the controller drops the rest.
    assert_eq!(fixture.records("hook_etag_responses"), 1);
    let replayed = || hook.headers.lock().unwrap().iter().filter(|headers| headers.contains_key("if-none-match")).count();
    let before = replayed();
    let mut moved = hook.hook(json!({ "caBundle": { "inline": ca.pem() }, "etag": { "enabled": true, "cacheTimeoutSeconds": 600 } }));
    moved["webhook"]["url"] = json!(format!("{}/sync?version=2", hook.url));
    restart_with(&fixture, json!({ "hooks": { "sync": moved } })).await;
    eventually("answers replayed for the new URL", async || (replayed() >= before + 3).then_some(())).await;
    assert_eq!(fixture.records("hook_etag_responses"), 1, "only the new URL's answer is kept");
    let name = format!("things-{}", fixture.id);
    fixture.controllers().delete(&name, &Default::default()).await.unwrap();
    eventually("no answer kept once the controller is gone", async || (fixture.records("hook_etag_responses") == 0).then_some(())).await;
}

async fn restart_with(fixture: &Fixture, spec: Value) {
    let name = format!("things-{}", fixture.id);
    fixture.controllers().patch(&name, &PatchParams::default(), &Patch::Merge(&json!({ "spec": spec }))).await.unwrap();
}

/// A Python `ssl` hook server that requires a client certificate signed by `ca.crt` in the
/// directory it is given, serving `server.crt`, and answers like [`ok`] with a `Content-Length`.
const PYTHON_HOOK: &str = r#"
import http.server, json, ssl, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        parent = request["parent"]
        child = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": parent["metadata"]["name"] + "-config",
                              "labels": parent["spec"]["selector"]["matchLabels"]},
                 "data": parent["spec"].get("data", {})}
        body = json.dumps({"children": [child]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1] + "/server.crt", sys.argv[1] + "/server.key")
context.verify_mode = ssl.CERT_REQUIRED
context.load_verify_locations(sys.argv[1] + "/ca.crt")
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

#[tokio::test]
async fn mutual_tls_with_certificates_made_by_the_openssl_command_line() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let dir = std::env::temp_dir().join(format!("bosun-openssl-{}", fixture.id));
    support::openssl_certificates(&dir);
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let text =
        std::process::Command::new("openssl").args(["x509", "-in", "client.crt", "-noout", "-text"]).current_dir(&dir).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("Version: 1 (0x0)"), "the client certificate is X.509 v1");

    let hook = support::ScriptHook::start("python3", PYTHON_HOOK, &[dir.to_str().unwrap()]);
    put_secret(&fixture, "client-tls", json!({ "tls.crt": read("client.crt"), "tls.key": read("client.key") })).await;
    let settings = json!({
        "webhook": {
            "url": format!("https://127.0.0.1:{}/sync", hook.port),
            "caBundle": { "inline": read("ca.crt") },
            "clientTLS": { "secretRef": { "name": "client-tls", "namespace": fixture.namespace } },
        },
    });
    controller_and_parent(&fixture, settings, json!({})).await;
    created(&fixture).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The API requests with `code` the engine made, from its `rest_client_requests_total`.
fn requests_with_code(fixture: &Fixture, code: &str) -> u64 {
    let text = fixture.metrics.encode();
    let with_code = format!("code=\"{code}\"");
    let lines = text.lines().filter(|line| line.starts_with("rest_client_requests_total{") && line.contains(&with_code));
    lines.filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

/// A credential Secret the engine may not read (403) fails the sync with a clear message,
/// and its watch backs off: a few LISTs, not a hot loop.
#[tokio::test]
async fn an_unreadable_credential_is_retried_with_backoff() {
    let fixture = Fixture::as_service_account(
        ApplyStrategy::DynamicApply,
        Fixture::engine_rules(json!([
            { "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] },
        ])),
        |_| {},
    )
    .await;
    let ca = authority("hooks-ca");
    let hook =
        SecureHook::start(&leaf(&ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth), None, authorized("Bearer token".into())).await;
    put_secret(&fixture, "hook-token", json!({ "token": "token" })).await;
    let settings = json!({
        "caBundle": { "inline": ca.pem() },
        "authorization": { "secretRef": { "name": "hook-token", "namespace": fixture.namespace, "key": "token" } },
    });
    controller_and_parent(&fixture, hook.hook(settings), json!({})).await;
    refused(&fixture, "could not be read (is the engine allowed to get, list and watch it?)").await;

    let before = requests_with_code(&fixture, "403");
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let refused_requests = requests_with_code(&fixture, "403") - before;
    println!("403 responses in 10 s: {refused_requests}");
    assert!(refused_requests < 50, "{refused_requests} refused requests in 10 s: the watch does not back off");
}
