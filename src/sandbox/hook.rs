//! Placing the Runtime API inside the function's network namespace, race-free.
//!
//! libcontainer runs the createContainer hook inside all of the container's namespaces, with full
//! capabilities, before `pivot_root`, so host paths are still visible. The hook is lamina itself
//! (`lamina __runtime-api-hook SOCKET`): it brings `lo` up (a new network namespace starts with it
//! down), binds `127.0.0.1:9001`, and hands the listening socket and the namespace back over a unix
//! socket (SCM_RIGHTS). When `build()` returns, the socket is waiting in lamina, which serves the
//! Runtime API on it before the function even starts. The same works for root and rootless.

use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// The hidden subcommand the hook runs as.
pub const HOOK_COMMAND: &str = "__runtime-api-hook";
/// Where the function's runtime finds the API, inside its namespace (as in Lambda).
pub const RUNTIME_API_ADDRESS: &str = "127.0.0.1:9001";

/// The hook's flag that skips the Runtime API socket (when the image's own RIE serves it).
pub const NETNS_ONLY: &str = "--netns-only";

/// The hook's body. Returns the process exit code (non-zero makes `build()` fail with our message
/// on the container's stderr).
pub fn run(socket: &Path, bind_api: bool) -> i32 {
    match serve_socket(socket, bind_api) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("lamina: cannot place the Runtime API in the sandbox: {err}");
            1
        }
    }
}

fn serve_socket(socket: &Path, bind_api: bool) -> std::io::Result<()> {
    loopback_up()?;
    let listener = if bind_api {
        Some(TcpListener::bind(RUNTIME_API_ADDRESS)?)
    } else {
        None
    };
    let netns = std::fs::File::open("/proc/self/ns/net")?;
    let userns = std::fs::File::open("/proc/self/ns/user")?;
    let stream = UnixStream::connect(socket)?;
    let mut fds = vec![netns.as_raw_fd(), userns.as_raw_fd()];
    fds.extend(listener.as_ref().map(|l| l.as_raw_fd()));
    super::fds::send(stream.as_raw_fd(), b"L", &fds)?;
    Ok(())
}

/// `ip link set lo up`, with the two ioctls it takes.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: the ioctls read and write the ifreq we own; the fd is valid.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What the hook sent back.
pub struct Placed {
    /// The Runtime API socket, unless the hook ran with `--netns-only`.
    pub listener: Option<TcpListener>,
    /// The function's network namespace (for outbound networking and reaching ports inside).
    pub netns: OwnedFd,
    /// The user namespace that owns it (slirp4netns joins both when rootless).
    pub userns: OwnedFd,
}

/// Receives the hook's sockets; call after `build()` returned (the hook has connected by then).
pub fn receive(listener: &UnixListener) -> std::io::Result<Placed> {
    listener.set_nonblocking(true)?;
    let (stream, _) = listener.accept().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("the sandbox's Runtime API hook did not report back: {e}"),
        )
    })?;
    stream.set_nonblocking(false)?;
    let (_, fds) = super::fds::receive(stream.as_raw_fd())?;
    let mut fds = fds.into_iter();
    match (fds.next(), fds.next(), fds.next()) {
        (Some(netns), Some(userns), listener) => Ok(Placed {
            listener: listener.map(TcpListener::from),
            netns,
            userns,
        }),
        _ => Err(std::io::Error::other(
            "the hook sent fewer than 2 descriptors",
        )),
    }
}
