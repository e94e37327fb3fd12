//! Metacontroller's invocation, translated: bosun's image started the way Metacontroller's
//! manifests start Metacontroller's — as `/usr/bin/metacontroller`, or with only flags and no
//! subcommand, with Go's flag syntax and controller-runtime's `--zap-*` logging flags — runs
//! the engine exactly as `bosun run` would.
//!
//! Go's flag package takes `-name=value`, `-name value` and `--name` alike, and a boolean flag
//! as `--name` or `--name=false`; bosun's arguments are rewritten into clap's `--name=value`
//! before parsing. The zap flags become bosun's logging flags.

/// bosun's subcommands, which switch translation off unless the program is called
/// `metacontroller`.
fn subcommands() -> Vec<String> {
    let cli = <crate::Cli as clap::CommandFactory>::command();
    cli.get_subcommands().map(|subcommand| subcommand.get_name().to_owned()).chain(["help".to_owned()]).collect()
}

/// What was translated, for the log once logging is set up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// Flags that have no counterpart in bosun and were set aside, as given.
    pub ignored: Vec<String>,
    /// `--zap-*` flags, as given, and what they became.
    pub mapped: Vec<(String, String)>,
}

/// Why Metacontroller's arguments cannot be taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvocationError {
    /// A zap flag's value is not one zap accepts.
    #[error("{flag}={value} is not a value controller-runtime's zap flags accept ({expected})")]
    ZapValue {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What it takes.
        expected: &'static str,
    },
}

/// bosun's arguments for `args` (the program name first) and what was translated. Arguments of
/// a bosun subcommand other than `run` are returned unchanged.
pub fn translate(args: Vec<String>) -> Result<(Vec<String>, Notes), InvocationError> {
    let mut args = args.into_iter();
    let program = args.next().unwrap_or_else(|| "bosun".to_owned());
    let rest: Vec<String> = args.collect();
    let as_metacontroller = std::path::Path::new(&program).file_name().is_some_and(|name| name == "metacontroller");
    let first = rest.first().map(String::as_str);
    // A flag first means `run`, unless a subcommand follows bosun's global flags.
    let subcommands = subcommands();
    let names_subcommand = rest.iter().any(|arg| subcommands.contains(arg));
    let implicit_run = as_metacontroller && first != Some("run")
        || first.is_some_and(|arg| arg.starts_with('-') && !matches!(arg, "-h" | "--help" | "-V" | "--version")) && !names_subcommand;
    let explicit_run = first == Some("run");
    if !implicit_run && !explicit_run {
        let subcommand = first.is_some_and(|arg| subcommands.iter().any(|name| name == arg));
        if subcommand || first.is_none() || !as_metacontroller {
            return Ok((std::iter::once(program).chain(rest).collect(), Notes::default()));
        }
    }
    let flags = if explicit_run { &rest[1..] } else { &rest[..] };
    let (flags, notes) = translate_flags(flags)?;
    Ok((std::iter::once(program).chain(std::iter::once("run".to_owned())).chain(flags).collect(), notes))
}

/// The boolean flags of `bosun run` that Go syntax may give bare or as `=true`/`=false`.
const BOOLEAN_FLAGS: [&str; 5] =
    ["leader-election", "engine", "configmapsync", "configmapsync-require-consent", "allow-insecure-hook-credentials"];

/// Rewrites Go-style flags into `--name=value` and maps the zap flags.
fn translate_flags(flags: &[String]) -> Result<(Vec<String>, Notes), InvocationError> {
    let mut notes = Notes::default();
    let mut out = Vec::with_capacity(flags.len());
    let (mut level, mut format, mut devel, mut time) = (None, None, false, None);
    let mut flags = flags.iter().peekable();
    while let Some(flag) = flags.next() {
        // Short flags (`-h`) and `--` stay as they are.
        let body = flag.strip_prefix("--").or_else(|| flag.strip_prefix('-').filter(|body| body.len() > 1));
        let Some(body) = body.filter(|body| !body.is_empty()) else {
            out.push(flag.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        let boolean = BOOLEAN_FLAGS.contains(&name) || name == "zap-devel";
        // `-name value`: the next argument is the value, unless the flag is boolean.
        let mut value = || inline.clone().or_else(|| if boolean { None } else { flags.next_if(|next| !next.starts_with('-')).cloned() });
        let given = |value: &Option<String>| match value {
            Some(value) => format!("--{name}={value}"),
            None => format!("--{name}"),
        };
        match name {
            "help" | "version" => out.push(flag.clone()),
            "zap-log-level" => {
                let value = value().unwrap_or_default();
                level = Some(zap_level(&value)?);
                notes.mapped.push((given(&Some(value)), format!("--log-level={}", level.unwrap_or_default())));
            }
            "zap-encoder" => {
                let value = value().unwrap_or_default();
                format = Some(match value.as_str() {
                    "json" => "json",
                    "console" => "text",
                    _ => return Err(InvocationError::ZapValue { flag: "--zap-encoder", value, expected: "json or console" }),
                });
                notes.mapped.push((given(&Some(value)), format!("--log-format={}", format.unwrap_or_default())));
            }
            "zap-devel" => {
                let value = value();
                devel = bool_value(value.as_deref()).ok_or_else(|| InvocationError::ZapValue {
                    flag: "--zap-devel",
                    value: value.clone().unwrap_or_default(),
                    expected: "true or false",
                })?;
                notes
                    .mapped
                    .push((given(&value), "debug level, text format (unless --zap-log-level or --zap-encoder say otherwise)".into()));
            }
            "zap-time-encoding" => {
                let value = value().unwrap_or_default();
                time = Some(match value.as_str() {
                    "epoch" | "millis" | "nano" => value.clone(),
                    "iso8601" | "rfc3339" | "rfc3339nano" => "rfc3339".to_owned(),
                    _ => {
                        let expected = "epoch, millis, nano, iso8601, rfc3339 or rfc3339nano";
                        return Err(InvocationError::ZapValue { flag: "--zap-time-encoding", value, expected });
                    }
                });
                notes.mapped.push((given(&Some(value)), format!("--log-time={}", time.clone().unwrap_or_default())));
            }
            "zap-stacktrace-level" | "pprof-address" => {
                let value = value();
                notes.ignored.push(given(&value));
            }
            _ if boolean => {
                // Bare means true; a value that is not a boolean is passed on for clap to refuse.
                let value = bool_value(inline.as_deref()).map(|value| value.to_string()).or_else(|| inline.clone());
                out.push(given(&value));
            }
            _ => {
                let value = value();
                out.push(given(&value));
            }
        }
    }
    if let Some(level) = level.or(devel.then_some("debug")) {
        out.push(format!("--log-level={level}"));
    }
    if let Some(format) = format.or(devel.then_some("text")) {
        out.push(format!("--log-format={format}"));
    }
    if let Some(time) = time {
        out.push(format!("--log-time={time}"));
    }
    Ok((out, notes))
}

/// A Go boolean flag's value: bare means true.
fn bool_value(value: Option<&str>) -> Option<bool> {
    match value {
        None => Some(true),
        Some(value) => match value.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => Some(true),
            "0" | "f" | "false" => Some(false),
            _ => None,
        },
    }
}

/// bosun's log level for a `--zap-log-level`: zap's names, or a verbosity N > 0 (debug from 1,
/// Metacontroller's hook bodies at 5 and above: trace).
fn zap_level(value: &str) -> Result<&'static str, InvocationError> {
    let level = match value {
        "debug" => "debug",
        "info" => "info",
        "warn" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        _ => match value.parse::<u32>() {
            Ok(0) => "info",
            Ok(1..=4) => "debug",
            Ok(_) => "trace",
            Err(_) => {
                let expected = "debug, info, error, or an integer verbosity above 0";
                return Err(InvocationError::ZapValue { flag: "--zap-log-level", value: value.to_owned(), expected });
            }
        },
    };
    Ok(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(program: &str, rest: &[&str]) -> Vec<String> {
        std::iter::once(program).chain(rest.iter().copied()).map(str::to_owned).collect()
    }

    fn translated(program: &str, rest: &[&str]) -> Vec<String> {
        translate(args(program, rest)).unwrap().0
    }

    #[test]
    fn metacontrollers_statefulset_args_run_the_engine() {
        assert_eq!(
            translated("/usr/local/bin/bosun", &["--zap-log-level=4", "--discovery-interval=20s"]),
            args("/usr/local/bin/bosun", &["run", "--discovery-interval=20s", "--log-level=debug"])
        );
    }

    #[test]
    fn the_helm_charts_command_runs_the_engine() {
        let rest = ["--zap-log-level=4", "--discovery-interval=20s", "--cache-flush-interval=30m", "--health-probe-bind-address=:8081"];
        assert_eq!(
            translated("/usr/bin/metacontroller", &rest),
            args(
                "/usr/bin/metacontroller",
                &[
                    "run",
                    "--discovery-interval=20s",
                    "--cache-flush-interval=30m",
                    "--health-probe-bind-address=:8081",
                    "--log-level=debug"
                ]
            )
        );
        assert_eq!(translated("/usr/bin/metacontroller", &[]), args("/usr/bin/metacontroller", &["run"]));
    }

    #[test]
    fn go_flag_syntax_is_taken() {
        assert_eq!(
            translated("bosun", &["-workers=5", "-discovery-interval", "20s", "--leader-election", "-leader-election-namespace", "ns"]),
            args("bosun", &["run", "--workers=5", "--discovery-interval=20s", "--leader-election=true", "--leader-election-namespace=ns"])
        );
        assert_eq!(translated("bosun", &["--leader-election=false"]), args("bosun", &["run", "--leader-election=false"]));
        assert_eq!(translated("bosun", &["run", "-leader-election=true"]), args("bosun", &["run", "--leader-election=true"]));
        assert_eq!(translated("bosun", &["run", "-h"]), args("bosun", &["run", "-h"]));
        assert_eq!(translated("metacontroller", &["--help"]), args("metacontroller", &["run", "--help"]));
    }

    #[test]
    fn bosuns_own_subcommands_are_left_alone() {
        for rest in [
            &["dev", "--nodes", "0"][..],
            &["tree", "pods/x", "-n", "a"],
            &["--help"],
            &["--version"],
            &[],
            &["--log-level", "debug", "dev"],
            &["--log-level", "debug", "rbac"],
            &["--log-format=json", "migrate"],
        ] {
            assert_eq!(translated("bosun", rest), args("bosun", rest));
        }
    }

    #[test]
    fn zap_flags_are_mapped() {
        let (out, notes) = translate(args(
            "bosun",
            &["--zap-devel", "--zap-encoder=json", "--zap-time-encoding", "epoch", "--zap-stacktrace-level=error", "--pprof-address=0"],
        ))
        .unwrap();
        assert_eq!(out, args("bosun", &["run", "--log-level=debug", "--log-format=json", "--log-time=epoch"]));
        assert_eq!(notes.ignored, ["--zap-stacktrace-level=error", "--pprof-address=0"]);
        assert_eq!(notes.mapped.len(), 3);
        assert_eq!(zap_level("5"), Ok("trace"));
        assert_eq!(zap_level("error"), Ok("error"));
        assert!(matches!(translate(args("bosun", &["--zap-log-level=loud"])), Err(InvocationError::ZapValue { .. })));
        assert_eq!(translated("bosun", &["--zap-devel=false"]), args("bosun", &["run"]));
    }
}
