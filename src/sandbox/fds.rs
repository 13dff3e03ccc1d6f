//! Passing open descriptors between processes over a unix socket (SCM_RIGHTS): how the sandbox's
//! helpers hand lamina sockets and namespaces that only exist inside the sandbox.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// The most descriptors one message carries here.
const MAX_FDS: usize = 4;

/// Sends `text` (at least one byte) with `fds`.
pub fn send(socket: RawFd, text: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let rights = [ControlMessage::ScmRights(fds)];
    let control: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        socket,
        &[IoSlice::new(text)],
        control,
        MsgFlags::empty(),
        None,
    )
    .map_err(std::io::Error::from)?;
    Ok(())
}

/// Receives one message: its text and the descriptors that came with it (close-on-exec, owned).
pub fn receive(socket: RawFd) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut text = [0u8; 512];
    let mut iov = [IoSliceMut::new(&mut text)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let message = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these descriptors for us; nobody else owns them.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let length = message.bytes;
    Ok((text[..length].to_vec(), fds))
}
