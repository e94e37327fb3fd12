//! What the engine's integration tests share: a fixture with a fresh namespace, a parent CRD
//! of its own, and an engine running only this test's CompositeControllers (selected by
//! label); a real hook server on loopback whose answers each test scripts; and helpers to
//! wait for and inspect the results.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bosun_engine::{ApplyStrategy, Engine, EngineConfig};
use bosun_testenv::TestEnv;
pub use bosun_testenv::eventually;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// The server-side apply strategy as `bosun run` configures it by default.
pub fn server_side_apply() -> ApplyStrategy {
    ApplyStrategy::ServerSideApply { field_manager: "metacontroller".into() }
}

/// Runs each scenario `async fn(ApplyStrategy)` once per apply strategy, as two tests.
#[macro_export]
macro_rules! with_both_strategies {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn dynamic_apply() {
                super::$scenario(bosun_engine::ApplyStrategy::DynamicApply).await
            }
            #[tokio::test]
            async fn server_side_apply() {
                super::$scenario(super::support::server_side_apply()).await
            }
        }
    )*};
}

/// The label that ties a CompositeController to the engine of one test.
pub const TEST_LABEL: &str = "test.bosun.dev/engine";

/// The engine's API requests by HTTP method, with watches (`GET …?watch=true`) as `WATCH`.
#[derive(Default)]
pub struct RequestCounts(Mutex<BTreeMap<String, usize>>);

impl RequestCounts {
    /// Write requests (POST, PUT, PATCH, DELETE) so far.
    pub fn writes(&self) -> usize {
        let counts = self.0.lock().unwrap();
        ["POST", "PUT", "PATCH", "DELETE"].iter().map(|method| counts.get(*method).copied().unwrap_or(0)).sum()
    }

    /// All requests so far, by method.
    pub fn snapshot(&self) -> BTreeMap<String, usize> {
        self.0.lock().unwrap().clone()
    }

    /// Requests of `method` (or `WATCH`) so far.
    pub fn of(&self, method: &str) -> usize {
        self.0.lock().unwrap().get(method).copied().unwrap_or(0)
    }
}

/// A test's namespace, parent CRD and engine.
pub struct Fixture {
    pub env: &'static TestEnv,
    pub client: Client,
    pub namespace: String,
    pub id: String,
    /// The parent type: namespaced `Thing`, spec and status free-form.
    pub things: ApiResource,
    pub requests: Arc<RequestCounts>,
    /// The engine's metrics.
    pub metrics: bosun_runtime::Metrics,
    /// The engine's readiness checks.
    pub health: bosun_runtime::Health,
    /// Whether the engine watches only `namespace`.
    within: bool,
    engine: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(engine) = self.engine.take() {
            engine.abort();
        }
    }
}

impl Fixture {
    /// A fixture whose parent CRD has the status subresource, with the engine running.
    pub async fn new(strategy: ApplyStrategy) -> Fixture {
        Self::with_parent_crd(strategy, true).await
    }

    /// A fixture whose parent CRD has the status subresource only if `status` is set.
    pub async fn with_parent_crd(strategy: ApplyStrategy, status: bool) -> Fixture {
        Self::with_config(strategy, status, |_| {}).await
    }

    /// A fixture whose engine's settings `configure` changes.
    pub async fn with_config(strategy: ApplyStrategy, status: bool, configure: impl FnOnce(&mut EngineConfig)) -> Fixture {
        let mut fixture = Self::prepare(status).await;
        let config = fixture.env.control_plane().config();
        fixture.start_engine(config, strategy, configure);
        fixture
    }

    /// A fixture whose engine watches only the test's namespace (`bosun run --namespace`).
    pub async fn within_its_namespace(strategy: ApplyStrategy) -> Fixture {
        let mut fixture = Self::prepare(true).await;
        fixture.within = true;
        let config = fixture.env.control_plane().config();
        fixture.start_engine(config, strategy, |_| {});
        fixture
    }

    /// A fixture whose engine runs as a ServiceAccount granted only `rules` (a ClusterRole's),
    /// as it would in a cluster with less RBAC than it needs.
    pub async fn as_service_account(strategy: ApplyStrategy, rules: Value, configure: impl FnOnce(&mut EngineConfig)) -> Fixture {
        let mut fixture = Self::prepare(true).await;
        let name = format!("engine-{}", fixture.id);
        let role: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": { "name": name }, "rules": rules,
        }))
        .unwrap();
        let binding: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": { "name": name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
            "subjects": [{ "kind": "ServiceAccount", "name": "engine", "namespace": fixture.namespace }],
        }))
        .unwrap();
        for (object, resource) in [
            (role, ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&())),
            (binding, ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(&())),
        ] {
            Api::<DynamicObject>::all_with(fixture.client.clone(), &resource).create(&PostParams::default(), &object).await.unwrap();
        }
        let config = fixture.env.service_account_config(&fixture.namespace, "engine").await;
        fixture.start_engine(config, strategy, configure);
        fixture
    }

    /// The rules an engine needs for this fixture's Things and its controller objects and
    /// events — but no child types: `children` adds those.
    pub fn engine_rules(children: Value) -> Value {
        let mut rules = json!([
            { "apiGroups": ["metacontroller.k8s.io"], "resources": ["compositecontrollers", "decoratorcontrollers"], "verbs": ["get", "list", "watch"] },
            { "apiGroups": ["*"], "resources": ["things"], "verbs": ["get", "list", "watch", "patch"] },
            { "apiGroups": ["*"], "resources": ["things/status"], "verbs": ["patch"] },
            { "apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"] },
        ]);
        rules.as_array_mut().unwrap().extend(children.as_array().cloned().unwrap_or_default());
        rules
    }

    /// The control plane, the CRDs and a namespace, without the engine.
    async fn prepare(status: bool) -> Fixture {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ =
                tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
        }
        let env = TestEnv::shared();
        let client = env.client();
        bosun_engine::install_crds(&client).await.unwrap();
        let namespace = env.namespace("engine").await;
        let id = bosun_testenv::unique_suffix();
        let things = install_thing_crd(env, &id, status).await;
        Fixture {
            env,
            client,
            namespace,
            id,
            things,
            requests: Arc::default(),
            metrics: bosun_runtime::Metrics::new(),
            health: bosun_runtime::Health::default(),
            within: false,
            engine: None,
            stop: None,
        }
    }

    /// Starts the engine with a client from `config`, its requests counted in `requests` and
    /// in `metrics` (`rest_client_requests_total`).
    fn start_engine(&mut self, config: kube::Config, strategy: ApplyStrategy, configure: impl FnOnce(&mut EngineConfig)) {
        let requests = self.requests.clone();
        let counting = tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            let watch = request.uri().query().is_some_and(|query| query.split('&').any(|pair| pair == "watch=true"));
            let method = if watch { "WATCH".to_owned() } else { request.method().to_string() };
            *requests.0.lock().unwrap().entry(method).or_insert(0) += 1;
            request
        });
        let client = kube::client::ClientBuilder::try_from(config)
            .unwrap()
            .with_layer(&counting)
            .with_layer(&self.metrics.rest_client_layer("test"))
            .build();
        let mut config = EngineConfig {
            apply_strategy: strategy,
            discovery_interval: Duration::from_millis(500),
            target_label_selector: Some(serde_json::from_value(json!({ "matchLabels": { TEST_LABEL: self.id } })).unwrap()),
            // Scenarios provoke many failures per parent; client-go's 25 would silence the later ones.
            events_burst: 10_000,
            ..EngineConfig::default()
        };
        configure(&mut config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut caches = bosun_runtime::SharedCaches::new(client.clone()).with_metrics(&self.metrics);
        if self.within {
            caches = caches.within([self.namespace.clone()]);
        }
        let context = bosun_runtime::Context { client, caches, metrics: self.metrics.clone(), health: self.health.clone(), shard: None };
        self.engine = Some(tokio::spawn(Engine::new(&context, config).run(async {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
    }

    pub fn parents(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &self.things)
    }

    pub fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn controllers(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()))
    }

    /// Creates this test's CompositeController over `Thing` with ConfigMap children; `spec`
    /// is merged over those defaults (hooks, updateStrategy, …).
    pub async fn composite_controller(&self, spec: Value) -> String {
        let name = format!("things-{}", self.id);
        create_thing_controller(&self.client, &name, json!({ TEST_LABEL: self.id }), &self.things, spec).await;
        name
    }

    pub fn decorator_controllers(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &ApiResource::erase::<bosun_engine::api::DecoratorController>(&()))
    }

    /// Creates this test's DecoratorController (`dec-<id>`) with `spec`.
    pub async fn decorator_controller(&self, spec: Value) -> String {
        let name = format!("dec-{}", self.id);
        let controller: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1",
            "kind": "DecoratorController",
            "metadata": { "name": name, "labels": { TEST_LABEL: self.id } },
            "spec": spec,
        }))
        .unwrap();
        self.decorator_controllers().patch(&name, &strict(), &Patch::Apply(&controller)).await.unwrap();
        name
    }

    /// Creates a `Thing` with `spec` (and `selector.matchLabels: {thing: <name>}` unless the
    /// spec has a selector).
    pub async fn parent(&self, name: &str, spec: Value) -> DynamicObject {
        let mut full = json!({ "selector": { "matchLabels": { "thing": name } } });
        merge_into(&mut full, spec);
        let object = DynamicObject::new(name, &self.things).data(json!({ "spec": full }));
        self.parents().create(&PostParams::default(), &object).await.unwrap()
    }

    /// Events about the object named `name` in this test's namespace (or `default` for
    /// cluster-scoped objects), as (type, reason, message).
    pub async fn events(&self, name: &str, namespace: Option<&str>) -> Vec<(String, String, String)> {
        let namespace = namespace.unwrap_or(&self.namespace);
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await.unwrap();
        list.items
            .into_iter()
            .map(|event| (event.type_.unwrap_or_default(), event.reason.unwrap_or_default(), event.message.unwrap_or_default()))
            .collect()
    }

    /// The engine's `bosun_records` gauge for records of kind `name` (0 until first set).
    pub fn records(&self, name: &str) -> usize {
        let prefix = format!("bosun_records{{name=\"{name}\"}} ");
        let metrics = self.metrics.encode();
        metrics.lines().find_map(|line| line.strip_prefix(prefix.as_str())).map_or(0, |count| count.parse().unwrap())
    }

    /// Waits for an event with `reason` about `name`, and returns its message.
    pub async fn event_with_reason(&self, name: &str, namespace: Option<&str>, reason: &str) -> String {
        eventually(&format!("a {reason} event on {name}"), async || {
            self.events(name, namespace).await.into_iter().find(|(_, r, _)| r == reason).map(|(_, _, message)| message)
        })
        .await
    }
}

/// Creates CompositeController `name` (with `labels`) over `things` with ConfigMap children;
/// `spec` is merged over those defaults.
pub async fn create_thing_controller(client: &Client, name: &str, labels: Value, things: &ApiResource, spec: Value) {
    let mut full = json!({
        "parentResource": { "apiVersion": things.api_version, "resource": "things" },
        "childResources": [{ "apiVersion": "v1", "resource": "configmaps" }],
    });
    merge_into(&mut full, spec);
    let controller: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "CompositeController",
        "metadata": { "name": name, "labels": labels },
        "spec": full,
    }))
    .unwrap();
    let resource = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    Api::<DynamicObject>::all_with(client.clone(), &resource).patch(name, &strict(), &Patch::Apply(&controller)).await.unwrap();
}

/// Creates controllers with strict field validation: a field the CRD does not know (say
/// `annotationSelector.matchLabels` for `matchAnnotations`) is an error, not silently dropped —
/// dropped, a selector can match every object of the cluster, other tests' included.
fn strict() -> PatchParams {
    PatchParams::apply("test").validation_strict()
}

/// Merges `patch` into `target` (objects key by key, anything else replaced).
pub fn merge_into(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge_into(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

/// Installs a namespaced, free-form `Thing` CRD in a group of its own.
pub async fn install_thing_crd(env: &TestEnv, id: &str, status: bool) -> ApiResource {
    install_things(env, &format!("{id}.engine.bosun.dev"), "Namespaced", status).await
}

/// Installs a cluster-scoped, free-form `Thing` CRD (with status) in a group of its own.
pub async fn install_cluster_thing_crd(env: &TestEnv, id: &str) -> ApiResource {
    install_things(env, &format!("{id}.cluster.engine.bosun.dev"), "Cluster", true).await
}

async fn install_things(env: &TestEnv, group: &str, scope: &str, status: bool) -> ApiResource {
    let mut version = json!({
        "name": "v1",
        "served": true,
        "storage": true,
        "schema": { "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
            },
        }},
    });
    if status {
        version["subresources"] = json!({ "status": {} });
    }
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": format!("things.{group}") },
        "spec": {
            "group": group,
            "scope": scope,
            "names": { "plural": "things", "singular": "thing", "kind": "Thing" },
            "versions": [version],
        },
    }))
    .unwrap();
    env.install_crd(&crd).await;
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", "Thing"), "things")
}

/// What the hook server answers.
pub enum Reply {
    /// 200 with this JSON body.
    Json(Value),
    /// This status and body.
    Status(u16, String),
    /// 429 with this `Retry-After` header.
    TooManyRequests(Option<String>),
    /// No answer for this long (then an empty 200).
    Hang(Duration),
    /// This JSON body, after this long.
    Slow(Duration, Value),
    /// 307 to this URL.
    Redirect(String),
    /// 200 with this JSON body and this `ETag`.
    Tagged(String, Value),
    /// 200 with a body of `count` copies of `chunk`, each sent `pause` after the one before.
    Stream { chunk: &'static [u8], count: usize, pause: Duration },
}

type Script = dyn Fn(&str, &Value) -> Reply + Send + Sync;
type Requests = Arc<Mutex<Vec<(String, Value)>>>;
type ServerState = (Arc<Mutex<Arc<Script>>>, Requests, Arc<AtomicUsize>);

/// A real HTTP hook server on 127.0.0.1, answering `/sync` and `/finalize` as scripted.
pub struct HookServer {
    pub base: String,
    script: Arc<Mutex<Arc<Script>>>,
    requests: Requests,
    calls: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl HookServer {
    /// Starts a server answering with `script(path, request)`.
    pub async fn start(script: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static) -> HookServer {
        let script: Arc<Mutex<Arc<Script>>> = Arc::new(Mutex::new(Arc::new(script)));
        let requests: Requests = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let state = (script.clone(), requests.clone(), calls.clone());
        let app = axum::Router::new().route(
            "/{hook}",
            axum::routing::post(
                |axum::extract::State((script, requests, calls)): axum::extract::State<ServerState>,
                 axum::extract::Path(hook): axum::extract::Path<String>,
                 body: String| async move {
                    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    calls.fetch_add(1, Ordering::SeqCst);
                    requests.lock().unwrap().push((hook.clone(), request.clone()));
                    let script = script.lock().unwrap().clone();
                    let reply = script(&hook, &request);
                    let mut headers = HeaderMap::new();
                    match reply {
                        Reply::Json(value) => (StatusCode::OK, headers, value.to_string()).into_response(),
                        Reply::Status(code, body) => (StatusCode::from_u16(code).unwrap(), headers, body).into_response(),
                        Reply::TooManyRequests(retry_after) => {
                            if let Some(value) = retry_after {
                                headers.insert("retry-after", value.parse().unwrap());
                            }
                            (StatusCode::TOO_MANY_REQUESTS, headers).into_response()
                        }
                        Reply::Hang(duration) => {
                            tokio::time::sleep(duration).await;
                            (StatusCode::OK, headers, "{}").into_response()
                        }
                        Reply::Slow(duration, value) => {
                            tokio::time::sleep(duration).await;
                            (StatusCode::OK, headers, value.to_string()).into_response()
                        }
                        Reply::Tagged(etag, value) => {
                            headers.insert("etag", etag.parse().unwrap());
                            (StatusCode::OK, headers, value.to_string()).into_response()
                        }
                        Reply::Redirect(location) => {
                            headers.insert("location", location.parse().unwrap());
                            (StatusCode::TEMPORARY_REDIRECT, headers).into_response()
                        }
                        Reply::Stream { chunk, count, pause } => {
                            let chunks = futures::stream::iter(0..count).then(move |index| async move {
                                if index > 0 {
                                    tokio::time::sleep(pause).await;
                                }
                                Ok::<_, std::io::Error>(bytes::Bytes::from_static(chunk))
                            });
                            (StatusCode::OK, headers, axum::body::Body::from_stream(chunks)).into_response()
                        }
                    }
                },
            ),
        );
        let app = app.with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        HookServer { base, script, requests, calls, server }
    }

    /// Changes what the server answers from now on.
    pub fn script(&self, script: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    /// The URL of a hook path.
    pub fn url(&self, hook: &str) -> String {
        format!("{}/{hook}", self.base)
    }

    /// `{ "webhook": { "url": … } }` for a hook path, with extra hook fields merged in.
    pub fn hook(&self, hook: &str, extra: Value) -> Value {
        let mut value = json!({ "webhook": { "url": self.url(hook) } });
        merge_into(&mut value, extra);
        value
    }

    /// Requests received so far, as (path, body).
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests arrived.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Once the engine's writes have settled (a resync came and went without one), watches three
/// more resyncs and checks that the engine wrote nothing.
pub async fn assert_no_writes_over_resyncs(fixture: &Fixture, hooks: &HookServer) {
    let settled = eventually("the writes to settle", async || {
        let writes = fixture.requests.writes();
        let calls = hooks.calls();
        eventually("a resync", async || (hooks.calls() > calls).then_some(())).await;
        (fixture.requests.writes() == writes).then_some(writes)
    })
    .await;
    let calls = hooks.calls();
    eventually("three more resyncs", async || (hooks.calls() >= calls + 3).then_some(())).await;
    assert_eq!(fixture.requests.writes(), settled, "requests: {:?}", fixture.requests.snapshot());
}

/// The standard test hook: one ConfigMap per parent, `<parent>-config`, carrying the parent's
/// `spec.data` and its selector's labels; status counts the observed children.
pub fn config_map_per_parent(_hook: &str, request: &Value) -> Reply {
    Reply::Json(desired_config_map(request))
}

/// The standard test hook's response for `request`.
pub fn desired_config_map(request: &Value) -> Value {
    let parent = &request["parent"];
    let name = parent["metadata"]["name"].as_str().unwrap_or_default();
    let labels = parent["spec"]["selector"]["matchLabels"].clone();
    let observed = request["children"]["ConfigMap.v1"].as_object().map(|map| map.len()).unwrap_or(0);
    json!({
        "status": { "observedChildren": observed, "phase": "Synced" },
        "children": [{
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": format!("{name}-config"), "labels": labels },
            "data": parent["spec"]["data"].clone(),
        }],
    })
}

/// A hook server process as hook authors write one without an SDK — a `python3` or `node`
/// script on 127.0.0.1 that prints its port on its first line of output. Stopped when dropped.
pub struct ScriptHook {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
}

impl Drop for ScriptHook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ScriptHook {
    /// Runs `script` with `program` (`python3` or `node`) and `args`.
    pub fn start(program: &str, script: &str, args: &[&str]) -> ScriptHook {
        use std::io::BufRead;
        let flag = if program == "node" { "-e" } else { "-c" };
        let mut child = std::process::Command::new(program)
            .arg(flag)
            .arg(script)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("{program} runs: {error}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the {program} hook prints its port, not {line:?}"));
        ScriptHook { child, port }
    }
}

/// Runs `openssl` with `args` in `dir`.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let output = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Makes certificates in `dir` with the `openssl` command line, by the usual recipe: a CA by
/// `req -x509` (`ca.crt`, `ca.key`), a server certificate for 127.0.0.1 with a SAN extfile
/// (`server.crt`, `server.key`), and a client certificate signed without extensions — which
/// makes it X.509 v1 (`client.crt`, `client.key`).
pub fn openssl_certificates(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=hooks-ca", "-days", "2"],
    );
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let sign = |csr: &str, crt: &str, extfile: Option<&str>| {
        let mut args = vec!["x509", "-req", "-in", csr, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", crt, "-days", "2"];
        if let Some(extfile) = extfile {
            args.extend(["-extfile", extfile]);
        }
        openssl(dir, &args);
    };
    sign("server.csr", "server.crt", Some("server.ext"));
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=bosun"]);
    sign("client.csr", "client.crt", None);
}

/// The WebAssembly module the crate in `dir` (relative to the repository's root) builds for
/// `wasm32-wasip1`, built on first use in this test binary (into the workspace's
/// `target/wasm`), and its SHA-256 in hex.
pub fn wasm_module(dir: &str) -> (Vec<u8>, String) {
    static BUILT: Mutex<BTreeMap<String, (Vec<u8>, String)>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap();
    built.entry(dir.to_owned()).or_insert_with(|| build_wasm_module(dir)).clone()
}

fn build_wasm_module(dir: &str) -> (Vec<u8>, String) {
    use sha2::Digest as _;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest = root.join(dir).join("Cargo.toml");
    let target = root.join("target/wasm");
    let built = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip1", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    assert!(
        built.status.success(),
        "building {dir} for wasm32-wasip1 (rustup target add wasm32-wasip1): {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let text = std::fs::read_to_string(&manifest).unwrap();
    let name = text.lines().find_map(|line| line.strip_prefix("name = ")).unwrap().trim_matches('"');
    let module = std::fs::read(target.join("wasm32-wasip1/release").join(format!("{name}.wasm"))).unwrap();
    let digest = format!("{:x}", sha2::Sha256::digest(&module));
    (module, digest)
}

/// A ConfigMap `name` in the fixture's namespace holding `module` under `hook.wasm`, and the
/// `wasm` hook that runs it, pinned to `sha256`.
pub async fn wasm_hook(fixture: &Fixture, name: &str, module: Vec<u8>, sha256: &str, extra: Value) -> Value {
    let config_map = ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
        binary_data: Some([("hook.wasm".to_owned(), k8s_openapi::ByteString(module))].into()),
        ..Default::default()
    };
    fixture.config_maps().create(&PostParams::default(), &config_map).await.unwrap();
    let mut wasm = json!({ "configMap": { "namespace": fixture.namespace, "name": name, "key": "hook.wasm" }, "sha256": sha256 });
    merge_into(&mut wasm, extra);
    json!({ "wasm": wasm })
}

/// Sets the data `mode` of parent `p` (the mode the test hooks act on).
pub async fn set_mode(fixture: &Fixture, mode: &str) {
    let patch = json!({ "spec": { "data": { "mode": mode } } });
    fixture.parents().patch("p", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

/// Waits for a SyncError on parent `p` saying `message`, and checks that its child
/// `p-config` is as it was in mode `ok`.
pub async fn assert_refused_and_unchanged(fixture: &Fixture, message: &str) {
    eventually(&format!("a SyncError saying {message:?}"), async || {
        let events = fixture.events("p", None).await;
        events.into_iter().find(|(_, reason, said)| reason == "SyncError" && said.contains(message)).map(drop)
    })
    .await;
    let child = fixture.config_maps().get("p-config").await.unwrap();
    assert_eq!(child.data.unwrap()["mode"], "ok", "the child is left as it was (after {message:?})");
}
