//! A process a test or the control plane starts (etcd, kube-apiserver, a hook server, an
//! engine) that cannot outlive the process that started it.
//!
//! On Linux every child gets `PR_SET_PDEATHSIG = SIGKILL`, so even a `kill -9` of the test
//! binary or of `bosun dev` takes its control plane with it. The kernel sends that signal when
//! the *thread* that forked the child exits, so all children are forked by one spawner thread
//! that lives as long as the process; forking from a test's own thread would kill the shared
//! control plane as soon as that test finished. Each child also gets its own process group,
//! so a terminal's Ctrl-C reaches only bosun, which then stops them in order.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

/// A running child process with its output in a log file, killed when dropped (a test that
/// panics leaves nothing running).
#[derive(Debug)]
pub struct ManagedProcess {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// Whether process `pid` is running: it exists and is not a zombie waiting to be reaped.
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // `pid (comm) S …`: the state follows the last parenthesis.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
    }
}

type SpawnRequest = (Command, Sender<std::io::Result<Child>>);

/// Spawns `command` from the spawner thread (see the module documentation).
fn spawn_bound(mut command: Command) -> std::io::Result<Child> {
    static SPAWNER: Mutex<Option<Sender<SpawnRequest>>> = Mutex::new(None);
    let mut spawner = SPAWNER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let sender = spawner.get_or_insert_with(|| {
        let (sender, requests) = channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("bosun-testenv-spawner".into())
            .spawn(move || {
                for (mut command, reply) in requests {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawning a thread");
        sender
    });
    command.process_group(0);
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: between fork and exec only async-signal-safe calls are allowed; prctl and getppid are.
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
    let (reply, response) = channel();
    sender.send((command, reply)).map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    drop(spawner);
    response.recv().map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

impl ManagedProcess {
    /// Starts `program` with `args`, its standard output and error written to `log`.
    pub fn spawn(name: &'static str, program: &Path, args: &[String], log: PathBuf) -> std::io::Result<Self> {
        let out = File::create(&log)?;
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let child = spawn_bound(command)?;
        Ok(ManagedProcess { name, child, log })
    }

    /// The name it was started under.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        const WINDOW: u64 = 64 * 1024;
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(length.saturating_sub(WINDOW)));
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until something accepts connections on loopback `port` — the server this
    /// process starts — for at most `timeout`; an error if the process exits first or the time
    /// passes, with the end of its output.
    pub fn wait_listening(&mut self, port: u16, timeout: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + timeout;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let problem = if !self.is_running() {
                "exited"
            } else if Instant::now() > deadline {
                "is not listening"
            } else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            return Err(std::io::Error::other(format!(
                "{} {problem} on 127.0.0.1:{port}; its last output:\n{}",
                self.name,
                self.log_tail(20)
            )));
        }
        Ok(())
    }

    /// Asks the process to stop with SIGTERM, and kills it if it has not exited within `grace`;
    /// returns how it exited.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        #[allow(unsafe_code)]
        // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
