//! Exec hooks (bosun's extension of the hook shape): a program run once per call, the JSON
//! request on its standard input and the response read from its standard output — the same
//! protocol as a webhook, without a server. It runs in a process group of its own, killed at
//! the timeout (and whatever it left behind once it has exited), with a clean environment
//! (only a default `PATH` and the variables the hook declares); its output is bounded like a
//! webhook's body, and its standard error is logged, bounded too.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::api::ExecHook;

/// The `PATH` an exec hook gets unless it declares one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How much of a program's standard error is kept for the log; the end of it is quoted in
/// errors.
const STDERR_BYTES: usize = 16 * 1024;
const QUOTED_STDERR_BYTES: usize = 512;

/// A program to run for a hook, resolved when the controller starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Program {
    /// The program's absolute path.
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Why an exec hook's declaration cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProgramError {
    #[error("exec.command is empty: name the program, then its arguments")]
    NoCommand,
    #[error("exec.command[0] {0:?} must be an absolute path, or a name found on bosun's PATH")]
    Relative(String),
    #[error("exec.command[0] {0:?} is not a file bosun can find: it runs on bosun's host or in its image")]
    NotFound(String),
}

impl Program {
    /// The program `exec` declares, found now: an absolute path that exists, or a name on
    /// bosun's own `PATH`.
    pub(crate) fn resolve(exec: &ExecHook) -> Result<Program, ProgramError> {
        let (program, args) = exec.command.split_first().ok_or(ProgramError::NoCommand)?;
        let path = Path::new(program);
        let found = if path.is_absolute() {
            path.is_file().then(|| path.to_owned())
        } else if program.contains('/') {
            return Err(ProgramError::Relative(program.clone()));
        } else {
            let search = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&search).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
        };
        let path = found.ok_or_else(|| ProgramError::NotFound(program.clone()))?;
        let env = exec.env.iter().map(|variable| (variable.name.clone(), variable.value.clone())).collect();
        Ok(Program { path, args: args.to_vec(), env })
    }

    /// The program as a URL, `exec:///usr/local/bin/hook`: how logs, errors and metrics name
    /// the hook, as they name a webhook by its URL.
    pub(crate) fn url(&self) -> url::Url {
        let mut url = url::Url::parse("exec:///").expect("a valid URL");
        url.set_path(&self.path.to_string_lossy());
        url
    }
}

/// How a run ended, when it did not answer.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The program could not be started.
    Start(std::io::Error),
    /// It was still running at the deadline; its process group was killed.
    TimedOut,
    /// It exited unsuccessfully: how (`exited with status 3`, `was killed by signal 9`), and
    /// the end of its standard error.
    Failed { status: String, stderr: String },
    /// It wrote more than the limit to its standard output.
    TooLarge,
    /// Its pipes failed.
    Io(std::io::Error),
}

/// Runs `program` with `request` on its standard input until `deadline`; its standard output.
pub(crate) async fn run(program: &Program, request: Vec<u8>, deadline: Instant, limit: usize) -> Result<Vec<u8>, RunError> {
    let mut child = tokio::process::Command::new(&program.path)
        .args(&program.args)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(program.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(RunError::Start)?;
    let group = child.id();
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let exchange = async {
        // A program that does not read its input is not at fault for it.
        let write = async move {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&request).await;
            }
        };
        let (_, output, errors) = tokio::join!(write, read_keeping(stdout, limit, true), read_keeping(stderr, STDERR_BYTES, false));
        let status = child.wait().await;
        (output, errors, status)
    };
    let ended = tokio::time::timeout_at(deadline, exchange).await;
    // Whatever the program started goes with it.
    if let Some(group) = group {
        kill_group(group);
    }
    let (output, errors, status) = ended.map_err(|_| RunError::TimedOut)?;
    let (stderr, stderr_more) = errors.map_err(RunError::Io)?;
    if !stderr.is_empty() {
        let more = if stderr_more { " (and more)" } else { "" };
        tracing::info!(program = %program.path.display(), stderr = %String::from_utf8_lossy(&stderr), "exec hook's standard error{more}");
    }
    // Before the status: a program stopped from writing more exits by SIGPIPE.
    let (output, too_large) = output.map_err(RunError::Io)?;
    if too_large {
        return Err(RunError::TooLarge);
    }
    let status = status.map_err(RunError::Io)?;
    if !status.success() {
        let tail = &stderr[stderr.len().saturating_sub(QUOTED_STDERR_BYTES)..];
        use std::os::unix::process::ExitStatusExt;
        let status = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => status.to_string(),
        };
        return Err(RunError::Failed { status, stderr: String::from_utf8_lossy(tail).trim().to_owned() });
    }
    Ok(output)
}

/// Reads `from` to its end keeping its first `keep` bytes — or, with `stop_past`, only until
/// there are more (then it is closed, and the writer stopped) — and whether there were more.
async fn read_keeping(from: Option<impl AsyncRead + Unpin>, keep: usize, stop_past: bool) -> std::io::Result<(Vec<u8>, bool)> {
    let (mut kept, mut more) = (Vec::new(), false);
    let Some(mut from) = from else { return Ok((kept, more)) };
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return Ok((kept, more));
        }
        let room = keep - kept.len();
        kept.extend_from_slice(&buffer[..read.min(room)]);
        if read > room {
            more = true;
            if stop_past {
                return Ok((kept, more));
            }
        }
    }
}

/// Kills process group `group` (gone already or not).
fn kill_group(group: u32) {
    let Ok(group) = i32::try_from(group) else { return };
    // SAFETY: kill(2) only sends a signal, to the process group the hook's program leads
    // (`process_group(0)`); no memory is shared or touched.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ExecEnv;

    fn exec(command: &[&str]) -> ExecHook {
        ExecHook { command: command.iter().map(|word| (*word).to_owned()).collect(), ..Default::default() }
    }

    #[test]
    fn a_program_is_an_absolute_path_or_a_name_on_the_path() {
        let sh = Program::resolve(&exec(&["sh", "-c", "cat"])).unwrap();
        assert!(sh.path.is_absolute() && sh.path.ends_with("sh"), "{sh:?}");
        assert_eq!(sh.args, ["-c", "cat"]);
        assert_eq!(sh.url().scheme(), "exec");
        assert!(matches!(Program::resolve(&exec(&[])), Err(ProgramError::NoCommand)));
        assert!(matches!(Program::resolve(&exec(&["./hook.sh"])), Err(ProgramError::Relative(_))));
        assert!(matches!(Program::resolve(&exec(&["/nonexistent/hook"])), Err(ProgramError::NotFound(_))));
        assert!(matches!(Program::resolve(&exec(&["no-such-program-anywhere"])), Err(ProgramError::NotFound(_))));
    }

    #[tokio::test]
    async fn a_program_reads_the_request_and_answers_on_its_output() {
        let mut echo = exec(&["sh", "-c", "printf '%s:' \"$WHO\"; cat"]);
        echo.env = vec![ExecEnv { name: "WHO".into(), value: "me".into() }];
        let program = Program::resolve(&echo).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        assert_eq!(run(&program, b"{}".to_vec(), deadline, 100).await.unwrap(), b"me:{}");
        assert!(matches!(run(&program, vec![b'x'; 200], deadline, 100).await, Err(RunError::TooLarge)));
        // One that does not read its input answers all the same.
        let deaf = Program::resolve(&exec(&["sh", "-c", "echo ok"])).unwrap();
        assert_eq!(run(&deaf, vec![b' '; 1 << 20], deadline, 100).await.unwrap(), b"ok\n");
    }
}
