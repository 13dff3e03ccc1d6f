//! Where lamina keeps its files.

use std::path::PathBuf;

use crate::env_vars;

/// The cache root: `$LAMINA_CACHE_DIR`, else `$XDG_CACHE_HOME/lamina`, else `~/.cache/lamina`.
pub fn cache_root(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = env(env_vars::LAMINA_CACHE_DIR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env(env_vars::XDG_CACHE_HOME).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("lamina");
    }
    home(env).join(".cache").join("lamina")
}

/// SAM's default layer cache, shared with SAM so layers are downloaded once for both tools.
pub fn default_layer_cache(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    home(env).join(".aws-sam").join("layers-pkg")
}

pub fn home(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env(env_vars::HOME)
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}
