//! The image cache on disk. Every bucket is versioned so a format change never misreads old data:
//!
//! ```text
//! <root>/blobs-v1/sha256/<hex>       verified blobs: layers, and the manifest and config of each
//!                                      image, so a damaged image can be unpacked again offline
//! <root>/rootfs-v2/<hex>/            one flattened image per platform manifest digest:
//!                                      rootfs/ (read-only at run time), meta.json, last-used
//! <root>/refs-v1/<key>.json          reference + platform -> manifest digest, when last checked
//! <root>/tmp/                        staging and partial downloads, named `pull-<pid>-...`; entries
//!                                      are renamed into place only when complete
//! <root>/locks/                      one lock file per pull, so concurrent lamina processes share work
//! ```
//!
//! An image directory appears in `rootfs-v2` by a single `rename` of a fully written staging
//! directory whose rootfs passed [`targets::check`], so a killed pull can leave garbage in `tmp/`
//! (removed by the next pull or prune once its process is gone) but never an entry that looks
//! complete. An entry that is damaged afterwards (its rootfs or `meta.json` gone, a mount point
//! missing) is found by [`Cache::lookup`] and unpacked again (see `pull`).
//!
//! `rootfs-v2` replaced `rootfs-v1` when the unpack began to make the sandbox's mount points,
//! strip setuid bits and skip device nodes; `v1` entries are never used, and `image prune` and
//! `image rm` delete them.
//!
//! The root is created 0700, as is everything lamina creates in it: a rootfs holds the image's
//! files with their owners, and nothing in it is for other users. A root that others can enter is
//! used with a warning.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oci_client::manifest::OciImageManifest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layer::{remove_any, remove_tree};
use super::limits::MAX_METADATA_BYTES;
use super::{ImageError, ImageRef, Reporter, RunConfig, targets};
use crate::runtimes::Architecture;

type Result<T> = std::result::Result<T, ImageError>;

/// The bucket of unpacked images, and the older ones `collect_garbage` deletes.
const ROOTFS_BUCKET: &str = "rootfs-v2";
const OLD_ROOTFS_BUCKETS: &[&str] = &["rootfs-v1"];
/// What names everything of one process in `tmp/`; the pid says whether its owner is alive.
const TEMP_PREFIX: &str = "pull-";
/// Temporary files of lamina versions that did not name them by process (`.tmpXXXXXX`): removed
/// once untouched this long, as no download stalls for an hour without failing.
const LEGACY_TEMP_AGE: Duration = Duration::from_secs(3600);

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

/// What `rootfs-v2/<hex>/meta.json` records about an unpacked image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageMeta {
    pub manifest_digest: String,
    pub platform: String,
    pub config_digest: String,
    pub layers: Vec<String>,
    pub run_config: RunConfig,
    /// Bytes of regular files in the rootfs.
    pub size: u64,
    /// `root` (owners and all xattrs kept) or `unprivileged` (best the kernel allowed).
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

/// What the cache has for a manifest digest.
#[derive(Debug)]
pub enum Lookup {
    Ready(Box<CachedImage>),
    /// No entry at all.
    Absent,
    /// An entry that cannot be run, and why.
    Damaged(String),
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
    /// Why the image cannot be used as it is (it is unpacked or pulled again on next use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

pub struct Cache {
    root: PathBuf,
    /// `pull-<pid>-`: what this process's temporaries are named with.
    temp_prefix: String,
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

/// Creates `dir` and its missing parents with mode 0700 (as the XDG base directories should be).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl Cache {
    /// Opens (creating) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache> {
        match fs::metadata(root) {
            Ok(meta) if meta.is_dir() && meta.permissions().mode() & 0o077 != 0 => {
                tracing::warn!(
                    "Warning: the image cache {} can be entered by other users (mode {:o}); its images keep the files of their layers: chmod 700 {}",
                    root.display(),
                    meta.permissions().mode() & 0o7777,
                    root.display()
                );
            }
            Ok(_) => {}
            Err(_) => create_private_dir(root).map_err(|e| ImageError::cache(root, e))?,
        }
        for bucket in ["blobs-v1/sha256", ROOTFS_BUCKET, "refs-v1", "tmp", "locks"] {
            let dir = root.join(bucket);
            create_private_dir(&dir).map_err(|e| ImageError::cache(&dir, e))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
            temp_prefix: format!("{TEMP_PREFIX}{}-", std::process::id()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs-v1/sha256").join(hex_of(digest))
    }

    pub fn image_dir(&self, manifest_digest: &str) -> PathBuf {
        self.root.join(ROOTFS_BUCKET).join(hex_of(manifest_digest))
    }

    /// The image's directory in this bucket version and the older ones, which may hold a
    /// `meta.json` to unpack it again from (see `repair`).
    pub fn image_dirs_of_all_versions(&self, manifest_digest: &str) -> Vec<PathBuf> {
        std::iter::once(ROOTFS_BUCKET)
            .chain(OLD_ROOTFS_BUCKETS.iter().copied())
            .map(|bucket| self.root.join(bucket).join(hex_of(manifest_digest)))
            .collect()
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
        self.write_atomic(
            &path,
            &serde_json::to_vec_pretty(entry).expect("serialisable"),
        )
    }

    /// Every readable reference record.
    pub fn refs(&self) -> Vec<RefEntry> {
        let Ok(entries) = fs::read_dir(self.root.join("refs-v1")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<RefEntry>(&b).ok())
            .collect()
    }

    /// The unpacked image for a manifest digest, if it is completely there.
    pub fn load(&self, reference: &str, manifest_digest: &str) -> Option<CachedImage> {
        match self.lookup(reference, manifest_digest) {
            Lookup::Ready(image) => Some(*image),
            Lookup::Absent | Lookup::Damaged(_) => None,
        }
    }

    /// The unpacked image for a manifest digest, checked as far as a few `stat`s can: its
    /// `meta.json` (written last) names the digest, and its rootfs has every mount point.
    pub fn lookup(&self, reference: &str, manifest_digest: &str) -> Lookup {
        let dir = self.image_dir(manifest_digest);
        if fs::symlink_metadata(&dir).is_err() {
            return Lookup::Absent;
        }
        let meta = match fs::read(dir.join("meta.json")) {
            Ok(bytes) => match serde_json::from_slice::<ImageMeta>(&bytes) {
                Ok(meta) if meta.manifest_digest == manifest_digest => meta,
                Ok(_) => return Lookup::Damaged("its meta.json is for another image".into()),
                Err(err) => return Lookup::Damaged(format!("its meta.json is not valid: {err}")),
            },
            Err(err) => return Lookup::Damaged(format!("its meta.json cannot be read: {err}")),
        };
        let rootfs = dir.join("rootfs");
        if let Err(reason) = targets::check(&rootfs) {
            return Lookup::Damaged(reason);
        }
        Lookup::Ready(Box::new(CachedImage {
            reference: reference.to_string(),
            dir,
            rootfs,
            meta,
        }))
    }

    /// Stores a small verified blob (a manifest or config) unless the cache has it.
    pub fn store_blob(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let path = self.blob_path(digest);
        if path.is_file() {
            return Ok(());
        }
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        if actual != digest {
            return Err(ImageError::cache(
                &path,
                format!("refusing to store a blob that does not match its digest (got {actual})"),
            ));
        }
        self.write_atomic(&path, bytes)
    }

    /// A manifest or config from the blob cache, verified; `None` when it is missing or bad (a bad
    /// one is deleted).
    pub fn read_metadata_blob(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.blob_path(digest);
        let mut file = fs::File::open(&path).ok()?;
        let bytes = crate::limits::read_capped(&mut file, MAX_METADATA_BYTES).ok()?;
        match bytes {
            Some(bytes) if format!("sha256:{}", hex::encode(Sha256::digest(&bytes))) == digest => {
                Some(bytes)
            }
            _ => {
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// The manifest of `manifest_digest` from the blob cache.
    pub fn read_manifest(&self, manifest_digest: &str) -> Option<OciImageManifest> {
        serde_json::from_slice(&self.read_metadata_blob(manifest_digest)?).ok()
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
        self.clean_stale_temporaries();
        let tmp = self.root.join("tmp");
        let dir = self
            .temp_builder()
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&tmp)
            .map_err(|e| ImageError::cache(&tmp, e))?;
        Ok(Staging { dir: Some(dir) })
    }

    /// Names a temporary file or directory in `tmp/` after this process (see
    /// [`Cache::clean_stale_temporaries`]).
    pub fn temp_builder(&self) -> tempfile::Builder<'_, 'static> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(&self.temp_prefix);
        builder
    }

    /// A temporary file in `tmp/` for a download, deleted when dropped unless persisted.
    pub fn temp_file(&self) -> Result<tempfile::TempPath> {
        let tmp = self.root.join("tmp");
        self.temp_builder()
            .tempfile_in(&tmp)
            .map(tempfile::NamedTempFile::into_temp_path)
            .map_err(|e| ImageError::cache(&tmp, e))
    }

    /// Removes this process's own staging and partial downloads: after an interrupted pull, once
    /// its tasks have stopped (a task in flight may have made one after the pull was dropped).
    pub fn remove_own_temporaries(&self) {
        self.remove_temporaries(|name, _| name.starts_with(&self.temp_prefix));
    }

    /// Removes staging and partial downloads left by lamina processes that are gone (killed,
    /// crashed); those of live processes are theirs. Run by every pull and by prune and rm.
    pub fn clean_stale_temporaries(&self) {
        self.remove_temporaries(|name, entry| match name.strip_prefix(TEMP_PREFIX) {
            Some(rest) => rest
                .split('-')
                .next()
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|pid| !crate::process::exists(pid)),
            None if name.starts_with(".tmp") => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > LEGACY_TEMP_AGE),
            None => false,
        });
    }

    /// Removes the entries of `tmp/` that `doomed` picks (by name, and the entry itself).
    fn remove_temporaries(&self, doomed: impl Fn(&str, &fs::DirEntry) -> bool) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if doomed(&name, &entry) {
                tracing::debug!(path = %entry.path().display(), "removing a pull's leftover");
                let _ = remove_any(&entry.path());
            }
        }
    }

    /// Moves a completed staging directory into `rootfs-v2/`, once its rootfs passes the check an
    /// invoke makes. If another process published the same image meanwhile, theirs is kept; a
    /// damaged entry in the way is replaced.
    pub fn publish(&self, mut staging: Staging, manifest_digest: &str) -> Result<PathBuf> {
        let target = self.image_dir(manifest_digest);
        if let Err(reason) = targets::check(&staging.path().join("rootfs")) {
            return Err(ImageError::cache(
                staging.path(),
                format!("the unpacked image failed its check and was not kept: {reason}"),
            ));
        }
        let dir = staging
            .dir
            .take()
            .expect("staging not yet published")
            .keep();
        let attempt = || fs::rename(&dir, &target);
        let result = match attempt() {
            Ok(()) => Ok(()),
            Err(_) if matches!(self.lookup("", manifest_digest), Lookup::Ready(_)) => {
                let _ = remove_tree(&dir);
                return Ok(target);
            }
            Err(_) => {
                // A damaged entry: moved aside first, so the rename that replaces it is atomic.
                let aside = self.temp_builder().tempdir_in(self.root.join("tmp"));
                match aside {
                    Ok(aside) => {
                        let aside = aside.keep();
                        let moved = fs::rename(&target, aside.join("damaged"));
                        let _ = remove_tree(&aside);
                        moved.and_then(|()| attempt())
                    }
                    Err(err) => Err(err),
                }
            }
        };
        match result {
            Ok(()) => Ok(target),
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
            .mode(0o600)
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

    /// The lock of one reference and platform, held while it is pulled or unpacked.
    pub fn lock_image(
        &self,
        canonical: &str,
        platform: &str,
        reporter: &dyn Reporter,
    ) -> Result<fs::File> {
        self.lock(&format!("{canonical} {platform}"), canonical, reporter)
    }

    /// Every cached reference with its image; a damaged image is listed with the reason.
    pub fn list(&self) -> Vec<Listed> {
        let mut rows: Vec<Listed> = self
            .refs()
            .into_iter()
            .map(|reference| {
                let (size, last_used, damaged) =
                    match self.lookup(&reference.reference, &reference.manifest_digest) {
                        Lookup::Ready(image) => {
                            let last_used = fs::metadata(image.dir.join("last-used"))
                                .and_then(|m| m.modified())
                                .ok()
                                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                                .map_or(image.meta.created_at, |d| d.as_secs());
                            (image.meta.size, last_used, None)
                        }
                        // Until it is unpacked again, its last pull stands for its last use, so
                        // that `prune --older-than` does not take it for unused.
                        Lookup::Absent => (
                            0,
                            reference.checked_at,
                            Some("it is not unpacked".to_string()),
                        ),
                        Lookup::Damaged(reason) => (0, reference.checked_at, Some(reason)),
                    };
                Listed {
                    reference: reference.reference,
                    platform: reference.platform,
                    manifest_digest: reference.manifest_digest,
                    size,
                    last_used,
                    checked_at: reference.checked_at,
                    damaged,
                }
            })
            .collect();
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
                damaged: None,
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

    /// Deletes images no reference points at, blobs nothing uses, images of older bucket versions,
    /// and what dead pulls left in `tmp/`.
    pub fn collect_garbage(&self) -> Result<()> {
        self.clean_stale_temporaries();
        for old in OLD_ROOTFS_BUCKETS {
            let dir = self.root.join(old);
            remove_tree(&dir).map_err(|e| ImageError::cache(&dir, e))?;
        }
        let refs = self.refs();
        let referenced: Vec<&str> = refs.iter().map(|r| hex_of(&r.manifest_digest)).collect();
        // A referenced image keeps its manifest, config and layers, also while it is damaged (they
        // unpack it again).
        let mut used_blobs = std::collections::HashSet::new();
        for reference in &refs {
            used_blobs.insert(hex_of(&reference.manifest_digest).to_string());
            if let Some(manifest) = self.read_manifest(&reference.manifest_digest) {
                used_blobs.insert(hex_of(&manifest.config.digest).to_string());
                used_blobs.extend(
                    manifest
                        .layers
                        .iter()
                        .map(|l| hex_of(&l.digest).to_string()),
                );
            }
        }
        let images = self.root.join(ROOTFS_BUCKET);
        for entry in fs::read_dir(&images)
            .map_err(|e| ImageError::cache(&images, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name.as_str()) {
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

    /// Writes `path` by writing a temporary file in `tmp/` and renaming it over.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.root.join("tmp");
        let mut file = self
            .temp_builder()
            .tempfile_in(&tmp)
            .map_err(|e| ImageError::cache(&tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| ImageError::cache(path, e))?;
        file.persist(path)
            .map_err(|e| ImageError::cache(path, e.error))?;
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

/// How old a timestamp is.
pub fn age(since: u64) -> Duration {
    Duration::from_secs(now().saturating_sub(since))
}
