//! SAM and CloudFormation templates: finding, parsing and processing them into functions and layers.
//!
//! Processing follows what `sam local invoke` does per stack: parse (JSON first, then YAML with the
//! CloudFormation short tags), merge `Globals`, give every serverless function a `CodeUri` (`.` when
//! it has none), resolve intrinsics against the parameters, then descend into nested stacks whose
//! templates are local files.

mod function;
mod globals;
mod identifier;
mod include;

pub mod intrinsics;
mod language_extensions;
mod stack;

use std::path::{Path, PathBuf};

pub(crate) use function::normalize;
pub use function::{
    Code, Function, ImageConfig, Layer, LoggingConfig, PackageType, Skipped,
    extract as extract_functions,
};
pub use identifier::{IdentifierError, find_function, normalize_identifier};
pub use stack::{LoadOptions, Stack, load_stacks};

/// The names `sam local invoke` looks for, in order, when no `--template` is given. The first entry
/// is the output of `sam build`, so a built project runs its built code.
pub const DEFAULT_TEMPLATE_NAMES: [&str; 4] = [
    ".aws-sam/build/template.yaml",
    "template.yaml",
    "template.yml",
    "template.json",
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("Template file not found at {}", .0.display())]
    NotFound(PathBuf),
    #[error("cannot read template {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: crate::limits::ReadError,
    },
    #[error("Failed to parse template {}: {detail}", .path.display())]
    Parse { path: PathBuf, detail: String },
    #[error(
        "Invalid Serverless Application Specification document. Number of errors found: 1. {message}{}",
        if .path.as_os_str().is_empty() { String::new() } else { format!(" (in {})", .path.display()) }
    )]
    Invalid { path: PathBuf, message: String },
    #[error("function {function}: {message}")]
    Function { function: String, message: String },
    #[error("nested stack {stack}: {source}")]
    Nested {
        stack: String,
        #[source]
        source: Box<TemplateError>,
    },
}

impl TemplateError {
    pub(crate) fn invalid(message: impl Into<String>) -> TemplateError {
        TemplateError::Invalid {
            path: PathBuf::new(),
            message: message.into(),
        }
    }

    /// Names the template file in a path-less validation error.
    pub(crate) fn in_file(self, file: &Path) -> TemplateError {
        match self {
            TemplateError::Invalid { path, message } if path.as_os_str().is_empty() => {
                TemplateError::Invalid {
                    path: file.to_path_buf(),
                    message,
                }
            }
            other => other,
        }
    }
}

/// Picks the template as SAM does: an explicit path (relative to `cwd`), else the first default
/// name that exists, else `template.yml` (which then fails to load with a clear message).
pub fn discover(cwd: &Path, explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return cwd.join(path);
    }
    DEFAULT_TEMPLATE_NAMES
        .iter()
        .map(|name| cwd.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| cwd.join("template.yml"))
}

/// Reads and parses one template file into its top-level mapping.
pub fn parse_file(
    path: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>, TemplateError> {
    match parse_value_file(path)? {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(TemplateError::Parse {
            path: path.to_path_buf(),
            detail: format!(
                "expected a mapping at the top level, found {}",
                kind_of(&other)
            ),
        }),
    }
}

/// Reads and parses a JSON or YAML file (a template, or a snippet for `AWS::Include`).
pub(crate) fn parse_value_file(path: &Path) -> Result<serde_json::Value, TemplateError> {
    let text = match crate::limits::read_text_file(path) {
        Ok(text) => text,
        Err(err) if err.is_not_found() => {
            return Err(TemplateError::NotFound(path.to_path_buf()));
        }
        Err(err) => {
            return Err(TemplateError::Read {
                path: path.to_path_buf(),
                source: err,
            });
        }
    };
    crate::yaml::parse_json_or_yaml(&text).map_err(|e| TemplateError::Parse {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

pub(crate) fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}
