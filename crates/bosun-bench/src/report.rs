//! A benchmark's figures: printed as a table, and appended to `docs/benchmarks.md` with the
//! command, the commit and the machine that produced them.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The figures of one scenario run.
pub struct Report {
    title: String,
    /// The table's header.
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Charts (SVG) and their titles.
    plots: Vec<(PathBuf, String)>,
}

impl Report {
    /// A report whose table has the columns `figure` and `value`.
    pub fn new(title: String) -> Report {
        Report::with_columns(title, &["figure", "value"])
    }

    /// A report whose table has these columns.
    pub fn with_columns(title: String, columns: &[&str]) -> Report {
        Report { title, columns: columns.iter().map(|column| (*column).to_owned()).collect(), rows: Vec::new(), plots: Vec::new() }
    }

    /// Writes `chart` as `<docs>/benchmarks/<name>-<commit>.svg` and shows it under the figures:
    /// named after the commit, a rerun does not replace the charts an earlier record shows.
    pub fn plot(&mut self, docs: &Path, name: &str, chart: &crate::plot::Chart) {
        match chart.write(docs, &format!("{name}-{}", commit())) {
            Ok(path) => {
                eprintln!("plot: {}", path.display());
                self.plots.push((path, chart.title.clone()))
            }
            Err(error) => eprintln!("no plot {name}: {error:#}"),
        }
    }

    /// Adds a figure (a row of a two-column report).
    pub fn figure(&mut self, name: &str, value: String) {
        self.row(vec![name.to_owned(), value]);
    }

    /// Adds a row, one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The figures as a Markdown table.
    pub fn table(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut table = line(&self.columns);
        table.push_str(&line(&vec!["---".to_owned(); self.columns.len()]));
        for row in &self.rows {
            table.push_str(&line(row));
        }
        table
    }

    /// Appends the run to `benchmarks.md` in `docs` (its last section, `## Runs`).
    pub fn record(&self, docs: &Path, command: &str) -> anyhow::Result<PathBuf> {
        let path = docs.join("benchmarks.md");
        let commit = commit();
        let dirty = std::process::Command::new("git")
            // The records themselves do not count.
            .args(["status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/benchmarks.md", ":!docs/benchmarks"])
            .output()
            .is_ok_and(|output| !output.stdout.is_empty());
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default();
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        write!(
            file,
            "\n### {}\n\n`{command}` at commit `{commit}`{}, {date}, on {}.\n\n{}",
            self.title,
            if dirty { " (with uncommitted changes)" } else { "" },
            machine(),
            self.table()
        )?;
        for (plot, title) in &self.plots {
            let name = plot.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            write!(file, "\n![{title}](benchmarks/{name})\n")?;
        }
        Ok(path)
    }
}

/// The short hash of the commit checked out, or `unknown`.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// `<cores> cores, <memory> GiB, <CPU model>`.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|cores| cores.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| text.lines().next()?.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find(|line| line.starts_with("model name"))?.split_once(':').map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {memory:.0} GiB, {model}")
}
