//! The image cache on disk. Every bucket is versioned so a format change never misreads old data:
//!
//! ```text
//! <root>/blobs-v1/sha256/<hex>       verified layer and config blobs
//! <root>/rootfs-v1/<hex>/            one flattened image per platform manifest digest:
//!                                      rootfs/ (read-only at run time), meta.json, last-used
//! <root>/refs-v1/<key>.json          reference + platform -> manifest digest, when last checked
//! <root>/tmp/                        staging; entries are renamed into place only when complete
//! <root>/locks/                      one lock file per pull, so concurrent lamina processes share work
//! ```
//!
//! An image directory appears in `rootfs-v1` by a single `rename` of a fully written staging
//! directory, so a killed pull can leave garbage in `tmp/` (cleaned later) but never an entry that
//! looks complete.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layer::remove_tree;
use super::{ImageError, ImageRef, Reporter, RunConfig};
use crate::runtimes::Architecture;

type Result<T> = std::result::Result<T, ImageError>;

/// What `refs-v1/<key>.json` records for one reference and platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefEntry {
    pub reference: String,
    pub platform: String,
    pub manifest_digest: String,
    /// The digest the reference itself resolved to (an index's, for multi-arch tags).
    pub resolved_digest: String,
    /// Unix seconds of the last registry check.
    pub checked_at: u64,
}

/// What `rootfs-v1/<hex>/meta.json` records about an unpacked image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageMeta {
    pub manifest_digest: String,
    pub platform: String,
    pub config_digest: String,
    pub layers: Vec<String>,
    pub run_config: RunConfig,
    /// Bytes of regular files in the rootfs.
    pub size: u64,
    /// `root` (owners, devices and all xattrs kept) or `unprivileged` (best the kernel allowed).
    pub unpacked_as: String,
    pub created_at: u64,
}

/// An image ready to run.
#[derive(Debug, Clone)]
pub struct CachedImage {
    pub reference: String,
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub meta: ImageMeta,
}

/// One row of `lamina image ls`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub reference: String,
    pub platform: String,
    pub manifest_digest: String,
    pub size: u64,
    pub last_used: u64,
    pub checked_at: u64,
}

pub struct Cache {
    root: PathBuf,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl Cache {
    /// Opens (creating) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache> {
        for bucket in ["blobs-v1/sha256", "rootfs-v1", "refs-v1", "tmp", "locks"] {
            let dir = root.join(bucket);
            fs::create_dir_all(&dir).map_err(|e| ImageError::cache(&dir, e))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs-v1/sha256").join(hex_of(digest))
    }

    pub fn image_dir(&self, manifest_digest: &str) -> PathBuf {
        self.root.join("rootfs-v1").join(hex_of(manifest_digest))
    }

    fn ref_path(&self, image: &ImageRef, arch: Architecture) -> PathBuf {
        let key = format!("{} {}", image.canonical(), super::platform_name(arch));
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        self.root
            .join("refs-v1")
            .join(format!("{}.json", &hash[..32]))
    }

    pub fn read_ref(&self, image: &ImageRef, arch: Architecture) -> Option<RefEntry> {
        let text = fs::read(self.ref_path(image, arch)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn write_ref(&self, image: &ImageRef, arch: Architecture, entry: &RefEntry) -> Result<()> {
        let path = self.ref_path(image, arch);
        write_atomic(
            &self.root.join("tmp"),
            &path,
            &serde_json::to_vec_pretty(entry).expect("serialisable"),
        )
    }

    /// The unpacked image for a manifest digest, if it is completely there.
    pub fn load(&self, reference: &str, manifest_digest: &str) -> Option<CachedImage> {
        let dir = self.image_dir(manifest_digest);
        let meta: ImageMeta =
            serde_json::from_slice(&fs::read(dir.join("meta.json")).ok()?).ok()?;
        let rootfs = dir.join("rootfs");
        if !rootfs.is_dir() || meta.manifest_digest != manifest_digest {
            return None;
        }
        Some(CachedImage {
            reference: reference.to_string(),
            dir,
            rootfs,
            meta,
        })
    }

    /// Records that an image was used now (for `image ls` and `image prune`).
    pub fn touch(&self, image: &CachedImage) {
        let marker = image.dir.join("last-used");
        let now = filetime::FileTime::now();
        if filetime::set_file_mtime(&marker, now).is_err() {
            let _ = fs::File::create(&marker);
        }
    }

    /// A fresh staging directory under `tmp/`, removed on drop unless published.
    pub fn staging(&self) -> Result<Staging> {
        self.clean_stale_staging();
        let tmp = self.root.join("tmp");
        let dir = tempfile::Builder::new()
            .prefix(&format!("pull-{}-", std::process::id()))
            .tempdir_in(&tmp)
            .map_err(|e| ImageError::cache(&tmp, e))?;
        Ok(Staging { dir: Some(dir) })
    }

    /// Removes staging left by pulls whose process is gone (killed, crashed).
    fn clean_stale_staging(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("pull-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if !crate::process::exists(pid) {
                tracing::debug!(path = %entry.path().display(), "removing staging of a dead pull");
                let _ = super::layer::remove_any(&entry.path());
            }
        }
    }

    /// Moves a completed staging directory into `rootfs-v1/`. If another process published the
    /// same image meanwhile, theirs is kept.
    pub fn publish(&self, mut staging: Staging, manifest_digest: &str) -> Result<PathBuf> {
        let target = self.image_dir(manifest_digest);
        let dir = staging
            .dir
            .take()
            .expect("staging not yet published")
            .keep();
        match fs::rename(&dir, &target) {
            Ok(()) => Ok(target),
            Err(_) if target.join("meta.json").is_file() => {
                let _ = remove_tree(&dir);
                Ok(target)
            }
            Err(err) => {
                let _ = remove_tree(&dir);
                Err(ImageError::cache(&target, err))
            }
        }
    }

    /// Holds an exclusive lock named `key` until the guard is dropped; tells the reporter when it
    /// has to wait for another process.
    pub fn lock(&self, key: &str, what: &str, reporter: &dyn Reporter) -> Result<fs::File> {
        let name = hex::encode(Sha256::digest(key.as_bytes()));
        let path = self
            .root
            .join("locks")
            .join(format!("{}.lock", &name[..32]));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::cache(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                reporter.message(&format!(
                    "Another lamina process is pulling {what}, waiting..."
                ));
                file.lock().map_err(|e| ImageError::cache(&path, e))?;
            }
            Err(fs::TryLockError::Error(err)) => return Err(ImageError::cache(&path, err)),
        }
        Ok(file)
    }

    /// Every cached reference with its image.
    pub fn list(&self) -> Vec<Listed> {
        let mut rows = Vec::new();
        let Ok(entries) = fs::read_dir(self.root.join("refs-v1")) else {
            return rows;
        };
        for entry in entries.flatten() {
            let Ok(bytes) = fs::read(entry.path()) else {
                continue;
            };
            let Ok(reference) = serde_json::from_slice::<RefEntry>(&bytes) else {
                continue;
            };
            let Some(image) = self.load(&reference.reference, &reference.manifest_digest) else {
                continue;
            };
            let last_used = fs::metadata(image.dir.join("last-used"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(image.meta.created_at, |d| d.as_secs());
            rows.push(Listed {
                reference: reference.reference,
                platform: reference.platform,
                manifest_digest: reference.manifest_digest,
                size: image.meta.size,
                last_used,
                checked_at: reference.checked_at,
            });
        }
        rows.sort_by(|a, b| (&a.reference, &a.platform).cmp(&(&b.reference, &b.platform)));
        rows
    }

    /// Removes the references `matches` selects, then every image and blob nothing refers to.
    /// Returns the removed references.
    pub fn remove_refs(&self, matches: &dyn Fn(&Listed) -> bool) -> Result<Vec<Listed>> {
        let mut removed = Vec::new();
        let listed_now = self.list();
        let dir = self.root.join("refs-v1");
        for entry in fs::read_dir(&dir)
            .map_err(|e| ImageError::cache(&dir, e))?
            .flatten()
        {
            let Ok(bytes) = fs::read(entry.path()) else {
                continue;
            };
            let Ok(reference) = serde_json::from_slice::<RefEntry>(&bytes) else {
                let _ = fs::remove_file(entry.path());
                continue;
            };
            let listed = Listed {
                size: 0,
                last_used: 0,
                checked_at: reference.checked_at,
                reference: reference.reference,
                platform: reference.platform,
                manifest_digest: reference.manifest_digest,
            };
            let full = listed_now
                .iter()
                .find(|l| l.reference == listed.reference && l.platform == listed.platform);
            let candidate = full.cloned().unwrap_or(listed);
            if matches(&candidate) {
                fs::remove_file(entry.path()).map_err(|e| ImageError::cache(&entry.path(), e))?;
                removed.push(candidate);
            }
        }
        self.collect_garbage()?;
        Ok(removed)
    }

    /// Deletes images no reference points at, blobs no image uses, and dead staging.
    pub fn collect_garbage(&self) -> Result<()> {
        self.clean_stale_staging();
        let referenced: Vec<String> = fs::read_dir(self.root.join("refs-v1"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| fs::read(e.path()).ok())
                    .filter_map(|b| serde_json::from_slice::<RefEntry>(&b).ok())
                    .map(|r| hex_of(&r.manifest_digest).to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut used_blobs = std::collections::HashSet::new();
        let images = self.root.join("rootfs-v1");
        for entry in fs::read_dir(&images)
            .map_err(|e| ImageError::cache(&images, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) {
                remove_tree(&entry.path()).map_err(|e| ImageError::cache(&entry.path(), e))?;
                continue;
            }
            if let Ok(meta) = fs::read(entry.path().join("meta.json"))
                && let Ok(meta) = serde_json::from_slice::<ImageMeta>(&meta)
            {
                used_blobs.extend(meta.layers.iter().map(|d| hex_of(d).to_string()));
                used_blobs.insert(hex_of(&meta.config_digest).to_string());
            }
        }
        let blobs = self.root.join("blobs-v1/sha256");
        for entry in fs::read_dir(&blobs)
            .map_err(|e| ImageError::cache(&blobs, e))?
            .flatten()
        {
            if !used_blobs.contains(entry.file_name().to_string_lossy().as_ref()) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// A staging directory, deleted when dropped unless published.
pub struct Staging {
    dir: Option<tempfile::TempDir>,
}

impl Staging {
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("staging not yet published").path()
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Read-only directories from the image would make TempDir's own cleanup fail.
        if let Some(dir) = self.dir.take() {
            let path = dir.keep();
            let _ = remove_tree(&path);
        }
    }
}

/// Writes `path` by writing a temporary file in `tmp` and renaming it over.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = tempfile::NamedTempFile::new_in(tmp).map_err(|e| ImageError::cache(tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| ImageError::cache(path, e))?;
    file.persist(path)
        .map_err(|e| ImageError::cache(path, e.error))?;
    Ok(())
}

/// How old a timestamp is.
pub fn age(since: u64) -> Duration {
    Duration::from_secs(now().saturating_sub(since))
}
