//! One registry conversation (oci-client): resolve a reference to the manifest for our platform,
//! fetch its config, and download blobs into files, checking every byte against its digest and
//! its descriptor's declared size.
//!
//! Manifests and indexes are fetched here rather than by oci-client, which reads a response body
//! whole into memory however large it is: lamina reads at most `limits::MAX_METADATA_BYTES`. The
//! authentication is still oci-client's (its token flow, then a bearer or basic header).

use std::path::Path;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, ImageIndexEntry,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest, OciManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::limits::{DeclaredSize, MAX_METADATA_BYTES};
use super::reference::{Endpoint, Mirrors};
use super::{ImageError, Reporter};
use crate::runtimes::Architecture;

/// What a manifest request accepts (as oci-client does).
const MANIFEST_TYPES: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A manifest chosen for one platform, with its config blob (from a registry or an OCI layout).
pub struct Resolved {
    pub manifest: OciImageManifest,
    /// Digest of the platform manifest (the rootfs cache key).
    pub manifest_digest: String,
    /// Digest of the index it was chosen from, when the reference named an index.
    pub index_digest: Option<String>,
    pub config: Vec<u8>,
    /// The manifest as it was read (kept in the blob cache).
    pub manifest_bytes: Vec<u8>,
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
    /// For manifest requests, which oci-client would read unbounded.
    http: reqwest::Client,
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
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .unwrap_or_default();
        Registry {
            client: Client::new(config),
            http,
            auth: super::auth::for_registry(reference.registry(), env),
            target,
            image: reference.whole(),
            endpoint,
        }
    }

    fn error(&self, err: impl std::fmt::Display) -> ImageError {
        ImageError::Registry {
            reference: self.image.clone(),
            endpoint: format!("{}://{}", self.scheme(), self.endpoint.host),
            message: explain(&err.to_string()),
        }
    }

    fn scheme(&self) -> &'static str {
        if self.endpoint.insecure {
            "http"
        } else {
            "https"
        }
    }

    fn limit(&self, message: String) -> ImageError {
        ImageError::Limit {
            reference: self.image.clone(),
            message,
        }
    }

    fn oci_error(&self, err: oci_client::errors::OciDistributionError) -> ImageError {
        self.error(error_chain(&err))
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
        let (manifest, bytes, digest) = self.manifest(&self.target, None).await?;
        let (manifest, manifest_bytes, manifest_digest, index_digest) = match manifest {
            OciManifest::Image(image) => (image, bytes, digest, None),
            OciManifest::ImageIndex(index) => {
                let entries: Vec<_> = index.manifests.iter().collect();
                let entry = choose_platform(&entries, arch, &self.image)?;
                let child = self.target.clone_with_digest(entry.digest.clone());
                match self.manifest(&child, Some(entry.size)).await? {
                    (OciManifest::Image(image), child_bytes, child_digest) => {
                        (image, child_bytes, child_digest, Some(digest))
                    }
                    (OciManifest::ImageIndex(_), _, _) => return Err(self.error(NESTED_INDEX)),
                }
            }
        };
        let config = self.config(&manifest.config).await?;
        check_architecture(&config, arch, &self.image)?;
        Ok(Resolved {
            manifest,
            manifest_digest,
            index_digest,
            config,
            manifest_bytes,
        })
    }

    /// GETs a manifest or index (`declared`: its size in the index that names it), reading at
    /// most `MAX_METADATA_BYTES`; returns it parsed, as read, and its digest.
    async fn manifest(
        &self,
        reference: &Reference,
        declared: Option<i64>,
    ) -> Result<(OciManifest, Vec<u8>, String), ImageError> {
        let token = self
            .client
            .auth(reference, &self.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.oci_error(e))?;
        let url = format!(
            "{}://{}/v2/{}/manifests/{}",
            self.scheme(),
            reference.resolve_registry(),
            reference.repository(),
            reference
                .digest()
                .unwrap_or_else(|| reference.tag().unwrap_or("latest"))
        );
        let mut request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "));
        request = match (token, &self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, _) => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| self.error(error_chain(&e)))?;
        let status = response.status();
        let header_digest = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let what = format!("manifest {}", reference.digest().unwrap_or(&self.image));
        let too_large = || {
            self.limit(format!(
                "{what} is larger than {MAX_METADATA_BYTES} bytes (lamina's limit for manifests and configs)"
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| status.is_success() && n > MAX_METADATA_BYTES)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(error_chain(&e)))?;
            if (body.len() + chunk.len()) as u64 > MAX_METADATA_BYTES {
                if !status.is_success() {
                    break;
                }
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned();
            return Err(self.error(format!("GET {url}: HTTP {status}: {}", text.trim())));
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        let expected = reference.digest().map(str::to_string).or(
            header_digest.filter(|d| d.starts_with("sha256:")), // another algorithm: not checked
        );
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(ImageError::Digest {
                reference: self.image.clone(),
                digest: expected,
                actual: digest,
            });
        }
        if let Some(declared) = declared {
            let mut size =
                DeclaredSize::new(declared).map_err(|e| self.limit(format!("{what}: {e}")))?;
            size.pass(body.len())
                .and_then(|()| size.finish())
                .map_err(|e| self.limit(format!("{what} {e}")))?;
        }
        let versioned: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| self.error(format!("{what} is not JSON: {e}")))?;
        if versioned
            .get("schemaVersion")
            .and_then(serde_json::Value::as_u64)
            != Some(2)
        {
            return Err(self.error(format!(
                "{what} is not a schema version 2 manifest (lamina reads OCI and Docker v2 manifests)"
            )));
        }
        let manifest = serde_json::from_slice(&body)
            .map_err(|e| self.error(format!("{what} is not valid: {e}")))?;
        Ok((manifest, body, digest))
    }

    /// The image config, checked against its descriptor's size and digest, at most
    /// `MAX_METADATA_BYTES` of it.
    async fn config(&self, descriptor: &OciDescriptor) -> Result<Vec<u8>, ImageError> {
        let what = format!("config blob {}", descriptor.digest);
        let mut size =
            DeclaredSize::new(descriptor.size).map_err(|e| self.limit(format!("{what}: {e}")))?;
        if size.declared() > MAX_METADATA_BYTES {
            return Err(self.limit(format!(
                "{what} declares {} bytes, more than {MAX_METADATA_BYTES} (lamina's limit for manifests and configs)",
                size.declared()
            )));
        }
        let mut stream = self
            .client
            .pull_blob_stream(&self.target, descriptor)
            .await
            .map_err(|e| self.oci_error(e))?;
        let mut config = Vec::new();
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| match size.finish() {
                Err(short) => self.limit(format!("{what} {short} (the download ended: {e})")),
                Ok(()) => self.error(error_chain(&e)),
            })?;
            size.pass(chunk.len())
                .map_err(|e| self.limit(format!("{what} {e}")))?;
            hasher.update(&chunk);
            config.extend_from_slice(&chunk);
        }
        size.finish()
            .map_err(|e| self.limit(format!("{what} {e}")))?;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != descriptor.digest {
            return Err(ImageError::Digest {
                reference: self.image.clone(),
                digest: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(config)
    }

    /// Downloads a blob into `dest` (a temporary file), verifying its sha256 and its declared size
    /// on the way: a blob longer than declared stops one chunk past the size.
    pub async fn download(
        &self,
        blob: &OciDescriptor,
        dest: &Path,
        reporter: &dyn Reporter,
    ) -> Result<(), ImageError> {
        let what = format!("layer {}", blob.digest);
        let size_error = |e: String| self.limit(format!("{what} {e}; it was discarded"));
        let mut size = DeclaredSize::new(blob.size).map_err(size_error)?;
        let cache_err = |e: std::io::Error| ImageError::cache(dest, e);
        let mut file = tokio::fs::File::create(dest).await.map_err(cache_err)?;
        reporter.blob_started(&blob.digest, size.declared());
        let mut stream = self
            .client
            .pull_blob_stream(&self.target, blob)
            .await
            .map_err(|e| self.oci_error(e))?;
        if let Some(length) = stream.content_length
            && length > size.declared()
        {
            return Err(size_error(format!(
                "is {length} bytes long, more than the {} bytes its descriptor declares",
                size.declared()
            )));
        }
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            // A blob cut short fails oci-client's digest check at its end: the size says more.
            let chunk = chunk.map_err(|e| match size.finish() {
                Err(short) => size_error(format!("{short} (the download ended: {e})")),
                Ok(()) => self.error(error_chain(&e)),
            })?;
            size.pass(chunk.len()).map_err(size_error)?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(cache_err)?;
            reporter.blob_progress(&blob.digest, chunk.len() as u64);
        }
        size.finish().map_err(size_error)?;
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

/// An error with its sources: reqwest hides the useful part ("Connection refused") in its chain.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
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
