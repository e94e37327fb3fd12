//! Structured logs on standard error, as text for people or JSON for log pipelines.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How log lines give the time.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogTime {
    /// `2026-12-05T06:40:00.123456Z`.
    Rfc3339,
    /// Seconds since 1970 with a fraction, `1796366400.123456` (zap's `epoch`).
    Epoch,
    /// Milliseconds since 1970 (zap's `millis`).
    Millis,
    /// Nanoseconds since 1970 (zap's `nano`).
    Nano,
}

impl tracing_subscriber::fmt::time::FormatTime for LogTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let since_epoch = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        match self {
            LogTime::Rfc3339 => tracing_subscriber::fmt::time::SystemTime.format_time(w),
            LogTime::Epoch => {
                let now = since_epoch();
                write!(w, "{}.{:06}", now.as_secs(), now.subsec_micros())
            }
            LogTime::Millis => write!(w, "{}", since_epoch().as_millis()),
            LogTime::Nano => write!(w, "{}", since_epoch().as_nanos()),
        }
    }
}

#[derive(Debug, Args)]
pub struct LoggingArgs {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text", env = "BOSUN_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log level or tracing filter directives. A bare `debug` or `trace` applies to bosun's own
    /// crates, the dependencies staying at `info` (as Metacontroller's verbosity does); a
    /// directive is taken as written, e.g. `info,bosun_engine=trace`, or `debug,` for every crate.
    #[arg(long, global = true, default_value = "info", env = "BOSUN_LOG_LEVEL")]
    log_level: String,
    /// How each line gives the time.
    #[arg(long, global = true, value_enum, default_value = "rfc3339", env = "BOSUN_LOG_TIME")]
    log_time: LogTime,
}

/// bosun's own crates, which a bare `debug` or `trace` raises.
const OWN_CRATES: [&str; 6] = ["bosun", "bosun_engine", "bosun_runtime", "bosun_operators", "bosun_testenv", "foobar"];

/// The filter directives `--log-level` stands for: a bare `debug` or `trace` for bosun's own
/// crates and `info` for the rest — rustls', hyper's and tower's internals would drown bosun's
/// lines —, anything else as written.
fn directives(level: &str) -> String {
    match level {
        "debug" | "trace" => {
            std::iter::once("info".to_owned()).chain(OWN_CRATES.map(|own| format!("{own}={level}"))).collect::<Vec<_>>().join(",")
        }
        other => other.to_owned(),
    }
}

/// A formatting layer writing to `writer`, as `args` format it.
fn layer<S, W>(args: &LoggingArgs, ansi: bool, writer: W) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    let layer = tracing_subscriber::fmt::layer().with_ansi(ansi).with_timer(args.log_time).with_writer(writer);
    match args.log_format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    }
}

/// Starts logging as `args` say: to standard error, or — with `file` — the whole log to
/// `file` and only warnings and errors to standard error.
pub fn init(args: &LoggingArgs, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_new(directives(&args.log_level))
        .map_err(|error| anyhow::anyhow!("--log-level {:?} is not a level or filter: {error}", args.log_level))?;
    // Colour only for a person at a terminal: not in files, pipes or log collectors.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let registry = tracing_subscriber::registry();
    match file {
        None => registry.with(layer(args, colour, std::io::stderr).with_filter(filter)).init(),
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|error| anyhow::anyhow!("creating the log file {}: {error}", path.display()))?;
            let warnings = tracing_subscriber::filter::LevelFilter::WARN;
            registry
                .with(layer(args, false, std::sync::Mutex::new(file)).with_filter(filter))
                .with(layer(args, colour, std::io::stderr).with_filter(warnings))
                .init();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_debug_or_trace_raises_only_bosuns_crates() {
        assert_eq!(
            directives("debug"),
            "info,bosun=debug,bosun_engine=debug,bosun_runtime=debug,bosun_operators=debug,bosun_testenv=debug,foobar=debug"
        );
        assert!(directives("trace").starts_with("info,bosun=trace,"));
        for as_written in ["info", "warn", "error", "debug,", "info,hyper=trace"] {
            assert_eq!(directives(as_written), as_written);
        }
    }
}
