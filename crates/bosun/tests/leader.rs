//! Leader election with real `bosun run` processes: one leads and only it reconciles; when it
//! is killed with SIGKILL a standby takes over after the lease duration; when the leader exits
//! cleanly it releases the Lease and a standby takes over at its next retry.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago.
/// `GET /readyz` on a loopback port: status line and body.
fn readyz(port: u16) -> String {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            stream.write_all(b"GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            return response;
        }
        assert!(Instant::now() < deadline, "nothing serves /readyz on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(name: &str, namespace: &str, lease: &str, shard: &str, health_port: u16) -> Engine {
    let env = bosun_testenv::TestEnv::shared();
    let child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["run", "--leader-election", "--leader-election-namespace", namespace, "--leader-election-id", lease])
        .args(["--leader-election-lease-duration=4s", "--leader-election-renew-deadline=3s", "--leader-election-retry-period=500ms"])
        .args(["--metrics-address=0", "--discovery-interval=1s"])
        .arg(format!("--health-probe-bind-address=127.0.0.1:{health_port}"))
        .arg(format!("--target-label-selector=shard={shard}"))
        .arg("--kubeconfig")
        .arg(env.control_plane().kubeconfig_path())
        .env("HOSTNAME", name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Engine(child)
}

/// The name (`HOSTNAME`) of the Lease's holder, once there is one that is not `previous`.
async fn holder_other_than(leases: &Api<Lease>, lease: &str, previous: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let holder = leases
            .get_opt(lease)
            .await
            .unwrap()
            .and_then(|lease| lease.spec?.holder_identity)
            .and_then(|identity| identity.split('_').next().map(str::to_owned))
            .filter(|name| !name.is_empty() && Some(name.as_str()) != previous);
        if let Some(holder) = holder {
            return holder;
        }
        assert!(Instant::now() < deadline, "no new leader of {lease}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_dies_or_leaves() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("election").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let (lease, shard) = ("bosun-test", bosun_testenv::unique_suffix());

    let ports = [("alpha", bosun_testenv::free_port()), ("beta", bosun_testenv::free_port())];
    let mut engines: Vec<(&str, Engine)> =
        ports.iter().map(|(name, port)| (*name, start(name, &namespace, lease, &shard, *port))).collect();
    let leader = holder_other_than(&leases, lease, None).await;
    let reporters = support::reporters_of_a_new_controller(&client, &shard).await;
    assert!(reporters.iter().all(|reporter| *reporter == leader), "only the leader {leader} reconciles: {reporters:?}");
    // Both are ready: the leader with its caches synced, the standby because it reaches the Lease.
    for (name, port) in ports {
        let response = readyz(port);
        assert!(response.starts_with("HTTP/1.0 200"), "{name}: {response}");
        assert_eq!(response.ends_with("ok (standby)"), name != leader, "{name}: {response}");
    }

    // kill -9: the standby waits out the lease duration, then leads.
    let index = engines.iter().position(|(name, _)| *name == leader).unwrap();
    let (_, mut killed) = engines.remove(index);
    killed.0.kill().unwrap();
    let killed_at = Instant::now();
    let standby = holder_other_than(&leases, lease, Some(&leader)).await;
    println!("takeover after SIGKILL of the leader: {:.1} s (lease duration 4 s)", killed_at.elapsed().as_secs_f64());
    let reporters = support::reporters_of_a_new_controller(&client, &shard).await;
    assert!(reporters.iter().all(|reporter| *reporter == standby), "the new leader {standby} reconciles: {reporters:?}");

    // A clean exit releases the Lease: the next standby leads at its next retry.
    engines.push(("gamma", start("gamma", &namespace, lease, &shard, bosun_testenv::free_port())));
    let (_, leaving) = engines.iter_mut().find(|(name, _)| *name == standby).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(leaving.0.id() as libc::pid_t, libc::SIGTERM)
    };
    let left_at = Instant::now();
    assert!(leaving.0.wait().unwrap().success(), "SIGTERM is a clean exit");
    let next = holder_other_than(&leases, lease, Some(&standby)).await;
    println!("takeover after the leader exited cleanly: {:.1} s (retry period 0.5 s)", left_at.elapsed().as_secs_f64());
    assert_eq!(next, "gamma");
}
