//! The user guide's "Moving from Metacontroller", run: a control plane set up as a cluster
//! running Metacontroller is (its manifests, the Greeting example's controller and hook, a
//! Greeting Metacontroller synced), then every command of the guide's transcript in order,
//! each output compared with the guide's. The test stands in for the kubelet: when a command
//! changes what a Pod runs, it runs that Pod's command and arguments with bosun's binary, as
//! the Pod's ServiceAccount.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

mod support;

use support::transcript::{Shell, transcript};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// A Pod of the test's kubelet: its container's process.
struct Pod {
    process: bosun_testenv::ManagedProcess,
    metrics: u16,
    log: PathBuf,
}

impl Pod {
    /// Runs `template`'s container as the kubelet would run bosun's image: its command (a name
    /// on the image's `PATH`, here `bin`) or the image's entrypoint `bosun`, with its args, as
    /// its ServiceAccount. The network namespace is the host's, so the ports are loopback ones
    /// of the test's choosing.
    async fn start(
        plane: &bosun_testenv::ControlPlane,
        namespace: &str,
        name: &'static str,
        template: &PodTemplateSpec,
        bin: &Path,
        dir: &Path,
    ) -> Pod {
        let spec = template.spec.as_ref().unwrap();
        let container = &spec.containers[0];
        let image = container.image.as_deref().unwrap_or_default();
        assert!(image.starts_with("ghcr.io/bosun-dev/bosun:"), "{name} runs {image}, not bosun's image");
        let program = match container.command.as_deref() {
            Some([command, ..]) => bin.join(Path::new(command).file_name().unwrap()),
            _ => bin.join("bosun"),
        };
        let account = spec.service_account_name.as_deref().unwrap_or("default");
        let token = plane.service_account_token(namespace, account).await.unwrap();
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, plane.kubeconfig_for_token(&token)).unwrap();
        let metrics = bosun_testenv::free_port();
        let mut args = container.args.clone().unwrap_or_default();
        args.extend([
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--metrics-address=127.0.0.1:{metrics}"),
            "--metrics-secure=false".to_owned(),
            "--health-probe-bind-address=127.0.0.1:0".to_owned(),
            format!("--leader-election-namespace={namespace}"),
        ]);
        let log = dir.join(format!("{name}.log"));
        let process = bosun_testenv::ManagedProcess::spawn(name, &program, &args, log.clone()).unwrap();
        Pod { process, metrics, log }
    }

    /// How many syncs of `controller` the process has finished without error.
    async fn syncs(&self, controller: &str) -> u64 {
        let prefix = format!("controller_runtime_reconcile_total{{controller=\"CompositeController-{controller}\",result=\"success\"}} ");
        let Ok(response) = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics)).await else { return 0 };
        let text = response.text().await.unwrap_or_default();
        text.lines().find_map(|line| line.strip_prefix(&prefix)?.parse().ok()).unwrap_or(0)
    }

    /// Stops the container as the kubelet does, with SIGTERM, and checks that it exited
    /// cleanly and logged no error.
    fn stop(mut self) {
        let status = self.process.stop(Duration::from_secs(30));
        let logs = std::fs::read_to_string(&self.log).unwrap_or_default();
        let name = self.process.name();
        assert!(status.is_some_and(|status| status.success()), "{name} exited with {status:?}:\n{logs}");
        assert!(!logs.contains("ERROR"), "{name} logged errors:\n{logs}");
    }
}

/// What Metacontroller's dynamic apply leaves for Greeting `hello` after syncing it with the
/// example hook: the ConfigMap as the hook returned it, with the namespace, the generated
/// selector's `controller-uid` label and the last-applied annotation of exactly that, and then
/// the controller reference; and the hook's status with `observedGeneration`.
async fn metacontrollers_sync(client: &kube::Client, greetings: &ApiResource) {
    let greetings: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", greetings);
    let hello = greetings.get("hello").await.unwrap();
    let uid = hello.uid().unwrap();
    let desired = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "hello-greeting", "namespace": "default", "labels": { "controller-uid": uid } },
        "data": { "message": hello.data["spec"]["message"] },
    });
    let mut child = desired.clone();
    child["metadata"]["annotations"] = json!({ "metacontroller.k8s.io/last-applied-configuration": desired.to_string() });
    child["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "examples.bosun.dev/v1", "kind": "Greeting", "name": "hello", "uid": uid,
        "controller": true, "blockOwnerDeletion": true,
    }]);
    let child: ConfigMap = serde_json::from_value(child).unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "default").create(&PostParams::default(), &child).await.unwrap();
    let status = json!({ "status": { "configMaps": 1, "observedGeneration": hello.metadata.generation } });
    greetings.patch_status("hello", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

/// The resourceVersions of Greeting `hello` and its ConfigMap.
async fn versions(client: &kube::Client, greetings: &ApiResource) -> (String, String) {
    let greeting = Api::<DynamicObject>::namespaced_with(client.clone(), "default", greetings).get("hello").await.unwrap();
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), "default").get("hello-greeting").await.unwrap();
    (greeting.resource_version().unwrap(), config_map.resource_version().unwrap())
}

#[tokio::test]
async fn the_guides_migration_from_metacontroller_works_as_shown() {
    let plane = bosun_testenv::ControlPlane::start().await.unwrap();
    let client = plane.client().unwrap();
    let dir = plane.dir().join("migration");
    std::fs::create_dir_all(&dir).unwrap();
    // The binaries under test; `metacontroller` is the image's /usr/bin/metacontroller.
    let bosun = PathBuf::from(env!("CARGO_BIN_EXE_bosun"));
    let kubectl = plane.binaries().path(bosun_testenv::Component::Kubectl);
    let shell = Shell::new(&dir, &[("bosun", bosun.clone()), ("metacontroller", bosun), ("kubectl", kubectl)], plane.kubeconfig_path());
    let bin = dir.join("bin");
    let setup = |command: &str| {
        let (success, output) = shell.run(command);
        assert!(success, "setting up, {command}:\n{output}");
    };

    // Before: Metacontroller installed with kubectl (its CRDs are the same as bosun's), the
    // Greeting controller and its hook, and Greeting hello synced by Metacontroller.
    setup("bosun crds engine | kubectl apply -f - && kubectl apply -f crates/bosun/tests/migration/metacontroller.yaml");
    setup("kubectl apply -f examples/greeting/crd.yaml -f examples/greeting/controller.yaml");
    setup("kubectl wait --for condition=established crd/greetings.examples.bosun.dev && kubectl apply -f examples/greeting/greeting.yaml");
    let hook_log = dir.join("hook.log");
    let mut hook = bosun_testenv::ManagedProcess::spawn(
        "greeting hook",
        Path::new("python3"),
        &[format!("{ROOT}/examples/greeting/hook.py"), "8080".to_owned()],
        hook_log.clone(),
    )
    .unwrap();
    hook.wait_listening(8080, Duration::from_secs(15)).unwrap();
    let greetings = ApiResource {
        group: "examples.bosun.dev".into(),
        version: "v1".into(),
        api_version: "examples.bosun.dev/v1".into(),
        kind: "Greeting".into(),
        plural: "greetings".into(),
    };
    metacontrollers_sync(&client, &greetings).await;
    let before = versions(&client, &greetings).await;

    let steps = transcript("Moving from Metacontroller");
    assert!(steps.len() >= 5, "the guide's transcript: {steps:#?}");
    let mut pods: Vec<Pod> = Vec::new();
    let mut kubelet_runs = 0;
    for (command, expected) in &steps {
        if command.starts_with("kubectl patch greeting") && kubelet_runs == 1 {
            // bosun took over what Metacontroller left: after a whole sync, neither the
            // Greeting nor its ConfigMap was written.
            let pod = &pods[0];
            bosun_testenv::eventually("bosun's first sync of hello", async || (pod.syncs("greeting-controller").await > 0).then_some(()))
                .await;
            assert_eq!(versions(&client, &greetings).await, before, "bosun rewrote what Metacontroller left");
        }
        let output = shell
            .run_until_shown(command, expected, || format!("hook log:\n{}", std::fs::read_to_string(&hook_log).unwrap_or_default()))
            .await;
        eprintln!("$ {command}\n{output}");
        // The kubelet's part.
        if command.contains("set image statefulset/metacontroller") {
            let statefulset = Api::<StatefulSet>::namespaced(client.clone(), "metacontroller").get("metacontroller").await.unwrap();
            pods.push(Pod::start(&plane, "metacontroller", "metacontroller-0", &statefulset.spec.template, &bin, &dir).await);
            kubelet_runs += 1;
        } else if command.contains("scale statefulset/metacontroller --replicas=0") {
            pods.remove(0).stop();
        } else if command.contains("apply --server-side -k deploy/") {
            let deployment = Api::<Deployment>::namespaced(client.clone(), "bosun-system").get("bosun").await.unwrap();
            pods.push(Pod::start(&plane, "bosun-system", "bosun-0", &deployment.spec.template, &bin, &dir).await);
            kubelet_runs += 1;
        }
    }
    assert_eq!(kubelet_runs, 2, "the guide swaps the image, then moves to bosun's deployment");
    for pod in pods {
        pod.stop();
    }
}
