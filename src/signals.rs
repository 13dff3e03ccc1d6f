//! Stop requests: Ctrl-C (SIGINT), SIGTERM (`timeout`, a CI job being cancelled, `kill`) and
//! SIGHUP (a closed terminal) all mean "stop now, clean up, exit 128 + the signal's number".
//!
//! The handlers are installed once, before anything is created, so a signal that arrives while
//! lamina is busy outside an `.await` (creating the sandbox, unpacking a layer) is not lost and
//! does not kill lamina with its sandbox half made: it is recorded, and written as one byte into a
//! pipe that the async code waits on (`requested`). The byte is never read, so every later waiter
//! sees it too.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

/// The first stop signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// The pipe's write end, for the handler (-1 until `install`).
static WAKE: AtomicI32 = AtomicI32::new(-1);
/// The pipe's read end.
static READ: OnceLock<OwnedFd> = OnceLock::new();

const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Installs the handlers (idempotent). After this, the stop signals no longer end the process by
/// themselves: whoever runs must check `received` or await `requested`.
pub fn install() {
    if READ.get().is_some() {
        return;
    }
    let Ok((read, write)) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
    else {
        return;
    };
    if READ.set(read).is_err() {
        return;
    }
    WAKE.store(write.as_raw_fd(), Ordering::SeqCst);
    // The write end lives as long as the process.
    std::mem::forget(write);
    for signal in STOP_SIGNALS {
        // SAFETY: the action only does async-signal-safe things: atomics and write(2).
        let registered =
            unsafe { signal_hook_registry::register(signal, move || on_signal(signal)) };
        if let Err(err) = registered {
            tracing::debug!(signal, %err, "cannot handle the signal");
        }
    }
}

fn on_signal(signal: i32) {
    let _ = RECEIVED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    let fd: RawFd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) of one byte from a static buffer; async-signal-safe.
        unsafe {
            libc::write(fd, b"!".as_ptr().cast(), 1);
        }
    }
}

/// The stop signal received so far, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Resolves when a stop signal has been received (at once if one already was), with its number.
/// Without `install`, it waits for Ctrl-C only, as tokio would.
pub async fn requested() -> i32 {
    if let Some(signal) = received() {
        return signal;
    }
    let Some(read) = READ.get() else {
        let _ = tokio::signal::ctrl_c().await;
        return libc::SIGINT;
    };
    let registered = read.try_clone().ok().and_then(|fd| {
        // SAFETY: the AsyncFd owns its own duplicate of the pipe's read end, open until it drops.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .ok()
    });
    match registered {
        Some(fd) => {
            let _ = fd.readable().await;
        }
        None => std::future::pending::<()>().await,
    }
    received().unwrap_or(libc::SIGINT)
}

/// The exit code for a run stopped by `signal`: 128 + its number, as a shell reports it (130 for
/// Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).
pub fn exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(crate::exit::INTERRUPTED)
}

/// The exit code for a run that was stopped: from the signal received, else Ctrl-C's.
pub fn stopped_exit_code() -> u8 {
    received().map_or(crate::exit::INTERRUPTED, exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_signals_exit_codes_are_the_shells() {
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(exit_code(libc::SIGHUP), 129);
    }
}
