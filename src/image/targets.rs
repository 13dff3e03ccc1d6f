//! The mount points of lamina's sandbox, made in every rootfs before it is published, and the
//! check that a cached rootfs still has them.
//!
//! youki creates a missing mount target inside the rootfs it is given (resolving the path inside
//! the rootfs, as `safe_path::scoped_join` does: symlinks followed, absolute ones from the rootfs,
//! `..` stopping at its top). For lamina that rootfs is the shared image cache, which must never
//! change at run time; so the unpack makes every target first, by the same resolution, and an
//! invoke finds them all there.
//!
//! The list follows `sandbox::spec::build` (the standard mounts, `/var/task`, `/opt`, `/etc/hosts`,
//! `/etc/resolv.conf`) and `run` (a host RIE at `/var/rapid/aws-lambda-rie`; the debugger's
//! `/tmp/lambci_debug_files` is inside the `/tmp` tmpfs). The integration test
//! `test_images_invoke_writes_nothing_into_the_cached_rootfs` catches a mount added there and
//! missing here.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use super::layer::remove_any;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Every path the sandbox mounts something on, relative to the rootfs.
pub const MOUNT_TARGETS: &[(&str, Kind)] = &[
    ("proc", Kind::Dir),
    ("dev", Kind::Dir),
    ("dev/pts", Kind::Dir),
    ("dev/shm", Kind::Dir),
    ("dev/mqueue", Kind::Dir),
    ("sys", Kind::Dir),
    ("tmp", Kind::Dir),
    ("var/task", Kind::Dir),
    ("opt", Kind::Dir),
    ("etc/hosts", Kind::File),
    ("etc/resolv.conf", Kind::File),
    ("var/rapid/aws-lambda-rie", Kind::File),
];

/// Symlinks followed while resolving one path, as the kernel's `ELOOP` limit.
const MAX_HOPS: usize = 40;

/// Makes every mount target in `rootfs` (and the directories on the way), replacing what stands
/// in the way with the right kind of entry: a mount hides it anyway.
pub fn create(rootfs: &Path) -> io::Result<()> {
    for (target, kind) in MOUNT_TARGETS {
        let path = resolve(rootfs, Path::new(target), true)?;
        match (fs::symlink_metadata(&path), kind) {
            (Ok(meta), Kind::Dir) if meta.is_dir() => {}
            (Ok(meta), Kind::File) if meta.is_file() => {}
            (found, kind) => {
                if found.is_ok() {
                    remove_any(&path)?;
                }
                match kind {
                    Kind::Dir => fs::DirBuilder::new().mode(0o755).create(&path)?,
                    Kind::File => drop(
                        fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o644)
                            .open(&path)?,
                    ),
                }
            }
        }
    }
    Ok(())
}

/// Why `rootfs` cannot be run as it is, if it cannot: it is not a directory, or a mount target is
/// missing or of the wrong kind.
pub fn check(rootfs: &Path) -> Result<(), String> {
    match fs::symlink_metadata(rootfs) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err("the rootfs is not a directory".into()),
        Err(err) => return Err(format!("the rootfs is missing ({err})")),
    }
    for (target, kind) in MOUNT_TARGETS {
        let found = resolve(rootfs, Path::new(target), false).and_then(fs::symlink_metadata);
        let ok = match (&found, kind) {
            (Ok(meta), Kind::Dir) => meta.is_dir(),
            (Ok(meta), Kind::File) => meta.is_file(),
            (Err(_), _) => false,
        };
        if !ok {
            return Err(format!("its mount point /{target} is missing"));
        }
    }
    Ok(())
}

/// The host path `relative` names inside `root`, resolved as youki does; with `create`, missing
/// (or non-directory) directories on the way are made. The last component may not exist.
fn resolve(root: &Path, relative: &Path, create: bool) -> io::Result<PathBuf> {
    // Components still to walk, last first; `depth` is how far below `root` `current` is.
    let mut pending: Vec<OsString> = components(relative);
    let mut current = root.to_path_buf();
    let mut depth = 0usize;
    let mut hops = 0usize;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if depth > 0 {
                current.pop();
                depth -= 1;
            }
            continue;
        }
        let next = current.join(&part);
        let last = pending.is_empty();
        match fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links at {}",
                        next.display()
                    )));
                }
                let target = fs::read_link(&next)?;
                if target.is_absolute() {
                    current = root.to_path_buf();
                    depth = 0;
                }
                pending.extend(components(&target));
            }
            Ok(meta) if meta.is_dir() => {
                current = next;
                depth += 1;
            }
            _ if last => return Ok(next),
            found => {
                if !create {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{} is not a directory", next.display()),
                    ));
                }
                if found.is_ok() {
                    remove_any(&next)?;
                }
                fs::DirBuilder::new().mode(0o755).create(&next)?;
                current = next;
                depth += 1;
            }
        }
    }
    Ok(current)
}

/// The components of `path` to walk (`.` and the root dropped), last first.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn targets_are_made_through_symlinks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir_all(root.join("etc")).unwrap();
        // An absolute symlink resolves inside the rootfs, a dangling one gets its target made.
        symlink(
            "/run/systemd/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .unwrap();
        symlink("../../outside", root.join("opt")).unwrap();
        fs::write(root.join("tmp"), "a file where a directory belongs").unwrap();
        assert!(check(&root).unwrap_err().contains("is missing"));

        create(&root).unwrap();
        check(&root).unwrap();
        assert!(root.join("run/systemd/stub-resolv.conf").is_file());
        assert!(root.join("outside").is_dir(), "`..` stops at the rootfs");
        assert!(!dir.path().join("outside").exists());
        assert!(root.join("tmp").is_dir());
        for (target, kind) in MOUNT_TARGETS {
            let meta = fs::metadata(resolve(&root, Path::new(target), false).unwrap()).unwrap();
            assert_eq!(meta.is_dir(), *kind == Kind::Dir, "{target}");
        }
        // Existing content is kept.
        fs::write(root.join("etc/hosts"), "127.0.0.1 image\n").unwrap();
        create(&root).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("etc/hosts")).unwrap(),
            "127.0.0.1 image\n"
        );

        fs::remove_dir(root.join("dev/mqueue")).unwrap();
        assert_eq!(
            check(&root).unwrap_err(),
            "its mount point /dev/mqueue is missing"
        );
        fs::remove_dir_all(&root).unwrap();
        assert!(
            check(&root)
                .unwrap_err()
                .starts_with("the rootfs is missing")
        );
    }

    #[test]
    fn symlink_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        symlink("sys", dir.path().join("proc")).unwrap();
        symlink("proc", dir.path().join("sys")).unwrap();
        let err = create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("too many levels of symbolic links"), "{err}");
    }
}
