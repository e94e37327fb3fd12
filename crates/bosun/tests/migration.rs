//! The user guide's "Moving from Metacontroller", run: a control plane set up as a cluster
//! running Metacontroller is (its manifests, the Greeting example's controller and hook, a
//! Greeting Metacontroller synced), then every command of the guide's transcript in order,
//! each output compared with the guide's. The test stands in for the kubelet: when a command
//! changes what a Pod runs, it runs that Pod's command and arguments with bosun's binary, as
//! the Pod's ServiceAccount.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The commands of the guide's section and the output shown after each.
fn transcript() -> Vec<(String, Vec<String>)> {
    let guide = std::fs::read_to_string(format!("{ROOT}/docs/guide.md")).unwrap();
    let start = guide.find("\n## Moving from Metacontroller\n").expect("the guide has the section");
    let section = &guide[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |end| end + 1)];
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_console = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_console = line == "```console";
        } else if let Some(command) = line.strip_prefix("$ ").filter(|_| in_console) {
            steps.push((command.to_owned(), Vec::new()));
        } else if in_console && let Some((_, output)) = steps.last_mut() {
            output.push(line.trim_end().to_owned());
        }
    }
    steps
}

/// Whether `lines` are what `expected` shows: equal, except that `…` stands for anything
/// within a line, and a line of only `…` for any number of lines.
fn shows(expected: &[String], lines: &[&str]) -> bool {
    match expected.split_first() {
        None => lines.is_empty(),
        Some((line, rest)) if line == "…" => (0..=lines.len()).any(|skip| shows(rest, &lines[skip..])),
        Some((line, rest)) => lines.first().is_some_and(|first| line_shows(line, first)) && shows(rest, &lines[1..]),
    }
}

fn line_shows(pattern: &str, line: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('…').collect();
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if pieces.len() == 1 {
        return pattern == line;
    }
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut middle = &line[first.len()..line.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match middle.find(piece) {
            Some(at) => middle = &middle[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// A directory on `PATH` for the transcript's shell: `bosun`, `kubectl`, and `metacontroller`
/// (the image's `/usr/bin/metacontroller`), all the binaries under test.
fn bin_dir(plane: &bosun_testenv::ControlPlane, dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, target) in [
        ("bosun", PathBuf::from(env!("CARGO_BIN_EXE_bosun"))),
        ("metacontroller", PathBuf::from(env!("CARGO_BIN_EXE_bosun"))),
        ("kubectl", plane.binaries().path(bosun_testenv::Component::Kubectl)),
    ] {
        std::os::unix::fs::symlink(target, bin.join(name)).unwrap();
    }
    bin
}

/// Runs `command` in bash from the repository's root, as a user would in a terminal: stderr
/// with stdout, the admin kubeconfig, the binaries under test first on `PATH`.
fn shell(command: &str, bin: &Path, kubeconfig: &Path) -> (bool, String) {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .args(["-c", &format!("exec 2>&1; set -o pipefail; {command}")])
        .current_dir(ROOT)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

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
    let bin = bin_dir(&plane, &dir);
    let kubeconfig = plane.kubeconfig_path();
    let setup = |command: &str| {
        let (success, output) = shell(command, &bin, kubeconfig);
        assert!(success, "setting up, {command}:\n{output}");
    };

    // Before: Metacontroller installed with kubectl (its CRDs are the same as bosun's), the
    // Greeting controller and its hook, and Greeting hello synced by Metacontroller.
    setup("bosun crds engine | kubectl apply -f - && kubectl apply -f crates/bosun/tests/migration/metacontroller.yaml");
    setup("kubectl apply -f examples/greeting/crd.yaml -f examples/greeting/controller.yaml");
    setup("kubectl wait --for condition=established crd/greetings.examples.bosun.dev && kubectl apply -f examples/greeting/greeting.yaml");
    let hook_log = dir.join("hook.log");
    let _hook = bosun_testenv::ManagedProcess::spawn(
        "greeting hook",
        Path::new("python3"),
        &[format!("{ROOT}/examples/greeting/hook.py"), "8080".to_owned()],
        hook_log.clone(),
    )
    .unwrap();
    let greetings = ApiResource {
        group: "examples.bosun.dev".into(),
        version: "v1".into(),
        api_version: "examples.bosun.dev/v1".into(),
        kind: "Greeting".into(),
        plural: "greetings".into(),
    };
    metacontrollers_sync(&client, &greetings).await;
    let before = versions(&client, &greetings).await;

    let steps = transcript();
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
        let deadline = Instant::now() + Duration::from_secs(60);
        let output = loop {
            let (success, output) = shell(command, &bin, kubeconfig);
            let lines: Vec<&str> = output.lines().map(str::trim_end).collect();
            if success && shows(expected, &lines) {
                break output;
            }
            assert!(
                Instant::now() < deadline,
                "$ {command}\nexited {}, printed:\n{output}\nthe guide shows:\n{}\nhook log:\n{}",
                if success { "0" } else { "non-zero" },
                expected.join("\n"),
                std::fs::read_to_string(&hook_log).unwrap_or_default(),
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
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

#[test]
fn the_transcript_matcher_takes_ellipses_for_anything() {
    let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
    assert!(shows(&lines("a\n…\nd"), &["a", "b", "c", "d"]));
    assert!(shows(&lines("a\n…"), &["a"]));
    assert!(shows(&lines("x … z"), &["x y z"]));
    assert!(shows(&lines("x…y…z"), &["x1y2z"]));
    assert!(!shows(&lines("x…y…z"), &["xz"]));
    assert!(!shows(&lines("a\nb"), &["a"]));
}
