//! The function's files on the host, ready to mount: zip/jar code unpacked once into the cache
//! (keyed by the archive's sha256), inline code written once (keyed by its hash), and the local
//! layers merged once into one `/opt` directory (keyed by a fingerprint of their contents), so that
//! nothing is redone when only the function code changes.
//!
//! Everything is built in a staging directory and renamed into place, like the image cache.
//!
//! Lambda refuses a function whose code and layers unzip to more than 250 MB together
//! ([`limits::MAX_UNZIPPED_BYTES`]); lamina counts the bytes it writes while unzipping (a zip's
//! directory may lie about sizes) and stops at the limit, so a zip bomb fills neither the disk nor
//! the cache. Each entry's size is recorded next to it (`<entry>.size`), so a cached code entry
//! and a cached layers entry are checked together without walking them again.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::limits;
use crate::plan::InvokePlan;
use crate::template::Layer;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot unpack {}: {message}", .archive.display())]
    Zip { archive: PathBuf, message: String },
    #[error("Failed to extract file from the zip file {}: {message}", .archive.display())]
    Unsafe { archive: PathBuf, message: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{}: {} ({detail})", .path.display(), limits::UNZIPPED_TOO_LARGE)]
    TooLarge { path: PathBuf, detail: String },
}

/// Bytes unzipped (or copied) so far for one function, against [`limits::MAX_UNZIPPED_BYTES`].
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Counted before this step: the function's code, when its layers are merged.
    before: u64,
    used: u64,
}

impl Budget {
    /// A budget of which `before` bytes are already taken.
    pub fn new(before: u64) -> Budget {
        Budget { before, used: 0 }
    }

    /// What this step may still write.
    fn left(&self) -> u64 {
        limits::MAX_UNZIPPED_BYTES.saturating_sub(self.before + self.used)
    }

    /// Counts `bytes` written from `path`; refuses them past the limit.
    fn take(&mut self, bytes: u64, path: &Path) -> Result<(), ArtifactError> {
        self.used += bytes;
        if self.before + self.used > limits::MAX_UNZIPPED_BYTES {
            return Err(self.exceeded(path, "lamina stopped there"));
        }
        Ok(())
    }

    /// The error for `path`, with `how` it was found out.
    fn exceeded(&self, path: &Path, how: &str) -> ArtifactError {
        let detail = if self.before == 0 {
            format!("Lambda's limit for a function's code and layers, unzipped; {how}")
        } else {
            format!(
                "Lambda's limit for a function's code and layers together, and the code takes {} bytes; {how}",
                self.before
            )
        };
        ArtifactError::TooLarge {
            path: path.to_path_buf(),
            detail,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes sure `plan.code_path` exists (unpacking or writing it when it is a cache entry).
pub fn ensure_code(plan: &InvokePlan, inline: Option<&str>) -> Result<(), ArtifactError> {
    let Some(target) = &plan.code_path else {
        return Ok(());
    };
    if target.is_dir() {
        return Ok(());
    }
    if let Some(archive) = &plan.code_archive {
        tracing::info!("Decompressing {}", archive.display());
        let mut budget = Budget::new(0);
        publish(target, |staging| {
            unpack_zip(archive, staging, plan.mount_symlinks, &mut budget)
        })?;
        record_size(target, budget.used);
        return Ok(());
    }
    if let Some(source) = inline {
        let file = inline_file_name(plan.runtime.as_deref().unwrap_or_default())?;
        return publish(target, |staging| {
            let path = staging.join(file);
            std::fs::write(&path, source).map_err(io(&path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .map_err(io(&path))
        });
    }
    Ok(())
}

/// Lambda writes `InlineCode` to `index.py` or `index.js`, so handlers are `index.<function>`.
fn inline_file_name(runtime: &str) -> Result<&'static str, ArtifactError> {
    if runtime.starts_with("python") {
        Ok("index.py")
    } else if runtime.starts_with("nodejs") {
        Ok("index.js")
    } else {
        Err(ArtifactError::Unsupported(format!(
            "InlineCode works with python and nodejs runtimes only, not {runtime}"
        )))
    }
}

/// The merged `/opt` of the function's layers, later layers winning; `None` without layers.
/// `downloaded` has the directory of each ARN layer (see `remote_layers`).
pub fn ensure_layers(
    plan: &InvokePlan,
    cache_root: &Path,
    downloaded: &HashMap<String, PathBuf>,
) -> Result<Option<PathBuf>, ArtifactError> {
    if plan.layers.is_empty() {
        return Ok(None);
    }
    let mut fingerprint = Sha256::new();
    let mut sources = Vec::new();
    for layer in &plan.layers {
        let path = match layer {
            Layer::Local { path, .. } => path,
            Layer::Arn { arn, .. } => downloaded.get(arn).ok_or_else(|| {
                ArtifactError::Unsupported(format!("layer {arn} was not downloaded"))
            })?,
        };
        fingerprint.update(path.as_os_str().as_encoded_bytes());
        fingerprint.update(content_fingerprint(path)?);
        sources.push(path.clone());
    }
    let target = cache_root
        .join("layers-v1")
        .join(hex::encode(fingerprint.finalize()));
    // Lambda counts the code and the layers together. A code directory (not a zip) is not
    // unpacked by lamina and not counted.
    let code = match (&plan.code_archive, &plan.code_path) {
        (Some(_), Some(code)) if code.is_dir() => entry_size(code)?,
        _ => 0,
    };
    if target.is_dir() {
        let layers = entry_size(&target)?;
        if code + layers > limits::MAX_UNZIPPED_BYTES {
            return Err(ArtifactError::TooLarge {
                path: sources.last().cloned().unwrap_or_default(),
                detail: format!(
                    "Lambda's limit for a function's code and layers together, and the code takes {code} bytes; the layers take {layers} bytes"
                ),
            });
        }
        return Ok(Some(target));
    }
    let mut budget = Budget::new(code);
    publish(&target, |staging| {
        for source in &sources {
            if source.is_dir() {
                copy_tree(source, staging, &mut budget)?;
            } else {
                unpack_zip(source, staging, plan.mount_symlinks, &mut budget)?;
            }
        }
        Ok(())
    })?;
    record_size(&target, budget.used);
    Ok(Some(target))
}

/// Where the unzipped size of a cache entry is recorded: beside it, not in it (it is mounted).
fn size_file(entry: &Path) -> PathBuf {
    let mut name = entry.as_os_str().to_owned();
    name.push(".size");
    PathBuf::from(name)
}

/// Records an entry's size. Best effort: without it the size is measured (`entry_size`).
fn record_size(entry: &Path, size: u64) {
    if let Err(err) = std::fs::write(size_file(entry), size.to_string()) {
        tracing::debug!(?err, "cannot record the size of {}", entry.display());
    }
}

/// The bytes of the files (and symlinks) in a cache entry: recorded, or measured once and recorded.
fn entry_size(entry: &Path) -> Result<u64, ArtifactError> {
    if let Some(size) = std::fs::read_to_string(size_file(entry))
        .ok()
        .and_then(|text| text.trim().parse().ok())
    {
        return Ok(size);
    }
    let mut size = 0;
    let mut pending = vec![entry.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for child in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let child = child.map_err(io(&dir))?;
            let meta = std::fs::symlink_metadata(child.path()).map_err(io(&child.path()))?;
            if meta.is_dir() {
                pending.push(child.path());
            } else {
                size += meta.len();
            }
        }
    }
    record_size(entry, size);
    Ok(size)
}

/// A cheap fingerprint of a layer's content: each file's path, size, mode and mtime (a zip: its bytes).
fn content_fingerprint(path: &Path) -> Result<Vec<u8>, ArtifactError> {
    let mut hasher = Sha256::new();
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.is_file() {
        let mut file = std::fs::File::open(path).map_err(io(path))?;
        std::io::copy(&mut file, &mut hasher).map_err(io(path))?;
        return Ok(hasher.finalize().to_vec());
    }
    let mut stack = vec![path.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let meta = std::fs::symlink_metadata(entry.path()).map_err(io(&entry.path()))?;
            if meta.is_dir() {
                stack.push(entry.path());
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            entries.push(format!(
                "{}\0{}\0{:o}\0{}",
                entry
                    .path()
                    .strip_prefix(path)
                    .unwrap_or(&entry.path())
                    .display(),
                meta.len(),
                meta.permissions().mode(),
                modified.as_nanos()
            ));
        }
    }
    entries.sort();
    for entry in entries {
        hasher.update(entry.as_bytes());
        hasher.update(b"\n");
    }
    Ok(hasher.finalize().to_vec())
}

/// Builds `target` in a sibling staging directory with `fill`, then renames it into place (another
/// process that got there first wins).
fn publish(
    target: &Path,
    fill: impl FnOnce(&Path) -> Result<(), ArtifactError>,
) -> Result<(), ArtifactError> {
    let parent = target.parent().expect("cache entries have a parent");
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(io(staging.path()))?;
    fill(staging.path())?;
    let staged = staging.keep();
    if let Err(err) = std::fs::rename(&staged, target) {
        let _ = crate::image::layer::remove_tree(&staged);
        if !target.is_dir() {
            return Err(ArtifactError::Io {
                path: target.to_path_buf(),
                source: err,
            });
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path, budget: &mut Budget) -> Result<(), ArtifactError> {
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io(&source))?;
        if kind.is_dir() {
            // A symlink left by an earlier layer is replaced, never followed out of the tree.
            let dest_is_dir = std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir());
            if !dest_is_dir {
                let _ = crate::image::layer::remove_any(&dest);
                std::fs::create_dir(&dest).map_err(io(&dest))?;
            }
            copy_tree(&source, &dest, budget)?;
            let mode = std::fs::metadata(&source)
                .map_err(io(&source))?
                .permissions()
                .mode();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode | 0o700))
                .map_err(io(&dest))?;
        } else if kind.is_symlink() {
            let _ = crate::image::layer::remove_any(&dest);
            let target = std::fs::read_link(&source).map_err(io(&source))?;
            budget.take(target.as_os_str().len() as u64, &source)?;
            std::os::unix::fs::symlink(target, &dest).map_err(io(&dest))?;
        } else {
            let _ = crate::image::layer::remove_any(&dest);
            // Checked before copying, so nothing past the limit is written.
            let len = std::fs::metadata(&source).map_err(io(&source))?.len();
            if len > budget.left() {
                return Err(budget.exceeded(&source, &format!("the file is {len} bytes")));
            }
            let copied = std::fs::copy(&source, &dest).map_err(io(&dest))?;
            budget.take(copied, &source)?;
            // No setuid/setgid/sticky bits in a cache other users may read.
            let mode = std::fs::metadata(&dest)
                .map_err(io(&dest))?
                .permissions()
                .mode();
            if mode & 0o7000 != 0 {
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode & 0o777))
                    .map_err(io(&dest))?;
            }
        }
    }
    Ok(())
}

/// The longest symlink target Linux takes (`PATH_MAX`); a longer "target" is refused unread.
const MAX_SYMLINK_TARGET: u64 = 4096;

/// Unpacks a zip (or jar) keeping modes and symlinks. Entries whose name leaves the directory are
/// refused (zip-slip); so are symlinks with absolute targets or targets outside it, unless
/// `--mount-symlinks` allows them (as SAM). What is written counts against `budget`: a zip whose
/// directory declares too much is refused before anything is written, one whose data turns out
/// bigger than declared is stopped at the limit.
pub fn unpack_zip(
    archive: &Path,
    dest: &Path,
    allow_outside_symlinks: bool,
    budget: &mut Budget,
) -> Result<(), ArtifactError> {
    let zip_error = |message: String| ArtifactError::Zip {
        archive: archive.to_path_buf(),
        message,
    };
    let unsafe_entry = |message: String| ArtifactError::Unsafe {
        archive: archive.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| zip_error(e.to_string()))?;
    let mut declared = 0u64;
    for index in 0..zip.len() {
        let entry = zip
            .by_index_raw(index)
            .map_err(|e| zip_error(e.to_string()))?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > budget.left() {
        return Err(budget.exceeded(archive, &format!("the zip says it holds {declared} bytes")));
    }
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(|e| zip_error(e.to_string()))?;
        let raw_name = entry.name().map(|n| n.to_string()).unwrap_or_default();
        let Some(relative) = entry.enclosed_name() else {
            return Err(unsafe_entry(format!(
                "the entry `{raw_name}` would be written outside the extraction directory"
            )));
        };
        // An entry may not be written through a symlink an earlier entry made (`a -> ..`, then
        // `a/x`): the names alone would look harmless.
        if let Some(link) = symlink_ancestor(dest, &relative) {
            return Err(unsafe_entry(format!(
                "the entry `{raw_name}` would be written through the symlink `{}`",
                link.display()
            )));
        }
        let path = dest.join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(io(&path))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        if entry.is_symlink() {
            let mut target = String::new();
            (&mut entry)
                .take(MAX_SYMLINK_TARGET + 1)
                .read_to_string(&mut target)
                .map_err(|e| zip_error(e.to_string()))?;
            if target.len() as u64 > MAX_SYMLINK_TARGET {
                return Err(unsafe_entry(format!(
                    "the symlink `{raw_name}` has a target longer than {MAX_SYMLINK_TARGET} bytes"
                )));
            }
            budget.take(target.len() as u64, archive)?;
            if !allow_outside_symlinks {
                if Path::new(&target).is_absolute() {
                    return Err(unsafe_entry(format!(
                        "the symlink `{raw_name}` has an absolute target which is not allowed (--mount-symlinks allows it)"
                    )));
                }
                if escapes(&relative, &target) {
                    return Err(unsafe_entry(format!(
                        "the symlink `{raw_name}` points outside the extraction directory (--mount-symlinks allows it)"
                    )));
                }
            }
            let _ = crate::image::layer::remove_any(&path);
            std::os::unix::fs::symlink(&target, &path).map_err(io(&path))?;
            continue;
        }
        let _ = crate::image::layer::remove_any(&path);
        let mut out = std::fs::File::create(&path).map_err(io(&path))?;
        // One byte more than the budget allows is enough to know it is exceeded.
        let written = std::io::copy(&mut (&mut entry).take(budget.left() + 1), &mut out)
            .map_err(|e| zip_error(format!("`{raw_name}`: {e}")))?;
        budget.take(written, archive)?;
        out.flush().map_err(io(&path))?;
        // Modes are kept, without setuid/setgid/sticky bits (the cache may be shared).
        let mode = entry
            .unix_mode()
            .map(|m| m & 0o777)
            .filter(|m| *m != 0)
            .unwrap_or(0o644);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io(&path))?;
    }
    Ok(())
}

/// The first directory on the way to `relative` under `root` that is a symlink, if any.
fn symlink_ancestor(root: &Path, relative: &Path) -> Option<PathBuf> {
    let mut partial = PathBuf::new();
    let mut components = relative.components().peekable();
    while let Some(component) = components.next() {
        if components.peek().is_none() {
            break;
        }
        partial.push(component);
        if std::fs::symlink_metadata(root.join(&partial)).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Some(partial);
        }
    }
    None
}

/// Whether a relative symlink at `link` (relative to the root) resolves above the root.
fn escapes(link: &Path, target: &str) -> bool {
    let mut depth: i64 = link.parent().map_or(0, |p| p.components().count() as i64);
    for component in Path::new(target).components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_zip(path: &Path, entries: &[(&str, &[u8], u32, bool)]) {
        let file = std::fs::File::create(path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        for (name, data, mode, symlink) in entries {
            let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            if *symlink {
                zip.add_symlink(*name, std::str::from_utf8(data).unwrap(), options)
                    .unwrap();
            } else {
                zip.start_file(*name, options).unwrap();
                zip.write_all(data).unwrap();
            }
        }
        zip.finish().unwrap();
    }

    #[test]
    fn test_artifacts_zip_modes_symlinks_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("code.zip");
        make_zip(
            &archive,
            &[
                ("app.py", b"x = 1\n", 0o644, false),
                ("bin/tool", b"#!/bin/sh\n", 0o755, false),
                ("link", b"app.py", 0o777, true),
            ],
        );
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        unpack_zip(&archive, &out, false, &mut Budget::new(0)).unwrap();
        assert_eq!(
            std::fs::metadata(out.join("bin/tool"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("app.py")
        );

        for (name, entries) in [
            ("abs", vec![("l", &b"/etc/passwd"[..], 0o777, true)]),
            ("up", vec![("sub/l", &b"../../x"[..], 0o777, true)]),
        ] {
            let bad = dir.path().join(format!("{name}.zip"));
            make_zip(&bad, &entries);
            let target = dir.path().join(format!("out-{name}"));
            std::fs::create_dir(&target).unwrap();
            let err = unpack_zip(&bad, &target, false, &mut Budget::new(0))
                .unwrap_err()
                .to_string();
            assert!(err.contains("symlink"), "{err}");
            assert!(
                unpack_zip(&bad, &target, true, &mut Budget::new(0)).is_ok(),
                "--mount-symlinks allows it"
            );
        }
    }

    #[test]
    fn test_artifacts_zip_cannot_write_through_its_own_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("chain.zip");
        // Each link looks harmless by its name; together they climb out of the directory.
        make_zip(
            &archive,
            &[
                ("a/", b"", 0o755, false),
                ("a/b", b"..", 0o777, true),
                ("a/b/c", b"..", 0o777, true),
                ("a/b/c/escaped", b"x", 0o644, false),
                ("suid", b"#!/bin/sh\n", 0o4755, false),
            ],
        );
        let out = dir.path().join("deep/out");
        std::fs::create_dir_all(&out).unwrap();
        let err = unpack_zip(&archive, &out, false, &mut Budget::new(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("through the symlink `a/b`"), "{err}");
        assert!(!dir.path().join("deep/escaped").exists());
        assert!(!dir.path().join("escaped").exists());

        let archive = dir.path().join("suid.zip");
        make_zip(&archive, &[("suid", b"#!/bin/sh\n", 0o4755, false)]);
        let out = dir.path().join("suid-out");
        std::fs::create_dir(&out).unwrap();
        unpack_zip(&archive, &out, false, &mut Budget::new(0)).unwrap();
        let mode = std::fs::metadata(out.join("suid"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "no setuid bit in the cache");
    }

    /// A zip of one deflated file of `len` zeros whose directory says it holds `declared` bytes.
    fn zeros_zip(path: &Path, len: usize, declared: u32) {
        let mut bytes = Vec::new();
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("zeros", options).unwrap();
        zip.write_all(&vec![0; len]).unwrap();
        zip.finish().unwrap();
        // The uncompressed size in the local header (offset 22) and the central one (offset 24).
        let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bytes[22..26].copy_from_slice(&declared.to_le_bytes());
        bytes[central + 24..central + 28].copy_from_slice(&declared.to_le_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn test_artifacts_unzipped_size_is_counted_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("bomb.zip");
        let almost_full = limits::MAX_UNZIPPED_BYTES - 50_000;

        // Declared honestly: refused before anything is written.
        zeros_zip(&archive, 100_000, 100_000);
        let out = dir.path().join("honest");
        std::fs::create_dir(&out).unwrap();
        let err = unpack_zip(&archive, &out, false, &mut Budget::new(almost_full))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Unzipped size must be smaller than 262144000 bytes")
                && err.contains("bomb.zip")
                && err.contains("the code takes 262094000 bytes")
                && err.contains("the zip says it holds 100000 bytes"),
            "{err}"
        );
        assert!(!out.join("zeros").exists());

        // Within the limit, the same file unpacks whole, and is counted.
        let out = dir.path().join("fits");
        std::fs::create_dir(&out).unwrap();
        let mut budget = Budget::new(0);
        unpack_zip(&archive, &out, false, &mut budget).unwrap();
        assert_eq!(budget.used, 100_000);

        // Declared as 10 bytes: the zip crate stops reading past the declared size (and lamina's
        // count of what it writes would stop it at the limit otherwise).
        zeros_zip(&archive, 100_000, 10);
        let out = dir.path().join("liar");
        std::fs::create_dir(&out).unwrap();
        let err = unpack_zip(&archive, &out, false, &mut Budget::new(almost_full))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bomb.zip") && err.contains("larger than its declared"),
            "{err}"
        );
        assert!(std::fs::metadata(out.join("zeros")).unwrap().len() <= 50_001);
    }

    #[test]
    fn test_artifacts_entry_size_recorded_or_measured() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("abc");
        std::fs::create_dir_all(entry.join("sub")).unwrap();
        std::fs::write(entry.join("a"), "12345").unwrap();
        std::fs::write(entry.join("sub/b"), "678").unwrap();
        std::os::unix::fs::symlink("a", entry.join("l")).unwrap();
        assert_eq!(entry_size(&entry).unwrap(), 9, "5 + 3 + the link's 1");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("abc.size")).unwrap(),
            "9"
        );
        record_size(&entry, 42);
        assert_eq!(entry_size(&entry).unwrap(), 42);
    }

    #[test]
    fn test_artifacts_escapes_lexically() {
        assert!(!escapes(Path::new("a/l"), "../b"));
        assert!(escapes(Path::new("a/l"), "../../b"));
        assert!(escapes(Path::new("l"), ".."));
    }
}
