//! Every environment variable lamina itself reads, in one place. (Option variables such as
//! `SAM_TEMPLATE_FILE` are declared on the options in `cli`.)

/// Cache root override.
pub const LAMINA_CACHE_DIR: &str = "LAMINA_CACHE_DIR";
/// Standard XDG cache base.
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
pub const HOME: &str = "HOME";
/// Region, as botocore reads it.
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// The profile when `--profile` is not given (`AWS_DEFAULT_PROFILE` is botocore's older name).
pub const AWS_PROFILE: &str = "AWS_PROFILE";
pub const AWS_DEFAULT_PROFILE: &str = "AWS_DEFAULT_PROFILE";
/// Where the shared config and credentials files are, when not in `~/.aws`.
pub const AWS_CONFIG_FILE: &str = "AWS_CONFIG_FILE";
pub const AWS_SHARED_CREDENTIALS_FILE: &str = "AWS_SHARED_CREDENTIALS_FILE";
/// Credential sources that need the SDK (container credentials, web identity).
pub const AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
pub const AWS_CONTAINER_CREDENTIALS_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub const AWS_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
/// `false` turns on the EC2 instance metadata credentials (off otherwise; see `aws`).
pub const AWS_EC2_METADATA_DISABLED: &str = "AWS_EC2_METADATA_DISABLED";
/// A CA bundle for the layer download, as boto3 honours it.
pub const AWS_CA_BUNDLE: &str = "AWS_CA_BUNDLE";
/// Turns on `--language-extensions` when `1`, `true` or `yes` (as SAM).
pub const SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS: &str = "SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS";
/// `RUST_LOG`-style filter for lamina's own diagnostics.
pub const LAMINA_LOG: &str = "LAMINA_LOG";
/// Rootless id mapping: `auto`, `single` or `range` (see `sandbox::idmap`).
pub const LAMINA_ID_MAPPING: &str = "LAMINA_ID_MAPPING";
/// Set by CI: tests that need root or user namespaces fail instead of skipping.
pub const LAMINA_TEST_MUST_WORK: &str = "LAMINA_TEST_MUST_WORK";
/// Registry mirrors: `public.ecr.aws=http://127.0.0.1:5000,other=URL` (`http://` means plain HTTP).
pub const LAMINA_REGISTRY_MIRROR: &str = "LAMINA_REGISTRY_MIRROR";
/// Hours between registry checks of a cached tag (default 24).
pub const LAMINA_IMAGE_REFRESH_HOURS: &str = "LAMINA_IMAGE_REFRESH_HOURS";
/// Standard XDG config base (`$XDG_CONFIG_HOME/lamina/config.toml`).
pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
/// Docker's config directory, for registry credentials (`$DOCKER_CONFIG/config.json`).
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";
/// Where sandboxes keep their state (default `/run/lamina`, or `$XDG_RUNTIME_DIR/lamina`).
pub const LAMINA_RUNTIME_DIR: &str = "LAMINA_RUNTIME_DIR";
/// The cgroup under which sandboxes get their own (default `lamina`).
pub const LAMINA_CGROUP_PARENT: &str = "LAMINA_CGROUP_PARENT";
/// `1` prints where an invoke's time went (`lamina timings: ...`) to the log stream.
pub const LAMINA_TIMINGS: &str = "LAMINA_TIMINGS";
/// A host `aws-lambda-rie` binary for `--emulator rie` (mounted at /var/rapid/aws-lambda-rie).
pub const LAMINA_RIE_PATH: &str = "LAMINA_RIE_PATH";
/// `unconfined` runs functions without the seccomp filter (like Docker's
/// `--security-opt seccomp=unconfined`); unset or `default` applies Docker's default profile.
pub const LAMINA_SECCOMP: &str = "LAMINA_SECCOMP";
/// The most bytes an image may unpack to (its uncompressed layers; default 10737418240, Lambda's
/// 10 GB container-image limit).
pub const LAMINA_MAX_IMAGE_BYTES: &str = "LAMINA_MAX_IMAGE_BYTES";
