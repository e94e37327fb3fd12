//! Wiring each AdmissionController into the API server (on the leader): a
//! ValidatingWebhookConfiguration and a MutatingWebhookConfiguration named `bosun-<name>`
//! while it has those hooks, pointing at bosun's endpoint with the admission CA as `caBundle`,
//! and each CRD of its `conversion` set to call its `convert` hook. Each object is written only
//! when it differs from what it should be, so a steady state writes nothing. Under the
//! finalizer `bosun.dev/admission`, deleting the AdmissionController deletes both
//! configurations and puts its CRDs' conversion back to `None` — nothing is left that could
//! refuse requests on behalf of a declaration that is gone. Relabelled away from this install
//! (`--target-label-selector`), it is released the same way — only what calls this install's
//! endpoint, since the install that selects it now may have rewired it already.

use std::sync::Arc;

use bosun_runtime::{Action, Cache, Controller, ObjectKey, predicate};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::api::{AdmissionController, AdmissionControllerSpec};
use super::{AdmissionConfig, Endpoint};
use crate::children::merge::contains;

/// The finalizer under which a deleted AdmissionController's wiring is removed.
pub const FINALIZER: &str = "bosun.dev/admission";
/// The annotation on a CRD whose conversion an AdmissionController set: its name.
const CONVERTED_BY: &str = "bosun.dev/converted-by";
/// The field manager of bosun's writes.
const MANAGER: &str = "bosun-admission";

/// Why wiring failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WiringError {
    /// An API request failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// The declaration cannot be wired.
    #[error("{0}")]
    Invalid(String),
}

fn failed(action: impl Into<String>) -> impl FnOnce(kube::Error) -> WiringError {
    let action = action.into();
    move |source| WiringError::Api { action, source: Box::new(source) }
}

/// The `clientConfig` of a webhook calling `path` on bosun's endpoint.
fn client_config(endpoint: &Endpoint, path: &str, ca_bundle: &str) -> Value {
    let ca_bundle = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca_bundle);
    match endpoint {
        Endpoint::Url(base) => json!({ "url": format!("{}{path}", base.trim_end_matches('/')), "caBundle": ca_bundle }),
        Endpoint::Service { namespace, name, port } => {
            json!({ "service": { "namespace": namespace, "name": name, "port": port, "path": path }, "caBundle": ca_bundle })
        }
    }
}

/// The webhook configuration of kind `kind` (`Validating…`/`Mutating…`) for `controller`'s
/// hook `hook` (`validate`/`mutate`), as bosun writes it.
fn webhook_configuration(kind: &str, hook: &str, controller: &AdmissionController, config: &AdmissionConfig, ca: &str) -> Value {
    let name = controller.name_any();
    let spec: &AdmissionControllerSpec = &controller.spec;
    let mut webhook = json!({
        "name": format!("{hook}.{name}.admission.bosun.dev"),
        "clientConfig": client_config(&config.endpoint, &format!("/{hook}/{name}"), ca),
        "rules": spec.rules,
        "failurePolicy": spec.failure_policy.unwrap_or_default().name(),
        "timeoutSeconds": spec.timeout_seconds.unwrap_or(10).clamp(1, 30),
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "matchPolicy": "Equivalent",
        "namespaceSelector": spec.namespace_selector.clone().unwrap_or_default(),
        "objectSelector": spec.object_selector.clone().unwrap_or_default(),
    });
    if hook == "mutate" {
        webhook["reinvocationPolicy"] = json!("Never");
    }
    let owner = controller.controller_owner_ref(&()).expect("an object from the API server has a UID");
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": { "name": format!("bosun-{name}"), "labels": { "app.kubernetes.io/managed-by": "bosun" }, "ownerReferences": [owner] },
        "webhooks": [webhook],
    })
}

/// Writes `desired` with server-side apply unless `existing` already has every field of it.
async fn apply(api: &Api<DynamicObject>, name: &str, existing: Option<&DynamicObject>, desired: &Value) -> Result<bool, WiringError> {
    if existing.is_some_and(|existing| contains(&serde_json::to_value(existing).expect("objects serialize"), desired)) {
        return Ok(false);
    }
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(desired)).await.map_err(failed(format!("writing {name}")))?;
    Ok(true)
}

/// Deletes `name`, gone already or not.
async fn delete_if_present(api: &Api<DynamicObject>, name: &str) -> Result<(), WiringError> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(failed(format!("deleting {name}"))(error)),
    }
}

/// Puts CRD `name`'s conversion back to `None`.
async fn reset_conversion(crds: &Api<DynamicObject>, name: &str) -> Result<(), WiringError> {
    let patch =
        json!({ "metadata": { "annotations": { CONVERTED_BY: null } }, "spec": { "conversion": { "strategy": "None", "webhook": null } } });
    crds.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(failed(format!("resetting CRD {name}")))?;
    Ok(())
}

/// Removes bosun's finalizer from `controller`.
async fn remove_finalizer(controllers: &Api<AdmissionController>, controller: &AdmissionController) -> Result<(), WiringError> {
    let finalizers: Vec<&String> = controller.finalizers().iter().filter(|finalizer| *finalizer != FINALIZER).collect();
    let patch = json!({ "metadata": { "finalizers": finalizers, "resourceVersion": controller.resource_version() } });
    controllers
        .patch(&controller.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(failed("removing the finalizer"))?;
    Ok(())
}

/// The leader's side of admission: keeps every AdmissionController wired.
pub(crate) struct Wiring {
    pub client: kube::Client,
    pub controllers: Arc<Cache>,
    pub config: AdmissionConfig,
    /// The CAs to trust, PEM: every `caBundle` (two during a rotation).
    pub ca_bundle: Arc<std::sync::RwLock<String>>,
}

impl Wiring {
    fn api<K: Resource<DynamicType = ()>>(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &kube::api::ApiResource::erase::<K>(&()))
    }

    fn bundle(&self) -> String {
        self.ca_bundle.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Wires AdmissionController `name` as it is now (or unwires it as it goes).
    pub(crate) async fn reconcile(&self, name: &str) -> Result<Action, WiringError> {
        let Some(object) = self.controllers.get(&ObjectKey { namespace: None, name: name.to_owned() }) else { return Ok(Action::Done) };
        let controllers: Api<AdmissionController> = Api::all(self.client.clone());
        let controller: AdmissionController =
            object.as_ref().clone().try_parse().map_err(|error| WiringError::Invalid(error.to_string()))?;
        let has_finalizer = controller.finalizers().iter().any(|finalizer| finalizer == FINALIZER);
        if !crate::hosting::targeted(self.config.target_label_selector.as_ref(), &object) {
            // Relabelled to another install or to none: what this one wired goes, and with
            // it the finalizer, unless another install has wired it since.
            if self.release(&controller).await? && has_finalizer {
                remove_finalizer(&controllers, &controller).await?;
            }
            return Ok(Action::Done);
        }
        if controller.metadata.deletion_timestamp.is_some() {
            if has_finalizer {
                self.unwire(&controller, &[]).await?;
                remove_finalizer(&controllers, &controller).await?;
            }
            return Ok(Action::Done);
        }
        if !has_finalizer {
            let mut finalizers = controller.finalizers().to_vec();
            finalizers.push(FINALIZER.to_owned());
            let patch = json!({ "metadata": { "finalizers": finalizers, "resourceVersion": controller.resource_version() } });
            controllers.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(failed("adding the finalizer"))?;
            // The write brings the next reconcile.
            return Ok(Action::Done);
        }
        let outcome = self.wire(&controller).await;
        let (status, reason, message) = match &outcome {
            Ok(()) => ("True", "Wired", "the webhook configurations and conversion settings are in place".to_owned()),
            Err(error) => ("False", "WiringFailed", error.to_string()),
        };
        self.set_ready(&controller, status, reason, message).await?;
        outcome.map(|()| Action::Done)
    }

    /// Writes what `controller` declares and removes what it no longer does.
    async fn wire(&self, controller: &AdmissionController) -> Result<(), WiringError> {
        let spec = &controller.spec;
        let hooks = &spec.hooks;
        if hooks.validate.is_none() && hooks.mutate.is_none() && hooks.convert.is_none() {
            return Err(WiringError::Invalid("spec.hooks declares no validate, mutate or convert hook".into()));
        }
        if (hooks.validate.is_some() || hooks.mutate.is_some()) && spec.rules.is_empty() {
            return Err(WiringError::Invalid("spec.rules is empty: name the resources and operations to admit".into()));
        }
        let name = format!("bosun-{}", controller.name_any());
        for (kind, hook, declared, api) in [
            ("ValidatingWebhookConfiguration", "validate", hooks.validate.is_some(), self.api::<ValidatingWebhookConfiguration>()),
            ("MutatingWebhookConfiguration", "mutate", hooks.mutate.is_some(), self.api::<MutatingWebhookConfiguration>()),
        ] {
            let existing = api.get_opt(&name).await.map_err(failed(format!("reading {kind} {name}")))?;
            if declared {
                let desired = webhook_configuration(kind, hook, controller, &self.config, &self.bundle());
                apply(&api, &name, existing.as_ref(), &desired).await?;
            } else if existing.is_some() {
                api.delete(&name, &DeleteParams::default()).await.map_err(failed(format!("deleting {kind} {name}")))?;
            }
        }
        let converted: Vec<String> = match (&hooks.convert, &spec.conversion) {
            (Some(_), Some(conversion)) => conversion.custom_resource_definitions.clone(),
            _ => Vec::new(),
        };
        let crds = self.api::<CustomResourceDefinition>();
        let path = format!("/convert/{}", controller.name_any());
        for crd in &converted {
            let existing = crds.get_opt(crd).await.map_err(failed(format!("reading CRD {crd}")))?;
            let Some(existing) = existing else { return Err(WiringError::Invalid(format!("CRD {crd} (spec.conversion) does not exist"))) };
            let desired = json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": { "name": crd, "annotations": { CONVERTED_BY: controller.name_any() } },
                "spec": { "conversion": {
                    "strategy": "Webhook",
                    "webhook": { "clientConfig": client_config(&self.config.endpoint, &path, &self.bundle()), "conversionReviewVersions": ["v1"] },
                } },
            });
            apply(&crds, crd, Some(&existing), &desired).await?;
        }
        self.unwire(controller, &converted).await
    }

    /// Puts back to `None` the conversion of the CRDs `controller` set but for `keep`, and —
    /// when `keep` is empty and the controller goes — deletes its webhook configurations.
    async fn unwire(&self, controller: &AdmissionController, keep: &[String]) -> Result<(), WiringError> {
        let name = controller.name_any();
        let crds = self.api::<CustomResourceDefinition>();
        for crd in crds.list_metadata(&ListParams::default()).await.map_err(failed("listing CRDs"))?.items {
            let crd_name = crd.name_any();
            if crd.annotations().get(CONVERTED_BY) != Some(&name) || keep.contains(&crd_name) {
                continue;
            }
            reset_conversion(&crds, &crd_name).await?;
        }
        if controller.metadata.deletion_timestamp.is_some() {
            let configuration = format!("bosun-{name}");
            for api in [self.api::<ValidatingWebhookConfiguration>(), self.api::<MutatingWebhookConfiguration>()] {
                delete_if_present(&api, &configuration).await?;
            }
        }
        Ok(())
    }

    /// Removes what this install wired for `controller` — only what calls its own endpoint:
    /// another install that selects the controller now may have rewired it already. Whether
    /// the finalizer can go: something was removed, or nothing calls any install.
    async fn release(&self, controller: &AdmissionController) -> Result<bool, WiringError> {
        let name = controller.name_any();
        let (mut released, mut wired_elsewhere) = (false, false);
        let configuration = format!("bosun-{name}");
        for api in [self.api::<ValidatingWebhookConfiguration>(), self.api::<MutatingWebhookConfiguration>()] {
            let Some(existing) = api.get_opt(&configuration).await.map_err(failed(format!("reading {configuration}")))? else { continue };
            let webhooks = existing.data["webhooks"].as_array().cloned().unwrap_or_default();
            if webhooks.iter().any(|webhook| self.config.endpoint.reached_by(&webhook["clientConfig"])) {
                delete_if_present(&api, &configuration).await?;
                released = true;
            } else {
                wired_elsewhere = true;
            }
        }
        let crds = self.api::<CustomResourceDefinition>();
        for crd in crds.list(&ListParams::default()).await.map_err(failed("listing CRDs"))?.items {
            if crd.annotations().get(CONVERTED_BY) != Some(&name) {
                continue;
            }
            if self.config.endpoint.reached_by(&crd.data["spec"]["conversion"]["webhook"]["clientConfig"]) {
                reset_conversion(&crds, &crd.name_any()).await?;
                released = true;
            } else {
                wired_elsewhere = true;
            }
        }
        Ok(released || !wired_elsewhere)
    }

    /// Sets the `Ready` condition, if it changes.
    async fn set_ready(&self, controller: &AdmissionController, status: &str, reason: &str, message: String) -> Result<(), WiringError> {
        let current = controller.status.as_ref();
        let generation = controller.metadata.generation;
        let same = current.is_some_and(|current| {
            current.observed_generation == generation
                && current
                    .conditions
                    .iter()
                    .any(|condition| condition.type_ == "Ready" && condition.status == status && condition.message == message)
        });
        if same {
            return Ok(());
        }
        let condition = Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
        };
        let patch = json!({ "status": { "conditions": [condition], "observedGeneration": generation } });
        let controllers: Api<AdmissionController> = Api::all(self.client.clone());
        controllers
            .patch_status(&controller.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(failed("writing the status"))?;
        Ok(())
    }

    /// Runs until `shutdown`: wires every AdmissionController, rewires them all when the
    /// CAs to trust change, and drives a CA rotation that is due one step at a time.
    pub(crate) async fn run(self, metrics: &bosun_runtime::Metrics, health: &bosun_runtime::Health, shutdown: impl Future<Output = ()>) {
        let controller =
            Controller::new("admissioncontrollers", metrics).with_health(health).for_resource(self.controllers.clone(), predicate::any);
        let (queue, controllers, bundle) = (controller.queue(), self.controllers.clone(), self.ca_bundle.clone());
        let (client, overlap) = (self.client.clone(), self.config.rotation_overlap);
        let (namespace, name) = self.config.ca_secret.clone();
        let rotation: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
        let following = tokio::spawn(super::ca::follow(client.clone(), namespace, name, move |authority, secret| {
            let trusted = authority.bundle();
            let changed = {
                let mut current = bundle.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                std::mem::replace(&mut *current, trusted.clone()) != trusted
            };
            if changed {
                for key in controllers.keys_where(|_| true) {
                    queue.add(key);
                }
            }
            // The next step, once this one has had time to take effect everywhere.
            let step = match authority.rotated() {
                Ok(step) => step,
                Err(error) => return tracing::error!(%error, "cannot rotate the admission CA"),
            };
            let mut rotating = rotation.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(previous) = rotating.take() {
                previous.abort();
            }
            *rotating = step.map(|step| {
                let client = client.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(overlap).await;
                    match step.store(&client, &secret).await {
                        Ok(()) => tracing::info!("admission CA rotation: next step stored"),
                        Err(error) => tracing::warn!(%error, "admission CA rotation: the step was not stored (retried on the next change)"),
                    }
                })
            });
        }));
        let _following = super::AbortOnDrop(following);
        let wiring = Arc::new(self);
        let reconcile = move |key: ObjectKey| {
            let wiring = wiring.clone();
            async move { wiring.reconcile(&key.name).await }
        };
        controller.run(reconcile, |_, _: &WiringError| None, shutdown).await;
    }
}
