//! Command-line definitions. Parsing here is pure: values are checked for form (a port is a number,
//! `--add-host` is `NAME:IP`); anything that needs a file is resolved in `plan`.
//!
//! `lamina local invoke` accepts every option of `sam local invoke` (SAM CLI 1.170), with the same
//! short flags, defaults and `SAM_*` environment variables, plus lamina's own `--network`,
//! `--emulator` and `--dry-run`.

pub mod config;
pub mod image;
pub mod invoke;
pub mod output;
pub mod system;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::LazyLock;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use regex::Regex;

#[derive(Debug, Parser)]
#[command(
    name = "lamina",
    version,
    about = "Run AWS Lambda functions from a SAM template, without Docker",
    long_about = "lamina is a daemonless, rootless `sam local invoke`: it runs your function in the real \
                  Lambda base image, in a sandbox of its own, with real memory limits and honest exit codes."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run functions locally (like `sam local`).
    #[command(subcommand)]
    Local(LocalCommand),
    /// Manage the cache of Lambda runtime images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// One-time host setup.
    #[command(subcommand)]
    System(SystemCommand),
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Report what works on this host for the current user (user namespaces, cgroups, memory and
    /// pids limits, seccomp, id ranges, network, cache, emulators), each with its fix; exits 1
    /// when functions cannot run here.
    Check {
        /// One JSON object instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// As root: give USER a cgroup subtree of its own, so that its invokes get memory limits
    /// (and, on cgroup v1 hosts, can run at all).
    SetupRootless {
        #[arg(long, value_name = "USER")]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image (or a runtime's base image) into the cache, checking the registry now.
    Pull {
        /// An image reference (`public.ecr.aws/lambda/python:3.12`) or a runtime (`python3.12`).
        #[arg(value_name = "REF|RUNTIME")]
        reference: String,
        /// The platform to pull from a multi-arch image.
        #[arg(long, value_enum, default_value = "x86_64")]
        arch: crate::runtimes::Architecture,
    },
    /// Show the cached image as an invoke would use it (JSON), pulling it first only when needed.
    Inspect {
        #[arg(value_name = "REF|RUNTIME")]
        reference: String,
        #[arg(long, value_enum, default_value = "x86_64")]
        arch: crate::runtimes::Architecture,
        /// Never contact the registry (like `local invoke --skip-pull-image`).
        #[arg(long)]
        skip_pull_image: bool,
    },
    /// List cached images: reference, platform, digest, size, last used.
    Ls {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an image (every platform of it) from the cache.
    Rm {
        #[arg(value_name = "REF|RUNTIME")]
        reference: String,
    },
    /// Remove images by age or to fit a size budget, and anything nothing refers to.
    Prune {
        /// Remove images not used for this many days.
        #[arg(long, value_name = "DAYS")]
        older_than: Option<f64>,
        /// Remove least recently used images until the cache is at most this big (e.g. 5G, 800M).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
    },
}

/// `800M`, `5G`, `1.5G`, `4096` (bytes).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let factor: f64 = match unit
        .to_ascii_uppercase()
        .trim_end_matches("B")
        .trim_end_matches('I')
    {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("`{text}` is not a size like 800M or 5G")),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 800M or 5G"))?;
    Ok((value * factor) as u64)
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Invoke a function once and print its result, like `sam local invoke`.
    #[command(after_help = EXIT_CODES_HELP)]
    Invoke(Box<InvokeArgs>),
}

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  the function succeeded
  1  lamina could not run the function (bad template, file, image, ...)
  2  usage error (unknown option, malformed value)
  3  the function returned an error (handled, unhandled, init error, runtime crash)
  4  the function timed out
  5  the function ran out of memory";

/// How the function reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Own network namespace with outbound access; the host's loopback is `host.docker.internal`.
    Private,
    /// Own network namespace with loopback only: hermetic.
    None,
    /// Share the host's network.
    Host,
}

/// Who serves the Lambda Runtime API to the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmulatorKind {
    /// lamina's own Runtime API (fast, honest REPORT lines).
    Builtin,
    /// The AWS Runtime Interface Emulator shipped in the image.
    Rie,
}

/// `lamina local invoke`. Field names are SAM's parameter names, which samconfig files use as keys.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Options")]
pub struct InvokeArgs {
    /// The function to invoke: logical id, FunctionName, Stack/Function path or ARN. Optional when
    /// the template has one function.
    #[arg(value_name = "FUNCTION_IDENTIFIER")]
    pub function_identifier: Option<String>,

    // ---- Template
    /// The SAM template. Default: .aws-sam/build/template.yaml, template.yaml, template.yml or
    /// template.json, the first that exists.
    #[arg(
        short = 't',
        long = "template-file",
        visible_alias = "template",
        env = "SAM_TEMPLATE_FILE",
        value_name = "PATH",
        help_heading = "Template Options"
    )]
    pub template_file: Option<PathBuf>,

    /// Template parameter values: 'Key=Value Key2=Value2', 'ParameterKey=K,ParameterValue=V' or
    /// 'file://params.toml|yaml'.
    #[arg(long, num_args = 1.., action = ArgAction::Append, value_parser = parse_parameter_override,
          value_name = "VALUE", help_heading = "Template Options")]
    pub parameter_overrides: Vec<String>,

    /// Expand AWS::LanguageExtensions before invoking (also SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS).
    #[arg(
        long,
        overrides_with = "no_language_extensions",
        help_heading = "Template Options"
    )]
    pub language_extensions: bool,
    #[arg(long, overrides_with = "language_extensions", hide = true)]
    pub no_language_extensions: bool,

    // ---- AWS credentials
    /// AWS region of the function (AWS_REGION in the function, AWS::Region in the template).
    #[arg(long, help_heading = "AWS Credential Options")]
    pub region: Option<String>,

    /// Named profile from the AWS shared credentials and config files.
    #[arg(long, help_heading = "AWS Credential Options")]
    pub profile: Option<String>,

    // ---- Invoke
    /// JSON event file; '-' reads standard input. Without it the event is '{}'.
    #[arg(
        short = 'e',
        long,
        value_name = "PATH",
        help_heading = "Invoke Options"
    )]
    pub event: Option<PathBuf>,

    /// Deprecated, has no effect (the default event is '{}').
    #[arg(long, hide = true)]
    pub no_event: bool,

    /// JSON (or .env) file of environment variable values: {"Parameters": {...}, "<Function>": {...}}.
    #[arg(short = 'n', long, value_parser = existing_path, value_name = "PATH", help_heading = "Invoke Options")]
    pub env_vars: Option<PathBuf>,

    /// Runtime to use instead of the function's, for this invoke only.
    #[arg(short = 'r', long, value_parser = parse_runtime, help_heading = "Invoke Options")]
    pub runtime: Option<String>,

    /// Tenant id for functions with TenancyConfig (sent as X-Amz-Tenant-Id).
    #[arg(long, value_parser = parse_tenant_id, help_heading = "Invoke Options")]
    pub tenant_id: Option<String>,

    /// Name for a durable execution (functions with DurableConfig).
    #[arg(long, help_heading = "Invoke Options")]
    pub durable_execution_name: Option<String>,

    /// Write the function's logs and result to this file instead of the terminal.
    #[arg(
        short = 'l',
        long,
        value_name = "PATH",
        help_heading = "Invoke Options"
    )]
    pub log_file: Option<PathBuf>,

    // ---- Container
    /// Debug port(s) on 127.0.0.1, forwarded into the function's sandbox; turns on debug mode.
    #[arg(short = 'd', long, env = "SAM_DEBUG_PORT", action = ArgAction::Append, value_delimiter = ' ', value_name = "PORT",
          help_heading = "Container Options")]
    pub debug_port: Vec<u16>,

    /// Host directory with a debugger, mounted read-only at /tmp/lambci_debug_files.
    #[arg(long, value_name = "PATH", help_heading = "Container Options")]
    pub debugger_path: Option<PathBuf>,

    /// Extra arguments for the debugger (split on single spaces).
    #[arg(
        long,
        env = "DEBUGGER_ARGS",
        allow_hyphen_values = true,
        help_heading = "Container Options"
    )]
    pub debug_args: Option<String>,

    /// Extra environment variables for the function in debug mode (same file format as --env-vars).
    #[arg(long, value_parser = existing_path, value_name = "PATH", help_heading = "Container Options")]
    pub container_env_vars: Option<PathBuf>,

    /// Base directory for CodeUri and layer paths (default: the template's directory).
    #[arg(
        short = 'v',
        long,
        env = "SAM_DOCKER_VOLUME_BASEDIR",
        value_name = "PATH",
        help_heading = "Container Options"
    )]
    pub docker_volume_basedir: Option<PathBuf>,

    /// Accepted for SAM compatibility: `host` and `none` select those network modes, any other
    /// network name means lamina's private network.
    #[arg(long, env = "SAM_DOCKER_NETWORK", help_heading = "Container Options")]
    pub docker_network: Option<String>,

    /// Never contact a registry: use the cached image or fail.
    #[arg(long, env = "SAM_SKIP_PULL_IMAGE", value_parser = BoolishValueParser::new(), help_heading = "Container Options")]
    pub skip_pull_image: bool,

    /// Check the image with the registry now and re-download layers.
    #[arg(
        long,
        env = "SAM_FORCE_IMAGE_BUILD",
        value_parser = BoolishValueParser::new(),
        help_heading = "Container Options"
    )]
    pub force_image_build: bool,

    /// Send SIGTERM (3 s grace) before removing the sandbox, so extensions see SHUTDOWN.
    #[arg(long, help_heading = "Container Options")]
    pub shutdown: bool,

    /// Accepted for SAM compatibility (lamina needs no published container ports).
    #[arg(long, default_value = "localhost", help_heading = "Container Options")]
    pub container_host: String,

    /// Host interface that debug ports listen on.
    #[arg(long, default_value = "127.0.0.1", help_heading = "Container Options")]
    pub container_host_interface: IpAddr,

    /// Extra /etc/hosts entry NAME:IP (repeatable).
    #[arg(long, action = ArgAction::Append, value_parser = parse_add_host, value_name = "NAME:IP",
          help_heading = "Container Options")]
    pub add_host: Vec<String>,

    /// DNS server for the function (repeatable).
    #[arg(long, action = ArgAction::Append, value_name = "IP", help_heading = "Container Options")]
    pub container_dns: Vec<IpAddr>,

    /// Image to run instead of the runtime's base image: URI, or FUNCTION=URI (repeatable).
    #[arg(long, action = ArgAction::Append, value_parser = parse_invoke_image, value_name = "URI",
          help_heading = "Container Options")]
    pub invoke_image: Vec<String>,

    /// Run without a memory limit.
    #[arg(long, help_heading = "Container Options")]
    pub no_memory_limit: bool,

    /// Also mount the targets of symlinks at the top of the code directory.
    #[arg(
        long,
        overrides_with = "no_mount_symlinks",
        help_heading = "Container Options"
    )]
    pub mount_symlinks: bool,
    #[arg(long, overrides_with = "mount_symlinks", hide = true)]
    pub no_mount_symlinks: bool,

    /// lamina: the function's network: private (own namespace, outbound access), none (loopback
    /// only) or host. Default: private.
    #[arg(long, value_enum, help_heading = "lamina Options")]
    pub network: Option<NetworkMode>,

    /// lamina: who serves the Runtime API: builtin (lamina) or rie (the image's emulator).
    #[arg(long, value_enum, default_value_t = EmulatorKind::Builtin, help_heading = "lamina Options")]
    pub emulator: EmulatorKind,

    /// lamina: print the resolved invocation as one JSON object and run nothing.
    #[arg(long, help_heading = "lamina Options")]
    pub dry_run: bool,

    // ---- Artifact location
    /// Where layers downloaded by ARN are cached.
    #[arg(
        long,
        env = "SAM_LAYER_CACHE_BASEDIR",
        value_name = "PATH",
        help_heading = "Artifact Location Options"
    )]
    pub layer_cache_basedir: Option<PathBuf>,

    // ---- Configuration
    /// samconfig file (relative to the template's directory when -t is given, else the current one).
    #[arg(long, value_name = "PATH", help_heading = "Configuration Options")]
    pub config_file: Option<PathBuf>,

    /// Environment (section) of the samconfig file.
    #[arg(
        long,
        default_value = "default",
        help_heading = "Configuration Options"
    )]
    pub config_env: String,

    /// Save the parameters given on the command line to the samconfig file.
    #[arg(long, help_heading = "Configuration Options")]
    pub save_params: bool,

    // ---- Beta / hooks
    /// Turn experimental features on or off.
    #[arg(
        long,
        overrides_with = "no_beta_features",
        help_heading = "Beta Options"
    )]
    pub beta_features: bool,
    #[arg(long, overrides_with = "beta_features", hide = true)]
    pub no_beta_features: bool,

    /// IaC hook (`terraform`); lamina does not run hooks yet.
    #[arg(long, value_parser = ["terraform"], conflicts_with_all = ["template_file", "parameter_overrides"],
          help_heading = "Terraform Hook Options")]
    pub hook_name: Option<String>,

    /// With --hook-name: reuse prepared metadata.
    #[arg(
        long,
        overrides_with = "prepare_infra",
        requires = "hook_name",
        help_heading = "Terraform Hook Options"
    )]
    pub skip_prepare_infra: bool,
    #[arg(long, overrides_with = "skip_prepare_infra", hide = true)]
    pub prepare_infra: bool,

    /// With --hook-name: a Terraform plan file.
    #[arg(
        long,
        requires = "hook_name",
        value_name = "PATH",
        help_heading = "Terraform Hook Options"
    )]
    pub terraform_plan_file: Option<PathBuf>,

    // ---- Other
    /// Debug logging with timestamps.
    #[arg(long, env = "SAM_DEBUG", value_parser = BoolishValueParser::new(), help_heading = "Other Options")]
    pub debug: bool,
}

fn existing_path(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("Path '{value}' does not exist."))
    }
}

/// Checks the form of one `--parameter-overrides` value (files are read later).
fn parse_parameter_override(value: &str) -> Result<String, String> {
    if value.starts_with("file://") || value.trim().is_empty() {
        return Ok(value.to_string());
    }
    crate::params::parse_tokens(&[value.to_string()], std::path::Path::new("."))
        .map(|_| value.to_string())
        .map_err(|e| e.to_string())
}

fn parse_runtime(value: &str) -> Result<String, String> {
    let lower = value.to_ascii_lowercase();
    if crate::runtimes::find(&lower).is_some() {
        return Ok(lower);
    }
    let names: Vec<&str> = crate::runtimes::all()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    Err(format!("'{value}' is not one of {}", names.join(", ")))
}

fn parse_tenant_id(value: &str) -> Result<String, String> {
    static TENANT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9._:/=+\-@ ]{1,256}$").expect("valid regex"));
    if value.trim().is_empty() || !TENANT.is_match(value) {
        return Err(format!(
            "'{value}' is not a valid tenant id: 1 to 256 characters of letters, digits, spaces and ._:/=+-@, not blank"
        ));
    }
    Ok(value.to_string())
}

fn parse_add_host(value: &str) -> Result<String, String> {
    let invalid =
        || "--add-host is not a valid format, it needs to be of the form hostname:IP".to_string();
    let (host, ip) = value.split_once(':').ok_or_else(invalid)?;
    if host.is_empty() {
        return Err(invalid());
    }
    ip.parse::<IpAddr>()
        .map_err(|_| format!("--add-host {value}: `{ip}` is not an IP address"))?;
    Ok(value.to_string())
}

fn parse_invoke_image(value: &str) -> Result<String, String> {
    if value.is_empty() || value.ends_with('=') {
        return Err(format!(
            "--invoke-image `{value}`: expected URI or FUNCTION=URI"
        ));
    }
    Ok(value.to_string())
}

/// SAM spells `--invoke-image` short as `-ii`, which clap cannot express; rewrite it before parsing.
pub fn normalize_argv(argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    argv.into_iter()
        .map(|a| {
            if a == "-ii" {
                "--invoke-image".into()
            } else {
                a
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn test_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
