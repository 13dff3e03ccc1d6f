//! Running a planned invoke for real: the image, the sandbox, the Runtime API, the outcome.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncBufReadExt;

use crate::cli::{EmulatorKind, NetworkMode};
use crate::emulator::{Invocation, RuntimeApi};
use crate::image::pull::PullContext;
use crate::image::{Cache, CachedImage, Freshness, ImageRef, Mirrors, Reporter, Settings};
use crate::invoke::{self, Limits, Outcome};
use crate::paths;
use crate::plan::InvokePlan;
use crate::sandbox::confinement::ProcessBound;
use crate::sandbox::{self, Paths, Sandbox, SpecInputs, hook};
use crate::template::PackageType;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
}

/// What a run stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) after its sandbox existed says last.
const STOPPED: &str = "Interrupted: the function was stopped and its sandbox removed.";

/// Where the function's logs and lamina's START/END/REPORT lines go: stderr, or `--log-file`.
pub type LogSink = Arc<Mutex<Box<dyn Write + Send>>>;

fn log_line(sink: &LogSink, line: &str) {
    let mut sink = sink.lock().expect("log sink");
    let _ = sink.write_all(line.as_bytes());
    let _ = sink.write_all(b"\n");
    let _ = sink.flush();
}

/// Runs the plan; returns the exit code. The function's result is written to `stdout`.
pub fn run(
    plan: &InvokePlan,
    env: &dyn Fn(&str) -> Option<String>,
    stdout: &mut dyn Write,
    logs: LogSink,
    reporter: &dyn Reporter,
) -> Result<u8, RunError> {
    let emulated = sandbox::emulation::check(
        plan.architecture,
        sandbox::emulation::host(),
        std::path::Path::new(sandbox::emulation::BINFMT_DIR),
    )
    .map_err(|e| RunError::Unsupported(format!("function {}: {e}", plan.full_path)))?;
    if emulated {
        tracing::info!(
            "Notice: {} runs under {} emulation (binfmt_misc), several times slower than natively",
            plan.full_path,
            plan.architecture
        );
    }
    let Privileges {
        can_limit_memory,
        id_mapping,
    } = check_privileges(env)?;
    // From here on Ctrl-C, SIGTERM and SIGHUP stop the run and clean up (see `signals`).
    crate::signals::install();
    let phase_start = Instant::now();
    let image = pull(plan, env, reporter)?;
    let image_time = phase_start.elapsed();
    crate::artifacts::ensure_code(plan, plan.inline_code.as_deref())
        .map_err(|e| RunError::Other(e.to_string()))?;
    warn_unreadable(plan);
    let downloaded = match crate::remote_layers::ensure(plan, env, reporter) {
        Ok(downloaded) => downloaded,
        Err(crate::remote_layers::LayerError::Interrupted) => {
            log_line(
                &logs,
                &crate::remote_layers::LayerError::Interrupted.to_string(),
            );
            return Ok(crate::signals::stopped_exit_code());
        }
        Err(err) => return Err(RunError::Other(err.to_string())),
    };
    let opt = crate::artifacts::ensure_layers(plan, &paths::cache_root(env), &downloaded)
        .map_err(|e| RunError::Other(e.to_string()))?;
    if crate::signals::received().is_some() {
        log_line(&logs, "Interrupted: the function was not started.");
        return Ok(crate::signals::stopped_exit_code());
    }

    let (request_id, trace_id) = Invocation::new_ids();
    let id = format!("lamina-{}", &request_id[..13].replace('-', ""));
    sandbox::collect_garbage(env);
    let paths = Paths::for_invoke(&id, env);
    let host_network = plan.network == NetworkMode::Host;
    // `--network private`: outbound access through slirp4netns when it can run here.
    let outbound = plan.network == NetworkMode::Private
        && match sandbox::network::unavailable_reason() {
            None => true,
            Some(reason) => {
                tracing::info!("Notice: the function has loopback only: {reason}");
                false
            }
        };

    // In the host's network the Runtime API listens on a free loopback port instead of 9001.
    let host_listener = if host_network {
        Some(
            std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| RunError::Other(format!("cannot listen on 127.0.0.1: {e}")))?,
        )
    } else {
        None
    };
    let api_address = match &host_listener {
        Some(listener) => listener
            .local_addr()
            .map_err(|e| RunError::Other(e.to_string()))?
            .to_string(),
        None => hook::RUNTIME_API_ADDRESS.to_string(),
    };
    let (rie_path, rie_host) = if plan.emulator == EmulatorKind::Rie {
        rie_binary(&image, env)?
    } else {
        (String::new(), None)
    };
    paths
        .create_bundle()
        .map_err(|e| RunError::Other(format!("cannot create {}: {e}", paths.bundle.display())))?;
    let extensions = opt.as_deref().map(extensions_in).unwrap_or_default();
    let setup = Setup {
        outbound,
        has_extensions: !extensions.is_empty(),
        api_address: &api_address,
        host_network,
        opt,
        rie_path,
        rie_host,
        id_mapping,
    };
    let inputs = match spec_inputs(plan, &image, &paths, setup) {
        Ok(inputs) => inputs,
        Err(err) => {
            // Nothing may stay behind, also when the function cannot even be set up.
            sandbox::remove_bundle(&paths.bundle);
            return Err(err);
        }
    };
    let invocation = Invocation {
        request_id: request_id.clone(),
        event: Bytes::from(plan.event.clone()),
        function_arn: function_arn(plan),
        function_name: plan.function.clone(),
        function_version: "$LATEST".into(),
        handler: plan.handler.clone().unwrap_or_default(),
        timeout: Duration::from_secs(plan.timeout),
        trace_id,
        client_context: None,
        tenant_id: plan.tenant_id.clone(),
    };

    let started = Instant::now();
    let (mut sandbox, placed) = match Sandbox::create(&id, &paths, &inputs) {
        Ok(created) => created,
        // A rootless create that fails for want of a user namespace gets the reason and the fix.
        Err(err) if inputs.rootless.is_some() => {
            return Err(match sandbox::rootless::userns_refused_by_seccomp() {
                Some(reason) => RunError::Unsupported(format!(
                    "cannot run functions as an ordinary user: {reason}"
                )),
                None => err.into(),
            });
        }
        Err(err) => return Err(err.into()),
    };
    // A stop signal during `create` (which cannot be interrupted) is answered now: dropping the
    // sandbox kills and deletes it.
    if crate::signals::received().is_some() {
        drop(sandbox);
        log_line(&logs, STOPPED);
        return Ok(crate::signals::stopped_exit_code());
    }
    // The async runtime starts only now: libcontainer forks in `create`, and a fork of a process
    // whose other threads may hold locks (the allocator's, a logger's) can deadlock the child.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| RunError::Other(format!("cannot start the async runtime: {e}")))?;
    let create_time = started.elapsed();
    if plan.memory_limit
        && can_limit_memory
        && sandbox::rootless::Identity::current().is_some()
        && let Err(err) =
            sandbox::rootless::limit_memory(&paths.cgroups_path, plan.memory_size * 1024 * 1024)
    {
        tracing::info!(
            "Notice: cannot set the memory limit ({err}); the function runs without one"
        );
    }
    if plan.confinement.processes == ProcessBound::PidsCgroup
        && sandbox::rootless::Identity::current().is_some()
        && let Err(err) = sandbox::confinement::limit_pids(&paths.cgroups_path)
    {
        tracing::info!(
            "Notice: cannot set the pids limit ({err}); the function is bounded by RLIMIT_NPROC only"
        );
    }
    let rie = plan.emulator == EmulatorKind::Rie;
    // Lives as long as the sandbox; dropping it stops slirp4netns.
    let mut slirp_guard: Option<sandbox::network::Slirp> = None;
    let mut debug_forwards: Vec<Forward> = Vec::new();
    let (listener, netns) = match (placed, host_listener) {
        (Some(placed), _) => {
            if outbound {
                let userns = sandbox::rootless::Identity::current().map(|_| &placed.userns);
                match sandbox::network::attach(&placed.netns, userns) {
                    Ok(slirp) => slirp_guard = Some(slirp),
                    Err(err) => tracing::info!("Notice: the function has loopback only: {err}"),
                }
            }
            if let Some(debug) = plan.debug.as_ref() {
                let userns = sandbox::rootless::Identity::current().map(|_| &placed.userns);
                debug_forwards = forward_listeners(&debug.ports, &placed.netns, userns)?;
            }
            (placed.listener, Some(placed.netns))
        }
        (None, listener) => (listener, None),
    };
    let listener = match (listener, rie) {
        (Some(listener), false) => Some(listener),
        (_, true) => None,
        (None, false) => {
            return Err(RunError::Other(
                "the sandbox has no Runtime API socket".into(),
            ));
        }
    };
    let event = invocation.event.clone();
    let (api, events) = RuntimeApi::new(invocation);
    let api_control = api.clone();
    api.expect_extensions(extensions.len());
    let stdout_fd = sandbox.stdout.take();
    let stderr_fd = sandbox.stderr.take();
    let finished = runtime.block_on(async {
        let server = match listener {
            Some(listener) => {
                listener
                    .set_nonblocking(true)
                    .map_err(|e| RunError::Other(e.to_string()))?;
                let listener = tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| RunError::Other(e.to_string()))?;
                Some(tokio::spawn(api.serve(listener)))
            }
            None => None,
        };
        for forward in debug_forwards.drain(..) {
            tokio::spawn(serve_forward(forward));
        }
        let mut forwarders = Vec::new();
        for fd in [stdout_fd, stderr_fd].into_iter().flatten() {
            forwarders.push(tokio::spawn(forward(fd, logs.clone())));
        }
        sandbox.start()?;
        let start_time = started.elapsed() - create_time;
        let pid = sandbox.pid;
        let exited = async move {
            let status =
                tokio::task::spawn_blocking(move || nix::sys::wait::waitpid(pid, None)).await;
            match status {
                Ok(Ok(status)) => sandbox::describe_exit(status),
                other => format!("{other:?}"),
            }
        };
        let exited = tokio::spawn(exited);
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel::<String>();
        let exited_for_drive = async move { exit_rx.await.unwrap_or_else(|_| "unknown".into()) };
        let relay = tokio::spawn(async move {
            let status = exited.await.unwrap_or_else(|_| "unknown".into());
            let _ = exit_tx.send(status);
        });
        let start_logs = logs.clone();
        let start_id = request_id.clone();
        let limits = Limits::for_function(Duration::from_secs(plan.timeout), plan.debug.is_some());
        let drive = async {
            if rie {
                invoke::rie::drive(netns, event, exited_for_drive, started, limits).await
            } else {
                invoke::drive(events, exited_for_drive, started, limits, move || {
                    log_line(
                        &start_logs,
                        &format!("START RequestId: {start_id} Version: $LATEST"),
                    );
                })
                .await
            }
        };
        let finished = tokio::select! {
            finished = drive => Some(finished),
            _ = crate::signals::requested() => None,
        };
        // `--shutdown` with extensions, as Lambda's 2 s shutdown budget: extensions get SHUTDOWN
        // with a deadline 1.4 s away, then the runtime gets SIGTERM and 0.6 s (Lambda does both
        // at once; here the runtime is the sandbox's init, and its exit would end the extensions).
        // Without extensions the runtime is SIGKILLed at once, as by Lambda and the RIE.
        if plan.shutdown && !rie && !extensions.is_empty() {
            const EXTENSIONS: Duration = Duration::from_millis(1400);
            const RUNTIME: Duration = Duration::from_millis(600);
            api_control.shutdown("spindown", EXTENSIONS);
            wait_while_more_than(&sandbox, 1, EXTENSIONS).await;
            if !relay.is_finished() {
                sandbox.terminate_runtime();
                wait_while_more_than(&sandbox, 0, RUNTIME).await;
            }
        }
        // The invocation is over: the environment goes away.
        let ended = Instant::now();
        sandbox.kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), relay).await;
        for forwarder in forwarders {
            let _ = tokio::time::timeout(Duration::from_millis(500), forwarder).await;
        }
        if let Some(server) = server {
            server.abort();
        }
        Ok::<_, RunError>((finished, start_time, ended))
    })?;
    let (finished, start_time, ended) = finished;
    let memory = sandbox.memory();
    sandbox.destroy();
    // slirp4netns goes with the namespace it served.
    drop(slirp_guard);
    let teardown_time = ended.elapsed();
    if env(crate::env_vars::LAMINA_TIMINGS).is_some_and(|v| v == "1") {
        // For scripts/bench: where an invoke's time goes.
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (init, invoke) = finished
            .as_ref()
            .map_or((0.0, 0.0), |f| (f.init.map_or(0.0, ms), ms(f.duration)));
        log_line(
            &logs,
            &format!(
                "lamina timings: image={:.1}ms create={:.1}ms start={:.1}ms init={init:.1}ms invoke={invoke:.1}ms teardown={:.1}ms",
                ms(image_time),
                ms(create_time),
                ms(start_time),
                ms(teardown_time)
            ),
        );
    }

    let Some(mut finished) = finished else {
        log_line(&logs, STOPPED);
        return Ok(crate::signals::stopped_exit_code());
    };
    if memory.oom_killed && !matches!(finished.outcome, Outcome::Success { .. }) {
        finished.outcome = Outcome::OutOfMemory;
    }
    if rie {
        // The RIE printed its own START/END/REPORT (with a made-up memory figure); add the real one.
        if let Some(peak) = memory.peak_bytes {
            log_line(
                &logs,
                &format!(
                    "lamina: Max Memory Used (measured): {} MB",
                    peak.div_ceil(1024 * 1024)
                ),
            );
        }
    } else {
        if finished.delivered {
            log_line(&logs, &format!("END RequestId: {request_id}"));
        }
        log_line(
            &logs,
            &invoke::report_line(&request_id, &finished, plan.memory_size, memory.peak_bytes),
        );
    }
    let presentation = invoke::present(
        &finished.outcome,
        &request_id,
        Duration::from_secs(plan.timeout),
    );
    let _ = stdout.write_all(&presentation.stdout);
    let _ = stdout.flush();
    // SAM writes a newline to the log stream after the response, keeping stdout exactly the payload.
    log_line(&logs, "");
    Ok(presentation.exit_code)
}

/// A debug port: a listener on the host's loopback and the sandbox to forward its connections into.
struct Forward {
    listener: std::net::TcpListener,
    port: u16,
    netns: std::os::fd::OwnedFd,
    userns: Option<std::os::fd::OwnedFd>,
}

/// Binds every `--debug-port` on the host's 127.0.0.1 before the function starts, so that a
/// debugger can attach from its first instruction; a port in use is a clear error.
fn forward_listeners(
    ports: &[u16],
    netns: &std::os::fd::OwnedFd,
    userns: Option<&std::os::fd::OwnedFd>,
) -> Result<Vec<Forward>, RunError> {
    let mut forwards = Vec::new();
    for &port in ports {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
            RunError::Other(format!(
                "debug port {port}: cannot listen on 127.0.0.1:{port}: {e}"
            ))
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| RunError::Other(e.to_string()))?;
        let dup =
            |fd: &std::os::fd::OwnedFd| fd.try_clone().map_err(|e| RunError::Other(e.to_string()));
        forwards.push(Forward {
            listener,
            port,
            netns: dup(netns)?,
            userns: userns.map(dup).transpose()?,
        });
    }
    Ok(forwards)
}

/// Copies each connection to the debug port into the sandbox and back.
async fn serve_forward(forward: Forward) {
    let Ok(listener) = tokio::net::TcpListener::from_std(forward.listener) else {
        return;
    };
    let netns = std::sync::Arc::new(forward.netns);
    let userns = std::sync::Arc::new(forward.userns);
    while let Ok((mut outside, _)) = listener.accept().await {
        let (netns, userns, port) = (netns.clone(), userns.clone(), forward.port);
        tokio::spawn(async move {
            let inside = tokio::task::spawn_blocking(move || {
                sandbox::forward::connect_inside(&netns, (*userns).as_ref(), port)
            })
            .await;
            let Ok(Ok(inside)) = inside else { return };
            if inside.set_nonblocking(true).is_err() {
                return;
            }
            let Ok(mut inside) = tokio::net::TcpStream::from_std(inside) else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
        });
    }
}

/// The external extensions a function's layers bring: executable files in `/opt/extensions`.
fn extensions_in(opt: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(opt.join("extensions")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| {
            std::fs::metadata(e.path())
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Starts every external extension in the background, then execs the runtime (Lambda starts
/// extensions first; the Runtime API holds the runtime's first event until they registered).
const EXTENSION_LAUNCHER: &str = r#"for e in /opt/extensions/*; do if [ -f "$e" ] && [ -x "$e" ]; then "$e" & fi; done; exec "$@""#;

/// How `--emulator rie` starts the image's Runtime Interface Emulator.
const RIE_IN_IMAGE: &str = "/usr/local/bin/aws-lambda-rie";
/// Where a host RIE binary (`LAMINA_RIE_PATH`) is mounted, as SAM mounts its own copy.
const RIE_MOUNTED: &str = "/var/rapid/aws-lambda-rie";

/// The RIE to run: a host binary from `LAMINA_RIE_PATH` (mounted read-only at /var/rapid, as SAM
/// does), else the image's own.
fn rie_binary(
    image: &CachedImage,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Option<std::path::PathBuf>), RunError> {
    if let Some(host) = env(crate::env_vars::LAMINA_RIE_PATH).filter(|p| !p.is_empty()) {
        let host = std::path::PathBuf::from(host);
        if !host.is_file() {
            return Err(RunError::Other(format!(
                "LAMINA_RIE_PATH: {} is not a file",
                host.display()
            )));
        }
        return Ok((RIE_MOUNTED.into(), Some(host)));
    }
    if image
        .rootfs
        .join(RIE_IN_IMAGE.trim_start_matches('/'))
        .exists()
    {
        return Ok((RIE_IN_IMAGE.into(), None));
    }
    Err(RunError::Other(format!(
        "--emulator rie: image {} has no {RIE_IN_IMAGE}; set LAMINA_RIE_PATH to an aws-lambda-rie binary (the aws-sam-cli wheel has one in samcli/local/rapid/)",
        image.reference
    )))
}

/// What the user running lamina may do.
struct Privileges {
    can_limit_memory: bool,
    /// The user namespace's ids; `None` as root (no user namespace).
    id_mapping: Option<sandbox::idmap::IdMapping>,
}

/// As another user than root: user namespaces must be allowed, and a cgroup subtree of one's own is
/// needed on cgroup v1 (libcontainer creates a cgroup in every hierarchy); on v2 it only brings the
/// memory limit.
fn check_privileges(env: &dyn Fn(&str) -> Option<String>) -> Result<Privileges, RunError> {
    let Some(me) = sandbox::rootless::Identity::current() else {
        return Ok(Privileges {
            can_limit_memory: true,
            id_mapping: None,
        });
    };
    if let Some(reason) = sandbox::rootless::userns_blocked(std::path::Path::new("/proc")) {
        return Err(RunError::Unsupported(format!(
            "cannot run functions as an ordinary user: {reason}"
        )));
    }
    let mode = sandbox::idmap::Mode::parse(env(crate::env_vars::LAMINA_ID_MAPPING).as_deref())
        .map_err(RunError::Unsupported)?;
    let system = sandbox::idmap::System::read(me.uid, me.gid, env("PATH").as_deref());
    let id_mapping = Some(sandbox::idmap::choose(mode, &system).map_err(RunError::Unsupported)?);
    let parent = sandbox::cgroup_parent(env);
    if sandbox::rootless::delegated(&parent) {
        return Ok(Privileges {
            can_limit_memory: true,
            id_mapping,
        });
    }
    let user = &system.user;
    match sandbox::cgroup::version() {
        sandbox::cgroup::Version::V1 => Err(RunError::Unsupported(format!(
            "running as {user} (not root) needs a cgroup subtree of its own on this cgroup v1 host; create it once with: sudo lamina system setup-rootless --user {user}"
        ))),
        sandbox::cgroup::Version::V2 => {
            tracing::info!(
                "Notice: no delegated cgroup for {user}: the function runs without a memory limit (sudo lamina system setup-rootless --user {user} adds one); Max Memory Used is measured all the same"
            );
            Ok(Privileges {
                can_limit_memory: false,
                id_mapping,
            })
        }
    }
}

fn pull(
    plan: &InvokePlan,
    env: &dyn Fn(&str) -> Option<String>,
    reporter: &dyn Reporter,
) -> Result<CachedImage, RunError> {
    let cache = Cache::open(&paths::cache_root(env))?;
    let settings = Settings::load(env)?;
    let mirrors = Mirrors::load(env, &settings)?;
    let ctx = PullContext {
        cache: &cache,
        mirrors: &mirrors,
        refresh: PullContext::refresh_interval(env, &settings),
        env,
        reporter,
    };
    let freshness = if plan.skip_pull_image {
        Freshness::Offline
    } else if plan.force_image_build {
        Freshness::CheckNow { strict: false }
    } else {
        Freshness::Default
    };
    Ok(crate::image::ensure(
        &ctx,
        &ImageRef::parse(&plan.image)?,
        plan.architecture,
        freshness,
    )?)
}

/// Waits while more than `left` processes remain in the sandbox, at most `budget` (all of it when
/// there is no cgroup to count them in).
async fn wait_while_more_than(sandbox: &sandbox::Sandbox, left: usize, budget: Duration) {
    let give_up = Instant::now() + budget;
    while Instant::now() < give_up && sandbox.process_count().is_none_or(|n| n > left) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Code and local layer directories with files that only work because the sandbox runs as root.
fn warn_unreadable(plan: &InvokePlan) {
    if let Some(code) = &plan.code_path {
        crate::readability::warn_unreadable("the code", code, plan.code_archive.as_deref());
    }
    for layer in &plan.layers {
        if let crate::template::Layer::Local {
            logical_id, path, ..
        } = layer
            && path.is_dir()
        {
            crate::readability::warn_unreadable(&format!("layer {logical_id}"), path, None);
        }
    }
}

fn function_arn(plan: &InvokePlan) -> String {
    let region = plan
        .environment
        .get("AWS_REGION")
        .map_or("us-east-1", String::as_str);
    format!(
        "arn:aws:lambda:{region}:123456789012:function:{}",
        plan.function
    )
}

/// The container's command line, environment and mounts.
/// What the sandbox is given besides the plan and the image.
struct Setup<'a> {
    /// slirp4netns will give the private network outbound access (DNS at 10.0.2.3).
    outbound: bool,
    /// The layers bring external extensions (a shell starts them before the runtime).
    has_extensions: bool,
    /// `AWS_LAMBDA_RUNTIME_API` for the function.
    api_address: &'a str,
    host_network: bool,
    /// The merged layers, mounted at `/opt`.
    opt: Option<std::path::PathBuf>,
    /// `--emulator rie`: the RIE's path in the sandbox, and the host binary to mount there.
    rie_path: String,
    rie_host: Option<std::path::PathBuf>,
    /// The user namespace's ids; `None` as root.
    id_mapping: Option<sandbox::idmap::IdMapping>,
}

fn spec_inputs(
    plan: &InvokePlan,
    image: &CachedImage,
    paths: &Paths,
    setup: Setup,
) -> Result<SpecInputs, RunError> {
    let Setup {
        outbound,
        has_extensions,
        api_address,
        host_network,
        opt,
        rie_path,
        rie_host,
        id_mapping: rootless,
    } = setup;
    let rie_path = rie_path.as_str();
    let config = &image.meta.run_config;
    let debug_command = plan.debug.as_ref().and_then(|d| d.settings.command.clone());
    let rie_command: Vec<String> = [rie_path, "--log-level", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let image_config = &plan.image_config;
    let entrypoint = image_config
        .entry_point
        .clone()
        .unwrap_or_else(|| config.entrypoint.clone());
    let rie = plan.emulator == EmulatorKind::Rie;
    let args: Vec<String> = match plan.package_type {
        // The image's RIE, started as SAM starts its own: for a Zip function it finds the bootstrap
        // (/var/task, /opt, /var/runtime) and takes the handler from AWS_LAMBDA_FUNCTION_HANDLER.
        // In debug mode the RIE starts the runtime's debug command instead (SAM's `E + command`).
        PackageType::Zip if rie => rie_command
            .clone()
            .into_iter()
            .chain(debug_command.clone().unwrap_or_default())
            .collect(),
        PackageType::Image if rie => {
            let command = image_config
                .command
                .clone()
                .unwrap_or_else(|| config.cmd.clone());
            // SAM: with --debug-args, they replace the image's entrypoint (`E + A + Cmd`).
            let debug_args = plan
                .debug
                .as_ref()
                .map(|d| d.args.clone())
                .filter(|a| !a.is_empty());
            rie_command
                .clone()
                .into_iter()
                .chain(debug_args.unwrap_or_else(|| entrypoint.clone()))
                .chain(command)
                .collect()
        }
        // Debug mode replaces the runtime's command for some runtimes, as SAM does (e.g. python:
        // `/var/lang/bin/python3.X <--debug-args> /var/runtime/bootstrap.py`).
        PackageType::Zip if debug_command.is_some() => debug_command.clone().unwrap_or_default(),
        // Zip, custom runtime: Lambda runs the function's own bootstrap (the image has none).
        PackageType::Zip
            if plan
                .runtime
                .as_deref()
                .is_some_and(|r| r.starts_with("provided")) =>
        {
            vec![provided_bootstrap(plan)?]
        }
        // Zip, managed runtime: the base image's entrypoint with the handler, as Lambda and SAM run it.
        PackageType::Zip => {
            let handler = plan.handler.clone().unwrap_or_default();
            if entrypoint.is_empty() {
                return Err(RunError::Other(format!(
                    "image {} has no Entrypoint to run handler {handler} with",
                    plan.image
                )));
            }
            entrypoint.into_iter().chain([handler]).collect()
        }
        PackageType::Image => {
            let command = image_config
                .command
                .clone()
                .unwrap_or_else(|| config.cmd.clone());
            let args: Vec<String> = entrypoint.into_iter().chain(command).collect();
            if args.is_empty() {
                return Err(RunError::Other(format!(
                    "image {} has neither Entrypoint nor Cmd, and ImageConfig sets none",
                    plan.image
                )));
            }
            args
        }
    };
    // With extensions in the layers (and lamina serving the API), a shell starts them first.
    let args = if !rie && has_extensions {
        if !image.rootfs.join("bin/sh").exists() {
            return Err(RunError::Other(format!(
                "the layers bring extensions, but image {} has no /bin/sh to start them",
                plan.image
            )));
        }
        [
            "/bin/sh".to_string(),
            "-c".into(),
            EXTENSION_LAUNCHER.into(),
            "lamina-extensions".into(),
        ]
        .into_iter()
        .chain(args)
        .collect()
    } else {
        args
    };
    // The image's variables, then lamina's (SAM's injected ones, the template's, the overrides).
    let mut env: indexmap::IndexMap<String, String> = config
        .env
        .iter()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for (key, value) in &plan.environment {
        env.insert(key.clone(), value.clone());
    }
    if rie {
        env.shift_remove("AWS_LAMBDA_RUNTIME_API");
    } else {
        env.insert("AWS_LAMBDA_RUNTIME_API".into(), api_address.to_string());
    }
    let cwd = image_config
        .working_directory
        .clone()
        .or_else(|| (!config.working_dir.is_empty()).then(|| config.working_dir.clone()))
        .unwrap_or_else(|| "/var/task".into());

    let hosts_file = paths.bundle.join("hosts");
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\tlamina\n",
    );
    if outbound {
        hosts.push_str(&format!(
            "{}\thost.docker.internal\n",
            sandbox::network::HOST_LOOPBACK
        ));
    }
    for entry in &plan.add_hosts {
        if let Some((name, ip)) = entry.split_once(':') {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    let resolv_file = paths.bundle.join("resolv.conf");
    let resolv = if plan.dns.is_empty() && outbound {
        format!("nameserver {}\n", sandbox::network::GUEST_DNS)
    } else if plan.dns.is_empty() {
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    } else {
        plan.dns
            .iter()
            .map(|ip| format!("nameserver {ip}\n"))
            .collect()
    };
    for (path, text) in [(&hosts_file, hosts), (&resolv_file, resolv)] {
        std::fs::write(path, text)
            .map_err(|e| RunError::Other(format!("cannot write {}: {e}", path.display())))?;
    }
    let exe = std::env::current_exe()
        .map_err(|e| RunError::Other(format!("cannot find lamina's own binary: {e}")))?;
    let hook = (!host_network).then(|| {
        (
            exe,
            vec![
                "lamina".to_string(),
                hook::HOOK_COMMAND.to_string(),
                paths.bundle.join("api.sock").display().to_string(),
            ]
            .into_iter()
            .chain(rie.then(|| hook::NETNS_ONLY.to_string()))
            .collect(),
        )
    });
    let extra_mounts = plan
        .debug
        .as_ref()
        .and_then(|d| d.debugger_path.clone())
        .map(|p| vec![(p, "/tmp/lambci_debug_files".to_string())])
        .unwrap_or_default()
        .into_iter()
        .chain(rie_host.map(|host| (host, RIE_MOUNTED.to_string())))
        .collect();
    Ok(SpecInputs {
        rootfs: image.rootfs.clone(),
        args,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd,
        code: if plan.package_type == PackageType::Zip {
            plan.code_path.clone()
        } else {
            None
        },
        opt,
        tmp_mb: plan.ephemeral_storage,
        hosts_file,
        resolv_file,
        host_network,
        // Rootless, lamina writes the limit itself once the cgroup exists (see run).
        memory_limit: (plan.memory_limit && rootless.is_none()).then(|| {
            (
                plan.memory_size * 1024 * 1024,
                sandbox::cgroup::can_limit_swap(),
            )
        }),
        seccomp: (plan.confinement.seccomp == sandbox::seccomp::Mode::DockerDefault)
            .then(sandbox::seccomp::profile),
        // Rootless, lamina writes the pids limit itself once the cgroup exists (see run).
        pids_limit: (plan.confinement.processes == ProcessBound::PidsCgroup && rootless.is_none())
            .then_some(sandbox::confinement::MAX_PROCESSES),
        device_rules: plan.confinement.device_rules,
        rootless,
        cgroups_path: paths.cgroups_path.clone(),
        hook,
        extra_mounts,
    })
}

/// The `bootstrap` of a custom-runtime function: in its code (`/var/task/bootstrap`); it must be an
/// executable file.
fn provided_bootstrap(plan: &InvokePlan) -> Result<String, RunError> {
    use std::os::unix::fs::PermissionsExt;
    let code = plan.code_path.clone().unwrap_or_default();
    let path = code.join("bootstrap");
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
            Ok("/var/task/bootstrap".into())
        }
        Ok(meta) if meta.is_file() => Err(RunError::Other(format!(
            "{} is not executable (hint: chmod +x {0}); a {} function runs it as its runtime",
            path.display(),
            plan.runtime.as_deref().unwrap_or("provided")
        ))),
        _ => Err(RunError::Other(format!(
            "function {} uses runtime {} but its code has no `bootstrap` file: expected {}",
            plan.full_path,
            plan.runtime.as_deref().unwrap_or("provided"),
            path.display()
        ))),
    }
}

/// Copies the function's output to the log sink line by line. Bytes that are not UTF-8 are
/// replaced, never a reason to stop (SAM stops forwarding logs at the first split character).
async fn forward(fd: std::os::fd::OwnedFd, sink: LogSink) {
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut reader = tokio::io::BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                log_line(&sink, text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}
