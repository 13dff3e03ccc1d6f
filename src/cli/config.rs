//! Parsing the command line together with samconfig defaults.
//!
//! Precedence is SAM's: command line > option environment variable > samconfig > built-in default.
//! clap knows where each value came from, so samconfig values are turned into extra `--option=value`
//! arguments for exactly the options the user did not set, and the command line is parsed again.
//! That keeps one parser, one set of checks and one set of error messages for both sources.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches};
use indexmap::IndexMap;
use serde_json::Value;

use super::{Cli, Command, InvokeArgs, LocalCommand};
use crate::samconfig::{self, ConfigError, SamConfig};

/// Options that cannot come from samconfig (they choose the samconfig) or that are read from it
/// directly because their values are not plain strings.
const NOT_INJECTED: [&str; 4] = [
    "config_file",
    "config_env",
    "parameter_overrides",
    "function_identifier",
];

/// `lamina local invoke` arguments with samconfig applied.
#[derive(Debug)]
pub struct ParsedInvoke {
    pub args: InvokeArgs,
    pub config: SamConfig,
    /// Whether `--parameter-overrides` came from the command line (else samconfig's value applies).
    pub parameter_overrides_from_cli: bool,
    /// Whether `--template` was given on the command line (it then locates samconfig).
    pub template_from_cli: bool,
    /// Whether `--docker-network` was given on the command line (not by env or samconfig).
    pub docker_network_from_cli: bool,
    /// The options given on the command line, as samconfig values (for `--save-params`).
    pub cli_values: IndexMap<String, Value>,
    /// Where samconfig files are looked for (and `--save-params` writes).
    pub config_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Usage(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Parses `argv` (program name first). Only `local invoke` exists today.
pub fn parse(argv: Vec<OsString>, cwd: &Path) -> Result<ParsedInvoke, ParseError> {
    let argv = super::normalize_argv(argv);
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let (args, invoke_matches) = invoke_of(&matches)?;

    let template_from_cli =
        invoke_matches.value_source("template_file") == Some(ValueSource::CommandLine);
    let config_dir: PathBuf = match (&args.template_file, template_from_cli) {
        (Some(template), true) => cwd
            .join(template)
            .parent()
            .map_or_else(|| cwd.to_path_buf(), Path::to_path_buf),
        _ => cwd.to_path_buf(),
    };
    let config = match samconfig::locate(&config_dir, args.config_file.as_deref())? {
        Some(path) => samconfig::load(&path, &args.config_env)?,
        None => SamConfig::default(),
    };
    let parameter_overrides_from_cli =
        invoke_matches.value_source("parameter_overrides") == Some(ValueSource::CommandLine);
    let docker_network_from_cli =
        invoke_matches.value_source("docker_network") == Some(ValueSource::CommandLine);
    let cli_values = command_line_values(invoke_matches);

    let injected = injected_arguments(&config, invoke_matches);
    let args = if injected.is_empty() {
        args
    } else {
        reparse(&argv, &injected, &config)?
    };
    Ok(ParsedInvoke {
        args,
        config,
        parameter_overrides_from_cli,
        template_from_cli,
        docker_network_from_cli,
        cli_values,
        config_dir,
    })
}

/// Parses `argv` again with the samconfig arguments added before any `--`.
fn reparse(
    argv: &[OsString],
    injected: &[(String, Vec<OsString>)],
    config: &SamConfig,
) -> Result<InvokeArgs, ParseError> {
    let with = |extra: &[OsString]| {
        let mut argv = argv.to_vec();
        let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
        argv.splice(at..at, extra.iter().cloned());
        argv
    };
    let all: Vec<OsString> = injected
        .iter()
        .flat_map(|(_, args)| args.iter().cloned())
        .collect();
    match Cli::command().try_get_matches_from(with(&all)) {
        Ok(matches) => Ok(invoke_of(&matches)?.0),
        Err(err) => {
            // Name the samconfig key whose value clap refused, not a command-line option.
            let culprit = injected
                .iter()
                .find(|(_, extra)| Cli::command().try_get_matches_from(with(extra)).is_err());
            let Some((key, _)) = culprit else {
                return Err(ParseError::Usage(err));
            };
            let detail = err.to_string();
            let first = detail
                .lines()
                .next()
                .unwrap_or("invalid value")
                .trim_start_matches("error: ")
                .to_string();
            Err(ParseError::Config(ConfigError::Value {
                path: config.path.clone().unwrap_or_default(),
                key: key.clone(),
                message: first,
            }))
        }
    }
}

fn invoke_of(matches: &ArgMatches) -> Result<(InvokeArgs, &ArgMatches), clap::Error> {
    let cli = Cli::from_arg_matches(matches)?;
    let Command::Local(LocalCommand::Invoke(args)) = cli.command else {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::InvalidSubcommand,
            "expected `lamina local invoke`\n",
        ));
    };
    let invoke = matches
        .subcommand_matches("local")
        .and_then(|m| m.subcommand_matches("invoke"))
        .expect("clap matched `local invoke`");
    Ok((*args, invoke))
}

/// `--option=value` arguments, per samconfig key, for the options the user did not set on the
/// command line or in the environment.
fn injected_arguments(config: &SamConfig, matches: &ArgMatches) -> Vec<(String, Vec<OsString>)> {
    let command = InvokeArgs::augment_args(clap::Command::new("invoke"));
    let given = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let mut injected = Vec::new();
    for (key, value) in &config.values {
        let id = if key == "template" {
            "template_file"
        } else {
            key.as_str()
        };
        // `template_file` wins over `template` when a file has both.
        if key == "template" && config.values.contains_key("template_file") {
            continue;
        }
        if NOT_INJECTED.contains(&id) || value.is_null() {
            continue;
        }
        let Some(arg) = command.get_arguments().find(|a| a.get_id() == id) else {
            tracing::debug!(
                key,
                "samconfig key is not an option of `local invoke`; ignored"
            );
            continue;
        };
        let negation = format!("no_{id}");
        let negation_arg = command
            .get_arguments()
            .find(|a| a.get_id() == negation.as_str());
        if given(id) || (negation_arg.is_some() && given(&negation)) {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        let mut extra: Vec<OsString> = Vec::new();
        match arg.get_action() {
            ArgAction::SetTrue => {
                if truthy(value) {
                    extra.push(format!("--{long}").into());
                } else if let Some(negated) = negation_arg.and_then(|a| a.get_long()) {
                    extra.push(format!("--{negated}").into());
                }
            }
            ArgAction::Append => {
                let items = match value {
                    Value::Array(items) => items.clone(),
                    single => vec![single.clone()],
                };
                extra.extend(
                    items
                        .iter()
                        .map(|item| format!("--{long}={}", scalar(item)).into()),
                );
            }
            _ => extra.push(format!("--{long}={}", scalar(value)).into()),
        }
        if !extra.is_empty() {
            injected.push((key.clone(), extra));
        }
    }
    injected
}

/// Options that `--save-params` never writes (SAM's list, plus lamina's run-only `--dry-run`).
const NOT_SAVED: [&str; 5] = [
    "save_params",
    "config_file",
    "config_env",
    "function_identifier",
    "dry_run",
];

/// The options that came from the command line, as samconfig would hold them.
fn command_line_values(matches: &ArgMatches) -> IndexMap<String, Value> {
    let command = InvokeArgs::augment_args(clap::Command::new("invoke"));
    let mut values = IndexMap::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_SAVED.contains(&id) || matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|r| r.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = match arg.get_action() {
            ArgAction::SetTrue => Value::Bool(true),
            _ if id == "parameter_overrides" => Value::String(raw.join(" ")),
            ArgAction::Append => Value::Array(
                raw.into_iter()
                    .map(|v| {
                        v.parse::<i64>()
                            .map_or(Value::String(v), |n| Value::Number(n.into()))
                    })
                    .collect(),
            ),
            _ => Value::String(raw.into_iter().next().unwrap_or_default()),
        };
        values.insert(id.to_string(), value);
    }
    values
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on" | "y"
        ),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
