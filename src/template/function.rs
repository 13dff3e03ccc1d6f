//! Functions and layers as `sam local invoke` reads them from processed stacks
//! (`sam_function_provider.py`). Values a function may get wrong (Timeout, Architectures, Layers) are
//! checked when that function is invoked, so a mistake in one function never blocks another.

use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::stack::{Stack, resource_id};
use super::{TemplateError, kind_of};
use crate::runtimes::Architecture;

const FUNCTION_TYPES: [&str; 2] = ["AWS::Serverless::Function", "AWS::Lambda::Function"];
const LAYER_TYPES: [&str; 2] = ["AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PackageType {
    Zip,
    Image,
}

/// Where a function's code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A local directory, or a `.zip`/`.jar` archive, as an absolute normalised path.
    Path(PathBuf),
    /// `InlineCode` / `Code.ZipFile`.
    Inline(String),
    /// Image functions carry their code in the image.
    None,
}

/// One entry of a function's `Layers`, in template order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Layer {
    /// A `LayerVersion` resource of the same stack with local content.
    Local {
        name: String,
        logical_id: String,
        path: PathBuf,
    },
    /// A published layer version, downloaded with the Lambda API.
    Arn {
        arn: String,
        name: String,
        version: u64,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImageConfig {
    pub command: Option<Vec<String>>,
    pub entry_point: Option<Vec<String>>,
    pub working_directory: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggingConfig {
    pub log_group: Option<String>,
    pub log_format: Option<String>,
    pub application_log_level: Option<String>,
}

/// A function found in a template, with its properties resolved.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// `Metadata.SamResourceId` or the logical id.
    pub function_id: String,
    /// `<stack path>/<function id>`, or the function id in the root stack.
    pub full_path: String,
    /// The resolved `FunctionName`, or the logical id.
    pub function_name: String,
    pub resource_type: String,
    pub code: Code,
    properties: Map<String, Value>,
    /// Where relative layer paths are resolved (the template's directory or `--docker-volume-basedir`).
    base_dir: PathBuf,
    /// The directory of the function's template, where a relative `ImageUri: oci:PATH` is found.
    pub template_dir: PathBuf,
    /// The layer resources of the function's own stack, for `Layers: [!Ref MyLayer]`.
    stack_layers: Map<String, Value>,
}

/// A function that `sam local invoke` cannot run and leaves out, with the warning SAM prints.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub full_path: String,
    pub warning: String,
}

/// Every function of every stack, in stack then template order, plus those left out.
pub fn extract(stacks: &[Stack], volume_basedir: Option<&Path>) -> (Vec<Function>, Vec<Skipped>) {
    let mut functions = Vec::new();
    let mut skipped = Vec::new();
    for stack in stacks {
        let base_dir = volume_basedir.map_or_else(|| stack.base_dir.clone(), Path::to_path_buf);
        let stack_layers: Map<String, Value> = stack
            .resources()
            .filter(|(_, r)| {
                r.get("Type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| LAYER_TYPES.contains(&t))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (logical_id, resource) in stack.resources() {
            let Some(kind) = resource.get("Type").and_then(Value::as_str) else {
                continue;
            };
            if !FUNCTION_TYPES.contains(&kind) {
                continue;
            }
            let function_id = resource_id(logical_id, resource);
            let full_path = if stack.stack_path.is_empty() {
                function_id.clone()
            } else {
                format!("{}/{function_id}", stack.stack_path)
            };
            let mut properties = resource
                .get("Properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(metadata) = resource.get("Metadata") {
                properties.insert("Metadata".into(), metadata.clone());
            }
            let code = match code_of(kind, &properties, &base_dir) {
                Ok(code) => code,
                Err(()) => {
                    skipped.push(Skipped {
                        warning: format!(
                            "The resource {kind} '{logical_id}' has specified S3 location for CodeUri. It will not be built and lamina does not support invoking it locally."
                        ),
                        full_path,
                    });
                    continue;
                }
            };
            let function_name = properties
                .get("FunctionName")
                .and_then(Value::as_str)
                .unwrap_or(logical_id)
                .to_string();
            functions.push(Function {
                logical_id: logical_id.clone(),
                function_id,
                full_path,
                function_name,
                resource_type: kind.to_string(),
                code,
                properties,
                base_dir: base_dir.clone(),
                template_dir: stack.base_dir.clone(),
                stack_layers: stack_layers.clone(),
            });
        }
    }
    (functions, skipped)
}

/// The code location, or `Err(())` for S3 code that cannot run locally.
fn code_of(kind: &str, properties: &Map<String, Value>, base_dir: &Path) -> Result<Code, ()> {
    let serverless = kind == "AWS::Serverless::Function";
    if serverless && let Some(Value::String(inline)) = properties.get("InlineCode") {
        return Ok(Code::Inline(inline.clone()));
    }
    if properties.get("PackageType").and_then(Value::as_str) == Some("Image") {
        return Ok(Code::None);
    }
    let key = if serverless { "CodeUri" } else { "Code" };
    match properties.get(key) {
        Some(Value::String(uri)) if uri.starts_with("s3://") => Err(()),
        Some(Value::String(uri)) => Ok(Code::Path(normalize(&base_dir.join(uri)))),
        Some(Value::Object(map)) => {
            if let Some(Value::String(inline)) = map.get("ZipFile") {
                return Ok(Code::Inline(inline.clone()));
            }
            if map.contains_key("ImageUri") {
                return Ok(Code::None);
            }
            if ["S3Bucket", "Bucket", "S3Key", "Key"]
                .iter()
                .any(|k| map.contains_key(*k))
            {
                return Err(());
            }
            Ok(Code::Path(normalize(base_dir)))
        }
        _ => Ok(Code::Path(normalize(base_dir))),
    }
}

/// `os.path.normpath`: removes `.` and folds `..` lexically, without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl Function {
    fn error(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::Function {
            function: self.full_path.clone(),
            message: message.into(),
        }
    }

    /// A property as resolved from the template.
    pub fn property(&self, name: &str) -> Option<&Value> {
        self.properties.get(name).filter(|v| !v.is_null())
    }

    fn string_property(&self, name: &str) -> Option<String> {
        match self.property(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub fn runtime(&self) -> Option<String> {
        self.string_property("Runtime")
    }

    pub fn handler(&self) -> Option<String> {
        self.string_property("Handler")
    }

    pub fn package_type(&self) -> Result<PackageType, TemplateError> {
        match self.property("PackageType") {
            None => Ok(PackageType::Zip),
            Some(Value::String(s)) if s == "Zip" => Ok(PackageType::Zip),
            Some(Value::String(s)) if s == "Image" => Ok(PackageType::Image),
            Some(other) => Err(self.error(format!(
                "Invalid PackageType `{}`, PackageType needs to be one of [Zip, Image]",
                display(other)
            ))),
        }
    }

    /// `ImageUri` (serverless) or `Code.ImageUri` (plain Lambda).
    pub fn image_uri(&self) -> Option<String> {
        let value = self
            .property("ImageUri")
            .or_else(|| self.property("Code")?.get("ImageUri"))?;
        value.as_str().map(str::to_string)
    }

    pub fn memory_size(&self) -> Result<u64, TemplateError> {
        self.integer("MemorySize", 128)
    }

    pub fn timeout(&self) -> Result<u64, TemplateError> {
        self.integer("Timeout", 3)
    }

    /// An integer property read like Python's `int()`: numbers are truncated, strings must be digits.
    fn integer(&self, name: &str, default: u64) -> Result<u64, TemplateError> {
        let invalid = |v: &Value| self.error(format!("Invalid Number for {name}: {}", display(v)));
        match self.property(name) {
            None => Ok(default),
            Some(v @ Value::Number(n)) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| *f >= 0.0 && f.is_finite())
                        .map(|f| f as u64)
                })
                .ok_or_else(|| invalid(v)),
            Some(v @ Value::String(s)) => s.trim().parse::<u64>().map_err(|_| invalid(v)),
            Some(v) => Err(invalid(v)),
        }
    }

    pub fn architecture(&self) -> Result<Architecture, TemplateError> {
        let Some(value) = self.property("Architectures") else {
            return Ok(Architecture::X86_64);
        };
        let Some([only]) = value.as_array().map(Vec::as_slice) else {
            return Err(self.error(format!(
                "Function {} property Architectures should be a list of length 1",
                self.logical_id
            )));
        };
        only.as_str().and_then(Architecture::parse).ok_or_else(|| {
            self.error(format!(
                "Architectures: `{}` is not a valid architecture (x86_64 or arm64)",
                display(only)
            ))
        })
    }

    /// `Environment.Variables`, unconverted (see `environment` for the string conversion).
    pub fn environment_variables(&self) -> IndexMap<String, Value> {
        self.property("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_object)
            .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn image_config(&self) -> Result<ImageConfig, TemplateError> {
        let Some(config) = self.property("ImageConfig") else {
            return Ok(ImageConfig::default());
        };
        let list = |key: &str| -> Result<Option<Vec<String>>, TemplateError> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .map(Some)
                    .ok_or_else(|| {
                        self.error(format!("ImageConfig.{key} must be a list of strings"))
                    }),
                Some(other) => Err(self.error(format!(
                    "ImageConfig.{key} must be a list, found {}",
                    kind_of(other)
                ))),
            }
        };
        Ok(ImageConfig {
            command: list("Command")?,
            entry_point: list("EntryPoint")?,
            working_directory: config
                .get("WorkingDirectory")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    pub fn logging_config(&self) -> LoggingConfig {
        let config = self.property("LoggingConfig");
        let get = |key: &str| {
            config
                .and_then(|c| c.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        LoggingConfig {
            log_group: get("LogGroup"),
            log_format: get("LogFormat"),
            application_log_level: get("ApplicationLogLevel"),
        }
    }

    /// `EphemeralStorage.Size` in MB: the size of `/tmp` (512 by default, as in Lambda).
    pub fn ephemeral_storage_mb(&self) -> Result<u64, TemplateError> {
        match self
            .property("EphemeralStorage")
            .and_then(|e| e.get("Size"))
        {
            None => Ok(512),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str()?.parse().ok())
                .ok_or_else(|| {
                    self.error(format!(
                        "Invalid Number for EphemeralStorage.Size: {}",
                        display(v)
                    ))
                }),
        }
    }

    pub fn has_tenancy_config(&self) -> bool {
        self.property("TenancyConfig").is_some_and(Value::is_object)
    }

    /// `CapacityProviderConfig.PerExecutionEnvironmentMaxConcurrency` (default 4) when the function has one.
    pub fn max_concurrency(&self) -> Option<u64> {
        let config = self.property("CapacityProviderConfig")?;
        Some(
            config
                .get("PerExecutionEnvironmentMaxConcurrency")
                .and_then(Value::as_u64)
                .unwrap_or(4),
        )
    }

    pub fn metadata(&self) -> Option<&Map<String, Value>> {
        self.property("Metadata").and_then(Value::as_object)
    }

    /// The function's layers in template order (Globals layers first), as SAM's `_parse_layer_info`.
    pub fn layers(&self) -> Result<Vec<Layer>, TemplateError> {
        let Some(value) = self.property("Layers") else {
            return Ok(Vec::new());
        };
        let Some(items) = value.as_array() else {
            return Err(self.error(format!("Layers must be a list, found {}", kind_of(value))));
        };
        let mut layers = Vec::new();
        for item in items {
            match item {
                Value::String(s) if self.stack_layers.contains_key(s) => {
                    layers.push(self.local_layer(s)?)
                }
                Value::String(arn) => {
                    if arn == "arn:aws:lambda:::awslayer:AmazonLinux1803" {
                        continue;
                    }
                    if arn == "arn:aws:lambda:::awslayer:AmazonLinux1703" {
                        return Err(self.error("Building and invoking locally only supports AmazonLinux1803. See https://aws.amazon.com/blogs/compute/upcoming-updates-to-the-aws-lambda-execution-environment/ for more details."));
                    }
                    layers.push(self.arn_layer(arn)?);
                }
                Value::Object(map) if map.len() == 1 => {
                    // `!Ref` must name a layer of this stack (as SAM); `!GetAtt Layer.Arn` of a
                    // local layer works too; anything else (an output of another stack...) is skipped.
                    if let Some(Value::String(id)) = map.get("Ref") {
                        if !self.stack_layers.contains_key(id) {
                            return Err(self.error(format!(
                                "Layers: `{id}`: Layer References need to be of type 'AWS::Serverless::LayerVersion' or 'AWS::Lambda::LayerVersion'"
                            )));
                        }
                        if let Some(layer) = self.local_layer_or_skip(id)? {
                            layers.push(layer);
                        }
                        continue;
                    }
                    let target = match map.get("Fn::GetAtt") {
                        Some(Value::Array(parts)) => parts.first().and_then(Value::as_str),
                        _ => None,
                    };
                    match target.filter(|t| self.stack_layers.contains_key(*t)) {
                        Some(id) => {
                            if let Some(layer) = self.local_layer_or_skip(id)? {
                                layers.push(layer);
                            }
                        }
                        None => {
                            tracing::debug!(layer = %item, "skipping a layer that cannot be resolved locally")
                        }
                    }
                }
                other => {
                    tracing::debug!(layer = %other, "skipping a layer that cannot be resolved locally")
                }
            }
        }
        Ok(layers)
    }

    fn local_layer(&self, logical_id: &str) -> Result<Layer, TemplateError> {
        self.local_layer_or_skip(logical_id)?.ok_or_else(|| {
            self.error(format!(
                "layer {logical_id} has its content in S3, which lamina cannot use"
            ))
        })
    }

    /// A local layer, or `None` (with SAM's warning) when its content is in S3.
    fn local_layer_or_skip(&self, logical_id: &str) -> Result<Option<Layer>, TemplateError> {
        let resource = &self.stack_layers[logical_id];
        let kind = resource
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = if kind == "AWS::Serverless::LayerVersion" {
            "ContentUri"
        } else {
            "Content"
        };
        let content = resource.get("Properties").and_then(|p| p.get(key));
        let uri = match content {
            Some(Value::String(s)) if s.starts_with("s3://") => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Object(map))
                if ["S3Bucket", "Bucket", "S3Key", "Key"]
                    .iter()
                    .any(|k| map.contains_key(*k)) =>
            {
                None
            }
            _ => Some("."),
        };
        let Some(uri) = uri else {
            tracing::warn!(
                "The resource {kind} '{logical_id}' has specified S3 location for ContentUri. It will not be built and lamina does not support invoking it locally."
            );
            return Ok(None);
        };
        Ok(Some(Layer::Local {
            name: resource_id(logical_id, resource),
            logical_id: logical_id.to_string(),
            path: normalize(&self.base_dir.join(uri)),
        }))
    }

    fn arn_layer(&self, arn: &str) -> Result<Layer, TemplateError> {
        let invalid = || self.error(format!("{arn} is an Invalid Layer Arn."));
        let (unversioned, version) = arn.rsplit_once(':').ok_or_else(invalid)?;
        let version: u64 = version.parse().map_err(|_| invalid())?;
        // AWS's pattern for layer names; the name becomes a directory of the layer cache.
        let layer_name = unversioned
            .rsplit(':')
            .next()
            .filter(|n| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
            .ok_or_else(invalid)?;
        let digest = hex::encode(Sha256::digest(arn.as_bytes()));
        Ok(Layer::Arn {
            arn: arn.to_string(),
            name: format!("{layer_name}-{version}-{}", &digest[..10]),
            version,
        })
    }
}

/// A value as Python would print it in SAM's messages.
fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_function_normalize() {
        assert_eq!(normalize(Path::new("/a/b/./../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/a/b/.")), PathBuf::from("/a/b"));
    }
}
