//! A `bosun dev` that a test runs: what it prints, line by line as it comes (standard output
//! and standard error apart, so that a warning cannot split a tree), Ctrl-C to stop it, and no orphan when the test fails first — dropping it
//! interrupts it, and its control plane dies with it.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub struct Dev {
    child: Child,
    lines: Receiver<(bool, String)>,
    /// Every line it printed on standard output so far.
    pub printed: Vec<String>,
    /// Every line it printed on standard error so far.
    pub errors: Vec<String>,
}

impl Dev {
    /// Starts `bosun dev args` with `env` and reads what it prints up to its `export
    /// KUBECONFIG=` line, or everything if it exits first.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Dev {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .arg("dev")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        let streams =
            [(false, Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>), (true, Box::new(child.stderr.take().unwrap()))];
        for (error, stream) in streams {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = sender.send((error, line));
                }
            });
        }
        // Only the readers hold senders, so that the lines end when it exits.
        drop(sender);
        let mut dev = Dev { child, lines, printed: Vec::new(), errors: Vec::new() };
        dev.read_until(|line| line.starts_with("export KUBECONFIG="), Duration::from_secs(600));
        dev
    }

    /// Reads lines until one of standard output matches (returned) or `timeout` passes or it
    /// exits (`None`).
    pub fn read_until(&mut self, matches: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((true, line)) => self.errors.push(line),
                Ok((false, line)) => {
                    self.printed.push(line.clone());
                    if matches(&line) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// The kubeconfig of its control plane, from its export line.
    pub fn kubeconfig(&self) -> PathBuf {
        let line = self.printed.iter().find_map(|line| line.strip_prefix("export KUBECONFIG="));
        PathBuf::from(line.unwrap_or_else(|| panic!("bosun dev printed no export line:\n{}", self.printed.join("\n"))))
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed on standard output so far, as one text.
    pub fn transcript(&self) -> String {
        self.printed.join("\n")
    }

    /// Waits for it to exit by itself, reading what is left of its output.
    pub fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().unwrap();
        self.read_until(|_| false, Duration::from_secs(5));
        status
    }

    /// Ctrl-C, then its exit status.
    pub fn interrupt(&mut self) -> ExitStatus {
        #[allow(unsafe_code)]
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT)
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.interrupt();
        }
    }
}
