//! Image references (`public.ecr.aws/lambda/python:3.12`, `alpine`, `repo@sha256:...`) and the
//! registry mirrors that redirect them (`LAMINA_REGISTRY_MIRROR`, `config.toml`).

use std::path::Path;

use oci_client::Reference;

use super::ImageError;
use crate::env_vars;

/// A parsed reference, with the text the user wrote kept for messages.
#[derive(Debug, Clone)]
pub struct ImageRef {
    /// The canonical form, e.g. `docker.io/library/alpine:latest`; also the cache key.
    pub reference: Reference,
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, ImageError> {
        let reference: Reference =
            text.parse()
                .map_err(|e: oci_client::ParseError| ImageError::InvalidReference {
                    reference: text.into(),
                    message: e.to_string(),
                })?;
        Ok(ImageRef { reference })
    }

    /// `registry/repository:tag` or `registry/repository@digest`.
    pub fn canonical(&self) -> String {
        self.reference.whole()
    }

    /// A digest reference never changes, so it never needs re-checking.
    pub fn is_pinned(&self) -> bool {
        self.reference.digest().is_some()
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// Where requests for one registry really go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
}

/// Registry -> mirror endpoint pairs, in priority order.
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    pairs: Vec<(String, Endpoint)>,
}

impl Mirrors {
    /// Parses `registry=URL,registry2=URL2` (`http://` means plain HTTP, `https://` or none HTTPS).
    pub fn parse(text: &str) -> Result<Mirrors, String> {
        let mut pairs = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (registry, url) = item.split_once('=').ok_or_else(|| {
                format!("`{item}` is not REGISTRY=URL (e.g. public.ecr.aws=http://127.0.0.1:5000)")
            })?;
            pairs.push((registry.trim().to_string(), endpoint(url.trim())?));
        }
        Ok(Mirrors { pairs })
    }

    /// Mirrors from `LAMINA_REGISTRY_MIRROR`, then from the config file (the variable wins).
    pub fn load(
        env: &dyn Fn(&str) -> Option<String>,
        settings: &super::Settings,
    ) -> Result<Mirrors, ImageError> {
        let mut mirrors = match env(env_vars::LAMINA_REGISTRY_MIRROR) {
            Some(text) => Mirrors::parse(&text).map_err(|message| ImageError::Settings {
                source_name: env_vars::LAMINA_REGISTRY_MIRROR.to_string(),
                message,
            })?,
            None => Mirrors::default(),
        };
        for (registry, url) in &settings.mirrors {
            if !mirrors.pairs.iter().any(|(r, _)| r == registry) {
                let endpoint = endpoint(url).map_err(|message| ImageError::Settings {
                    source_name: settings
                        .path
                        .as_deref()
                        .map_or_else(|| "config".into(), |p: &Path| p.display().to_string()),
                    message,
                })?;
                mirrors.pairs.push((registry.clone(), endpoint));
            }
        }
        Ok(mirrors)
    }

    /// The endpoint that serves `registry`: its mirror, or the registry itself.
    pub fn endpoint_for(&self, registry: &str) -> Endpoint {
        if let Some((_, endpoint)) = self.pairs.iter().find(|(r, _)| r == registry) {
            return endpoint.clone();
        }
        // Like Docker, registries on the loopback interface are spoken to over plain HTTP.
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        let loopback = host == "localhost" || host.starts_with("127.") || host == "[::1]";
        let host = if registry == "docker.io" {
            "index.docker.io".to_string()
        } else {
            registry.to_string()
        };
        Endpoint {
            host,
            insecure: loopback,
        }
    }
}

fn endpoint(url: &str) -> Result<Endpoint, String> {
    let (insecure, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (false, rest)
    } else {
        (false, url)
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(format!(
            "`{url}` is not a registry URL like http://127.0.0.1:5000"
        ));
    }
    Ok(Endpoint {
        host: host.to_string(),
        insecure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_reference_canonical_forms() {
        assert_eq!(
            ImageRef::parse("public.ecr.aws/lambda/python:3.12")
                .unwrap()
                .canonical(),
            "public.ecr.aws/lambda/python:3.12"
        );
        assert_eq!(
            ImageRef::parse("alpine").unwrap().canonical(),
            "docker.io/library/alpine:latest"
        );
        let pinned = ImageRef::parse(
            "127.0.0.1:5000/x@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        )
        .unwrap();
        assert!(pinned.is_pinned());
        assert!(ImageRef::parse("no spaces allowed:1").is_err());
    }

    #[test]
    fn test_reference_mirrors() {
        let mirrors =
            Mirrors::parse("public.ecr.aws=http://127.0.0.1:5000, example.com=mirror.local:443")
                .unwrap();
        assert_eq!(
            mirrors.endpoint_for("public.ecr.aws"),
            Endpoint {
                host: "127.0.0.1:5000".into(),
                insecure: true
            }
        );
        assert_eq!(
            mirrors.endpoint_for("example.com"),
            Endpoint {
                host: "mirror.local:443".into(),
                insecure: false
            }
        );
        assert_eq!(
            mirrors.endpoint_for("other.io"),
            Endpoint {
                host: "other.io".into(),
                insecure: false
            }
        );
        assert!(mirrors.endpoint_for("localhost:5000").insecure);
        assert!(Mirrors::parse("no-equals-sign").is_err());
        assert!(Mirrors::parse("a=http://host/path").is_err());
    }
}
