//! A watcher for the one stretch in which lamina's death could leave a sandbox process behind:
//! libcontainer's `build()`. Its intermediate process joins the sandbox's cgroup and then, for a
//! rootless sandbox, blocks until lamina has written its id maps; it holds both ends of that
//! channel itself, so when lamina dies there it blocks forever, re-parented to PID 1.
//!
//! Before `build()` lamina forks a small watcher (a plain fork, no exec) that waits for either
//! lamina to say "done" (a byte on a pipe) or lamina to die (its pidfd becomes readable). If lamina
//! died, the watcher SIGKILLs every process in the sandbox's cgroup until it stays empty, then
//! exits. After `build()` the container's init is tied to lamina by itself (see
//! `DeathSignalExecutor`), so the watcher is needed no longer.
//!
//! The watcher is a fork of a process that may have other threads, so it only makes system calls
//! (no allocation, no locks): everything it needs is prepared before the fork.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

/// How long the watcher keeps killing after lamina's death: a process that was just forked may
/// join the cgroup a little later.
const QUIET_ROUNDS: u32 = 10;
const ROUND_MS: u64 = 20;

pub struct CreateGuard {
    watcher: libc::pid_t,
    done: Option<OwnedFd>,
}

impl CreateGuard {
    /// Starts the watcher for the sandbox whose cgroup lists its processes in `procs_file`
    /// (`cgroup.procs` of the sandbox's cgroup in one hierarchy). `lamina` is a pidfd of this
    /// process. `None` when no watcher could be started (the create goes on unwatched).
    pub fn start(procs_file: &std::path::Path, lamina: &OwnedFd) -> Option<CreateGuard> {
        let path = CString::new(procs_file.as_os_str().as_encoded_bytes()).ok()?;
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        let lamina_fd = lamina.as_raw_fd();
        // SAFETY: the child only makes system calls on data prepared before the fork, then _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return None;
        }
        if pid == 0 {
            // The watcher.
            // SAFETY: closing our copy of the write end: only lamina says "done".
            unsafe { libc::close(write.as_raw_fd()) };
            let code = watch(read.as_raw_fd(), lamina_fd, &path);
            // SAFETY: ends the watcher without running destructors or atexit handlers.
            unsafe { libc::_exit(code) };
        }
        drop(read);
        Some(CreateGuard {
            watcher: pid,
            done: Some(write),
        })
    }

    /// `build()` returned: the watcher exits; reap it.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // One byte says "done". (Closing the pipe would not: the processes `build()` forked
            // hold copies of its write end until they exec.)
            // SAFETY: write(2) of one byte from a static buffer to our pipe.
            unsafe { libc::write(done.as_raw_fd(), b"d".as_ptr().cast(), 1) };
            let mut status = 0;
            // SAFETY: waiting for our own child, which exits once it has read the byte.
            unsafe { libc::waitpid(self.watcher, &mut status, 0) };
        }
    }
}

/// The watcher's whole life. Returns its exit code.
fn watch(done: i32, lamina: i32, procs_file: &CString) -> i32 {
    let mut fds = [
        libc::pollfd {
            fd: done,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: lamina,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: two valid pollfds.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if ready > 0 {
            break;
        }
        if ready < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 1;
        }
    }
    // A byte on the pipe: lamina is done with `build()`. Otherwise (lamina's pidfd is readable,
    // or the pipe closed without a byte) lamina is gone.
    if fds[0].revents & libc::POLLIN != 0 {
        let mut byte = 0u8;
        // SAFETY: reading one byte into a stack variable.
        if unsafe { libc::read(done, (&mut byte as *mut u8).cast(), 1) } == 1 {
            return 0;
        }
    }
    let mut quiet = 0;
    while quiet < QUIET_ROUNDS {
        if super::cgroup::kill_listed(procs_file) == 0 {
            quiet += 1;
        } else {
            quiet = 0;
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: (ROUND_MS * 1_000_000) as libc::c_long,
        };
        // SAFETY: a valid timespec; the remainder is not wanted.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
    0
}
