//! The cgroup lines: can sandboxes get a cgroup (root: the hierarchies; rootless: the user's own
//! subtree, which `lamina system setup-rootless` makes), and will the memory and pids limits hold
//! there? The pids decision is `Confinement::for_host`'s, passed in, so that this line and
//! `--dry-run` cannot disagree.

use std::path::{Path, PathBuf};

use super::Check;
use crate::sandbox::cgroup::Version;
use crate::sandbox::confinement::ProcessBound;

pub const CGROUPS: &str = "cgroups";
pub const MEMORY: &str = "memory limit";
pub const PIDS: &str = "pids limit";

/// What the cgroup checks read: the hierarchy, and whether a directory is writable (injected, as
/// the tests run as root).
pub struct CgroupView<'a> {
    pub version: Version,
    /// `/sys/fs/cgroup`.
    pub root: &'a Path,
    /// v1: the controller hierarchies (`rootless::v1_controllers`).
    pub hierarchies: Vec<PathBuf>,
    pub writable: &'a dyn Fn(&Path) -> bool,
    /// v1: `memory.memsw.*` exists, so the memory limit covers swap too.
    pub swap_accounting: bool,
    /// How invokes will bound the function's processes (`Confinement::for_host`), so that this
    /// line and `--dry-run` cannot disagree.
    pub processes: ProcessBound,
}

/// Rootless: whose sandboxes, and the cgroup they go under (`/lamina-<uid>`).
pub struct Owner {
    pub user: String,
    pub parent: String,
}

/// Lambda's limit on a function's processes and threads (`confinement::MAX_PROCESSES`).
const LAMBDA_PROCESSES: &str = "1,024";

/// The `cgroups`, `memory limit` and `pids limit` lines: can sandboxes get a cgroup, and will the
/// memory and pids limits hold there?
pub fn cgroups(view: &CgroupView, owner: Option<&Owner>) -> Vec<Check> {
    match (view.version, owner) {
        (Version::V1, None) => v1_root(view),
        (Version::V1, Some(owner)) => v1_rootless(view, owner),
        (Version::V2, None) => v2_root(view),
        (Version::V2, Some(owner)) => v2_rootless(view, owner),
    }
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

fn hierarchy<'a>(view: &'a CgroupView, controller: &str) -> Option<&'a PathBuf> {
    view.hierarchies.iter().find(|h| name_of(h) == controller)
}

fn swap_note(view: &CgroupView) -> &'static str {
    if view.swap_accounting {
        ", swap included"
    } else {
        "; swap is not limited (no swap accounting: kernel command line swapaccount=1)"
    }
}

fn setup_fix(user: &str) -> String {
    format!("sudo lamina system setup-rootless --user {user}")
}

/// Root does not get RLIMIT_NPROC's protection (the kernel does not apply it to uid 0).
fn root_pids_missing(detail: String) -> Check {
    Check::missing(
        PIDS,
        format!(
            "{detail}: RLIMIT_NPROC, the fallback, does not apply to uid 0, so nothing limits the function's processes (only the memory limit slows a fork bomb)"
        ),
        "enable the pids cgroup controller (CONFIG_CGROUP_PIDS), or run lamina as an ordinary user, where RLIMIT_NPROC applies",
    )
}

/// The `pids limit` line: `bound` decides; `place` is where `pids.max` is written, `why_not` why
/// it cannot be.
fn pids_line(bound: ProcessBound, place: &Path, why_not: String, fix: String) -> Check {
    match bound {
        ProcessBound::PidsCgroup => Check::ok(
            PIDS,
            format!(
                "pids.max under {}: at most {LAMBDA_PROCESSES} processes, as in Lambda",
                place.display()
            ),
        ),
        ProcessBound::RlimitNproc => rlimit_only(why_not, fix),
        ProcessBound::Unbounded => root_pids_missing(why_not),
    }
}

fn rlimit_only(detail: String, fix: String) -> Check {
    Check::warn(
        PIDS,
        format!(
            "{detail}: only RLIMIT_NPROC holds ({LAMBDA_PROCESSES} processes, counted per user, not per function)"
        ),
        fix,
    )
}

/// A v1 host whose `/sys/fs/cgroup` holds no controller: nothing can run, as root or not.
fn no_hierarchy(view: &CgroupView) -> Check {
    Check::missing(
        CGROUPS,
        format!(
            "v1, but no controller hierarchy under {}",
            view.root.display()
        ),
        "mount the cgroup controllers at /sys/fs/cgroup (systemd does at boot)",
    )
    .blocking()
}

fn v1_root(view: &CgroupView) -> Vec<Check> {
    let no_cgroups_fix =
        "run lamina where /sys/fs/cgroup is writable: on the host, or in a privileged container";
    if view.hierarchies.is_empty() {
        return vec![no_hierarchy(view)];
    }
    let mut names: Vec<String> = view.hierarchies.iter().map(|h| name_of(h)).collect();
    names.sort();
    let unwritable: Vec<String> = view
        .hierarchies
        .iter()
        .filter(|h| !(view.writable)(h))
        .map(|h| name_of(h))
        .collect();
    let mut checks = vec![if unwritable.is_empty() {
        Check::ok(
            CGROUPS,
            format!(
                "v1, {} hierarchies writable ({})",
                names.len(),
                names.join(" ")
            ),
        )
    } else {
        Check::missing(
            CGROUPS,
            format!(
                "v1, but not writable here: {} (sandboxes get a cgroup in every hierarchy)",
                unwritable.join(" ")
            ),
            no_cgroups_fix,
        )
        .blocking()
    }];
    checks.push(match hierarchy(view, "memory") {
        Some(dir) if (view.writable)(dir) => Check::ok(
            MEMORY,
            format!(
                "memory.limit_in_bytes under {}: MemorySize holds{}",
                dir.display(),
                swap_note(view)
            ),
        ),
        Some(dir) => Check::missing(
            MEMORY,
            format!("{} is not writable", dir.display()),
            no_cgroups_fix,
        ),
        None => Check::missing(
            MEMORY,
            "this kernel has no memory cgroup controller",
            "enable it (kernel command line cgroup_enable=memory)",
        ),
    });
    let pids = view.root.join("pids");
    let why_not = match hierarchy(view, "pids") {
        Some(dir) => format!("{} is not writable", dir.display()),
        None => "no pids cgroup controller".into(),
    };
    checks.push(pids_line(view.processes, &pids, why_not, String::new()));
    checks
}

fn v1_rootless(view: &CgroupView, owner: &Owner) -> Vec<Check> {
    let fix = setup_fix(&owner.user);
    let parent = &owner.parent;
    if view.hierarchies.is_empty() {
        return vec![no_hierarchy(view)];
    }
    let mine = |h: &PathBuf| (view.writable)(&h.join(parent));
    let lacking: Vec<String> = view
        .hierarchies
        .iter()
        .filter(|h| !mine(h))
        .map(|h| name_of(h))
        .collect();
    let mut checks = vec![if lacking.is_empty() {
        Check::ok(
            CGROUPS,
            format!(
                "v1, /{parent} is yours in all {} hierarchies",
                view.hierarchies.len()
            ),
        )
    } else {
        Check::missing(
            CGROUPS,
            format!(
                "v1, and /{parent} is missing or not yours in: {} (a rootless sandbox on a v1 host needs a cgroup subtree of its own in every hierarchy)",
                lacking.join(" ")
            ),
            fix.clone(),
        )
        .blocking()
    }];
    checks.push(match hierarchy(view, "memory") {
        Some(dir) if mine(dir) => Check::ok(
            MEMORY,
            format!(
                "memory.limit_in_bytes under {}: MemorySize holds{}",
                dir.join(parent).display(),
                swap_note(view)
            ),
        ),
        Some(dir) => Check::missing(
            MEMORY,
            format!(
                "unavailable: no cgroup subtree of your own ({} is missing or not yours)",
                dir.join(parent).display()
            ),
            fix.clone(),
        ),
        None => Check::missing(
            MEMORY,
            "this kernel has no memory cgroup controller",
            "enable it (kernel command line cgroup_enable=memory)",
        ),
    });
    let pids = view.root.join("pids").join(parent);
    let (why_not, fix) = match hierarchy(view, "pids") {
        Some(_) => (format!("{} is missing or not yours", pids.display()), fix),
        None => (
            "no pids cgroup controller".into(),
            "enable the pids cgroup controller (CONFIG_CGROUP_PIDS)".into(),
        ),
    };
    checks.push(pids_line(view.processes, &pids, why_not, fix));
    checks
}

/// The controllers listed in a `cgroup.controllers` or `cgroup.subtree_control` file.
fn controllers(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn v2_root(view: &CgroupView) -> Vec<Check> {
    let available = controllers(view.root, "cgroup.controllers");
    let mut checks = vec![if (view.writable)(view.root) {
        Check::ok(
            CGROUPS,
            format!(
                "v2, {} writable (controllers: {})",
                view.root.display(),
                available.join(" ")
            ),
        )
    } else {
        Check::missing(
            CGROUPS,
            format!("v2, but {} is not writable", view.root.display()),
            "run lamina where /sys/fs/cgroup is writable: on the host, or in a privileged container",
        )
        .blocking()
    }];
    let has = |name: &str| available.iter().any(|c| c == name);
    checks.push(if has("memory") {
        Check::ok(MEMORY, "memory.max: MemorySize holds")
    } else {
        Check::missing(
            MEMORY,
            format!(
                "no memory controller in {}",
                view.root.join("cgroup.controllers").display()
            ),
            "enable the memory cgroup controller (kernel command line cgroup_enable=memory)",
        )
    });
    let why_not = format!(
        "no pids controller in {}",
        view.root.join("cgroup.controllers").display()
    );
    checks.push(pids_line(view.processes, view.root, why_not, String::new()));
    checks
}

fn v2_rootless(view: &CgroupView, owner: &Owner) -> Vec<Check> {
    let fix = setup_fix(&owner.user);
    let dir = view.root.join(&owner.parent);
    let mine = (view.writable)(&dir);
    // Sandboxes are children of `dir`: they get the controllers `dir` enables for its children.
    let enabled = if mine {
        controllers(&dir, "cgroup.subtree_control")
    } else {
        Vec::new()
    };
    let mut checks = vec![if mine {
        Check::ok(
            CGROUPS,
            format!(
                "v2, {} is yours (enabled for sandboxes: {})",
                dir.display(),
                if enabled.is_empty() {
                    "none".to_string()
                } else {
                    enabled.join(" ")
                }
            ),
        )
    } else {
        Check::missing(
            CGROUPS,
            format!(
                "v2, no cgroup subtree of your own ({} is missing or not yours)",
                dir.display()
            ),
            fix.clone(),
        )
    }];
    let has = |name: &str| enabled.iter().any(|c| c == name);
    let why = if mine {
        format!(
            "{} does not enable it for sandboxes",
            dir.join("cgroup.subtree_control").display()
        )
    } else {
        "no cgroup subtree of your own".to_string()
    };
    checks.push(if has("memory") {
        Check::ok(
            MEMORY,
            format!("memory.max under {}: MemorySize holds", dir.display()),
        )
    } else {
        Check::missing(
            MEMORY,
            format!("unavailable, functions run without one: {why}"),
            fix.clone(),
        )
    });
    checks.push(pids_line(view.processes, &dir, why, fix));
    checks
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    /// A fake v1 tree: `hierarchies` exist; `writable` lists the writable directories.
    fn v1_view<'a>(
        root: &'a Path,
        names: &[&str],
        writable: &'a dyn Fn(&Path) -> bool,
        processes: ProcessBound,
    ) -> CgroupView<'a> {
        CgroupView {
            version: Version::V1,
            root,
            hierarchies: names.iter().map(|n| root.join(n)).collect(),
            writable,
            swap_accounting: true,
            processes,
        }
    }

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn v1_as_root_needs_every_hierarchy_and_pids_for_a_process_limit() {
        let root = Path::new("/sys/fs/cgroup");
        let all = |_: &Path| true;
        let checks = cgroups(
            &v1_view(
                root,
                &["cpu", "memory", "pids"],
                &all,
                ProcessBound::PidsCgroup,
            ),
            None,
        );
        assert_eq!(
            find(&checks, CGROUPS).detail,
            "v1, 3 hierarchies writable (cpu memory pids)"
        );
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
        assert_eq!(
            find(&checks, PIDS).detail,
            "pids.max under /sys/fs/cgroup/pids: at most 1,024 processes, as in Lambda"
        );
        // No pids controller: root has no fallback at all.
        let checks = cgroups(
            &v1_view(root, &["cpu", "memory"], &all, ProcessBound::Unbounded),
            None,
        );
        let pids = find(&checks, PIDS);
        assert_eq!(pids.status, Status::Missing);
        assert!(!pids.blocks);
        assert!(pids.detail.contains("does not apply to uid 0"), "{pids:?}");
        // A read-only cgroupfs (a container): no sandbox can be made.
        let none = |_: &Path| false;
        let checks = cgroups(
            &v1_view(root, &["cpu", "memory"], &none, ProcessBound::Unbounded),
            None,
        );
        assert!(find(&checks, CGROUPS).blocks);
        assert!(
            find(&checks, CGROUPS)
                .detail
                .contains("not writable here: cpu memory")
        );
    }

    #[test]
    fn v1_rootless_needs_the_setup_rootless_subtree() {
        let root = Path::new("/sys/fs/cgroup");
        let owner = Owner {
            user: "alice".into(),
            parent: "lamina-1001".into(),
        };
        let subtree = |p: &Path| p.ends_with("lamina-1001");
        let view = v1_view(
            root,
            &["memory", "pids"],
            &subtree,
            ProcessBound::PidsCgroup,
        );
        let checks = cgroups(&view, Some(&owner));
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
        assert_eq!(
            find(&checks, MEMORY).detail,
            "memory.limit_in_bytes under /sys/fs/cgroup/memory/lamina-1001: MemorySize holds, swap included"
        );
        // The subtree in one hierarchy only: still blocked, and the fix is setup-rootless.
        let memory_only = |p: &Path| p.ends_with("memory/lamina-1001");
        let checks = cgroups(
            &v1_view(
                root,
                &["memory", "pids"],
                &memory_only,
                ProcessBound::RlimitNproc,
            ),
            Some(&owner),
        );
        let cgroups_line = find(&checks, CGROUPS);
        assert!(cgroups_line.blocks);
        assert!(
            cgroups_line.detail.contains("not yours in: pids"),
            "{cgroups_line:?}"
        );
        assert_eq!(
            cgroups_line.fix.as_deref(),
            Some("sudo lamina system setup-rootless --user alice")
        );
        let pids = find(&checks, PIDS);
        assert_eq!(pids.status, Status::Warn);
        assert_eq!(
            pids.detail,
            "/sys/fs/cgroup/pids/lamina-1001 is missing or not yours: only RLIMIT_NPROC holds (1,024 processes, counted per user, not per function)"
        );
        assert_eq!(
            pids.fix.as_deref(),
            Some("sudo lamina system setup-rootless --user alice")
        );
        let none = |_: &Path| false;
        let checks = cgroups(
            &v1_view(root, &["memory", "pids"], &none, ProcessBound::RlimitNproc),
            Some(&owner),
        );
        let memory = find(&checks, MEMORY);
        assert_eq!(memory.status, Status::Missing);
        assert!(memory.detail.starts_with("unavailable"));
        assert_eq!(
            memory.fix.as_deref(),
            Some("sudo lamina system setup-rootless --user alice")
        );
    }

    #[test]
    fn v2_reads_controllers_and_the_subtree_control() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let all = |_: &Path| true;
        let view = CgroupView {
            version: Version::V2,
            root: root.path(),
            hierarchies: Vec::new(),
            writable: &all,
            swap_accounting: false,
            processes: ProcessBound::PidsCgroup,
        };
        let checks = cgroups(&view, None);
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let view = CgroupView {
            processes: ProcessBound::Unbounded,
            ..view
        };
        let checks = cgroups(&view, None);
        assert_eq!(find(&checks, MEMORY).status, Status::Ok);
        assert_eq!(find(&checks, PIDS).status, Status::Missing);
        let view = CgroupView {
            processes: ProcessBound::RlimitNproc,
            ..view
        };

        // Rootless: the sandboxes get what the user's subtree enables for its children.
        let owner = Owner {
            user: "alice".into(),
            parent: "lamina-1001".into(),
        };
        let subtree = root.path().join("lamina-1001");
        std::fs::create_dir(&subtree).unwrap();
        std::fs::write(subtree.join("cgroup.subtree_control"), "memory\n").unwrap();
        let checks = cgroups(&view, Some(&owner));
        assert_eq!(find(&checks, CGROUPS).status, Status::Ok);
        assert_eq!(find(&checks, MEMORY).status, Status::Ok);
        assert_eq!(find(&checks, PIDS).status, Status::Warn);
        // No subtree of one's own: invokes run, without a memory limit.
        let none = |_: &Path| false;
        let view = CgroupView {
            writable: &none,
            ..view
        };
        let checks = cgroups(&view, Some(&owner));
        assert!(checks.iter().all(|c| !c.blocks), "{checks:?}");
        let memory = find(&checks, MEMORY);
        assert_eq!(memory.status, Status::Missing);
        assert!(memory.detail.contains("functions run without one"));
    }
}
