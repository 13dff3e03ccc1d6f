//! `lamina system check`: what works on this host for the user running it, and what to do about what
//! does not. Each check is one line with a status and, when it is not `ok`, the fix (a command or a
//! setting), so that a person setting up a CI runner or a laptop reads one screen instead of
//! meeting the problems one failed invoke at a time.
//!
//! The checks ask the same functions the invoke path asks (`sandbox::rootless`, `sandbox::idmap`,
//! `sandbox::confinement`, `sandbox::seccomp`, `sandbox::emulation`, `paths`, `sandbox::Paths`), so
//! the report cannot drift from what an invoke would do. The decisions are pure functions over what
//! was read (`sandbox`, `cgroups`, `host`), tested on fake trees; only `gather` touches the real
//! system.

mod cgroups;
mod host;
mod sandbox;

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::runtimes::Architecture;
use crate::sandbox::confinement::{Confinement, ProcessBound};
use crate::sandbox::{cgroup, emulation, rootless};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Ok,
    /// Works, with a caveat worth fixing (a weaker limit, an unsafe permission).
    Warn,
    /// Not available here; with `blocks`, invokes cannot run at all.
    Missing,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Missing => "missing",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to run or set, when the status is not `ok`.
    pub fix: Option<String>,
    /// Invokes cannot run until this is fixed.
    pub blocks: bool,
}

impl Check {
    fn new(name: &str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            name: name.to_string(),
            status,
            detail: detail.into(),
            fix,
            blocks: false,
        }
    }

    pub fn ok(name: &str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, detail, None)
    }

    pub fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check::new(name, Status::Warn, detail, Some(fix.into()))
    }

    pub fn missing(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check::new(name, Status::Missing, detail, Some(fix.into()))
    }

    /// `missing`, from one of the invoke path's messages (`what is wrong; what to do`).
    pub fn missing_from(name: &str, message: &str) -> Check {
        let (detail, fix) = split_fix(message);
        Check::new(name, Status::Missing, detail, fix)
    }

    /// Marks a `missing` check as one that stops every invoke.
    pub fn blocking(mut self) -> Check {
        self.blocks = true;
        self
    }
}

/// Splits one of the invoke path's messages, `what is wrong; what to do`, at its first `; `.
fn split_fix(message: &str) -> (String, Option<String>) {
    match message.split_once("; ") {
        Some((detail, fix)) => (detail.to_string(), Some(fix.to_string())),
        None => (message.to_string(), None),
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub lamina: &'static str,
    pub user: String,
    pub uid: u32,
    pub kernel: String,
    pub arch: &'static str,
    /// Whether invokes can run here (possibly with warnings).
    pub can_invoke: bool,
    /// The names of the checks that stop invokes.
    pub blocked_by: Vec<String>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(user: String, uid: u32, kernel: String, checks: Vec<Check>) -> Report {
        let blocked_by: Vec<String> = checks
            .iter()
            .filter(|c| c.blocks)
            .map(|c| c.name.clone())
            .collect();
        Report {
            lamina: env!("CARGO_PKG_VERSION"),
            user,
            uid,
            kernel,
            arch: std::env::consts::ARCH,
            can_invoke: blocked_by.is_empty(),
            blocked_by,
            checks,
        }
    }

    /// The process exit code: 0 when invokes can run (even with warnings), 1 when they cannot.
    pub fn exit_code(&self) -> u8 {
        if self.can_invoke {
            crate::exit::SUCCESS
        } else {
            crate::exit::LAMINA_ERROR
        }
    }

    /// The report for people: a header, one aligned line per check (its fix indented under it),
    /// and a verdict.
    pub fn render(&self) -> String {
        let mode = if self.uid == 0 { "" } else { ", rootless" };
        let mut out = format!(
            "lamina {} system check, as {} (uid {}{mode}), Linux {} {}\n\n",
            self.lamina, self.user, self.uid, self.kernel, self.arch
        );
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let indent = " ".repeat(9 + width + 2);
        for check in &self.checks {
            let _ = writeln!(
                out,
                "{:<9}{:<width$}  {}",
                check.status.as_str(),
                check.name,
                check.detail
            );
            if let Some(fix) = &check.fix {
                let _ = writeln!(out, "{indent}fix: {fix}");
            }
        }
        let count = |status| self.checks.iter().filter(|c| c.status == status).count();
        let (warnings, missing) = (count(Status::Warn), count(Status::Missing));
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        out.push('\n');
        if self.can_invoke {
            let _ = writeln!(
                out,
                "lamina can run functions here ({}, {} missing).",
                plural(warnings, "warning"),
                missing
            );
        } else {
            let _ = writeln!(
                out,
                "lamina cannot run functions here: fix {} first.",
                self.blocked_by.join(", ")
            );
        }
        out
    }
}

/// Reads this host, for the user running lamina, into a report.
pub fn gather(env: &dyn Fn(&str) -> Option<String>) -> Report {
    // SAFETY: getters without failure modes.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let user = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "(unknown kernel)".into());
    let rootless = rootless::Identity::current().is_some();

    let mut checks = Vec::new();
    // User namespaces and id mapping: only rootless sandboxes have a user namespace.
    if rootless {
        let proc = Path::new("/proc");
        checks.push(sandbox::user_namespaces(
            rootless::userns_blocked(proc).as_deref(),
            // Tried (in a child process) only when no switch already says no.
            rootless::userns_refused_by_seccomp,
            &sandbox::userns_settings(proc),
        ));
        let path = env("PATH");
        checks.push(sandbox::id_mapping(
            env(crate::env_vars::LAMINA_ID_MAPPING).as_deref(),
            &crate::sandbox::idmap::System::read(uid, gid, path.as_deref()),
        ));
    } else {
        checks.push(Check::ok(
            sandbox::USERNS,
            "not needed: root's sandboxes have no user namespace",
        ));
    }

    let parent = crate::sandbox::cgroup_parent(env);
    let view = cgroups::CgroupView {
        version: cgroup::version(),
        root: Path::new("/sys/fs/cgroup"),
        hierarchies: rootless::v1_controllers(),
        writable: &crate::sandbox::cgroup::writable,
        swap_accounting: cgroup::can_limit_swap(),
        // The pids decision is the invoke's own (a bad LAMINA_SECCOMP is the seccomp line's).
        processes: Confinement::for_host(
            &|name| {
                (name != crate::env_vars::LAMINA_SECCOMP)
                    .then(|| env(name))
                    .flatten()
            },
            rootless,
            &parent,
        )
        .map_or(ProcessBound::RlimitNproc, |c| c.processes),
    };
    let owner = rootless.then(|| cgroups::Owner {
        user: user.clone(),
        parent: parent.clone(),
    });
    checks.extend(cgroups::cgroups(&view, owner.as_ref()));

    checks.push(sandbox::seccomp_check(
        std::fs::read_to_string("/proc/self/status").ok().as_deref(),
        std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
            .ok()
            .as_deref(),
        env(crate::env_vars::LAMINA_SECCOMP).as_deref(),
    ));

    checks.push(host::slirp4netns(env("PATH").as_deref()));
    checks.push(host::tun(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(host::TUN)
            .map(drop),
    ));

    let cache = crate::paths::cache_root(env);
    let cache_facts = host::DirFacts::read(&cache);
    checks.push(host::cache_dir(&cache, &cache_facts, uid));
    checks.push(host::disk_space(&cache, &cache_facts));
    let runtime = crate::sandbox::Paths::base(env);
    checks.push(host::runtime_dir(&runtime, &host::DirFacts::read(&runtime)));

    let binfmt = Path::new(emulation::BINFMT_DIR);
    for arch in [Architecture::X86_64, Architecture::Arm64] {
        checks.push(host::architecture(
            arch,
            emulation::check(arch, emulation::host(), binfmt),
        ));
    }
    Report::new(user, uid, kernel, checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Check>) -> Report {
        Report::new("alice".into(), 1001, "6.1.0".into(), checks)
    }

    #[test]
    fn warnings_do_not_block_and_the_lines_align() {
        let r = report(vec![
            Check::ok("cgroups", "v1"),
            Check::warn("cache dir", "/c is 0755", "chmod 700 /c"),
        ]);
        assert!(r.can_invoke);
        assert_eq!(r.exit_code(), 0);
        let text = r.render();
        assert!(
            text.starts_with("lamina ")
                && text.contains("system check, as alice (uid 1001, rootless), Linux 6.1.0"),
            "{text}"
        );
        assert!(text.contains("\nok       cgroups    v1\n"), "{text}");
        assert!(
            text.contains("\nwarn     cache dir  /c is 0755\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("\n{}fix: chmod 700 /c\n", " ".repeat(20))),
            "{text}"
        );
        assert!(
            text.ends_with("lamina can run functions here (1 warning, 0 missing).\n"),
            "{text}"
        );
    }

    #[test]
    fn a_blocking_check_fails_the_report_and_is_named() {
        let r = report(vec![
            Check::missing(
                "slirp4netns",
                "not installed",
                "apt-get install slirp4netns",
            ),
            Check::missing("user namespaces", "disabled", "sysctl -w x=1").blocking(),
            Check::missing("cgroups", "no subtree", "sudo lamina ...").blocking(),
        ]);
        assert!(!r.can_invoke);
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.blocked_by, ["user namespaces", "cgroups"]);
        assert!(
            r.render().ends_with(
                "lamina cannot run functions here: fix user namespaces, cgroups first.\n"
            )
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["checks"][0]["status"], "missing");
        assert_eq!(json["checks"][0]["blocks"], false);
        assert_eq!(json["can_invoke"], false);
    }

    #[test]
    fn messages_split_into_detail_and_fix() {
        assert_eq!(
            split_fix("x is off (kernel.x = 0); as root: sysctl -w kernel.x=1"),
            (
                "x is off (kernel.x = 0)".to_string(),
                Some("as root: sysctl -w kernel.x=1".to_string())
            )
        );
        assert_eq!(split_fix("no fix here"), ("no fix here".to_string(), None));
    }
}
