//! Admission hooks on the real control plane: an AdmissionController's validate hook refuses
//! an object with its message, its mutate hook's defaults are stored, a hook that times out
//! gets the failure policy (Fail refuses, Ignore admits), and deleting the declaration removes
//! the webhook configurations — nothing is left that could refuse requests.

mod support;

use std::time::Duration;

use bosun_engine::ApplyStrategy;
use bosun_engine::admission::{Admission, AdmissionConfig, Endpoint};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::api::{DynamicObject, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::{Fixture, HookServer, Reply, eventually};

/// Refuses more than ten replicas; defaults `spec.host`.
fn hooks(hook: &str, request: &Value) -> Reply {
    let object = &request["object"];
    match hook {
        "validate" if object["spec"]["replicas"].as_i64().unwrap_or(0) > 10 => {
            Reply::Json(json!({ "allowed": false, "message": "replicas must be at most 10" }))
        }
        "validate" => Reply::Json(json!({ "allowed": true, "warnings": ["validated by a test"] })),
        "mutate" if object["spec"]["host"].is_null() => {
            let mut defaulted = object.clone();
            defaulted["spec"]["host"] = json!("default.local");
            Reply::Json(json!({ "object": defaulted }))
        }
        _ => Reply::Json(json!({})),
    }
}

/// Starts admission for this test (serving on a free port of 127.0.0.1, its CA in the test's
/// namespace) and returns its tasks.
async fn start_admission(fixture: &Fixture) -> Vec<tokio::task::JoinHandle<()>> {
    let port = bosun_testenv::free_port();
    let config = AdmissionConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        endpoint: Endpoint::Url(format!("https://127.0.0.1:{port}")),
        ca_secret: (fixture.namespace.clone(), "bosun-admission-ca".into()),
        allow_insecure_hook_credentials: false,
        max_hook_response_bytes: bosun_engine::DEFAULT_MAX_RESPONSE_BYTES,
    };
    let admission = Admission::new(&bosun_runtime::Context::standalone(fixture.client.clone()), config);
    vec![tokio::spawn(admission.clone().serve(std::future::pending())), tokio::spawn(admission.wire(std::future::pending()))]
}

/// An AdmissionController `name` over the fixture's Things, with `hooks`.
async fn admission_controller(fixture: &Fixture, name: &str, spec: Value) {
    let mut full = json!({
        "rules": [{
            "apiGroups": [fixture.things.group], "apiVersions": ["v1"], "resources": ["things"], "operations": ["CREATE", "UPDATE"],
        }],
        "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": fixture.namespace } },
    });
    support::merge_into(&mut full, spec);
    let controller: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "AdmissionController", "metadata": { "name": name }, "spec": full,
    }))
    .unwrap();
    admission_controllers(fixture).create(&PostParams::default(), &controller).await.unwrap();
    eventually(&format!("AdmissionController {name} ready"), async || {
        let controller = admission_controllers(fixture).get(name).await.unwrap();
        let conditions = controller.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|condition| condition["type"] == "Ready" && condition["status"] == "True").then_some(())
    })
    .await;
}

fn admission_controllers(fixture: &Fixture) -> Api<DynamicObject> {
    Api::all_with(fixture.client.clone(), &kube::api::ApiResource::erase::<bosun_engine::admission::api::AdmissionController>(&()))
}

/// Creates Thing `name` with `spec`; the API server's answer.
async fn create(fixture: &Fixture, name: &str, spec: Value) -> Result<DynamicObject, kube::Error> {
    fixture.parents().create(&PostParams::default(), &DynamicObject::new(name, &fixture.things).data(json!({ "spec": spec }))).await
}

#[tokio::test]
async fn validate_refuses_mutate_defaults_and_deleting_unwires() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let _admission = start_admission(&fixture).await;
    let server = HookServer::start(hooks).await;
    let name = format!("things-{}", fixture.id);
    let hooks = json!({ "validate": server.hook("validate", json!({})), "mutate": server.hook("mutate", json!({})) });
    admission_controller(&fixture, &name, json!({ "hooks": hooks })).await;

    // Refused with the hook's message; nothing is stored.
    let refused = eventually("the invalid Thing refused", async || create(&fixture, "big", json!({ "replicas": 11 })).await.err()).await;
    assert!(refused.to_string().contains("replicas must be at most 10"), "{refused}");
    assert!(fixture.parents().get_opt("big").await.unwrap().is_none());
    // Admitted, and stored with the default.
    let stored = create(&fixture, "small", json!({ "replicas": 1 })).await.unwrap();
    assert_eq!(stored.data["spec"]["host"], "default.local", "{stored:?}");
    let requests = server.requests();
    let (_, validated) =
        requests.iter().find(|(hook, request)| hook == "validate" && request["object"]["metadata"]["name"] == "small").unwrap();
    assert_eq!(validated["operation"], "CREATE");
    assert_eq!(validated["userInfo"]["username"], "bosun-admin", "who asks: {validated}");
    assert_eq!(validated["resource"], json!({ "group": fixture.things.group, "version": "v1", "resource": "things" }));
    assert!(validated["object"]["metadata"].get("managedFields").is_none());
    assert_eq!(validated["dryRun"], false);

    // Deleting the declaration removes both configurations: nothing refuses any more.
    admission_controllers(&fixture).delete(&name, &Default::default()).await.unwrap();
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(fixture.client.clone());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(fixture.client.clone());
    eventually("both configurations deleted", async || {
        let gone = validating.get_opt(&format!("bosun-{name}")).await.unwrap().is_none()
            && mutating.get_opt(&format!("bosun-{name}")).await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
    eventually("the declaration gone", async || admission_controllers(&fixture).get_opt(&name).await.unwrap().is_none().then_some(()))
        .await;
    create(&fixture, "big", json!({ "replicas": 11 })).await.unwrap();
}

#[tokio::test]
async fn a_hook_that_times_out_gets_the_failure_policy() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let _admission = start_admission(&fixture).await;
    let server = HookServer::start(|_, _| Reply::Slow(Duration::from_secs(5), json!({ "allowed": true }))).await;
    let name = format!("slow-{}", fixture.id);
    let hooks = json!({ "validate": server.hook("validate", json!({ "webhook": { "timeout": "1s" } })) });
    admission_controller(&fixture, &name, json!({ "hooks": hooks, "failurePolicy": "Fail", "timeoutSeconds": 3 })).await;
    let started = std::time::Instant::now();
    let refused = eventually("refused by failurePolicy Fail", async || create(&fixture, "a", json!({})).await.err()).await;
    assert!(refused.to_string().contains("failurePolicy Fail") && refused.to_string().contains("timeout"), "{refused}");
    println!("refused after {:?}", started.elapsed());

    let ignore = json!({ "spec": { "failurePolicy": "Ignore" } });
    admission_controllers(&fixture).patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&ignore)).await.unwrap();
    let admitted = eventually("admitted by failurePolicy Ignore", async || create(&fixture, "b", json!({})).await.ok()).await;
    assert_eq!(admitted.name_any(), "b");
}
