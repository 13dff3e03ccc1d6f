//! The sandbox: one OCI container per invoke, made with youki's libcontainer.
//!
//! All libcontainer calls happen on the thread that calls `Sandbox::create` (lamina's main thread,
//! which lives as long as the process): the container's init gets `PDEATHSIG`, which fires when
//! the *creating thread* exits, so a killed lamina takes the function with it.

pub mod cgroup;
pub mod confinement;
pub mod emulation;
pub mod fds;
pub mod forward;
pub mod hook;
pub mod idmap;
pub mod network;
pub mod rootless;
pub mod seccomp;
pub mod spec;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

pub use hook::Placed;
pub use spec::SpecInputs;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot prepare the sandbox in {}: {source}", .path.display())]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the sandbox: {0}")]
    Create(String),
    #[error("cannot start the function: {0}")]
    Start(String),
}

/// Runs the function's process: a thin wrapper over the default executor that asks for SIGKILL when
/// lamina dies, just before the exec.
#[derive(Clone)]
struct DeathSignalExecutor;

impl Executor for DeathSignalExecutor {
    fn exec(&self, spec: &libcontainer::oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and has no memory effects.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Where this invoke keeps its files (removed with the sandbox).
pub struct Paths {
    /// `config.json`, `hosts`, `resolv.conf`, `api.sock`, `owner` (lamina's pid).
    pub bundle: PathBuf,
    /// libcontainer's state root (shared by invokes).
    pub state_root: PathBuf,
    /// The cgroup of the container, e.g. `/lamina/<id>`.
    pub cgroups_path: String,
}

impl Paths {
    /// `$LAMINA_RUNTIME_DIR`, else `/run/lamina` for root and `$XDG_RUNTIME_DIR/lamina` otherwise.
    pub fn base(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
        if let Some(dir) = env(crate::env_vars::LAMINA_RUNTIME_DIR).filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        match rootless::Identity::current() {
            None => PathBuf::from("/run/lamina"),
            Some(me) => env("XDG_RUNTIME_DIR")
                .filter(|d| !d.is_empty())
                .map_or_else(
                    || std::env::temp_dir().join(format!("lamina-run-{}", me.uid)),
                    |d| PathBuf::from(d).join("lamina"),
                ),
        }
    }

    pub fn for_invoke(id: &str, env: &dyn Fn(&str) -> Option<String>) -> Paths {
        let base = Paths::base(env);
        let parent = cgroup_parent(env);
        Paths {
            bundle: base.join("bundles").join(id),
            state_root: base.join("containers"),
            cgroups_path: format!("/{parent}/{id}"),
        }
    }
}

/// The cgroup every sandbox of this user lives under: `$LAMINA_CGROUP_PARENT`, else `lamina` for
/// root and `lamina-<uid>` for an ordinary user.
pub fn cgroup_parent(env: &dyn Fn(&str) -> Option<String>) -> String {
    env(crate::env_vars::LAMINA_CGROUP_PARENT)
        .filter(|p| !p.is_empty() && !p.contains('/'))
        .unwrap_or_else(|| {
            rootless::Identity::current().map_or_else(
                || "lamina".to_string(),
                |me| rootless::cgroup_parent(me.uid),
            )
        })
}

/// Removes what invokes of lamina processes that no longer exist left behind (a `kill -9`, a
/// crash, a power cut): their containers, cgroups and bundles. Invokes of live processes are left
/// alone.
pub fn collect_garbage(env: &dyn Fn(&str) -> Option<String>) {
    let base = Paths::base(env);
    let Ok(entries) = std::fs::read_dir(base.join("bundles")) else {
        return;
    };
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let owner = std::fs::read_to_string(entry.path().join("owner"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        let alive = owner.is_some_and(crate::process::exists);
        // A bundle without an owner file is being set up right now; leave it.
        if alive || owner.is_none() {
            continue;
        }
        tracing::debug!(%id, "removing the sandbox of a lamina that is gone");
        let paths = Paths::for_invoke(&id, env);
        if let Ok(mut container) = Container::load(paths.state_root.join(&id)) {
            let _ = container.kill(Signal::SIGKILL, true);
            let _ = container.delete(true);
        }
        let _ = std::fs::remove_dir_all(paths.state_root.join(&id));
        cgroup::remove_leaf(&paths.cgroups_path);
        if rootless::Identity::current().is_none() {
            cgroup::remove_parent(&paths.cgroups_path);
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// A created container. Dropping it kills and deletes everything it made.
pub struct Sandbox {
    container: Option<Container>,
    pub pid: Pid,
    pub id: String,
    cgroups_path: String,
    bundle: PathBuf,
    /// Read ends of the function's stdout and stderr.
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::Create(format!("cannot make a pipe: {e}")))
}

impl Sandbox {
    /// Writes the bundle and creates the container (its init waits for `start`). With a hook in the
    /// spec, also returns the Runtime API socket the hook placed in the container's namespace.
    pub fn create(
        id: &str,
        paths: &Paths,
        inputs: &SpecInputs,
    ) -> Result<(Sandbox, Option<Placed>), SandboxError> {
        let prepare = |path: &Path, source: std::io::Error| SandboxError::Prepare {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&paths.bundle).map_err(|e| prepare(&paths.bundle, e))?;
        std::fs::create_dir_all(&paths.state_root).map_err(|e| prepare(&paths.state_root, e))?;
        let owner = paths.bundle.join("owner");
        std::fs::write(&owner, std::process::id().to_string()).map_err(|e| prepare(&owner, e))?;
        let config = spec::build(inputs);
        let config_path = paths.bundle.join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("serialisable"),
        )
        .map_err(|e| prepare(&config_path, e))?;
        let socket_path = paths.bundle.join("api.sock");
        let socket = match &inputs.hook {
            Some(_) => {
                Some(UnixListener::bind(&socket_path).map_err(|e| prepare(&socket_path, e))?)
            }
            None => None,
        };

        let (out_read, out_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let dev_null =
            std::fs::File::open("/dev/null").map_err(|e| prepare(Path::new("/dev/null"), e))?;
        let create_error =
            |e: libcontainer::error::LibcontainerError| SandboxError::Create(format!("{e:?}"));
        let built = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(DeathSignalExecutor)
            .with_root_path(&paths.state_root)
            .map_err(create_error)?
            .with_stdin(OwnedFd::from(dev_null))
            .with_stdout(out_write)
            .with_stderr(err_write)
            .validate_id()
            .map_err(create_error)?
            .as_init(&paths.bundle)
            .with_systemd(false)
            .with_detach(true)
            .build();
        // libcontainer leaves the caller non-dumpable after creating namespaces; undo that.
        // SAFETY: prctl with PR_SET_DUMPABLE has no memory effects.
        unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 1);
        }
        let container = match built {
            Ok(container) => container,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&paths.bundle);
                cgroup::remove_leaf(&inputs.cgroups_path);
                if rootless::Identity::current().is_none() {
                    cgroup::remove_parent(&inputs.cgroups_path);
                }
                return Err(create_error(err));
            }
        };
        let pid = container
            .pid()
            .ok_or_else(|| SandboxError::Create("the container has no init process".into()))?;
        let mut sandbox = Sandbox {
            container: Some(container),
            pid,
            id: id.to_string(),
            cgroups_path: inputs.cgroups_path.clone(),
            bundle: paths.bundle.clone(),
            stdout: Some(out_read),
            stderr: Some(err_read),
        };
        if inputs.device_rules
            && let Err(err) = cgroup::restrict_devices(&inputs.cgroups_path)
        {
            sandbox.destroy();
            return Err(SandboxError::Create(format!(
                "cannot restrict the devices of cgroup {}: {err}",
                inputs.cgroups_path
            )));
        }
        let placed = match socket {
            Some(socket) => match hook::receive(&socket) {
                Ok(placed) => Some(placed),
                Err(err) => {
                    sandbox.destroy();
                    return Err(SandboxError::Create(err.to_string()));
                }
            },
            None => None,
        };
        Ok((sandbox, placed))
    }

    /// Lets the function's process run.
    pub fn start(&mut self) -> Result<(), SandboxError> {
        let container = self.container.as_mut().expect("sandbox not destroyed");
        container
            .start()
            .map_err(|e| SandboxError::Start(format!("{e:?}")))
    }

    /// SIGKILLs every process of the container.
    pub fn kill(&mut self) {
        if let Some(container) = self.container.as_mut()
            && let Err(err) = container.kill(Signal::SIGKILL, true)
        {
            tracing::debug!(?err, "kill");
        }
    }

    /// SIGTERMs the runtime, the container's first process (through libcontainer, which knows
    /// whether it still runs). As the init of its PID namespace it gets the signal only if it
    /// handles it; in Lambda, where it is not an init, the default action would end it, so a
    /// runtime without a handler differs only in waiting for the SIGKILL that follows.
    pub fn terminate_runtime(&mut self) {
        if let Some(container) = self.container.as_mut()
            && let Err(err) = container.kill(Signal::SIGTERM, false)
        {
            tracing::debug!(?err, "SIGTERM to the runtime");
        }
    }

    /// Processes still in the sandbox (the runtime counts as one).
    pub fn process_count(&self) -> Option<usize> {
        cgroup::process_count(&self.cgroups_path)
    }

    pub fn memory(&self) -> cgroup::MemoryStats {
        cgroup::memory_stats(&self.cgroups_path)
    }

    /// Deletes the container, its cgroup and its bundle. Idempotent.
    pub fn destroy(&mut self) {
        if let Some(mut container) = self.container.take()
            && let Err(err) = container.delete(true)
        {
            tracing::warn!("could not delete sandbox {}: {err:?}", self.id);
        }
        if rootless::Identity::current().is_none() {
            cgroup::remove_parent(&self.cgroups_path);
        }
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill();
        // Reap the init so no zombie stays behind, then delete.
        let _ = nix::sys::wait::waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        self.destroy();
    }
}

/// Describes how a process ended, the way the RIE reports it (`exit status 7`, `signal: killed`).
pub fn describe_exit(status: nix::sys::wait::WaitStatus) -> String {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => "signal: killed".into(),
        WaitStatus::Signaled(_, signal, _) => format!(
            "signal: {}",
            signal.as_str().trim_start_matches("SIG").to_lowercase()
        ),
        other => format!("{other:?}"),
    }
}
