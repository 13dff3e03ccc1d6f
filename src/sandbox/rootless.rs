//! Running sandboxes as an ordinary user: a user namespace that maps the user to root inside, and
//! a cgroup subtree the user owns (prepared once by root with `lamina system setup-rootless`), in
//! which lamina writes the memory limit itself (a rootless process may not write the v1 `devices`
//! controller, which libcontainer touches whenever the spec has resources).

use std::path::{Path, PathBuf};

use super::cgroup::{self, Version};

/// The user lamina runs as, when that is not root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

impl Identity {
    /// `None` for root.
    pub fn current() -> Option<Identity> {
        // SAFETY: getters without failure modes.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        (uid != 0).then_some(Identity { uid, gid })
    }
}

/// The cgroup every sandbox of `uid` lives under (`/lamina-<uid>`).
pub fn cgroup_parent(uid: u32) -> String {
    format!("lamina-{uid}")
}

/// The controller directories a v1 host has (deduplicated: `cpu` and `cpuacct` may be one).
pub fn v1_controllers() -> Vec<PathBuf> {
    let mut seen = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return seen;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "unified" || name == "systemd" {
            continue;
        }
        if let Ok(real) = std::fs::canonicalize(entry.path())
            && !seen.contains(&real)
            && real.join("cgroup.procs").exists()
        {
            seen.push(real);
        }
    }
    seen
}

/// Whether `uid` has a cgroup subtree of its own for sandboxes (and so a memory limit).
pub fn delegated(parent: &str) -> bool {
    match cgroup::version() {
        Version::V1 => {
            let controllers = v1_controllers();
            !controllers.is_empty()
                && controllers
                    .iter()
                    .all(|c| cgroup::writable(&c.join(parent)))
        }
        Version::V2 => cgroup::writable(&Path::new("/sys/fs/cgroup").join(parent)),
    }
}

/// `lamina system setup-rootless --user NAME` (as root): creates `/lamina-<uid>` in every cgroup
/// hierarchy and gives it to the user. Returns what it did, one line each.
pub fn setup(user: &str) -> Result<Vec<String>, String> {
    let account = nix::unistd::User::from_name(user)
        .map_err(|e| format!("cannot look up user {user}: {e}"))?
        .ok_or_else(|| format!("no user named {user}"))?;
    let (uid, gid) = (account.uid, account.gid);
    let parent = cgroup_parent(uid.as_raw());
    let mut done = Vec::new();
    let mut give = |dir: &Path| -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut paths = vec![dir.to_path_buf()];
        paths.extend(
            std::fs::read_dir(dir)
                .map_err(|e| e.to_string())?
                .flatten()
                .map(|e| e.path()),
        );
        for path in paths {
            nix::unistd::chown(&path, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
        }
        done.push(format!("{} -> {user}", dir.display()));
        Ok(())
    };
    match cgroup::version() {
        Version::V1 => {
            for controller in v1_controllers() {
                let dir = controller.join(&parent);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                // cpuset children start empty: copy the parent's CPUs and memory nodes.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    if let Ok(value) = std::fs::read_to_string(controller.join(file)) {
                        std::fs::write(dir.join(file), value.trim()).map_err(|e| {
                            format!("cannot write {}: {e}", dir.join(file).display())
                        })?;
                    }
                }
                give(&dir)?;
            }
        }
        Version::V2 => {
            let root = Path::new("/sys/fs/cgroup");
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +pids");
            let dir = root.join(&parent);
            give(&dir)?;
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+memory +pids");
        }
    }
    Ok(done)
}

/// Writes the memory limit (no swap) of a rootless sandbox's cgroup, between create and start.
pub fn limit_memory(cgroups_path: &str, bytes: u64) -> std::io::Result<()> {
    let relative = cgroups_path.trim_start_matches('/');
    match cgroup::version() {
        Version::V1 => {
            let dir = Path::new("/sys/fs/cgroup/memory").join(relative);
            std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
            if dir.join("memory.memsw.limit_in_bytes").exists() {
                std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string())?;
            }
        }
        Version::V2 => {
            let dir = Path::new("/sys/fs/cgroup").join(relative);
            std::fs::write(dir.join("memory.max"), bytes.to_string())?;
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        }
    }
    Ok(())
}

/// Why this host does not let an ordinary user create user namespaces, with the fix, when one of
/// the known switches says so (`proc` is `/proc`, a parameter for tests).
pub fn userns_blocked(proc: &Path) -> Option<String> {
    let read = |name: &str| {
        std::fs::read_to_string(proc.join(name))
            .ok()
            .map(|v| v.trim().to_string())
    };
    if read("sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user namespaces are disabled here (user.max_user_namespaces = 0); as root: sysctl -w user.max_user_namespaces=15000".into());
    }
    if read("sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("unprivileged user namespaces are disabled here (kernel.unprivileged_userns_clone = 0); as root: sysctl -w kernel.unprivileged_userns_clone=1".into());
    }
    if read("sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        let exe = std::env::current_exe().map_or_else(
            |_| "/usr/local/bin/lamina".into(),
            |p| p.display().to_string(),
        );
        return Some(format!(
            "AppArmor restricts unprivileged user namespaces here (Ubuntu 24.04 and later); as root, allow lamina with a profile: printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\nprofile lamina {exe} flags=(unconfined) {{\\n  userns,\\n}}\\n' > /etc/apparmor.d/lamina && apparmor_parser -r /etc/apparmor.d/lamina (or: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0)"
        ));
    }
    None
}

/// After a failed rootless create: a seccomp filter (Docker's default profile) refuses
/// `unshare(CLONE_NEWUSER)` without any switch saying so. Tries it in a throwaway process.
pub fn userns_refused_by_seccomp() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let status = std::process::Command::new(exe)
        .arg(USERNS_PROBE)
        .status()
        .ok()?;
    (!status.success()).then(|| {
        "unshare(CLONE_NEWUSER) is refused: a seccomp profile (for example Docker's default one) blocks user namespaces; run the outer container with --security-opt seccomp=unconfined (or a profile that allows unshare), or run lamina as root".into()
    })
}

/// The hidden subcommand of that probe.
pub const USERNS_PROBE: &str = "__userns-probe";

/// The probe's body: exit 0 when a user namespace can be created.
pub fn run_probe() -> i32 {
    // SAFETY: unshare in a process that does nothing else afterwards.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0 {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rootless_userns_switches() {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(proc.path().join("sys/user")).unwrap();
        std::fs::create_dir_all(proc.path().join("sys/kernel")).unwrap();
        assert_eq!(userns_blocked(proc.path()), None);
        std::fs::write(
            proc.path()
                .join("sys/kernel/apparmor_restrict_unprivileged_userns"),
            "1\n",
        )
        .unwrap();
        assert!(
            userns_blocked(proc.path())
                .unwrap()
                .contains("apparmor_parser -r /etc/apparmor.d/lamina")
        );
        std::fs::write(
            proc.path().join("sys/kernel/unprivileged_userns_clone"),
            "0\n",
        )
        .unwrap();
        assert!(
            userns_blocked(proc.path())
                .unwrap()
                .contains("kernel.unprivileged_userns_clone=1")
        );
        std::fs::write(proc.path().join("sys/user/max_user_namespaces"), "0\n").unwrap();
        assert!(
            userns_blocked(proc.path())
                .unwrap()
                .contains("user.max_user_namespaces=15000")
        );
    }
}
