//! One template and the nested stacks below it, processed as `SamLocalStackProvider` does.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::intrinsics::{Resolver, SymbolTable};
use super::{TemplateError, globals, include, language_extensions, parse_file};

/// A processed template: Globals merged, intrinsics resolved.
#[derive(Debug, Clone)]
pub struct Stack {
    /// `""` for the root stack, else the chain of nested-stack ids (`Child/GrandChild`).
    pub stack_path: String,
    /// The template file as given (absolute).
    pub template_path: PathBuf,
    /// The directory relative paths in this template are taken from (the real path of its directory).
    pub base_dir: PathBuf,
    /// The processed template; `Resources` holds resolved resources.
    pub template: Map<String, Value>,
    pub symbols: SymbolTable,
}

impl Stack {
    pub fn resources(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.template
            .get("Resources")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
    }

    /// The resource's type, if it exists in this stack.
    pub fn resource_type(&self, logical_id: &str) -> Option<&str> {
        self.template
            .get("Resources")?
            .get(logical_id)?
            .get("Type")?
            .as_str()
    }
}

/// Values that shape how templates are resolved.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--parameter-overrides` (root stack only).
    pub parameter_overrides: IndexMap<String, Value>,
    /// Values every stack sees: `AWS::Region` from `--region`.
    pub global_overrides: IndexMap<String, Value>,
    /// Expand `AWS::LanguageExtensions` (`--language-extensions`): `None` expands templates that
    /// declare the transform.
    pub language_extensions: Option<bool>,
}

const MAX_NESTING: usize = 16;

/// Loads the root template and every nested stack whose template is a local file.
pub fn load_stacks(root: &Path, options: &LoadOptions) -> Result<Vec<Stack>, TemplateError> {
    let mut overrides = options.global_overrides.clone();
    overrides.extend(options.parameter_overrides.clone());
    let mut stacks = Vec::new();
    load_into(root, String::new(), &overrides, options, &mut stacks, 0)?;
    Ok(stacks)
}

fn load_into(
    path: &Path,
    stack_path: String,
    overrides: &IndexMap<String, Value>,
    options: &LoadOptions,
    stacks: &mut Vec<Stack>,
    depth: usize,
) -> Result<(), TemplateError> {
    if depth > MAX_NESTING {
        return Err(TemplateError::invalid(format!(
            "nested stacks go more than {MAX_NESTING} levels deep (does a template include itself?)"
        ))
        .in_file(path));
    }
    let stack = process(path, stack_path, overrides, options.language_extensions)?;
    let children = nested_stacks(&stack);
    stacks.push(stack);
    for child in children {
        let mut child_overrides = options.global_overrides.clone();
        child_overrides.extend(child.parameters);
        load_into(
            &child.template,
            child.stack_path.clone(),
            &child_overrides,
            options,
            stacks,
            depth + 1,
        )
        .map_err(|source| TemplateError::Nested {
            stack: child.stack_path,
            source: Box::new(source),
        })?;
    }
    Ok(())
}

fn process(
    path: &Path,
    stack_path: String,
    overrides: &IndexMap<String, Value>,
    language_extensions: Option<bool>,
) -> Result<Stack, TemplateError> {
    let mut template = parse_file(path)?;
    match template.get("Resources") {
        Some(Value::Object(resources)) if !resources.is_empty() => {}
        _ => {
            return Err(TemplateError::invalid(
                "'Resources' section is required and must not be empty",
            )
            .in_file(path));
        }
    }
    // Relative paths are taken from the template's real directory (a symlinked template counts
    // from where it really is).
    let real = fs_err::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let base_dir = real.parent().map(Path::to_path_buf).unwrap_or_default();
    include::apply(&mut template, &base_dir).map_err(|e| e.in_file(path))?;
    // Each file is within the depth limit; spliced into each other they may not be.
    let depth = crate::limits::map_depth(&template);
    if depth > crate::limits::MAX_DEPTH {
        return Err(TemplateError::invalid(format!(
            "with its AWS::Include snippets in place the template is nested {depth} levels deep, more than {} (lamina's limit)",
            crate::limits::MAX_DEPTH
        ))
        .in_file(path));
    }
    if language_extensions.unwrap_or_else(|| language_extensions::declared(&template)) {
        let symbols = SymbolTable::new(template.get("Parameters"), overrides);
        language_extensions::expand(&mut template, &symbols).map_err(|e| e.in_file(path))?;
    } else if language_extensions::used(&template) {
        tracing::warn!(
            "{} uses Fn::ForEach but does not declare Transform: AWS::LanguageExtensions; pass --language-extensions to expand it",
            path.display()
        );
    }
    normalize_cdk_metadata(&mut template);
    globals::apply(&mut template).map_err(|e| e.in_file(path))?;
    default_code_uri(&mut template);

    let symbols = SymbolTable::new(template.get("Parameters"), overrides);
    let raw_resources = template
        .get("Resources")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let resolved = {
        let resolver = Resolver::new(&symbols, &template, &raw_resources);
        resolver.resolve(&Value::Object(raw_resources.clone()))
    };
    template.insert("Resources".into(), resolved);

    Ok(Stack {
        stack_path,
        template_path: path.to_path_buf(),
        base_dir,
        template,
        symbols,
    })
}

/// CDK output (`cdk synth`): the code of a function or layer is an asset directory named in
/// `Metadata` (`aws:asset:path` for the property `aws:asset:property`), and the function's
/// readable id is the construct path (`aws:cdk:path`), as SAM's ResourceMetadataNormalizer reads it.
fn normalize_cdk_metadata(template: &mut Map<String, Value>) {
    let Some(Value::Object(resources)) = template.get_mut("Resources") else {
        return;
    };
    for resource in resources.values_mut() {
        let Some(resource) = resource.as_object_mut() else {
            continue;
        };
        let Some(Value::Object(metadata)) = resource.get("Metadata").cloned() else {
            continue;
        };
        let text = |key: &str| {
            metadata
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        if let (Some(asset_path), Some(property)) =
            (text("aws:asset:path"), text("aws:asset:property"))
        {
            let properties = resource
                .entry("Properties")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(properties) = properties.as_object_mut() {
                if property == "Code.ImageUri" {
                    // An image asset: lamina runs images but does not build them.
                    let metadata = resource.get_mut("Metadata").and_then(Value::as_object_mut);
                    if let Some(metadata) = metadata {
                        metadata.insert("DockerContext".into(), Value::String(asset_path));
                    }
                } else {
                    properties.insert(property, Value::String(asset_path));
                }
            }
        }
        if let (None, Some(cdk_path)) = (text("SamResourceId"), text("aws:cdk:path")) {
            let parts: Vec<&str> = cdk_path.split('/').collect();
            let id = match parts.as_slice() {
                [.., parent, "Resource"] => Some(*parent),
                [.., last] => Some(*last),
                [] => None,
            };
            if let (Some(id), Some(Value::Object(metadata))) = (id, resource.get_mut("Metadata")) {
                metadata.insert("SamResourceId".into(), Value::String(id.to_string()));
            }
        }
    }
}

/// SAM's SupportLocalUriPlugin: a serverless function without code gets `CodeUri: .`.
fn default_code_uri(template: &mut Map<String, Value>) {
    let Some(Value::Object(resources)) = template.get_mut("Resources") else {
        return;
    };
    for resource in resources.values_mut() {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let Some(resource) = resource.as_object_mut() else {
            continue;
        };
        let properties = resource
            .entry("Properties")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(properties) = properties.as_object_mut() else {
            continue;
        };
        let has_code = ["CodeUri", "InlineCode", "ImageUri"]
            .iter()
            .any(|k| properties.get(*k).is_some_and(|v| !v.is_null()));
        if !has_code {
            properties.insert("CodeUri".into(), Value::String(".".into()));
        }
    }
}

struct NestedStack {
    stack_path: String,
    template: PathBuf,
    parameters: IndexMap<String, Value>,
}

/// `AWS::Serverless::Application` (`Location`) and `AWS::CloudFormation::Stack` (`TemplateURL`) with a
/// local path or `file://` URL. Remote locations (S3, HTTP, SAR) are skipped as SAM skips them.
fn nested_stacks(stack: &Stack) -> Vec<NestedStack> {
    let mut children = Vec::new();
    for (logical_id, resource) in stack.resources() {
        let key = match resource.get("Type").and_then(Value::as_str) {
            Some("AWS::Serverless::Application") => "Location",
            Some("AWS::CloudFormation::Stack") => "TemplateURL",
            _ => continue,
        };
        let properties = resource.get("Properties");
        let Some(location) = properties.and_then(|p| p.get(key)).and_then(Value::as_str) else {
            continue;
        };
        let location = location.strip_prefix("file://").unwrap_or(location);
        if location.starts_with("s3://")
            || location.starts_with("http://")
            || location.starts_with("https://")
        {
            tracing::debug!(logical_id, location, "skipping remote nested stack");
            continue;
        }
        let id = resource_id(logical_id, resource);
        let stack_path = if stack.stack_path.is_empty() {
            id
        } else {
            format!("{}/{id}", stack.stack_path)
        };
        let parameters = properties
            .and_then(|p| p.get("Parameters"))
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        children.push(NestedStack {
            stack_path,
            template: stack.base_dir.join(location),
            parameters,
        });
    }
    children
}

/// A resource's id in paths: `Metadata.SamResourceId` when set (CDK), else its logical id.
pub(super) fn resource_id(logical_id: &str, resource: &Value) -> String {
    resource
        .get("Metadata")
        .and_then(|m| m.get("SamResourceId"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(logical_id)
        .to_string()
}
