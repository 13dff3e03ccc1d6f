//! The checks of what the sandbox itself needs besides cgroups (`cgroups`): a user namespace
//! (rootless), its id mapping, and seccomp.

use std::path::Path;

use super::Check;
use crate::sandbox::idmap::{self, Mode, System};
use crate::sandbox::seccomp;

pub const USERNS: &str = "user namespaces";
pub const IDMAP: &str = "id mapping";
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
