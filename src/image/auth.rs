//! Registry credentials from Docker's config file (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `auths` entries and credential helpers (`credHelpers`, `credsStore`).
//! Without an entry the pull is anonymous, which covers public.ecr.aws's bearer-token flow.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::env_vars;

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The credentials to use for `registry` (as written in the image reference, e.g. `public.ecr.aws`).
pub fn for_registry(registry: &str, env: &dyn Fn(&str) -> Option<String>) -> RegistryAuth {
    let path = env(env_vars::DOCKER_CONFIG)
        .filter(|d| !d.is_empty())
        .map_or_else(|| crate::paths::home(env).join(".docker"), PathBuf::from)
        .join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return RegistryAuth::Anonymous;
    };
    let config: DockerConfig = match serde_json::from_str(&text) {
        Ok(config) => config,
        Err(err) => {
            tracing::warn!("ignoring {}: {err}", path.display());
            return RegistryAuth::Anonymous;
        }
    };
    let keys = candidate_keys(registry);
    if let Some(helper) = keys.iter().find_map(|k| config.cred_helpers.get(k))
        && let Some(auth) = from_helper(helper, registry)
    {
        return auth;
    }
    if let Some(entry) = keys.iter().find_map(|k| config.auths.get(k)) {
        if let Some(token) = &entry.identitytoken {
            return RegistryAuth::Bearer(token.clone());
        }
        if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
            return RegistryAuth::Basic(user.clone(), password.clone());
        }
        if let Some(encoded) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok();
            if let Some((user, password)) = decoded
                .and_then(|d| String::from_utf8(d).ok())
                .and_then(|s| {
                    s.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                })
            {
                return RegistryAuth::Basic(user, password);
            }
        }
        // An empty entry means "use credsStore".
    }
    if let Some(store) = &config.creds_store
        && let Some(auth) = from_helper(store, registry)
    {
        return auth;
    }
    RegistryAuth::Anonymous
}

/// Docker writes Docker Hub as `https://index.docker.io/v1/`, others by host, sometimes as URLs.
fn candidate_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io" || registry == "index.docker.io" {
        return vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
}

/// Runs `docker-credential-<helper> get` with the registry on stdin.
fn from_helper(helper: &str, registry: &str) -> Option<RegistryAuth> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| tracing::debug!(%program, %err, "credential helper not usable"))
        .ok()?;
    child.stdin.take()?.write_all(registry.as_bytes()).ok()?;
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        return None;
    }
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let reply: Reply = serde_json::from_slice(&output.stdout).ok()?;
    if reply.username == "<token>" {
        Some(RegistryAuth::Bearer(reply.secret))
    } else {
        Some(RegistryAuth::Basic(reply.username, reply.secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_auth_from_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode("AWS:secret");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths": {{"123.dkr.ecr.us-east-1.amazonaws.com": {{"auth": "{encoded}"}}, "https://index.docker.io/v1/": {{"username": "u", "password": "p"}}}}}}"#),
        )
        .unwrap();
        let dir_text = dir.path().to_str().unwrap().to_string();
        let env = move |k: &str| (k == env_vars::DOCKER_CONFIG).then(|| dir_text.clone());
        assert!(
            matches!(for_registry("123.dkr.ecr.us-east-1.amazonaws.com", &env), RegistryAuth::Basic(u, p) if u == "AWS" && p == "secret")
        );
        assert!(matches!(for_registry("docker.io", &env), RegistryAuth::Basic(u, _) if u == "u"));
        assert!(matches!(
            for_registry("public.ecr.aws", &env),
            RegistryAuth::Anonymous
        ));
    }
}
