//! `bosun dev` brings up a working cluster, prints how to reach it, and stops everything it
//! started on Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // `pid (comm) state ppid …`
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            children.push(child);
        }
    }
    children
}

#[tokio::test]
async fn dev_serves_a_cluster_until_interrupted() {
    let mut dev = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .arg("dev")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(dev.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut printed = Vec::new();
    let kubeconfig = loop {
        let line = lines.next().expect("bosun dev prints the export line before waiting");
        printed.push(line.clone());
        if let Some(path) = line.strip_prefix("export KUBECONFIG=") {
            break std::path::PathBuf::from(path);
        }
    };
    assert!(printed.iter().any(|line| line.starts_with("kubeconfig: ")), "{printed:?}");
    assert!(lines.next().is_some_and(|line| line.is_empty()));
    assert_eq!(lines.next().as_deref(), Some("Press Ctrl-C to stop."));

    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let namespaces: Api<Namespace> = Api::all(kube::Client::try_from(config).unwrap());
    assert!(namespaces.get_opt("default").await.unwrap().is_some());

    let control_plane = children_of(dev.id());
    assert_eq!(control_plane.len(), 3, "etcd, kube-apiserver and kube-controller-manager");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(dev.id() as libc::pid_t, libc::SIGINT) };
    assert!(dev.wait().unwrap().success(), "Ctrl-C is a clean exit");
    let deadline = Instant::now() + Duration::from_secs(30);
    while control_plane.iter().any(|pid| bosun_testenv::is_running(*pid)) {
        assert!(Instant::now() < deadline, "the control plane outlived bosun dev");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!kubeconfig.exists(), "the control plane's files are removed");
}
