//! Test harness: a temporary project directory and a `lamina` command run in it with a clean
//! environment, so tests see neither the developer's AWS settings nor each other's files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// A project in a fresh temporary directory, optionally copied from `tests/fixtures/projects/<name>`.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    pub fn empty() -> Project {
        Project {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn fixture(name: &str) -> Project {
        let project = Project::empty();
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/projects")
            .join(name);
        assert!(source.is_dir(), "no fixture {}", source.display());
        copy_dir(&source, project.path());
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating parent directories) and returns the project for chaining.
    pub fn file(self, relative: &str, contents: &str) -> Project {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    pub fn dir(self, relative: &str) -> Project {
        std::fs::create_dir_all(self.path().join(relative)).unwrap();
        self
    }

    /// `lamina local invoke <args>` in the project directory.
    pub fn invoke(&self, args: &[&str]) -> Run {
        Run::new(self.path()).args(["local", "invoke"]).args(args)
    }

    /// `lamina local invoke --dry-run <args>`, which must succeed; returns the plan.
    pub fn dry_run(&self, args: &[&str]) -> Value {
        self.invoke(args).arg("--dry-run").success_json()
    }
}

/// Copies a directory tree (regular files are copied, never linked).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// One run of the lamina binary.
pub struct Run {
    command: Command,
    stdin: Option<Vec<u8>>,
    measure_rss: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// lamina's peak resident set size in KiB: the kernel's `ru_maxrss` of the child, read with
    /// `wait4`. At `exec` the kernel starts a child's figure from the spawning process's
    /// high-water mark; `output` resets that mark to this test process's current RSS first, so the
    /// figure is an upper bound of lamina's own; [`Run::measure_rss`] gives lamina's own exactly.
    pub peak_rss_kib: u64,
}

/// Runs a command as a child of this small process and writes the child's `ru_maxrss` (KiB) to
/// a file; exits as the child did. See [`Run::measure_rss`].
const RSS_SPAWNER: &str = r#"
import os, signal, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(str(usage.ru_maxrss))
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
os._exit(os.WEXITSTATUS(status))
"#;

impl Run {
    pub fn new(cwd: &Path) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lamina"));
        let home = cwd.join(".test-home");
        command
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("LAMINA_CACHE_DIR", home.join("cache"))
            .stdin(Stdio::null());
        Run {
            command,
            stdin: None,
            measure_rss: false,
        }
    }

    /// Makes [`Outcome::peak_rss_kib`] lamina's own peak. The kernel counts into a process's
    /// `ru_maxrss` the memory of what it was before `exec`: started from this test process
    /// (hundreds of MB, and its peak when `posix_spawn` shares its memory), lamina would seem to
    /// use all that. So lamina is started by a small Python process that forks it and reports
    /// its `ru_maxrss` (Python's own few MB are the error). Needs `LAMINA_TEST_PYTHON` or `python3`.
    pub fn measure_rss(mut self) -> Run {
        self.measure_rss = true;
        self
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Run {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Run {
        self.command.env(key, value);
        self
    }

    pub fn stdin(mut self, data: &str) -> Run {
        self.stdin = Some(data.as_bytes().to_vec());
        self
    }

    /// Starts the command with piped stdout and stderr, feeding it the stdin given.
    pub fn spawn_piped(mut self) -> std::process::Child {
        use std::io::Write;
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.command.spawn().expect("lamina runs");
        let data = self.stdin.take().unwrap_or_default();
        child.stdin.take().unwrap().write_all(&data).unwrap();
        child
    }

    /// Starts the command without waiting (stdout and stderr are discarded).
    pub fn spawn(mut self) -> std::process::Child {
        self.command.stdout(Stdio::null()).stderr(Stdio::null());
        self.command.spawn().expect("lamina runs")
    }

    pub fn output(mut self) -> Outcome {
        use std::io::Write;
        let report = tempfile::NamedTempFile::new().unwrap();
        if self.measure_rss {
            self.command = self.spawned_by_python(report.path());
        }
        if self.stdin.is_some() {
            self.command.stdin(Stdio::piped());
        }
        self.command.stdout(Stdio::piped()).stderr(Stdio::piped());
        // "5" resets this process's peak RSS to its current RSS (see `Outcome::peak_rss_kib`).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        #[allow(clippy::zombie_processes)] // reaped by `wait4` below, for its rusage
        let mut child = self.command.spawn().expect("lamina runs");
        // Fed on a thread (a large event must not block the reads below); lamina may refuse it
        // before reading it all, so a broken pipe is not an error.
        let feeder = self.stdin.take().map(|data| {
            let mut pipe = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            })
        });
        // Read both pipes on threads, then reap the child with wait4 for its own rusage.
        let mut out_pipe = child.stdout.take().unwrap();
        let mut err_pipe = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut out_pipe, &mut buf).unwrap();
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut err_pipe, &mut buf).unwrap();
            buf
        });
        let (status, peak_rss_kib) = wait4(child.id());
        if let Some(feeder) = feeder {
            feeder.join().unwrap();
        }
        let stdout = out_reader.join().unwrap();
        let stderr = err_reader.join().unwrap();
        let stderr = String::from_utf8(stderr).unwrap();
        let peak_rss_kib = if self.measure_rss {
            std::fs::read_to_string(report.path())
                .ok()
                .and_then(|kib| kib.parse().ok())
                .unwrap_or_else(|| panic!("the RSS spawner reported nothing:\n{stderr}"))
        } else {
            peak_rss_kib
        };
        Outcome {
            code: status.expect("lamina exited, not killed by a signal"),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr,
            peak_rss_kib,
        }
    }

    /// The same command, started by [`RSS_SPAWNER`] (same environment and directory).
    fn spawned_by_python(&self, report: &Path) -> Command {
        let python = std::env::var_os("LAMINA_TEST_PYTHON").unwrap_or_else(|| "python3".into());
        let mut command = Command::new(python);
        command
            .arg("-c")
            .arg(RSS_SPAWNER)
            .arg(report)
            .arg(self.command.get_program())
            .args(self.command.get_args())
            .env_clear()
            .stdin(Stdio::null());
        for (key, value) in self.command.get_envs() {
            if let Some(value) = value {
                command.env(key, value);
            }
        }
        if let Some(dir) = self.command.get_current_dir() {
            command.current_dir(dir);
        }
        command
    }

    /// Runs, expects exit 0 and one JSON object on stdout.
    pub fn success_json(self) -> Value {
        let out = self.output();
        assert_eq!(out.code, 0, "lamina failed:\n{}", out.stderr);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", out.stdout))
    }

    /// Runs and expects a failure with `code` and a one-line `Error: ...` that contains every `needle`.
    pub fn fails(self, code: i32, needles: &[&str]) -> Outcome {
        let out = self.output();
        assert_eq!(
            out.code, code,
            "wrong exit code; stderr:\n{}\nstdout:\n{}",
            out.stderr, out.stdout
        );
        assert!(
            out.stdout.is_empty(),
            "a failed run printed to stdout: {}",
            out.stdout
        );
        assert!(
            !out.stderr.contains("panicked"),
            "lamina panicked:\n{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("stack backtrace"),
            "backtrace printed:\n{}",
            out.stderr
        );
        let error_lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("Error: "))
            .collect();
        if code == 1 {
            assert_eq!(
                error_lines.len(),
                1,
                "expected exactly one `Error:` line:\n{}",
                out.stderr
            );
        }
        let text = if code == 1 {
            error_lines[0].to_string()
        } else {
            out.stderr.clone()
        };
        for needle in needles {
            assert!(
                text.contains(needle),
                "error does not mention `{needle}`:\n{}",
                out.stderr
            );
        }
        out
    }
}

/// Reaps `pid` with `wait4`: its exit code (`None` when a signal ended it) and its peak RSS in KiB.
fn wait4(pid: u32) -> (Option<i32>, u64) {
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid for writes for the duration of the call.
        let got = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
        if got == pid as i32 {
            break;
        }
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINTR),
            "wait4 failed"
        );
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss as u64)
}

/// The environment of a plan as (name, value) pairs in order.
pub fn env_of(plan: &Value) -> Vec<(String, String)> {
    plan["environment"]
        .as_object()
        .expect("environment is an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_string()))
        .collect()
}

/// One variable of a plan's environment.
pub fn env_var<'a>(plan: &'a Value, name: &str) -> Option<&'a str> {
    plan["environment"].get(name).and_then(Value::as_str)
}

/// Whether tests that need privileges or services must run (CI) instead of skipping.
pub fn must_work() -> bool {
    std::env::var("LAMINA_TEST_MUST_WORK").is_ok_and(|v| v == "1")
}

/// The test venv's Python (`LAMINA_TEST_PYTHON`, made by .ci/run) when it can import `modules`.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let candidate = std::env::var("LAMINA_TEST_PYTHON")
        .unwrap_or_else(|_| "/var/cache/lamina-test-venv/bin/python".into());
    let ok = Command::new(&candidate)
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(PathBuf::from(candidate))
    } else {
        skip(&format!(
            "{candidate} cannot import {} (LAMINA_TEST_PYTHON)",
            modules.join(", ")
        ))
    }
}

/// Skips the calling test (returns `None`) with a printed reason, or fails it under
/// `LAMINA_TEST_MUST_WORK=1`.
pub fn skip<T>(reason: &str) -> Option<T> {
    if must_work() {
        panic!("LAMINA_TEST_MUST_WORK=1 but {reason}");
    }
    eprintln!("skipped: {reason}");
    None
}

/// The OCI image layouts `scripts/build-test-images` writes (`LAMINA_TEST_IMAGES`, default
/// `/var/cache/lamina-test-images`), or a skip when they are not there.
pub fn test_images() -> Option<PathBuf> {
    let dir = std::env::var_os("LAMINA_TEST_IMAGES").map_or_else(
        || PathBuf::from("/var/cache/lamina-test-images"),
        PathBuf::from,
    );
    if dir.join("provided/index.json").is_file() {
        Some(dir)
    } else {
        skip(&format!(
            "no test images in {} (run scripts/build-test-images)",
            dir.display()
        ))
    }
}

/// The local test registry holding `scripts/build-test-images` output (`LAMINA_TEST_REGISTRY`,
/// e.g. `127.0.0.1:5000`, set by `.ci/run` after `scripts/registry start && scripts/registry push-all`).
pub fn registry() -> Option<String> {
    use std::io::{Read, Write};
    let Ok(address) = std::env::var("LAMINA_TEST_REGISTRY") else {
        return skip(
            "LAMINA_TEST_REGISTRY is not set (run scripts/registry start && scripts/registry push-all)",
        );
    };
    let answered = std::net::TcpStream::connect(&address)
        .ok()
        .and_then(|mut s| {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .ok()?;
            write!(s, "GET /v2/ HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
            let mut reply = String::new();
            s.read_to_string(&mut reply).ok()?;
            (reply.starts_with("HTTP/1.") && reply.get(9..12) == Some("200")).then_some(())
        });
    match answered {
        Some(()) => Some(address),
        None => skip(&format!(
            "the test registry at {address} does not answer /v2/"
        )),
    }
}

/// A registry of the test's own (Debian's `docker-registry` on a free loopback port, storage in a
/// temporary directory), for tests that break things: tampered blobs, authentication.
pub struct TestRegistry {
    child: std::process::Child,
    pub address: String,
    pub storage: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts one; with `htpasswd` (the file's contents) it requires basic authentication.
    pub fn start(htpasswd: Option<&str>) -> Option<TestRegistry> {
        use std::io::Write;
        for tool in ["docker-registry", "skopeo"] {
            if !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return skip(&format!(
                    "{tool} is not installed (apt-get install docker-registry skopeo)"
                ));
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let storage = tempfile::tempdir().unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}/data\nhttp:\n  addr: {address}\n",
            storage.path().display()
        );
        if let Some(users) = htpasswd {
            let path = storage.path().join("htpasswd");
            std::fs::write(&path, users).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: lamina-test\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = storage.path().join("config.yml");
        std::fs::File::create(&config_path)
            .unwrap()
            .write_all(config.as_bytes())
            .unwrap();
        let child = std::process::Command::new("docker-registry")
            .args(["serve", config_path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = TestRegistry {
            child,
            address,
            storage,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&registry.address).is_ok() {
                return Some(registry);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("docker-registry did not start on {}", registry.address);
    }

    /// Copies a test image (an OCI layout from `scripts/build-test-images`) into this registry.
    pub fn push(&self, image: &str, tag: &str, repository: &str, credentials: Option<&str>) {
        let images = std::env::var("LAMINA_TEST_IMAGES")
            .unwrap_or_else(|_| "/var/cache/lamina-test-images".into());
        let mut command = std::process::Command::new("skopeo");
        command.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(credentials) = credentials {
            command.args(["--dest-creds", credentials]);
        }
        let status = command
            .arg(format!("oci:{images}/{image}:{tag}"))
            .arg(format!("docker://{}/{repository}", self.address))
            .status()
            .unwrap();
        assert!(status.success(), "skopeo copy of {image} failed");
    }

    /// Copies the image tagged `tag` in the OCI layout at `layout` into this registry, blobs as
    /// they are.
    pub fn push_layout(&self, layout: &Path, tag: &str, repository: &str) {
        let status = std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repository}", self.address))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "skopeo copy of {} failed",
            layout.display()
        );
    }

    /// The stored file of a blob (the registry's filesystem layout).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.path().join(format!(
            "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The unprivileged user of the rootless tests (`LAMINA_TEST_ROOTLESS_USER`, which `.ci/run`
/// creates), or a printed skip.
pub fn rootless_user() -> Option<nix::unistd::User> {
    let Ok(name) = std::env::var("LAMINA_TEST_ROOTLESS_USER") else {
        return skip("LAMINA_TEST_ROOTLESS_USER is not set (.ci/run creates the user)");
    };
    Some(
        nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the rootless test user exists"),
    )
}

/// `BINARY system setup-rootless --user NAME` (as root), which must succeed.
pub fn setup_rootless(binary: &Path, name: &str) {
    let setup = Command::new(binary)
        .args(["system", "setup-rootless", "--user", name])
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
}
