//! The guide's console transcripts, run: the commands of a section's ```console blocks, each
//! with the output shown after it, and a shell that runs them as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The commands (`$ …` lines) of the ```console blocks in the guide's section `heading` (a
/// `## ` heading), each with the output lines shown after it.
pub fn transcript(heading: &str) -> Vec<(String, Vec<String>)> {
    let guide = std::fs::read_to_string(format!("{ROOT}/docs/guide.md")).unwrap();
    let start = guide.find(&format!("\n## {heading}\n")).unwrap_or_else(|| panic!("the guide has no section {heading:?}"));
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
pub fn shows(expected: &[String], lines: &[&str]) -> bool {
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

/// A shell for a transcript's commands: bash in the repository's root, stderr with stdout as
/// in a terminal, a kubeconfig, and the binaries under test first on `PATH`.
pub struct Shell {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Shell {
    /// A shell whose `PATH` starts with `dir/bin`, holding `programs` (name, target) as symlinks.
    pub fn new(dir: &Path, programs: &[(&str, PathBuf)], kubeconfig: &Path) -> Shell {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for (name, target) in programs {
            std::os::unix::fs::symlink(target, bin.join(name)).unwrap();
        }
        Shell { bin, kubeconfig: kubeconfig.to_owned() }
    }

    /// Runs `command`; returns whether it succeeded and what it printed.
    pub fn run(&self, command: &str) -> (bool, String) {
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        let output = Command::new("bash")
            .args(["-c", &format!("exec 2>&1; set -o pipefail; {command}")])
            .current_dir(ROOT)
            .env("PATH", path)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `command` until it succeeds printing what `expected` shows, for up to a minute
    /// (the cluster may still be converging); returns what it printed, or panics with it.
    pub async fn run_until_shown(&self, command: &str, expected: &[String], context: impl Fn() -> String) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (success, output) = self.run(command);
            let lines: Vec<&str> = output.lines().map(str::trim_end).collect();
            if success && shows(expected, &lines) {
                return output;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "$ {command}\nexited {}, printed:\n{output}\nthe guide shows:\n{}\n{}",
                if success { "0" } else { "non-zero" },
                expected.join("\n"),
                context(),
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

#[test]
fn ellipses_stand_for_anything() {
    let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
    assert!(shows(&lines("a\n…\nd"), &["a", "b", "c", "d"]));
    assert!(shows(&lines("a\n…"), &["a"]));
    assert!(shows(&lines("x … z"), &["x y z"]));
    assert!(shows(&lines("x…y…z"), &["x1y2z"]));
    assert!(!shows(&lines("x…y…z"), &["xz"]));
    assert!(!shows(&lines("a\nb"), &["a"]));
}
