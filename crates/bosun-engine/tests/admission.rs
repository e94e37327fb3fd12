//! Admission hooks on the real control plane: an AdmissionController's validate hook refuses
//! an object with its message, its mutate hook's defaults are stored, a hook that times out
//! gets the failure policy (Fail refuses, Ignore admits), and deleting the declaration — or
//! relabelling it away from every install — removes the webhook configurations: nothing is
//! left that could refuse requests. A rolling restart of the replicas loses no request.

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
    start_install(fixture, install_config(fixture, &fixture.id, "bosun-admission-ca")).1
}

/// The admission settings of a bosun install serving on a free port of 127.0.0.1 that selects
/// the AdmissionControllers labelled `install`, its CA in the Secret `ca` of the test's
/// namespace.
fn install_config(fixture: &Fixture, install: &str, ca: &str) -> AdmissionConfig {
    let mut config = AdmissionConfig::loopback((fixture.namespace.clone(), ca.to_owned())).unwrap();
    // Each test's bosun serves and wires its own declarations only.
    config.target_label_selector = Some(serde_json::from_value(json!({ "matchLabels": { support::TEST_LABEL: install } })).unwrap());
    config.rotation_overlap = Duration::from_secs(2);
    config
}

/// The URL an install is reached at.
fn url(config: &AdmissionConfig) -> String {
    let Endpoint::Url(url) = &config.endpoint else { unreachable!("loopback is reached by URL") };
    url.clone()
}

/// Starts an install's admission, serving and wiring; its URL and tasks.
fn start_install(fixture: &Fixture, config: AdmissionConfig) -> (String, Vec<tokio::task::JoinHandle<()>>) {
    let url = url(&config);
    let admission = Admission::new(&bosun_runtime::Context::standalone(fixture.client.clone()), config);
    (url, vec![tokio::spawn(admission.clone().serve(std::future::pending())), tokio::spawn(admission.wire(std::future::pending()))])
}

/// Things created one after the other through the API server (and so through the admission
/// hooks), every one of them expected to be admitted.
struct Stream {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Stream {
    fn start(fixture: &Fixture) -> Stream {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (api, things) = (fixture.parents(), fixture.things.clone());
        let task = tokio::spawn(async move {
            let (mut created, mut failed, mut again) = (0, Vec::new(), false);
            while !*stopped.borrow_and_update() {
                let object = DynamicObject::new(&format!("t-{created}"), &things).data(json!({ "spec": { "replicas": 1 } }));
                match api.create(&PostParams::default(), &object).await {
                    // The test's own connection to the API server, not the admission path:
                    // the request may or may not have reached it, so it is made again.
                    Err(kube::Error::Service(error)) => {
                        println!("creating t-{created} again after {error}");
                        again = true;
                        continue;
                    }
                    Err(kube::Error::Api(status)) if again && status.code == 409 => {}
                    Err(error) => failed.push(error.to_string()),
                    Ok(_) => {}
                }
                (created, again) = (created + 1, false);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (created, failed)
        });
        Stream { stop, task }
    }

    /// Goes on a second more, stops, and checks that no create failed during `what`.
    async fn stop_with_none_failed(self, what: &str) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.stop.send(true).unwrap();
        let (created, failed) = self.task.await.unwrap();
        println!("{created} creates during {what}, {} failed", failed.len());
        assert!(failed.is_empty(), "{failed:?}");
        assert!(created > 50, "only {created} creates");
    }
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
        "apiVersion": "bosun.dev/v1alpha1", "kind": "AdmissionController",
        "metadata": { "name": name, "labels": { support::TEST_LABEL: fixture.id } }, "spec": full,
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

/// Creates a Thing named `<prefix><random>` with `spec`; the API server's answer. A name of
/// its own each time: one admitted before the webhook is in place must not make the next
/// attempt's answer "already exists".
async fn create(fixture: &Fixture, prefix: &str, spec: Value) -> Result<DynamicObject, kube::Error> {
    let mut thing = DynamicObject::new("", &fixture.things).data(json!({ "spec": spec }));
    thing.metadata.name = None;
    thing.metadata.generate_name = Some(prefix.to_owned());
    fixture.parents().create(&PostParams::default(), &thing).await
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
    let refused = eventually("the invalid Thing refused", async || create(&fixture, "big-", json!({ "replicas": 11 })).await.err()).await;
    assert!(refused.to_string().contains("replicas must be at most 10"), "{refused}");
    // Admitted, and stored with the default.
    let stored = create(&fixture, "small-", json!({ "replicas": 1 })).await.unwrap();
    assert_eq!(stored.data["spec"]["host"], "default.local", "{stored:?}");
    let requests = server.requests();
    let (_, validated) = requests
        .iter()
        .find(|(hook, request)| hook == "validate" && request["object"]["metadata"]["name"] == stored.name_any().as_str())
        .unwrap();
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
    eventually("a big Thing admitted once nothing refuses", async || create(&fixture, "big-", json!({ "replicas": 11 })).await.ok()).await;
}

/// An AdmissionController relabelled from one bosun install to another is handed over — the
/// webhook configuration then calls the second, and still refuses — and relabelled to none is
/// released: its configurations and finalizer go, nothing refuses, and it can be deleted.
#[tokio::test]
async fn a_relabelled_declaration_is_handed_over_or_released() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let (first, _first) = start_install(&fixture, install_config(&fixture, &fixture.id, "first-ca"));
    let other = format!("{}-other", fixture.id);
    let (second, _second) = start_install(&fixture, install_config(&fixture, &other, "second-ca"));
    let server = HookServer::start(hooks).await;
    let name = format!("moved-{}", fixture.id);
    admission_controller(&fixture, &name, json!({ "hooks": { "validate": server.hook("validate", json!({})) } })).await;
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(fixture.client.clone());
    let calls = async |base: &str| {
        let configuration = validating.get_opt(&format!("bosun-{name}")).await.unwrap()?;
        let url = configuration.webhooks?.first()?.client_config.url.clone()?;
        url.starts_with(base).then_some(())
    };
    eventually("the configuration calls the first install", async || calls(&first).await).await;
    let relabel = async |install: &str| {
        let patch = json!({ "metadata": { "labels": { support::TEST_LABEL: install } } });
        admission_controllers(&fixture).patch(&name, &Default::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    };

    relabel(&other).await;
    eventually("the configuration calls the second install", async || calls(&second).await).await;
    eventually("still refused, through the second", async || create(&fixture, "big-", json!({ "replicas": 11 })).await.err()).await;
    let controller = admission_controllers(&fixture).get(&name).await.unwrap();
    assert!(controller.finalizers().iter().any(|finalizer| finalizer == "bosun.dev/admission"), "{controller:?}");

    relabel("nobody").await;
    eventually("the configuration deleted", async || validating.get_opt(&format!("bosun-{name}")).await.unwrap().is_none().then_some(()))
        .await;
    eventually("the finalizer released", async || {
        let controller = admission_controllers(&fixture).get(&name).await.unwrap();
        controller.finalizers().is_empty().then_some(())
    })
    .await;
    eventually("a big Thing admitted once nothing refuses", async || create(&fixture, "big-", json!({ "replicas": 11 })).await.ok()).await;
    admission_controllers(&fixture).delete(&name, &Default::default()).await.unwrap();
    eventually("the declaration gone", async || admission_controllers(&fixture).get_opt(&name).await.unwrap().is_none().then_some(()))
        .await;
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
    let refused = eventually("refused by failurePolicy Fail", async || create(&fixture, "a-", json!({})).await.err()).await;
    assert!(refused.to_string().contains("failurePolicy Fail") && refused.to_string().contains("timeout"), "{refused}");
    println!("refused after {:?}", started.elapsed());

    let ignore = json!({ "spec": { "failurePolicy": "Ignore" } });
    admission_controllers(&fixture).patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&ignore)).await.unwrap();
    let admitted = eventually("admitted by failurePolicy Ignore", async || create(&fixture, "b-", json!({})).await.ok()).await;
    assert!(admitted.name_any().starts_with("b-"));
}

/// Converts Sites between v1 (`spec.host`) and v2 (`spec.hosts`), losslessly: hosts past the
/// first ride in an annotation while stored as v1.
fn convert_sites(_hook: &str, request: &Value) -> Reply {
    const EXTRA: &str = "sites.example.com/more-hosts";
    let desired = request["desiredAPIVersion"].as_str().unwrap().to_owned();
    let objects: Vec<Value> = request["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|object| {
            let mut converted = object.clone();
            converted["apiVersion"] = json!(desired);
            let spec = converted["spec"].as_object_mut().unwrap();
            if desired.ends_with("/v2") && object["apiVersion"].as_str().unwrap().ends_with("/v1") {
                let mut hosts = vec![spec.remove("host").unwrap_or(Value::Null)];
                let extra = converted["metadata"]["annotations"].as_object_mut().and_then(|annotations| annotations.remove(EXTRA));
                hosts.extend(extra.and_then(|text| serde_json::from_str::<Vec<Value>>(text.as_str()?).ok()).unwrap_or_default());
                converted["spec"]["hosts"] = json!(hosts);
            } else if desired.ends_with("/v1") && object["apiVersion"].as_str().unwrap().ends_with("/v2") {
                let hosts = spec.remove("hosts").and_then(|hosts| hosts.as_array().cloned()).unwrap_or_default();
                converted["spec"]["host"] = hosts.first().cloned().unwrap_or(Value::Null);
                if hosts.len() > 1 {
                    converted["metadata"]["annotations"][EXTRA] = json!(serde_json::to_string(&hosts[1..]).unwrap());
                }
            }
            converted
        })
        .collect();
    Reply::Json(json!({ "objects": objects }))
}

/// A CRD with v1 (stored) and v2 (served): bosun wires its conversion to the convert hook;
/// objects written in either version read back in the other, and round-trip without loss.
#[tokio::test]
async fn a_convert_hook_serves_a_second_version_without_loss() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let _admission = start_admission(&fixture).await;
    let group = format!("{}.sites.bosun.dev", fixture.id);
    let schema = |spec: Value| json!({ "openAPIV3Schema": { "type": "object", "properties": { "spec": { "type": "object", "properties": spec } } } });
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": format!("sites.{group}") },
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": { "plural": "sites", "singular": "site", "kind": "Site" },
            "versions": [
                { "name": "v1", "served": true, "storage": true, "schema": schema(json!({ "host": { "type": "string" } })) },
                { "name": "v2", "served": true, "storage": false,
                  "schema": schema(json!({ "hosts": { "type": "array", "items": { "type": "string" } } })) },
            ],
        },
    }))
    .unwrap();
    fixture.env.install_crd(&crd).await;
    let server = HookServer::start(convert_sites).await;
    let name = format!("sites-{}", fixture.id);
    let spec = json!({
        "rules": [],
        "hooks": { "convert": server.hook("convert", json!({})) },
        "conversion": { "customResourceDefinitions": [format!("sites.{group}")] },
    });
    admission_controller(&fixture, &name, spec).await;
    let version =
        |version: &str| kube::api::ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk(&group, version, "Site"), "sites");
    let (v1, v2) = (version("v1"), version("v2"));
    let sites_v1: Api<DynamicObject> = Api::namespaced_with(fixture.client.clone(), &fixture.namespace, &v1);
    let sites_v2: Api<DynamicObject> = Api::namespaced_with(fixture.client.clone(), &fixture.namespace, &v2);

    // Written as v1, read as v2.
    sites_v1
        .create(&PostParams::default(), &DynamicObject::new("one", &v1).data(json!({ "spec": { "host": "a.example" } })))
        .await
        .unwrap();
    let read = eventually("v1 read as v2", async || sites_v2.get("one").await.ok()).await;
    assert_eq!(read.data["spec"], json!({ "hosts": ["a.example"] }));
    // Written as v2 with two hosts (stored as v1), read back as v2: nothing lost.
    let two = json!({ "spec": { "hosts": ["b.example", "c.example"] } });
    sites_v2.create(&PostParams::default(), &DynamicObject::new("two", &v2).data(two)).await.unwrap();
    assert_eq!(sites_v2.get("two").await.unwrap().data["spec"], json!({ "hosts": ["b.example", "c.example"] }));
    assert_eq!(sites_v1.get("two").await.unwrap().data["spec"], json!({ "host": "b.example" }));
    assert!(server.calls() > 0);

    // Deleting the declaration puts the CRD's conversion back to None.
    admission_controllers(&fixture).delete(&name, &Default::default()).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(fixture.client.clone());
    eventually("the CRD's conversion back to None", async || {
        let crd = crds.get(&format!("sites.{group}")).await.unwrap();
        (crd.spec.conversion?.strategy == "None").then_some(())
    })
    .await;
}

/// The admission CA rotates (asked for with the Secret's annotation) while objects are
/// created without a pause: not one request fails, and the hooks still decide afterwards.
#[tokio::test]
async fn the_ca_rotates_during_a_stream_of_creates_and_no_request_fails() {
    use k8s_openapi::api::core::v1::Secret;

    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let _admission = start_admission(&fixture).await;
    let server = HookServer::start(hooks).await;
    let name = format!("rotating-{}", fixture.id);
    admission_controller(&fixture, &name, json!({ "hooks": { "validate": server.hook("validate", json!({})) } })).await;
    let secrets: Api<Secret> = Api::namespaced(fixture.client.clone(), &fixture.namespace);
    let ca = |secret: &Secret| secret.data.as_ref().unwrap()["ca.crt"].0.clone();
    let before = ca(&secrets.get("bosun-admission-ca").await.unwrap());

    let stream = Stream::start(&fixture);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rotate = json!({ "metadata": { "annotations": { bosun_engine::admission::ROTATE_ANNOTATION: "now" } } });
    secrets.patch("bosun-admission-ca", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&rotate)).await.unwrap();
    eventually("the rotation to finish", async || {
        let secret = secrets.get("bosun-admission-ca").await.unwrap();
        let data = secret.data.as_ref().unwrap();
        let done = ca(&secret) != before && !data.contains_key("next.crt") && !data.contains_key("previous.crt");
        done.then_some(())
    })
    .await;
    stream.stop_with_none_failed("the rotation").await;
    let refused = create(&fixture, "big-", json!({ "replicas": 11 })).await.unwrap_err();
    assert!(refused.to_string().contains("replicas must be at most 10"), "still asked after the rotation: {refused}");
}

/// A rolling restart behind a Service (a proxy on loopback routing new connections, as
/// kube-proxy does): while creates stream through the API server, a new replica starts and
/// becomes ready, the Service sends new connections to it and the old replica is told to
/// stop at the same moment; the old one keeps serving, unready, for its drain delay, then
/// finishes what is in flight. No create fails.
#[tokio::test]
async fn a_rolling_restart_loses_no_request() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let replica = || install_config(&fixture, &fixture.id, "bosun-admission-ca");
    let (mut old, mut new) = (replica(), replica());
    let address = |config: &AdmissionConfig| url(config).trim_start_matches("https://").parse().unwrap();
    let service = bosun_testenv::FreezableProxy::start(address(&old)).await.unwrap();
    let new_address = address(&new);
    for config in [&mut old, &mut new] {
        config.endpoint = Endpoint::Url(service.url());
        config.drain_delay = Duration::from_secs(2);
    }
    let (old_context, new_context) =
        (bosun_runtime::Context::standalone(fixture.client.clone()), bosun_runtime::Context::standalone(fixture.client.clone()));
    let old = Admission::new(&old_context, old);
    // The old replica in a runtime of its own, dropped once it has stopped serving: its
    // process exiting, with whatever it still had open.
    let (stop_old, old_stopped) = tokio::sync::oneshot::channel::<()>();
    let old_serving = {
        let old = old.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(old.serve(async {
                let _ = old_stopped.await;
            }));
        })
    };
    // The leader, which stays, keeps the configuration.
    let _wiring = tokio::spawn(old.wire(std::future::pending()));
    let server = HookServer::start(hooks).await;
    let name = format!("restarted-{}", fixture.id);
    admission_controller(&fixture, &name, json!({ "hooks": { "validate": server.hook("validate", json!({})) } })).await;
    eventually("the old replica refuses", async || create(&fixture, "big-", json!({ "replicas": 11 })).await.err()).await;

    let stream = Stream::start(&fixture);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let new_serving = tokio::spawn(Admission::new(&new_context, new).serve(std::future::pending()));
    eventually("the new replica ready", async || new_context.health.readiness().ok()).await;
    service.retarget(new_address);
    stop_old.send(()).unwrap();
    eventually("the old replica unready at once", async || old_context.health.readiness().err()).await;
    eventually("the old replica drained and exited", async || old_serving.is_finished().then_some(())).await;
    stream.stop_with_none_failed("the restart").await;
    let refused = create(&fixture, "big-", json!({ "replicas": 11 })).await.unwrap_err();
    assert!(refused.to_string().contains("replicas must be at most 10"), "the new replica answers: {refused}");
    assert!(!new_serving.is_finished());
}
