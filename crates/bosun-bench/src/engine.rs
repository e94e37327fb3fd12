//! The system under test as a separate process — `bosun run`, built in release mode — so that
//! its memory and CPU are its own: started against the benchmark's control plane, probed
//! until ready, measured from /proc, and scraped for its metrics.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The release `bosun` binary next to this one, built first (a no-op when it is current).
pub fn release_binary() -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe()?;
    let binary = here.with_file_name("bosun");
    eprintln!("building bosun (cargo build --release -p bosun) …");
    let status = bosun_testenv::cargo_build(&["--release", "--quiet", "-p", "bosun"]).context("running cargo")?;
    if !status.success() || !binary.exists() {
        bail!("building bosun failed; build it with `cargo build --release -p bosun` or pass --bosun <path>");
    }
    Ok(binary)
}

/// A running `bosun run`; stopped with SIGTERM when dropped.
pub struct EngineProcess {
    /// In a process group of its own, stopped as a whole (a wrapper's children too).
    child: Child,
    metrics_port: u16,
    health_port: u16,
}

impl EngineProcess {
    /// Starts `bosun run` on `kubeconfig` with `args`, and waits until /readyz answers 200.
    pub async fn start(binary: &Path, kubeconfig: &Path, args: &[String]) -> anyhow::Result<EngineProcess> {
        let (metrics_port, health_port) = (bosun_testenv::free_port(), bosun_testenv::free_port());
        let child = Command::new(binary)
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg(format!("--metrics-address=127.0.0.1:{metrics_port}"))
            // Scraped over plain HTTP on loopback, as Metacontroller serves it.
            .arg("--metrics-secure=false")
            .arg(format!("--health-probe-bind-address=127.0.0.1:{health_port}"))
            .args(args)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        EngineProcess { child, metrics_port, health_port }.ready().await
    }

    /// Starts another Metacontroller-compatible engine with `command`, run by `sh`, after
    /// replacing `{kubeconfig}`, `{metrics_address}`, `{health_address}`, `{apply_strategy}`
    /// and `{workers}`; waits until it serves /readyz (or /healthz) on `{health_address}`.
    pub async fn start_command(command: &str, kubeconfig: &Path, strategy: &str, workers: usize) -> anyhow::Result<EngineProcess> {
        let (metrics_port, health_port) = (bosun_testenv::free_port(), bosun_testenv::free_port());
        let command = command
            .replace("{kubeconfig}", &kubeconfig.display().to_string())
            .replace("{metrics_address}", &format!("127.0.0.1:{metrics_port}"))
            .replace("{health_address}", &format!("127.0.0.1:{health_port}"))
            .replace("{apply_strategy}", strategy)
            .replace("{workers}", &workers.to_string());
        // `exec`, so the process measured is the engine, not the shell.
        let child = Command::new("sh")
            .args(["-c", &format!("exec {command}")])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {command}"))?;
        EngineProcess { child, metrics_port, health_port }.ready().await
    }

    async fn ready(mut self) -> anyhow::Result<EngineProcess> {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait()? {
                bail!("the engine exited with {status} before it was ready");
            }
            for probe in ["/readyz", "/healthz"] {
                if get(self.health_port, probe).await.is_some_and(|(code, _)| code == 200) {
                    return Ok(self);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the engine was not ready within 60 s")
    }

    /// Its Prometheus metrics.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        get(self.metrics_port, "/metrics").await.map(|(_, body)| body).context("scraping bosun's metrics")
    }

    /// `rest_client_requests_total` summed per method.
    pub async fn requests_by_method(&self) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let mut counts = std::collections::BTreeMap::new();
        for line in self.metrics().await?.lines().filter(|line| line.starts_with("rest_client_requests_total{")) {
            let method = label(line, "method").unwrap_or_default();
            let value: f64 = line.rsplit(' ').next().and_then(|value| value.parse().ok()).unwrap_or(0.0);
            *counts.entry(method.to_owned()).or_default() += value as u64;
        }
        Ok(counts)
    }

    fn status_field(&self, field: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|line| line.starts_with(field))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// The sum of every sample of the counter `name` (all its label sets).
    pub async fn counter_sum(&self, name: &str) -> anyhow::Result<f64> {
        let prefix = format!("{name}{{");
        let samples = self.metrics().await?;
        Ok(samples.lines().filter(|line| line.starts_with(&prefix)).filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok()).sum())
    }

    /// Kills it with SIGKILL, as a crashed node would: no clean shutdown.
    pub fn kill(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL)
        };
        let _ = self.child.wait();
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_field("VmRSS:").unwrap_or(f64::NAN)
    }

    /// Peak resident memory so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_field("VmHWM:").unwrap_or(f64::NAN)
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else { return f64::NAN };
        // After the command name in parentheses: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
        let ticks = |index: usize| fields.get(index - 3).and_then(|value| value.parse::<f64>().ok()).unwrap_or(f64::NAN);
        #[allow(unsafe_code)]
        // SAFETY: sysconf has no memory-safety preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(14) + ticks(15)) / per_second
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        // The whole group: what a wrapper started, too.
        #[allow(unsafe_code)]
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGTERM)
        };
        let _ = self.child.wait();
    }
}

/// The value of label `name` in a Prometheus text line.
pub fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let end = line[start..].find('"')?;
    Some(&line[start..start + end])
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Some((code, body))
}
