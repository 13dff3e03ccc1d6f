//! Reading what the kernel measured about a container's cgroup, before it is deleted: the peak
//! memory ("Max Memory Used", honestly) and whether the OOM killer struck.

use std::path::PathBuf;

/// The cgroup hierarchy of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

pub fn version() -> Version {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// Whether the memory limit can also cover swap (v1 needs swap accounting in the kernel).
pub fn can_limit_swap() -> bool {
    match version() {
        Version::V1 => {
            std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        }
        Version::V2 => false,
    }
}

fn memory_dir(cgroups_path: &str) -> PathBuf {
    let relative = cgroups_path.trim_start_matches('/');
    match version() {
        Version::V1 => PathBuf::from("/sys/fs/cgroup/memory").join(relative),
        Version::V2 => PathBuf::from("/sys/fs/cgroup").join(relative),
    }
}

/// Whether this process may create and write in cgroup directory `dir` (`access(W_OK)`: cgroup
/// directories take no test files).
pub fn writable(dir: &std::path::Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// `cgroup.procs` of a sandbox's cgroup (in the memory hierarchy on v1: every process of the
/// sandbox is in all of them).
pub fn procs_file(cgroups_path: &str) -> PathBuf {
    memory_dir(cgroups_path).join("cgroup.procs")
}

/// How many processes the sandbox's cgroup holds (`None` when it cannot be read).
pub fn process_count(cgroups_path: &str) -> Option<usize> {
    let procs = std::fs::read_to_string(procs_file(cgroups_path)).ok()?;
    Some(procs.lines().filter(|l| !l.trim().is_empty()).count())
}

#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStats {
    pub peak_bytes: Option<u64>,
    pub oom_killed: bool,
}

pub fn memory_stats(cgroups_path: &str) -> MemoryStats {
    let dir = memory_dir(cgroups_path);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let (peak, events) = match version() {
        Version::V1 => (
            read("memory.max_usage_in_bytes"),
            read("memory.oom_control"),
        ),
        Version::V2 => (read("memory.peak"), read("memory.events")),
    };
    let oom_killed = events
        .as_deref()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("oom_kill ")))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    MemoryStats {
        peak_bytes: peak.and_then(|p| p.trim().parse().ok()),
        oom_killed,
    }
}

/// Removes a container's own cgroup in every hierarchy (after its processes are gone).
pub fn remove_leaf(cgroups_path: &str) {
    let relative = cgroups_path.trim_start_matches('/');
    for root in roots() {
        let _ = std::fs::remove_dir(root.join(relative));
    }
}

/// Removes the cgroup of a sandbox whose lamina is gone: SIGKILLs whatever is still in it, and
/// retries for up to 2 s while the kernel lets go of processes that are still exiting (their
/// directories cannot be removed before).
pub fn remove_leftover(cgroups_path: &str) {
    let relative = cgroups_path.trim_start_matches('/');
    // A lamina killed while an older version froze the sandbox to kill it left it frozen: thaw.
    if version() == Version::V1 {
        let _ = std::fs::write(
            PathBuf::from("/sys/fs/cgroup/freezer")
                .join(relative)
                .join("freezer.state"),
            "THAWED",
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        if let Ok(procs) = std::ffi::CString::new(
            procs_file(cgroups_path)
                .into_os_string()
                .into_encoded_bytes(),
        ) {
            kill_listed(&procs);
        }
        remove_leaf(cgroups_path);
        let gone = roots().iter().all(|root| !root.join(relative).exists());
        if gone || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn roots() -> Vec<PathBuf> {
    match version() {
        Version::V2 => vec![PathBuf::from("/sys/fs/cgroup")],
        Version::V1 => std::fs::read_dir("/sys/fs/cgroup")
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default(),
    }
}

/// Removes the (now empty) parent of our containers' cgroups in every hierarchy; another invoke
/// still using it keeps it (rmdir fails on a non-empty directory, which is fine).
pub fn remove_parent(cgroups_path: &str) {
    let Some((parent, _)) = cgroups_path.trim_start_matches('/').rsplit_once('/') else {
        return;
    };
    for root in roots() {
        let _ = std::fs::remove_dir(root.join(parent));
    }
}

/// What libcgroups adds after the spec's device rules on a v1 host (runc's old defaults: `mknod`
/// of any device, `/dev/console`, `/dev/net/tun`), taken back out so only the spec's list holds.
const V1_DEVICE_DEFAULTS: [&str; 4] = ["c *:* m", "b *:* m", "c 5:1 rwm", "c 10:200 rwm"];

/// Leaves a v1 sandbox cgroup's `devices.list` exactly as the spec says (see `V1_DEVICE_DEFAULTS`).
/// Nothing to do on v2, where libcgroups writes no defaults.
pub fn restrict_devices(cgroups_path: &str) -> std::io::Result<()> {
    if version() != Version::V1 {
        return Ok(());
    }
    let deny = PathBuf::from("/sys/fs/cgroup/devices")
        .join(cgroups_path.trim_start_matches('/'))
        .join("devices.deny");
    for rule in V1_DEVICE_DEFAULTS {
        std::fs::write(&deny, rule)?;
    }
    Ok(())
}

/// SIGKILLs every pid listed in `procs_file` (a `cgroup.procs`); returns how many it found. Only
/// system calls, no allocation: `create_guard`'s watcher calls it in a forked child.
pub fn kill_listed(procs_file: &std::ffi::CStr) -> usize {
    // SAFETY: open(2) of a valid C string; the fd is closed below.
    let fd = unsafe { libc::open(procs_file.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return 0;
    }
    let mut buf = [0u8; 4096];
    let mut found = 0;
    let mut pid: libc::pid_t = 0;
    let mut in_number = false;
    loop {
        // SAFETY: reading into a stack buffer of the length given.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        for &byte in &buf[..n as usize] {
            if byte.is_ascii_digit() {
                pid = pid * 10 + libc::pid_t::from(byte - b'0');
                in_number = true;
            } else if in_number {
                found += 1;
                // SAFETY: kill(2) of a pid read from the sandbox's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                pid = 0;
                in_number = false;
            }
        }
    }
    if in_number {
        found += 1;
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cgroup_kill_listed_kills_the_listed_processes() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let procs = dir.path().join("cgroup.procs");
        std::fs::write(&procs, format!("{}\n", child.id())).unwrap();
        let path = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(kill_listed(&path), 1);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        std::fs::write(&procs, "").unwrap();
        assert_eq!(kill_listed(&path), 0);
    }
}
