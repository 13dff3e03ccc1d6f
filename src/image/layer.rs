//! Applying one image layer (a tar stream) to a rootfs directory, as container runtimes do.
//!
//! The traps handled here, each with a test:
//! - whiteouts: `.wh.<name>` deletes `<name>` from lower layers; `.wh..wh..opq` empties a directory of
//!   its lower-layer contents but keeps what the same layer adds;
//! - an entry replacing one of another type (file over dir, dir over symlink) removes the old one;
//! - hardlinks may point at files of lower layers;
//! - directories that are not writable (0555) are made writable while unpacking and get their mode
//!   at the end (`finish`);
//! - setuid/setgid bits survive `chown` (which clears them) because the mode is set after it;
//! - nothing is ever written outside the root: entries with `..` or an absolute path, hardlinks to
//!   such paths, and entries whose parent is a symlink that points outside the root (or is absolute)
//!   are rejected, and the image with them.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use filetime::FileTime;
use tar::EntryType;

/// Why a layer could not be applied. `path` is the entry's path inside the layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("entry `{path}` would be written outside the image root ({reason})")]
    Escape { path: String, reason: &'static str },
    #[error("entry `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the layer archive: {0}")]
    Archive(#[source] io::Error),
}

/// How much of a tar entry's metadata this process can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Root: owners, device nodes and all xattrs are kept.
    Root,
    /// Anyone else: files are owned by the caller; device nodes and privileged xattrs are skipped.
    Unprivileged,
}

impl Privilege {
    pub fn current() -> Privilege {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            Privilege::Root
        } else {
            Privilege::Unprivileged
        }
    }
}

/// Applies layers to one rootfs; directory modes and times are set in `finish`, after all layers.
pub struct Unpacker {
    root: PathBuf,
    privilege: Privilege,
    /// Directories whose final mode/mtime must be applied last (they may be read-only).
    directories: Vec<(PathBuf, u32, FileTime)>,
}

impl Unpacker {
    pub fn new(root: &Path, privilege: Privilege) -> Unpacker {
        Unpacker {
            root: root.to_path_buf(),
            privilege,
            directories: Vec::new(),
        }
    }

    /// Applies one layer (an uncompressed tar stream) on top of what is already unpacked.
    pub fn apply(&mut self, tar: impl Read) -> Result<(), LayerError> {
        let mut archive = tar::Archive::new(tar);
        // Paths created by this layer: an opaque marker must not delete them.
        let mut created: HashSet<PathBuf> = HashSet::new();
        for entry in archive.entries().map_err(LayerError::Archive)? {
            let mut entry = entry.map_err(LayerError::Archive)?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let relative = contained(&raw).map_err(|reason| LayerError::Escape {
                path: shown.clone(),
                reason,
            })?;
            let Some(name) = relative.file_name().map(OsStr::to_owned) else {
                continue; // the root itself (`./`)
            };
            let parent_rel = relative.parent().unwrap_or(Path::new("")).to_path_buf();
            let io_err = |source: io::Error| LayerError::Io {
                path: shown.clone(),
                source,
            };
            let parent = self
                .resolve_parent(&parent_rel)
                .map_err(|e| e.for_entry(&shown))?;

            let name_bytes = name.as_bytes();
            if name_bytes == b".wh..wh..opq" {
                self.make_opaque(&parent, &created).map_err(io_err)?;
                continue;
            }
            if let Some(target) = name_bytes.strip_prefix(b".wh.") {
                remove_any(&parent.join(OsStr::from_bytes(target))).map_err(io_err)?;
                continue;
            }

            let dest = parent.join(&name);
            created.insert(dest.clone());
            let header = entry.header().clone();
            let mode = header.mode().map_err(io_err)? & 0o7777;
            let mtime = FileTime::from_unix_time(header.mtime().unwrap_or(0) as i64, 0);
            match header.entry_type() {
                EntryType::Directory => {
                    match fs::symlink_metadata(&dest) {
                        Ok(meta) if meta.is_dir() => {}
                        Ok(_) => {
                            remove_any(&dest).map_err(io_err)?;
                            create_dir(&dest).map_err(io_err)?;
                        }
                        Err(_) => create_dir(&dest).map_err(io_err)?,
                    }
                    self.chown(&dest, &header).map_err(io_err)?;
                    self.xattrs(&mut entry, &dest);
                    self.directories.push((dest, mode, mtime));
                }
                EntryType::Regular | EntryType::Continuous => {
                    remove_any(&dest).map_err(io_err)?;
                    let mut file = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&dest)
                        .map_err(io_err)?;
                    io::copy(&mut entry, &mut file).map_err(io_err)?;
                    drop(file);
                    self.chown(&dest, &header).map_err(io_err)?;
                    self.xattrs(&mut entry, &dest);
                    fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(io_err)?;
                    filetime::set_file_times(&dest, mtime, mtime).map_err(io_err)?;
                }
                EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| io_err(invalid("symlink without target")))?;
                    remove_any(&dest).map_err(io_err)?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dest)
                        .map_err(io_err)?;
                    self.lchown(&dest, &header).map_err(io_err)?;
                    filetime::set_symlink_file_times(&dest, mtime, mtime).map_err(io_err)?;
                }
                EntryType::Link => {
                    let target_raw = entry
                        .link_name_bytes()
                        .ok_or_else(|| io_err(invalid("hardlink without target")))?;
                    let target_rel =
                        contained(&target_raw).map_err(|reason| LayerError::Escape {
                            path: shown.clone(),
                            reason,
                        })?;
                    let target_parent = self
                        .resolve_parent(target_rel.parent().unwrap_or(Path::new("")))
                        .map_err(|e| e.for_entry(&shown))?;
                    let target = target_parent.join(target_rel.file_name().unwrap_or_default());
                    if target == dest {
                        continue;
                    }
                    remove_any(&dest).map_err(io_err)?;
                    fs::hard_link(&target, &dest).map_err(io_err)?;
                }
                EntryType::Char | EntryType::Block | EntryType::Fifo => {
                    if self.privilege == Privilege::Root || header.entry_type() == EntryType::Fifo {
                        remove_any(&dest).map_err(io_err)?;
                        make_node(&dest, &header, mode).map_err(io_err)?;
                        self.chown(&dest, &header).map_err(io_err)?;
                    } else {
                        tracing::debug!(path = %shown, "skipping a device node (needs root)");
                    }
                }
                // PAX/GNU headers are consumed by the tar crate; anything else is not a file.
                other => tracing::debug!(path = %shown, ?other, "skipping tar entry type"),
            }
        }
        Ok(())
    }

    /// Sets directory modes and times, deepest first, once every layer is applied.
    pub fn finish(mut self) -> Result<(), LayerError> {
        self.directories
            .sort_by_key(|(path, _, _)| std::cmp::Reverse(path.components().count()));
        for (path, mode, mtime) in &self.directories {
            if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
                let shown = path.display().to_string();
                let io_err = |source| LayerError::Io {
                    path: shown.clone(),
                    source,
                };
                fs::set_permissions(path, fs::Permissions::from_mode(*mode)).map_err(io_err)?;
                filetime::set_file_times(path, *mtime, *mtime).map_err(io_err)?;
            }
        }
        Ok(())
    }

    /// Resolves the parent directory of an entry inside the root, following symlinks only while
    /// they stay inside the root, and creating missing directories.
    fn resolve_parent(&self, relative: &Path) -> Result<PathBuf, Resolve> {
        let mut current = self.root.clone();
        let mut depth = 0usize;
        let mut pending: Vec<PathBuf> = relative
            .components()
            .rev()
            .map(|c| PathBuf::from(c.as_os_str()))
            .collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part.as_os_str() == ".." {
                if depth == 0 {
                    return Err(Resolve::Escape("a symlink leads above the root"));
                }
                current.pop();
                depth -= 1;
                continue;
            }
            let next = current.join(&part);
            match fs::symlink_metadata(&next) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return Err(Resolve::Io(io::Error::other(
                            "too many levels of symbolic links",
                        )));
                    }
                    let target = fs::read_link(&next).map_err(Resolve::Io)?;
                    if target.is_absolute() {
                        return Err(Resolve::Escape("a parent directory is an absolute symlink"));
                    }
                    for component in target.components().rev() {
                        match component {
                            Component::Normal(p) => pending.push(PathBuf::from(p)),
                            Component::ParentDir => pending.push(PathBuf::from("..")),
                            _ => {}
                        }
                    }
                }
                Ok(meta) if meta.is_dir() => {
                    current = next;
                    depth += 1;
                }
                Ok(_) => {
                    remove_any(&next).map_err(Resolve::Io)?;
                    create_dir(&next).map_err(Resolve::Io)?;
                    current = next;
                    depth += 1;
                }
                Err(_) => {
                    create_dir(&next).map_err(Resolve::Io)?;
                    current = next;
                    depth += 1;
                }
            }
        }
        Ok(current)
    }

    /// `.wh..wh..opq`: remove what lower layers put in `dir`, keep what this layer created.
    fn make_opaque(&self, dir: &Path, created: &HashSet<PathBuf>) -> io::Result<()> {
        for child in fs::read_dir(dir)? {
            let path = child?.path();
            if !created.contains(&path) {
                remove_any(&path)?;
            }
        }
        Ok(())
    }

    fn chown(&self, path: &Path, header: &tar::Header) -> io::Result<()> {
        if self.privilege != Privilege::Root {
            return Ok(());
        }
        let (uid, gid) = (header.uid()? as u32, header.gid()? as u32);
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    }

    fn lchown(&self, path: &Path, header: &tar::Header) -> io::Result<()> {
        if self.privilege != Privilege::Root {
            return Ok(());
        }
        let (uid, gid) = (header.uid()? as u32, header.gid()? as u32);
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
    }

    /// PAX `SCHILY.xattr.*` records. Failures (e.g. `security.*` without root) are logged, not fatal.
    fn xattrs<R: Read>(&self, entry: &mut tar::Entry<R>, path: &Path) {
        let Ok(Some(extensions)) = entry.pax_extensions() else {
            return;
        };
        for extension in extensions.flatten() {
            let Some(name) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            let name = OsStr::from_bytes(name);
            if let Err(err) = xattr::set(path, name, extension.value_bytes()) {
                tracing::debug!(path = %path.display(), ?name, %err, "cannot set xattr");
            }
        }
    }
}

enum Resolve {
    Escape(&'static str),
    Io(io::Error),
}

impl Resolve {
    /// The layer error for the entry at `path`.
    fn for_entry(self, path: &str) -> LayerError {
        match self {
            Resolve::Escape(reason) => LayerError::Escape {
                path: path.to_string(),
                reason,
            },
            Resolve::Io(source) => LayerError::Io {
                path: path.to_string(),
                source,
            },
        }
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// The entry path as a relative path without `.`; `..` and absolute paths are refused.
fn contained(raw: &[u8]) -> Result<PathBuf, &'static str> {
    let path = Path::new(OsStr::from_bytes(raw));
    if path.is_absolute() {
        return Err("absolute path");
    }
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("`..` in the path"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(out)
}

fn create_dir(path: &Path) -> io::Result<()> {
    // Owner-writable while unpacking; the final mode comes in `finish`.
    fs::DirBuilder::new().mode(0o755).create(path)
}

/// Removes whatever is at `path` (a directory recursively, even a read-only one).
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
        Ok(meta) if meta.is_dir() => remove_tree(path),
        Ok(_) => fs::remove_file(path),
    }
}

/// Removes a directory tree, first making read-only directories writable so that it can.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path)?;
            fs::remove_dir_all(path)
        }
    }
}

fn make_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    fs::set_permissions(
        dir,
        fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
    )?;
    for child in fs::read_dir(dir)? {
        let child = child?;
        if child.file_type()?.is_dir() {
            make_writable(&child.path())?;
        }
    }
    Ok(())
}

fn make_node(path: &Path, header: &tar::Header, mode: u32) -> io::Result<()> {
    use std::ffi::CString;
    let kind = match header.entry_type() {
        EntryType::Char => libc::S_IFCHR,
        EntryType::Block => libc::S_IFBLK,
        _ => libc::S_IFIFO,
    };
    let major = header.device_major()?.unwrap_or(0);
    let minor = header.device_minor()?.unwrap_or(0);
    let c_path =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| invalid("path contains NUL"))?;
    // SAFETY: `c_path` is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe { libc::mknod(c_path.as_ptr(), kind | mode, libc::makedev(major, minor)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
