//! The environment a function sees: SAM's injected `AWS_*` variables, the template's
//! `Environment.Variables`, the shell, and `--env-vars` overrides (`samcli/local/lambdafn/env_vars.py`).
//!
//! One deliberate difference from SAM: a variable that `--env-vars` sets for a function but the
//! template does not declare is passed too (SAM drops it silently); the caller prints a notice.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::template::Function;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("Could not read environment variables overrides from file {}: {message}", .path.display())]
    Read { path: PathBuf, message: String },
    #[error("Environment variables {value} in incorrect format (in {}: every top-level value must be an object of NAME: value)", .path.display())]
    Shape { path: PathBuf, value: String },
}

/// The parsed `--env-vars` (or `--container-env-vars`) file: `{"Parameters": {...}, "<Function>": {...}}`.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    blocks: Map<String, Value>,
}

impl EnvOverrides {
    /// Reads a JSON file, or failing that a `.env` file (whose variables apply to every function).
    /// A file that starts with `{` is JSON: if it does not parse, that is the error (with its
    /// position), not a `.env` file whose first variable is named `{"Function":`.
    pub fn load(path: &Path) -> Result<EnvOverrides, EnvError> {
        let read_error = |message: String| EnvError::Read {
            path: path.to_path_buf(),
            message,
        };
        let text = crate::limits::read_text_file(path).map_err(|e| read_error(e.to_string()))?;
        let blocks = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(EnvError::Shape {
                    path: path.to_path_buf(),
                    value: other.to_string(),
                });
            }
            // serde_json's message ends with `at line L column C`.
            Err(json_error) if text.trim_start().starts_with('{') => {
                return Err(read_error(format!("not valid JSON: {json_error}")));
            }
            Err(json_error) => {
                let vars: Map<String, Value> = parse_dotenv(&text)
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                if vars.is_empty() {
                    return Err(read_error(format!(
                        "file is not in valid JSON ({json_error}) or .env format"
                    )));
                }
                let mut blocks = Map::new();
                blocks.insert("Parameters".into(), Value::Object(vars));
                blocks
            }
        };
        if let Some((_, bad)) = blocks.iter().find(|(_, v)| !v.is_object()) {
            return Err(EnvError::Shape {
                path: path.to_path_buf(),
                value: bad.to_string(),
            });
        }
        Ok(EnvOverrides { blocks })
    }

    /// `Parameters` first, then the first non-empty block named by the function's logical id,
    /// function id, `FunctionName` or full path.
    pub fn for_function(&self, function: &Function) -> IndexMap<String, Value> {
        let mut out = IndexMap::new();
        let block = |key: &str| {
            self.blocks
                .get(key)
                .and_then(Value::as_object)
                .filter(|m| !m.is_empty())
        };
        if let Some(global) = block("Parameters") {
            out.extend(global.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let keys = [
            &function.logical_id,
            &function.function_id,
            &function.function_name,
            &function.full_path,
        ];
        if let Some(specific) = keys.iter().find_map(|k| block(k)) {
            out.extend(specific.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }
}

/// Reads `.env` text the way python-dotenv (which SAM uses) does in the common cases:
/// `[export ]KEY=value`, `'single'` and `"double"` quoted values (double quotes know `\n`, `\"`,
/// `\\`; both may span lines), `# comments`, and a bare `KEY` (an empty value). A line it cannot
/// read is skipped with a warning, as python-dotenv does.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let mut rest = text;
    let mut line_no = 0usize;
    while !rest.is_empty() {
        line_no += 1;
        let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let trimmed = rest[..line_end].trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            rest = &rest[line_end..];
            continue;
        }
        let body = rest.trim_start();
        let body = body.strip_prefix("export ").map_or(body, str::trim_start);
        let key_end = body.find(['=', '\n', '#']).unwrap_or(body.len());
        let key = body[..key_end].trim();
        let valid_key = !key.is_empty() && !key.contains(char::is_whitespace);
        if !body[key_end..].starts_with('=') {
            if valid_key {
                vars.push((key.to_string(), String::new()));
            } else {
                tracing::warn!("ignoring line {line_no} of the .env file: {trimmed}");
            }
            rest = &rest[line_end..];
            continue;
        }
        let after = body[key_end + 1..].trim_start_matches([' ', '\t']);
        let (value, consumed) = match after.chars().next() {
            Some(quote @ ('"' | '\'')) => match quoted(&after[1..], quote) {
                Some((value, used)) => {
                    let tail = &after[1 + used..];
                    let tail_end = tail.find('\n').map_or(tail.len(), |i| i + 1);
                    (value, 1 + used + tail_end)
                }
                None => {
                    tracing::warn!("ignoring line {line_no} of the .env file: unterminated quote");
                    (String::new(), usize::MAX)
                }
            },
            _ => {
                let end = after.find('\n').map_or(after.len(), |i| i + 1);
                let raw = &after[..end];
                let raw = raw.split(" #").next().unwrap_or_default();
                (raw.trim().to_string(), end)
            }
        };
        if consumed == usize::MAX {
            rest = &rest[line_end..];
            continue;
        }
        line_no += after[..consumed.min(after.len())]
            .matches('\n')
            .count()
            .saturating_sub(1);
        if valid_key {
            vars.push((key.to_string(), value));
        } else {
            tracing::warn!("ignoring line {line_no} of the .env file: {trimmed}");
        }
        let offset = rest.len() - after.len() + consumed.min(after.len());
        rest = &rest[offset..];
    }
    vars
}

/// The text of a quoted value up to the closing `quote`, and how many bytes that took (with it).
fn quoted(text: &str, quote: char) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Some((value, i + 1));
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, other)) => value.push(other),
                None => return None,
            }
            continue;
        }
        value.push(c);
    }
    None
}

/// Where the function's AWS identity and region come from.
#[derive(Debug, Clone)]
pub struct AwsIdentity {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// What the environment depends on besides the template.
pub struct EnvInputs<'a> {
    pub function: &'a Function,
    pub handler: Option<&'a str>,
    pub memory_mb: u64,
    /// The timeout the function is told about (36000 when debugging, as SAM).
    pub timeout_s: u64,
    pub debugging: bool,
    pub identity: &'a AwsIdentity,
    /// `--env-vars` values for this function.
    pub overrides: IndexMap<String, Value>,
    /// The runtime's debug variables (debug mode only; spec §7).
    pub debug_env: Vec<(String, String)>,
    /// `--container-env-vars` values (debug mode only).
    pub container_overrides: IndexMap<String, Value>,
    /// Reads a variable of lamina's own environment.
    pub shell: &'a dyn Fn(&str) -> Option<String>,
}

/// The resolved environment, and the override names the template does not declare.
#[derive(Debug, Clone)]
pub struct ResolvedEnv {
    pub vars: IndexMap<String, String>,
    pub undeclared_overrides: Vec<String>,
}

pub fn resolve(inputs: &EnvInputs) -> ResolvedEnv {
    let f = inputs.function;
    let mut vars = aws_variables(inputs);
    let declared = f.environment_variables();
    for (name, template_value) in &declared {
        let value = if let Some(v) = inputs.overrides.get(name) {
            stringify(v)
        } else if let Some(v) = (inputs.shell)(name) {
            v
        } else {
            stringify(template_value)
        };
        vars.insert(name.clone(), value);
    }
    let mut undeclared_overrides = Vec::new();
    for (name, value) in &inputs.overrides {
        if !declared.contains_key(name) {
            undeclared_overrides.push(name.clone());
            vars.insert(name.clone(), stringify(value));
        }
    }
    if inputs.debugging {
        for (name, value) in &inputs.debug_env {
            vars.insert(name.clone(), value.clone());
        }
        for (name, value) in &inputs.container_overrides {
            vars.insert(name.clone(), stringify(value));
        }
    }
    ResolvedEnv {
        vars,
        undeclared_overrides,
    }
}

/// The variables SAM always sets (`_get_aws_variables`), plus the two that the Runtime Interface
/// Emulator would otherwise set (`AWS_LAMBDA_RUNTIME_API`, `_HANDLER`), since lamina runs no RIE by default.
fn aws_variables(inputs: &EnvInputs) -> IndexMap<String, String> {
    let f = inputs.function;
    let logging = f.logging_config();
    let mut vars = IndexMap::new();
    let mut set = |k: &str, v: String| {
        vars.insert(k.to_string(), v);
    };
    set("AWS_SAM_LOCAL", "true".into());
    set(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        inputs.memory_mb.to_string(),
    );
    set("AWS_LAMBDA_FUNCTION_TIMEOUT", inputs.timeout_s.to_string());
    if let Some(handler) = inputs.handler {
        set("AWS_LAMBDA_FUNCTION_HANDLER", handler.to_string());
    }
    set("AWS_LAMBDA_FUNCTION_NAME", f.logical_id.clone());
    set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into());
    // Lambda's log groups start with a slash; SAM's local value lacks it. We use Lambda's.
    set(
        "AWS_LAMBDA_LOG_GROUP_NAME",
        logging
            .log_group
            .clone()
            .unwrap_or_else(|| format!("/aws/lambda/{}", f.logical_id)),
    );
    set("AWS_LAMBDA_LOG_STREAM_NAME", "$LATEST".into());
    set("AWS_REGION", inputs.identity.region.clone());
    set("AWS_DEFAULT_REGION", inputs.identity.region.clone());
    set("AWS_ACCESS_KEY_ID", inputs.identity.access_key_id.clone());
    set(
        "AWS_SECRET_ACCESS_KEY",
        inputs.identity.secret_access_key.clone(),
    );
    if let Some(token) = inputs
        .identity
        .session_token
        .clone()
        .filter(|t| !t.is_empty())
    {
        set("AWS_SESSION_TOKEN", token);
    }
    set(
        "AWS_ACCOUNT_ID",
        crate::template::intrinsics::DEFAULT_ACCOUNT_ID.into(),
    );
    set("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into());
    if let Some(format) = &logging.log_format {
        set("AWS_LAMBDA_LOG_FORMAT", format.clone());
        if format == "JSON" {
            set(
                "AWS_LAMBDA_LOG_LEVEL",
                logging
                    .application_log_level
                    .clone()
                    .unwrap_or_else(|| "INFO".into()),
            );
        }
    }
    if let (Some(concurrency), false) = (f.max_concurrency(), inputs.debugging) {
        set("AWS_LAMBDA_MAX_CONCURRENCY", concurrency.to_string());
    }
    set(
        "AWS_LAMBDA_RUNTIME_API",
        crate::sandbox::hook::RUNTIME_API_ADDRESS.into(),
    );
    if let Some(handler) = inputs.handler {
        set("_HANDLER", handler.to_string());
    }
    vars
}

/// SAM's `_stringify_value`: containers and null become `""`, booleans `true`/`false`, the rest `str(v)`.
pub fn stringify(value: &Value) -> String {
    match value {
        Value::Null | Value::Array(_) | Value::Object(_) => String::new(),
        Value::Bool(true) => "true".into(),
        Value::Bool(false) => "false".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => python_float(f),
            _ => n.to_string(),
        },
    }
}

/// Python's `repr(float)`: shortest round-trip digits, positional for exponents -4..16, always with a
/// fractional part or an exponent (`10.0`, `1.5`, `1e+16`, `1e-05`).
pub fn python_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "nan".into()
        } else if f > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let sci = format!("{f:e}"); // e.g. "1.5e0", "-1e16"
    let (mantissa, exponent) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exponent: i32 = exponent.parse().expect("integer exponent");
    if (-4..16).contains(&exponent) {
        let plain = format!("{f}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_environment_stringify() {
        assert_eq!(stringify(&json!(null)), "");
        assert_eq!(stringify(&json!({"Ref": "X"})), "");
        assert_eq!(stringify(&json!([1])), "");
        assert_eq!(stringify(&json!(true)), "true");
        assert_eq!(stringify(&json!(false)), "false");
        assert_eq!(stringify(&json!(10)), "10");
        assert_eq!(stringify(&json!(1.5)), "1.5");
        assert_eq!(stringify(&json!(10.0)), "10.0");
        assert_eq!(python_float(1e16), "1e+16");
        assert_eq!(python_float(1.5e-5), "1.5e-05");
        assert_eq!(python_float(123456.0), "123456.0");
    }

    #[test]
    fn test_environment_dotenv_syntax() {
        let text = "export A=1\nB = a b # comment\nBARE\nA-B=dash\nC='single # not comment'\nD=\"line\\nbreak \\\"q\\\"\"\nE=\"multi\nline\"\n  \n# c\nF=\nbad key=1\nG=last";
        let got = parse_dotenv(text);
        let want: Vec<(String, String)> = [
            ("A", "1"),
            ("B", "a b"),
            ("BARE", ""),
            ("A-B", "dash"),
            ("C", "single # not comment"),
            ("D", "line\nbreak \"q\""),
            ("E", "multi\nline"),
            ("F", ""),
            ("G", "last"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn test_environment_env_file_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let json_file = dir.path().join("env.json");
        fs_err::write(&json_file, r#"{"Parameters": {"A": "1"}, "Fn": {"B": 2}}"#).unwrap();
        assert!(EnvOverrides::load(&json_file).is_ok());

        let dotenv = dir.path().join(".env");
        fs_err::write(&dotenv, "A=1\n# comment\nB=\"two words\"\n").unwrap();
        let loaded = EnvOverrides::load(&dotenv).unwrap();
        assert_eq!(
            loaded.blocks["Parameters"],
            json!({"A": "1", "B": "two words"})
        );

        let wrong = dir.path().join("wrong.json");
        fs_err::write(&wrong, r#"{"Parameters": "x"}"#).unwrap();
        let err = EnvOverrides::load(&wrong).unwrap_err().to_string();
        assert!(err.contains("\"x\" in incorrect format"), "{err}");

        let garbage = dir.path().join("garbage");
        fs_err::write(&garbage, "not json, not .env\n").unwrap();
        let err = EnvOverrides::load(&garbage).unwrap_err().to_string();
        assert!(
            err.contains("not in valid JSON") && err.contains("garbage"),
            "{err}"
        );

        // Truncated JSON is an error at its position, never a `.env` variable named `{"Fn":`.
        let truncated = dir.path().join("truncated.json");
        fs_err::write(&truncated, "\n  {\"HelloFunction\": ").unwrap();
        let err = EnvOverrides::load(&truncated).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "Could not read environment variables overrides from file {}: not valid JSON: EOF while parsing a value at line 2 column 20",
                truncated.display()
            )
        );
        let deep = dir.path().join("deep.json");
        fs_err::write(&deep, "{\"A\": ".to_string() + &"[".repeat(20_000)).unwrap();
        let err = EnvOverrides::load(&deep).unwrap_err().to_string();
        assert!(
            err.contains("recursion limit exceeded at line 1 column"),
            "{err}"
        );

        let err = EnvOverrides::load(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
    }
}
