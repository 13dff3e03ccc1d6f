//! The sandbox: one OCI container per invoke, made with youki's libcontainer.
//!
//! All libcontainer calls happen on the thread that calls `Sandbox::create` (lamina's main thread,
//! which lives as long as the process): the container's init gets `PDEATHSIG`, which fires when
//! the *creating thread* exits, so a killed lamina takes the function with it.

pub mod cgroup;
pub mod confinement;
pub mod create_guard;
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

/// Runs the function's process: a thin wrapper over the default executor that ties the sandbox to
/// lamina's life.
///
/// `validate` runs in the container's init before it reports ready (and so before lamina can
/// `start` it): there the init asks for SIGKILL when lamina dies (`PR_SET_PDEATHSIG`), then looks
/// at a pidfd of lamina, inherited through the fork, to see whether lamina died before that
/// request, and exits if so. Either way a lamina killed at any instant of `create` takes the init
/// with it, and with the init (the sandbox's PID 1) the kernel kills everything in its PID
/// namespace. The death signal survives the exec of a non-setuid program, so it also holds for
/// the function's whole run.
#[derive(Clone)]
struct DeathSignalExecutor {
    /// lamina's pidfd, as numbered in lamina (and so in the init, a fork of it).
    lamina: std::os::fd::RawFd,
}

impl DeathSignalExecutor {
    fn tie_to_lamina(&self) {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and has no memory effects.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        let mut fd = libc::pollfd {
            fd: self.lamina,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout. A pidfd is readable once its process has exited.
        let gone = unsafe { libc::poll(&mut fd, 1, 0) } == 1 && fd.revents & libc::POLLIN != 0;
        if gone {
            // SAFETY: _exit ends this process (the container's init) without running anything.
            unsafe { libc::_exit(1) };
        }
    }
}

impl Executor for DeathSignalExecutor {
    fn exec(&self, spec: &libcontainer::oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<(), ExecutorValidationError> {
        self.tie_to_lamina();
        DefaultExecutor {}.validate(spec)
    }
}

/// A pidfd of this process, for the sandbox's init to watch (close-on-exec, like every pidfd).
fn own_pidfd() -> Result<OwnedFd, SandboxError> {
    // SAFETY: pidfd_open takes a pid and flags; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return Err(SandboxError::Create(format!(
            "cannot open a pidfd of lamina (Linux 5.3 or later is needed): {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: the fd was just returned to us and is owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
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

impl Paths {
    /// Makes the bundle directory with its `owner` file (lamina's pid) in one step: it is built as
    /// `bundles/.new-<pid>-<id>` and renamed into place, so `collect_garbage` never meets a
    /// bundle without an owner, whenever lamina is killed. Idempotent.
    pub fn create_bundle(&self) -> std::io::Result<()> {
        if self.bundle.join("owner").exists() {
            return Ok(());
        }
        let (Some(parent), Some(name)) = (self.bundle.parent(), self.bundle.file_name()) else {
            return Err(std::io::Error::other(
                "a bundle path has a parent and a name",
            ));
        };
        std::fs::create_dir_all(parent)?;
        let pid = std::process::id();
        let staging = parent.join(format!(".new-{pid}-{}", name.to_string_lossy()));
        std::fs::create_dir(&staging)?;
        std::fs::write(staging.join("owner"), pid.to_string())?;
        std::fs::rename(&staging, &self.bundle)
    }
}

/// Removes a bundle directory: renamed aside first (`.gone-<id>`), so that a removal cut short
/// leaves a name `collect_garbage` knows to remove, never a bundle that lost its `owner`.
pub fn remove_bundle(bundle: &Path) {
    let aside = match (bundle.parent(), bundle.file_name()) {
        (Some(parent), Some(name)) => parent.join(format!(".gone-{}", name.to_string_lossy())),
        _ => bundle.to_path_buf(),
    };
    let target = if std::fs::rename(bundle, &aside).is_ok() {
        aside
    } else {
        bundle.to_path_buf()
    };
    let _ = std::fs::remove_dir_all(target);
}

/// What `collect_garbage` does with an entry of `bundles/`.
#[derive(Debug, PartialEq, Eq)]
enum Leftover {
    /// A bundle being set up or in use by a live lamina.
    InUse,
    /// A bundle of a lamina that is gone: its container, cgroup and files go.
    Sandbox(String),
    /// A half-made or half-removed directory: only the directory goes.
    Directory,
}

fn classify(name: &str, owner: Option<i32>, alive: &dyn Fn(i32) -> bool) -> Leftover {
    if name.starts_with(".gone-") {
        return Leftover::Directory;
    }
    if let Some(rest) = name.strip_prefix(".new-") {
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        return match pid {
            Some(pid) if alive(pid) => Leftover::InUse,
            _ => Leftover::Directory,
        };
    }
    match owner {
        Some(pid) if alive(pid) => Leftover::InUse,
        // No owner: a bundle whose removal was cut short by an older lamina; its owner is gone.
        _ => Leftover::Sandbox(name.to_string()),
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
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = std::fs::read_to_string(entry.path().join("owner"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        let id = match classify(&name, owner, &crate::process::exists) {
            Leftover::InUse => continue,
            Leftover::Directory => {
                let _ = std::fs::remove_dir_all(entry.path());
                continue;
            }
            Leftover::Sandbox(id) => id,
        };
        tracing::debug!(%id, "removing the sandbox of a lamina that is gone");
        let paths = Paths::for_invoke(&id, env);
        if let Ok(mut container) = Container::load(paths.state_root.join(&id)) {
            let _ = container.kill(Signal::SIGKILL, false);
            let _ = container.delete(true);
        }
        let _ = std::fs::remove_dir_all(paths.state_root.join(&id));
        cgroup::remove_leftover(&paths.cgroups_path);
        if rootless::Identity::current().is_none() {
            cgroup::remove_parent(&paths.cgroups_path);
        }
        remove_bundle(&entry.path());
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
        paths
            .create_bundle()
            .map_err(|e| prepare(&paths.bundle, e))?;
        std::fs::create_dir_all(&paths.state_root).map_err(|e| prepare(&paths.state_root, e))?;
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
        let lamina = own_pidfd()?;
        // Until `build` returns, a watcher kills what it started if lamina dies (see create_guard).
        let guard =
            create_guard::CreateGuard::start(&cgroup::procs_file(&inputs.cgroups_path), &lamina);
        let built = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(DeathSignalExecutor {
                lamina: std::os::fd::AsRawFd::as_raw_fd(&lamina),
            })
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
        if let Some(guard) = guard {
            guard.finish();
        }
        drop(lamina);
        // libcontainer leaves the caller non-dumpable after creating namespaces; undo that.
        // SAFETY: prctl with PR_SET_DUMPABLE has no memory effects.
        unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 1);
        }
        let container = match built {
            Ok(container) => container,
            Err(err) => {
                remove_bundle(&paths.bundle);
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

    /// SIGKILLs every process of the container: the init of its PID namespace, whose death makes
    /// the kernel kill all the others. (libcontainer's kill-all freezes the cgroup, signals each
    /// process and thaws it: a lamina killed in between would leave the sandbox frozen, with
    /// processes that cannot die until something thaws them.)
    pub fn kill(&mut self) {
        if let Some(container) = self.container.as_mut()
            && let Err(err) = container.kill(Signal::SIGKILL, false)
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
        remove_bundle(&self.bundle);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill();
        // Reap the init (so no zombie stays behind, and so `destroy` finds the container stopped
        // and has nothing left to kill), then delete.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while matches!(
            nix::sys::wait::waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
            Ok(nix::sys::wait::WaitStatus::StillAlive)
        ) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_garbage_classification() {
        let alive = |pid: i32| pid == 100;
        assert_eq!(classify("lamina-a", Some(100), &alive), Leftover::InUse);
        assert_eq!(
            classify("lamina-a", Some(200), &alive),
            Leftover::Sandbox("lamina-a".into())
        );
        // A bundle that lost its owner (a removal cut short) is collected, not kept forever.
        assert_eq!(
            classify("lamina-a", None, &alive),
            Leftover::Sandbox("lamina-a".into())
        );
        assert_eq!(classify(".new-100-lamina-a", None, &alive), Leftover::InUse);
        assert_eq!(
            classify(".new-200-lamina-a", None, &alive),
            Leftover::Directory
        );
        assert_eq!(
            classify(".gone-lamina-a", None, &alive),
            Leftover::Directory
        );
    }

    #[test]
    fn test_bundle_is_created_with_its_owner_and_removed_aside() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            bundle: dir.path().join("bundles/lamina-x"),
            state_root: dir.path().join("containers"),
            cgroups_path: "/lamina/lamina-x".into(),
        };
        paths.create_bundle().unwrap();
        paths.create_bundle().unwrap();
        assert_eq!(
            std::fs::read_to_string(paths.bundle.join("owner")).unwrap(),
            std::process::id().to_string()
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("bundles"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["lamina-x"]);
        remove_bundle(&paths.bundle);
        assert_eq!(
            std::fs::read_dir(dir.path().join("bundles"))
                .unwrap()
                .count(),
            0
        );
    }
}
