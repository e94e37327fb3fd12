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

#[derive(Debug, Args)]
pub struct LoggingArgs {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text", env = "BOSUN_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log level or tracing filter directives, e.g. `debug` or `info,bosun_engine=trace`.
    #[arg(long, global = true, default_value = "info", env = "BOSUN_LOG_LEVEL")]
    log_level: String,
}

pub fn init(args: &LoggingArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_level)
        .map_err(|error| anyhow::anyhow!("--log-level {:?} is not a level or filter: {error}", args.log_level))?;
    // Colour only for a person at a terminal: not in files, pipes or log collectors.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
