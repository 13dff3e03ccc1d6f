//! Reaching a port inside the sandbox from the host (`-d/--debug-port`), with no bridge and no
//! iptables: for each connection, a helper (`lamina __netns-connect`, single-threaded because it
//! was just exec'd) joins the sandbox's user and network namespaces, connects to
//! `127.0.0.1:PORT` there, and hands the connected socket back over SCM_RIGHTS. A socket stays in
//! the namespace it was made in, so lamina then copies bytes between it and the host connection.
//! The same works for root and rootless (a thread of lamina itself may not join a user namespace).

use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The hidden subcommand of the helper.
pub const CONNECT_COMMAND: &str = "__netns-connect";

/// The helper's descriptors: 3 = network namespace, 4 = user namespace (or none), 5 = the socket
/// to send the result on.
const NETNS_FD: RawFd = 3;
const USERNS_FD: RawFd = 4;
const REPLY_FD: RawFd = 5;

/// The helper's body (`lamina __netns-connect PORT [--userns]`); returns its exit code.
pub fn run_helper(port: u16, join_userns: bool) -> i32 {
    // SAFETY: the descriptors were placed by `connect_inside` for this process.
    let (netns, userns, reply) = unsafe {
        (
            OwnedFd::from_raw_fd(NETNS_FD),
            join_userns.then(|| OwnedFd::from_raw_fd(USERNS_FD)),
            UnixStream::from_raw_fd(REPLY_FD),
        )
    };
    let result = (|| -> std::io::Result<TcpStream> {
        if let Some(userns) = userns {
            nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER)
                .map_err(std::io::Error::from)?;
        }
        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        TcpStream::connect(("127.0.0.1", port))
    })();
    match result {
        Ok(stream) => {
            let fds = [stream.as_raw_fd()];
            let sent = super::fds::send(reply.as_raw_fd(), b"C", &fds);
            if sent.is_ok() { 0 } else { 1 }
        }
        Err(err) => {
            let _ = super::fds::send(reply.as_raw_fd(), err.to_string().as_bytes(), &[]);
            1
        }
    }
}

/// Connects to `127.0.0.1:port` inside the sandbox.
pub fn connect_inside(
    netns: &OwnedFd,
    userns: Option<&OwnedFd>,
    port: u16,
) -> std::io::Result<TcpStream> {
    let (ours, theirs) = UnixStream::pair()?;
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command.arg(CONNECT_COMMAND).arg(port.to_string());
    if userns.is_some() {
        command.arg("--userns");
    }
    let (netns_fd, userns_fd, reply_fd) = (
        netns.as_raw_fd(),
        userns.map(|u| u.as_raw_fd()),
        theirs.as_raw_fd(),
    );
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let place = |from: RawFd, to: RawFd| {
                if libc::dup2(from, to) < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            // Through high numbers first, so that no source is overwritten before it is copied.
            place(netns_fd, 100)?;
            place(reply_fd, 102)?;
            if let Some(fd) = userns_fd {
                place(fd, 101)?;
                place(101, USERNS_FD)?;
            }
            place(100, NETNS_FD)?;
            place(102, REPLY_FD)?;
            Ok(())
        });
    }
    let mut child = command.stdin(std::process::Stdio::null()).spawn()?;
    drop(theirs);
    let received = super::fds::receive(ours.as_raw_fd());
    let _ = child.wait();
    let (text, fds) = received?;
    match fds.into_iter().next() {
        Some(fd) => Ok(TcpStream::from(fd)),
        None => Err(std::io::Error::other(
            String::from_utf8_lossy(&text).into_owned(),
        )),
    }
}
