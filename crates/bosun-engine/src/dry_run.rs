//! A dry run of one sync: the engine's own sync of one parent (or decorated target), on a
//! client that cannot write. Every create, update, patch and delete it sends goes to the API
//! server with `dryRun=All`, which admits, validates and defaults it as if it were real and
//! persists nothing; each is recorded with the object before and after. The hook calls are
//! real and recorded too. So what a dry run shows is what the engine would do — its requests,
//! its validation, its merge or server-side apply, its error messages — not a re-creation of it.
//! `bosun hook test` prints it.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Either, Full};
use kube::api::{DynamicObject, PostParams};
use kube::client::Body;
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::api::{CompositeController, DecoratorController};
use crate::context::{EngineConfig, EngineContext};
pub use crate::hooks::HookExchange;
use crate::hosting::CreateError;
use crate::reconcile::Hosted;

/// Why a dry run could not be made (a sync that fails is a [`Outcome::Failed`], not this).
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    /// The controller object is neither a CompositeController nor a DecoratorController.
    #[error("{0} is not a CompositeController or DecoratorController")]
    NotAController(String),
    /// The controller object does not decode.
    #[error("the {kind} does not decode: {source}")]
    Controller {
        /// Its kind.
        kind: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The controller could not run, as the engine would report in a `CreateError` event.
    #[error("the controller cannot run: {0}")]
    Create(String),
    /// The controller's types could not all be listed in time.
    #[error("its parent and child types could not all be listed within {0:?}; check that you may list and watch them")]
    NotSynced(Duration),
    /// The object is not one the controller reconciles.
    #[error("{0}")]
    NotReconciled(String),
    /// The API server could not be asked.
    #[error("{action}: {source}")]
    Api {
        /// What was asked.
        action: String,
        /// Why it failed.
        source: Box<kube::Error>,
    },
}

impl From<CreateError> for DryRunError {
    fn from(error: CreateError) -> Self {
        DryRunError::Create(error.to_string())
    }
}

/// What a write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAction {
    /// POST: creates the object.
    Create,
    /// PUT or PATCH: changes it.
    Update,
    /// DELETE.
    Delete,
}

impl WriteAction {
    /// `create`, `update` or `delete`.
    pub fn verb(self) -> &'static str {
        match self {
            WriteAction::Create => "create",
            WriteAction::Update => "update",
            WriteAction::Delete => "delete",
        }
    }
}

/// One write the engine sent, which the API server answered as a dry run.
#[derive(Debug, Clone)]
pub struct Write {
    /// What it does.
    pub action: WriteAction,
    /// The request path, e.g. `/api/v1/namespaces/default/configmaps/hello`.
    pub path: String,
    /// The subresource written (`status`), if any.
    pub subresource: Option<String>,
    /// The object before (none for a create).
    pub before: Option<Value>,
    /// The object as the API server says it would be (none for a delete, or when refused).
    pub after: Option<Value>,
    /// The request body.
    pub request: Option<Value>,
    /// The API server's refusal, if it refused the write.
    pub refused: Option<String>,
}

/// How the sync ended, as the engine's work queue would take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Synced; the next sync comes with the next change or resync.
    Done,
    /// Synced; sync again after this long (`resyncAfterSeconds`, a 429's `Retry-After`, a conflict).
    RequeueAfter(Duration),
    /// Failed with this message (the engine's `SyncError` event); retried with backoff.
    Failed(String),
}

/// What one sync would have done.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// The object synced, as the engine saw it.
    pub object: DynamicObject,
    /// Whether it is new: given in a file, not in the cluster (so writes to it are shown as
    /// they would apply once it exists).
    pub new: bool,
    /// The hook calls, in order.
    pub exchanges: Vec<HookExchange>,
    /// The controller's credentials not sent, because the calls went to another host than
    /// its hook's (`url` without `send_credentials`), as they may be printed.
    pub withheld_credentials: Vec<String>,
    /// The writes, in order; writes that would change nothing are left out.
    pub writes: Vec<Write>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Write {
    /// The object written, as best known: after, before, or as sent.
    pub fn object(&self) -> Option<&Value> {
        self.after.as_ref().or(self.before.as_ref()).or(self.request.as_ref())
    }

    /// Whether it records an event rather than writes an object the sync is about.
    pub fn is_event(&self) -> bool {
        self.path.split('/').any(|segment| segment == "events")
    }
}

impl DryRun {
    /// The main hook exchange: the last sync or finalize call (a customize call comes first).
    pub fn main_exchange(&self) -> Option<&HookExchange> {
        self.exchanges.iter().rev().find(|exchange| exchange.hook != "customize")
    }

    /// What the sync did, without the cluster's particulars: the hook called, the outcome and
    /// the writes by action, kind and name — a protocol test vector's `expect.json`.
    pub fn expectation(&self) -> Value {
        let writes: Vec<Value> = self
            .writes
            .iter()
            .filter(|write| !write.is_event())
            .map(|write| {
                let object = write.object().cloned().unwrap_or_default();
                let mut entry =
                    serde_json::json!({ "action": write.action.verb(), "kind": object["kind"], "name": object["metadata"]["name"] });
                if let Some(subresource) = &write.subresource {
                    entry["subresource"] = serde_json::json!(subresource);
                }
                entry
            })
            .collect();
        let mut expect = serde_json::json!({ "hook": self.main_exchange().map(|exchange| exchange.hook) });
        match &self.outcome {
            Outcome::Done => expect["outcome"] = "Synced".into(),
            Outcome::RequeueAfter(delay) => {
                expect["outcome"] = "Synced".into();
                expect["requeueAfterSeconds"] = serde_json::json!(delay.as_secs_f64());
            }
            Outcome::Failed(message) => {
                expect["outcome"] = "Failed".into();
                expect["message"] = message.clone().into();
            }
        }
        expect["writes"] = writes.into();
        expect
    }
}

/// What a request the dry-run client sent looked like and how it was answered.
#[derive(Debug, Clone)]
struct Recorded {
    method: http::Method,
    path: String,
    request: Bytes,
    status: u16,
    response: Bytes,
}

/// The tower layer that turns every write into a dry run and records it.
#[derive(Clone, Default)]
struct DryRunLayer {
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl<S> tower::Layer<S> for DryRunLayer {
    type Service = DryRunService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DryRunService { inner, recorded: self.recorded.clone() }
    }
}

struct DryRunService<S> {
    inner: S,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `uri` with `dryRun=All` in its query.
fn dry_run_uri(uri: &http::Uri) -> http::Uri {
    let query = match uri.query() {
        Some(query) if query.split('&').any(|pair| pair.starts_with("dryRun=")) => query.to_owned(),
        Some(query) => format!("{query}&dryRun=All"),
        None => "dryRun=All".to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(format!("{}?{query}", uri.path()).parse().expect("a path and query stay valid"));
    http::Uri::from_parts(parts).expect("a URI with a new query stays valid")
}

/// DeleteOptions `body` (possibly empty) with `dryRun: [All]`.
fn dry_run_delete_options(body: &Bytes) -> Bytes {
    let mut options: Value = serde_json::from_slice(body).unwrap_or_else(|_| serde_json::json!({}));
    if !options.is_object() {
        options = serde_json::json!({});
    }
    options["dryRun"] = serde_json::json!(["All"]);
    Bytes::from(serde_json::to_vec(&options).expect("JSON serializes"))
}

impl<S, B> tower::Service<http::Request<Body>> for DryRunService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Either<B, Full<Bytes>>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.method() == http::Method::GET {
            let response = self.inner.call(request);
            return async move { Ok(response.await.map_err(Into::into)?.map(Either::Left)) }.boxed();
        }
        let (mut parts, body) = request.into_parts();
        // kube's request bodies are whole in memory: collecting them completes at once.
        let mut request = body.collect_bytes().now_or_never().and_then(Result::ok).unwrap_or_default();
        parts.uri = dry_run_uri(&parts.uri);
        if parts.method == http::Method::DELETE {
            // A DELETE's options travel in its body, where the API server looks for them
            // instead of the query.
            request = dry_run_delete_options(&request);
        }
        let (method, path) = (parts.method.clone(), parts.uri.path().to_owned());
        let response = self.inner.call(http::Request::from_parts(parts, Body::from(request.clone())));
        let recorded = self.recorded.clone();
        async move {
            let (parts, body) = response.await.map_err(Into::into)?.into_parts();
            let response = body.collect().await.map_err(Into::into)?.to_bytes();
            let status = parts.status.as_u16();
            recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Recorded {
                method,
                path,
                request,
                status,
                response: response.clone(),
            });
            Ok(http::Response::from_parts(parts, Either::Right(Full::new(response))))
        }
        .boxed()
    }
}

/// What a dry run is of.
pub struct DryRunRequest {
    /// The CompositeController or DecoratorController, from the cluster or a file.
    pub controller: DynamicObject,
    /// The parent or target: the cluster's (read again here), or one from a file — an
    /// existing object's new content, or a new object (created as a dry run first).
    pub object: DynamicObject,
    /// Sends the sync and finalize hook calls here instead of to the controller's URL.
    pub url: Option<String>,
    /// Sends the controller's credentials with calls to `url` even when it names another host
    /// than the hook's own; without it they are withheld.
    pub send_credentials: bool,
}

/// Makes the engine sync `request.object` once with `config`'s settings, through a client
/// built from `client_config` that cannot write.
pub async fn dry_run(client_config: kube::Config, config: EngineConfig, request: DryRunRequest) -> Result<DryRun, DryRunError> {
    let layer = DryRunLayer::default();
    let client = kube::client::ClientBuilder::try_from(client_config)
        .map_err(|source| DryRunError::Api { action: "building a client".into(), source: Box::new(source) })?
        .with_layer(&layer)
        .build();
    let ctx = Arc::new(EngineContext::new(&bosun_runtime::Context::standalone(client.clone()), config));
    ctx.hooks.record_exchanges();
    let DryRunRequest { mut controller, object, url, send_credentials } = request;
    let withheld_credentials = match &url {
        Some(url) => point_hooks_at(&mut controller, url, send_credentials),
        None => Vec::new(),
    };
    let (object, new_path) = the_object(&ctx, object).await?;
    let new_object = new_path.map(|path| (path, serde_json::to_value(&object).expect("objects serialize")));
    // Creating a new object as a dry run was this function's write, not the engine's.
    layer.recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    let kind = controller.types.as_ref().map(|types| types.kind.clone()).unwrap_or_default();
    let decode_error = |source| DryRunError::Controller { kind: kind.clone(), source };
    let controller_value = serde_json::to_value(&controller).expect("objects serialize");
    let outcome = match kind.as_str() {
        "CompositeController" => {
            let controller: CompositeController = serde_json::from_value(controller_value).map_err(decode_error)?;
            let (hosted, _queue) = crate::composite::start::build(ctx.clone(), &controller).await?;
            sync_once(&*hosted, hosted.key_of(&object), hosted.wait_synced(), &object).await?
        }
        "DecoratorController" => {
            let controller: DecoratorController = serde_json::from_value(controller_value).map_err(decode_error)?;
            let (hosted, _queue) = crate::decorator::start::build(ctx.clone(), &controller).await?;
            sync_once(&*hosted, hosted.key_of(&object), hosted.wait_synced(), &object).await?
        }
        other => return Err(DryRunError::NotAController(format!("{other} {}", controller.name_any()))),
    };
    let recorded = std::mem::take(&mut *layer.recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let mut writes = Vec::new();
    for recorded in recorded {
        if let Some(write) = write_of(&client, recorded, new_object.as_ref()).await? {
            writes.push(write);
        }
    }
    Ok(DryRun { object, new: new_object.is_some(), exchanges: ctx.hooks.exchanges(), withheld_credentials, writes, outcome })
}

/// Syncs `object` under `key` once `caches_synced` (waited for as long as the engine would
/// before reporting them).
async fn sync_once<P: crate::reconcile::Policy>(
    hosted: &Hosted<P>,
    key: Result<P::Key, String>,
    caches_synced: impl Future<Output = ()>,
    object: &DynamicObject,
) -> Result<Outcome, DryRunError> {
    let key = key.map_err(DryRunError::NotReconciled)?;
    let timeout = hosted.ctx.config.cache_sync_timeout;
    tokio::time::timeout(timeout, caches_synced).await.map_err(|_| DryRunError::NotSynced(timeout))?;
    Ok(dry_sync(hosted, key, Arc::new(object.clone())).await)
}

/// Syncs `object` under `key` as [`crate::reconcile::process`] does, its `SyncError` event
/// included; the outcome as the work queue would take it.
async fn dry_sync<P: crate::reconcile::Policy>(hosted: &Hosted<P>, key: P::Key, object: Arc<DynamicObject>) -> Outcome {
    let outcome = crate::reconcile::sync_object(hosted, &key, object.clone()).await;
    match crate::outcome::action(&hosted.ctx, outcome, Some((&object, hosted.resource(&key)))).await {
        Ok(bosun_runtime::Action::Done) => Outcome::Done,
        Ok(bosun_runtime::Action::RequeueAfter(delay)) => Outcome::RequeueAfter(delay),
        Err(error) => Outcome::Failed(error.to_string()),
    }
}

/// Points the controller's sync and finalize hooks at `url`. Unless `send_credentials`, a hook
/// whose own host is another than `url`'s loses its credentials — its `authorization`,
/// `basicAuth` and `clientTLS`, and the `endpointConfigs` entries for `url`'s host — so that a
/// hook running on a laptop is not sent what the cluster's hook is. Returns what was withheld,
/// as it may be printed.
fn point_hooks_at(controller: &mut DynamicObject, url: &str, send_credentials: bool) -> Vec<String> {
    use crate::hooks::auth::{Security, host_matches};
    let target = url::Url::parse(url).ok();
    let same_host = |webhook: &serde_json::Map<String, Value>| {
        let own = match (webhook.get("url").and_then(Value::as_str), webhook.get("service")) {
            (Some(own), _) => url::Url::parse(own).ok(),
            (None, Some(service)) => {
                let (name, namespace) = (service["name"].as_str().unwrap_or_default(), service["namespace"].as_str().unwrap_or_default());
                let scheme = service["protocol"].as_str().unwrap_or("http");
                url::Url::parse(&format!("{scheme}://{name}.{namespace}:{}/", service["port"].as_i64().unwrap_or(80))).ok()
            }
            (None, None) => None,
        };
        match (own, &target) {
            (Some(own), Some(target)) => {
                own.host_str() == target.host_str() && own.port_or_known_default() == target.port_or_known_default()
            }
            _ => false,
        }
    };
    let (mut withheld, mut moved) = (Vec::new(), false);
    for hook in ["sync", "finalize"] {
        let Some(webhook) = controller.data.pointer_mut(&format!("/spec/hooks/{hook}/webhook")).and_then(Value::as_object_mut) else {
            continue;
        };
        if !send_credentials && !same_host(webhook) {
            moved = true;
            let security: Option<crate::api::Webhook> = serde_json::from_value(Value::Object(webhook.clone())).ok();
            if let Some(webhook) = security {
                let security = Security {
                    authorization: webhook.authorization,
                    basic_auth: webhook.basic_auth,
                    client_tls: webhook.client_tls,
                    ..Default::default()
                };
                withheld.extend(security.credentials().into_iter().map(|credential| format!("{credential} (the {hook} hook's)")));
            }
            for field in ["authorization", "basicAuth", "clientTLS"] {
                webhook.remove(field);
            }
        }
        webhook.remove("service");
        webhook.remove("path");
        webhook.insert("url".into(), Value::String(url.to_owned()));
    }
    if moved
        && let Some(target) = &target
        && let Some(configs) = controller.data.pointer_mut("/spec/endpointConfigs").and_then(Value::as_array_mut)
    {
        configs.retain(|config| {
            let Ok(config) = serde_json::from_value::<crate::api::EndpointConfig>(config.clone()) else { return true };
            if !host_matches(&config.host, target) {
                return true;
            }
            let security = Security {
                authorization: config.authorization,
                basic_auth: config.basic_auth,
                client_tls: config.client_tls,
                ..Default::default()
            };
            withheld.extend(
                security.credentials().into_iter().map(|credential| format!("{credential} (endpointConfigs host {})", config.host)),
            );
            false
        });
    }
    withheld.dedup();
    withheld
}

/// The object to sync: the live one with the given content over it, or, when there is none,
/// the given one as a dry-run create makes it (with a UID and the server's defaults) — and
/// then also its path.
async fn the_object(ctx: &EngineContext, given: DynamicObject) -> Result<(DynamicObject, Option<String>), DryRunError> {
    let types = given.types.clone().unwrap_or_default();
    let api_error = |action: String| move |source| DryRunError::Api { action, source: Box::new(source) };
    let (group, version) = types.api_version.rsplit_once('/').unwrap_or(("", &types.api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &types.kind);
    let (resource, capabilities) = kube::discovery::pinned_kind(&ctx.client, &gvk)
        .await
        .map_err(api_error(format!("finding the resource of {} {} (is its CRD installed?)", types.kind, types.api_version)))?;
    let namespaced = capabilities.scope == kube::discovery::Scope::Namespaced;
    let namespace = given.namespace().unwrap_or_else(|| ctx.client.default_namespace().to_owned());
    let api: Api<DynamicObject> = if namespaced {
        Api::namespaced_with(ctx.client.clone(), &namespace, &resource)
    } else {
        Api::all_with(ctx.client.clone(), &resource)
    };
    let name = given.name_any();
    match api.get_opt(&name).await.map_err(api_error(format!("reading {} {name}", types.kind)))? {
        Some(live) => Ok((overlay(live, given), None)),
        None => {
            let mut given = given;
            let namespace = namespaced.then_some(namespace);
            given.metadata.namespace.clone_from(&namespace);
            let created = api
                .create(&PostParams::default(), &given)
                .await
                .map_err(api_error(format!("creating {} {name} as a dry run", types.kind)))?;
            let path = format!("{}/{name}", <DynamicObject as kube::Resource>::url_path(&resource, namespace.as_deref()));
            Ok((created, Some(path)))
        }
    }
}

/// `live` with what `given` says: its labels, annotations and finalizers where given, and
/// everything but metadata and status.
fn overlay(mut live: DynamicObject, given: DynamicObject) -> DynamicObject {
    let status = live.data.get("status").cloned();
    if given.metadata.labels.is_some() {
        live.metadata.labels = given.metadata.labels;
    }
    if given.metadata.annotations.is_some() {
        live.metadata.annotations = given.metadata.annotations;
    }
    if given.metadata.finalizers.is_some() {
        live.metadata.finalizers = given.metadata.finalizers;
    }
    live.data = given.data;
    if let (Some(data), Some(status)) = (live.data.as_object_mut(), status) {
        data.insert("status".into(), status);
    }
    live
}

/// The write `recorded` made, with the object before it; none when it would change nothing.
/// `new_object` is the path and dry-run creation of an object not in the cluster: a JSON patch
/// to it (refused: not found) is shown as it would apply once it exists.
async fn write_of(client: &kube::Client, recorded: Recorded, new_object: Option<&(String, Value)>) -> Result<Option<Write>, DryRunError> {
    // A question (whether a controller's ServiceAccount may write), not a write.
    if recorded.path.ends_with("/selfsubjectaccessreviews") {
        return Ok(None);
    }
    let action = match recorded.method {
        http::Method::POST => WriteAction::Create,
        http::Method::DELETE => WriteAction::Delete,
        _ => WriteAction::Update,
    };
    let json = |bytes: &Bytes| serde_json::from_slice::<Value>(bytes).ok();
    let request = json(&recorded.request);
    let (path, subresource) = split_subresource(&recorded.path, action);
    let to_new_object = new_object.filter(|(new_path, _)| recorded.status == 404 && *new_path == path);
    let (before, after, refused) = if let Some((_, created)) = to_new_object {
        (Some(created.clone()), patched(created, request.as_ref()), None)
    } else {
        let before = match action {
            WriteAction::Create => None,
            _ => {
                let get = http::Request::get(&path).body(Vec::new()).expect("a GET request builds");
                match client.request::<Value>(get).await {
                    Ok(object) => Some(object),
                    Err(kube::Error::Api(status)) if status.code == 404 => None,
                    Err(source) => return Err(DryRunError::Api { action: format!("reading {path}"), source: Box::new(source) }),
                }
            }
        };
        let succeeded = (200..300).contains(&recorded.status);
        let after = if succeeded && action != WriteAction::Delete { json(&recorded.response) } else { None };
        let refused = (!succeeded).then(|| {
            json(&recorded.response)
                .and_then(|status| status["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {}", recorded.status))
        });
        (before, after, refused)
    };
    if refused.is_none() && action == WriteAction::Update && before.as_ref().map(comparable) == after.as_ref().map(comparable) {
        return Ok(None);
    }
    // A server-side apply creates what does not exist yet.
    let action = if action == WriteAction::Update && before.is_none() && after.is_some() { WriteAction::Create } else { action };
    let mut write = Write { action, path: recorded.path, subresource, before, after, request, refused };
    for object in [&mut write.before, &mut write.after, &mut write.request].into_iter().flatten() {
        crate::hooks::redact::redact_secrets(object);
    }
    Ok(Some(write))
}

/// `object` with the JSON patch `request` applied, its `test` operations left out.
fn patched(object: &Value, request: Option<&Value>) -> Option<Value> {
    let patch: json_patch::Patch = serde_json::from_value(request?.clone()).ok()?;
    let operations: Vec<_> = patch.0.into_iter().filter(|operation| !matches!(operation, json_patch::PatchOperation::Test(_))).collect();
    let mut after = object.clone();
    json_patch::patch(&mut after, &operations).ok()?;
    Some(after)
}

/// The object's own path and the subresource written, if any: `…/<resource>/<name>/status`.
fn split_subresource(path: &str, action: WriteAction) -> (String, Option<String>) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // `api/v1/…` or `apis/<group>/<version>/…`, then `namespaces/<ns>/` or not, then
    // `<resource>[/<name>[/<subresource>]]`.
    let prefix = if segments.first() == Some(&"api") { 2 } else { 3 };
    let rest = &segments[prefix.min(segments.len())..];
    // `namespaces/<ns>/<resource>…`, but `namespaces/<ns>/status` is a namespace's own.
    let rest = if rest.first() == Some(&"namespaces") && rest.len() > 3 { &rest[2..] } else { rest };
    match (action, rest) {
        (WriteAction::Update | WriteAction::Delete, [_, _, subresource]) => {
            let cut = path.len() - subresource.len() - 1;
            (path[..cut].to_owned(), Some((*subresource).to_owned()))
        }
        _ => (path.to_owned(), None),
    }
}

/// `object` without what the server changes on any write.
pub fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"] {
            metadata.remove(field);
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_is_sent_as_a_dry_run() {
        let uri: http::Uri = "https://h/api/v1/namespaces/a/configmaps?fieldManager=m".parse().unwrap();
        assert_eq!(dry_run_uri(&uri).to_string(), "https://h/api/v1/namespaces/a/configmaps?fieldManager=m&dryRun=All");
        let uri: http::Uri = "https://h/api/v1/namespaces/a/configmaps/x".parse().unwrap();
        assert_eq!(dry_run_uri(&uri).query(), Some("dryRun=All"));
        let uri: http::Uri = "https://h/apis/x/v1/things/t?dryRun=All".parse().unwrap();
        assert_eq!(dry_run_uri(&uri).query(), Some("dryRun=All"));
    }

    #[test]
    fn a_delete_carries_the_dry_run_in_its_options_too() {
        let options = |body: &str| serde_json::from_slice::<Value>(&dry_run_delete_options(&Bytes::from(body.to_owned()))).unwrap();
        assert_eq!(options(""), serde_json::json!({ "dryRun": ["All"] }));
        let kept = options(r#"{"propagationPolicy":"Background","dryRun":[]}"#);
        assert_eq!(kept, serde_json::json!({ "propagationPolicy": "Background", "dryRun": ["All"] }));
    }

    #[test]
    fn a_status_write_is_told_from_the_objects_own_path() {
        let split = |path| split_subresource(path, WriteAction::Update);
        assert_eq!(
            split("/apis/x.dev/v1/namespaces/a/things/t/status"),
            ("/apis/x.dev/v1/namespaces/a/things/t".into(), Some("status".into()))
        );
        assert_eq!(split("/apis/x.dev/v1/things/t/status"), ("/apis/x.dev/v1/things/t".into(), Some("status".into())));
        assert_eq!(split("/api/v1/namespaces/a/configmaps/c"), ("/api/v1/namespaces/a/configmaps/c".into(), None));
        assert_eq!(split("/api/v1/namespaces/a"), ("/api/v1/namespaces/a".into(), None));
        assert_eq!(split("/api/v1/namespaces/a/status"), ("/api/v1/namespaces/a".into(), Some("status".into())));
        assert_eq!(split_subresource("/api/v1/namespaces/a/configmaps", WriteAction::Create).1, None);
    }
}
