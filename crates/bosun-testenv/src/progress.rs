//! Progress lines for long work (the first control-plane build takes minutes).
//!
//! They go straight to the process's standard error, not through `eprintln!`, so that the
//! test harness does not capture them: a test that triggers the build shows it as it happens.

use std::io::Write;
use std::time::Instant;

pub(crate) struct Progress;

impl Progress {
    pub(crate) fn line(message: std::fmt::Arguments<'_>) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "bosun-testenv: {message}");
    }

    /// The time since `since`, as `1m05s` or `4.2s`.
    pub(crate) fn elapsed(since: Instant) -> String {
        Self::format(since.elapsed())
    }

    /// `1m05s` or `4.2s`.
    pub(crate) fn format(elapsed: std::time::Duration) -> String {
        let seconds = elapsed.as_secs();
        if seconds >= 60 { format!("{}m{:02}s", seconds / 60, seconds % 60) } else { format!("{:.1}s", elapsed.as_secs_f64()) }
    }
}
