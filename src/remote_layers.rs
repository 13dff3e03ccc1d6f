//! Layers published in AWS (`Layers: [arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION]`): fetched
//! with `lambda:GetLayerVersion`, downloaded once into the layer cache (`--layer-cache-basedir`,
//! default `~/.aws-sam/layers-pkg`) and reused offline after that.
//!
//! The cache has SAM's layout, so SAM and lamina share it: `<cache>/<name>/` holds the unzipped
//! layer, where `<name>` is `<layer>-<version>-<first 10 hex of sha256(arn)>`, and
//! `<cache>/.locks/<name>.downloading.status` says `completed` once it is whole. Unlike SAM, lamina
//! checks the zip against the `CodeSha256` the API gives, keeps the zip's file modes, and builds the
//! directory aside and renames it into place, so an interrupted download leaves no half layer.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_sdk_lambda::error::ProvideErrorMetadata;
use base64::Engine;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::artifacts::{self, ArtifactError};
use crate::aws::{self, AwsError};
use crate::env_vars;
use crate::image::Reporter;
use crate::plan::InvokePlan;
use crate::template::Layer;

const STATUS_COMPLETED: &str = "completed";
const STATUS_DOWNLOADING: &str = "downloading";

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("Layers require credentials to download the layers locally.")]
    NoCredentials,
    #[error(
        "Credentials provided are missing lambda:Getlayerversion policy that is needed to download the layer or you do not have permission to download the layer"
    )]
    AccessDenied,
    #[error("{0} was not found.")]
    NotFound(String),
    #[error("layer {arn}: GetLayerVersion failed: {message}")]
    Api { arn: String, message: String },
    #[error("layer {arn}: cannot download {url}: {message}")]
    Download {
        arn: String,
        url: String,
        message: String,
    },
    #[error(
        "layer {arn}: the downloaded zip has sha256 {actual} but GetLayerVersion says {expected}; nothing was cached"
    )]
    Checksum {
        arn: String,
        expected: String,
        actual: String,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Unpack(#[from] ArtifactError),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayerError + '_ {
    move |source| LayerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes sure every ARN layer of the plan is in the layer cache; returns each one's directory by ARN.
pub fn ensure(
    plan: &InvokePlan,
    env: &dyn Fn(&str) -> Option<String>,
    reporter: &dyn Reporter,
) -> Result<HashMap<String, PathBuf>, LayerError> {
    let mut dirs = HashMap::new();
    let remote: Vec<(&str, &str, u64)> = plan
        .layers
        .iter()
        .filter_map(|layer| match layer {
            Layer::Arn { arn, name, version } => Some((arn.as_str(), name.as_str(), *version)),
            Layer::Local { .. } => None,
        })
        .collect();
    if remote.is_empty() {
        return Ok(dirs);
    }
    let cache = LayerCache::open(&plan.layer_cache_dir)?;
    for (arn, name, version) in remote {
        let dir = cache.dir(name);
        if !plan.force_image_build && cache.is_complete(name) {
            tracing::info!("{arn} is already cached. Skipping download");
        } else {
            let _lock = cache.lock(name, reporter)?;
            // Another process may have finished it while we waited.
            if plan.force_image_build || !cache.is_complete(name) {
                download(plan, env, &cache, arn, name, version, reporter)?;
            }
        }
        dirs.insert(arn.to_string(), dir);
    }
    Ok(dirs)
}

struct LayerCache {
    root: PathBuf,
}

impl LayerCache {
    fn open(root: &Path) -> Result<LayerCache, LayerError> {
        let locks = root.join(".locks");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&locks)
            .map_err(io(&locks))?;
        Ok(LayerCache {
            root: root.to_path_buf(),
        })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn status_file(&self, name: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(format!("{name}.downloading.status"))
    }

    /// SAM's rule: the directory exists and the status file is absent or says `completed`.
    fn is_complete(&self, name: &str) -> bool {
        self.dir(name).is_dir()
            && match std::fs::read_to_string(self.status_file(name)) {
                Ok(status) => status.trim() == STATUS_COMPLETED,
                Err(err) => err.kind() == std::io::ErrorKind::NotFound,
            }
    }

    fn set_status(&self, name: &str, status: &str) -> Result<(), LayerError> {
        let path = self.status_file(name);
        std::fs::write(&path, status).map_err(io(&path))
    }

    /// What a lamina killed while downloading or unpacking `name` left (called under its lock).
    fn remove_leftovers(&self, name: &str) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let prefixes = [format!(".{name}.staging-"), format!(".{name}.old-")];
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| file_name.starts_with(p)) {
                let _ = crate::image::layer::remove_tree(&entry.path());
            }
        }
    }

    /// One download of a layer at a time, across processes (lamina's; SAM polls its status file).
    fn lock(&self, name: &str, reporter: &dyn Reporter) -> Result<std::fs::File, LayerError> {
        let path = self.root.join(".locks").join(format!("{name}.lamina.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                reporter.message("Another process is downloading the same layer, waiting...");
                file.lock().map_err(io(&path))?;
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(io(&path)(err)),
        }
        Ok(file)
    }
}

fn download(
    plan: &InvokePlan,
    env: &dyn Fn(&str) -> Option<String>,
    cache: &LayerCache,
    arn: &str,
    name: &str,
    version: u64,
    reporter: &dyn Reporter,
) -> Result<(), LayerError> {
    if plan.aws.credentials.is_none() {
        return Err(LayerError::NoCredentials);
    }
    let unversioned = arn.rsplit_once(':').map_or(arn, |(head, _)| head);
    cache.remove_leftovers(name);
    // One name per layer (downloads of a layer are serialised by the lock): a download cut short
    // by a kill is overwritten by the next one, not left behind.
    let zip_path = cache.root.join(format!(".{name}.zip.partial"));
    let result = aws::block_on(async {
        let client = aws::lambda_client(&plan.aws).await;
        let output = client
            .get_layer_version()
            .layer_name(unversioned)
            .version_number(version as i64)
            .send()
            .await
            .map_err(|err| api_error(arn, err.code(), aws::error_chain(&err)))?;
        let content = output.content().ok_or_else(|| LayerError::Api {
            arn: arn.to_string(),
            message: "the answer has no Content".into(),
        })?;
        let url = content.location().unwrap_or_default().to_string();
        cache.set_status(name, STATUS_DOWNLOADING)?;
        reporter.message(&format!("Downloading {unversioned}"));
        let actual = fetch(env, arn, &url, &zip_path, name, reporter).await?;
        match content.code_sha256().filter(|s| !s.is_empty()) {
            Some(expected) if expected != actual => Err(LayerError::Checksum {
                arn: arn.to_string(),
                expected: expected.to_string(),
                actual,
            }),
            _ => Ok(()),
        }
    })
    .map_err(LayerError::from)
    .and_then(|r| r)
    .and_then(|()| unpack(cache, name, &zip_path, plan.mount_symlinks));
    let _ = std::fs::remove_file(&zip_path);
    result?;
    cache.set_status(name, STATUS_COMPLETED)
}

/// SAM's messages for the GetLayerVersion errors it knows (by the error code AWS sends).
fn api_error(arn: &str, code: Option<&str>, message: String) -> LayerError {
    match code {
        Some("ResourceNotFoundException") => LayerError::NotFound(arn.to_string()),
        Some("AccessDeniedException") => LayerError::AccessDenied,
        _ => LayerError::Api {
            arn: arn.to_string(),
            message,
        },
    }
}

/// Downloads `url` to `dest`; returns the base64 sha256 of what arrived (as `CodeSha256` spells it).
async fn fetch(
    env: &dyn Fn(&str) -> Option<String>,
    arn: &str,
    url: &str,
    dest: &Path,
    name: &str,
    reporter: &dyn Reporter,
) -> Result<String, LayerError> {
    let failed = |message: String| LayerError::Download {
        arn: arn.to_string(),
        url: redact_query(url),
        message,
    };
    let mut client = reqwest::Client::builder();
    if let Some(bundle) = env(env_vars::AWS_CA_BUNDLE).filter(|b| !b.is_empty()) {
        let pem = std::fs::read(&bundle).map_err(io(Path::new(&bundle)))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| failed(format!("AWS_CA_BUNDLE {bundle}: {e}")))?
        {
            client = client.add_root_certificate(cert);
        }
    }
    let client = client.build().map_err(|e| failed(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| failed(aws::error_chain(&e)))?;
    reporter.blob_started(name, response.content_length().unwrap_or(0));
    let mut file = std::fs::File::create(dest).map_err(io(dest))?;
    let mut hasher = Sha256::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| failed(aws::error_chain(&e)))?;
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(io(dest))?;
        reporter.blob_progress(name, chunk.len() as u64);
    }
    file.flush().map_err(io(dest))?;
    reporter.blob_finished(name);
    Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
}

/// The layer's directory is built aside and renamed into place; a re-download replaces it whole.
fn unpack(
    cache: &LayerCache,
    name: &str,
    zip: &Path,
    allow_outside_symlinks: bool,
) -> Result<(), LayerError> {
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.staging-"))
        .tempdir_in(&cache.root)
        .map_err(io(&cache.root))?;
    artifacts::unpack_zip(zip, staging.path(), allow_outside_symlinks)?;
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(io(staging.path()))?;
    let target = cache.dir(name);
    if target.exists() {
        let old = cache
            .root
            .join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(&target, &old).map_err(io(&target))?;
        let _ = crate::image::layer::remove_tree(&old);
    }
    let staged = staging.keep();
    std::fs::rename(&staged, &target).map_err(io(&target))?;
    Ok(())
}

/// Presigned S3 URLs carry credentials in their query; error messages show the path only.
fn redact_query(url: &str) -> String {
    url.split_once('?')
        .map_or_else(|| url.to_string(), |(base, _)| format!("{base}?…"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_rules_match_sams() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path()).unwrap();
        assert!(!cache.is_complete("l-1-abc"));
        std::fs::create_dir(cache.dir("l-1-abc")).unwrap();
        // A directory without a status file was made by an older SAM: complete.
        assert!(cache.is_complete("l-1-abc"));
        cache.set_status("l-1-abc", STATUS_DOWNLOADING).unwrap();
        assert!(!cache.is_complete("l-1-abc"));
        cache.set_status("l-1-abc", STATUS_COMPLETED).unwrap();
        assert!(cache.is_complete("l-1-abc"));
        let mode = std::fs::metadata(dir.path().join(".locks"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn leftovers_of_a_killed_download_go() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path()).unwrap();
        for left in [".l-1-abc.staging-x1", ".l-1-abc.old-42"] {
            std::fs::create_dir_all(dir.path().join(left).join("python")).unwrap();
        }
        std::fs::create_dir(dir.path().join(".other-1-def.staging-x2")).unwrap();
        std::fs::create_dir(cache.dir("l-1-abc")).unwrap();
        cache.remove_leftovers("l-1-abc");
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".locks", ".other-1-def.staging-x2", "l-1-abc"]);
    }

    #[test]
    fn api_errors_read_as_sams() {
        let arn = "arn:aws:lambda:us-east-1:1:layer:x:2";
        assert_eq!(
            api_error(arn, Some("AccessDeniedException"), "denied".into()).to_string(),
            "Credentials provided are missing lambda:Getlayerversion policy that is needed to download the layer or you do not have permission to download the layer"
        );
        assert_eq!(
            api_error(arn, Some("ResourceNotFoundException"), String::new()).to_string(),
            format!("{arn} was not found.")
        );
        assert_eq!(
            api_error(arn, Some("ThrottlingException"), "slow down".into()).to_string(),
            format!("layer {arn}: GetLayerVersion failed: slow down")
        );
    }

    #[test]
    fn presigned_queries_are_not_shown() {
        assert_eq!(
            redact_query("https://b.s3.amazonaws.com/k?X-Amz-Signature=abc"),
            "https://b.s3.amazonaws.com/k?…"
        );
        assert_eq!(redact_query("http://127.0.0.1/k"), "http://127.0.0.1/k");
    }
}
