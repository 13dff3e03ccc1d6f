//! What confines a sandbox besides its namespaces and mounts: the seccomp filter and the bound on
//! processes. Decided once per invoke from the host and the environment, so `--dry-run` can show
//! which of them hold here.

use std::path::Path;

use super::cgroup::{self, Version};
use super::seccomp;

/// Lambda's limit on processes and threads of one execution environment.
pub const MAX_PROCESSES: u64 = 1024;

/// How Lambda's 1,024 processes are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessBound {
    /// The sandbox cgroup's `pids.max`: counts every process and thread of the sandbox, for any
    /// user, root included.
    PidsCgroup,
    /// `RLIMIT_NPROC` only (no writable pids controller): holds for an ordinary user, whose
    /// processes the kernel counts, but not for root, which it exempts.
    RlimitNproc,
    /// Root without a pids controller: `RLIMIT_NPROC` is set but the kernel ignores it for root.
    Unbounded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Confinement {
    pub seccomp: seccomp::Mode,
    pub processes: ProcessBound,
    /// Device rules in the sandbox's cgroup (deny all but `/dev/null`, `zero`, `full`, `random`,
    /// `urandom`, `tty`, `ptmx`, `pts/*`): root only; a rootless sandbox cannot make devices.
    pub device_rules: bool,
}

impl Confinement {
    /// For this process (root or not) with `cgroup_parent` as the parent of sandbox cgroups
    /// (`lamina` for root, `lamina-<uid>` for an ordinary user).
    pub fn for_host(
        env: &dyn Fn(&str) -> Option<String>,
        rootless: bool,
        cgroup_parent: &str,
    ) -> Result<Confinement, String> {
        let seccomp = seccomp::Mode::from_env(env(crate::env_vars::LAMINA_SECCOMP).as_deref())?;
        let version = cgroup::version();
        let pids_root = Path::new("/sys/fs/cgroup");
        let processes = if rootless {
            if super::rootless::delegated(cgroup_parent)
                && pids_writable(version, pids_root, cgroup_parent)
            {
                ProcessBound::PidsCgroup
            } else {
                ProcessBound::RlimitNproc
            }
        } else if pids_available(version, pids_root) {
            ProcessBound::PidsCgroup
        } else {
            ProcessBound::Unbounded
        };
        Ok(Confinement {
            seccomp,
            processes,
            device_rules: !rootless,
        })
    }
}

/// Whether the host has a pids controller root can use (`root` is `/sys/fs/cgroup`).
fn pids_available(version: Version, root: &Path) -> bool {
    match version {
        Version::V1 => root.join("pids/cgroup.procs").exists(),
        Version::V2 => std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids")),
    }
}

/// Whether an ordinary user's sandbox cgroups under `parent` get a pids controller they can write.
fn pids_writable(version: Version, root: &Path, parent: &str) -> bool {
    match version {
        Version::V1 => cgroup::writable(&root.join("pids").join(parent)),
        Version::V2 => std::fs::read_to_string(root.join(parent).join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids")),
    }
}

/// Writes the pids limit of a rootless sandbox's cgroup, between create and start (libcontainer
/// cannot: rootless, the spec carries no resources).
pub fn limit_pids(cgroups_path: &str) -> std::io::Result<()> {
    let relative = cgroups_path.trim_start_matches('/');
    let dir = match cgroup::version() {
        Version::V1 => Path::new("/sys/fs/cgroup/pids").join(relative),
        Version::V2 => Path::new("/sys/fs/cgroup").join(relative),
    };
    std::fs::write(dir.join("pids.max"), MAX_PROCESSES.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_confinement_pids_controller_detection() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(!pids_available(Version::V1, root));
        std::fs::create_dir_all(root.join("pids")).unwrap();
        std::fs::write(root.join("pids/cgroup.procs"), "").unwrap();
        assert!(pids_available(Version::V1, root));

        std::fs::write(root.join("cgroup.controllers"), "cpu memory io\n").unwrap();
        assert!(!pids_available(Version::V2, root));
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        assert!(pids_available(Version::V2, root));

        std::fs::create_dir_all(root.join("lamina-1000")).unwrap();
        std::fs::write(root.join("lamina-1000/cgroup.subtree_control"), "memory").unwrap();
        assert!(!pids_writable(Version::V2, root, "lamina-1000"));
        std::fs::write(
            root.join("lamina-1000/cgroup.subtree_control"),
            "memory pids",
        )
        .unwrap();
        assert!(pids_writable(Version::V2, root, "lamina-1000"));
    }

    #[test]
    fn test_confinement_rejects_an_unknown_seccomp_mode() {
        let env = |name: &str| (name == "LAMINA_SECCOMP").then(|| "maybe".to_string());
        let err = Confinement::for_host(&env, false, "lamina").unwrap_err();
        assert!(err.contains("LAMINA_SECCOMP=maybe"), "{err}");
    }
}
