//! Facts about other processes of this host.

/// Whether process `pid` exists (also when it belongs to another user). Ids that cannot name one
/// process (0 and below) count as existing, so callers never clean up after them.
pub fn exists(pid: i32) -> bool {
    pid <= 0
        || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            != Err(nix::errno::Errno::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_exists_and_a_free_pid_does_not() {
        assert!(exists(std::process::id() as i32));
        assert!(exists(0));
        // Above the kernel's pid_max limit (4194304), so never a real process.
        assert!(!exists(2_147_483_646));
    }
}
