//! Getting an image into the cache, and deciding when the registry must be asked.
//!
//! - A cached tag is re-checked with the registry at most once per refresh interval (24 h by
//!   default); a warm invoke inside it makes no network request at all.
//! - `--skip-pull-image` (`Freshness::Offline`) never contacts the registry.
//! - `--force-image-build` and `lamina image pull` (`Freshness::CheckNow`) ask the registry now.
//! - When a re-check fails (offline laptop), the cached image is used with a one-line notice;
//!   only an image that is not cached at all makes the invoke fail.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::cache::{self, Cache, CachedImage, ImageMeta, Lookup, RefEntry};
use super::layer::{Privilege, Unpacker};
use super::limits::Limits;
use super::registry::{Registry, Resolved};
use super::{ImageError, ImageRef, Mirrors, Reporter, RunConfig, Settings, platform_name, targets};
use crate::env_vars;
use crate::runtimes::Architecture;

const DEFAULT_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Layers downloaded at once.
const PARALLEL_DOWNLOADS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Re-check a tag when the refresh interval has passed.
    Default,
    /// Never contact the registry (`--skip-pull-image`).
    Offline,
    /// Re-check now (`--force-image-build`, `lamina image pull`); `strict` fails when the
    /// registry cannot be reached instead of using the cached copy.
    CheckNow { strict: bool },
}

/// Everything a pull needs besides the image.
pub struct PullContext<'a> {
    pub cache: &'a Cache,
    pub mirrors: &'a Mirrors,
    pub refresh: Duration,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub reporter: &'a dyn Reporter,
}

impl PullContext<'_> {
    /// The refresh interval from `LAMINA_IMAGE_REFRESH_HOURS`, the settings file, or 24 h.
    pub fn refresh_interval(env: &dyn Fn(&str) -> Option<String>, settings: &Settings) -> Duration {
        env(env_vars::LAMINA_IMAGE_REFRESH_HOURS)
            .and_then(|h| h.parse::<f64>().ok())
            .or(settings.refresh_interval_hours)
            .filter(|h| h.is_finite() && *h >= 0.0)
            .map_or(DEFAULT_REFRESH, |h| Duration::from_secs_f64(h * 3600.0))
    }
}

/// Returns the image for `arch`, pulling it when the cache does not have it (or has an old one).
/// An OCI layout (`oci:PATH`) is local: it is read again every time, whatever `freshness` says.
pub fn ensure(
    ctx: &PullContext,
    image: &ImageRef,
    arch: Architecture,
    freshness: Freshness,
) -> Result<CachedImage, ImageError> {
    let limits = Limits::from_env(ctx.env)?;
    let reference = match image {
        ImageRef::Registry(reference) => reference,
        ImageRef::Layout(layout) => {
            return super::layout::ensure(ctx, image, layout, arch, &limits);
        }
    };
    let canonical = image.canonical();
    if let Some(cached) = cached(ctx, image, arch, &limits, true)? {
        let (entry, found) = cached;
        let fresh = match freshness {
            Freshness::Offline => true,
            _ if image.is_pinned() => true,
            Freshness::Default => cache::age(entry.checked_at) < ctx.refresh,
            Freshness::CheckNow { .. } => false,
        };
        if fresh {
            ctx.cache.touch(&found);
            return Ok(found);
        }
        let strict = matches!(freshness, Freshness::CheckNow { strict: true });
        match runtime()?.block_on(Registry::new(reference, ctx.mirrors, ctx.env).current_digest()) {
            Ok(digest) if digest == entry.resolved_digest => {
                ctx.cache.write_ref(
                    image,
                    arch,
                    &RefEntry {
                        checked_at: cache::now(),
                        ..entry
                    },
                )?;
                ctx.cache.touch(&found);
                return Ok(found);
            }
            Ok(_) => ctx.reporter.message(&format!(
                "{canonical} changed in the registry; pulling the new image"
            )),
            Err(err) if !strict => {
                ctx.reporter.message(&format!(
                    "could not check {canonical} for updates, using the cached image: {err}"
                ));
                ctx.cache.touch(&found);
                return Ok(found);
            }
            Err(err) => return Err(err),
        }
    } else if freshness == Freshness::Offline {
        return Err(ImageError::NotCached {
            reference: canonical,
        });
    }

    let _lock = ctx
        .cache
        .lock_image(&canonical, &platform_name(arch), ctx.reporter)?;
    // Another process may have pulled it while we waited for the lock.
    if let Some((entry, found)) = cached(ctx, image, arch, &limits, false)?
        && cache::age(entry.checked_at) < Duration::from_secs(60)
    {
        ctx.cache.touch(&found);
        return Ok(found);
    }
    let runtime = runtime()?;
    let pulled = runtime.block_on(async {
        tokio::select! {
            found = pull(ctx, image, reference, arch, &limits) => found,
            _ = crate::signals::requested() => Err(ImageError::Interrupted),
        }
    });
    // Dropping the runtime waits for the pull's blocking tasks; then nothing of it is in flight.
    drop(runtime);
    if matches!(pulled, Err(ImageError::Interrupted)) {
        ctx.cache.remove_own_temporaries();
    }
    let found = pulled?;
    ctx.cache.touch(&found);
    Ok(found)
}

/// The cached image a reference record names. With `repair`, an entry found damaged (or gone) is
/// unpacked again from the blob cache when it has everything needed; otherwise `None`, and the
/// caller pulls.
fn cached(
    ctx: &PullContext,
    image: &ImageRef,
    arch: Architecture,
    limits: &Limits,
    repair: bool,
) -> Result<Option<(RefEntry, CachedImage)>, ImageError> {
    let Some(entry) = ctx.cache.read_ref(image, arch) else {
        return Ok(None);
    };
    match ctx.cache.lookup(&entry.reference, &entry.manifest_digest) {
        Lookup::Ready(found) => Ok(Some((entry, *found))),
        _ if !repair => Ok(None),
        Lookup::Absent | Lookup::Damaged(_) => {
            Ok(
                super::repair::repair(ctx.cache, &entry, limits, ctx.reporter)?
                    .map(|found| (entry, found)),
            )
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ImageError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ImageError::Cache {
            path: Default::default(),
            message: format!("cannot start the async runtime: {e}"),
        })
}

async fn pull(
    ctx: &PullContext<'_>,
    image: &ImageRef,
    reference: &oci_client::Reference,
    arch: Architecture,
    limits: &Limits,
) -> Result<CachedImage, ImageError> {
    ctx.cache.clean_stale_temporaries();
    let registry = Registry::new(reference, ctx.mirrors, ctx.env);
    let resolved = registry.resolve(arch).await?;
    let canonical = image.canonical();
    let entry = resolved.ref_entry(canonical.clone(), arch);
    // Kept so that a damaged image can be unpacked again without the registry.
    ctx.cache
        .store_blob(&resolved.manifest_digest, &resolved.manifest_bytes)?;
    ctx.cache
        .store_blob(&resolved.manifest.config.digest, &resolved.config)?;
    if let Some(found) = ctx.cache.load(&canonical, &resolved.manifest_digest) {
        ctx.cache.write_ref(image, arch, &entry)?;
        return Ok(found);
    }
    check_declared_total(&canonical, &resolved, limits)?;
    fetch_blobs(ctx, &registry, &resolved).await?;
    let platform = platform_name(arch);
    let unpack_now = || unpack(ctx.cache, &canonical, &platform, &resolved, limits);
    let found = match tokio::task::block_in_place(unpack_now) {
        // A cached blob went bad on disk: it was deleted; fetch it again once.
        Err(ImageError::Digest { digest, .. }) => {
            ctx.reporter.message(&format!(
                "cached blob {digest} was corrupted; downloading it again"
            ));
            fetch_blobs(ctx, &registry, &resolved).await?;
            tokio::task::block_in_place(unpack_now)?
        }
        other => other?,
    };
    ctx.cache.write_ref(image, arch, &entry)?;
    Ok(found)
}

/// Layers whose declared sizes add up to more than an image within the limit can need are refused
/// before anything is downloaded.
pub(super) fn check_declared_total(
    canonical: &str,
    resolved: &Resolved,
    limits: &Limits,
) -> Result<(), ImageError> {
    let total = resolved
        .manifest
        .layers
        .iter()
        .map(|l| u64::try_from(l.size).unwrap_or(0))
        .fold(0u64, u64::saturating_add);
    if total > limits.max_download_bytes() {
        return Err(ImageError::Limit {
            reference: canonical.into(),
            message: format!(
                "its layers declare {total} bytes, more than an image of at most {} bytes unpacked can have (the limit, LAMINA_MAX_IMAGE_BYTES)",
                limits.max_image_bytes
            ),
        });
    }
    Ok(())
}

/// Downloads the layers the cache does not have yet, several at once.
async fn fetch_blobs(
    ctx: &PullContext<'_>,
    registry: &Registry,
    resolved: &Resolved,
) -> Result<(), ImageError> {
    let missing: Vec<_> = resolved
        .manifest
        .layers
        .iter()
        .filter(|l| !ctx.cache.blob_path(&l.digest).is_file())
        .collect();
    futures_util::stream::iter(missing)
        .map(|layer| async move {
            // Named after this process, so that a kill -9 leaves nothing the next pull keeps.
            let tmp = ctx.cache.temp_file()?;
            registry.download(layer, &tmp, ctx.reporter).await?;
            let dest = ctx.cache.blob_path(&layer.digest);
            tmp.persist(&dest)
                .map_err(|e| ImageError::cache(&dest, e.error))?;
            Ok::<(), ImageError>(())
        })
        .buffer_unordered(PARALLEL_DOWNLOADS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Unpacks the verified layers in order into a staging directory, makes the sandbox's mount
/// points, and publishes it. A layer blob that no longer matches its digest is deleted and
/// reported as `ImageError::Digest`.
pub(super) fn unpack(
    cache: &Cache,
    canonical: &str,
    platform: &str,
    resolved: &Resolved,
    limits: &Limits,
) -> Result<CachedImage, ImageError> {
    let staging = cache.staging()?;
    let rootfs = staging.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|e| ImageError::cache(&rootfs, e))?;
    let privilege = Privilege::current();
    let mut unpacker = Unpacker::new(&rootfs, privilege, *limits);
    for layer in &resolved.manifest.layers {
        let path = cache.blob_path(&layer.digest);
        let layer_error = |source| ImageError::Layer {
            reference: canonical.into(),
            layer: layer.digest.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(|e| ImageError::cache(&path, e))?;
        // The blob is hashed again as it is read: a blob corrupted on disk since its download is
        // detected here, deleted, and fetched again by the next pull.
        let mut reader = HashingReader {
            inner: std::io::BufReader::new(file),
            hasher: Sha256::new(),
        };
        let result = match decompressor(&layer.media_type, &mut reader) {
            Ok(stream) => unpacker.apply(stream).map_err(layer_error),
            Err(message) => Err(ImageError::Registry {
                reference: canonical.into(),
                endpoint: "the image".into(),
                message,
            }),
        };
        // Drain what the tar reader left (padding) so the hash covers the whole blob.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        let actual = format!("sha256:{}", hex::encode(reader.hasher.finalize()));
        if actual != layer.digest {
            let _ = std::fs::remove_file(&path);
            return Err(ImageError::Digest {
                reference: canonical.into(),
                digest: layer.digest.clone(),
                actual,
            });
        }
        result?;
    }
    let unpacked_bytes = unpacker.unpacked_bytes();
    unpacker.finish().map_err(|source| ImageError::Layer {
        reference: canonical.into(),
        layer: "(directories)".into(),
        source,
    })?;
    targets::create(&rootfs)
        .map_err(|e| ImageError::cache(&rootfs, format!("cannot make the mount points: {e}")))?;

    let run_config =
        RunConfig::from_image_config(&resolved.config).map_err(|e| ImageError::Registry {
            reference: canonical.into(),
            endpoint: "the image".into(),
            message: format!("bad image config: {e}"),
        })?;
    let meta = ImageMeta {
        manifest_digest: resolved.manifest_digest.clone(),
        platform: platform.into(),
        config_digest: resolved.manifest.config.digest.clone(),
        layers: resolved
            .manifest
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .collect(),
        run_config,
        size: tree_size(&rootfs),
        unpacked_as: if privilege == Privilege::Root {
            "root"
        } else {
            "unprivileged"
        }
        .into(),
        created_at: cache::now(),
    };
    tracing::debug!(canonical, unpacked_bytes, "unpacked");
    let meta_path = staging.path().join("meta.json");
    std::fs::write(
        &meta_path,
        serde_json::to_vec_pretty(&meta).expect("serialisable"),
    )
    .map_err(|e| ImageError::cache(&meta_path, e))?;
    let dir = cache.publish(staging, &resolved.manifest_digest)?;
    Ok(CachedImage {
        reference: canonical.into(),
        rootfs: dir.join("rootfs"),
        dir,
        meta,
    })
}

fn decompressor<'a>(
    media_type: &str,
    reader: &'a mut dyn Read,
) -> Result<Box<dyn Read + 'a>, String> {
    if media_type.ends_with("gzip") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if media_type.ends_with("zstd") {
        zstd::stream::read::Decoder::new(reader)
            .map(|d| Box::new(d) as Box<dyn Read>)
            .map_err(|e| e.to_string())
    } else if media_type.ends_with(".tar") || media_type.ends_with("tar") {
        Ok(Box::new(reader))
    } else {
        Err(format!("unsupported layer media type {media_type}"))
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn tree_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}
