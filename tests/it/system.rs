//! `lamina system check` on this host: as root, and as an unprivileged user
//! (`LAMINA_TEST_ROOTLESS_USER`, which CI creates), with and without a cgroup subtree of its own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{Outcome, Project, Run, rootless_user, setup_rootless, skip};

fn require_root() -> Option<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return skip("lamina system check is tested as root and, through runuser, as another user");
    }
    Some(())
}

fn is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The check named `name` of a `--json` report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn status<'a>(report: &'a Value, name: &str) -> &'a str {
    check(report, name)["status"].as_str().unwrap()
}

fn fix<'a>(report: &'a Value, name: &str) -> &'a str {
    check(report, name)["fix"].as_str().unwrap_or("")
}

fn json(out: &Outcome) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", out.stdout, out.stderr))
}

/// The human report's line for `name`: every check line is `STATUS  NAME  DETAIL`, aligned.
fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l.get(9..)
                .is_some_and(|rest| rest.starts_with(&format!("{name}  ")))
        })
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
}

fn check_as_root(project: &Project) -> Run {
    Run::new(project.path()).args(["system", "check"])
}

#[test]
fn test_system_check_as_root() {
    if require_root().is_none() {
        return;
    }
    let project = Project::empty();
    let out = check_as_root(&project).output();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let text = &out.stdout;
    assert!(
        text.starts_with("lamina ") && text.contains(" system check, as root (uid 0), Linux "),
        "{text}"
    );
    assert!(
        line(text, "user namespaces").starts_with("ok       user namespaces   not needed"),
        "{text}"
    );
    let cgroups = line(text, "cgroups");
    assert!(cgroups.starts_with("ok "), "{text}");
    assert!(
        cgroups.contains(if is_v2() { " v2, " } else { " v1, " }),
        "{text}"
    );
    assert!(line(text, "memory limit").starts_with("ok "), "{text}");
    // Where a pids controller exists, root gets Lambda's 1,024 processes from it.
    let pids_controller = if is_v2() {
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .unwrap()
            .split_whitespace()
            .any(|c| c == "pids")
    } else {
        Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists()
    };
    let pids = line(text, "pids limit");
    if pids_controller {
        assert!(
            pids.starts_with("ok ") && pids.contains("at most 1,024 processes"),
            "{text}"
        );
    } else {
        assert!(pids.contains("does not apply to uid 0"), "{text}");
    }
    assert!(line(text, "x86_64 functions").starts_with("ok "), "{text}");
    // The details start in one column.
    let columns: Vec<usize> = text
        .lines()
        .filter(|l| {
            ["ok ", "warn ", "missing "]
                .iter()
                .any(|s| l.starts_with(s))
        })
        .map(|l| {
            let after_name = &l[9 + l[9..].find("  ").unwrap()..];
            l.len() - after_name.trim_start().len()
        })
        .collect();
    assert!(columns.len() >= 12, "{text}");
    assert!(
        columns.iter().all(|c| *c == columns[0]),
        "{columns:?}\n{text}"
    );
    assert!(text.contains("\nlamina can run functions here ("), "{text}");

    // The same as JSON, every line that is not ok with its fix.
    let report = json(&check_as_root(&project).arg("--json").output());
    assert_eq!(report["uid"], 0);
    assert_eq!(report["can_invoke"], true);
    assert_eq!(report["blocked_by"], serde_json::json!([]));
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["blocks"], false, "{c}");
        if c["status"] != "ok" {
            assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c}");
        }
    }
    for name in [
        "user namespaces",
        "cgroups",
        "memory limit",
        "pids limit",
        "seccomp",
        "slirp4netns",
        "/dev/net/tun",
        "cache dir",
        "cache space",
        "runtime dir",
        "x86_64 functions",
        "arm64 functions",
    ] {
        check(&report, name);
    }
}

#[test]
fn test_system_check_cache_permissions_and_settings() {
    if require_root().is_none() {
        return;
    }
    let project = Project::empty();
    let cache = project.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let report = |run: Run| json(&run.arg("--json").output());
    let with_cache = || check_as_root(&project).env("LAMINA_CACHE_DIR", cache.to_str().unwrap());
    // Group/other-accessible: the cached rootfs trees keep the images' setuid files.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = with_cache().output();
    assert_eq!(
        out.code, 0,
        "a warning does not stop invokes: {}",
        out.stdout
    );
    let cache_line = line(&out.stdout, "cache dir");
    assert!(cache_line.starts_with("warn "), "{}", out.stdout);
    assert!(
        cache_line.contains("can be entered by other users (mode 0755)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("fix: chmod 700 {}\n", cache.display())),
        "{}",
        out.stdout
    );
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let r = report(with_cache());
    assert_eq!(status(&r, "cache dir"), "ok");
    assert_eq!(
        check(&r, "cache dir")["detail"],
        format!("{} (0700)", cache.display())
    );

    // LAMINA_SECCOMP: unconfined is a warning; a value invokes refuse blocks them.
    let r = report(check_as_root(&project).env("LAMINA_SECCOMP", "unconfined"));
    assert_eq!(status(&r, "seccomp"), "warn");
    assert_eq!(fix(&r, "seccomp"), "unset LAMINA_SECCOMP");
    assert_eq!(r["can_invoke"], true);
    let out = check_as_root(&project)
        .env("LAMINA_SECCOMP", "off")
        .output();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .ends_with("lamina cannot run functions here: fix seccomp first.\n"),
        "{}",
        out.stdout
    );

    // A runtime directory that cannot be made (not even by root) blocks every invoke.
    let out = check_as_root(&project)
        .env("LAMINA_RUNTIME_DIR", "/proc/lamina-check")
        .output();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        line(&out.stdout, "runtime dir").starts_with("missing  runtime dir"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("fix: set LAMINA_RUNTIME_DIR to a directory you can write"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("lamina cannot run functions here: fix runtime dir first.\n"),
        "{}",
        out.stdout
    );
    // Nothing was made by looking.
    assert!(!Path::new("/proc/lamina-check").exists());
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
}

/// `lamina system check ARGS` as `user` in a clean environment plus `vars` (`K=V`).
fn as_user(binary: &Path, user: &nix::unistd::User, vars: &[String], args: &[&str]) -> Outcome {
    let out = std::process::Command::new("runuser")
        .args(["-u", &user.name, "--", "env", "-i"])
        .arg(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ))
        .arg(format!("HOME={}", user.dir.display()))
        .args(vars)
        .arg(binary)
        .args(["system", "check"])
        .args(args)
        .current_dir("/")
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_rss_kib: 0,
    }
}

#[test]
fn test_system_check_rootless() {
    if require_root().is_none() {
        return;
    }
    let Some(user) = rootless_user() else {
        return;
    };
    let name = user.name.clone();
    let uid = user.uid.as_raw();
    // The binary and the user's cache dirs, where the user can reach them.
    let place = tempfile::Builder::new()
        .prefix("lamina-check-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(place.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = place.path().join("lamina");
    std::fs::copy(env!("CARGO_BIN_EXE_lamina"), &binary).unwrap();
    let cache = |dir: &str, mode: u32| -> PathBuf {
        let path = place.path().join(dir);
        std::fs::create_dir(&path).unwrap();
        nix::unistd::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let open_cache = cache("cache-open", 0o755);
    let closed_cache = cache("cache-closed", 0o700);
    let cache_var = |path: &Path| format!("LAMINA_CACHE_DIR={}", path.display());
    let setup_fix = format!("sudo lamina system setup-rootless --user {name}");

    // No cgroup subtree of its own: the memory limit is unavailable, with setup-rootless as the
    // fix (and on a v1 host, nothing runs without it).
    let out = as_user(
        &binary,
        &user,
        &[
            cache_var(&closed_cache),
            "LAMINA_CGROUP_PARENT=lamina-not-set-up".into(),
        ],
        &[],
    );
    let text = &out.stdout;
    assert!(
        text.contains(&format!(" system check, as {name} (uid {uid}, rootless), ")),
        "{text}\n{}",
        out.stderr
    );
    assert!(
        line(text, "user namespaces")
            .starts_with("ok       user namespaces   unprivileged user namespaces work"),
        "{text}"
    );
    let memory = line(text, "memory limit");
    assert!(memory.starts_with("missing  memory limit"), "{text}");
    assert!(memory.contains("unavailable"), "{text}");
    assert!(text.contains(&format!("fix: {setup_fix}\n")), "{text}");
    assert!(line(text, "pids limit").starts_with("warn "), "{text}");
    assert!(
        line(text, "pids limit").contains("only RLIMIT_NPROC"),
        "{text}"
    );
    if is_v2() {
        assert_eq!(out.code, 0, "{text}");
    } else {
        assert_eq!(out.code, 1, "{text}");
        assert!(line(text, "cgroups").starts_with("missing "), "{text}");
        assert!(
            text.ends_with("lamina cannot run functions here: fix cgroups first.\n"),
            "{text}"
        );
    }

    // With the subtree `setup-rootless` makes: both limits hold.
    setup_rootless(&binary, &name);
    let out = as_user(&binary, &user, &[cache_var(&closed_cache)], &["--json"]);
    let report = json(&out);
    assert_eq!(out.code, 0, "{report:#}");
    assert_eq!(report["uid"], uid);
    assert_eq!(report["user"], name.as_str());
    for name in [
        "user namespaces",
        "cgroups",
        "memory limit",
        "pids limit",
        "cache dir",
        "runtime dir",
    ] {
        assert_eq!(status(&report, name), "ok", "{name}: {report:#}");
    }
    // The id range, as /etc/subuid gives it (useradd adds one on Debian).
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    if subuid.lines().any(|l| l.starts_with(&format!("{name}:"))) {
        assert_eq!(status(&report, "id mapping"), "ok", "{report:#}");
    }
    // /dev/net/tun as its mode lets the user open it.
    let tun_mode = std::fs::metadata("/dev/net/tun").map(|m| m.permissions().mode() & 0o006);
    match tun_mode {
        Ok(0o006) => assert_eq!(status(&report, "/dev/net/tun"), "ok"),
        _ => {
            assert_eq!(status(&report, "/dev/net/tun"), "missing");
            assert!(fix(&report, "/dev/net/tun").contains("/dev/net/tun"));
        }
    }

    // A cache dir others may enter: a warning, with the chmod.
    let out = as_user(&binary, &user, &[cache_var(&open_cache)], &[]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        line(&out.stdout, "cache dir").starts_with("warn "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("fix: chmod 700 {}\n", open_cache.display())),
        "{}",
        out.stdout
    );

    // Without newuidmap on PATH: only the user is mapped (a warning), unless the range is required.
    let no_tools = [cache_var(&closed_cache), "PATH=/nonexistent".to_string()];
    let report = json(&as_user(&binary, &user, &no_tools, &["--json"]));
    assert_eq!(status(&report, "id mapping"), "warn", "{report:#}");
    assert!(
        fix(&report, "id mapping").contains("apt install uidmap"),
        "{report:#}"
    );
    assert_eq!(status(&report, "slirp4netns"), "missing");
    assert_eq!(report["can_invoke"], true);
    let mut required = no_tools.to_vec();
    required.push("LAMINA_ID_MAPPING=range".into());
    let out = as_user(&binary, &user, &required, &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .ends_with("lamina cannot run functions here: fix id mapping first.\n"),
        "{}",
        out.stdout
    );
}
