//! The checks of what the sandbox itself needs: a user namespace (rootless), its id mapping, the
//! cgroups that carry the memory and pids limits, and seccomp.

use std::path::{Path, PathBuf};

use super::Check;
use crate::sandbox::cgroup::Version;
use crate::sandbox::confinement::ProcessBound;
use crate::sandbox::idmap::{self, Mode, System};
use crate::sandbox::seccomp;

pub const USERNS: &str = "user namespaces";
pub const IDMAP: &str = "id mapping";
pub const CGROUPS: &str = "cgroups";
pub const MEMORY: &str = "memory limit";
pub const PIDS: &str = "pids limit";
pub const SECCOMP: &str = "seccomp";

/// Rootless: the switches that allow or forbid user namespaces (`userns_blocked` has the verdict,
/// `probe` tries one for real: a seccomp filter around lamina forbids them without any switch).
pub fn user_namespaces(
    blocked: Option<&str>,
    probe: impl FnOnce() -> Option<String>,
    settings: &str,
) -> Check {
    if let Some(reason) = blocked.map(str::to_string).or_else(probe) {
        return Check::missing_from(USERNS, &reason).blocking();
    }
    let mut detail = "unprivileged user namespaces work".to_string();
    if !settings.is_empty() {
        detail.push_str(&format!(" ({settings})"));
    }
    Check::ok(USERNS, detail)
}

/// The user-namespace switches this kernel has, `name = value` (the missing ones are not listed).
pub fn userns_settings(proc: &Path) -> String {
    [
        ("user.max_user_namespaces", "sys/user/max_user_namespaces"),
        (
            "kernel.unprivileged_userns_clone",
            "sys/kernel/unprivileged_userns_clone",
        ),
        (
            "kernel.apparmor_restrict_unprivileged_userns",
            "sys/kernel/apparmor_restrict_unprivileged_userns",
        ),
    ]
    .iter()
    .filter_map(|(name, file)| {
        let value = std::fs::read_to_string(proc.join(file)).ok()?;
        Some(format!("{name} = {}", value.trim()))
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// Rootless: which ids the sandbox's user namespace will map (`idmap::choose`, as an invoke does).
pub fn id_mapping(setting: Option<&str>, system: &System) -> Check {
    let mode = match Mode::parse(setting) {
        Ok(mode) => mode,
        Err(err) => {
            return Check::missing(
                IDMAP,
                err,
                "set LAMINA_ID_MAPPING to auto, single or range, or unset it",
            )
            .blocking();
        }
    };
    match idmap::choose(mode, system) {
        Err(err) => Check::missing(
            IDMAP,
            err,
            "give the user a range as the message says, or unset LAMINA_ID_MAPPING",
        )
        .blocking(),
        Ok(mapping) => match (mapping.range, mode) {
            (Some(range), _) => Check::ok(
                IDMAP,
                format!(
                    "ids 1-{} inside map to subordinate uids from {} and gids from {} (newuidmap, newgidmap)",
                    range.count, range.uid_start, range.gid_start
                ),
            ),
            (None, Mode::Single) => Check::ok(
                IDMAP,
                format!(
                    "LAMINA_ID_MAPPING=single: only uid {} is mapped (root inside)",
                    system.uid
                ),
            ),
            (None, _) => {
                // `range` says why the range cannot be had.
                let reason = idmap::choose(Mode::Range, system).err().unwrap_or_default();
                let reason = reason
                    .strip_prefix("LAMINA_ID_MAPPING=range: ")
                    .unwrap_or(&reason);
                Check::warn(
                    IDMAP,
                    format!(
                        "only uid {} is mapped (root inside): a function cannot switch to other users",
                        system.uid
                    ),
                    reason,
                )
            }
        },
    }
}

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

fn v1_root(view: &CgroupView) -> Vec<Check> {
    let no_cgroups_fix =
        "run lamina where /sys/fs/cgroup is writable: on the host, or in a privileged container";
    if view.hierarchies.is_empty() {
        return vec![
            Check::missing(
                CGROUPS,
                format!(
                    "v1, but no controller hierarchy under {}",
                    view.root.display()
                ),
                "mount the cgroup controllers at /sys/fs/cgroup (systemd does at boot)",
            )
            .blocking(),
        ];
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
        return vec![
            Check::missing(
                CGROUPS,
                format!(
                    "v1, but no controller hierarchy under {}",
                    view.root.display()
                ),
                "mount the cgroup controllers at /sys/fs/cgroup (systemd does at boot)",
            )
            .blocking(),
        ];
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

/// seccomp: the kernel must filter system calls (`Seccomp:` in `/proc/self/status`; `actions_avail`
/// exists with CONFIG_SECCOMP_FILTER) for the default profile; `LAMINA_SECCOMP=unconfined` turns
/// the profile off.
pub fn seccomp_check(status: Option<&str>, actions: Option<&str>, setting: Option<&str>) -> Check {
    // As invokes read it (a value they refuse stops them).
    let unconfined = match seccomp::Mode::from_env(setting) {
        Ok(mode) => mode == seccomp::Mode::Unconfined,
        Err(err) => return Check::missing_from(SECCOMP, &err).blocking(),
    };
    let mode = status.and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(|v| v.trim().to_string())
    });
    let actions: Vec<&str> = actions.unwrap_or_default().split_whitespace().collect();
    let filters = mode.is_some() && actions.contains(&"errno") && actions.contains(&"allow");
    if !filters {
        let detail = if mode.is_none() {
            "this kernel has no seccomp (no Seccomp: line in /proc/self/status)"
        } else {
            "this kernel cannot filter system calls (no errno action in /proc/sys/kernel/seccomp/actions_avail)"
        };
        if unconfined {
            return Check::warn(
                SECCOMP,
                format!("{detail}; LAMINA_SECCOMP=unconfined, so functions run without a filter"),
                "use a kernel built with CONFIG_SECCOMP_FILTER (every mainstream distribution's is)",
            );
        }
        return Check::missing(
            SECCOMP,
            format!("{detail}, so the default profile cannot be applied"),
            "use a kernel built with CONFIG_SECCOMP_FILTER, or set LAMINA_SECCOMP=unconfined (functions then run without a system call filter)",
        )
        .blocking();
    }
    // Mode 2: lamina itself runs under a filter (a container's); the function's adds to it.
    let outer = if mode.as_deref() == Some("2") {
        " (lamina itself runs under a seccomp filter, which stays in force)"
    } else {
        ""
    };
    if unconfined {
        Check::warn(
            SECCOMP,
            format!("LAMINA_SECCOMP=unconfined: functions run without a system call filter{outer}"),
            "unset LAMINA_SECCOMP",
        )
    } else {
        Check::ok(
            SECCOMP,
            format!(
                "the kernel filters system calls: functions get Docker's default profile{outer}"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn user_namespaces_blocked_by_a_switch_or_a_filter() {
        let check = user_namespaces(
            Some(
                "user namespaces are disabled here (user.max_user_namespaces = 0); as root: sysctl -w user.max_user_namespaces=15000",
            ),
            || panic!("no probe when a switch already says no"),
            "",
        );
        assert_eq!(check.status, Status::Missing);
        assert!(check.blocks);
        assert_eq!(
            check.detail,
            "user namespaces are disabled here (user.max_user_namespaces = 0)"
        );
        assert_eq!(
            check.fix.as_deref(),
            Some("as root: sysctl -w user.max_user_namespaces=15000")
        );
        let check = user_namespaces(
            None,
            || {
                Some("unshare(CLONE_NEWUSER) is refused: a seccomp profile blocks user namespaces; run the outer container with --security-opt seccomp=unconfined".into())
            },
            "user.max_user_namespaces = 10",
        );
        assert!(check.blocks);
        assert!(check.fix.unwrap().starts_with("run the outer container"));
        let check = user_namespaces(None, || None, "user.max_user_namespaces = 10");
        assert_eq!(check.status, Status::Ok);
        assert!(check.detail.contains("(user.max_user_namespaces = 10)"));
    }

    #[test]
    fn the_real_apparmor_message_splits_before_its_fix() {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(proc.path().join("sys/kernel")).unwrap();
        std::fs::create_dir_all(proc.path().join("sys/user")).unwrap();
        std::fs::write(
            proc.path()
                .join("sys/kernel/apparmor_restrict_unprivileged_userns"),
            "1\n",
        )
        .unwrap();
        std::fs::write(proc.path().join("sys/user/max_user_namespaces"), "63\n").unwrap();
        let blocked = crate::sandbox::rootless::userns_blocked(proc.path());
        let check = user_namespaces(blocked.as_deref(), || None, "");
        assert!(
            check.detail.ends_with("(Ubuntu 24.04 and later)"),
            "{check:?}"
        );
        assert!(
            check
                .fix
                .unwrap()
                .starts_with("as root, allow lamina with a profile"),
        );
        assert_eq!(
            userns_settings(proc.path()),
            "user.max_user_namespaces = 63, kernel.apparmor_restrict_unprivileged_userns = 1"
        );
    }

    fn system(subuid: &str, helpers: Option<&str>) -> System {
        System {
            user: "alice".into(),
            uid: 1001,
            gid: 1001,
            subuid: subuid.into(),
            subgid: subuid.into(),
            helpers_unusable: helpers.map(str::to_string),
        }
    }

    #[test]
    fn id_mapping_says_what_an_invoke_will_map() {
        let good = system("alice:100000:65536\n", None);
        let check = id_mapping(None, &good);
        assert_eq!(check.status, Status::Ok);
        assert_eq!(
            check.detail,
            "ids 1-65536 inside map to subordinate uids from 100000 and gids from 100000 (newuidmap, newgidmap)"
        );
        let no_helpers = system(
            "alice:100000:65536\n",
            Some("newuidmap is not installed (Debian and Ubuntu: apt install uidmap)"),
        );
        let check = id_mapping(None, &no_helpers);
        assert_eq!(check.status, Status::Warn);
        assert!(!check.blocks);
        assert_eq!(
            check.fix.as_deref(),
            Some("newuidmap is not installed (Debian and Ubuntu: apt install uidmap)")
        );
        let check = id_mapping(Some("range"), &system("", None));
        assert!(check.blocks, "{check:?}");
        assert!(check.detail.contains("usermod --add-subuids"), "{check:?}");
        assert_eq!(id_mapping(Some("single"), &good).status, Status::Ok);
        assert!(id_mapping(Some("many"), &good).blocks);
    }

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

    #[test]
    fn seccomp_needs_filters_unless_unconfined() {
        let status = "Name:\tlamina\nSeccomp:\t0\nSeccomp_filters:\t0\n";
        let actions = "kill_process kill_thread trap errno user_notif trace log allow\n";
        let check = seccomp_check(Some(status), Some(actions), None);
        assert_eq!(check.status, Status::Ok);
        assert!(check.detail.contains("Docker's default profile"));
        let check = seccomp_check(Some(status), Some(actions), Some("unconfined"));
        assert_eq!(check.status, Status::Warn);
        assert_eq!(check.fix.as_deref(), Some("unset LAMINA_SECCOMP"));
        assert_eq!(
            seccomp_check(Some(status), Some(actions), Some("default")).status,
            Status::Ok
        );
        let check = seccomp_check(Some(status), Some(actions), Some("strict"));
        assert!(check.blocks);
        assert_eq!(check.detail, "LAMINA_SECCOMP=strict is not a seccomp mode");
        assert_eq!(check.fix.as_deref(), Some("use `default` or `unconfined`"));
        let nested = seccomp_check(Some("Seccomp:\t2\n"), Some(actions), None);
        assert!(
            nested
                .detail
                .contains("lamina itself runs under a seccomp filter")
        );
        // No filters in the kernel: blocked, unless the profile is turned off.
        let check = seccomp_check(Some(status), None, None);
        assert!(check.blocks);
        assert!(check.fix.unwrap().contains("LAMINA_SECCOMP=unconfined"));
        assert!(seccomp_check(Some("Name:\tx\n"), Some(actions), None).blocks);
        let check = seccomp_check(Some(status), None, Some("unconfined"));
        assert_eq!(check.status, Status::Warn);
        assert!(!check.blocks);
    }
}
