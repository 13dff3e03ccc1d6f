//! Lambda runtime images: pulled over the OCI distribution API or read from a local OCI image
//! layout, verified by digest, unpacked once into a content-addressed rootfs cache.
//!
//! - `reference`: image names and registry mirrors;
//! - `auth`: registry credentials from Docker's config file;
//! - `registry`: talking to a registry (oci-client): manifests, platform choice, verified blobs;
//! - `layout`: the same from an OCI image-layout directory (`oci:PATH[:TAG]`);
//! - `layer`: applying layer tars to a rootfs safely;
//! - `limits`: what an image may make lamina read, hold in memory and write;
//! - `targets`: the sandbox's mount points, made in every rootfs before it is published;
//! - `cache`: the on-disk layout, locks and atomic publication;
//! - `repair`: unpacking a damaged cache entry again from its blobs;
//! - `pull`: the policy: when to ask the registry, when the cache is enough.

pub mod auth;
pub mod cache;
pub mod layer;
pub mod layout;
pub mod limits;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod repair;
pub mod targets;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

pub use cache::{Cache, CachedImage};
pub use pull::{Freshness, PullContext, ensure};
pub use reference::{ImageRef, Mirrors};

use crate::env_vars;
use crate::runtimes::Architecture;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Ctrl-C during a pull: what had arrived is removed (staging and partial blobs go on drop).
    #[error("Interrupted: the image pull was stopped and nothing of it kept.")]
    Interrupted,
    #[error("invalid image reference `{reference}`: {message}")]
    InvalidReference { reference: String, message: String },
    #[error("{source_name}: {message}")]
    Settings {
        source_name: String,
        message: String,
    },
    #[error("cannot pull `{reference}` from {endpoint}: {message}")]
    Registry {
        reference: String,
        endpoint: String,
        message: String,
    },
    #[error("`{reference}` has no image for linux/{wanted}; it has: {}", .available.join(", "))]
    Platform {
        reference: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error(
        "`{reference}`: blob {digest} does not match its digest (got {actual}); it was discarded"
    )]
    Digest {
        reference: String,
        digest: String,
        actual: String,
    },
    #[error("`{reference}`: layer {layer}: {source}")]
    Layer {
        reference: String,
        layer: String,
        #[source]
        source: layer::LayerError,
    },
    /// An OCI layout that cannot be used: missing, not a layout, no such tag, a bad blob.
    #[error("`{reference}`: {message}")]
    Layout { reference: String, message: String },
    /// One of the limits of `limits`, with what crossed it.
    #[error("`{reference}`: {message}")]
    Limit { reference: String, message: String },
    #[error("`{reference}` is not in the image cache and --skip-pull-image forbids pulling it")]
    NotCached { reference: String },
    #[error("image cache {}: {message}", .path.display())]
    Cache { path: PathBuf, message: String },
}

impl ImageError {
    pub(crate) fn cache(path: &Path, err: impl std::fmt::Display) -> ImageError {
        ImageError::Cache {
            path: path.to_path_buf(),
            message: err.to_string(),
        }
    }
}

/// The parts of an image's config that decide how it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
}

impl RunConfig {
    /// Reads `config` of an OCI/Docker image config blob.
    pub fn from_image_config(blob: &[u8]) -> Result<RunConfig, serde_json::Error> {
        #[derive(Deserialize)]
        struct Outer {
            #[serde(default)]
            config: Option<Inner>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Inner {
            entrypoint: Option<Vec<String>>,
            cmd: Option<Vec<String>>,
            env: Option<Vec<String>>,
            working_dir: Option<String>,
            user: Option<String>,
        }
        let outer: Outer = serde_json::from_slice(blob)?;
        let inner = outer.config.unwrap_or(Inner {
            entrypoint: None,
            cmd: None,
            env: None,
            working_dir: None,
            user: None,
        });
        Ok(RunConfig {
            entrypoint: inner.entrypoint.unwrap_or_default(),
            cmd: inner.cmd.unwrap_or_default(),
            env: inner.env.unwrap_or_default(),
            working_dir: inner.working_dir.unwrap_or_default(),
            user: inner.user.unwrap_or_default(),
        })
    }
}

/// lamina's own settings file, `$XDG_CONFIG_HOME/lamina/config.toml` (or `~/.config/lamina/config.toml`):
///
/// ```toml
/// [images]
/// refresh_interval_hours = 24
/// [images.mirrors]
/// "public.ecr.aws" = "http://127.0.0.1:5000"
/// ```
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub path: Option<PathBuf>,
    pub mirrors: IndexMap<String, String>,
    pub refresh_interval_hours: Option<f64>,
}

impl Settings {
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ImageError> {
        let base = env(env_vars::XDG_CONFIG_HOME)
            .filter(|d| !d.is_empty())
            .map_or_else(|| crate::paths::home(env).join(".config"), PathBuf::from);
        let path = base.join("lamina").join("config.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Settings::default());
            }
            Err(err) => {
                return Err(ImageError::Settings {
                    source_name: path.display().to_string(),
                    message: err.to_string(),
                });
            }
        };
        #[derive(Deserialize, Default)]
        struct File {
            #[serde(default)]
            images: Images,
        }
        #[derive(Deserialize, Default)]
        struct Images {
            #[serde(default)]
            mirrors: IndexMap<String, String>,
            refresh_interval_hours: Option<f64>,
        }
        let file: File = toml::from_str(&text).map_err(|e| ImageError::Settings {
            source_name: path.display().to_string(),
            message: e.message().to_string(),
        })?;
        Ok(Settings {
            path: Some(path),
            mirrors: file.images.mirrors,
            refresh_interval_hours: file.images.refresh_interval_hours,
        })
    }
}

/// Progress of a pull, reported to whoever shows it (the CLI draws bars on a terminal).
pub trait Reporter: Send + Sync {
    /// A blob download starts (`size` in bytes).
    fn blob_started(&self, _digest: &str, _size: u64) {}
    /// `bytes` more of a blob arrived.
    fn blob_progress(&self, _digest: &str, _bytes: u64) {}
    fn blob_finished(&self, _digest: &str) {}
    /// A one-line message for the user (waiting for a lock, a stale image kept, ...).
    fn message(&self, text: &str) {
        tracing::info!("{text}");
    }
}

/// Reports nothing but messages.
pub struct QuietReporter;
impl Reporter for QuietReporter {}

/// The OCI platform string of an architecture.
pub fn platform_name(arch: Architecture) -> String {
    format!("linux/{}", arch.oci_arch())
}
