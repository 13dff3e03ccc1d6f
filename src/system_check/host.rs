//! The checks of what lamina needs around the sandbox: slirp4netns and `/dev/net/tun` for
//! `--network private`, its cache and runtime directories, and emulators for the other CPU.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Check;
use crate::cli::output::human_size;
use crate::runtimes::Architecture;

pub const TUN: &str = "/dev/net/tun";

/// Below this much free space a pull is likely to fail: an unpacked runtime image is 0.5-1 GB.
const LOW_SPACE: u64 = 2_000_000_000;

/// slirp4netns on PATH, as `sandbox::network` starts it.
pub fn slirp4netns(path_var: Option<&str>) -> Check {
    let found = path_var.and_then(|path| {
        std::env::split_paths(path)
            .map(|dir| dir.join("slirp4netns"))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => Check::ok(
            "slirp4netns",
            format!("{}: --network private has outbound access", path.display()),
        ),
        None => Check::missing(
            "slirp4netns",
            "not on PATH: --network private gives functions loopback only",
            "Debian/Ubuntu: apt-get install slirp4netns; Fedora: dnf install slirp4netns",
        ),
    }
}

/// What opening `/dev/net/tun` read-write gave (slirp4netns makes its tap device with it).
pub fn tun(opened: std::io::Result<()>) -> Check {
    match opened {
        Ok(()) => Check::ok(TUN, "opens read-write (slirp4netns needs it)"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Check::missing(
            TUN,
            "does not exist: --network private gives functions loopback only",
            "as root: modprobe tun (or: mkdir -p /dev/net && mknod -m 0666 /dev/net/tun c 10 200)",
        ),
        Err(err) => Check::missing(
            TUN,
            format!(
                "cannot be opened ({}): --network private gives functions loopback only",
                without_errno(&err)
            ),
            "as root: chmod 0666 /dev/net/tun",
        ),
    }
}

/// `Permission denied`, without the ` (os error 13)` that `io::Error` adds.
fn without_errno(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.split_once(" (os error ") {
        Some((message, _)) => message.to_string(),
        None => text,
    }
}

/// A directory lamina writes, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirFacts {
    /// `(is a directory, permission bits, owner)` when the path exists.
    pub existing: Option<(bool, u32, u32)>,
    /// The path itself when it exists, else its nearest existing ancestor (where it would be made).
    pub nearest: PathBuf,
    /// A file can be made in `nearest` (tried with an unnamed temporary file, so nothing stays).
    pub writable: bool,
    pub free_bytes: Option<u64>,
}

impl DirFacts {
    pub fn read(path: &Path) -> DirFacts {
        let existing = std::fs::metadata(path)
            .ok()
            .map(|m| (m.is_dir(), m.permissions().mode() & 0o7777, m.uid()));
        let nearest = path
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        // Not `access(2)`: root passes it everywhere, also where a read-only or special file
        // system refuses the write.
        let writable = nearest.is_dir() && tempfile::tempfile_in(&nearest).is_ok();
        let free_bytes = nix::sys::statvfs::statvfs(&nearest)
            .ok()
            .map(|s| s.blocks_available() * s.fragment_size());
        DirFacts {
            existing,
            nearest,
            writable,
            free_bytes,
        }
    }
}

/// The cache root (`paths::cache_root`): usable, and closed to other users, since its rootfs trees
/// keep the images' setuid files.
pub fn cache_dir(path: &Path, facts: &DirFacts, uid: u32) -> Check {
    const NAME: &str = "cache dir";
    let shown = path.display();
    let elsewhere = "set LAMINA_CACHE_DIR to a directory of your own";
    match facts.existing {
        Some((false, _, _)) => Check::missing(
            NAME,
            format!("{shown} exists and is not a directory"),
            format!("remove it, or {elsewhere}"),
        )
        .blocking(),
        Some(_) if !facts.writable => Check::missing(
            NAME,
            format!("{shown} is not writable for you: images cannot be pulled"),
            format!("{elsewhere} (or as root: chown -R {uid} {shown})"),
        )
        .blocking(),
        None if !facts.writable => Check::missing(
            NAME,
            format!(
                "{shown} cannot be created ({} is not writable): images cannot be pulled",
                facts.nearest.display()
            ),
            elsewhere,
        )
        .blocking(),
        Some((true, mode, _)) if mode & 0o077 != 0 => Check::warn(
            NAME,
            format!(
                "{shown} can be entered by other users (mode {mode:04o}); its images keep the files of their layers"
            ),
            format!("chmod 700 {shown}"),
        ),
        Some((true, mode, _)) => Check::ok(NAME, format!("{shown} ({mode:04o})")),
        None => Check::ok(
            NAME,
            format!("{shown} does not exist yet (made by the first pull)"),
        ),
    }
}

/// Free space where the cache is (or will be).
pub fn disk_space(path: &Path, facts: &DirFacts) -> Check {
    const NAME: &str = "cache space";
    match facts.free_bytes {
        None => Check::warn(
            NAME,
            format!("cannot read the free space of {}", facts.nearest.display()),
            "check it with df",
        ),
        Some(free) if free < LOW_SPACE => Check::warn(
            NAME,
            format!(
                "{} free on the disk of {}: an unpacked runtime image takes 0.5-1 GB",
                human_size(free),
                path.display()
            ),
            "free some space (lamina image prune --max-size 2G), or set LAMINA_CACHE_DIR to a bigger disk",
        ),
        Some(free) => Check::ok(NAME, format!("{} free", human_size(free))),
    }
}

/// The runtime directory (`sandbox::Paths::base`): bundles and container state go there.
pub fn runtime_dir(path: &Path, facts: &DirFacts) -> Check {
    const NAME: &str = "runtime dir";
    let shown = path.display();
    let fix = "set LAMINA_RUNTIME_DIR to a directory you can write";
    match facts.existing {
        Some((false, _, _)) => Check::missing(
            NAME,
            format!("{shown} exists and is not a directory"),
            format!("remove it, or {fix}"),
        )
        .blocking(),
        Some(_) if !facts.writable => Check::missing(
            NAME,
            format!("{shown} is not writable for you: no sandbox can be created"),
            fix,
        )
        .blocking(),
        None if !facts.writable => Check::missing(
            NAME,
            format!(
                "{shown} cannot be created ({} is not writable): no sandbox can be created",
                facts.nearest.display()
            ),
            fix,
        )
        .blocking(),
        Some(_) => Check::ok(NAME, format!("{shown} is writable")),
        None => Check::ok(
            NAME,
            format!("{shown} does not exist yet (made by the first invoke)"),
        ),
    }
}

/// Functions built for `arch`: native, emulated (`emulation::check` said `Ok(true)`), or not
/// runnable here, with the fix.
pub fn architecture(arch: Architecture, checked: Result<bool, String>) -> Check {
    let name = format!("{arch} functions");
    match checked {
        Ok(false) => Check::ok(&name, "native"),
        Ok(true) => Check::ok(
            &name,
            "through a binfmt_misc emulator, several times slower than natively",
        ),
        Err(message) => Check::missing_from(&name, &message),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn network_tools() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let check = slirp4netns(Some(path));
        assert_eq!(check.status, Status::Missing);
        assert!(!check.blocks);
        assert!(check.fix.unwrap().contains("apt-get install slirp4netns"));
        std::fs::write(dir.path().join("slirp4netns"), "").unwrap();
        assert_eq!(
            slirp4netns(Some(&format!("/nonexistent:{path}"))).status,
            Status::Ok
        );
        assert_eq!(slirp4netns(None).status, Status::Missing);

        assert_eq!(tun(Ok(())).status, Status::Ok);
        let denied = tun(Err(std::io::Error::from_raw_os_error(libc::EACCES)));
        assert_eq!(denied.status, Status::Missing);
        assert!(
            denied
                .detail
                .starts_with("cannot be opened (Permission denied): "),
            "{denied:?}"
        );
        assert_eq!(
            denied.fix.as_deref(),
            Some("as root: chmod 0666 /dev/net/tun")
        );
        let absent = tun(Err(std::io::Error::from_raw_os_error(libc::ENOENT)));
        assert!(absent.fix.unwrap().starts_with("as root: modprobe tun"));
    }

    #[test]
    fn dir_facts_read_the_nearest_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let facts = DirFacts::read(&dir.path().join("a/b"));
        assert_eq!(facts.existing, None);
        assert_eq!(facts.nearest, dir.path());
        assert!(facts.writable);
        assert!(facts.free_bytes.is_some());
        // Nothing was left behind by the write test.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        let facts = DirFacts::read(dir.path());
        assert_eq!(facts.existing.map(|(d, m, _)| (d, m)), Some((true, 0o750)));
        // Even root cannot make a file in /proc.
        assert!(!DirFacts::read(Path::new("/proc/lamina-check")).writable);
    }

    fn facts(existing: Option<(bool, u32, u32)>, writable: bool, free: u64) -> DirFacts {
        DirFacts {
            existing,
            nearest: PathBuf::from("/home/alice"),
            writable,
            free_bytes: Some(free),
        }
    }

    #[test]
    fn cache_dir_permissions_and_space() {
        let path = Path::new("/home/alice/.cache/lamina");
        let check = cache_dir(path, &facts(Some((true, 0o755, 1001)), true, 0), 1001);
        assert_eq!(check.status, Status::Warn);
        assert!(check.detail.contains("(mode 0755)"), "{check:?}");
        assert_eq!(
            check.fix.as_deref(),
            Some("chmod 700 /home/alice/.cache/lamina")
        );
        let check = cache_dir(path, &facts(Some((true, 0o700, 1001)), true, 0), 1001);
        assert_eq!(check.status, Status::Ok);
        assert_eq!(check.detail, "/home/alice/.cache/lamina (0700)");
        assert_eq!(
            cache_dir(path, &facts(None, true, 0), 1001).status,
            Status::Ok
        );
        let check = cache_dir(path, &facts(None, false, 0), 1001);
        assert!(check.blocks);
        assert!(check.detail.contains("(/home/alice is not writable)"));
        assert!(cache_dir(path, &facts(Some((false, 0o644, 0)), true, 0), 1001).blocks);

        assert_eq!(
            disk_space(path, &facts(None, true, 500_000_000)).status,
            Status::Warn
        );
        let check = disk_space(path, &facts(None, true, 66_000_000_000));
        assert_eq!(
            (check.status, check.detail.as_str()),
            (Status::Ok, "66.0 GB free")
        );
    }

    #[test]
    fn runtime_dir_must_be_writable() {
        let path = Path::new("/run/user/1001/lamina");
        assert_eq!(
            runtime_dir(path, &facts(Some((true, 0o700, 1001)), true, 0)).status,
            Status::Ok
        );
        let check = runtime_dir(path, &facts(Some((true, 0o755, 0)), false, 0));
        assert!(check.blocks);
        assert!(check.fix.unwrap().contains("LAMINA_RUNTIME_DIR"));
    }

    #[test]
    fn architectures_reuse_the_emulation_check() {
        let binfmt = tempfile::tempdir().unwrap();
        let host = Some(Architecture::X86_64);
        let check = |arch| {
            architecture(
                arch,
                crate::sandbox::emulation::check(arch, host, binfmt.path()),
            )
        };
        assert_eq!(check(Architecture::X86_64).detail, "native");
        let arm = check(Architecture::Arm64);
        assert_eq!(arm.name, "arm64 functions");
        assert_eq!(arm.status, Status::Missing);
        assert!(!arm.blocks);
        assert!(arm.detail.ends_with("does not exist)"), "{arm:?}");
        assert!(
            arm.fix
                .unwrap()
                .starts_with("install a binfmt_misc emulator"),
        );
        std::fs::write(
            binfmt.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\n",
        )
        .unwrap();
        assert_eq!(check(Architecture::Arm64).status, Status::Ok);
    }
}
