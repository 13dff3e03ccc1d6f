//! `--parameter-overrides`: the value syntaxes SAM accepts (`samcli/cli/types.py::CfnParameterOverridesType`).
//!
//! - `Key=Value Key2='quoted value'`
//! - `ParameterKey=Key,ParameterValue=Value`
//! - `file://params.toml|yaml|yml`, whose `$include` key pulls in more files
//! - from samconfig: a string (same syntax), a list of strings, or a table of key -> value

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use indexmap::IndexMap;
use regex::Regex;
use serde_json::Value;

/// Parameter values by name, in the order they were given; later values win.
pub type ParameterOverrides = IndexMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error(
        "{0} is not a valid format. It must look something like 'ParameterKey=KeyPairName,ParameterValue=MyKey ParameterKey=InstanceType,ParameterValue=t1.micro', 'KeyPairName=MyKey InstanceType=t1.micro', or 'file://MyParams.yaml'"
    )]
    Syntax(String),
    #[error("cannot read parameter file `{path}`: {message}")]
    File { path: PathBuf, message: String },
}

const KEY: &str = r#"([A-Za-z0-9"']+)"#;
const VALUE: &str = r#"("(?:\\.|[^"\\]+)*"|'(?:\\.|[^'\\]+)*'|(?:\\.|[^ "\\]+)+)"#;

static LONG_FORM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("(?:ParameterKey={KEY},ParameterValue={VALUE})")).expect("valid regex")
});
// SAM anchors the short form on a space it puts in front of the token, so `My-Param=1` is an
// error rather than `Param=1`.
static SHORT_FORM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("(?: ){KEY}={VALUE}")).expect("valid regex"));

/// Parses the values given to `--parameter-overrides` (each value may hold several pairs), in order.
pub fn parse_tokens(tokens: &[String], base_dir: &Path) -> Result<ParameterOverrides, ParamsError> {
    let mut out = ParameterOverrides::new();
    for token in tokens {
        parse_token(token, base_dir, &mut out, 0)?;
    }
    Ok(out)
}

/// Parses a `parameter_overrides` value from samconfig: a string, a list of strings or a table.
pub fn parse_config_value(
    value: &Value,
    base_dir: &Path,
) -> Result<ParameterOverrides, ParamsError> {
    let mut out = ParameterOverrides::new();
    match value {
        Value::String(s) => parse_token(s, base_dir, &mut out, 0)?,
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => parse_token(s, base_dir, &mut out, 0)?,
                    other => return Err(ParamsError::Syntax(other.to_string())),
                }
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone(), table_value(v));
            }
        }
        other => return Err(ParamsError::Syntax(other.to_string())),
    }
    Ok(out)
}

/// In tables, lists are joined with `,` and null becomes empty, as SAM does.
fn table_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(table_value).collect::<Vec<_>>().join(","),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        other => other.to_string(),
    }
}

fn parse_token(
    token: &str,
    base_dir: &Path,
    out: &mut ParameterOverrides,
    depth: usize,
) -> Result<(), ParamsError> {
    if let Some(path) = token.strip_prefix("file://") {
        return parse_file(&base_dir.join(path), out, depth);
    }
    // An empty value (`--parameter-overrides "$UNSET"`) means no overrides, as in SAM.
    if token.trim().is_empty() {
        return Ok(());
    }
    // Like SAM's `re.findall`: every match in the token counts, the long form is tried first.
    let spaced = format!(" {token}");
    for pattern in [&*LONG_FORM, &*SHORT_FORM] {
        let mut found = false;
        for caps in pattern.captures_iter(&spaced) {
            found = true;
            out.insert(unquote(&caps[1]), unquote(&caps[2]));
        }
        if found {
            return Ok(());
        }
    }
    Err(ParamsError::Syntax(token.to_string()))
}

/// A TOML document as a JSON value; an error is one line, `line L, column C: message`.
///
/// The toml crate stops at 80 levels of brackets, or of dotted key parts, each on its own; together
/// they may nest deeper, so the result is checked against [`crate::limits::MAX_DEPTH`] as a YAML
/// or JSON document is.
pub(crate) fn toml_value(text: &str) -> Result<Value, String> {
    let value: Value = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or_else(String::new, |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        let message = e.message().trim_end();
        if message.contains("recursion") {
            // toml's words ("recursion limit", "cannot recurse further") do not say how deep.
            format!("{at}nested more than 80 levels deep (the TOML reader's limit)")
        } else {
            format!("{at}{message}")
        }
    })?;
    let depth = crate::limits::depth(&value);
    if depth > crate::limits::MAX_DEPTH {
        return Err(format!(
            "nested {depth} levels deep, more than {} (lamina's limit)",
            crate::limits::MAX_DEPTH
        ));
    }
    Ok(value)
}

fn parse_file(path: &Path, out: &mut ParameterOverrides, depth: usize) -> Result<(), ParamsError> {
    let file_error = |message: String| ParamsError::File {
        path: path.to_path_buf(),
        message,
    };
    if depth > 16 {
        return Err(file_error(
            "`$include` nests more than 16 files deep (a cycle?)".into(),
        ));
    }
    let text = crate::limits::read_text_file(path).map_err(|e| file_error(e.to_string()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let value: Value = match ext {
        "toml" => toml_value(&text).map_err(file_error)?,
        "yaml" | "yml" => crate::yaml::parse(&text).map_err(|e| file_error(e.to_string()))?,
        _ => {
            return Err(file_error(
                "only .toml, .yaml and .yml parameter files are supported".into(),
            ));
        }
    };
    let Value::Object(map) = value else {
        return Err(file_error(
            "expected a table of parameter names to values".into(),
        ));
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    for (key, value) in map {
        if key == "$include" {
            let includes = match value {
                Value::Array(items) => items,
                single => vec![single],
            };
            for include in includes {
                let Value::String(include) = include else {
                    return Err(file_error("`$include` takes file paths".into()));
                };
                let include = include.strip_prefix("file://").unwrap_or(&include);
                parse_file(&dir.join(include), out, depth + 1)?;
            }
        } else {
            out.insert(key, table_value(&value));
        }
    }
    Ok(())
}

/// Strips one pair of matching outer quotes and undoes `\ `, `\"` and `\'` escapes.
fn unquote(text: &str) -> String {
    let inner = if text.len() >= 2
        && ((text.starts_with('"') && text.ends_with('"'))
            || (text.starts_with('\'') && text.ends_with('\'')))
    {
        &text[1..text.len() - 1]
    } else {
        text
    };
    inner
        .replace("\\ ", " ")
        .replace("\\\"", "\"")
        .replace("\\'", "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tokens: &[&str]) -> Result<Vec<(String, String)>, ParamsError> {
        let tokens: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
        parse_tokens(&tokens, Path::new(".")).map(|m| m.into_iter().collect())
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn test_params_short_form() {
        assert_eq!(
            parse(&["A=1", "B=two"]).unwrap(),
            pairs(&[("A", "1"), ("B", "two")])
        );
        assert_eq!(
            parse(&["A=1 B=2"]).unwrap(),
            pairs(&[("A", "1"), ("B", "2")])
        );
        assert_eq!(parse(&["A='x y'"]).unwrap(), pairs(&[("A", "x y")]));
        assert_eq!(
            parse(&[r#"A="say \"hi\"""#]).unwrap(),
            pairs(&[("A", r#"say "hi""#)])
        );
        assert_eq!(parse(&["A=x,y"]).unwrap(), pairs(&[("A", "x,y")]));
    }

    #[test]
    fn test_params_long_form() {
        assert_eq!(
            parse(&[
                "ParameterKey=A,ParameterValue=1",
                "ParameterKey=B,ParameterValue='x y'"
            ])
            .unwrap(),
            pairs(&[("A", "1"), ("B", "x y")])
        );
    }

    #[test]
    fn test_params_short_form_needs_a_plain_key() {
        assert!(parse(&["My-Param=1"]).is_err());
        assert_eq!(parse(&[""]).unwrap(), pairs(&[]));
        assert_eq!(parse(&["  "]).unwrap(), pairs(&[]));
    }

    #[test]
    fn test_params_later_wins() {
        assert_eq!(parse(&["A=1", "A=2"]).unwrap(), pairs(&[("A", "2")]));
    }

    #[test]
    fn test_params_bad_syntax() {
        let err = parse(&["novalue"]).unwrap_err();
        assert!(
            err.to_string().starts_with("novalue is not a valid format"),
            "{err}"
        );
    }

    #[test]
    fn test_params_files_with_include() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("base.yaml"), "A: 1\nL: [x, y]\nN: null\n").unwrap();
        fs_err::write(
            dir.path().join("p.toml"),
            "\"$include\" = \"base.yaml\"\nB = \"b\"\nA = \"over\"\n",
        )
        .unwrap();
        let tokens = vec!["file://p.toml".to_string()];
        let got = parse_tokens(&tokens, dir.path()).unwrap();
        assert_eq!(got["A"], "over");
        assert_eq!(got["L"], "x,y");
        assert_eq!(got["N"], "");
        assert_eq!(got["B"], "b");
        let missing = parse_tokens(&["file://nope.toml".to_string()], dir.path()).unwrap_err();
        assert!(missing.to_string().contains("nope.toml"), "{missing}");
    }

    #[test]
    fn test_params_config_table() {
        let v = serde_json::json!({"A": "1", "B": ["x", "y"], "C": 3});
        let got = parse_config_value(&v, Path::new(".")).unwrap();
        assert_eq!(got["B"], "x,y");
        assert_eq!(got["C"], "3");
    }
}
