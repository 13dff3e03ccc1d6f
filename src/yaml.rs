//! YAML loading with the semantics SAM gets from PyYAML's `safe_load` plus its CloudFormation tweaks.
//!
//! SAM parses templates and samconfig files with PyYAML, which implements YAML 1.1: `yes`/`no`/`on`/`off`
//! are booleans, `0755` is octal, `1:30` is sexagesimal, `1e5` (no dot) is a string. SAM then keeps
//! timestamps as strings and turns CloudFormation short tags (`!Ref x`, `!GetAtt a.b`, `!Sub ...`) into
//! their long forms (`{"Ref": "x"}`, `{"Fn::GetAtt": ["a", "b"]}`, `{"Fn::Sub": ...}`).
//!
//! We build a `serde_json::Value` from the event stream of `saphyr-parser` ourselves, because that is the
//! only place where a scalar's style (plain or quoted) and its tag are both still known: `"yes"` stays a
//! string, `yes` becomes `true`.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

/// A YAML document that could not be loaded, with the 1-based position PyYAML would report.
#[derive(Debug, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl YamlError {
    fn at(span: Span, message: impl Into<String>) -> Self {
        YamlError {
            line: span.start.line(),
            column: span.start.col() + 1,
            message: message.into(),
        }
    }
}

/// Parses one YAML document. An empty stream is `null`, as with `yaml.safe_load("")`.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    let mut loader = Loader {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
    };
    loader.document()
}

/// Parses a template or config file the way SAM does: as JSON first (keeping key order), then as YAML.
pub fn parse_json_or_yaml(text: &str) -> Result<Value, YamlError> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => Ok(value),
        Err(_) => parse(text),
    }
}

struct Loader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Value>,
}

impl<'a> Loader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(event)) => Ok(event),
            Some(Err(err)) => Err(YamlError {
                line: err.marker().line(),
                column: err.marker().col() + 1,
                message: err.info().to_string(),
            }),
            None => Err(YamlError {
                line: 0,
                column: 0,
                message: "unexpected end of stream".into(),
            }),
        }
    }

    fn document(&mut self) -> Result<Value, YamlError> {
        let mut result = Value::Null;
        let mut documents = 0;
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(result),
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(YamlError::at(
                            span,
                            "expected a single document in the stream",
                        ));
                    }
                    let (event, span) = self.next()?;
                    result = self.node(event, span)?;
                }
                other => return Err(YamlError::at(span, format!("unexpected event {other:?}"))),
            }
        }
    }

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<Value, YamlError> {
        let (value, anchor) = match event {
            Event::Alias(id) => {
                return self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| YamlError::at(span, "found undefined alias"));
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = match tag.as_deref() {
                    Some(tag) if is_cfn_tag(tag) => {
                        cfn_short_form(&tag.suffix, Value::String(text.into_owned()))
                    }
                    Some(tag) => core_tagged_scalar(tag, &text, span)?,
                    None if style == ScalarStyle::Plain => resolve_plain(&text),
                    None => Value::String(text.into_owned()),
                };
                (value, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span)?);
                }
                (apply_cfn_tag(tag.as_deref(), Value::Array(items)), anchor)
            }
            Event::MappingStart(anchor, tag) => {
                let map = self.mapping()?;
                (apply_cfn_tag(tag.as_deref(), Value::Object(map)), anchor)
            }
            other => return Err(YamlError::at(span, format!("unexpected event {other:?}"))),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        Ok(value)
    }

    fn mapping(&mut self) -> Result<Map<String, Value>, YamlError> {
        let mut map = Map::new();
        // Merge keys (`<<: *base`) fill in keys the mapping does not set itself, as in PyYAML.
        let mut merged: Vec<Map<String, Value>> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let is_merge =
                matches!(&event, Event::Scalar(text, ScalarStyle::Plain, _, None) if text == "<<");
            let key = self.node(event, span)?;
            let (event, value_span) = self.next()?;
            let value = self.node(event, value_span)?;
            if is_merge {
                match value {
                    Value::Object(m) => merged.push(m),
                    Value::Array(items) => {
                        for item in items {
                            match item {
                                Value::Object(m) => merged.push(m),
                                _ => {
                                    return Err(YamlError::at(
                                        value_span,
                                        "expected a mapping for merging",
                                    ));
                                }
                            }
                        }
                    }
                    _ => return Err(YamlError::at(value_span, "expected a mapping for merging")),
                }
                continue;
            }
            map.insert(key_string(key), value);
        }
        for source in merged {
            for (k, v) in source {
                map.entry(k).or_insert(v);
            }
        }
        Ok(map)
    }
}

/// Mapping keys become strings; CloudFormation and samconfig only use string keys.
fn key_string(key: Value) -> String {
    match key {
        Value::String(s) => s,
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

fn is_cfn_tag(tag: &Tag) -> bool {
    tag.handle == "!" && !tag.suffix.is_empty()
}

fn apply_cfn_tag(tag: Option<&Tag>, value: Value) -> Value {
    match tag {
        Some(tag) if is_cfn_tag(tag) => cfn_short_form(&tag.suffix, value),
        _ => value,
    }
}

/// `!Ref x` -> `{"Ref": x}`, `!Condition c` -> `{"Condition": c}`, `!GetAtt a.b` -> `{"Fn::GetAtt": ["a","b"]}`,
/// any other `!Name v` -> `{"Fn::Name": v}`.
fn cfn_short_form(name: &str, value: Value) -> Value {
    let (key, value) = match name {
        "Ref" | "Condition" => (name.to_string(), value),
        "GetAtt" => {
            let value = match value {
                Value::String(s) => match s.split_once('.') {
                    Some((resource, attr)) => Value::Array(vec![
                        Value::String(resource.into()),
                        Value::String(attr.into()),
                    ]),
                    None => Value::String(s),
                },
                other => other,
            };
            ("Fn::GetAtt".to_string(), value)
        }
        other => (format!("Fn::{other}"), value),
    };
    let mut map = Map::new();
    map.insert(key, value);
    Value::Object(map)
}

fn core_tagged_scalar(tag: &Tag, text: &str, span: Span) -> Result<Value, YamlError> {
    let resolved = resolve_plain(text);
    let ok = match tag.suffix.as_str() {
        "str" | "timestamp" | "binary" => return Ok(Value::String(text.to_string())),
        "null" => resolved.is_null(),
        "bool" => resolved.is_boolean(),
        "int" => resolved.is_i64() || resolved.is_u64(),
        "float" => {
            return match resolved {
                Value::Number(n) => Ok(n
                    .as_f64()
                    .and_then(Number::from_f64)
                    .map_or(Value::Number(n), Value::Number)),
                Value::String(s) if is_special_float(&s) => Ok(Value::String(s)),
                _ => Err(YamlError::at(
                    span,
                    format!("could not convert `{text}` to a float"),
                )),
            };
        }
        _ => return Ok(Value::String(text.to_string())),
    };
    if ok {
        Ok(resolved)
    } else {
        Err(YamlError::at(
            span,
            format!("`{text}` is not a valid !!{}", tag.suffix),
        ))
    }
}

fn is_special_float(s: &str) -> bool {
    matches!(s, "inf" | "-inf" | "nan")
}

static INT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
    )
    .expect("valid regex")
});

static FLOAT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    )
    .expect("valid regex")
});

/// YAML 1.1 implicit typing of a plain scalar, as PyYAML's SafeLoader resolves it (timestamps excepted).
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    if INT_RE.is_match(text)
        && let Some(value) = parse_int(text)
    {
        return value;
    }
    if FLOAT_RE.is_match(text) {
        return parse_float(text);
    }
    Value::String(text.to_string())
}

fn parse_int(text: &str) -> Option<Value> {
    let cleaned = text.replace('_', "");
    let (negative, digits) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    let magnitude: i128 = if let Some(bin) = digits.strip_prefix("0b") {
        i128::from_str_radix(bin, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if digits.contains(':') {
        sexagesimal(digits)? as i128
    } else if digits.len() > 1 && digits.starts_with('0') {
        i128::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse().ok()?
    };
    let value = if negative { -magnitude } else { magnitude };
    if let Ok(v) = i64::try_from(value) {
        Some(Value::Number(v.into()))
    } else if let Ok(v) = u64::try_from(value) {
        Some(Value::Number(v.into()))
    } else {
        // Python has big integers; keep the decimal text so `str(v)` still matches.
        Some(Value::String(value.to_string()))
    }
}

fn sexagesimal(digits: &str) -> Option<f64> {
    let mut total = 0f64;
    for part in digits.split(':') {
        total = total * 60.0 + part.parse::<f64>().ok()?;
    }
    Some(total)
}

fn parse_float(text: &str) -> Value {
    let cleaned = text.replace('_', "").to_ascii_lowercase();
    let (negative, body) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    // JSON has no infinities or NaN; keep Python's `str()` of them, which is all that is ever used.
    if body == ".inf" {
        return Value::String(if negative { "-inf" } else { "inf" }.into());
    }
    if body == ".nan" {
        return Value::String("nan".into());
    }
    let magnitude = if body.contains(':') {
        sexagesimal(body).unwrap_or(f64::NAN)
    } else {
        body.parse::<f64>().unwrap_or(f64::NAN)
    };
    let value = if negative { -magnitude } else { magnitude };
    Number::from_f64(value).map_or(Value::String(text.to_string()), Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_yaml_yaml11_scalars() {
        let v = parse("a: yes\nb: 'yes'\nc: 0755\nd: 1e5\ne: 1.5\nf: 1:30\ng: ~\nh: 2024-01-01\ni: 0x1F\nj: .inf\n")
            .unwrap();
        assert_eq!(
            v,
            json!({"a": true, "b": "yes", "c": 493, "d": "1e5", "e": 1.5, "f": 90, "g": null,
                   "h": "2024-01-01", "i": 31, "j": "inf"})
        );
    }

    #[test]
    fn test_yaml_cfn_short_tags() {
        let v = parse(
            "a: !Ref P\nb: !GetAtt Fn.Arn\nc: !Sub '${AWS::Region}-x'\nd: !Join [',', [a, b]]\ne: !If [C, 1, 2]\nf: !Condition C\ng: !GetAtt [X, Y]\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": {"Ref": "P"}, "b": {"Fn::GetAtt": ["Fn", "Arn"]},
                   "c": {"Fn::Sub": "${AWS::Region}-x"}, "d": {"Fn::Join": [",", ["a", "b"]]},
                   "e": {"Fn::If": ["C", 1, 2]}, "f": {"Condition": "C"},
                   "g": {"Fn::GetAtt": ["X", "Y"]}})
        );
    }

    #[test]
    fn test_yaml_anchors_and_merge_keys() {
        let v = parse("base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\nlist: [*b]\n").unwrap();
        assert_eq!(v["derived"], json!({"y": 3, "x": 1}));
        assert_eq!(v["list"][0], json!({"x": 1, "y": 2}));
    }

    #[test]
    fn test_yaml_duplicate_keys_last_wins() {
        assert_eq!(parse("a: 1\na: 2\n").unwrap(), json!({"a": 2}));
    }

    #[test]
    fn test_yaml_error_has_position() {
        let err = parse("Resources:\n  A: [1, 2\n").unwrap_err();
        assert!(err.line >= 2, "{err}");
    }

    #[test]
    fn test_yaml_json_first() {
        let v = parse_json_or_yaml("{\"b\": 1, \"a\": 2}").unwrap();
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["b", "a"]
        );
    }

    #[test]
    fn test_yaml_empty_is_null() {
        assert_eq!(parse("").unwrap(), Value::Null);
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
