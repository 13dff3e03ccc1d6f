//! The AWS side of an invoke, as SAM gets it from boto3: the region and credentials given to the
//! function (`--profile`, `--region`, the `AWS_*` variables, the shared config and credentials files
//! with SSO, assume-role, `credential_process` and web identity, container credentials), and the
//! Lambda client that downloads layers published in AWS.
//!
//! Two deliberate differences from boto3: the EC2 instance metadata service is asked only when
//! `AWS_EC2_METADATA_DISABLED=false` is set (boto3 probes it on every invoke without credentials,
//! which costs a second off EC2), and the SDK is not loaded at all when nothing but `AWS_*` variables
//! could supply credentials (the common case stays a few microseconds).

use std::future::Future;
use std::path::PathBuf;

use aws_config::BehaviorVersion;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_types::region::Region;

use crate::env_vars;

/// The region when nothing names one, as SAM.
pub const DEFAULT_REGION: &str = "us-east-1";

type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Region and credentials for one invoke.
#[derive(Debug, Clone)]
pub struct Session {
    /// `--profile`, else `AWS_PROFILE`; `None` for the default profile.
    pub profile: Option<String>,
    pub region: String,
    /// `None` when no source has credentials (the function then gets SAM's stand-ins).
    pub credentials: Option<Credentials>,
    /// Why a configured source could not give credentials, if one failed.
    pub credentials_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// botocore's `ProfileNotFound`, which SAM shows as is.
    #[error("The config profile ({profile}) could not be found (looked in {})", .files.join(" and "))]
    ProfileNotFound { profile: String, files: Vec<String> },
    #[error("cannot read the AWS config files: {0}")]
    ConfigFiles(String),
    #[error("cannot get AWS credentials{}: {message}", .profile.as_ref().map(|p| format!(" for profile {p}")).unwrap_or_default())]
    Credentials {
        profile: Option<String>,
        message: String,
    },
    #[error("cannot start the AWS client: {0}")]
    Runtime(String),
}

impl Session {
    /// Resolves the region and credentials as botocore would for `--profile`/`--region`.
    pub fn resolve(
        profile_arg: Option<&str>,
        region_arg: Option<&str>,
        env: EnvFn,
    ) -> Result<Session, AwsError> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        // botocore reads AWS_DEFAULT_PROFILE before AWS_PROFILE.
        let profile = profile_arg
            .map(str::to_string)
            .or_else(|| var(env_vars::AWS_DEFAULT_PROFILE))
            .or_else(|| var(env_vars::AWS_PROFILE));
        // botocore: AWS_DEFAULT_REGION beats the profile's `region`.
        let explicit_region = region_arg
            .map(str::to_string)
            .or_else(|| var(env_vars::AWS_DEFAULT_REGION));
        let env_credentials = match (
            var(env_vars::AWS_ACCESS_KEY_ID),
            var(env_vars::AWS_SECRET_ACCESS_KEY),
        ) {
            (Some(key), Some(secret)) => Some(Credentials::new(
                key,
                secret,
                var(env_vars::AWS_SESSION_TOKEN),
                None,
                "Environment",
            )),
            _ => None,
        };
        let files = config_files(env);
        let has_files = files.iter().any(|f| f.is_file());
        let other_sources = [
            env_vars::AWS_CONTAINER_CREDENTIALS_RELATIVE_URI,
            env_vars::AWS_CONTAINER_CREDENTIALS_FULL_URI,
            env_vars::AWS_WEB_IDENTITY_TOKEN_FILE,
        ]
        .iter()
        .any(|name| var(name).is_some())
            || imds_enabled(env);
        // The fast path: only `AWS_*` variables can matter, so the SDK is not needed.
        if profile.is_none() && !has_files && (env_credentials.is_some() || !other_sources) {
            return Ok(Session {
                profile,
                region: explicit_region.unwrap_or_else(|| DEFAULT_REGION.into()),
                credentials: env_credentials,
                credentials_error: None,
            });
        }
        block_on(resolve_with_sdk(
            profile,
            profile_arg.is_some(),
            explicit_region,
            files,
            env,
        ))?
    }
}

async fn resolve_with_sdk(
    profile: Option<String>,
    explicit_profile: bool,
    explicit_region: Option<String>,
    files: Vec<PathBuf>,
    env: EnvFn<'_>,
) -> Result<Session, AwsError> {
    let fs = aws_types::os_shim_internal::Fs::real();
    let sdk_env = aws_types::os_shim_internal::Env::real();
    let profiles = aws_config::profile::load(
        &fs,
        &sdk_env,
        &Default::default(),
        profile.clone().map(Into::into),
    )
    .await
    .map_err(|e| AwsError::ConfigFiles(error_chain(&e)))?;
    let selected = profile.as_deref().unwrap_or("default");
    // botocore: a profile named by `--profile` or `AWS_PROFILE` must exist.
    if profile.is_some() && profiles.get_profile(selected).is_none() {
        return Err(AwsError::ProfileNotFound {
            profile: selected.to_string(),
            files: files.iter().map(|f| f.display().to_string()).collect(),
        });
    }
    let region = explicit_region
        .or_else(|| {
            profiles
                .get_profile(selected)
                .and_then(|p| p.get("region"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| DEFAULT_REGION.into());

    let config = ProviderConfig::without_region().with_region(Some(Region::new(region.clone())));
    let mut profile_provider = aws_config::profile::ProfileFileCredentialsProvider::builder();
    if let Some(name) = &profile {
        profile_provider = profile_provider.profile_name(name);
    }
    let profile_provider = profile_provider.configure(&config).build();
    // botocore's order: the `AWS_*` keys, web identity from the variables, then the profile
    // (static keys, assume-role, SSO, credential_process), then container credentials. An
    // explicit `--profile` ignores the variables of the first two. The web identity provider is
    // made only when its variable is set: building it sets up an HTTPS client, which reads every
    // system root certificate (~3 ms) even if it is never used; so is the container one below.
    let var = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    let mut chain = if explicit_profile {
        CredentialsProviderChain::first_try("Profile", profile_provider)
    } else {
        let mut chain = CredentialsProviderChain::first_try(
            "Environment",
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
        if var(env_vars::AWS_WEB_IDENTITY_TOKEN_FILE) {
            chain = chain.or_else(
                "WebIdentityToken",
                aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder()
                    .configure(&config)
                    .build(),
            );
        }
        chain.or_else("Profile", profile_provider)
    };
    if var(env_vars::AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)
        || var(env_vars::AWS_CONTAINER_CREDENTIALS_FULL_URI)
    {
        chain = chain.or_else(
            "Container",
            aws_config::ecs::EcsCredentialsProvider::builder()
                .configure(&config)
                .build(),
        );
    }
    if imds_enabled(env) {
        chain = chain.or_else(
            "Ec2InstanceMetadata",
            aws_config::imds::credentials::ImdsCredentialsProvider::builder()
                .configure(&config)
                .build(),
        );
    }
    // A source that fails (an expired SSO token, a failing credential_process) must not stop a
    // purely local run (a known SAM pain): the function gets the stand-ins, and only what really
    // needs AWS (layer downloads) reports why.
    let (credentials, credentials_error) = match chain.provide_credentials().await {
        Ok(credentials) => (Some(credentials), None),
        Err(CredentialsError::CredentialsNotLoaded(_)) => (None, None),
        Err(err) => {
            let message = AwsError::Credentials {
                profile: profile.clone(),
                message: error_chain(&err),
            }
            .to_string();
            tracing::warn!("Notice: {message}; the function gets stand-in credentials");
            (None, Some(message))
        }
    };
    Ok(Session {
        profile,
        region,
        credentials,
        credentials_error,
    })
}

/// The shared config and credentials files, as the SDK finds them.
fn config_files(env: EnvFn) -> Vec<PathBuf> {
    let home = crate::paths::home(env);
    let file = |var: &str, default: &str| {
        env(var)
            .filter(|v| !v.is_empty())
            .map_or_else(|| home.join(".aws").join(default), PathBuf::from)
    };
    vec![
        file(env_vars::AWS_CONFIG_FILE, "config"),
        file(env_vars::AWS_SHARED_CREDENTIALS_FILE, "credentials"),
    ]
}

fn imds_enabled(env: EnvFn) -> bool {
    env(env_vars::AWS_EC2_METADATA_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// Runs SDK futures on a runtime of their own. It is dropped (with its threads) before the sandbox
/// forks, so no tokio thread can hold a lock across the fork.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, AwsError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AwsError::Runtime(e.to_string()))?;
    Ok(runtime.block_on(future))
}

/// An SDK error with its causes, on one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// A Lambda API client for `session` (endpoint from `AWS_ENDPOINT_URL_LAMBDA`, `AWS_ENDPOINT_URL` or
/// the profile's `endpoint_url`, as the SDK reads them).
pub async fn lambda_client(session: &Session) -> aws_sdk_lambda::Client {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(session.region.clone()));
    if let Some(profile) = &session.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(credentials) = &session.credentials {
        loader = loader.credentials_provider(credentials.clone());
    }
    aws_sdk_lambda::Client::new(&loader.load().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn environment_credentials_without_files_skip_the_sdk() {
        let env = env_of(&[
            ("HOME", "/nonexistent"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_SESSION_TOKEN", "TOKEN"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
        ]);
        let session = Session::resolve(None, None, &env).unwrap();
        assert_eq!(session.region, "eu-west-3");
        let credentials = session.credentials.unwrap();
        assert_eq!(credentials.access_key_id(), "AKID");
        assert_eq!(credentials.session_token(), Some("TOKEN"));
    }

    #[test]
    fn nothing_configured_gives_no_credentials_and_the_default_region() {
        let env = env_of(&[("HOME", "/nonexistent")]);
        let session = Session::resolve(None, Some("ap-south-1"), &env).unwrap();
        assert_eq!(session.region, "ap-south-1");
        assert!(session.credentials.is_none());
        let session = Session::resolve(None, None, &env).unwrap();
        assert_eq!(session.region, DEFAULT_REGION);
    }

    #[test]
    fn imds_only_when_asked_for() {
        assert!(!imds_enabled(&env_of(&[])));
        assert!(!imds_enabled(&env_of(&[(
            "AWS_EC2_METADATA_DISABLED",
            "true"
        )])));
        assert!(imds_enabled(&env_of(&[(
            "AWS_EC2_METADATA_DISABLED",
            "False"
        )])));
    }
}
