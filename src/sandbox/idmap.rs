//! Which ids a rootless sandbox's user namespace maps. The user always becomes root inside. When
//! `/etc/subuid` and `/etc/subgid` give the user a range and `newuidmap`/`newgidmap` (Debian
//! `uidmap`) are installed, ids 1..=N map to that range too, so the function can switch to other
//! users (as tools that drop privileges do); without them only root exists inside.
//!
//! `LAMINA_ID_MAPPING` chooses: `auto` (the default: the range when it can), `single` (the user
//! only), `range` (the range or an error that says how to get one).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Ids of a sandbox's user namespace: container root is `uid`/`gid`, container ids 1..=`count`
/// are the subordinate ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub uid: u32,
    pub gid: u32,
    pub range: Option<SubRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub uid_start: u32,
    pub gid_start: u32,
    pub count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Single,
    Range,
}

impl Mode {
    pub fn parse(value: Option<&str>) -> Result<Mode, String> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None | Some("auto") => Ok(Mode::Auto),
            Some("single") => Ok(Mode::Single),
            Some("range") => Ok(Mode::Range),
            Some(other) => Err(format!(
                "LAMINA_ID_MAPPING={other}: expected auto, single or range"
            )),
        }
    }
}

/// What the choice depends on, read from the system by `System::read`.
pub struct System {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub subuid: String,
    pub subgid: String,
    /// Why `newuidmap`/`newgidmap` cannot be used, if they cannot.
    pub helpers_unusable: Option<String>,
}

impl System {
    pub fn read(uid: u32, gid: u32, path_var: Option<&str>) -> System {
        let user = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        System {
            user,
            uid,
            gid,
            subuid: std::fs::read_to_string("/etc/subuid").unwrap_or_default(),
            subgid: std::fs::read_to_string("/etc/subgid").unwrap_or_default(),
            // libcontainer looks the helpers up on PATH, and fails without one.
            helpers_unusable: match path_var {
                Some(path) => helpers_unusable(path),
                None => Some("PATH is not set, so newuidmap and newgidmap cannot be found".into()),
            },
        }
    }
}

pub fn choose(mode: Mode, system: &System) -> Result<IdMapping, String> {
    let single = IdMapping {
        uid: system.uid,
        gid: system.gid,
        range: None,
    };
    if mode == Mode::Single {
        return Ok(single);
    }
    let uids = sub_range(&system.subuid, &system.user, system.uid);
    let gids = sub_range(&system.subgid, &system.user, system.uid);
    let problem = match (uids, gids, &system.helpers_unusable) {
        (Some((uid_start, uid_count)), Some((gid_start, gid_count)), None) => {
            return Ok(IdMapping {
                range: Some(SubRange {
                    uid_start,
                    gid_start,
                    count: uid_count.min(gid_count),
                }),
                ..single
            });
        }
        (None, _, _) | (_, None, _) => format!(
            "{} has no subordinate id range in /etc/subuid and /etc/subgid (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {})",
            system.user, system.user
        ),
        (_, _, Some(reason)) => reason.clone(),
    };
    if mode == Mode::Range {
        return Err(format!("LAMINA_ID_MAPPING=range: {problem}"));
    }
    tracing::debug!("mapping only the user into the sandbox: {problem}");
    Ok(single)
}

/// The first range of `/etc/subuid`-style `text` for the user (by name or uid): `(start, count)`.
fn sub_range(text: &str, user: &str, uid: u32) -> Option<(u32, u32)> {
    let uid = uid.to_string();
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        if owner != user && owner != uid {
            return None;
        }
        let (start, count) = (start.parse().ok()?, count.parse::<u32>().ok()?);
        (count > 0).then_some((start, count))
    })
}

/// `newuidmap` and `newgidmap` must be on PATH and privileged (setuid root or file capabilities):
/// libcontainer runs them but does not look at how they exit.
fn helpers_unusable(path_var: &str) -> Option<String> {
    for name in ["newuidmap", "newgidmap"] {
        let Some(path) = find(path_var, name) else {
            return Some(format!(
                "{name} is not installed (Debian and Ubuntu: apt install uidmap)"
            ));
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            return Some(format!("cannot read {}", path.display()));
        };
        let setuid_root = meta.permissions().mode() & 0o4000 != 0
            && std::os::unix::fs::MetadataExt::uid(&meta) == 0;
        let has_caps = xattr::get(&path, "security.capability")
            .ok()
            .flatten()
            .is_some();
        if !setuid_root && !has_caps {
            return Some(format!(
                "{} is neither setuid root nor given capabilities (reinstall uidmap)",
                path.display()
            ));
        }
    }
    None
}

fn find(path_var: &str, name: &str) -> Option<PathBuf> {
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(subuid: &str, subgid: &str, helpers: Option<&str>) -> System {
        System {
            user: "alice".into(),
            uid: 1001,
            gid: 1002,
            subuid: subuid.into(),
            subgid: subgid.into(),
            helpers_unusable: helpers.map(str::to_string),
        }
    }

    #[test]
    fn a_range_when_both_files_have_one_and_the_helpers_work() {
        let s = system(
            "bob:200000:65536\nalice:100000:65536\n",
            "1001:300000:1000\n",
            None,
        );
        assert_eq!(
            choose(Mode::Auto, &s).unwrap(),
            IdMapping {
                uid: 1001,
                gid: 1002,
                range: Some(SubRange {
                    uid_start: 100000,
                    gid_start: 300000,
                    count: 1000
                })
            }
        );
        assert_eq!(choose(Mode::Single, &s).unwrap().range, None);
    }

    #[test]
    fn auto_falls_back_and_range_says_why() {
        let no_range = system("bob:200000:65536\n", "", None);
        assert_eq!(choose(Mode::Auto, &no_range).unwrap().range, None);
        let err = choose(Mode::Range, &no_range).unwrap_err();
        assert!(err.contains("alice has no subordinate id range"), "{err}");
        assert!(err.contains("usermod --add-subuids"), "{err}");
        let no_helpers = system(
            "alice:1:2\n",
            "alice:1:2\n",
            Some("newuidmap is not installed (Debian and Ubuntu: apt install uidmap)"),
        );
        assert_eq!(choose(Mode::Auto, &no_helpers).unwrap().range, None);
        assert!(
            choose(Mode::Range, &no_helpers)
                .unwrap_err()
                .contains("apt install uidmap")
        );
    }

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse(None).unwrap(), Mode::Auto);
        assert_eq!(Mode::parse(Some("range")).unwrap(), Mode::Range);
        assert!(
            Mode::parse(Some("many"))
                .unwrap_err()
                .contains("LAMINA_ID_MAPPING=many")
        );
    }

    #[test]
    fn helpers_missing_from_path() {
        let dir = tempfile::tempdir().unwrap();
        let reason = helpers_unusable(dir.path().to_str().unwrap()).unwrap();
        assert!(reason.contains("newuidmap is not installed"), "{reason}");
        // An unprivileged copy is not enough.
        for name in ["newuidmap", "newgidmap"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let reason = helpers_unusable(dir.path().to_str().unwrap()).unwrap();
        assert!(reason.contains("neither setuid root"), "{reason}");
    }
}
