//! Outbound network for `--network private`: slirp4netns, a user-mode network stack, attached to
//! the sandbox's network namespace before the function starts (about 4 ms). The function gets a
//! `tap0` interface with 10.0.2.100, DNS at 10.0.2.3, and the host's loopback at 10.0.2.2, which
//! `/etc/hosts` names `host.docker.internal` (as Docker Desktop does). No bridge, no iptables, and
//! the same for root and rootless.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What the function sees.
pub const GUEST_DNS: &str = "10.0.2.3";
pub const HOST_LOOPBACK: &str = "10.0.2.2";

/// A running slirp4netns; killed when dropped.
pub struct Slirp {
    child: Option<Child>,
}

impl Drop for Slirp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            // Its exit takes the kernel ~20 ms (the tap device and namespace go with it); reap it
            // in the background instead of making the invoke wait (init reaps it if lamina is gone).
            std::thread::spawn(move || child.wait());
        }
    }
}

/// Why outbound access is not there, for the one-line notice.
pub fn unavailable_reason() -> Option<String> {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("slirp4netns").is_file())
    });
    if !found {
        return Some("slirp4netns is not installed (apt-get install slirp4netns)".into());
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        Ok(_) => None,
        Err(err) => Some(format!(
            "/dev/net/tun cannot be opened ({err}); as root: chmod 0666 /dev/net/tun"
        )),
    }
}

/// Starts slirp4netns in the namespaces and waits until it has configured `tap0`.
pub fn attach(netns: &OwnedFd, userns: Option<&OwnedFd>) -> Result<Slirp, String> {
    let (ready_read, ready_write) =
        nix::unistd::pipe().map_err(|e| format!("cannot make a pipe for slirp4netns: {e}"))?;
    // The child inherits these three descriptors under the same numbers (they are not CLOEXEC).
    let inherit = |fd: &OwnedFd| {
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(|e| format!("cannot pass a descriptor to slirp4netns: {e}"))
    };
    inherit(netns)?;
    inherit(&ready_write)?;
    let mut command = Command::new("slirp4netns");
    command
        .args(["--configure", "--mtu=65520", "--netns-type=path"])
        .arg(format!("--ready-fd={}", ready_write.as_raw_fd()));
    if let Some(userns) = userns {
        inherit(userns)?;
        command.arg(format!(
            "--userns-path=/proc/self/fd/{}",
            userns.as_raw_fd()
        ));
    }
    command
        .arg(format!("/proc/self/fd/{}", netns.as_raw_fd()))
        .arg("tap0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // slirp4netns dies with lamina even when lamina is killed (it would otherwise keep the
    // sandbox's network namespace alive).
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start slirp4netns: {e}"))?;
    drop(ready_write);
    let mut ready = std::fs::File::from(ready_read);
    // slirp4netns writes "1" when ready; EOF means it failed.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let _ = tx.send(ready.read(&mut byte).map(|n| n == 1 && byte[0] == b'1'));
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(true)) => Ok(Slirp { child: Some(child) }),
        _ => {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            let _ = child.wait();
            Err(format!("slirp4netns did not start: {}", stderr.trim()))
        }
    }
}
