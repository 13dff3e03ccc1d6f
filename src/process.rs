//! Facts about other processes of this host.

/// Whether process `pid` exists and has not ended (also when it belongs to another user). A zombie
/// has ended: only its parent's reaping is left, which may take a while when it was re-parented
/// to a PID 1 that reaps slowly. Ids that cannot name one process (0 and below) count as
/// existing, so callers never clean up after them.
pub fn exists(pid: i32) -> bool {
    if pid <= 0 {
        return true;
    }
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
        == Err(nix::errno::Errno::ESRCH)
    {
        return false;
    }
    !is_zombie(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// Whether a `/proc/PID/stat` line says the process is a zombie (the state follows the command
/// name in parentheses, which may itself hold spaces and parentheses).
fn is_zombie(stat: &str) -> bool {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z")
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

    #[test]
    fn a_zombie_has_ended() {
        assert!(is_zombie("1234 (lamina) Z 1 1234 1234 0 -1"));
        assert!(is_zombie("1234 (a) b) (c) Z 1 1234"));
        assert!(!is_zombie("1234 (lamina) S 1 1234 1234 0 -1"));
        assert!(!is_zombie(""));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: a zombie once it has exited.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while exists(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!exists(pid), "an exited, unreaped child counts as gone");
        child.wait().unwrap();
    }
}
