//! Image references (`public.ecr.aws/lambda/python:3.12`, `alpine`, `repo@sha256:...`,
//! `oci:PATH[:TAG]`) and the registry mirrors that redirect them (`LAMINA_REGISTRY_MIRROR`,
//! `config.toml`).

use std::path::Path;

use oci_client::Reference;

use super::ImageError;
use super::layout::{self, LayoutRef};
use crate::env_vars;

/// A parsed reference: where the image comes from.
#[derive(Debug, Clone)]
pub enum ImageRef {
    /// An image in a registry. Its canonical form, e.g. `docker.io/library/alpine:latest`, is
    /// also the cache key.
    Registry(Reference),
    /// An image in a local OCI image-layout directory, `oci:PATH[:TAG]`.
    Layout(LayoutRef),
}

impl ImageRef {
    /// Parses `oci:PATH[:TAG]` (see [`LayoutRef::parse`]) or a Docker-style reference (`alpine`,
    /// `repo/name:tag`, `host:5000/name@sha256:...`), filling in Docker's defaults (`docker.io`,
    /// `library/`, `latest`).
    ///
    /// Hand-written rather than oci-spec's `Reference::from_str`, whose large regex takes about
    /// 25 ms to compile: this runs on every warm invoke.
    pub fn parse(text: &str) -> Result<ImageRef, ImageError> {
        if text.starts_with(layout::PREFIX) {
            return LayoutRef::parse(text).map(ImageRef::Layout);
        }
        let invalid = |message: &str| ImageError::InvalidReference {
            reference: text.into(),
            message: message.into(),
        };
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                if !valid_digest(digest) {
                    return Err(invalid("the digest must look like sha256:<64 hex digits>"));
                }
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && !tag.starts_with(['.', '-'])
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(invalid(
                    "a tag is up to 128 letters, digits, `_`, `.` and `-`",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ if !name.contains('/') => ("docker.io".to_string(), format!("library/{name}")),
            _ => ("docker.io".to_string(), name.to_string()),
        };
        if !valid_registry(&registry) {
            return Err(invalid(
                "the registry must be a host name or address, with an optional :port",
            ));
        }
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(invalid(
                "repository names are lower-case letters and digits separated by `.`, `_`, `__`, `-` or `/`",
            ));
        }
        let reference = match (tag, digest) {
            (Some(tag), Some(digest)) => {
                Reference::with_tag_and_digest(registry, repository, tag.into(), digest)
            }
            (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
            (tag, None) => {
                Reference::with_tag(registry, repository, tag.unwrap_or("latest").into())
            }
        };
        Ok(ImageRef::Registry(reference))
    }

    /// `registry/repository:tag`, `registry/repository@digest` or `oci:/absolute/path[:tag]`.
    pub fn canonical(&self) -> String {
        match self {
            ImageRef::Registry(reference) => reference.whole(),
            ImageRef::Layout(layout) => layout.canonical(),
        }
    }

    /// A digest reference never changes, so it never needs re-checking.
    pub fn is_pinned(&self) -> bool {
        match self {
            ImageRef::Registry(reference) => reference.digest().is_some(),
            ImageRef::Layout(_) => false,
        }
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &part[start..i];
        if !(separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-'))
        {
            return false;
        }
    }
    true
}

/// `host[:port]`, where host is DNS labels or `[ipv6]`.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || registry.starts_with('[') => (h, Some(p)),
        _ => (registry, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if host.starts_with('[') {
        return host.ends_with(']')
            && host[1..host.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn valid_digest(digest: &str) -> bool {
    match digest.split_once(':') {
        Some((algorithm, hex)) => {
            !algorithm.is_empty()
                && algorithm
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'_' | b'-'))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
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
        assert_eq!(
            ImageRef::parse("user/app:v1.2").unwrap().canonical(),
            "docker.io/user/app:v1.2"
        );
        assert_eq!(
            ImageRef::parse("localhost:5000/a/b").unwrap().canonical(),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(
            ImageRef::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:v1")
                .unwrap()
                .canonical(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:v1"
        );
        for bad in [
            "",
            "a/B",
            "a//b",
            "a:",
            "a@sha256:xyz",
            "-a",
            "a/b:-x",
            "a..b",
            "host:port/x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} should be invalid");
        }
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
