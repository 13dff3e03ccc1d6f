//! Applying one image layer (a tar stream) to a rootfs directory, as container runtimes do.
//!
//! The traps handled here, each with a test:
//! - whiteouts: `.wh.<name>` deletes `<name>` from lower layers; `.wh..wh..opq` empties a directory of
//!   its lower-layer contents but keeps what the same layer adds; a whiteout that names no file
//!   (`.wh.`, `.wh..`, `.wh...`) is an error, never a deletion of the directory or its parent;
//! - an entry replacing one of another type (file over dir, dir over symlink) removes the old one;
//! - hardlinks may point at files of lower layers;
//! - directories that are not writable (0555) are made writable while unpacking and get their mode
//!   at the end (`finish`);
//! - nothing is ever written outside the root: entries with `..` or an absolute path, hardlinks to
//!   such paths, and entries whose parent is a symlink that points outside the root (or is absolute)
//!   are rejected, and the image with them;
//! - every byte of the uncompressed tar, and every entry, is charged to the image's [`Budget`], so
//!   a gzip bomb stops at the image limit.
//!
//! What the cache deliberately does not keep, because a cached rootfs lies on the host where any
//! process of the user (or, with a careless cache directory, of anyone) can reach it, while inside
//! the sandbox it would change nothing:
//! - setuid/setgid bits of files and `security.capability` xattrs: the sandbox runs with
//!   `no_new_privs`, under which `execve` grants neither; on the host they would be a root shell
//!   for whoever can reach the cache;
//! - device nodes: the sandbox mounts its own `/dev` with the standard nodes, and Lambda gives a
//!   function no others; on the host a device node from an image opens the host's device. They
//!   are skipped (as lamina always did without root, so both modes unpack the same tree), and
//!   their device numbers, which some tar writers leave NUL-filled, are never read. FIFOs are kept.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::hash::BuildHasher;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use filetime::FileTime;
use tar::EntryType;

use super::limits::{Budget, Exceeded, Limits, Metered};

/// Why a layer could not be applied. `path` is the entry's path inside the layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("entry `{path}` would be written outside the image root ({reason})")]
    Escape { path: String, reason: &'static str },
    #[error("entry `{path}` is not a valid whiteout: {reason}")]
    Whiteout { path: String, reason: &'static str },
    #[error("{limit}; stopped at entry `{path}`")]
    Limit { path: String, limit: Exceeded },
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
    /// Root: owners and all xattrs are kept.
    Root,
    /// Anyone else: files are owned by the caller; privileged xattrs are skipped.
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

/// A directory's mode and mtime from its tar entry, applied by `finish`.
struct DirRecord {
    /// Relative to the root.
    path: Box<[u8]>,
    mtime: i64,
    mode: u32,
    depth: u16,
}

impl DirRecord {
    fn new(relative: &Path, mode: u32, mtime: i64) -> DirRecord {
        let path: Box<[u8]> = relative.as_os_str().as_bytes().into();
        let depth = path.iter().filter(|b| **b == b'/').count() + 1;
        DirRecord {
            path,
            mtime,
            mode,
            depth: u16::try_from(depth).unwrap_or(u16::MAX),
        }
    }

    /// The memory it takes: the record, its path and the allocator's share.
    fn cost(&self) -> u64 {
        (std::mem::size_of::<DirRecord>() + 16 + self.path.len()) as u64
    }
}

/// What a `.wh.`-prefixed name asks for.
#[derive(Debug, PartialEq, Eq)]
enum Whiteout<'a> {
    /// `.wh..wh..opq`: the directory hides what lower layers put in it.
    Opaque,
    /// `.wh.<name>`: `<name>` of lower layers is deleted.
    Remove(&'a [u8]),
    /// Other `.wh..wh.*` names are AUFS bookkeeping (`.wh..wh.plnk`); skipped, as containerd does.
    Ignore,
}

/// The whiteout `name` (an entry's last path component) stands for, `None` for an ordinary name.
fn whiteout(name: &[u8]) -> Result<Option<Whiteout<'_>>, &'static str> {
    let Some(target) = name.strip_prefix(b".wh.") else {
        return Ok(None);
    };
    match target {
        b".wh..opq" => Ok(Some(Whiteout::Opaque)),
        _ if target.starts_with(b".wh.") => Ok(Some(Whiteout::Ignore)),
        b"" => Err("`.wh.` names no file"),
        b"." => Err("`.wh..` names the directory itself"),
        b".." => Err("`.wh...` names the parent directory"),
        _ => Ok(Some(Whiteout::Remove(target))),
    }
}

/// Applies layers to one rootfs; directory modes and times are set in `finish`, after all layers.
pub struct Unpacker {
    root: PathBuf,
    privilege: Privilege,
    budget: Rc<Budget>,
    /// Directories whose final mode/mtime must be applied last (they may be read-only).
    directories: Vec<DirRecord>,
    /// Device nodes skipped (hashes of their paths), so that hardlinks to them are skipped too.
    skipped_devices: HashSet<u64>,
    /// Hashes paths for the sets above: 8 bytes an entry instead of the path, with keys of this
    /// process so no layer can be made to collide on purpose.
    hasher: std::collections::hash_map::RandomState,
    /// The entry being applied, for a limit's message.
    current: String,
}

impl Unpacker {
    pub fn new(root: &Path, privilege: Privilege, limits: Limits) -> Unpacker {
        Unpacker {
            root: root.to_path_buf(),
            privilege,
            budget: Budget::new(limits),
            directories: Vec::new(),
            skipped_devices: HashSet::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            current: String::new(),
        }
    }

    /// Bytes of uncompressed layers read so far.
    pub fn unpacked_bytes(&self) -> u64 {
        self.budget.bytes()
    }

    /// Applies one layer (an uncompressed tar stream) on top of what is already unpacked.
    pub fn apply(&mut self, tar: impl Read) -> Result<(), LayerError> {
        let result = self.apply_entries(Metered::new(tar, self.budget.clone()));
        // Whatever the tar parser made of a limit's read error, the limit is what happened.
        match self.budget.exceeded() {
            Some(limit) => Err(LayerError::Limit {
                path: self.current.clone(),
                limit,
            }),
            None => result,
        }
    }

    fn apply_entries(&mut self, tar: impl Read) -> Result<(), LayerError> {
        let mut archive = tar::Archive::new(tar);
        // Paths created by this layer: an opaque marker must not delete them.
        let mut created: HashSet<u64> = HashSet::new();
        for entry in archive.entries().map_err(LayerError::Archive)? {
            let mut entry = entry.map_err(LayerError::Archive)?;
            self.budget.content_started();
            let raw = entry.path_bytes().into_owned();
            self.current = String::from_utf8_lossy(&raw).into_owned();
            self.entry(&mut entry, &raw, &mut created)?;
            // Whatever the entry's content was not used for is read here, so the reads of the tar
            // parser between two entries are headers only (see `Budget`).
            io::copy(&mut entry, &mut io::sink()).map_err(LayerError::Archive)?;
            self.budget.content_done();
        }
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        raw: &[u8],
        created: &mut HashSet<u64>,
    ) -> Result<(), LayerError> {
        let shown = self.current.clone();
        let relative = contained(raw).map_err(|reason| LayerError::Escape {
            path: shown.clone(),
            reason,
        })?;
        let Some(name) = relative.file_name().map(OsStr::to_owned) else {
            return Ok(()); // the root itself (`./`)
        };
        let limit = |limit| LayerError::Limit {
            path: shown.clone(),
            limit,
        };
        self.budget.charge_entry().map_err(limit)?;
        let parent_rel = relative.parent().unwrap_or(Path::new("")).to_path_buf();
        let io_err = |source: io::Error| LayerError::Io {
            path: shown.clone(),
            source,
        };
        let parent = self
            .resolve_parent(&parent_rel)
            .map_err(|e| e.for_entry(&shown))?;

        match whiteout(name.as_bytes()).map_err(|reason| LayerError::Whiteout {
            path: shown.clone(),
            reason,
        })? {
            Some(Whiteout::Opaque) => {
                let keep = |path: &Path| created.contains(&self.key(path));
                return make_opaque(&self.root, &parent, &keep).map_err(io_err);
            }
            Some(Whiteout::Remove(target)) => {
                return remove_any(&parent.join(OsStr::from_bytes(target))).map_err(io_err);
            }
            Some(Whiteout::Ignore) => return Ok(()),
            None => {}
        }

        let dest = parent.join(&name);
        let dest_rel = dest.strip_prefix(&self.root).unwrap_or(&dest).to_path_buf();
        created.insert(self.key(&dest_rel));
        let header = entry.header().clone();
        let mode = header.mode().map_err(io_err)? & 0o7777;
        let mtime = header.mtime().unwrap_or(0) as i64;
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
                self.xattrs(entry, &dest);
                let record = DirRecord::new(&dest_rel, mode, mtime);
                self.budget.charge_memory(record.cost()).map_err(limit)?;
                self.directories.push(record);
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
                io::copy(entry, &mut file).map_err(io_err)?;
                drop(file);
                self.chown(&dest, &header).map_err(io_err)?;
                self.xattrs(entry, &dest);
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode & !SET_ID))
                    .map_err(io_err)?;
                let mtime = FileTime::from_unix_time(mtime, 0);
                filetime::set_file_times(&dest, mtime, mtime).map_err(io_err)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| io_err(invalid("symlink without target")))?;
                remove_any(&dest).map_err(io_err)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dest).map_err(io_err)?;
                self.lchown(&dest, &header).map_err(io_err)?;
                let mtime = FileTime::from_unix_time(mtime, 0);
                filetime::set_symlink_file_times(&dest, mtime, mtime).map_err(io_err)?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| io_err(invalid("hardlink without target")))?;
                let target_rel = contained(&target_raw).map_err(|reason| LayerError::Escape {
                    path: shown.clone(),
                    reason,
                })?;
                let target_parent = self
                    .resolve_parent(target_rel.parent().unwrap_or(Path::new("")))
                    .map_err(|e| e.for_entry(&shown))?;
                let target = target_parent.join(target_rel.file_name().unwrap_or_default());
                if target == dest {
                    return Ok(());
                }
                let target_key = self.key(target.strip_prefix(&self.root).unwrap_or(&target));
                if self.skipped_devices.contains(&target_key)
                    && fs::symlink_metadata(&target).is_err()
                {
                    tracing::debug!(path = %shown, "skipping a hardlink to a device node");
                    return Ok(());
                }
                remove_any(&dest).map_err(io_err)?;
                fs::hard_link(&target, &dest).map_err(io_err)?;
            }
            EntryType::Fifo => {
                remove_any(&dest).map_err(io_err)?;
                make_fifo(&dest, mode).map_err(io_err)?;
                self.chown(&dest, &header).map_err(io_err)?;
            }
            EntryType::Char | EntryType::Block => {
                tracing::debug!(path = %shown, "skipping a device node");
                remove_any(&dest).map_err(io_err)?;
                let key = self.key(&dest_rel);
                self.skipped_devices.insert(key);
            }
            // PAX/GNU headers are consumed by the tar crate; anything else is not a file.
            other => tracing::debug!(path = %shown, ?other, "skipping tar entry type"),
        }
        Ok(())
    }

    fn key(&self, relative: &Path) -> u64 {
        self.hasher.hash_one(relative.as_os_str().as_bytes())
    }

    /// Sets directory modes and times, deepest first, once every layer is applied.
    pub fn finish(mut self) -> Result<(), LayerError> {
        // Stable: of two records of one directory (two layers), the later one is applied last.
        self.directories
            .sort_by_key(|record| std::cmp::Reverse(record.depth));
        for record in &self.directories {
            let path = self.root.join(OsStr::from_bytes(&record.path));
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                let shown = path.display().to_string();
                let io_err = |source| LayerError::Io {
                    path: shown.clone(),
                    source,
                };
                fs::set_permissions(&path, fs::Permissions::from_mode(record.mode))
                    .map_err(io_err)?;
                let mtime = FileTime::from_unix_time(record.mtime, 0);
                filetime::set_file_times(&path, mtime, mtime).map_err(io_err)?;
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
                found => {
                    // A directory the layer did not list: it counts as an entry too.
                    self.budget.charge_entry().map_err(Resolve::Limit)?;
                    if found.is_ok() {
                        remove_any(&next).map_err(Resolve::Io)?;
                    }
                    create_dir(&next).map_err(Resolve::Io)?;
                    current = next;
                    depth += 1;
                }
            }
        }
        Ok(current)
    }

    fn chown(&self, path: &Path, header: &tar::Header) -> io::Result<()> {
        if self.privilege != Privilege::Root {
            return Ok(());
        }
        let (uid, gid) = owner(header)?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    }

    fn lchown(&self, path: &Path, header: &tar::Header) -> io::Result<()> {
        if self.privilege != Privilege::Root {
            return Ok(());
        }
        let (uid, gid) = owner(header)?;
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
    }

    /// PAX `SCHILY.xattr.*` records, but `security.capability`. Failures (e.g. `security.*` without root) are logged, not fatal.
    fn xattrs<R: Read>(&self, entry: &mut tar::Entry<R>, path: &Path) {
        let Ok(Some(extensions)) = entry.pax_extensions() else {
            return;
        };
        for extension in extensions.flatten() {
            let Some(name) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            // File capabilities, like setuid bits, grant nothing under no_new_privs and would
            // grant them on the host (see the module docs).
            if name == b"security.capability" {
                continue;
            }
            let name = OsStr::from_bytes(name);
            if let Err(err) = xattr::set(path, name, extension.value_bytes()) {
                tracing::debug!(path = %path.display(), ?name, %err, "cannot set xattr");
            }
        }
    }
}

enum Resolve {
    Escape(&'static str),
    Limit(Exceeded),
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
            Resolve::Limit(limit) => LayerError::Limit {
                path: path.to_string(),
                limit,
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

/// The entry's uid and gid; a field left empty (NUL-filled, as some writers leave the fields they
/// have no value for) is 0, as GNU tar reads it.
fn owner(header: &tar::Header) -> io::Result<(u32, u32)> {
    let old = header.as_old();
    let empty = |field: &[u8]| field.iter().all(|b| *b == 0 || *b == b' ');
    let uid = if empty(&old.uid) { 0 } else { header.uid()? };
    let gid = if empty(&old.gid) { 0 } else { header.gid()? };
    Ok((uid as u32, gid as u32))
}

/// `.wh..wh..opq`: removes what lower layers put in `dir`, keeping what `keep` (given the path
/// relative to `root`) says this layer created.
fn make_opaque(root: &Path, dir: &Path, keep: &dyn Fn(&Path) -> bool) -> io::Result<()> {
    for child in fs::read_dir(dir)? {
        let path = child?.path();
        if !keep(path.strip_prefix(root).unwrap_or(&path)) {
            remove_any(&path)?;
        }
    }
    Ok(())
}

/// The setuid and setgid bits, which the cache never keeps on files (see the module docs).
const SET_ID: u32 = 0o6000;

fn make_fifo(path: &Path, mode: u32) -> io::Result<()> {
    use std::ffi::CString;
    let c_path =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| invalid("path contains NUL"))?;
    // SAFETY: `c_path` is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), (mode & !SET_ID) as libc::mode_t) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    /// A tar archive written entry by entry.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }

        fn header(path: &str, kind: EntryType, mode: u32, size: u64) -> tar::Header {
            let mut header = tar::Header::new_ustar();
            header.set_path(path).unwrap();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(size);
            header.set_mtime(1_700_000_000);
            header.set_cksum();
            header
        }

        fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Tar {
            let header = Tar::header(path, EntryType::Regular, mode, data.len() as u64);
            self.0.append(&header, data).unwrap();
            self
        }

        fn dir(mut self, path: &str) -> Tar {
            let header = Tar::header(path, EntryType::Directory, 0o755, 0);
            self.0.append(&header, io::empty()).unwrap();
            self
        }

        /// An entry whose device-number fields are NUL-filled, as Python's `tarfile` writes them
        /// for FIFOs (and a careless writer for devices).
        fn nul_numbers(mut self, path: &str, kind: EntryType) -> Tar {
            let mut header = Tar::header(path, kind, 0o644, 0);
            let ustar = header.as_ustar_mut().unwrap();
            ustar.dev_major = [0; 8];
            ustar.dev_minor = [0; 8];
            header.set_cksum();
            assert!(header.device_major().is_err(), "the fields are not numbers");
            self.0.append(&header, io::empty()).unwrap();
            self
        }

        fn raw(mut self, header: &tar::Header, data: impl Read) -> Tar {
            self.0.append(header, data).unwrap();
            self
        }

        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn unpack(root: &Path, layers: &[Vec<u8>], limits: Limits) -> Result<(), LayerError> {
        let mut unpacker = Unpacker::new(root, Privilege::current(), limits);
        for layer in layers {
            unpacker.apply(&layer[..])?;
        }
        unpacker.finish()
    }

    fn rootfs() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        (dir, root)
    }

    #[test]
    fn whiteout_names() {
        assert_eq!(whiteout(b"file"), Ok(None));
        assert_eq!(whiteout(b".wh.file"), Ok(Some(Whiteout::Remove(b"file"))));
        assert_eq!(
            whiteout(b".wh..hidden"),
            Ok(Some(Whiteout::Remove(b".hidden")))
        );
        assert_eq!(whiteout(b".wh..wh..opq"), Ok(Some(Whiteout::Opaque)));
        assert_eq!(whiteout(b".wh..wh.plnk"), Ok(Some(Whiteout::Ignore)));
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            assert!(whiteout(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn whiteouts_that_name_no_file_are_errors_and_delete_nothing() {
        for path in [".wh..", "etc/.wh..", ".wh.", "etc/.wh...", "./etc/.wh.."] {
            let (dir, root) = rootfs();
            let lower = Tar::new().dir("etc").file("etc/passwd", 0o644, b"root\n");
            let upper = Tar::new().file(path, 0o644, b"");
            let err = unpack(&root, &[lower.bytes(), upper.bytes()], Limits::default())
                .unwrap_err()
                .to_string();
            let shown = path.trim_start_matches("./");
            assert!(
                err.starts_with(&format!("entry `{shown}` is not a valid whiteout: `.wh.")),
                "{path}: {err}"
            );
            assert!(root.join("etc/passwd").is_file(), "{path} deleted files");
            assert!(dir.path().exists());
        }
        // A real name is still deleted.
        let (_dir, root) = rootfs();
        let lower = Tar::new().dir("etc").file("etc/passwd", 0o644, b"root\n");
        let upper = Tar::new().file("etc/.wh.passwd", 0o644, b"");
        unpack(&root, &[lower.bytes(), upper.bytes()], Limits::default()).unwrap();
        assert!(!root.join("etc/passwd").exists() && root.join("etc").is_dir());
    }

    #[test]
    fn fifos_and_devices_with_nul_number_fields() {
        let (_dir, root) = rootfs();
        let layer = Tar::new()
            .dir("dev")
            .nul_numbers("pipe", EntryType::Fifo)
            .nul_numbers("dev/null", EntryType::Char)
            .nul_numbers("dev/sda", EntryType::Block)
            .raw(
                &{
                    let mut link = Tar::header("null-again", EntryType::Link, 0o644, 0);
                    link.set_link_name("dev/null").unwrap();
                    link.set_cksum();
                    link
                },
                io::empty(),
            )
            .file("after", 0o644, b"still unpacked\n");
        unpack(&root, &[layer.bytes()], Limits::default()).unwrap();
        assert!(
            fs::symlink_metadata(root.join("pipe"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        // Devices are not made (the sandbox has its own /dev), nor hardlinks to them.
        for skipped in ["dev/null", "dev/sda", "null-again"] {
            assert!(
                fs::symlink_metadata(root.join(skipped)).is_err(),
                "{skipped}"
            );
        }
        assert_eq!(
            fs::read_to_string(root.join("after")).unwrap(),
            "still unpacked\n"
        );
    }

    #[test]
    fn setuid_bits_and_file_capabilities_are_not_kept() {
        let (_dir, root) = rootfs();
        let mut capability = Tar::header("cap", EntryType::Regular, 0o755, 1);
        let mut pax = tar::Builder::new(Vec::new());
        pax.append_pax_extensions([
            ("SCHILY.xattr.security.capability", &b"\x01\x00\x00\x02"[..]),
            ("SCHILY.xattr.user.kept", &b"yes"[..]),
        ])
        .unwrap();
        pax.append(&capability, &b"x"[..]).unwrap();
        capability.set_cksum();
        let with_xattrs = pax.into_inner().unwrap();
        let layer = Tar::new()
            .file("suid", 0o4755, b"#!/bin/sh\n")
            .file("sgid", 0o2755, b"#!/bin/sh\n")
            .dir("shared");
        let mut shared = Tar::header("shared", EntryType::Directory, 0o2775, 0);
        shared.set_cksum();
        let again = Tar::new().raw(&shared, io::empty());
        unpack(
            &root,
            &[layer.bytes(), again.bytes(), with_xattrs],
            Limits::default(),
        )
        .unwrap();
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("suid"), 0o755);
        assert_eq!(mode("sgid"), 0o755);
        assert_eq!(
            mode("shared"),
            0o2775,
            "a setgid directory only sets groups"
        );
        assert_eq!(
            xattr::get(root.join("cap"), "security.capability").unwrap(),
            None
        );
        // user.* xattrs need a file system that has them (tmpfs does since 6.6).
        if let Ok(Some(value)) = xattr::get(root.join("cap"), "user.kept") {
            assert_eq!(value, b"yes");
        }
    }

    #[test]
    fn a_layer_stops_at_the_image_limit() {
        let (_dir, root) = rootfs();
        let big = vec![0u8; 4 * 1024 * 1024];
        let layer = Tar::new()
            .file("small", 0o644, b"1")
            .file("big", 0o644, &big);
        let limits = Limits {
            max_image_bytes: 1024 * 1024,
            ..Limits::default()
        };
        let err = unpack(&root, &[layer.bytes()], limits).unwrap_err();
        assert!(
            matches!(
                err,
                LayerError::Limit {
                    limit: Exceeded::ImageBytes { limit: 1048576 },
                    ref path,
                } if path == "big"
            ),
            "{err}"
        );
        assert!(err.to_string().contains("LAMINA_MAX_IMAGE_BYTES"), "{err}");
        let written = fs::metadata(root.join("big")).map_or(0, |m| m.len());
        assert!(written <= 1024 * 1024, "{written} bytes written");
    }

    #[test]
    fn entries_and_tar_metadata_are_limited() {
        let (_dir, root) = rootfs();
        let mut layer = Tar::new();
        for i in 0..20 {
            layer = layer.file(&format!("f{i}"), 0o644, b"");
        }
        let limits = Limits {
            max_entries: 10,
            ..Limits::default()
        };
        let err = unpack(&root, &[layer.bytes()], limits).unwrap_err();
        assert!(
            matches!(
                err,
                LayerError::Limit {
                    limit: Exceeded::Entries { limit: 10 },
                    ..
                }
            ),
            "{err}"
        );
        // Directories made for an entry's path count too.
        let deep = Tar::new().file("a/b/c/d/e/f/g/h/i/j/k/l", 0o644, b"");
        assert!(unpack(&root, &[deep.bytes()], limits).is_err());

        // Directories with long names, each remembered until the last layer is applied.
        let (_dir, root) = rootfs();
        let names: Vec<String> = (0..100).map(|i| format!("{i:0>90}/")).collect();
        let layer = Tar::new();
        let layer = names.iter().fold(layer, |tar, name| tar.dir(name));
        let limits = Limits {
            max_tracked_bytes: 10_000,
            ..Limits::default()
        };
        let err = unpack(&root, &[layer.bytes()], limits).unwrap_err();
        assert!(
            matches!(
                err,
                LayerError::Limit {
                    limit: Exceeded::TrackedBytes { limit: 10_000 },
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("too long names"), "{err}");

        // A PAX header the tar crate would read into memory whole, however long.
        let (_dir, root) = rootfs();
        let pax = Tar::header(
            "././@PaxHeader",
            EntryType::XHeader,
            0o644,
            64 * 1024 * 1024,
        );
        let layer = Tar::new().raw(&pax, io::repeat(b'a').take(64 * 1024 * 1024));
        let err = unpack(&root, &[layer.bytes()], Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                LayerError::Limit {
                    limit: Exceeded::HeaderBytes { .. },
                    ..
                }
            ),
            "{err}"
        );
    }
}
