//! One registry conversation (oci-client): resolve a reference to the manifest for our platform,
//! fetch its config, and download blobs into files, checking every byte against its digest.

use std::error::Error as _;
use std::path::Path;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{ImageIndexEntry, OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::reference::{Endpoint, Mirrors};
use super::{ImageError, Reporter};
use crate::runtimes::Architecture;

/// A manifest chosen for one platform, with its config blob (from a registry or an OCI layout).
pub struct Resolved {
    pub manifest: OciImageManifest,
    /// Digest of the platform manifest (the rootfs cache key).
    pub manifest_digest: String,
    /// Digest of the index it was chosen from, when the reference named an index.
    pub index_digest: Option<String>,
    pub config: Vec<u8>,
}

impl Resolved {
    /// The cache's record that `reference` (for `arch`) resolved to this, checked now.
    pub fn ref_entry(
        &self,
        reference: String,
        arch: crate::runtimes::Architecture,
    ) -> super::cache::RefEntry {
        super::cache::RefEntry {
            reference,
            platform: super::platform_name(arch),
            manifest_digest: self.manifest_digest.clone(),
            resolved_digest: self
                .index_digest
                .clone()
                .unwrap_or_else(|| self.manifest_digest.clone()),
            checked_at: super::cache::now(),
        }
    }
}

pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    /// The reference with its registry replaced by the endpoint actually spoken to.
    target: Reference,
    image: String,
    endpoint: Endpoint,
}

impl Registry {
    pub fn new(
        reference: &Reference,
        mirrors: &Mirrors,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Registry {
        let endpoint = mirrors.endpoint_for(reference.registry());
        let target = match (reference.tag(), reference.digest()) {
            (_, Some(digest)) => Reference::with_digest(
                endpoint.host.clone(),
                reference.repository().into(),
                digest.into(),
            ),
            (tag, None) => Reference::with_tag(
                endpoint.host.clone(),
                reference.repository().into(),
                tag.unwrap_or("latest").into(),
            ),
        };
        let protocol = if endpoint.insecure {
            ClientProtocol::HttpsExcept(vec![endpoint.host.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..ClientConfig::default()
        };
        Registry {
            client: Client::new(config),
            auth: super::auth::for_registry(reference.registry(), env),
            target,
            image: reference.whole(),
            endpoint,
        }
    }

    fn error(&self, err: impl std::fmt::Display) -> ImageError {
        ImageError::Registry {
            reference: self.image.clone(),
            endpoint: format!(
                "{}://{}",
                if self.endpoint.insecure {
                    "http"
                } else {
                    "https"
                },
                self.endpoint.host
            ),
            message: explain(&err.to_string()),
        }
    }

    fn oci_error(&self, err: oci_client::errors::OciDistributionError) -> ImageError {
        // reqwest hides the useful part ("Connection refused") in its source chain.
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(inner) = source {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            source = inner.source();
        }
        self.error(text)
    }

    /// The digest the reference points at now (a HEAD request): an index or a manifest digest.
    pub async fn current_digest(&self) -> Result<String, ImageError> {
        self.client
            .fetch_manifest_digest(&self.target, &self.auth)
            .await
            .map_err(|e| self.oci_error(e))
    }

    /// Resolves the reference to the manifest for `linux/<arch>` and fetches its config.
    pub async fn resolve(&self, arch: Architecture) -> Result<Resolved, ImageError> {
        let (manifest, digest) = self
            .client
            .pull_manifest(&self.target, &self.auth)
            .await
            .map_err(|e| self.oci_error(e))?;
        let (manifest, manifest_digest, index_digest) = match manifest {
            OciManifest::Image(image) => (image, digest, None),
            OciManifest::ImageIndex(index) => {
                let entries: Vec<_> = index.manifests.iter().collect();
                let entry = choose_platform(&entries, arch, &self.image)?;
                let child = self.target.clone_with_digest(entry.digest.clone());
                match self
                    .client
                    .pull_manifest(&child, &self.auth)
                    .await
                    .map_err(|e| self.oci_error(e))?
                {
                    (OciManifest::Image(image), child_digest) => {
                        (image, child_digest, Some(digest))
                    }
                    (OciManifest::ImageIndex(_), _) => return Err(self.error(NESTED_INDEX)),
                }
            }
        };
        let mut config = Vec::new();
        self.client
            .pull_blob(&self.target, &manifest.config, &mut config)
            .await
            .map_err(|e| self.oci_error(e))?;
        check_architecture(&config, arch, &self.image)?;
        Ok(Resolved {
            manifest,
            manifest_digest,
            index_digest,
            config,
        })
    }

    /// Downloads a blob into `dest` (a temporary file), verifying its sha256 on the way.
    pub async fn download(
        &self,
        blob: &OciDescriptor,
        dest: &Path,
        reporter: &dyn Reporter,
    ) -> Result<(), ImageError> {
        let cache_err = |e: std::io::Error| ImageError::cache(dest, e);
        let mut file = tokio::fs::File::create(dest).await.map_err(cache_err)?;
        reporter.blob_started(&blob.digest, u64::try_from(blob.size).unwrap_or(0));
        let mut stream = self
            .client
            .pull_blob_stream(&self.target, blob)
            .await
            .map_err(|e| self.oci_error(e))?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(e))?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(cache_err)?;
            reporter.blob_progress(&blob.digest, chunk.len() as u64);
        }
        file.flush().await.map_err(cache_err)?;
        file.sync_all().await.map_err(cache_err)?;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != blob.digest {
            let _ = tokio::fs::remove_file(dest).await;
            return Err(ImageError::Digest {
                reference: self.image.clone(),
                digest: blob.digest.clone(),
                actual,
            });
        }
        reporter.blob_finished(&blob.digest);
        Ok(())
    }
}

pub(super) const NESTED_INDEX: &str =
    "an image index points at another index, which lamina does not follow";

/// The entry of an image index for `linux/<arch>`, or an error naming the platforms it has.
pub(super) fn choose_platform<'a>(
    entries: &[&'a ImageIndexEntry],
    arch: Architecture,
    reference: &str,
) -> Result<&'a ImageIndexEntry, ImageError> {
    let platform_of = |e: &ImageIndexEntry| {
        e.platform
            .as_ref()
            .map(|p| (p.os.to_string(), p.architecture.to_string()))
    };
    if let Some(entry) = entries
        .iter()
        .find(|e| platform_of(e).is_some_and(|(os, a)| os == "linux" && a == arch.oci_arch()))
    {
        return Ok(entry);
    }
    let available = entries
        .iter()
        .filter_map(|e| platform_of(e))
        .filter(|(os, a)| os != "unknown" && a != "unknown")
        .map(|(os, a)| format!("{os}/{a}"))
        .collect();
    Err(ImageError::Platform {
        reference: reference.into(),
        wanted: arch.oci_arch().into(),
        available,
    })
}

/// A single-platform image must still be for our architecture (its config says which).
pub(super) fn check_architecture(
    config: &[u8],
    arch: Architecture,
    reference: &str,
) -> Result<(), ImageError> {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(config)
        && let Some(image_arch) = value.get("architecture").and_then(|a| a.as_str())
        && image_arch != arch.oci_arch()
    {
        return Err(ImageError::Platform {
            reference: reference.into(),
            wanted: arch.oci_arch().into(),
            available: vec![format!("linux/{image_arch}")],
        });
    }
    Ok(())
}

/// Adds the likely cause to a registry error.
fn explain(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let hint = if has(&[
        "connection refused",
        "dns error",
        "timed out",
        "error sending request",
    ]) {
        "; the registry is unreachable (hint: --skip-pull-image runs a cached image without asking the registry; LAMINA_REGISTRY_MIRROR points a registry elsewhere)"
    } else if has(&["not authorized", "401", "403", "denied"]) {
        "; access denied (hint: credentials come from ~/.docker/config.json)"
    } else if has(&[
        "manifest_unknown",
        "manifest unknown",
        "name_unknown",
        "name unknown",
        "not found",
        "404",
    ]) {
        "; no such repository or tag"
    } else {
        ""
    };
    format!("{message}{hint}")
}
