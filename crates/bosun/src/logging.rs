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
    /// Log level or tracing filter directives, e.g. `debug` or `info,bosun_engine=trace`.
    #[arg(long, global = true, default_value = "info", env = "BOSUN_LOG_LEVEL")]
    log_level: String,
    /// How each line gives the time.
    #[arg(long, global = true, value_enum, default_value = "rfc3339", env = "BOSUN_LOG_TIME")]
    log_time: LogTime,
}

pub fn init(args: &LoggingArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_level)
        .map_err(|error| anyhow::anyhow!("--log-level {:?} is not a level or filter: {error}", args.log_level))?;
    // Colour only for a person at a terminal: not in files, pipes or log collectors.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).with_timer(args.log_time);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
