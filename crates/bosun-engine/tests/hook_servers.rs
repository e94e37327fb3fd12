//! Hook servers as people write them without an SDK — Python's `http.server` and Node.js's
//! `http` — each framing its answers in one of the ways such servers do, over plain HTTP and
//! over TLS with a client certificate (certificates made with the `openssl` command line): what
//! Go's `net/http` (Metacontroller's client) accepts, bosun accepts, for the sync, customize and
//! finalize hooks; what is cut short or empty is refused with an error that says so, and
//! creates nothing. docs/engine.md's table "What bosun accepts from a hook server" lists the
//! same rows.

mod support;

use bosun_engine::ApplyStrategy;
use kube::api::DeleteParams;
use serde_json::{Value, json};
use support::{Fixture, ScriptHook, eventually};

/// A hook server in the style of Python tutorials: `BaseHTTPRequestHandler` with its default
/// `protocol_version` (HTTP/1.0), over TLS when given a directory of certificates (the listening
/// socket wrapped by `ssl`, a client certificate required). How it frames its answer depends on
/// the parent's name, one row of the table per name.
const PYTHON_SERVER: &str = r#"
import http.server, json, ssl, sys

def answer(hook, request):
    parent = request["parent"]
    if hook == "customize":
        return {"relatedResources": []}
    if hook == "finalize":
        return {"finalized": True}
    child = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": parent["metadata"]["name"] + "-config",
                          "labels": parent["spec"]["selector"]["matchLabels"]},
             "data": parent["spec"].get("data", {})}
    return {"children": [child]}

class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        row = request["parent"]["metadata"]["name"]
        body = json.dumps(answer(self.path.strip("/"), request)).encode()
        if row in ("http11-connection-close", "chunked"):
            self.protocol_version = "HTTP/1.1"
        self.send_response(201 if row == "status-201" else 200)
        if row not in ("no-content-type", "text-plain"):
            self.send_header("Content-Type", "application/json; charset=utf-8" if row == "content-type-charset" else "application/json")
        if row == "text-plain":
            self.send_header("Content-Type", "text/plain")
        if row == "trailing-newline":
            body += b"\n"
        if row == "byte-order-mark":
            body = b"\xef\xbb\xbf" + body
        if row == "empty-body":
            body = b""
        if row == "http10-keep-alive":
            self.send_header("Connection", "keep-alive")
        if row == "http11-connection-close":
            self.send_header("Connection", "close")
        if row == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        elif row == "short-body":
            self.send_header("Content-Length", str(len(body) + 10))
        elif row == "cut-short":
            body = body[: len(body) // 2]
        elif row not in ("close-delimited", "http11-connection-close"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
if len(sys.argv) > 1:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1] + "/server.crt", sys.argv[1] + "/server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(sys.argv[1] + "/ca.crt")
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A hook server in the style of Node.js tutorials: `http.createServer`, keep-alive by default;
/// `node-chunked` writes its answer and then ends it (chunked), `node-end` ends with it whole.
const NODE_SERVER: &str = r#"
const http = require("http");
const server = http.createServer((req, res) => {
  let text = "";
  req.on("data", (chunk) => (text += chunk));
  req.on("end", () => {
    const request = JSON.parse(text);
    const parent = request.parent;
    const hook = req.url.replace(/^\//, "");
    const answer = hook === "customize" ? { relatedResources: [] }
      : hook === "finalize" ? { finalized: true }
      : { children: [{ apiVersion: "v1", kind: "ConfigMap",
          metadata: { name: parent.metadata.name + "-config", labels: parent.spec.selector.matchLabels },
          data: parent.spec.data || {} }] };
    res.setHeader("Content-Type", "application/json");
    if (parent.metadata.name === "node-chunked") { res.write(JSON.stringify(answer)); res.end(); }
    else { res.end(JSON.stringify(answer)); }
  });
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
"#;

/// Rows whose answers bosun takes: the parent syncs and its deletion is finalized.
const ACCEPTED_PYTHON: &[&str] = &[
    "close-delimited",
    "http10-keep-alive",
    "http11-connection-close",
    "chunked",
    "content-type-charset",
    "no-content-type",
    "text-plain",
    "trailing-newline",
    "byte-order-mark",
];

/// Rows whose answers bosun refuses, with what the error says.
const REFUSED_PYTHON: &[(&str, &str)] = &[
    ("empty-body", "the response is empty"),
    ("short-body", "end of file before message length reached"),
    ("cut-short", "EOF while parsing"),
    ("status-201", "answered HTTP 201"),
];

/// A controller whose customize, sync and finalize hooks all go to `base`, with `security`
/// merged into each webhook.
async fn controller(fixture: &Fixture, base: &str, security: Value) {
    let hook = |path: &str| {
        let mut hook = json!({ "webhook": { "url": format!("{base}/{path}") } });
        support::merge_into(&mut hook["webhook"], security.clone());
        hook
    };
    fixture
        .composite_controller(json!({ "hooks": { "sync": hook("sync"), "customize": hook("customize"), "finalize": hook("finalize") } }))
        .await;
}

/// Creates a parent per row; accepted rows get their child and, deleted, are finalized and go;
/// refused rows get a SyncError saying why and no child.
async fn check_rows(fixture: &Fixture, accepted: &[&str], refused: &[(&str, &str)]) {
    for row in accepted.iter().copied().chain(refused.iter().map(|(row, _)| *row)) {
        fixture.parent(row, json!({ "data": { "row": row } })).await;
    }
    for row in accepted {
        eventually(&format!("the child of {row}"), async || fixture.config_maps().get_opt(&format!("{row}-config")).await.unwrap()).await;
    }
    for (row, text) in refused {
        let message = fixture.event_with_reason(row, None, "SyncError").await;
        assert!(message.contains(text), "{row}: {message}");
        assert!(fixture.config_maps().get_opt(&format!("{row}-config")).await.unwrap().is_none(), "{row}: nothing is created");
    }
    for row in accepted {
        fixture.parents().delete(row, &DeleteParams::default()).await.unwrap();
    }
    for row in accepted {
        eventually(&format!("{row} finalized and gone"), async || fixture.parents().get_opt(row).await.unwrap().is_none().then_some(()))
            .await;
    }
}

#[tokio::test]
async fn python_http_server_answers_over_plain_http() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hook = ScriptHook::start("python3", PYTHON_SERVER, &[]);
    controller(&fixture, &format!("http://127.0.0.1:{}", hook.port), json!({})).await;
    check_rows(&fixture, ACCEPTED_PYTHON, REFUSED_PYTHON).await;
}

/// The server of issue #38: Python's `ssl` closes each connection without a TLS `close_notify`,
/// right after an HTTP/1.0 body that ends where the connection does.
#[tokio::test]
async fn python_http_server_answers_over_tls_without_close_notify() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let dir = std::env::temp_dir().join(format!("bosun-close-notify-{}", fixture.id));
    support::openssl_certificates(&dir);
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let hook = ScriptHook::start("python3", PYTHON_SERVER, &[dir.to_str().unwrap()]);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "client-tls" },
        "stringData": { "tls.crt": read("client.crt"), "tls.key": read("client.key") },
    });
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(fixture.client.clone(), &fixture.namespace);
    secrets.create(&Default::default(), &serde_json::from_value(secret).unwrap()).await.unwrap();
    let security = json!({
        "caBundle": { "inline": read("ca.crt") },
        "clientTLS": { "secretRef": { "name": "client-tls", "namespace": fixture.namespace } },
    });
    controller(&fixture, &format!("https://127.0.0.1:{}", hook.port), security).await;
    check_rows(&fixture, ACCEPTED_PYTHON, REFUSED_PYTHON).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn node_http_server_answers_chunked_and_whole() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hook = ScriptHook::start("node", NODE_SERVER, &[]);
    controller(&fixture, &format!("http://127.0.0.1:{}", hook.port), json!({})).await;
    check_rows(&fixture, &["node-chunked", "node-end"], &[]).await;
}
