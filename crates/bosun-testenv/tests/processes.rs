//! No control-plane process outlives its test binary: not when the tests pass, not when one
//! panics, not when the binary is killed with SIGKILL.
//!
//! The test re-runs its own binary as a child (selected by an environment variable); the
//! child starts the shared control plane, prints its process ids and directory, waits until
//! the parent has seen them running (its standard input closes), and then ends the way the
//! parent asked.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "BOSUN_TESTENV_PROCESSES_CHILD";
const TEST_NAME: &str = "control_plane_dies_with_its_test_binary";

#[derive(Debug, Clone, Copy)]
enum Ending {
    Pass,
    Panic,
    SigKill,
}

impl Ending {
    fn name(self) -> &'static str {
        match self {
            Ending::Pass => "pass",
            Ending::Panic => "panic",
            Ending::SigKill => "sigkill",
        }
    }
}

fn is_dead(pid: u32) -> bool {
    !bosun_testenv::is_running(pid)
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the child, returns the control plane's process ids and directory once it ended.
fn run_child(ending: Ending) -> (Vec<u32>, PathBuf) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, ending.name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let report = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| line.split_once("CONTROL-PLANE ").map(|(_, report)| report.to_owned()))
        .expect("the child reports its control plane");
    let (pids, dir) = report.split_once(' ').unwrap();
    let pids: Vec<u32> = pids.split(',').map(|pid| pid.parse().unwrap()).collect();
    assert_eq!(pids.len(), 3, "etcd, kube-apiserver, kube-controller-manager: {report}");
    assert!(pids.iter().all(|pid| !is_dead(*pid)), "running while the child runs");
    match ending {
        Ending::SigKill => child.kill().unwrap(),
        // Closing its standard input lets the child go on to its ending.
        Ending::Pass | Ending::Panic => drop(child.stdin.take()),
    }
    lines.for_each(drop);
    let status = child.wait().unwrap();
    match ending {
        Ending::Pass => assert!(status.success(), "the child's test passes"),
        Ending::Panic => assert_eq!(status.code(), Some(101), "the child's test panics"),
        Ending::SigKill => assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL)),
    }
    (pids, PathBuf::from(dir))
}

fn child(ending: &str) {
    let env = bosun_testenv::TestEnv::shared();
    let plane = env.control_plane();
    let pids: Vec<String> = plane.pids().iter().map(|(_, pid)| pid.to_string()).collect();
    println!("CONTROL-PLANE {} {}", pids.join(","), plane.dir().display());
    let mut go_ahead = String::new();
    let _ = std::io::stdin().read_line(&mut go_ahead);
    match ending {
        "pass" => {}
        "panic" => panic!("a test panics while the control plane runs"),
        _ => std::thread::sleep(Duration::from_secs(600)),
    }
}

#[test]
fn control_plane_dies_with_its_test_binary() {
    if let Ok(ending) = std::env::var(CHILD_ENV) {
        return child(&ending);
    }
    for ending in [Ending::Pass, Ending::Panic] {
        let (pids, dir) = run_child(ending);
        wait_until(&format!("{ending:?}: processes to stop"), || pids.iter().all(|pid| is_dead(*pid)));
        assert!(!dir.exists(), "{ending:?}: {} is removed", dir.display());
    }

    let (pids, dir) = run_child(Ending::SigKill);
    wait_until("SIGKILL: processes to die with the binary", || pids.iter().all(|pid| is_dead(*pid)));
    assert!(dir.exists(), "SIGKILL leaves the directory for the next start to remove");
    // The next control plane removes what a killed one left behind.
    let next = bosun_testenv::TestEnv::shared();
    assert!(!Path::new(&dir).exists(), "{} is swept by the next start", dir.display());
    assert!(next.control_plane().dir().exists());
}
