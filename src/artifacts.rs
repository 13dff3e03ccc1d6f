//! The function's files on the host, ready to mount: zip/jar code unpacked once into the cache
//! (keyed by the archive's sha256), inline code written once (keyed by its hash), and the local
//! layers merged once into one `/opt` directory (keyed by a fingerprint of their contents), so that
//! nothing is redone when only the function code changes.
//!
//! Everything is built in a staging directory and renamed into place, like the image cache.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

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
        return publish(target, |staging| {
            unpack_zip(archive, staging, plan.mount_symlinks)
        });
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
    if target.is_dir() {
        return Ok(Some(target));
    }
    publish(&target, |staging| {
        for source in &sources {
            if source.is_dir() {
                copy_tree(source, staging)?;
            } else {
                unpack_zip(source, staging, plan.mount_symlinks)?;
            }
        }
        Ok(())
    })?;
    Ok(Some(target))
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

fn copy_tree(from: &Path, to: &Path) -> Result<(), ArtifactError> {
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
            copy_tree(&source, &dest)?;
            let mode = std::fs::metadata(&source)
                .map_err(io(&source))?
                .permissions()
                .mode();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode | 0o700))
                .map_err(io(&dest))?;
        } else if kind.is_symlink() {
            let _ = crate::image::layer::remove_any(&dest);
            let target = std::fs::read_link(&source).map_err(io(&source))?;
            std::os::unix::fs::symlink(target, &dest).map_err(io(&dest))?;
        } else {
            let _ = crate::image::layer::remove_any(&dest);
            std::fs::copy(&source, &dest).map_err(io(&dest))?;
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

/// Unpacks a zip (or jar) keeping modes and symlinks. Entries whose name leaves the directory are
/// refused (zip-slip); so are symlinks with absolute targets or targets outside it, unless
/// `--mount-symlinks` allows them (as SAM).
pub fn unpack_zip(
    archive: &Path,
    dest: &Path,
    allow_outside_symlinks: bool,
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
            entry
                .read_to_string(&mut target)
                .map_err(|e| zip_error(e.to_string()))?;
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
        std::io::copy(&mut entry, &mut out).map_err(|e| zip_error(format!("`{raw_name}`: {e}")))?;
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
        unpack_zip(&archive, &out, false).unwrap();
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
            let err = unpack_zip(&bad, &target, false).unwrap_err().to_string();
            assert!(err.contains("symlink"), "{err}");
            assert!(
                unpack_zip(&bad, &target, true).is_ok(),
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
        let err = unpack_zip(&archive, &out, false).unwrap_err().to_string();
        assert!(err.contains("through the symlink `a/b`"), "{err}");
        assert!(!dir.path().join("deep/escaped").exists());
        assert!(!dir.path().join("escaped").exists());

        let archive = dir.path().join("suid.zip");
        make_zip(&archive, &[("suid", b"#!/bin/sh\n", 0o4755, false)]);
        let out = dir.path().join("suid-out");
        std::fs::create_dir(&out).unwrap();
        unpack_zip(&archive, &out, false).unwrap();
        let mode = std::fs::metadata(out.join("suid"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "no setuid bit in the cache");
    }

    #[test]
    fn test_artifacts_escapes_lexically() {
        assert!(!escapes(Path::new("a/l"), "../b"));
        assert!(escapes(Path::new("a/l"), "../../b"));
        assert!(escapes(Path::new("l"), ".."));
    }
}
