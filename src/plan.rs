//! From parsed options to an `InvokePlan`: everything `lamina local invoke` decides before it
//! starts a sandbox. This is the only stage that reads the template, the event and the env files.
//! `--dry-run` prints the plan.

use std::io::Read;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cli::config::ParsedInvoke;
use crate::cli::{EmulatorKind, NetworkMode};
use crate::environment::{self, AwsIdentity, EnvError, EnvInputs, EnvOverrides};
use crate::event::{self, EventError};
use crate::params::{self, ParamsError};
use crate::runtimes::{self, Architecture};
use crate::template::IdentifierError;
use crate::template::{
    self, Code, Function, ImageConfig, Layer, LoadOptions, PackageType, TemplateError,
};
use crate::{aws, image, paths};

/// SAM's stand-in credentials when none are configured.
const DEFAULT_ACCESS_KEY: &str = "defaultkey";
const DEFAULT_SECRET_KEY: &str = "defaultsecret";
/// The timeout SAM gives a function being debugged.
const DEBUG_TIMEOUT_S: u64 = 36_000;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Identifier(#[from] IdentifierError),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Event(#[from] EventError),
    /// A malformed `--parameter-overrides` value: a usage error (exit 2), as in SAM.
    #[error("Invalid value for '--parameter-overrides': {0}")]
    Params(ParamsError),
    /// Options that contradict each other: a usage error (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
}

impl PlanError {
    /// Whether this is a mistake in how lamina was called (exit 2) rather than in the project (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PlanError::Usage(_) | PlanError::Params(ParamsError::Syntax(_))
        )
    }
}

/// What lamina will run. Serialised as the `--dry-run` output.
#[derive(Debug, Clone, Serialize)]
pub struct InvokePlan {
    /// Logical id of the function.
    pub function: String,
    /// `Stack/Function` path (the logical id in the root stack).
    pub full_path: String,
    /// The runtime that runs (after `--runtime`); `null` for Image functions.
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub package_type: PackageType,
    pub architecture: Architecture,
    /// MB; also the memory limit unless `memory_limit` is false.
    pub memory_size: u64,
    /// Seconds; 36000 in debug mode, as SAM.
    pub timeout: u64,
    pub memory_limit: bool,
    /// MB of `/tmp` (`EphemeralStorage.Size`).
    pub ephemeral_storage: u64,
    /// The directory mounted at `/var/task`: the code dir, or where a zip (or inline code) is unpacked.
    pub code_path: Option<PathBuf>,
    /// The archive `code_path` is unpacked from, when the code is a zip or jar.
    pub code_archive: Option<PathBuf>,
    /// `InlineCode` / `Code.ZipFile`, written into `code_path` before the run.
    #[serde(skip)]
    pub inline_code: Option<String>,
    /// The image reference that runs, e.g. `public.ecr.aws/lambda/python:3.12`, or an OCI layout
    /// `oci:/absolute/path[:tag]` (a relative path is already taken from its base here).
    pub image: String,
    pub image_config: ImageConfig,
    pub layers: Vec<Layer>,
    /// The variables lamina sets for the function (the image's own `ENV` comes on top at run time).
    pub environment: IndexMap<String, String>,
    pub event: String,
    pub template: PathBuf,
    pub network: NetworkMode,
    pub emulator: EmulatorKind,
    pub debug: Option<DebugPlan>,
    pub add_hosts: Vec<String>,
    pub dns: Vec<std::net::IpAddr>,
    pub log_file: Option<PathBuf>,
    pub tenant_id: Option<String>,
    pub layer_cache_dir: PathBuf,
    pub skip_pull_image: bool,
    pub force_image_build: bool,
    pub shutdown: bool,
    pub mount_symlinks: bool,
    /// The seccomp filter, the process bound and the device rules that hold on this host.
    pub confinement: crate::sandbox::confinement::Confinement,
    /// Region and credentials (for layer downloads); the function sees them in `environment`.
    #[serde(skip)]
    pub aws: aws::Session,
}

impl InvokePlan {
    /// The plan as `--dry-run` shows it: the secret key and session token the function would get
    /// are replaced by `***` (SAM's stand-in `defaultsecret` is shown), since dry-run output ends
    /// up in logs and bug reports.
    pub fn redacted(&self) -> InvokePlan {
        let mut plan = self.clone();
        for name in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
            if let Some(value) = plan.environment.get_mut(name)
                && value != DEFAULT_SECRET_KEY
                && !value.is_empty()
            {
                *value = "***".into();
            }
        }
        plan
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DebugPlan {
    pub ports: Vec<u16>,
    pub debugger_path: Option<PathBuf>,
    pub args: Vec<String>,
    /// The runtime's debug command and variables (SAM's, spec §7).
    pub settings: crate::debug::DebugSettings,
}

/// What the plan depends on besides the options.
pub struct Context<'a> {
    pub cwd: PathBuf,
    /// lamina's own environment.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub stdin: &'a mut dyn Read,
}

pub fn build(parsed: &ParsedInvoke, ctx: &mut Context) -> Result<InvokePlan, PlanError> {
    let args = &parsed.args;
    // The event is read first, as SAM does, so a missing event file fails fast.
    let event_path = args.event.as_ref().map(|p| {
        if p == Path::new("-") {
            p.clone()
        } else {
            ctx.cwd.join(p)
        }
    });
    let event = event::read(event_path.as_deref(), ctx.stdin)?;
    if args.hook_name.is_some() {
        return Err(PlanError::Invalid(
            "--hook-name: lamina does not run IaC hooks; run `sam build --hook-name terraform` once and pass the template it writes with -t".into(),
        ));
    }
    let network = network_mode(
        args.network,
        args.docker_network.as_deref(),
        parsed.docker_network_from_cli,
    )?;
    if let Some(region) = &args.region {
        check_region(region)?;
    }

    let template_path = template::discover(&ctx.cwd, args.template_file.as_deref());
    let mut options = LoadOptions {
        language_extensions: if args.language_extensions {
            Some(true)
        } else if args.no_language_extensions {
            Some(false)
        } else if (ctx.env)(crate::env_vars::SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        {
            Some(true)
        } else {
            None
        },
        ..LoadOptions::default()
    };
    if let Some(region) = &args.region {
        options
            .global_overrides
            .insert("AWS::Region".into(), Value::String(region.clone()));
    }
    options.parameter_overrides = parameter_overrides(parsed, &ctx.cwd)?
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let stacks = template::load_stacks(&template_path, &options)?;
    let basedir = args.docker_volume_basedir.as_ref().map(|b| ctx.cwd.join(b));
    let (functions, skipped) = template::extract_functions(&stacks, basedir.as_deref());
    for s in &skipped {
        tracing::warn!("{}", s.warning);
    }
    // Env files are read before the function is chosen (as SAM), so their errors come first.
    let env_file = args
        .env_vars
        .as_ref()
        .map(|p| EnvOverrides::load(&ctx.cwd.join(p)))
        .transpose()?;
    let container_env_file = args
        .container_env_vars
        .as_ref()
        .map(|p| EnvOverrides::load(&ctx.cwd.join(p)))
        .transpose()?;
    let function = template::find_function(&functions, args.function_identifier.as_deref())?;

    let package_type = function.package_type()?;
    let architecture = function.architecture()?;
    let template_runtime = function.runtime();
    let runtime = args.runtime.clone().or(template_runtime.clone());
    let handler = function.handler();
    let image_config = function.image_config()?;

    let (image, code_path, code_archive, layers) = match package_type {
        PackageType::Zip => {
            let runtime_name = runtime.as_deref().ok_or_else(|| {
                invalid(
                    function,
                    "Runtime is required for a Zip function (or pass --runtime)",
                )
            })?;
            let catalog = check_runtime(function, runtime_name, template_runtime.as_deref())?;
            // As SAM, the architecture is checked against the template's runtime (`--runtime` only
            // changes the image).
            let checked = template_runtime
                .as_deref()
                .and_then(runtimes::find)
                .unwrap_or(catalog);
            let runtime_name = checked.name.as_str();
            if !checked.supports(architecture) {
                return Err(PlanError::Invalid(format!(
                    "Runtime {runtime_name} is not supported on '{architecture}' architecture (function {})",
                    function.full_path
                )));
            }
            if handler.is_none() {
                return Err(PlanError::Invalid(format!(
                    "Could not find handler for function: {}",
                    function.full_path
                )));
            }
            let runtime_name = catalog.name.as_str();
            let image = invoke_image(&args.invoke_image, &function.full_path).map_or_else(
                || catalog.image.clone(),
                |i| image::layout::anchor(&i, &ctx.cwd),
            );
            let (code_path, archive) = code_location(function, ctx)?;
            tracing::info!(
                "Invoking {} ({})",
                handler.as_deref().unwrap_or_default(),
                template_runtime.as_deref().unwrap_or(runtime_name)
            );
            let layers = function.layers()?;
            check_layer_paths(function, &layers)?;
            (image, Some(code_path), archive, layers)
        }
        PackageType::Image => {
            let image = image_function_uri(function)?;
            let image = image::layout::anchor(&image, &function.template_dir);
            tracing::info!("Invoking Container created from {image}");
            (image, None, None, Vec::new())
        }
    };
    if function.property("RuntimeManagementConfig").is_some() {
        tracing::info!(
            "This function will be invoked using the latest available runtime, which may differ from your Runtime Management Configuration"
        );
    }
    match (function.has_tenancy_config(), &args.tenant_id) {
        (true, None) => {
            return Err(PlanError::Invalid(format!(
                "The invoked function {} is enabled with tenancy configuration. Add a valid tenant ID (--tenant-id) in your request and try again.",
                function.full_path
            )));
        }
        (false, Some(_)) => {
            return Err(PlanError::Invalid(format!(
                "The invoked function {} is not enabled with tenancy configuration. Remove the tenant ID from your request and try again.",
                function.full_path
            )));
        }
        _ => {}
    }

    // Image functions have no runtime: their debug mode only forwards ports.
    let debug_runtime = if package_type == PackageType::Zip {
        runtime.as_deref()
    } else {
        None
    };
    let debug = debug_plan(args, &ctx.cwd, debug_runtime)?;
    let memory_size = function.memory_size()?;
    let timeout = if debug.is_some() {
        DEBUG_TIMEOUT_S
    } else {
        function.timeout()?
    };
    let ephemeral_storage = function.ephemeral_storage_mb()?;

    // For Image functions without a Handler, SAM uses the first word of the command.
    let env_handler = handler.clone().or_else(|| {
        image_config
            .command
            .as_ref()
            .and_then(|c| c.first().cloned())
    });
    let overrides = env_file
        .map(|f| f.for_function(function))
        .unwrap_or_default();
    let container_overrides = match (container_env_file, &debug) {
        (Some(file), Some(_)) => file.for_function(function),
        _ => IndexMap::new(),
    };
    let session = aws::Session::resolve(args.profile.as_deref(), args.region.as_deref(), ctx.env)?;
    let identity = identity(&session);
    let resolved = environment::resolve(&EnvInputs {
        function,
        handler: env_handler.as_deref(),
        memory_mb: memory_size,
        timeout_s: timeout,
        debugging: debug.is_some(),
        identity: &identity,
        overrides,
        debug_env: debug
            .as_ref()
            .map(|d| d.settings.env.clone())
            .unwrap_or_default(),
        container_overrides,
        shell: ctx.env,
    });
    if !resolved.undeclared_overrides.is_empty() {
        tracing::warn!(
            "Notice: --env-vars sets {} for {}, which the template does not declare; passing them anyway (sam local invoke would drop them)",
            resolved.undeclared_overrides.join(", "),
            function.full_path
        );
    }

    let confinement = crate::sandbox::confinement::Confinement::for_host(
        ctx.env,
        crate::sandbox::rootless::Identity::current().is_some(),
        &crate::sandbox::cgroup_parent(ctx.env),
    )
    .map_err(PlanError::Invalid)?;
    Ok(InvokePlan {
        function: function.logical_id.clone(),
        full_path: function.full_path.clone(),
        runtime: if package_type == PackageType::Zip {
            runtime
        } else {
            None
        },
        handler,
        package_type,
        architecture,
        memory_size,
        timeout,
        memory_limit: !args.no_memory_limit,
        ephemeral_storage,
        code_path,
        code_archive,
        inline_code: match &function.code {
            Code::Inline(source) => Some(source.clone()),
            _ => None,
        },
        image,
        image_config,
        layers,
        environment: resolved.vars,
        event,
        template: template_path,
        network,
        emulator: args.emulator,
        debug,
        add_hosts: args.add_host.clone(),
        dns: args.container_dns.clone(),
        log_file: args.log_file.as_ref().map(|p| ctx.cwd.join(p)),
        tenant_id: args.tenant_id.clone(),
        layer_cache_dir: args
            .layer_cache_basedir
            .as_ref()
            .map_or_else(|| paths::default_layer_cache(ctx.env), |p| ctx.cwd.join(p)),
        skip_pull_image: args.skip_pull_image,
        force_image_build: args.force_image_build,
        shutdown: args.shutdown,
        mount_symlinks: args.mount_symlinks,
        confinement,
        aws: session,
    })
}

/// The image of an Image function. Images that only `docker build` could make (before `sam build`,
/// or the local tag `sam build` leaves in Docker's store) get a message that says what to do.
fn image_function_uri(function: &Function) -> Result<String, PlanError> {
    let docker_context = function
        .metadata()
        .and_then(|m| m.get("DockerContext"))
        .and_then(Value::as_str);
    let build_hint = |context: &str| {
        format!(
            "lamina runs images but does not build them: build it as an OCI layout (docker buildx build --output type=oci,tar=false,dest=./image {context}, or buildah) and set ImageUri: oci:./image, or push it to a registry and set ImageUri to it"
        )
    };
    match (function.image_uri(), docker_context) {
        // `sam build` tags images like `helloworldfunction:python3.12-v1`, in Docker's own store.
        (Some(uri), Some(context)) if !uri.starts_with("oci:") && !uri.contains('/') => {
            Err(invalid(
                function,
                &format!(
                    "ImageUri `{uri}` names an image `sam build` made in a local Docker daemon from {context}, which lamina cannot read; {}",
                    build_hint(context)
                ),
            ))
        }
        (Some(uri), _) => Ok(uri),
        (None, Some(context)) => Err(invalid(
            function,
            &format!(
                "no ImageUri: the image is to be built from Metadata.DockerContext ({context}); {}",
                build_hint(context)
            ),
        )),
        (None, None) => Err(PlanError::Invalid(format!(
            "ImageUri not provided for Function: {} of PackageType: Image",
            function.full_path
        ))),
    }
}

fn invalid(function: &Function, message: &str) -> PlanError {
    PlanError::Invalid(format!("function {}: {message}", function.full_path))
}

fn parameter_overrides(
    parsed: &ParsedInvoke,
    cwd: &Path,
) -> Result<params::ParameterOverrides, PlanError> {
    if parsed.parameter_overrides_from_cli
        || !parsed.config.values.contains_key("parameter_overrides")
    {
        return params::parse_tokens(&parsed.args.parameter_overrides, cwd)
            .map_err(PlanError::Params);
    }
    params::parse_config_value(&parsed.config.values["parameter_overrides"], cwd)
        .map_err(PlanError::Params)
}

/// The runtime must be one lamina knows; a retired runtime gets SAM's warning first.
fn check_runtime(
    function: &Function,
    runtime: &str,
    template_runtime: Option<&str>,
) -> Result<&'static runtimes::Runtime, PlanError> {
    if let Some(rt) = template_runtime.filter(|rt| runtimes::is_deprecated(rt)) {
        tracing::warn!(
            "WARNING: {rt} is no longer supported by AWS Lambda, please update to a newer supported runtime. For more information please check AWS Lambda Runtime Support Policy: https://docs.aws.amazon.com/lambda/latest/dg/runtime-support-policy.html"
        );
    }
    runtimes::find(runtime).ok_or_else(|| {
        PlanError::Invalid(format!(
            "Unsupported Lambda runtime: {runtime} (function {}). For a list of supported runtimes, please visit https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html",
            function.full_path
        ))
    })
}

/// A local layer whose content is missing is an error, like a missing CodeUri.
fn check_layer_paths(function: &Function, layers: &[Layer]) -> Result<(), PlanError> {
    for layer in layers {
        if let Layer::Local {
            logical_id, path, ..
        } = layer
            && let Err(err) = std::fs::metadata(path)
        {
            return Err(PlanError::Invalid(format!(
                "Local layer path '{}' of layer {logical_id} (function {}) cannot be used: {err}. Verify its ContentUri, or run 'sam build' if the path is a build artifact.",
                path.display(),
                function.full_path
            )));
        }
    }
    Ok(())
}

/// `--invoke-image`: a `FullPath=URI` entry for this function wins over a plain `URI`; a later
/// value wins over an earlier one (SAM keeps them in a dict).
fn invoke_image(values: &[String], full_path: &str) -> Option<String> {
    let specific = values.iter().rev().find_map(|v| {
        v.split_once('=')
            .filter(|(k, _)| *k == full_path)
            .map(|(_, uri)| uri.to_string())
    });
    specific.or_else(|| values.iter().rev().find(|v| !v.contains('=')).cloned())
}

/// The directory mounted at `/var/task`, and the archive it is unpacked from when there is one.
fn code_location(
    function: &Function,
    ctx: &Context,
) -> Result<(PathBuf, Option<PathBuf>), PlanError> {
    let cache = paths::cache_root(ctx.env);
    match &function.code {
        Code::Inline(source) => {
            let digest = hex::encode(Sha256::digest(source.as_bytes()));
            Ok((cache.join("inline-v1").join(digest), None))
        }
        Code::None => Err(invalid(
            function,
            "a Zip function needs CodeUri or InlineCode",
        )),
        Code::Path(path) => {
            let metadata = std::fs::metadata(path).map_err(|e| {
                PlanError::Invalid(format!(
                    "Local code path '{}' of function {} cannot be used: {e}. Verify its CodeUri, or run 'sam build' if the path is a build artifact.",
                    path.display(),
                    function.full_path
                ))
            })?;
            if metadata.is_dir() {
                return Ok((path.clone(), None));
            }
            let is_archive = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "zip" | "ZIP" | "jar" | "JAR"));
            if !is_archive {
                return Err(invalid(
                    function,
                    &format!(
                        "CodeUri '{}' is a file but not a .zip or .jar archive",
                        path.display()
                    ),
                ));
            }
            let digest = sha256_file(path).map_err(|e| {
                PlanError::Invalid(format!(
                    "cannot read code archive '{}': {e}",
                    path.display()
                ))
            })?;
            Ok((cache.join("code-v1").join(digest), Some(path.clone())))
        }
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// `--network` and `--docker-network` together: both on the command line must agree; otherwise
/// the explicit `--network` wins over a `--docker-network` from `SAM_DOCKER_NETWORK` or samconfig.
fn network_mode(
    network: Option<NetworkMode>,
    docker_network: Option<&str>,
    docker_network_from_cli: bool,
) -> Result<NetworkMode, PlanError> {
    let from_docker = || {
        docker_network.map(|name| match name {
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            other => {
                if !matches!(other, "private" | "bridge" | "default") {
                    tracing::info!(
                        "lamina has no Docker networks: --docker-network {other} runs the function on lamina's private network"
                    );
                }
                NetworkMode::Private
            }
        })
    };
    match (network, docker_network_from_cli) {
        (Some(mode), true) => match from_docker() {
            Some(other) if other != mode => Err(PlanError::Usage(format!(
                "--network {} conflicts with --docker-network {}",
                mode_name(mode),
                docker_network.unwrap_or_default()
            ))),
            _ => Ok(mode),
        },
        (Some(mode), false) => Ok(mode),
        (None, _) => Ok(from_docker().unwrap_or(NetworkMode::Private)),
    }
}

/// botocore's region name check.
fn check_region(region: &str) -> Result<(), PlanError> {
    static REGION: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?$").expect("valid regex")
    });
    if REGION.is_match(region) {
        Ok(())
    } else {
        Err(PlanError::Invalid(format!(
            "Provided region: {region} doesn't match a supported format"
        )))
    }
}

fn mode_name(mode: NetworkMode) -> &'static str {
    match mode {
        NetworkMode::Private => "private",
        NetworkMode::None => "none",
        NetworkMode::Host => "host",
    }
}

fn debug_plan(
    args: &crate::cli::InvokeArgs,
    cwd: &Path,
    runtime: Option<&str>,
) -> Result<Option<DebugPlan>, PlanError> {
    if args.debug_port.is_empty() {
        return Ok(None);
    }
    let debugger_path = match &args.debugger_path {
        None => None,
        Some(path) => {
            let full = cwd.join(path);
            if !full.exists() {
                return Err(PlanError::Invalid(format!(
                    "'{}' could not be found.",
                    path.display()
                )));
            }
            if !full.is_dir() {
                return Err(PlanError::Invalid(format!(
                    "'{}' should be a directory with the debugger in it.",
                    path.display()
                )));
            }
            Some(fs_err::canonicalize(&full).map_err(|e| PlanError::Invalid(e.to_string()))?)
        }
    };
    let args_list: Vec<String> = args
        .debug_args
        .as_deref()
        .map(|a| a.split(' ').map(str::to_string).collect())
        .unwrap_or_default();
    Ok(Some(DebugPlan {
        ports: args.debug_port.clone(),
        debugger_path,
        settings: crate::debug::settings(
            runtime.unwrap_or_default(),
            args.debug_port[0],
            &args_list,
        ),
        args: args_list,
    }))
}

/// What the function sees of `session`: its region and credentials, or SAM's stand-ins.
fn identity(session: &aws::Session) -> AwsIdentity {
    match &session.credentials {
        Some(credentials) => AwsIdentity {
            region: session.region.clone(),
            access_key_id: credentials.access_key_id().to_string(),
            secret_access_key: credentials.secret_access_key().to_string(),
            session_token: credentials
                .session_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        },
        None => AwsIdentity {
            region: session.region.clone(),
            access_key_id: DEFAULT_ACCESS_KEY.into(),
            secret_access_key: DEFAULT_SECRET_KEY.into(),
            session_token: None,
        },
    }
}
