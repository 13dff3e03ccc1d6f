//! `lamina local invoke`: parse, plan, run, and map every outcome to an exit code.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;

use super::config::{self, ParseError};
use crate::exit;
use crate::plan::{self, Context, PlanError};

/// Runs the command line `argv` (program name first) and returns the process exit code.
pub fn main(argv: Vec<OsString>) -> u8 {
    if argv
        .get(1)
        .is_some_and(|a| a == crate::sandbox::hook::HOOK_COMMAND)
    {
        let socket = argv
            .get(2)
            .map(std::path::PathBuf::from)
            .unwrap_or_default();
        let bind_api = argv
            .get(3)
            .is_none_or(|a| a != crate::sandbox::hook::NETNS_ONLY);
        return u8::try_from(crate::sandbox::hook::run(&socket, bind_api)).unwrap_or(1);
    }
    if argv
        .get(1)
        .is_some_and(|a| a == crate::sandbox::rootless::USERNS_PROBE)
    {
        return u8::try_from(crate::sandbox::rootless::run_probe()).unwrap_or(1);
    }
    if argv
        .get(1)
        .is_some_and(|a| a == crate::sandbox::forward::CONNECT_COMMAND)
    {
        let port = argv
            .get(2)
            .and_then(|p| p.to_str())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let join_userns = argv.get(3).is_some_and(|a| a == "--userns");
        return u8::try_from(crate::sandbox::forward::run_helper(port, join_userns)).unwrap_or(1);
    }
    let env = |name: &str| std::env::var(name).ok();
    let debug =
        argv.iter().any(|a| a == "--debug") || env("SAM_DEBUG").is_some_and(|v| is_truthy(&v));
    init_logging(debug);
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(err) => return fail(&format!("cannot read the current directory: {err}")),
    };
    if argv.get(1).is_some_and(|a| a == "image") {
        return super::image::run(argv, &env);
    }
    if argv.get(1).is_some_and(|a| a == "system") {
        return system(argv);
    }
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    run(argv, cwd, &env, &mut stdin, &mut stdout)
}

/// The testable core of `main`: everything but the process-wide setup.
pub fn run(
    argv: Vec<OsString>,
    cwd: PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> u8 {
    let parsed = match config::parse(argv, &cwd) {
        Ok(parsed) => parsed,
        Err(ParseError::Usage(err)) => {
            // clap prints help and version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = err.print();
            return u8::try_from(err.exit_code()).unwrap_or(exit::USAGE);
        }
        Err(ParseError::Config(err)) => return fail(&err.to_string()),
    };
    if parsed.args.debug {
        enable_debug_logging();
    }
    if parsed.args.save_params
        && let Err(err) = save_params(&parsed, env)
    {
        return fail(&err.to_string());
    }
    let mut ctx = Context { cwd, env, stdin };
    let plan = match plan::build(&parsed, &mut ctx) {
        Ok(plan) => plan,
        Err(err) => return plan_failure(&err),
    };
    if parsed.args.dry_run {
        let mut text = serde_json::to_string_pretty(&plan.redacted()).expect("the plan serialises");
        text.push('\n');
        return match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => exit::SUCCESS,
            // A closed pipe (`lamina ... --dry-run | head`) is not an error.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => exit::SUCCESS,
            Err(err) => fail(&format!("cannot write to standard output: {err}")),
        };
    }
    // With --log-file, the function's logs and its result go to the file (as SAM).
    let (logs, mut file_out): (crate::run::LogSink, Option<std::fs::File>) = match &plan.log_file {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => {
                let copy = file.try_clone().ok();
                (
                    std::sync::Arc::new(std::sync::Mutex::new(Box::new(file))),
                    copy,
                )
            }
            Err(err) => return fail(&format!("cannot write log file {}: {err}", path.display())),
        },
        None => (
            std::sync::Arc::new(std::sync::Mutex::new(Box::new(std::io::stderr()))),
            None,
        ),
    };
    let reporter = super::output::ProgressReporter::new();
    let out: &mut dyn Write = match file_out.as_mut() {
        Some(file) => file,
        None => stdout,
    };
    match crate::run::run(&plan, env, out, logs, &reporter) {
        Ok(code) => code,
        Err(crate::run::RunError::Image(crate::image::ImageError::Interrupted)) => {
            eprintln!("{}", crate::image::ImageError::Interrupted);
            crate::signals::stopped_exit_code()
        }
        Err(err) => fail(&err.to_string()),
    }
}

/// `--save-params`: the command line's options into the samconfig file (SAM §10.4).
fn save_params(
    parsed: &config::ParsedInvoke,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), crate::samconfig::ConfigError> {
    let args = &parsed.args;
    let name = args
        .config_file
        .clone()
        .unwrap_or_else(|| crate::samconfig::DEFAULT_NAMES[0].into());
    let path = parsed.config_dir.join(&name);
    let region = args
        .region
        .clone()
        .or_else(|| env(crate::env_vars::AWS_DEFAULT_REGION))
        .unwrap_or_else(|| crate::template::intrinsics::DEFAULT_REGION.to_string());
    crate::samconfig::save(&path, &args.config_env, &parsed.cli_values, &region)?;
    tracing::info!(
        "Saved parameters to config file '{}' under environment '{}': {}",
        name.display(),
        args.config_env,
        serde_json::to_string(&parsed.cli_values).unwrap_or_default()
    );
    Ok(())
}

/// `lamina system ...`.
fn system(argv: Vec<OsString>) -> u8 {
    use clap::Parser;
    let cli = match super::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return u8::try_from(err.exit_code()).unwrap_or(exit::USAGE);
        }
    };
    let user = match cli.command {
        super::Command::System(super::SystemCommand::SetupRootless { user }) => user,
        super::Command::System(super::SystemCommand::Check { json }) => {
            return super::system::check(json, &|name| std::env::var(name).ok());
        }
        _ => return fail("expected `lamina system setup-rootless|check`"),
    };
    if crate::sandbox::rootless::Identity::current().is_some() {
        return fail("lamina system setup-rootless must run as root (sudo)");
    }
    match crate::sandbox::rootless::setup(&user) {
        Ok(done) => {
            for line in done {
                eprintln!("{line}");
            }
            exit::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

fn plan_failure(err: &PlanError) -> u8 {
    if err.is_usage() {
        eprintln!("Usage: lamina local invoke [OPTIONS] [FUNCTION_IDENTIFIER]");
        eprintln!("Try 'lamina local invoke -h' for help.");
        eprintln!();
        eprintln!("Error: {}", one_line(&err.to_string()));
        return exit::USAGE;
    }
    fail(&err.to_string())
}

/// Prints the one-line `Error: ...` and returns the lamina-error exit code.
pub(crate) fn fail(message: &str) -> u8 {
    eprintln!("Error: {}", one_line(message));
    exit::LAMINA_ERROR
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_truthy(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// Logging switches to debug once the options are known (`debug = true` in samconfig), as if
/// `--debug` had been given: the filter is reloaded and the format follows `DEBUG_FORMAT`.
static LOG_FILTER: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
> = std::sync::OnceLock::new();
static DEBUG_FORMAT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn log_filter(debug: bool) -> tracing_subscriber::EnvFilter {
    let default = if debug { "lamina=debug" } else { "lamina=info" };
    tracing_subscriber::EnvFilter::try_from_env(crate::env_vars::LAMINA_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

/// Messages go to stderr as bare lines (SAM's `%(message)s`); debug adds timestamps and levels.
struct LogFormat;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LogFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if DEBUG_FORMAT.load(std::sync::atomic::Ordering::Relaxed) {
            tracing_subscriber::fmt::format::Format::default()
                .with_target(false)
                .format_event(ctx, writer, event)
        } else {
            ctx.field_format().format_fields(writer.by_ref(), event)?;
            writeln!(writer)
        }
    }
}

fn init_logging(debug: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    DEBUG_FORMAT.store(debug, std::sync::atomic::Ordering::Relaxed);
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(debug));
    let format = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .event_format(LogFormat);
    // Already initialised (tests call `main` more than once): keep the first subscriber.
    if tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()
        .is_ok()
    {
        let _ = LOG_FILTER.set(handle);
    }
}

fn enable_debug_logging() {
    if let Some(handle) = LOG_FILTER.get() {
        DEBUG_FORMAT.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = handle.reload(log_filter(true));
    }
}
