//! Real invokes: the test images from the local registry, run in libcontainer sandboxes with the
//! built-in Runtime API. Needs root (rootless invokes are later work) and the test registry.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::{
    Outcome, Project, Run, registry, rootless_user, setup_rootless, skip, test_images,
};

/// One image cache for every test of the run, as users share one (and as the parallel tests need).
fn shared_cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lamina-it-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // As lamina makes a cache root (it warns about one that others may enter).
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        dir
    })
}

pub(crate) struct Env {
    pub(crate) registry: String,
}

fn require_root() -> Option<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return skip("real invokes need root until rootless invokes land");
    }
    Some(())
}

pub(crate) fn sandbox_env() -> Option<Env> {
    require_root()?;
    Some(Env {
        registry: registry()?,
    })
}

/// `lamina local invoke` in `project` with its own runtime dir and cgroup parent, so the test can
/// check that nothing of the invoke is left behind.
pub(crate) struct Invoke<'a> {
    project: &'a Project,
    env: &'a Env,
    run_dir: PathBuf,
    cgroup_parent: String,
}

impl<'a> Invoke<'a> {
    pub(crate) fn new(project: &'a Project, env: &'a Env) -> Invoke<'a> {
        let unique = format!("{}-{}", std::process::id(), uuid_like());
        Invoke {
            project,
            env,
            run_dir: project.path().join(".run"),
            cgroup_parent: format!("lamina-test-{unique}"),
        }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Run {
        Run::new(self.project.path())
            .args(["local", "invoke"])
            .args(args)
            .env("LAMINA_CACHE_DIR", shared_cache().to_str().unwrap())
            .env(
                "LAMINA_REGISTRY_MIRROR",
                &format!("public.ecr.aws=http://{}", self.env.registry),
            )
            .env("LAMINA_RUNTIME_DIR", self.run_dir.to_str().unwrap())
            .env("LAMINA_CGROUP_PARENT", &self.cgroup_parent)
    }

    fn run(&self, args: &[&str]) -> Outcome {
        let out = self.command(args).output();
        self.assert_clean(&out);
        out
    }

    /// No bundle, container state, cgroup or process of the invoke remains.
    pub(crate) fn assert_clean(&self, out: &Outcome) {
        for dir in ["bundles", "containers"] {
            let path = self.run_dir.join(dir);
            let left: Vec<_> = std::fs::read_dir(&path)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(
                left.is_empty(),
                "left behind in {}: {left:?}\n{}",
                path.display(),
                out.stderr
            );
        }
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let leftover = hierarchy.path().join(&self.cgroup_parent);
            assert!(
                !leftover.exists(),
                "cgroup left behind: {}",
                leftover.display()
            );
        }
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

/// The MB of a REPORT line's `Max Memory Used`.
fn max_memory_used(report: &str) -> u64 {
    report
        .split("Max Memory Used: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|mb| mb.parse().ok())
        .unwrap_or_else(|| panic!("no Max Memory Used in {report:?}"))
}

fn report(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("REPORT RequestId: "))
        .unwrap_or_else(|| panic!("no REPORT line:\n{stderr}"))
}

#[test]
fn test_sandbox_hello_world_like_sam() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("hello-python");
    let invoke = Invoke::new(&project, &env);
    let out = invoke.run(&[
        "HelloWorldFunction",
        "-e",
        "events.json",
        "--parameter-overrides",
        "TableName=t",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout, r#"{"statusCode": 200, "body": "{\"message\": \"hello world\"}"}"#,
        "exactly SAM's stdout, no newline"
    );
    assert!(
        out.stderr
            .contains("Invoking app.lambda_handler (python3.12)"),
        "{}",
        out.stderr
    );
    let start = out
        .stderr
        .lines()
        .position(|l| l.starts_with("START RequestId: "))
        .expect("START");
    let end = out
        .stderr
        .lines()
        .position(|l| l.starts_with("END RequestId: "))
        .expect("END");
    assert!(start < end);
    let report = report(&out.stderr);
    for field in [
        "\tDuration: ",
        "\tBilled Duration: ",
        "\tMemory Size: 128 MB\t",
        "\tMax Memory Used: ",
        "\tInit Duration: ",
    ] {
        assert!(report.contains(field), "{field:?} missing: {report:?}");
    }
    let used = max_memory_used(report);
    assert!(
        used > 2 && used < 128,
        "measured, not the configured size: {used} MB"
    );
}

#[test]
fn test_sandbox_python_outcomes() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);

    // Unicode, the event from standard input, the function's own log lines on stderr.
    let out = invoke
        .command(&["Echo", "-e", "-"])
        .stdin(r#"{"name": "wörld ✓"}"#)
        .output();
    invoke.assert_clean(&out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        r#"{"event": {"name": "wörld ✓"}, "text": "héllo ✓ 日本", "number": 1.5}"#
    );
    assert!(
        out.stderr.contains(r#"echo got {"name": "wörld ✓"}"#),
        "{}",
        out.stderr
    );

    let out = invoke.run(&["Raise"]);
    assert_eq!(out.code, 3, "a function error exits 3:\n{}", out.stderr);
    let error: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(error["errorType"], "ValueError");
    assert_eq!(error["errorMessage"], "something went wrong: no reason");
    assert!(
        error["stackTrace"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );

    let out = invoke.run(&["ImportError"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let error: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(error["errorType"], "Runtime.ImportModuleError");

    let out = invoke.run(&["Crash"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stdout.contains("Runtime.ExitError") && out.stdout.contains("exit status 7"),
        "{}",
        out.stdout
    );

    let out = invoke.run(&["Big"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stdout.contains("Function.ResponseSizeTooLarge") || out.stdout.contains("6291556"),
        "{}",
        out.stdout
    );
}

#[test]
fn test_sandbox_timeout_is_enforced_on_time() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    // Warm the image first so the clock measures the invoke.
    assert_eq!(invoke.run(&["Hello"]).code, 0);
    let started = Instant::now();
    let out = invoke.run(&["Sleep"]);
    let elapsed = started.elapsed();
    assert_eq!(out.code, 4, "a timeout exits 4:\n{}", out.stderr);
    assert!(
        out.stdout.contains("Sandbox.Timedout")
            && out.stdout.contains("Task timed out after 1.00 seconds"),
        "{}",
        out.stdout
    );
    let report = report(&out.stderr);
    assert!(
        report.contains("Duration: 1000.00 ms") && report.contains("Status: timeout"),
        "{report}"
    );
    let init: f64 = report
        .split("Init Duration: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let overhead = elapsed.as_secs_f64() - 1.0 - init / 1000.0;
    assert!(
        overhead < 0.5,
        "killed {overhead:.3} s after the timeout ({elapsed:?} in all)"
    );
}

#[test]
fn test_sandbox_environment_filesystem_and_limits() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    let out = invoke.run(&["Inspect", "--network", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(seen["env"]["FROM_TEMPLATE"], "template-value");
    assert_eq!(seen["env"]["AWS_LAMBDA_FUNCTION_NAME"], "Inspect");
    assert_eq!(seen["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(
        seen["env"]["LAMBDA_TASK_ROOT"], "/var/task",
        "the image's own ENV"
    );
    assert_eq!(seen["env"]["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001");
    assert_eq!(seen["env"]["_HANDLER"], "behaviours.inspect");
    assert_eq!(seen["env"]["TZ"], ":/etc/localtime");
    assert_eq!(seen["tmp_writable"], true);
    assert_eq!(seen["tmp_mb"], 600, "/tmp is sized by EphemeralStorage");
    assert_eq!(seen["task_writable"], false, "code is read-only");
    assert_eq!(seen["root_writable"], false, "the root is read-only");
    assert_eq!(seen["cwd"], "/var/task");
    assert_eq!(seen["nofile"], 1024, "Lambda's file descriptor limit");
    assert_eq!(
        seen["interfaces"],
        serde_json::json!(["lo"]),
        "an own network namespace with loopback only"
    );

    // The host's network: the function sees the host's interfaces.
    let out = invoke.run(&["Inspect", "--network", "host"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_ne!(seen["interfaces"], serde_json::json!(["lo"]));
    assert_ne!(seen["env"]["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001");
}

#[test]
fn test_sandbox_out_of_memory_exits_5() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    let out = invoke.run(&["Hog"]);
    assert_eq!(
        out.code, 5,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("Runtime.OutOfMemory"), "{}", out.stdout);
    let report = report(&out.stderr);
    let used = max_memory_used(report);
    assert!(
        (120..=129).contains(&used),
        "peak at the 128 MB limit: {report}"
    );
}

#[test]
fn test_sandbox_shell_bootstrap_on_the_provided_image() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    let out = invoke
        .command(&["Shell", "-e", "-"])
        .stdin(r#"{"n": 1}"#)
        .output();
    invoke.assert_clean(&out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        r#"{"echo": {"n": 1}, "handler": "echo.handler"}"#
    );
    // A bootstrap that is not executable is a clear error.
    std::fs::set_permissions(
        project.path().join("shell/bootstrap"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    invoke
        .command(&["Shell"])
        .fails(1, &["bootstrap", "is not executable"]);
}

#[test]
fn test_sandbox_parallel_invokes_share_one_cache() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let path = project.path().to_path_buf();
            let registry = env.registry.clone();
            std::thread::spawn(move || {
                Run::new(&path)
                    .args(["local", "invoke", "Echo", "-e", "-"])
                    .stdin(&format!("{{\"i\": {i}}}"))
                    .env("LAMINA_CACHE_DIR", shared_cache().to_str().unwrap())
                    .env(
                        "LAMINA_REGISTRY_MIRROR",
                        &format!("public.ecr.aws=http://{registry}"),
                    )
                    .env(
                        "LAMINA_RUNTIME_DIR",
                        path.join(format!(".run-{i}")).to_str().unwrap(),
                    )
                    .output()
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let out = handle.join().unwrap();
        assert_eq!(out.code, 0, "invoke {i}: {}", out.stderr);
        assert!(
            out.stdout
                .starts_with(&format!("{{\"event\": {{\"i\": {i}}}")),
            "{}",
            out.stdout
        );
    }
}

#[test]
fn test_sandbox_interrupted_and_killed_invokes_leave_nothing() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    assert_eq!(invoke.run(&["Hello"]).code, 0, "warm the image");
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGKILL] {
        let mut child = invoke.command(&["Sleep"]).spawn();
        // Wait until the function runs (its sandbox exists), then interrupt lamina.
        let bundles = invoke.run_dir.join("bundles");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read_dir(&bundles).map_or(true, |d| d.count() == 0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        // Ctrl-C, SIGTERM (`timeout`, a cancelled CI job) and SIGHUP clean up at once and exit
        // 128 + the signal, as a shell reports a process ended by it.
        if signal != libc::SIGKILL {
            assert_eq!(status.code(), Some(128 + signal), "signal {signal}");
        }
        // After a SIGKILL the function dies with lamina (PDEATHSIG) and the next invoke cleans up.
        if signal == libc::SIGKILL {
            std::thread::sleep(Duration::from_millis(200));
            // The killed invoke's cgroup is gone with its processes once the next invoke has
            // collected the garbage (checked by `run`).
            assert_eq!(invoke.run(&["Hello"]).code, 0);
        }
        let out = Outcome {
            code: 0,
            stdout: String::new(),
            stderr: String::new(),
            peak_rss_kib: 0,
        };
        invoke.assert_clean(&out);
        // Nothing that served the killed invoke survives it: no slirp4netns for its namespace.
        if signal == libc::SIGKILL {
            let pids = |_: ()| {
                let out = std::process::Command::new("pgrep")
                    .args(["-f", "^slirp4netns"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            let before = pids(());
            // Other tests may run slirp4netns right now: only one that stays is a leftover.
            std::thread::sleep(Duration::from_secs(3));
            let survivors: Vec<String> = pids(())
                .into_iter()
                .filter(|p| before.contains(p))
                .collect();
            assert!(
                survivors.is_empty(),
                "slirp4netns outlived a killed lamina: {survivors:?}"
            );
        }
    }
}

/// Processes in any cgroup under `parent` (and so in a sandbox of it, or its PID namespace),
/// with their names.
fn processes_under(parent: &str) -> Vec<String> {
    let needle = format!("/{parent}/");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cgroup")).is_ok_and(|c| c.contains(&needle))
        })
        .filter_map(|e| {
            // A zombie has ended; only its parent's reaping is left (pid 1 here may be slow).
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            };
            let state = field("State:");
            (!state.starts_with('Z') && !state.is_empty()).then(|| {
                let stack = std::fs::read_to_string(e.path().join("stack")).unwrap_or_default();
                format!(
                    "{} {} ({state}, ppid {}, nspid {}, kernel stack: {})",
                    e.file_name().to_string_lossy(),
                    field("Name:"),
                    field("PPid:"),
                    field("NSpid:"),
                    stack.lines().take(6).collect::<Vec<_>>().join(" < ")
                )
            })
        })
        .collect()
}

/// Waits up to 10 s for the processes under `parent` to end (one that is exiting may sit in the
/// kernel a while, tearing down namespaces on a loaded machine); returns those that did not.
fn survivors_under(parent: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_under(parent);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// lamina killed at any instant, from its start to its end (the sandbox's create window among
/// them): no process of the sandbox outlives it (SIGKILL), and SIGTERM also leaves no bundle,
/// state or cgroup behind.
#[test]
fn test_sandbox_killed_at_any_instant_leaves_no_process() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    assert_eq!(invoke.run(&["Hello"]).code, 0, "warm the image");
    let started = Instant::now();
    assert_eq!(invoke.run(&["Hello"]).code, 0);
    let whole = started.elapsed();
    const STEPS: u32 = 24;
    for signal in [libc::SIGKILL, libc::SIGTERM] {
        for step in 0..STEPS {
            let delay = whole * step / STEPS;
            let mut child = invoke.command(&["Hello"]).spawn();
            std::thread::sleep(delay);
            // SAFETY: sending a signal to our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
            let status = child.wait().unwrap();
            let survivors = survivors_under(&invoke.cgroup_parent);
            assert!(
                survivors.is_empty(),
                "signal {signal} after {delay:?} ({status:?}): left running {survivors:?}"
            );
            if signal == libc::SIGTERM {
                // Before lamina handles signals (parsing, planning) SIGTERM ends it with
                // nothing made yet; after, it exits 143; a run that was done exits 0.
                use std::os::unix::process::ExitStatusExt;
                assert!(
                    matches!(status.code(), Some(143 | 0))
                        || status.signal() == Some(libc::SIGTERM),
                    "after {delay:?}: {status:?}"
                );
                invoke.assert_clean(&Outcome {
                    code: status.code().unwrap_or(-1),
                    stdout: String::new(),
                    stderr: format!("SIGTERM after {delay:?}"),
                    peak_rss_kib: 0,
                });
            }
        }
        // What the killed runs left (state, cgroups) is collected by the next invoke.
        assert_eq!(invoke.run(&["Hello"]).code, 0);
    }
}

/// What the python-function test image's handler answers to `{"k": "v"}`.
fn assert_image_function_answered(out: &Outcome) {
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        r#"{"from": "image", "event": {"k": "v"}, "task_root": "/var/task", "handler": "app.handler"}"#
    );
}

#[test]
fn test_sandbox_image_function() {
    let Some(env) = sandbox_env() else { return };
    let template = format!(
        "Resources:\n  FromImage:\n    Type: AWS::Serverless::Function\n    Properties:\n      PackageType: Image\n      ImageUri: {}/lamina-test/python-function:1\n  Overridden:\n    Type: AWS::Serverless::Function\n    Properties:\n      PackageType: Image\n      ImageUri: {}/lamina-test/python-function:1\n      ImageConfig:\n        Command: [\"app.handler\"]\n        WorkingDirectory: /tmp\n",
        env.registry, env.registry
    );
    let project = Project::empty().file("template.yaml", &template);
    let invoke = Invoke::new(&project, &env);
    let out = invoke
        .command(&["FromImage", "-e", "-"])
        .stdin(r#"{"k": "v"}"#)
        .output();
    invoke.assert_clean(&out);
    assert_image_function_answered(&out);
    assert!(
        out.stderr.contains("Invoking Container created from"),
        "{}",
        out.stderr
    );
    let out = invoke.run(&["Overridden"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn test_sandbox_image_function_from_an_oci_layout() {
    let (Some(()), Some(images)) = (require_root(), test_images()) else {
        return;
    };
    // Nothing listens on port 9: a layout needs no registry.
    let env = Env {
        registry: "127.0.0.1:9".into(),
    };
    let template = "Resources:\n  FromLayout:\n    Type: AWS::Serverless::Function\n    Properties:\n      PackageType: Image\n      ImageUri: oci:layouts/python-function:1\n";
    let project = Project::empty().file("template.yaml", template);
    std::os::unix::fs::symlink(&images, project.path().join("layouts")).unwrap();
    let invoke = Invoke::new(&project, &env);
    let out = invoke
        .command(&["FromLayout", "-e", "-"])
        .stdin(r#"{"k": "v"}"#)
        .output();
    invoke.assert_clean(&out);
    assert_image_function_answered(&out);
    assert!(
        out.stderr.contains(&format!(
            "Invoking Container created from oci:{}/layouts/python-function:1",
            project.path().canonicalize().unwrap().display()
        )),
        "{}",
        out.stderr
    );
}

/// Request ids differ between runs; everything else must not.
fn without_request_ids(text: &str) -> String {
    let re =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    re.replace_all(text, "<request-id>").into_owned()
}

#[test]
fn test_sandbox_parity_with_the_real_rie() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    for (function, event, code) in [
        ("Hello", None, 0),
        ("Echo", Some(r#"{"name": "wörld ✓"}"#), 0),
        ("Raise", None, 3),
        ("Crash", None, 3),
        ("Shell", Some(r#"{"n": 1}"#), 0),
    ] {
        let mut outputs = Vec::new();
        for emulator in ["builtin", "rie"] {
            let mut command = invoke.command(&[function, "--emulator", emulator]);
            if let Some(event) = event {
                command = command.arg("-e").arg("-").stdin(event);
            }
            let out = command.output();
            invoke.assert_clean(&out);
            assert_eq!(
                out.code, code,
                "{function} with {emulator}:\n{}",
                out.stderr
            );
            if emulator == "rie" {
                assert!(
                    out.stderr.contains("Max Memory Used (measured): "),
                    "{}",
                    out.stderr
                );
            }
            outputs.push(without_request_ids(&out.stdout));
        }
        assert_eq!(
            outputs[0], outputs[1],
            "{function}: builtin and the AWS RIE print the same"
        );
    }
}

#[test]
fn test_sandbox_debug_mode_with_either_emulator() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    // Debug mode starts python as SAM does, `python3.X <--debug-args> bootstrap.py`, also under
    // the AWS RIE; `-O` shows in the function's sys.flags.
    for emulator in ["builtin", "rie"] {
        let port = free_port().to_string();
        let out = invoke.run(&[
            "Flags",
            "--emulator",
            emulator,
            "-d",
            &port,
            "--debug-args",
            "-O",
        ]);
        assert_eq!(out.code, 0, "{emulator}: {}", out.stderr);
        assert_eq!(
            out.stdout, r#"{"optimize": 1}"#,
            "{emulator}: {}",
            out.stderr
        );
        let out = invoke.run(&["Flags", "--emulator", emulator]);
        assert_eq!(
            out.stdout, r#"{"optimize": 0}"#,
            "{emulator}: {}",
            out.stderr
        );
    }
}

/// The function built with the Rust `lambda_runtime` crate (`scripts/build-rust-function`).
fn rust_function() -> Option<PathBuf> {
    match std::env::var("LAMINA_TEST_RUST_FUNCTION") {
        Ok(path) if Path::new(&path).is_file() => Some(PathBuf::from(path)),
        _ => skip(
            "LAMINA_TEST_RUST_FUNCTION does not name the built function (run scripts/build-rust-function)",
        ),
    }
}

#[test]
fn test_sandbox_rust_lambda_runtime_client() {
    let Some(env) = sandbox_env() else { return };
    let Some(binary) = rust_function() else {
        return;
    };
    let project = Project::empty()
        .file(
            "template.yaml",
            "Resources:\n  RustFn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: provided.al2023\n      Handler: bootstrap\n      CodeUri: rust/\n      MemorySize: 192\n",
        )
        .dir("rust");
    std::fs::copy(&binary, project.path().join("rust/bootstrap")).unwrap();
    let invoke = Invoke::new(&project, &env);
    let out = invoke
        .command(&["RustFn", "-e", "-"])
        .stdin(r#"{"name": "ferris"}"#)
        .output();
    invoke.assert_clean(&out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(value["hello"], "ferris");
    assert_eq!(value["memory_mb"], 192);
    assert_eq!(value["deadline_in_future"], true);
    assert!(
        value["function_arn"]
            .as_str()
            .unwrap()
            .ends_with(":function:RustFn")
    );
    let out = invoke
        .command(&["RustFn", "-e", "-"])
        .stdin(r#"{"fail": true}"#)
        .output();
    invoke.assert_clean(&out);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stdout.contains("asked to fail"), "{}", out.stdout);
}

#[test]
fn test_sandbox_bad_functions_fail_clearly_and_leave_nothing() {
    let Some(env) = sandbox_env() else { return };
    let template = format!(
        "Resources:\n  NoBootstrap:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: provided.al2023\n      Handler: x\n      CodeUri: empty/\n  NoEntrypoint:\n    Type: AWS::Serverless::Function\n    Properties:\n      PackageType: Image\n      ImageUri: {}/lamina-test/traps:1\n  Unreadable:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.handler\n      CodeUri: locked/app.zip\n",
        env.registry
    );
    let project = Project::empty()
        .file("template.yaml", &template)
        .dir("empty")
        .dir("locked");
    let invoke = Invoke::new(&project, &env);
    let out = invoke.command(&["NoBootstrap"]).fails(
        1,
        &["NoBootstrap", "no `bootstrap` file", "empty/bootstrap"],
    );
    invoke.assert_clean(&out);
    let out = invoke
        .command(&["NoEntrypoint"])
        .fails(1, &["lamina-test/traps:1", "neither Entrypoint nor Cmd"]);
    invoke.assert_clean(&out);
    let out = invoke
        .command(&["Unreadable"])
        .fails(1, &["locked/app.zip", "Unreadable"]);
    invoke.assert_clean(&out);
}

fn zip_of(path: &Path, files: &[(&str, &str, u32)]) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, text, mode) in files {
        zip.start_file(
            *name,
            zip::write::SimpleFileOptions::default().unix_permissions(*mode),
        )
        .unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn test_sandbox_layers_zip_code_and_inline_code() {
    let Some(env) = sandbox_env() else { return };
    let template = "\
Resources:
  First:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer-one/
  Second:
    Type: AWS::Lambda::LayerVersion
    Properties:
      Content: layer-two.zip
  Layered:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      CodeUri: code.zip
      Layers: [!Ref First, !Ref Second]
  Inline:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      InlineCode: |
        def handler(event, context):
            return {'inline': True}
";
    let project = Project::empty()
        .file("template.yaml", template)
        .file("layer-one/python/shared.py", "WHO = 'layer one'\n")
        .file("layer-one/python/only_one.py", "X = 1\n");
    zip_of(
        &project.path().join("layer-two.zip"),
        &[("python/shared.py", "WHO = 'layer two'\n", 0o644)],
    );
    zip_of(
        &project.path().join("code.zip"),
        &[(
            "app.py",
            "import shared, only_one\n\ndef handler(event, context):\n    return {'who': shared.WHO, 'one': only_one.X}\n",
            0o644,
        )],
    );
    use std::os::unix::fs::PermissionsExt;
    let private = project.path().join("layer-one/python/only_one.py");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let invoke = Invoke::new(&project, &env);
    let out = invoke.run(&["Layered"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout, r#"{"who": "layer two", "one": 1}"#,
        "both layers at /opt, the later one wins"
    );
    // It runs here (as root) but would not in AWS: lamina says so.
    assert!(
        out.stderr.contains("1 entry in layer First")
            && out.stderr.contains("python/only_one.py (0600)")
            && out
                .stderr
                .contains("in AWS only if your packaging adds read permission"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Decompressing"), "{}", out.stderr);
    // Merged /opt dirs of this test's layers (other tests share the cache and merge their own).
    let merged = || {
        std::fs::read_dir(shared_cache().join("layers-v1"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("python/only_one.py").exists())
            .count()
    };
    assert_eq!(merged(), 1);
    // Changing only the code reuses the merged layers.
    zip_of(
        &project.path().join("code.zip"),
        &[
            (
                "app.py",
                "import shared\n\ndef handler(event, context):\n    return shared.WHO\n",
                0o644,
            ),
            ("private.txt", "x", 0o600),
        ],
    );
    let out = invoke.run(&["Layered"]);
    assert_eq!(out.stdout, r#""layer two""#, "{}", out.stderr);
    assert_eq!(merged(), 1, "the layers were not merged again");
    // A zip is deployed with its modes: that file would fail in AWS, for sure.
    assert!(
        out.stderr.contains("private.txt (0600)")
            && out
                .stderr
                .contains("fails in AWS (fix the modes in the zip"),
        "{}",
        out.stderr
    );

    let out = invoke.run(&["Inline"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, r#"{"inline": true}"#);
}

/// moto's Lambda API in server mode (tests/fixtures/moto/lambda_api.py), publishing `zips`.
pub(crate) struct LambdaApi {
    child: std::process::Child,
    pub(crate) endpoint: String,
    pub(crate) arns: Vec<String>,
    stderr: PathBuf,
}

impl LambdaApi {
    pub(crate) fn start(dir: &Path, zips: &[PathBuf], corrupt: Option<&str>) -> Option<LambdaApi> {
        use std::io::BufRead;
        let python = crate::util::python_with(&["awslambdaric", "moto"])?;
        let stderr = dir.join(format!("moto-{}.log", uuid_like()));
        let mut command = std::process::Command::new(python);
        command
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/moto/lambda_api.py"))
            .args(zips)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some(name) = corrupt {
            command.env("LAMBDA_API_CORRUPT", name);
        }
        command.env("LAMBDA_API_SLOW", "slow.zip");
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "moto did not start ({e}): {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        Some(LambdaApi {
            child,
            endpoint: ready["endpoint"].as_str().unwrap().to_string(),
            arns: ready["arns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect(),
            stderr,
        })
    }

    /// How many times the layer zip `name` was downloaded.
    fn downloads(&self, name: &str) -> usize {
        std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == format!("GET {name}"))
            .count()
    }
}

impl Drop for LambdaApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn test_sandbox_layers_published_in_aws() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::empty().file(
        "app.py",
        "import arnlayer, shared\n\ndef handler(event, context):\n    return {'arn': arnlayer.VALUE, 'shared': shared.WHO}\n",
    ).file("local/python/shared.py", "WHO = 'local, after the ARN layer'\n");
    zip_of(
        &project.path().join("arnlayer.zip"),
        &[
            (
                "python/arnlayer.py",
                "VALUE = 'from the ARN layer'\n",
                0o644,
            ),
            ("python/shared.py", "WHO = 'the ARN layer'\n", 0o644),
            ("bin/tool", "#!/bin/sh\n", 0o755),
        ],
    );
    zip_of(
        &project.path().join("broken.zip"),
        &[("python/broken.py", "", 0o644)],
    );
    // Big enough that half of it is more than the socket buffers hold.
    let filler: String = (0..200_000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    zip_of(
        &project.path().join("slow.zip"),
        &[("python/slow.py", &format!("X = '{filler}'\n"), 0o644)],
    );
    let zips = [
        project.path().join("arnlayer.zip"),
        project.path().join("broken.zip"),
        project.path().join("slow.zip"),
    ];
    let Some(api) = LambdaApi::start(project.path(), &zips, Some("broken.zip")) else {
        return;
    };
    let (arn, broken_arn, slow_arn) = (&api.arns[0], &api.arns[1], &api.arns[2]);
    // The same layer, a version that does not exist.
    let missing_arn = format!("{}:7", arn.strip_suffix(":1").unwrap());
    let template = format!(
        "\
Resources:
  Local:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: local/
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      CodeUri: .
      Layers: [{arn}, !Ref Local]
  Missing:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      CodeUri: .
      Layers: [{missing}]
  Broken:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      CodeUri: .
      Layers: [{broken_arn}]
  Slow:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      CodeUri: .
      Layers: [{slow_arn}]
",
        missing = missing_arn
    );
    std::fs::write(project.path().join("template.yaml"), template).unwrap();
    let layers = project.path().join("layers-pkg");
    let invoke = Invoke::new(&project, &env);
    let with_api = |args: &[&str]| {
        invoke
            .command(args)
            .arg("--layer-cache-basedir")
            .arg(&layers)
            .env("AWS_ENDPOINT_URL", &api.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
    };

    let out = with_api(&["Fn"]).output();
    invoke.assert_clean(&out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        r#"{"arn": "from the ARN layer", "shared": "local, after the ARN layer"}"#
    );
    // SAM's cache layout: <name>-<version>-<sha256(arn)[..10]>, status `completed`.
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(arn.as_bytes()));
    let name = format!("arnlayer-1-{}", &digest[..10]);
    assert!(layers.join(&name).join("python/arnlayer.py").is_file());
    let locks = layers.join(".locks");
    let status = std::fs::read_to_string(locks.join(format!("{name}.downloading.status"))).unwrap();
    assert!(
        status.starts_with("completed\n"),
        "SAM's status format: {status}"
    );
    assert!(
        !locks.join(format!("{name}.downloading.lock")).exists(),
        "the lock is released"
    );
    use std::os::unix::fs::PermissionsExt;
    let tool_mode = std::fs::metadata(layers.join(&name).join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(tool_mode & 0o777, 0o755, "the zip's modes are kept");
    assert_eq!(api.downloads("arnlayer.zip"), 1);

    // Cached: no API call, no download, works without credentials.
    let out = invoke
        .command(&["Fn", "--layer-cache-basedir", layers.to_str().unwrap()])
        .output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("is already cached. Skipping download"),
        "{}",
        out.stderr
    );
    assert_eq!(api.downloads("arnlayer.zip"), 1);

    // --force-image-build downloads it again.
    let out = with_api(&["Fn", "--force-image-build"]).output();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(api.downloads("arnlayer.zip"), 2);

    // Bad input: clear errors, exit 1, nothing half-written in the layer cache.
    let out = with_api(&["Missing"]).fails(1, &[&format!("{missing_arn} was not found.")]);
    invoke.assert_clean(&out);
    let out = with_api(&["Broken"]).fails(1, &["broken", "sha256", "nothing was cached"]);
    invoke.assert_clean(&out);
    let out = invoke
        .command(&["Broken", "--layer-cache-basedir", layers.to_str().unwrap()])
        .env("AWS_ENDPOINT_URL", &api.endpoint)
        .fails(
            1,
            &["Layers require credentials to download the layers locally."],
        );
    invoke.assert_clean(&out);
    // Ctrl-C in the middle of a download: exit 130, and nothing of that download stays.
    let mut child = with_api(&["Slow"]).spawn_piped();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        use std::io::BufRead;
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("lamina ended before downloading:\n{seen}");
        }
        seen.push_str(&line);
        if line.starts_with("Downloading ") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(
        rest.contains("Interrupted: the layer download was stopped"),
        "{rest}"
    );
    assert_eq!(api.downloads("slow.zip"), 1);
    let mut left: Vec<String> = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [".locks".to_string(), name],
        "only the good layer is cached"
    );
    let locks_left: Vec<_> = std::fs::read_dir(layers.join(".locks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lock"))
        .collect();
    assert!(locks_left.is_empty(), "no lock stays: {locks_left:?}");
}

#[test]
fn test_sandbox_extensions_from_layers() {
    let Some(env) = sandbox_env() else { return };
    let extension = r#"#!/var/lang/bin/python3
import json, os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
req = urllib.request.Request(api + "/register", data=json.dumps({"events": ["INVOKE"]}).encode(),
                             headers={"Lambda-Extension-Name": "probe"}, method="POST")
with urllib.request.urlopen(req) as r:
    ext_id = r.headers["Lambda-Extension-Identifier"]
    print("EXTENSION registered for", json.load(r)["functionName"], flush=True)
open("/tmp/extension-registered", "w").close()
while True:
    with urllib.request.urlopen(urllib.request.Request(api + "/event/next", headers={"Lambda-Extension-Identifier": ext_id})) as r:
        event = json.load(r)
        print("EXTENSION got", event["eventType"], flush=True)
        if event["eventType"] == "SHUTDOWN":
            print("EXTENSION shutting down because", event["shutdownReason"], flush=True)
            print("EXTENSION deadline in", int(event["deadlineMs"] - time.time() * 1000), "ms", flush=True)
            raise SystemExit(0)
        with open("/tmp/extension-saw.tmp", "w") as f:
            f.write(event["requestId"])
        os.rename("/tmp/extension-saw.tmp", "/tmp/extension-saw")  # never seen half-written
"#;
    // A graceful-shutdown runtime, as AWS's examples write one: it handles SIGTERM.
    let handler = "import os, signal, sys, time\n\ndef _stop(signum, frame):\n    print('RUNTIME got SIGTERM', flush=True)\n    sys.exit(0)\n\nsignal.signal(signal.SIGTERM, _stop)\n\ndef handler(event, context):\n    registered_before = os.path.exists('/tmp/extension-registered')\n    for _ in range(1000):\n        if os.path.exists('/tmp/extension-saw'):\n            return {'registered_before_the_event': registered_before, 'extension_saw_this_request': open('/tmp/extension-saw').read() == context.aws_request_id}\n        time.sleep(0.01)\n    return {'registered_before_the_event': registered_before, 'extension_saw_this_request': False}\n";
    let project = Project::empty()
        .file(
            "template.yaml",
            "Resources:\n  Ext:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      ContentUri: ext/\n  WithExtension:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.handler\n      CodeUri: code/\n      Layers: [!Ref Ext]\n",
        )
        .file("ext/extensions/probe", extension)
        .file("code/app.py", handler);
    std::fs::set_permissions(
        project.path().join("ext/extensions/probe"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let invoke = Invoke::new(&project, &env);
    let out = invoke.run(&["WithExtension"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout, r#"{"registered_before_the_event": true, "extension_saw_this_request": true}"#,
        "init waits for the extension, which then sees the invoke:\n{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("EXTENSION registered for WithExtension"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("EXTENSION got SHUTDOWN")
            && !out.stderr.contains("RUNTIME got SIGTERM"),
        "SHUTDOWN and SIGTERM only with --shutdown:\n{}",
        out.stderr
    );
    // --shutdown: the extension hears SHUTDOWN and finishes before the sandbox goes.
    let out = invoke.run(&["WithExtension", "--shutdown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("EXTENSION shutting down because spindown"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("EXTENSION got INVOKE"),
        "{}",
        out.stderr
    );
    // Its deadline is the 1.4 s it gets before the runtime's turn.
    let deadline: i64 = out
        .stderr
        .split("EXTENSION deadline in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no deadline line:\n{}", out.stderr));
    assert!(
        (1000..=1400).contains(&deadline),
        "deadline in {deadline} ms"
    );
    // ... and then the runtime gets SIGTERM, after the extension is done.
    let shut = out.stderr.find("EXTENSION shutting down").unwrap();
    let term = out.stderr.find("RUNTIME got SIGTERM");
    assert!(
        term.is_some_and(|t| t > shut),
        "the runtime hears SIGTERM after the extension's SHUTDOWN:\n{}",
        out.stderr
    );
}

#[test]
fn test_sandbox_rie_from_a_host_binary() {
    let Some(env) = sandbox_env() else { return };
    let images = std::env::var("LAMINA_TEST_IMAGES")
        .unwrap_or_else(|_| "/var/cache/lamina-test-images".into());
    let Some(rie) = std::fs::read_dir(Path::new(&images).join(".cache"))
        .ok()
        .and_then(|d| {
            d.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("aws-lambda-rie-x86_64"))
            })
        })
    else {
        skip::<()>("no aws-lambda-rie binary in the test image cache (scripts/build-test-images)");
        return;
    };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    let out = invoke
        .command(&["Hello", "--emulator", "rie"])
        .env("LAMINA_RIE_PATH", rie.to_str().unwrap())
        .output();
    invoke.assert_clean(&out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        r#"{"statusCode": 200, "body": "{\"message\": \"hello world\"}"}"#
    );
    invoke
        .command(&["Hello", "--emulator", "rie"])
        .env("LAMINA_RIE_PATH", "/nonexistent/aws-lambda-rie")
        .fails(1, &["LAMINA_RIE_PATH", "/nonexistent/aws-lambda-rie"]);
}

/// Rootless invokes: CI creates an unprivileged user (`LAMINA_TEST_ROOTLESS_USER`) and gives it a
/// cgroup subtree with `lamina system setup-rootless`; the same functions must print the same.
#[test]
fn test_sandbox_rootless_gives_the_same_results() {
    let Some(env) = sandbox_env() else { return };
    let Some(account) = rootless_user() else {
        return;
    };
    let user = account.name.clone();
    // Everything the user needs, in a place it can read: the binary, the project, its own cache.
    let place = tempfile::Builder::new()
        .prefix("lamina-rootless-")
        .tempdir_in("/tmp")
        .unwrap();
    let chown_all = |path: &Path| {
        std::process::Command::new("chown")
            .args(["-R", &format!("{}:{}", account.uid, account.gid)])
            .arg(path)
            .status()
            .unwrap();
    };
    std::fs::set_permissions(
        place.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let binary = place.path().join("lamina");
    std::fs::copy(env!("CARGO_BIN_EXE_lamina"), &binary).unwrap();
    let project = Project::fixture("behaviours");
    let project_copy = place.path().join("project");
    std::process::Command::new("cp")
        .args(["-r"])
        .arg(project.path())
        .arg(&project_copy)
        .status()
        .unwrap();
    chown_all(place.path());

    setup_rootless(&binary, &user);

    // `lamina local invoke ARGS` as the user, with a clean environment (plus VARS, `K=V`) and its
    // own cache.
    let as_user_with = |vars: &[&str], args: &[&str]| {
        let mut command = std::process::Command::new("runuser");
        command
            .args(["-u", &user, "--", "env", "-i"])
            .arg(format!(
                "PATH={}",
                std::env::var("PATH").unwrap_or_default()
            ))
            .arg(format!("HOME={}", account.dir.display()))
            .arg(format!(
                "LAMINA_CACHE_DIR={}",
                place.path().join("cache").display()
            ))
            .arg(format!(
                "LAMINA_REGISTRY_MIRROR=public.ecr.aws=http://{}",
                env.registry
            ))
            .args(vars)
            .arg(&binary)
            .args(["local", "invoke"])
            .args(args)
            .current_dir(&project_copy)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    let as_user = |args: &[&str]| as_user_with(&[], args);
    let root_invoke = Invoke::new(&project, &env);
    for (function, event, code) in [
        ("Hello", None, 0),
        ("Echo", Some(r#"{"n": "ü"}"#), 0),
        ("Raise", None, 3),
        ("Hog", None, 5),
        ("Shell", Some("{}"), 0),
    ] {
        let mut as_root = root_invoke.command(&[function]);
        let mut command = as_user(&[function]);
        if let Some(event) = event {
            as_root = as_root.arg("-e").arg("-").stdin(event);
            command
                .args(["-e", "-"])
                .stdin(std::process::Stdio::piped());
        } else {
            command.stdin(std::process::Stdio::null());
        }
        let mut child = command.spawn().unwrap();
        if let Some(event) = event {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(event.as_bytes())
                .unwrap();
        }
        let rootless = child.wait_with_output().unwrap();
        let rootless_stdout = String::from_utf8_lossy(&rootless.stdout).into_owned();
        let rootless_stderr = String::from_utf8_lossy(&rootless.stderr).into_owned();
        assert_eq!(
            rootless.status.code(),
            Some(code),
            "{function} as {user}:\n{rootless_stderr}"
        );
        let root = as_root.output();
        assert_eq!(root.code, code, "{function} as root:\n{}", root.stderr);
        assert_eq!(
            without_request_ids(&rootless_stdout),
            without_request_ids(&root.stdout),
            "{function}: rootless and root print the same"
        );
    }
    // -d works rootless too: the forwarder joins the sandbox's user and network namespaces.
    let port = free_port();
    let mut child = as_user(&["Listen", "-e", "-", "-d", &port.to_string()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!(r#"{{"port": {port}}}"#).as_bytes())
            .unwrap();
    }
    assert_eq!(echo_through(port), "echo: ping\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"heard": "ping"}"#);

    // The same confinement as root: Docker's seccomp profile, no devices, 1,024 processes
    // (the user's pids cgroup from setup-rootless, else RLIMIT_NPROC, which binds this user).
    let out = as_user(&["Confine", "-e", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(br#"{"processes": 1100}"#)?;
            child.wait_with_output()
        })
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let confined: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_confined(&confined);

    // kill -9 at any instant of a rootless invoke leaves no process of its sandbox running.
    let started = Instant::now();
    let out = as_user(&["Hello"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let whole = started.elapsed();
    for step in 0..8 {
        let mut child = as_user(&["Hello"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole * step / 8);
        // Kill lamina itself: the child of runuser (`env` execs it), not runuser.
        let lamina = std::process::Command::new("pgrep")
            .args(["-P", &child.id().to_string()])
            .output()
            .unwrap();
        for pid in String::from_utf8_lossy(&lamina.stdout).split_whitespace() {
            std::process::Command::new("kill")
                .args(["-KILL", pid])
                .status()
                .unwrap();
        }
        let _ = child.kill();
        let _ = child.wait();
        let survivors = survivors_under(&format!("lamina-{}", account.uid));
        assert!(
            survivors.is_empty(),
            "rootless, killed after {:?}: left running {survivors:?}",
            whole * step / 8
        );
    }

    // With a subordinate id range (and newuidmap), ids 1..N exist inside and a process may switch
    // to them; with the user only (LAMINA_ID_MAPPING=single), root is the only id.
    let ids = |mapping: &str| {
        let out = as_user_with(&[&format!("LAMINA_ID_MAPPING={mapping}")], &["Ids"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "LAMINA_ID_MAPPING={mapping}: {stderr}"
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let single = ids("single");
    assert_eq!(single["uid_map_lines"], 1, "{single}");
    assert_eq!(single["can_switch_user"], false, "{single}");
    let range = ids("range");
    assert_eq!(range["uid_map_lines"], 2, "{range}");
    assert_eq!(range["can_switch_user"], true, "{range}");
    // A range that is required but cannot be had: the reason and the fix, in one line.
    let out = as_user_with(
        &["LAMINA_ID_MAPPING=range", "PATH=/nonexistent"],
        &["Hello"],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("LAMINA_ID_MAPPING=range: newuidmap is not installed (Debian and Ubuntu: apt install uidmap)"),
        "{stderr}"
    );

    // Without a cgroup subtree of its own, a v1 host says what to run, once.
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let out = std::process::Command::new("runuser")
            .args([
                "-u",
                &user,
                "--",
                "env",
                "-i",
                "LAMINA_CGROUP_PARENT=lamina-not-set-up",
            ])
            .arg(format!(
                "LAMINA_CACHE_DIR={}",
                place.path().join("cache").display()
            ))
            .arg(format!(
                "LAMINA_REGISTRY_MIRROR=public.ecr.aws=http://{}",
                env.registry
            ))
            .arg(&binary)
            .args(["local", "invoke", "Hello"])
            .current_dir(&project_copy)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("sudo lamina system setup-rootless --user"),
            "{stderr}"
        );
    }
    // Nothing of the user's invokes is left.
    let run_dir = PathBuf::from(format!("/tmp/lamina-run-{}", account.uid));
    for dir in ["bundles", "containers"] {
        let left: Vec<_> = std::fs::read_dir(run_dir.join(dir))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    let cgroups: Vec<_> =
        std::fs::read_dir(format!("/sys/fs/cgroup/memory/lamina-{}", account.uid))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
    assert!(
        cgroups.is_empty(),
        "sandbox cgroups left behind: {cgroups:?}"
    );
}

/// An HTTP server on the host's loopback that answers every request with `body`.
fn host_http_server(body: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(16) {
            use std::io::{Read, Write};
            let mut stream = stream;
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn test_sandbox_network_modes() {
    let Some(env) = sandbox_env() else { return };
    let port = host_http_server("hello from the host");
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    let fetch = |network: &str, host: &str| {
        let out = invoke
            .command(&["Fetch", "-e", "-", "--network", network])
            .stdin(&format!(r#"{{"host": "{host}", "port": {port}}}"#))
            .output();
        invoke.assert_clean(&out);
        assert_eq!(out.code, 0, "{}", out.stderr);
        (
            serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap(),
            out.stderr,
        )
    };
    // Private: its own namespace, and the host's loopback as host.docker.internal (slirp4netns).
    let (seen, stderr) = fetch("private", "host.docker.internal");
    if stderr.contains("the function has loopback only") {
        assert!(
            !crate::util::must_work() || stderr.contains("/dev/net/tun"),
            "slirp4netns should work here:\n{stderr}"
        );
    } else {
        assert_eq!(seen["ok"], true, "{seen}\n{stderr}");
        assert_eq!(seen["body"], "hello from the host");
        assert_eq!(seen["interfaces"], serde_json::json!(["lo", "tap0"]));
    }
    // None: loopback only, the host is unreachable.
    let (seen, _) = fetch("none", "host.docker.internal");
    assert_eq!(seen["ok"], false, "{seen}");
    assert_eq!(seen["interfaces"], serde_json::json!(["lo"]));
    // Host: the host's own loopback.
    let (seen, _) = fetch("host", "127.0.0.1");
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["body"], "hello from the host");
}

/// Sends `ping` to the behaviours fixture's `Listen` function through `-d port` on the host.
fn echo_through(port: u16) -> String {
    // The forwarder listens before the function starts; retry until the function listens too.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        use std::io::{BufRead, Write};
        assert!(
            Instant::now() < deadline,
            "the function was never reached through -d {port}"
        );
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            if stream.write_all(b"ping\n").is_ok() {
                let mut line = String::new();
                if std::io::BufReader::new(&stream)
                    .read_line(&mut line)
                    .is_ok()
                    && !line.is_empty()
                {
                    return line;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn test_sandbox_debugpy_attaches_through_the_debug_port() {
    let Some(env) = sandbox_env() else { return };
    let Some(python) = crate::util::python_with(&["debugpy"]) else {
        return;
    };
    // SAM's recipe: debugpy in a directory given as --debugger-path, on the function's PYTHONPATH
    // through --container-env-vars, started by --debug-args.
    let site = std::process::Command::new(&python)
        .args([
            "-c",
            "import debugpy, os; print(os.path.dirname(os.path.dirname(debugpy.__file__)))",
        ])
        .output()
        .unwrap();
    let site = PathBuf::from(String::from_utf8(site.stdout).unwrap().trim());
    let project = Project::empty()
        .file(
            "template.yaml",
            "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {Runtime: python3.12, Handler: app.handler, CodeUri: code/}\n",
        )
        .file(
            "code/app.py",
            "def handler(event, context):\n    name = event['name']\n    greeting = 'hello ' + name\n    return {'greeting': greeting}\n",
        )
        .file(
            "container-env.json",
            r#"{"Parameters": {"PYTHONPATH": "/tmp/lambci_debug_files"}}"#,
        )
        .dir("debugger");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(site.join("debugpy"))
        .arg(project.path().join("debugger"))
        .status()
        .unwrap();
    assert!(copied.success());
    let invoke = Invoke::new(&project, &env);
    let port = free_port().to_string();
    let child = invoke
        .command(&[
            "-e",
            "-",
            "-d",
            &port,
            "--debugger-path",
            "debugger",
            "--container-env-vars",
            "container-env.json",
            "--debug-args",
            &format!("-m debugpy --listen 0.0.0.0:{port} --wait-for-client"),
        ])
        .stdin(r#"{"name": "debugger"}"#)
        .spawn_piped();
    // A real DAP client: breakpoint on line 3, evaluate in the stopped frame, continue.
    let client = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debugpy/attach.py"))
        .args([&port, "/var/task/app.py", "3", "name.upper()"])
        .output()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        client.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&client.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&client.stdout).unwrap();
    assert_eq!(seen["reason"], "breakpoint", "{seen}");
    assert_eq!(seen["file"], "/var/task/app.py");
    assert_eq!(seen["line"], 3);
    assert_eq!(seen["value"], "'DEBUGGER'");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"{"greeting": "hello debugger"}"#
    );
    let out = Outcome {
        code: 0,
        stdout: String::new(),
        stderr: stderr.into_owned(),
        peak_rss_kib: 0,
    };
    invoke.assert_clean(&out);
}

#[test]
fn test_sandbox_debug_port_reaches_the_function() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    // A free port on the host's loopback, used inside the sandbox too.
    let port = free_port();
    let child = invoke
        .command(&["Listen", "-e", "-", "-d", &port.to_string()])
        .stdin(&format!(r#"{{"port": {port}}}"#))
        .spawn_piped();
    let reply = echo_through(port);
    assert_eq!(reply, "echo: ping\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"heard": "ping"}"#);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Memory Size: 256 MB"), "{stderr}");
    // A port that is taken is a clear error, and nothing is left behind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let out = invoke
        .command(&["Hello", "-d", &taken_port])
        .fails(1, &["debug port", &taken_port]);
    invoke.assert_clean(&out);
}

/// What a `Confine` run of a sandbox must show: Docker's refusals, no device node, the standard
/// devices only, ordinary work still running, and at most 1,024 processes.
fn assert_confined(confined: &serde_json::Value) {
    for name in [
        "keyctl",
        "add_key",
        "unshare_user",
        "perf_event_open",
        "userfaultfd",
        "mount",
        "unshare_net",
    ] {
        assert_eq!(confined["syscalls"][name], "EPERM", "{name}: {confined}");
    }
    for place in ["/dev", "/tmp"] {
        assert_eq!(
            confined["mknod"][place], "mknod: EPERM",
            "a device node in {place}: {confined}"
        );
    }
    assert_eq!(
        confined["dev"],
        serde_json::json!([
            "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
            "stdout", "tty", "urandom", "zero"
        ]),
        "{confined}"
    );
    assert_eq!(confined["urandom"], 8);
    assert_eq!(confined["subprocess"], "ok");
    let started = confined["processes"]["started"].as_u64().unwrap();
    assert!(
        (1000..1024).contains(&started),
        "the function started {started} processes besides itself: {confined}"
    );
    assert_eq!(confined["processes"]["refused"], "EAGAIN", "{confined}");
}

/// A function gets Docker's default seccomp profile, no device but the standard ones, and
/// Lambda's 1,024 processes, which as root only the pids cgroup can enforce (the kernel exempts
/// root from RLIMIT_NPROC): also without a memory limit.
#[test]
fn test_sandbox_confinement_is_docker_like() {
    let Some(env) = sandbox_env() else { return };
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    for extra in [
        &[][..],
        &["--no-memory-limit"][..],
        &["--emulator", "rie"][..],
    ] {
        let mut args = vec!["Confine", "-e", "-"];
        args.extend(extra);
        let out = invoke
            .command(&args)
            .stdin(r#"{"processes": 1100}"#)
            .output();
        invoke.assert_clean(&out);
        assert_eq!(out.code, 0, "{extra:?}: {}", out.stderr);
        let confined: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_confined(&confined);
    }
    let plan = invoke.command(&["Confine", "--dry-run"]).success_json();
    assert_eq!(
        plan["confinement"],
        serde_json::json!({"seccomp": "docker-default", "processes": "pids-cgroup", "device_rules": true})
    );
    // The escape hatch turns the filter off (and so shows that the probe can tell).
    let out = invoke
        .command(&["Confine"])
        .env("LAMINA_SECCOMP", "unconfined")
        .output();
    invoke.assert_clean(&out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let unconfined: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        unconfined["syscalls"]["unshare_user"], "allowed",
        "{unconfined}"
    );
    invoke
        .command(&["Confine"])
        .env("LAMINA_SECCOMP", "off")
        .fails(1, &["LAMINA_SECCOMP=off"]);
}

/// As root the sandbox's cgroup denies every device but the standard ones (a v1 host's
/// `devices.list`, read while the function runs).
#[test]
fn test_sandbox_device_rules_in_the_cgroup() {
    let Some(env) = sandbox_env() else { return };
    let devices = Path::new("/sys/fs/cgroup/devices");
    if !devices.exists() {
        skip::<()>("no cgroup v1 devices controller on this host");
        return;
    }
    let project = Project::fixture("behaviours");
    let invoke = Invoke::new(&project, &env);
    let child = invoke.command(&["Sleep"]).spawn_piped();
    let parent = devices.join(&invoke.cgroup_parent);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Read once the function runs (its python is in the cgroup): the rules are final by then.
    let runs_python = |cgroup: &Path| {
        std::fs::read_to_string(cgroup.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.starts_with("python"))
            })
    };
    let list = loop {
        let found = std::fs::read_dir(&parent)
            .ok()
            .and_then(|d| d.flatten().find(|e| e.path().is_dir()))
            .filter(|e| runs_python(&e.path()))
            .and_then(|e| std::fs::read_to_string(e.path().join("devices.list")).ok());
        if let Some(list) = found.filter(|l| !l.is_empty()) {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox's cgroup never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "the Sleep function times out");
    let mut rules: Vec<&str> = list.lines().collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            "c 136:* rwm",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:2 rwm"
        ]
    );
    invoke.assert_clean(&Outcome {
        code: 4,
        stdout: String::new(),
        stderr: String::new(),
        peak_rss_kib: 0,
    });
}
