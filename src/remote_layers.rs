//! Layers published in AWS (`Layers: [arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION]`): fetched
//! with `lambda:GetLayerVersion`, downloaded once into the layer cache (`--layer-cache-basedir`,
//! default `~/.aws-sam/layers-pkg`) and reused offline after that.
//!
//! The cache has SAM's layout and lock protocol, so SAM and lamina share it: `<cache>/<name>/`
//! holds the unzipped layer, where `<name>` is `<layer>-<version>-<first 10 hex of sha256(arn)>`;
//! `<cache>/.locks/<name>.downloading.lock` exists while a process downloads it, and
//! `<cache>/.locks/<name>.downloading.status` starts with `completed` once it is whole. Unlike SAM, lamina
//! checks the zip against the `CodeSha256` the API gives, keeps the zip's file modes, and builds the
//! directory aside and renames it into place, so an interrupted download leaves no half layer.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

// SAM's FileLock: `.locks/<name>.downloading.lock` exists while a process downloads (it holds
// `<pid>\n<unix time>`), `.locks/<name>.downloading.status` holds one of these, then the time.
const STATUS_COMPLETED: &str = "completed";
const STATUS_IN_PROGRESS: &str = "in_progress";
const STATUS_FAILED: &str = "failed";
/// SAM's limit: a lock older than this is stale, and a waiter gives up after it.
const LOCK_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Ctrl-C while downloading: what was downloaded so far is removed.
    #[error("Interrupted: the layer download was stopped and nothing of it kept.")]
    Interrupted,
    #[error("Layers require credentials to download the layers locally.{}", .0.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    NoCredentials(Option<String>),
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
    #[error(
        "layer {arn}: the download is larger than {} bytes, Lambda's limit for a layer unzipped ({}); nothing was cached",
        crate::limits::MAX_UNZIPPED_BYTES,
        crate::limits::UNZIPPED_TOO_LARGE
    )]
    TooLarge { arn: String },
    #[error(
        "layer {arn}: {} ({detail}); nothing was cached",
        crate::limits::UNZIPPED_TOO_LARGE
    )]
    UnzippedTooLarge { arn: String, detail: String },
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
            let lock = cache.lock(name, reporter)?;
            // Another process may have finished it while we waited.
            let had_it = cache.is_complete(name);
            if plan.force_image_build || !had_it {
                cache.remove_leftovers(name);
                let result = download(plan, env, &cache, arn, name, version, reporter);
                // A failed forced re-download leaves the old copy whole: it stays usable.
                let status = match (&result, had_it) {
                    (Ok(()), _) | (Err(_), true) => STATUS_COMPLETED,
                    (Err(_), false) => STATUS_FAILED,
                };
                cache.set_status(name, status)?;
                drop(lock);
                result?;
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

    fn lock_file(&self, name: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(format!("{name}.downloading.lock"))
    }

    /// SAM's rule: the directory exists and the status file is absent or its first line says
    /// `completed`.
    fn is_complete(&self, name: &str) -> bool {
        self.dir(name).is_dir()
            && match std::fs::read_to_string(self.status_file(name)) {
                Ok(status) => status.lines().next().map(str::trim) == Some(STATUS_COMPLETED),
                Err(err) => err.kind() == std::io::ErrorKind::NotFound,
            }
    }

    fn set_status(&self, name: &str, status: &str) -> Result<(), LayerError> {
        let path = self.status_file(name);
        std::fs::write(&path, format!("{status}\n{}", unix_time())).map_err(io(&path))
    }

    /// What a lamina killed while downloading or unpacking `name` left (called under its lock).
    fn remove_leftovers(&self, name: &str) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let prefixes = [format!(".{name}.staging-")];
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| file_name.starts_with(p)) {
                let _ = crate::image::layer::remove_tree(&entry.path());
            }
        }
    }

    /// One download of a layer at a time, across lamina and SAM processes: SAM's lock file,
    /// made with `O_EXCL`. A lock older than 300 s, or whose process is gone, is stale.
    fn lock(&self, name: &str, reporter: &dyn Reporter) -> Result<LockFile, LayerError> {
        let path = self.lock_file(name);
        let give_up = Instant::now() + LOCK_TIMEOUT;
        let mut said = false;
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let _ = write!(file, "{}\n{}", std::process::id(), unix_time());
                    self.set_status(name, STATUS_IN_PROGRESS)?;
                    return Ok(LockFile { path });
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    if lock_is_stale(&path) {
                        tracing::info!("Removing stale downloading lock file: {}", path.display());
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() > give_up {
                        return Err(LayerError::Io {
                            path,
                            source: std::io::Error::other(
                                "another process has been downloading this layer for 300 s; remove the lock file if no download is running",
                            ),
                        });
                    }
                    if !said {
                        reporter
                            .message("Another process is downloading the same layer, waiting...");
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(err) => return Err(io(&path)(err)),
            }
        }
    }
}

/// Removes the lock file when dropped (also when the download fails).
struct LockFile {
    path: PathBuf,
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Older than SAM's timeout, or held by a process of this host that no longer exists.
fn lock_is_stale(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let old = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > LOCK_TIMEOUT);
    let holder_gone = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
        .is_some_and(|pid| !crate::process::exists(pid));
    old || holder_gone
}

fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
        return Err(LayerError::NoCredentials(
            plan.aws.credentials_error.clone(),
        ));
    }
    let unversioned = arn.rsplit_once(':').map_or(arn, |(head, _)| head);
    // One name per layer (downloads of a layer are serialised by the lock): a download cut short
    // by a kill is overwritten by the next one, not left behind.
    let zip_path = cache.root.join(format!(".{name}.zip.partial"));
    let work = async {
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
    };
    let result = aws::block_on(async {
        tokio::select! {
            result = work => result,
            _ = crate::signals::requested() => Err(LayerError::Interrupted),
        }
    })
    .map_err(LayerError::from)
    .and_then(|r| r)
    .and_then(|()| unpack(cache, name, &zip_path, plan.mount_symlinks))
    .map_err(|err| match err {
        // The zip is a temporary file: the layer is what the user knows.
        LayerError::Unpack(ArtifactError::TooLarge { detail, .. }) => {
            LayerError::UnzippedTooLarge {
                arn: arn.to_string(),
                detail,
            }
        }
        other => other,
    });
    let _ = std::fs::remove_file(&zip_path);
    result
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
    // A stalled connection must not hold this invoke (and those waiting for the lock) forever.
    let client = client
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    // reqwest's messages end with the URL, whose query is a presigned credential: dropped.
    let describe = |e: reqwest::Error| failed(aws::error_chain(&e.without_url()));
    let response = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(describe)?;
    // A zip can hardly be bigger than what it unzips to: the limit on that bounds an endless body.
    let too_large = || LayerError::TooLarge {
        arn: arn.to_string(),
    };
    let limit = crate::limits::MAX_UNZIPPED_BYTES;
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(too_large());
    }
    reporter.blob_started(name, response.content_length().unwrap_or(0));
    let mut file = std::fs::File::create(dest).map_err(io(dest))?;
    let mut hasher = Sha256::new();
    let mut body = response.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(describe)?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(too_large());
        }
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
    // Each layer alone within Lambda's limit; with the code and the other layers it is checked
    // again when they are merged (`artifacts::ensure_layers`).
    artifacts::unpack_zip(
        zip,
        staging.path(),
        allow_outside_symlinks,
        &mut artifacts::Budget::new(0),
    )?;
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(io(staging.path()))?;
    let target = cache.dir(name);
    let staged = staging.keep();
    if target.exists() {
        // A re-download swaps the two directories in one step, so a process that found the
        // layer complete never sees it missing; the old copy is then removed from the staging name.
        nix::fcntl::renameat2(
            None,
            &staged,
            None,
            &target,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| io(&target)(e.into()))?;
        let _ = crate::image::layer::remove_tree(&staged);
    } else {
        std::fs::rename(&staged, &target).map_err(io(&target))?;
    }
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
        // As SAM 1.170's FileLock writes them: the status, a newline, the time.
        let status = dir.path().join(".locks/l-1-abc.downloading.status");
        std::fs::write(&status, "in_progress\n1764115200.123").unwrap();
        assert!(!cache.is_complete("l-1-abc"));
        std::fs::write(&status, "completed\n1764115201.5").unwrap();
        assert!(cache.is_complete("l-1-abc"));
        cache.set_status("l-1-abc", STATUS_FAILED).unwrap();
        assert!(!cache.is_complete("l-1-abc"));
        assert!(
            std::fs::read_to_string(&status)
                .unwrap()
                .starts_with("failed\n")
        );
        let mode = std::fs::metadata(dir.path().join(".locks"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn locks_are_sams_lock_files_and_stale_ones_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path()).unwrap();
        let reporter = crate::image::QuietReporter;
        let lock = cache.lock("l-1-abc", &reporter).unwrap();
        let file = dir.path().join(".locks/l-1-abc.downloading.lock");
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().next().unwrap(), std::process::id().to_string());
        assert!(!lock_is_stale(&file), "held by this live process");
        drop(lock);
        assert!(!file.exists(), "released");
        // A lock whose process is gone (a killed lamina or SAM) does not block.
        std::fs::write(&file, "2147483646\n1764115200.0").unwrap();
        assert!(lock_is_stale(&file));
        let _lock = cache.lock("l-1-abc", &reporter).unwrap();
    }

    #[test]
    fn leftovers_of_a_killed_download_go() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path()).unwrap();
        for left in [".l-1-abc.staging-x1", ".l-1-abc.staging-x3"] {
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
