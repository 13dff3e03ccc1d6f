//! Images from a local OCI image-layout directory, `oci:PATH[:TAG]` (what `skopeo copy … oci:DIR:TAG`,
//! `buildah push … oci:DIR` and `docker buildx build --output type=oci,tar=false` write).
//!
//! `oci-layout` is checked, `index.json` names the manifest by its
//! `org.opencontainers.image.ref.name` annotation, a nested image index is followed to our platform
//! (the registry's choice and messages), and every blob is checked against its sha256 as it is
//! read, or hard-linked (copied across file systems) into the blob cache. `pull::unpack` then builds
//! and publishes the rootfs as for a registry image.
//!
//! Cache blobs may be hard links to the layout's files: like every cache blob, they are replaced
//! by rename and never written in place.
//!
//! A layout is local, so there is no freshness check: `index.json` is read again on every use (it
//! and the manifest and config are a few kilobytes) and a manifest already unpacked is not copied
//! again.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, ImageIndexEntry,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex, OciImageManifest,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::cache::{Cache, CachedImage, Lookup};
use super::limits::{DeclaredSize, Limits, MAX_METADATA_BYTES};
use super::pull::{self, PullContext};
use super::registry::{self, Resolved};
use super::{ImageError, ImageRef, Reporter, platform_name};
use crate::runtimes::Architecture;
use crate::template::normalize;

type Result<T> = std::result::Result<T, ImageError>;

/// What starts a layout reference.
pub const PREFIX: &str = "oci:";
/// The annotation of an `index.json` entry that holds its tag.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `oci:PATH[:TAG]`, with PATH absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRef {
    pub path: PathBuf,
    /// The `org.opencontainers.image.ref.name` to pick; `None` when the layout holds one image.
    pub tag: Option<String>,
}

impl LayoutRef {
    /// Parses `oci:PATH[:TAG]`. As in skopeo, the first `:` after `oci:` ends PATH (a path cannot
    /// hold a `:`, a tag can). A relative PATH is taken from the current directory; [`anchor`]
    /// takes it from elsewhere first.
    pub fn parse(text: &str) -> Result<LayoutRef> {
        let invalid = |message: &str| ImageError::InvalidReference {
            reference: text.into(),
            message: message.into(),
        };
        let (path, tag) = split(text.strip_prefix(PREFIX).unwrap_or(text));
        if path.is_empty() {
            return Err(invalid("expected oci:PATH or oci:PATH:TAG"));
        }
        if tag.is_some_and(str::is_empty) {
            return Err(invalid("the tag after PATH: is empty"));
        }
        let path = std::path::absolute(path).map_err(|e| invalid(&e.to_string()))?;
        Ok(LayoutRef {
            path: normalize(&path),
            tag: tag.map(str::to_string),
        })
    }

    /// `oci:/absolute/path` or `oci:/absolute/path:tag`: the cache key.
    pub fn canonical(&self) -> String {
        match &self.tag {
            Some(tag) => format!("{PREFIX}{}:{tag}", self.path.display()),
            None => format!("{PREFIX}{}", self.path.display()),
        }
    }
}

fn split(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (rest, None),
    }
}

/// `reference` with a relative `oci:` PATH taken from `base` (the template's directory for
/// `ImageUri`, the current directory for `--invoke-image`); any other reference unchanged.
pub fn anchor(reference: &str, base: &Path) -> String {
    let Some(rest) = reference.strip_prefix(PREFIX) else {
        return reference.to_string();
    };
    let (path, tag) = split(rest);
    if path.is_empty() || Path::new(path).is_absolute() {
        return reference.to_string();
    }
    LayoutRef {
        path: normalize(&base.join(path)),
        tag: tag.map(str::to_string),
    }
    .canonical()
}

/// Gets the image `layout` names for `arch` into the cache; `image` is the same reference.
pub(super) fn ensure(
    ctx: &PullContext,
    image: &ImageRef,
    layout: &LayoutRef,
    arch: Architecture,
    limits: &Limits,
) -> Result<CachedImage> {
    let source = Layout::open(layout)?;
    let resolved = source.resolve(layout.tag.as_deref(), arch)?;
    let canonical = image.canonical();
    let found = match ctx.cache.load(&canonical, &resolved.manifest_digest) {
        Some(found) => found,
        None => {
            let platform = platform_name(arch);
            let _lock = ctx.cache.lock_image(&canonical, &platform, ctx.reporter)?;
            // Another process may have unpacked it while we waited for the lock.
            match ctx.cache.lookup(&canonical, &resolved.manifest_digest) {
                Lookup::Ready(found) => *found,
                state => {
                    if let Lookup::Damaged(reason) = state {
                        ctx.reporter.message(&format!(
                            "cached image {canonical} ({platform}) is damaged: {reason}; unpacking it again"
                        ));
                    }
                    ctx.cache.clean_stale_temporaries();
                    source.unpack(ctx.cache, &resolved, &platform, limits, ctx.reporter)?
                }
            }
        }
    };
    let entry = resolved.ref_entry(canonical, arch);
    let known = ctx.cache.read_ref(image, arch);
    if known.is_none_or(|k| {
        k.manifest_digest != entry.manifest_digest || k.resolved_digest != entry.resolved_digest
    }) {
        ctx.cache.write_ref(image, arch, &entry)?;
    }
    ctx.cache.touch(&found);
    Ok(found)
}

/// A layout directory whose `oci-layout` file has been checked.
struct Layout {
    dir: PathBuf,
    /// The canonical reference, for messages and the cache.
    reference: String,
}

impl Layout {
    fn open(layout: &LayoutRef) -> Result<Layout> {
        let this = Layout {
            dir: layout.path.clone(),
            reference: layout.canonical(),
        };
        let dir = this.dir.display();
        match std::fs::metadata(&this.dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(this.error(format!("{dir} is not a directory"))),
            Err(err) => return Err(this.error(format!("cannot open {dir}: {err}"))),
        }
        let marker = this.dir.join("oci-layout");
        let bytes = match std::fs::read(&marker) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(this.error(format!(
                    "{dir} is not an OCI image layout (it has no oci-layout file)"
                )));
            }
            Err(err) => {
                return Err(this.error(format!("cannot read {}: {err}", marker.display())));
            }
        };
        let version = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| Some(v.get("imageLayoutVersion")?.as_str()?.to_string()));
        match version {
            Some(version) if version.starts_with("1.") => Ok(this),
            Some(version) => Err(this.error(format!(
                "{} has imageLayoutVersion {version}; lamina reads version 1",
                marker.display()
            ))),
            None => Err(this.error(format!(
                "{} is not an oci-layout file (no imageLayoutVersion)",
                marker.display()
            ))),
        }
    }

    fn error(&self, message: impl Into<String>) -> ImageError {
        ImageError::Layout {
            reference: self.reference.clone(),
            message: message.into(),
        }
    }

    /// The manifest `index.json` names for `tag` (or its only image), followed to `arch`.
    fn resolve(&self, tag: Option<&str>, arch: Architecture) -> Result<Resolved> {
        let index_path = self.dir.join("index.json");
        let read_error =
            |e: io::Error| self.error(format!("cannot read {}: {e}", index_path.display()));
        let mut file = std::fs::File::open(&index_path).map_err(read_error)?;
        let bytes = crate::limits::read_capped(&mut file, MAX_METADATA_BYTES)
            .map_err(read_error)?
            .ok_or_else(|| {
                self.error(format!(
                    "{} is larger than {MAX_METADATA_BYTES} bytes (lamina's limit for manifests and configs)",
                    index_path.display()
                ))
            })?;
        let index: OciImageIndex = self.parse(&index_path, &bytes)?;
        let mut tags: Vec<&str> = Vec::new();
        for name in index.manifests.iter().filter_map(ref_name) {
            if !tags.contains(&name) {
                tags.push(name);
            }
        }
        let has = || match tags.as_slice() {
            [] => "it has no tagged images".to_string(),
            tags => format!("it has: {}", tags.join(", ")),
        };
        let candidates: Vec<&ImageIndexEntry> = index
            .manifests
            .iter()
            .filter(|e| tag.is_none_or(|t| ref_name(e) == Some(t)))
            .collect();
        if index.manifests.is_empty() {
            return Err(self.error(format!("{} lists no images", index_path.display())));
        }
        match tag {
            Some(tag) if candidates.is_empty() => {
                return Err(self.error(format!(
                    "no image tagged `{tag}` in {}; {}",
                    index_path.display(),
                    has()
                )));
            }
            None if tags.len() > 1 => {
                return Err(self.error(format!(
                    "{} holds several images; name one as {}:TAG ({})",
                    index_path.display(),
                    self.reference,
                    has()
                )));
            }
            _ => {}
        }
        // Several entries under one tag are one image for several platforms.
        let entry = match candidates.as_slice() {
            [one] => *one,
            many => registry::choose_platform(many, arch, &self.reference)?,
        };
        let (entry, index_digest) = if is_index(&entry.media_type) {
            let nested: OciImageIndex = self.parse_blob(&entry.digest, entry.size)?;
            let entries: Vec<&ImageIndexEntry> = nested.manifests.iter().collect();
            let chosen = registry::choose_platform(&entries, arch, &self.reference)?;
            (chosen.clone(), Some(entry.digest.clone()))
        } else {
            (entry.clone(), None)
        };
        if is_index(&entry.media_type) {
            return Err(self.error(registry::NESTED_INDEX));
        }
        if ![OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE].contains(&entry.media_type.as_str()) {
            return Err(self.error(format!(
                "{} is a {}, not an image manifest",
                entry.digest, entry.media_type
            )));
        }
        let manifest_bytes = self.read_blob(&entry.digest, entry.size)?;
        let manifest: OciImageManifest =
            self.parse(&self.blob_path(&entry.digest)?, &manifest_bytes)?;
        let config = self.read_blob(&manifest.config.digest, manifest.config.size)?;
        registry::check_architecture(&config, arch, &self.reference)?;
        Ok(Resolved {
            manifest,
            manifest_digest: entry.digest,
            index_digest,
            config,
            manifest_bytes,
        })
    }

    fn parse<T: DeserializeOwned>(&self, path: &Path, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes)
            .map_err(|e| self.error(format!("{} is not valid: {e}", path.display())))
    }

    /// `blobs/sha256/<hex>`; anything but a well-formed sha256 digest is refused, so a digest
    /// cannot name a file outside the layout.
    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        match digest.strip_prefix("sha256:") {
            Some(hex)
                if hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(self.dir.join("blobs/sha256").join(hex))
            }
            _ => Err(self.error(format!(
                "unsupported digest `{digest}` (lamina reads sha256 blobs)"
            ))),
        }
    }

    fn open_blob(&self, digest: &str) -> Result<(PathBuf, std::fs::File)> {
        let path = self.blob_path(digest)?;
        // A symlink would be linked into the cache as a symlink, and a FIFO would block the read:
        // blobs must be plain files.
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && !meta.is_file()
        {
            return Err(self.error(format!(
                "blob {digest} is not a regular file ({})",
                path.display()
            )));
        }
        match std::fs::File::open(&path) {
            Ok(file) => Ok((path, file)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Err(self.error(format!("blob {digest} is missing ({})", path.display())))
            }
            Err(err) => Err(self.error(format!("cannot read {}: {err}", path.display()))),
        }
    }

    /// A small blob (index, manifest, config) of `declared` bytes, read whole (at most
    /// `MAX_METADATA_BYTES`) and verified.
    fn read_blob(&self, digest: &str, declared: i64) -> Result<Vec<u8>> {
        let (path, mut file) = self.open_blob(digest)?;
        let size_error = |e: String| ImageError::Limit {
            reference: self.reference.clone(),
            message: format!("blob {digest} ({}) {e}", path.display()),
        };
        let mut size = DeclaredSize::new(declared).map_err(size_error)?;
        let cap = MAX_METADATA_BYTES.min(size.declared());
        let bytes = crate::limits::read_capped(&mut file, cap)
            .map_err(|e| self.error(format!("cannot read {}: {e}", path.display())))?
            .ok_or_else(|| {
                size_error(if cap < MAX_METADATA_BYTES {
                    format!("is larger than the {cap} bytes its descriptor declares")
                } else {
                    format!(
                        "is larger than {MAX_METADATA_BYTES} bytes (lamina's limit for manifests and configs)"
                    )
                })
            })?;
        size.pass(bytes.len())
            .and_then(|()| size.finish())
            .map_err(size_error)?;
        self.verify(&path, digest, &sha256_digest(&bytes))?;
        Ok(bytes)
    }

    fn parse_blob<T: DeserializeOwned>(&self, digest: &str, declared: i64) -> Result<T> {
        let bytes = self.read_blob(digest, declared)?;
        self.parse(&self.blob_path(digest)?, &bytes)
    }

    fn verify(&self, path: &Path, digest: &str, actual: &str) -> Result<()> {
        if actual == digest {
            return Ok(());
        }
        tracing::error!(path = %path.display(), digest, actual, "layout blob does not match its digest");
        Err(self.error(format!(
            "{} is corrupt: its content does not match digest {digest}",
            path.display()
        )))
    }

    /// Puts the layers, manifest and config into the blob cache, then unpacks and publishes the
    /// image.
    fn unpack(
        &self,
        cache: &Cache,
        resolved: &Resolved,
        platform: &str,
        limits: &Limits,
        reporter: &dyn Reporter,
    ) -> Result<CachedImage> {
        pull::check_declared_total(&self.reference, resolved, limits)?;
        self.import_layers(cache, resolved, reporter)?;
        cache.store_blob(&resolved.manifest_digest, &resolved.manifest_bytes)?;
        cache.store_blob(&resolved.manifest.config.digest, &resolved.config)?;
        match pull::unpack(cache, &self.reference, platform, resolved, limits) {
            // A blob the cache already had went bad on disk; unpack deleted it.
            Err(ImageError::Digest { digest, .. }) => {
                reporter.message(&format!(
                    "cached blob {digest} was corrupted; taking it from the layout again"
                ));
                self.import_layers(cache, resolved, reporter)?;
                pull::unpack(cache, &self.reference, platform, resolved, limits)
            }
            other => other,
        }
    }

    /// Hard-links (or copies) each layer the blob cache lacks into it, checking its digest and its
    /// declared size on the way; a blob that fails a check leaves nothing in the cache.
    fn import_layers(
        &self,
        cache: &Cache,
        resolved: &Resolved,
        reporter: &dyn Reporter,
    ) -> Result<()> {
        let tmp_dir = cache.root().join("tmp");
        // Named like staging, so the leftovers of a killed import are cleaned up.
        let temp = cache.temp_builder();
        for layer in &resolved.manifest.layers {
            let dest = cache.blob_path(&layer.digest);
            if dest.is_file() {
                continue;
            }
            let (source, mut file) = self.open_blob(&layer.digest)?;
            let size_error = |e: String| ImageError::Limit {
                reference: self.reference.clone(),
                message: format!("layer {} ({}) {e}", layer.digest, source.display()),
            };
            let mut size = DeclaredSize::new(layer.size).map_err(size_error)?;
            reporter.blob_started(&layer.digest, size.declared());
            let progress = |bytes| reporter.blob_progress(&layer.digest, bytes);
            let copy_error = |e: io::Error| match e.downcast::<SizeError>() {
                Ok(SizeError(message)) => size_error(message),
                Err(e) => ImageError::cache(&tmp_dir, format!("copying {}: {e}", source.display())),
            };
            let (tmp, actual) = match temp
                .make_in(&tmp_dir, |path| std::fs::hard_link(&source, path))
            {
                Ok(linked) => {
                    let actual = copy_hashed(&mut file, &mut io::sink(), &mut size, &progress)
                        .map_err(copy_error)?;
                    (linked.into_temp_path(), actual)
                }
                // Another file system, or a file we may not link (fs.protected_hardlinks).
                Err(_) => {
                    let mut copy = temp.tempfile_in(&tmp_dir).map_err(copy_error)?;
                    let actual = copy_hashed(&mut file, copy.as_file_mut(), &mut size, &progress)
                        .map_err(copy_error)?;
                    copy.as_file().sync_all().map_err(copy_error)?;
                    (copy.into_temp_path(), actual)
                }
            };
            self.verify(&source, &layer.digest, &actual)?;
            tmp.persist(&dest)
                .map_err(|e| ImageError::cache(&dest, e.error))?;
            reporter.blob_finished(&layer.digest);
        }
        Ok(())
    }
}

fn ref_name(entry: &ImageIndexEntry) -> Option<&str> {
    entry
        .annotations
        .as_ref()?
        .get(REF_NAME)
        .map(String::as_str)
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_IMAGE_INDEX_MEDIA_TYPE || media_type == IMAGE_MANIFEST_LIST_MEDIA_TYPE
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A blob that is not of its declared size, carried through `io::Error`.
#[derive(Debug)]
struct SizeError(String);

impl std::fmt::Display for SizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SizeError {}

/// Copies `from` into `to`, checking the bytes against `size` as they pass; returns the digest of
/// what passed (`sha256:<hex>`).
fn copy_hashed(
    from: &mut impl Read,
    to: &mut impl Write,
    size: &mut DeclaredSize,
    progress: &dyn Fn(u64),
) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        size.pass(n).map_err(|e| io::Error::other(SizeError(e)))?;
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        progress(n as u64);
    }
    size.finish().map_err(|e| io::Error::other(SizeError(e)))?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const MANIFEST: &str = OCI_IMAGE_MEDIA_TYPE;

    /// A layout written by hand in a temporary directory.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
            std::fs::write(
                dir.path().join("oci-layout"),
                r#"{"imageLayoutVersion": "1.0.0"}"#,
            )
            .unwrap();
            Fixture { dir }
        }

        fn blob(&self, bytes: &[u8]) -> String {
            let digest = sha256_digest(bytes);
            std::fs::write(self.blob_file(&digest), bytes).unwrap();
            digest
        }

        fn blob_file(&self, digest: &str) -> PathBuf {
            self.dir
                .path()
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        }

        /// An image for `arch` with one layer (`name` makes it unique); returns the manifest digest.
        fn image(&self, arch: &str, name: &str) -> String {
            let config_bytes = json!({"architecture": arch, "os": "linux"}).to_string();
            let config = self.blob(config_bytes.as_bytes());
            let layer_bytes = format!("layer of {name} for {arch}");
            let layer = self.blob(layer_bytes.as_bytes());
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_bytes.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_bytes.len()}],
            });
            self.blob(manifest.to_string().as_bytes())
        }

        fn index(&self, manifests: &[Value]) {
            let index = json!({"schemaVersion": 2, "manifests": manifests});
            std::fs::write(self.dir.path().join("index.json"), index.to_string()).unwrap();
        }

        fn nested_index(&self, manifests: &[Value]) -> String {
            let index = json!({"schemaVersion": 2, "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE, "manifests": manifests});
            self.blob(index.to_string().as_bytes())
        }

        fn reference(&self, tag: Option<&str>) -> LayoutRef {
            LayoutRef {
                path: self.dir.path().to_path_buf(),
                tag: tag.map(str::to_string),
            }
        }

        fn resolve(&self, tag: Option<&str>, arch: Architecture) -> Result<Resolved> {
            Layout::open(&self.reference(tag))?.resolve(tag, arch)
        }
    }

    impl Fixture {
        /// An index entry for the blob `digest`, with its size.
        fn entry(
            &self,
            media_type: &str,
            digest: &str,
            tag: Option<&str>,
            arch: Option<&str>,
        ) -> Value {
            let size = std::fs::metadata(self.blob_file(digest)).map_or(1, |m| m.len());
            entry_of(media_type, digest, size, tag, arch)
        }
    }

    fn entry_of(
        media_type: &str,
        digest: &str,
        size: u64,
        tag: Option<&str>,
        arch: Option<&str>,
    ) -> Value {
        let mut entry = json!({"mediaType": media_type, "digest": digest, "size": size});
        if let Some(tag) = tag {
            entry["annotations"] = json!({REF_NAME: tag});
        }
        if let Some(arch) = arch {
            entry["platform"] = json!({"architecture": arch, "os": "linux"});
        }
        entry
    }

    #[test]
    fn blobs_must_be_plain_files() {
        let fixture = Fixture::new();
        let digest = fixture.blob(b"layer");
        let file = fixture.blob_file(&digest);
        let elsewhere = file.with_file_name("elsewhere");
        std::fs::rename(&file, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        let layout = Layout::open(&fixture.reference(None)).unwrap();
        let err = layout
            .open_blob(&digest)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a regular file"), "{err}");
    }

    fn message<T>(result: Result<T>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn test_layout_parse_and_canonical() {
        let parsed = LayoutRef::parse("oci:/a/./b/../c:v1").unwrap();
        assert_eq!(parsed.path, Path::new("/a/c"));
        assert_eq!(parsed.tag.as_deref(), Some("v1"));
        assert_eq!(parsed.canonical(), "oci:/a/c:v1");
        // The first `:` ends the path, as in skopeo.
        let parsed = LayoutRef::parse("oci:/a:docker.io/x:1").unwrap();
        assert_eq!(
            (parsed.path.as_path(), parsed.tag.as_deref()),
            (Path::new("/a"), Some("docker.io/x:1"))
        );
        let relative = LayoutRef::parse("oci:some/dir").unwrap();
        assert_eq!(
            relative.path,
            std::env::current_dir().unwrap().join("some/dir")
        );
        assert_eq!(relative.tag, None);
        for bad in ["oci:", "oci::tag", "oci:/a:"] {
            assert!(LayoutRef::parse(bad).is_err(), "{bad} should be invalid");
        }
        assert_eq!(
            ImageRef::parse("oci:/x").unwrap().canonical(),
            "oci:/x",
            "an ImageRef"
        );
    }

    #[test]
    fn test_layout_anchor() {
        let base = Path::new("/project/stack");
        assert_eq!(
            anchor("oci:../images/app:1", base),
            "oci:/project/images/app:1"
        );
        assert_eq!(anchor("oci:app", base), "oci:/project/stack/app");
        assert_eq!(anchor("oci:/abs/app:2", base), "oci:/abs/app:2");
        assert_eq!(anchor("public.ecr.aws/x:1", base), "public.ecr.aws/x:1");
    }

    #[test]
    fn test_layout_resolve_by_tag() {
        let layout = Fixture::new();
        let (a, b) = (layout.image("amd64", "a"), layout.image("amd64", "b"));
        layout.index(&[
            layout.entry(MANIFEST, &a, Some("a"), None),
            layout.entry(MANIFEST, &b, Some("b"), None),
        ]);
        assert_ne!(a, b);
        let resolved = layout.resolve(Some("b"), Architecture::X86_64).unwrap();
        assert_eq!(resolved.manifest_digest, b);
        assert_eq!(resolved.index_digest, None);
        assert_eq!(resolved.manifest.layers.len(), 1);
        let err = message(layout.resolve(Some("c"), Architecture::X86_64));
        assert!(
            err.contains("no image tagged `c`") && err.ends_with("index.json; it has: a, b"),
            "{err}"
        );
        let err = message(layout.resolve(None, Architecture::X86_64));
        assert!(
            err.contains("holds several images; name one as oci:")
                && err.contains("(it has: a, b)"),
            "{err}"
        );
        // The only image needs no tag.
        layout.index(&[layout.entry(MANIFEST, &a, None, None)]);
        assert_eq!(
            layout
                .resolve(None, Architecture::X86_64)
                .unwrap()
                .manifest_digest,
            a
        );
        layout.index(&[]);
        assert!(message(layout.resolve(None, Architecture::X86_64)).contains("lists no images"));
    }

    #[test]
    fn test_layout_resolve_platforms() {
        let layout = Fixture::new();
        let (amd, arm) = (layout.image("amd64", "x"), layout.image("arm64", "x"));
        let both = layout.nested_index(&[
            layout.entry(MANIFEST, &amd, None, Some("amd64")),
            layout.entry(MANIFEST, &arm, None, Some("arm64")),
        ]);
        layout.index(&[layout.entry(OCI_IMAGE_INDEX_MEDIA_TYPE, &both, Some("1"), None)]);
        for (arch, digest) in [(Architecture::X86_64, &amd), (Architecture::Arm64, &arm)] {
            let resolved = layout.resolve(Some("1"), arch).unwrap();
            assert_eq!(&resolved.manifest_digest, digest);
            assert_eq!(resolved.index_digest.as_deref(), Some(both.as_str()));
        }
        // The registry's message when the index lacks the platform.
        let amd_only = layout.nested_index(&[layout.entry(MANIFEST, &amd, None, Some("amd64"))]);
        layout.index(&[layout.entry(OCI_IMAGE_INDEX_MEDIA_TYPE, &amd_only, None, None)]);
        let err = message(layout.resolve(None, Architecture::Arm64));
        assert!(
            err.ends_with("` has no image for linux/arm64; it has: linux/amd64"),
            "{err}"
        );
        // Several entries under one tag in index.json itself.
        layout.index(&[
            layout.entry(MANIFEST, &amd, Some("1"), Some("amd64")),
            layout.entry(MANIFEST, &arm, Some("1"), Some("arm64")),
        ]);
        let resolved = layout.resolve(Some("1"), Architecture::Arm64).unwrap();
        assert_eq!(resolved.manifest_digest, arm);
        // A single manifest is checked against its config.
        layout.index(&[layout.entry(MANIFEST, &amd, None, None)]);
        let err = message(layout.resolve(None, Architecture::Arm64));
        assert!(
            err.contains("has no image for linux/arm64; it has: linux/amd64"),
            "{err}"
        );
    }

    #[test]
    fn test_layout_bad_layouts_and_blobs() {
        let missing = LayoutRef {
            path: PathBuf::from("/nonexistent/layout"),
            tag: None,
        };
        let err = message(Layout::open(&missing).map(|_| ()));
        assert!(
            err.starts_with("`oci:/nonexistent/layout`: cannot open /nonexistent/layout"),
            "{err}"
        );

        let layout = Fixture::new();
        let image = layout.image("amd64", "x");
        layout.index(&[layout.entry(MANIFEST, &image, Some("1"), None)]);
        std::fs::write(
            layout.dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion": "2.0.0"}"#,
        )
        .unwrap();
        assert!(
            message(layout.resolve(None, Architecture::X86_64))
                .contains("imageLayoutVersion 2.0.0")
        );
        std::fs::remove_file(layout.dir.path().join("oci-layout")).unwrap();
        assert!(
            message(layout.resolve(None, Architecture::X86_64))
                .contains("is not an OCI image layout (it has no oci-layout file)")
        );
        let layout = Fixture::new();
        let image = layout.image("amd64", "x");

        // A digest that would name a file outside blobs/ is refused before any file is opened.
        layout.index(&[layout.entry(MANIFEST, "sha256:../../../../etc/passwd", None, None)]);
        assert!(message(layout.resolve(None, Architecture::X86_64)).contains("unsupported digest"));

        layout.index(&[layout.entry(MANIFEST, &image, None, None)]);
        let file = layout.blob_file(&image);
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        bad[0] ^= 1;
        std::fs::write(&file, &bad).unwrap();
        let err = message(layout.resolve(None, Architecture::X86_64));
        assert!(
            err.contains(&format!(
                "{} is corrupt: its content does not match digest {image}",
                file.display()
            )),
            "{err}"
        );
        std::fs::remove_file(&file).unwrap();
        let err = message(layout.resolve(None, Architecture::X86_64));
        assert!(
            err.contains(&format!("blob {image} is missing ({})", file.display())),
            "{err}"
        );
    }

    #[test]
    fn test_layout_import_verifies_each_layer() {
        let layout = Fixture::new();
        let image = layout.image("amd64", "x");
        layout.index(&[layout.entry(MANIFEST, &image, None, None)]);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(cache_dir.path()).unwrap();
        let opened = Layout::open(&layout.reference(None)).unwrap();
        let resolved = opened.resolve(None, Architecture::X86_64).unwrap();
        let digest = &resolved.manifest.layers[0].digest;

        let file = layout.blob_file(digest);
        let good = std::fs::read(&file).unwrap();
        let mut flipped = good.clone();
        flipped[0] ^= 1;
        std::fs::write(&file, &flipped).unwrap();
        let err = message(opened.import_layers(&cache, &resolved, &super::super::QuietReporter));
        assert!(err.contains("is corrupt"), "{err}");
        // Longer or shorter than its descriptor says: refused as it is read.
        for (bytes, says) in [
            (
                &good[..good.len() - 1],
                "has 19 bytes, but its descriptor declares 20",
            ),
            (
                &[&good[..], b"x"].concat()[..],
                "is larger than the 20 bytes its descriptor declares",
            ),
        ] {
            std::fs::write(&file, bytes).unwrap();
            let err =
                message(opened.import_layers(&cache, &resolved, &super::super::QuietReporter));
            assert!(
                err.contains(&format!("layer {digest} ({}) {says}", file.display())),
                "{err}"
            );
        }
        assert!(
            !cache.blob_path(digest).exists(),
            "a bad blob entered the cache"
        );
        assert_eq!(
            std::fs::read_dir(cache_dir.path().join("tmp"))
                .unwrap()
                .count(),
            0
        );

        std::fs::write(&file, &good).unwrap();
        opened
            .import_layers(&cache, &resolved, &super::super::QuietReporter)
            .unwrap();
        assert_eq!(std::fs::read(cache.blob_path(digest)).unwrap(), good);
        assert_eq!(
            std::fs::read_dir(cache_dir.path().join("tmp"))
                .unwrap()
                .count(),
            0
        );
    }
}
