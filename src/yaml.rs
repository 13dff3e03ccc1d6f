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
//!
//! PyYAML shares an aliased node; a `Value` cannot, so an alias is a copy. The loader counts what
//! anchors and aliases copy and refuses a document past [`limits::MAX_ALIAS_NODES`] nodes or
//! [`limits::MAX_ALIAS_BYTES`] bytes (a "billion laughs"), and one nested deeper than
//! [`limits::MAX_DEPTH`] (this loader, and everything that walks its result, recurses per level).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

use crate::limits;

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
        depth: 0,
        copied: Size::default(),
    };
    loader.document()
}

/// Parses a template or config file the way SAM does: as JSON first (keeping key order), then as YAML.
///
/// serde_json refuses JSON nested 128 levels deep or more; such a text is then read as YAML (JSON is
/// YAML's flow syntax), whose loader allows [`limits::MAX_DEPTH`] levels and names the limit past it.
pub fn parse_json_or_yaml(text: &str) -> Result<Value, YamlError> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => Ok(value),
        Err(_) => parse(text),
    }
}

/// How big a loaded node is: what copying it costs, and how deep it nests.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    /// Scalars, sequences and mappings (a mapping's keys count too).
    nodes: u64,
    /// Bytes of scalar text, keys included.
    bytes: u64,
    /// Levels of collections (0 for a scalar).
    height: usize,
}

impl Size {
    fn scalar(text: &str) -> Size {
        Size {
            nodes: 1,
            bytes: text.len() as u64,
            height: 0,
        }
    }

    /// A collection of no children yet.
    fn collection() -> Size {
        Size {
            nodes: 1,
            bytes: 0,
            height: 1,
        }
    }

    fn add_child(&mut self, child: Size) {
        self.nodes += child.nodes;
        self.bytes += child.bytes;
        self.height = self.height.max(child.height + 1);
    }
}

struct Loader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, (Value, Size)>,
    /// Collections open around the current event.
    depth: usize,
    /// What anchors (kept aside) and aliases (expanded) copied so far.
    copied: Size,
}

impl<'a> Loader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(event)) => Ok(event),
            Some(Err(err)) => Err(YamlError {
                line: err.marker().line(),
                column: err.marker().col() + 1,
                // saphyr's scanner reads flow collections ahead and stops at 255 levels, before
                // the loader sees the 129th: the same limit was passed.
                message: if err.info() == "recursion limit exceeded" {
                    too_deep()
                } else {
                    err.info().to_string()
                },
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
                    result = self.node(event, span)?.0;
                }
                other => return Err(YamlError::at(span, format!("unexpected event {other:?}"))),
            }
        }
    }

    // `node`, `sequence` and `mapping` recurse once per level of the document: they are kept
    // small, with the work of a scalar or an anchor in functions of their own, because a debug
    // build gives every local of a function its own stack slot.
    fn node(&mut self, event: Event<'a>, span: Span) -> Result<(Value, Size), YamlError> {
        let (value, size, anchor) = match event {
            Event::Alias(id) => return self.alias(id, span),
            Event::Scalar(text, style, anchor, tag) => {
                let (value, size) = scalar(&text, style, tag.as_deref(), span)?;
                (value, size, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                let (items, size) = self.sequence(span)?;
                (
                    apply_cfn_tag(tag.as_deref(), Value::Array(items)),
                    size,
                    anchor,
                )
            }
            Event::MappingStart(anchor, tag) => {
                self.open(span)?;
                let (map, size) = self.mapping()?;
                self.depth -= 1;
                (
                    apply_cfn_tag(tag.as_deref(), Value::Object(map)),
                    size,
                    anchor,
                )
            }
            other => return Err(unexpected(other, span)),
        };
        if anchor != 0 {
            self.keep_anchor(anchor, &value, size, span)?;
        }
        Ok((value, size))
    }

    fn sequence(&mut self, span: Span) -> Result<(Vec<Value>, Size), YamlError> {
        self.open(span)?;
        let mut items = Vec::new();
        let mut size = Size::collection();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::SequenceEnd) {
                break;
            }
            let (item, item_size) = self.node(event, span)?;
            size.add_child(item_size);
            items.push(item);
        }
        self.depth -= 1;
        Ok((items, size))
    }

    /// Keeps a copy of an anchored node for its aliases, counted like theirs (an anchor inside
    /// an anchor is copied again).
    fn keep_anchor(
        &mut self,
        anchor: usize,
        value: &Value,
        size: Size,
        span: Span,
    ) -> Result<(), YamlError> {
        self.charge(size, span)?;
        self.anchors.insert(anchor, (value.clone(), size));
        Ok(())
    }

    /// Enters a sequence or mapping that starts at `span`.
    fn open(&mut self, span: Span) -> Result<(), YamlError> {
        self.depth += 1;
        if self.depth > limits::MAX_DEPTH {
            return Err(YamlError::at(span, too_deep()));
        }
        Ok(())
    }

    /// A copy of the anchored node, if the copy stays within the depth and copy limits.
    fn alias(&mut self, id: usize, span: Span) -> Result<(Value, Size), YamlError> {
        let Some((_, size)) = self.anchors.get(&id) else {
            return Err(YamlError::at(span, "found undefined alias"));
        };
        let size = *size;
        if self.depth + size.height > limits::MAX_DEPTH {
            return Err(YamlError::at(span, too_deep()));
        }
        self.charge(size, span)?;
        Ok((self.anchors[&id].0.clone(), size))
    }

    /// Counts a copy of a node of `size`; refuses it past the limits.
    fn charge(&mut self, size: Size, span: Span) -> Result<(), YamlError> {
        self.copied.nodes += size.nodes;
        self.copied.bytes += size.bytes;
        if self.copied.nodes > limits::MAX_ALIAS_NODES
            || self.copied.bytes > limits::MAX_ALIAS_BYTES
        {
            return Err(YamlError::at(
                span,
                format!(
                    "anchors and aliases expand to more than {} nodes or {} bytes (lamina's limit; a \"billion laughs\" document?)",
                    limits::MAX_ALIAS_NODES,
                    limits::MAX_ALIAS_BYTES
                ),
            ));
        }
        Ok(())
    }

    fn mapping(&mut self) -> Result<(Map<String, Value>, Size), YamlError> {
        let mut map = Map::new();
        let mut size = Size::collection();
        // Merge keys (`<<: *base`) fill in keys the mapping does not set itself, as in PyYAML.
        let mut merged: Vec<Map<String, Value>> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let is_merge =
                matches!(&event, Event::Scalar(text, ScalarStyle::Plain, _, None) if text == "<<");
            let (key, key_size) = self.node(event, span)?;
            if key.is_array() || key.is_object() {
                // As PyYAML: a Python dict cannot have a list or dict as a key. (Written out as
                // text, nested keys would double their escapes at each level.)
                return Err(YamlError::at(span, "found unhashable key"));
            }
            let (event, value_span) = self.next()?;
            let (value, value_size) = self.node(event, value_span)?;
            size.add_child(key_size);
            size.add_child(value_size);
            if is_merge {
                merge_sources(value, value_span, &mut merged)?;
            } else {
                map.insert(key_string(key), value);
            }
        }
        if merged.is_empty() {
            return Ok((map, size));
        }
        // As PyYAML: the merged keys come first, in the order of their sources, then the
        // mapping's own keys, whose values replace merged ones in place. Of two sources with a
        // key the first wins, as the YAML merge-key spec and PyYAML up to 6.0.2 have it (6.0.4
        // lets the last win).
        let mut out = Map::new();
        for source in merged {
            for (k, v) in source {
                out.entry(k).or_insert(v);
            }
        }
        for (k, v) in map {
            out.insert(k, v);
        }
        Ok((out, size))
    }
}

/// The mappings a merge key's value names: one mapping, or a sequence of them.
fn merge_sources(
    value: Value,
    span: Span,
    merged: &mut Vec<Map<String, Value>>,
) -> Result<(), YamlError> {
    let not_a_mapping = || YamlError::at(span, "expected a mapping for merging");
    match value {
        Value::Object(m) => merged.push(m),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) => merged.push(m),
                    _ => return Err(not_a_mapping()),
                }
            }
        }
        _ => return Err(not_a_mapping()),
    }
    Ok(())
}

fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    span: Span,
) -> Result<(Value, Size), YamlError> {
    let value = match tag {
        Some(tag) if is_cfn_tag(tag) => cfn_short_form(&tag.suffix, Value::String(text.into())),
        Some(tag) => core_tagged_scalar(tag, text, span)?,
        None if style == ScalarStyle::Plain => resolve_plain(text),
        None => Value::String(text.into()),
    };
    Ok((value, Size::scalar(text)))
}

fn unexpected(event: Event, span: Span) -> YamlError {
    YamlError::at(span, format!("unexpected event {event:?}"))
}

fn too_deep() -> String {
    format!(
        "nested more than {} levels deep (lamina's limit)",
        limits::MAX_DEPTH
    )
}

/// Mapping keys (scalars) become strings; CloudFormation and samconfig only use string keys.
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
    fn test_yaml_anchors_like_pyyaml() {
        // What PyYAML 6.0.4 safe_load gives for these, key order included: aliases of scalars, lists
        // and mappings, merge keys with a list of sources, keys of the mapping itself over merged
        // ones, and an anchor defined inside another anchor.
        let text = "\
defaults: &defaults
  Runtime: python3.12
  Env: &env {A: 1, B: [x, y]}
  Handler: app.h
other: &other {Handler: other.h, Timeout: 3}
Fn:
  <<: [*defaults, *other]
  Handler: own.h
list: [*env, &s str, *s]
nested: {e: *env}
";
        let v = parse(text).unwrap();
        assert_eq!(
            v["Fn"],
            json!({"Handler": "own.h", "Runtime": "python3.12", "Env": {"A": 1, "B": ["x", "y"]},
                   "Timeout": 3})
        );
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&v["Fn"]), ["Runtime", "Env", "Handler", "Timeout"]);
        assert_eq!(v["list"], json!([{"A": 1, "B": ["x", "y"]}, "str", "str"]));
        assert_eq!(v["nested"]["e"]["B"][1], "y");
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn test_yaml_billion_laughs_is_refused() {
        // Nine levels of nine aliases: 9^9 copies of "lol" if expanded.
        let mut text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_string();
        for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
            text += &format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 9].join(", ")
            );
        }
        let err = error(&text);
        assert!(
            err.contains("anchors and aliases expand to more than 100000 nodes or 10485760 bytes"),
            "{err}"
        );
        // The same with long strings and few nodes: the bytes count.
        let long = "x".repeat(100_000);
        let mut text = format!("a: &a \"{long}\"\n");
        for (prev, name) in "abc".chars().zip("bcd".chars()) {
            text += &format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 9].join(", ")
            );
        }
        assert!(error(&text).contains("billion laughs"));
        // An anchor inside an anchor is a copy too: 128 nested ones would copy the text 128 times.
        let text = format!(
            "{}\"{}\"{}\n",
            (0..100).map(|i| format!("&a{i} [")).collect::<String>(),
            "x".repeat(200_000),
            "]".repeat(100)
        );
        assert!(error(&text).contains("billion laughs"));
    }

    #[test]
    fn test_yaml_nesting_is_limited_in_every_syntax() {
        let deep = 20_000;
        let cases = [
            ("block sequences", format!("a:\n  {}x\n", "- ".repeat(deep))),
            (
                "flow sequences",
                format!("a: {}{}\n", "[".repeat(deep), "]".repeat(deep)),
            ),
            (
                "flow mappings",
                format!("a: {}x{}\n", "{a: ".repeat(deep), "}".repeat(deep)),
            ),
            (
                "block mappings",
                (0..2_000)
                    .map(|i| format!("{}k:\n", " ".repeat(i)))
                    .collect(),
            ),
            (
                "JSON",
                format!("{{\"a\": {}{}}}", "[".repeat(deep), "]".repeat(deep)),
            ),
        ];
        for (name, text) in cases {
            let err = parse_json_or_yaml(&text).unwrap_err().to_string();
            assert!(
                err.contains("nested more than 128 levels deep (lamina's limit)"),
                "{name}: {err}"
            );
        }
        // 128 levels are fine, in YAML and in JSON.
        let ok = format!("{}x{}", "[".repeat(128), "]".repeat(128));
        assert!(parse_json_or_yaml(&ok).is_ok());
        assert!(parse(&format!("{}x\n", "- ".repeat(128))).is_ok());
        // An alias may not carry a document past the limit either.
        let nest = |n: usize, inner: &str| format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
        let text = format!("a: &a {}\nb: {}\n", nest(100, "x"), nest(27, "*a"));
        assert!(parse(&text).is_ok(), "1 + 27 + 100 levels");
        let text = format!("a: &a {}\nb: {}\n", nest(100, "x"), nest(28, "*a"));
        let err = error(&text);
        assert!(
            err.contains("line 2, column 32: nested more than 128 levels"),
            "{err}"
        );
    }

    #[test]
    fn test_yaml_collection_keys_are_refused_like_pyyaml() {
        for text in ["? [a]\n: 1\n", "? {a: 1}\n: 1\n", "a: &m {x: 1}\n*m : 2\n"] {
            assert!(error(text).contains("found unhashable key"), "{text}");
        }
        // Nested complex keys would otherwise be written out with escapes doubling per level.
        assert!(error(&format!("{}x\n", "? ".repeat(60))).contains("unhashable"));
        assert_eq!(
            parse("1: a\n~: b\n").unwrap(),
            json!({"1": "a", "null": "b"})
        );
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
