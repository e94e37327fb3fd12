//! `bosun new` makes projects that work as they are: a hook in Python and one in TypeScript —
//! a CompositeController and a DecoratorController, namespaced and cluster-scoped — are run by
//! `bosun dev --project` (the sample synced), tested by `bosun hook test` (nothing to change),
//! and their own tests replay the exchange `bosun hook test --save` recorded; a native
//! controller in Rust is built and run by `bosun dev --project` and passes `cargo test`; an
//! edited project is reloaded. Made with `--admission`, the hook also validates and defaults
//! the kind's objects through the API server.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

/// Runs `program args` in `dir`; returns its output, failing the test unless it succeeds.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(program).current_dir(dir).args(args).envs(env.iter().copied()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{program} {args:?} in {}:\n{text}", dir.display());
    text
}

/// Scaffolds a project with `args`, runs it with `bosun dev --project`, and tests it.
fn scaffold_and_run(root: &Path, name: &str, args: &[&str], test: &[&[&str]]) {
    let bosun = env!("CARGO_BIN_EXE_bosun");
    let dir = root.join(name);
    let made = run(root, bosun, &[&["new", name], args].concat(), &[]);
    assert!(made.contains("bosun new: a "), "{made}");
    for file in ["crd.yaml", "rbac.yaml", "sample.yaml", "README.md", "bosun.yaml"] {
        assert!(dir.join(file).exists(), "{file} in {}", dir.display());
    }
    // Its own port, as a user would pick one that is free: the tests run side by side.
    let controller = dir.join("controller.yaml");
    let hook = controller.exists();
    if hook {
        let port = bosun_testenv::free_port();
        for file in [controller.clone(), dir.join("admission.yaml")].iter().filter(|file| file.exists()) {
            let text = std::fs::read_to_string(file).unwrap().replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
            std::fs::write(file, text).unwrap();
        }
    }

    let target = target_dir();
    let mut dev = support::dev::Dev::start(
        &["--no-examples", "--project", dir.to_str().unwrap(), "--metrics-address=127.0.0.1:0", "--health-probe-bind-address=127.0.0.1:0"],
        &[("CARGO_TARGET_DIR", target.to_str().unwrap())],
    );
    let kubeconfig = dev.kubeconfig();
    let printed = dev.transcript();
    assert!(printed.contains("/sample:\nNAME ") && printed.contains("ConfigMap/sample-message"), "the sample's tree:\n{printed}");

    if hook {
        let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
        let tested = run(&dir, bosun, &["hook", "test", "controller.yaml", "sample.yaml"], &env);
        assert!(tested.contains("No changes: the cluster already is what the hook asks for."), "{tested}");
        run(&dir, bosun, &["hook", "test", "controller.yaml", "sample.yaml", "--save", "vectors/sample"], &env);
    }
    if dir.join("admission.yaml").exists() {
        admission_refuses_and_defaults(&dir, &kubeconfig);
    }
    for step in test {
        let output = run(&dir, step[0], &step[1..], &[("CARGO_TARGET_DIR", target.to_str().unwrap())]);
        assert!(!output.contains("skipped") || output.contains("# skipped 0"), "the replay ran:\n{output}");
    }

    assert!(dev.interrupt().success(), "bosun dev stops cleanly on Ctrl-C");
}

/// A project made with `--admission`: `bosun hook test` shows the sample allowed by both
/// hooks; through the API server, an empty message is refused with the hook's message and a
/// missing one is stored with the default.
fn admission_refuses_and_defaults(dir: &Path, kubeconfig: &Path) {
    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
    let tested = run(dir, env!("CARGO_BIN_EXE_bosun"), &["hook", "test", "admission.yaml", "sample.yaml"], &env);
    assert!(tested.contains("/mutate: allowed") && tested.contains("/validate: allowed"), "{tested}");

    let sample = std::fs::read_to_string(dir.join("sample.yaml")).unwrap();
    let (head, _) = sample.split_once("spec:").unwrap();
    let kubectl = |name: &str, spec: &str, args: &[&str]| {
        let manifest = format!("{}spec: {spec}\n", head.replace("name: sample", &format!("name: {name}")));
        let mut child = Command::new(bosun_testenv::Binaries::ensure().unwrap().path(bosun_testenv::Component::Kubectl))
            .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), manifest.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    // The API server may take a moment to see a new webhook configuration.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let refused = kubectl("empty", "{message: ''}", &["apply", "-f", "-"]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        if !refused.status.success() {
            assert!(stderr.contains("spec.message is empty: write a message, or leave the field out for the default"), "{stderr}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "an empty message is still admitted after 20 s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let defaulted = kubectl("missing", "{}", &["create", "-f", "-", "-o", "jsonpath={.spec.message}"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&defaulted.stdout), String::from_utf8_lossy(&defaulted.stderr));
    assert!(defaulted.status.success(), "{stderr}");
    assert!(stdout.starts_with("Hello from a ") && stderr.contains("Warning: spec.message defaulted to"), "{stdout}\n{stderr}");
}

/// The workspace's target directory: a Rust project builds there, reusing bosun's compiled
/// dependencies.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_bosun")).parent().and_then(Path::parent).unwrap().to_owned()
}

#[test]
fn new_projects_run_and_test_as_they_are() {
    let root = std::env::temp_dir().join(format!("bosun-new-{}", bosun_testenv::unique_suffix()));
    std::fs::create_dir_all(&root).unwrap();
    scaffold_and_run(
        &root,
        "greeting",
        &["--kind", "Greeting", "--group", "new.bosun.dev", "--admission"],
        &[&["python3", "-m", "unittest", "-v"]],
    );
    scaffold_and_run(
        &root,
        "label",
        &[
            "--kind",
            "Label",
            "--group",
            "new.bosun.dev",
            "--controller",
            "decorator",
            "--language",
            "typescript",
            "--scope",
            "cluster",
            "--admission",
        ],
        &[&["npm", "run", "build"], &["npm", "test"]],
    );
    scaffold_and_run(
        &root,
        "note",
        &["--kind", "Note", "--group", "new.bosun.dev", "--language", "rust"],
        &[&["cargo", "test", "--quiet"]],
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// The guide's `bosun new` transcript is what the command prints.
#[tokio::test]
async fn the_guides_new_transcript_is_what_the_command_prints() {
    let dir = std::env::temp_dir().join(format!("bosun-new-guide-{}", bosun_testenv::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let steps = support::transcript::transcript("Writing hooks: new → dev → hook test → deploy");
    assert_eq!(steps.len(), 1, "the section shows bosun new");
    let (command, expected) = &steps[0];
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], "bosun");
    let printed = run(&dir, env!("CARGO_BIN_EXE_bosun"), &words[1..], &[]);
    let lines: Vec<&str> = printed.lines().map(str::trim_end).collect();
    assert!(support::transcript::shows(expected, &lines), "$ {command}\n{printed}\nthe guide shows:\n{}", expected.join("\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A version Kubernetes would not take is refused before anything is written, with what to use.
#[test]
fn an_invalid_api_version_is_refused_before_anything_is_made() {
    let root = std::env::temp_dir().join(format!("bosun-new-version-{}", bosun_testenv::unique_suffix()));
    std::fs::create_dir_all(&root).unwrap();
    for version in ["1.0", "V1", "v1gamma1"] {
        let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .current_dir(&root)
            .args(["new", "project", "--kind", "Greeting", "--group", "example.com", "--api-version", version])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("is not a Kubernetes API version: use v1, v2, v1alpha1 or v1beta2"), "{stderr}");
        assert!(!root.join("project").exists(), "nothing is made for {version}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// Editing a project that `bosun dev --project` runs reloads it: a changed hook is restarted
/// and the sample syncs with it at once (its tree shows the child the new hook asks for); a
/// changed sample is applied, without a restart.
#[tokio::test]
async fn an_edited_project_is_reloaded() {
    let root = std::env::temp_dir().join(format!("bosun-new-reload-{}", bosun_testenv::unique_suffix()));
    std::fs::create_dir_all(&root).unwrap();
    let dir = root.join("reload");
    run(&root, env!("CARGO_BIN_EXE_bosun"), &["new", "reload", "--kind", "Reload", "--group", "new.bosun.dev"], &[]);
    let controller = dir.join("controller.yaml");
    let text =
        std::fs::read_to_string(&controller).unwrap().replace("127.0.0.1:8080", &format!("127.0.0.1:{}", bosun_testenv::free_port()));
    std::fs::write(&controller, text).unwrap();
    let args =
        ["--no-examples", "--project", dir.to_str().unwrap(), "--metrics-address=127.0.0.1:0", "--health-probe-bind-address=127.0.0.1:0"];
    let mut dev = support::dev::Dev::start(&args, &[]);
    assert!(dev.transcript().contains("ConfigMap/sample-message"), "{}", dev.transcript());
    let wait = |dev: &mut support::dev::Dev, what: &str| {
        let seconds = std::time::Duration::from_secs(60);
        dev.read_until(|line| line.contains(what), seconds).unwrap_or_else(|| panic!("no {what:?} in:\n{}", dev.transcript()))
    };

    let hook = dir.join("hook.py");
    let text = std::fs::read_to_string(&hook).unwrap();
    assert!(text.contains(r#"owner_safe_name(parent, "message")"#));
    std::fs::write(&hook, text.replace(r#"owner_safe_name(parent, "message")"#, r#"owner_safe_name(parent, "greeting")"#)).unwrap();
    wait(&mut dev, "hook.py changed");
    let restarted = wait(&mut dev, "restarted: hook `python3 hook.py`");
    assert!(restarted.contains("the sample applied"), "{restarted}");
    wait(&mut dev, "ConfigMap/sample-greeting");

    let sample = dir.join("sample.yaml");
    std::fs::write(&sample, std::fs::read_to_string(&sample).unwrap().replace("Hello from a Reload", "Edited")).unwrap();
    wait(&mut dev, "sample.yaml changed");
    let applied = wait(&mut dev, "project ");
    assert!(applied.ends_with("applied the sample"), "{applied}");
    let kubeconfig = kube::config::Kubeconfig::read_from(dev.kubeconfig()).unwrap();
    let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap()).unwrap();
    let config_maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, "default");
    bosun_testenv::eventually("the ConfigMap to hold the edited message", async || {
        let data = config_maps.get("sample-greeting").await.ok()?.data?;
        (data.get("message").map(String::as_str) == Some("Edited")).then_some(())
    })
    .await;
    assert!(dev.interrupt().success());
    std::fs::remove_dir_all(&root).unwrap();
}
