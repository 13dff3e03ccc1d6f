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

    let extra = injected_arguments(&config, invoke_matches);
    if extra.is_empty() {
        return Ok(ParsedInvoke {
            args,
            config,
            parameter_overrides_from_cli,
            template_from_cli,
        });
    }
    let mut argv = argv;
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv.splice(at..at, extra);
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let (args, _) = invoke_of(&matches)?;
    Ok(ParsedInvoke {
        args,
        config,
        parameter_overrides_from_cli,
        template_from_cli,
    })
}

fn invoke_of(matches: &ArgMatches) -> Result<(InvokeArgs, &ArgMatches), clap::Error> {
    let cli = Cli::from_arg_matches(matches)?;
    let Command::Local(LocalCommand::Invoke(args)) = cli.command;
    let invoke = matches
        .subcommand_matches("local")
        .and_then(|m| m.subcommand_matches("invoke"))
        .expect("clap matched `local invoke`");
    Ok((*args, invoke))
}

/// `--option=value` arguments for samconfig keys the user did not set on the command line or in
/// the environment.
fn injected_arguments(config: &SamConfig, matches: &ArgMatches) -> Vec<OsString> {
    let command = InvokeArgs::augment_args(clap::Command::new("invoke"));
    let mut extra = Vec::new();
    for (key, value) in &config.values {
        let id = if key == "template" {
            "template_file"
        } else {
            key.as_str()
        };
        if NOT_INJECTED.contains(&id) {
            continue;
        }
        let Some(arg) = command.get_arguments().find(|a| a.get_id() == id) else {
            tracing::debug!(
                key,
                "samconfig key is not an option of `local invoke`; ignored"
            );
            continue;
        };
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        match arg.get_action() {
            ArgAction::SetTrue => {
                if truthy(value) {
                    extra.push(format!("--{long}").into());
                } else if let Some(negation) = command
                    .get_arguments()
                    .find(|a| a.get_id() == format!("no_{id}").as_str())
                {
                    if let Some(negated) = negation.get_long() {
                        extra.push(format!("--{negated}").into());
                    }
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
    }
    extra
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
