//! Unpacking a cached image again, from the blob cache alone, when its entry is damaged (its
//! rootfs or `meta.json` gone, a mount point missing) or missing (a cache from before `rootfs-v2`).
//!
//! Pulls, invokes and `image ls` come here instead of running a broken rootfs, failing with a
//! runtime error deep in the sandbox, or hiding the image. What an unpack needs comes from:
//! - the manifest and config blobs a pull stores beside the layers (no network at all, so
//!   `--skip-pull-image` works too);
//! - otherwise (caches written before the manifest was kept) the layers and run config recorded in
//!   the entry's own `meta.json`, or the `rootfs-v1` entry's, the layers' compression recognised
//!   from their first bytes.
//!
//! When neither is there, the caller pulls the image again (or, offline, says it is not cached).

use std::io::Read;
use std::path::Path;

use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};

use super::cache::{Cache, CachedImage, ImageMeta, Lookup, RefEntry};
use super::limits::Limits;
use super::registry::Resolved;
use super::{ImageError, Reporter, pull};

/// Unpacks the image `entry` names again if its entry is not ready (under the image's lock, so
/// that concurrent processes do it once). `None` when the blob cache lacks what it takes: the
/// caller pulls.
pub fn repair(
    cache: &Cache,
    entry: &RefEntry,
    limits: &Limits,
    reporter: &dyn Reporter,
) -> Result<Option<CachedImage>, ImageError> {
    let _lock = cache.lock_image(&entry.reference, &entry.platform, reporter)?;
    let state = match cache.lookup(&entry.reference, &entry.manifest_digest) {
        Lookup::Ready(found) => return Ok(Some(*found)),
        Lookup::Absent => "is not unpacked".to_string(),
        Lookup::Damaged(reason) => format!("is damaged: {reason}"),
    };
    let what = format!("cached image {} ({})", entry.reference, entry.platform);
    let Some(resolved) = from_blobs(cache, entry).or_else(|| from_meta(cache, entry)) else {
        reporter.message(&format!(
            "{what} {state}; its layers are not all cached, so it is pulled again"
        ));
        return Ok(None);
    };
    reporter.message(&format!(
        "{what} {state}; unpacking it again from its cached layers"
    ));
    match pull::unpack(cache, &entry.reference, &entry.platform, &resolved, limits) {
        Ok(found) => Ok(Some(found)),
        // A layer went bad on disk and was deleted: a pull fetches it again.
        Err(ImageError::Digest { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The manifest and config stored in the blob cache, when they and every layer are there.
fn from_blobs(cache: &Cache, entry: &RefEntry) -> Option<Resolved> {
    let manifest_bytes = cache.read_metadata_blob(&entry.manifest_digest)?;
    let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes).ok()?;
    let config = cache.read_metadata_blob(&manifest.config.digest)?;
    if !manifest
        .layers
        .iter()
        .all(|l| cache.blob_path(&l.digest).is_file())
    {
        return None;
    }
    Some(Resolved {
        manifest,
        manifest_digest: entry.manifest_digest.clone(),
        index_digest: None,
        config,
        manifest_bytes,
    })
}

/// A manifest and config rebuilt from an entry's `meta.json` (this version's or `rootfs-v1`'s).
fn from_meta(cache: &Cache, entry: &RefEntry) -> Option<Resolved> {
    let meta = cache
        .image_dirs_of_all_versions(&entry.manifest_digest)
        .iter()
        .filter_map(|dir| std::fs::read(dir.join("meta.json")).ok())
        .filter_map(|bytes| serde_json::from_slice::<ImageMeta>(&bytes).ok())
        .find(|meta| meta.manifest_digest == entry.manifest_digest)?;
    let mut layers = Vec::new();
    for digest in &meta.layers {
        let path = cache.blob_path(digest);
        let size = std::fs::metadata(&path).ok()?.len();
        layers.push(OciDescriptor {
            media_type: sniff_media_type(&path)?.into(),
            digest: digest.clone(),
            size: i64::try_from(size).ok()?,
            ..OciDescriptor::default()
        });
    }
    let run = &meta.run_config;
    let config = serde_json::json!({"config": {
        "Entrypoint": run.entrypoint, "Cmd": run.cmd, "Env": run.env,
        "WorkingDir": run.working_dir, "User": run.user,
    }});
    Some(Resolved {
        manifest: OciImageManifest {
            media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
            config: OciDescriptor {
                digest: meta.config_digest.clone(),
                ..OciDescriptor::default()
            },
            layers,
            ..OciImageManifest::default()
        },
        manifest_digest: entry.manifest_digest.clone(),
        index_digest: None,
        config: config.to_string().into_bytes(),
        manifest_bytes: Vec::new(),
    })
}

/// A layer's media type from its first bytes: gzip, zstd, or else a plain tar.
fn sniff_media_type(path: &Path) -> Option<&'static str> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).ok()?;
    let n = file.read(&mut magic).ok()?;
    Some(match &magic[..n] {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    })
}
