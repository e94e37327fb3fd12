//! The HTTPS endpoint the API server calls, on every replica: `POST /validate/<name>`,
//! `/mutate/<name>` and `/convert/<name>` take an AdmissionReview or ConversionReview for the
//! AdmissionController `<name>`, call its hook in bosun's protocol ([`super::review`]) and
//! answer. A hook that fails, times out or answers what cannot be used gets the controller's
//! `failurePolicy` applied by bosun itself — `Fail` refuses with a message that says what went
//! wrong, `Ignore` admits with a warning — within the API server's timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bosun_runtime::{Cache, ObjectKey};
use bytes::Bytes;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::conversion::{ConversionRequest, ConversionResponse, ConversionReview};
use kube::core::response::Status;
use serde_json::Value;

use super::api::{AdmissionController, FailurePolicy};
use super::review::{self, AdmissionHookRequest, AdmissionHookResponse, ConvertHookRequest, ConvertHookResponse};
use crate::api::Hook;
use crate::hooks::{HookClient, HookEndpoint, HookKind};

/// The largest review body read: the API server's own request limit is 3 MiB.
const MAX_REVIEW_BYTES: usize = 8 << 20;
/// What bosun keeps of the API server's timeout for itself: the hook gets the rest.
const MARGIN: Duration = Duration::from_millis(500);

/// An AdmissionController's hooks, resolved once per resourceVersion.
struct Declared {
    resource_version: Option<String>,
    controller_json: Value,
    validate: Option<HookEndpoint>,
    mutate: Option<HookEndpoint>,
    convert: Option<HookEndpoint>,
    failure_policy: FailurePolicy,
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Routes {
    controllers: Arc<Cache>,
    hooks: Arc<HookClient>,
    declared: Arc<Mutex<HashMap<String, Arc<Declared>>>>,
    allow_insecure_hook_credentials: bool,
    exec_hooks: bool,
    target_label_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
}

impl Routes {
    pub(crate) fn new(controllers: Arc<Cache>, hooks: Arc<HookClient>, config: &super::AdmissionConfig) -> Routes {
        Routes {
            controllers,
            hooks,
            declared: Arc::default(),
            allow_insecure_hook_credentials: config.allow_insecure_hook_credentials,
            exec_hooks: config.exec_hooks,
            target_label_selector: config.target_label_selector.clone(),
        }
    }

    /// The router of the admission endpoint.
    pub(crate) fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/validate/{name}", axum::routing::post(validate))
            .route("/mutate/{name}", axum::routing::post(mutate))
            .route("/convert/{name}", axum::routing::post(convert))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_REVIEW_BYTES))
            .with_state(self)
    }

    /// The hooks of AdmissionController `name`, as its current version declares them.
    fn declared(&self, name: &str) -> Result<Arc<Declared>, String> {
        let Some(object) = self.controllers.get(&ObjectKey { namespace: None, name: name.to_owned() }) else {
            return Err(format!("there is no AdmissionController {name}"));
        };
        // Being deleted: its configurations are about to go; nobody is refused on its behalf.
        if object.metadata.deletion_timestamp.is_some() {
            return Err(format!("AdmissionController {name} is being deleted"));
        }
        if !crate::hosting::targeted(self.target_label_selector.as_ref(), &object) {
            return Err(format!("AdmissionController {name} is not this bosun's (--target-label-selector)"));
        }
        let resource_version = object.resource_version();
        if let Some(declared) = self.declared.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(name)
            && declared.resource_version == resource_version
        {
            return Ok(declared.clone());
        }
        let declared = Arc::new(Declared::of(&object, self.allow_insecure_hook_credentials, self.exec_hooks)?);
        self.declared.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(name.to_owned(), declared.clone());
        Ok(declared)
    }
}

impl Declared {
    /// The hooks `object`, an AdmissionController, declares.
    fn of(object: &DynamicObject, allow_insecure_hook_credentials: bool, exec_hooks: bool) -> Result<Declared, String> {
        let controller: AdmissionController = object.clone().try_parse().map_err(|error| error.to_string())?;
        let (name, spec) = (controller.name_any(), &controller.spec);
        let configs = spec.endpoint_configs.as_deref().unwrap_or_default();
        let endpoint = |kind: HookKind, hook: &Option<Hook>| -> Result<Option<HookEndpoint>, String> {
            let Some(hook) = hook.as_ref().filter(|hook| hook.is_declared()) else { return Ok(None) };
            let mut endpoint = HookEndpoint::new(kind, hook, ("AdmissionController", &name), configs).map_err(|error| error.to_string())?;
            endpoint.check_credentials_transport(allow_insecure_hook_credentials).map_err(|error| error.to_string())?;
            endpoint.check_exec(exec_hooks).map_err(|error| error.to_string())?;
            // A new protocol: answers are decoded strictly.
            endpoint.mode = crate::api::ResponseUnmarshallMode::Strict;
            // The API server gives up after timeoutSeconds: answer before it does.
            let limit = Duration::from_secs(spec.timeout_seconds.unwrap_or(10).clamp(1, 30) as u64).saturating_sub(MARGIN);
            endpoint.timeout = endpoint.timeout.min(limit.max(Duration::from_millis(100)));
            Ok(Some(endpoint))
        };
        Ok(Declared {
            resource_version: object.resource_version(),
            controller_json: crate::hosting::controller_json(&controller),
            validate: endpoint(HookKind::Validate, &spec.hooks.validate)?,
            mutate: endpoint(HookKind::Mutate, &spec.hooks.mutate)?,
            convert: endpoint(HookKind::Convert, &spec.hooks.convert)?,
            failure_policy: spec.failure_policy.unwrap_or_default(),
        })
    }
}

/// One hook's verdict in a [`trial`].
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `mutate` or `validate`.
    pub hook: &'static str,
    /// The hook's URL, as it may be printed.
    pub url: String,
    /// Whether the request would go on.
    pub allowed: bool,
    /// Why not, or the failure policy's reason.
    pub message: Option<String>,
    /// Warnings kubectl would print.
    pub warnings: Vec<String>,
    /// The JSON patch the API server would apply.
    pub patch: Option<Value>,
}

/// What the AdmissionController `controller`'s hooks would answer for `object` — created, or
/// an update of `old` — in the API server's order: `mutate` (its patch applied to what
/// `validate` sees), then `validate`. Calls the hooks for real; writes nothing. For `bosun
/// hook test`.
pub async fn trial(
    client: kube::Client,
    controller: &DynamicObject,
    object: &DynamicObject,
    old: Option<&DynamicObject>,
) -> Result<Vec<Verdict>, String> {
    // Run where the person testing is, as them: their programs may run.
    let declared = Declared::of(controller, false, true)?;
    let hooks = HookClient::new(client, bosun_runtime::Metrics::new(), crate::DEFAULT_MAX_RESPONSE_BYTES);
    let name = controller.name_any();
    let mut current = serde_json::to_value(object).expect("objects serialize");
    let mut verdicts = Vec::new();
    for (hook, endpoint) in [("mutate", &declared.mutate), ("validate", &declared.validate)] {
        let Some(endpoint) = endpoint else { continue };
        let types = object.types.clone().unwrap_or_default();
        let (group, version) = types.api_version.rsplit_once('/').unwrap_or(("", &types.api_version));
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "bosun-hook-test",
                "kind": { "group": group, "version": version, "kind": types.kind },
                "resource": { "group": group, "version": version, "resource": "" },
                "name": object.name_any(), "namespace": object.namespace(),
                "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
                "userInfo": { "username": "bosun-hook-test" },
                "object": current, "oldObject": old, "dryRun": true,
            },
        });
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(review).map_err(|error| error.to_string())?;
        let request: AdmissionRequest<DynamicObject> =
            review.try_into().map_err(|error: kube::core::admission::ConvertAdmissionReviewError| error.to_string())?;
        let response = verdict(&hooks, &declared, endpoint, &request, &name).await;
        let patch: Option<Value> = response.patch.as_deref().and_then(|patch| serde_json::from_slice(patch).ok());
        if let Some(patch) = &patch
            && let Ok(patch) = serde_json::from_value::<json_patch::Patch>(patch.clone())
        {
            let _ = json_patch::patch(&mut current, &patch);
        }
        let allowed = response.allowed;
        verdicts.push(Verdict {
            hook,
            url: endpoint.redacted_url.to_string(),
            allowed,
            message: Some(response.result.message).filter(|message| !message.is_empty()),
            warnings: response.warnings.unwrap_or_default(),
            patch,
        });
        if !allowed {
            break;
        }
    }
    Ok(verdicts)
}

/// The object a hook call is about when it is about none.
fn no_object() -> DynamicObject {
    DynamicObject { types: None, metadata: Default::default(), data: Value::Null }
}

fn json(value: &impl serde::Serialize) -> Response {
    ([(http::header::CONTENT_TYPE, "application/json")], serde_json::to_vec(value).expect("reviews serialize")).into_response()
}

async fn validate(State(routes): State<Routes>, Path(name): Path<String>, body: Bytes) -> Response {
    admit(routes, name, body, HookKind::Validate).await
}

async fn mutate(State(routes): State<Routes>, Path(name): Path<String>, body: Bytes) -> Response {
    admit(routes, name, body, HookKind::Mutate).await
}

/// Answers an AdmissionReview with the verdict of AdmissionController `name`'s `kind` hook.
async fn admit(routes: Routes, name: String, body: Bytes, kind: HookKind) -> Response {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(error) => return json(&AdmissionResponse::invalid(format!("not an AdmissionReview: {error}")).into_review()),
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(error) => return json(&AdmissionResponse::invalid(error.to_string()).into_review()),
    };
    let response = match routes.declared(&name) {
        // A webhook configuration outlived its declaration: nothing is asked of this request.
        Err(problem) => {
            let mut response = AdmissionResponse::from(&request);
            response.warnings = Some(vec![format!("bosun admitted this without asking a hook: {problem}")]);
            response
        }
        Ok(declared) => {
            let endpoint = if kind == HookKind::Validate { &declared.validate } else { &declared.mutate };
            match endpoint {
                None => AdmissionResponse::from(&request),
                Some(endpoint) => verdict(&routes.hooks, &declared, endpoint, &request, &name).await,
            }
        }
    };
    json(&response.into_review())
}

/// The hook's verdict on `request`, or the failure policy's when it has none to give.
async fn verdict(
    hooks: &HookClient,
    declared: &Declared,
    endpoint: &HookEndpoint,
    request: &AdmissionRequest<DynamicObject>,
    name: &str,
) -> AdmissionResponse {
    let body = crate::hooks::encode(&AdmissionHookRequest::of(request, &declared.controller_json));
    // What the call is about (only ETags would key on it): borrowed, not copied per request.
    let nothing = no_object();
    let subject = request.object.as_ref().or(request.old_object.as_ref()).unwrap_or(&nothing);
    let problem = match hooks.call::<AdmissionHookResponse>(endpoint, body, subject).await {
        Ok(answer) => match review::respond(request, answer, endpoint.kind == HookKind::Mutate) {
            Ok(response) => return response,
            Err(error) => format!("the {} hook's answer cannot be used: {error}", endpoint.kind),
        },
        Err(error) => error.to_string(),
    };
    let problem = format!("AdmissionController {name}: {problem}");
    tracing::warn!(controller = name, failure_policy = declared.failure_policy.name(), %problem, "admission hook gave no verdict");
    let response = AdmissionResponse::from(request);
    match declared.failure_policy {
        FailurePolicy::Fail => review::deny(response, format!("{problem} (failurePolicy Fail)")),
        FailurePolicy::Ignore => {
            let mut response = response;
            response.warnings = Some(vec![format!("{problem}; admitted by failurePolicy Ignore")]);
            response
        }
    }
}

/// Answers a ConversionReview with AdmissionController `name`'s `convert` hook.
async fn convert(State(routes): State<Routes>, Path(name): Path<String>, body: Bytes) -> Response {
    let review: ConversionReview = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(error) => {
            return json(
                &ConversionResponse::invalid(Status::failure(&format!("not a ConversionReview: {error}"), "BadRequest")).into_review(),
            );
        }
    };
    let request = match ConversionRequest::from_review(review) {
        Ok(request) => request,
        Err(error) => return json(&ConversionResponse::invalid(Status::failure(&error.to_string(), "BadRequest")).into_review()),
    };
    let mut request = request;
    let (desired, objects) = (request.desired_api_version.clone(), std::mem::take(&mut request.objects));
    let response = ConversionResponse::for_request(request);
    let outcome = match routes.declared(&name) {
        Err(problem) => Err(problem),
        Ok(declared) => match &declared.convert {
            None => Err(format!("AdmissionController {name} has no convert hook")),
            Some(endpoint) => {
                let body = crate::hooks::encode(&ConvertHookRequest {
                    desired_api_version: &desired,
                    objects: &objects,
                    controller: &declared.controller_json,
                });
                match routes.hooks.call::<ConvertHookResponse>(endpoint, body, &no_object()).await {
                    Err(error) => Err(error.to_string()),
                    Ok(ConvertHookResponse { objects: Some(converted), .. }) => review::check_converted(&objects, &converted, &desired)
                        .map(|()| converted)
                        .map_err(|problem| format!("the convert hook's answer: {problem}")),
                    Ok(ConvertHookResponse { objects: None, message }) => {
                        Err(message.unwrap_or_else(|| "the convert hook returned no objects".to_owned()))
                    }
                }
            }
        },
    };
    let response = match outcome {
        Ok(converted) => response.success(converted),
        Err(problem) => {
            tracing::warn!(controller = %name, %problem, "conversion failed");
            response.failure(Status::failure(&format!("AdmissionController {name}: {problem}"), "ConversionFailed"))
        }
    };
    json(&response.into_review())
}
