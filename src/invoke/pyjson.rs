//! `json.dumps(json.loads(text), ensure_ascii=False)`, byte for byte: how SAM prints a function's
//! JSON result. Separators are `", "` and `": "`, non-ASCII stays as it is, key order is kept and a
//! repeated key keeps its first position with its last value, integers keep their digits (Python's
//! ints are unbounded) and floats are printed as Python's `repr` (`1.10` -> `1.1`, `1E5` ->
//! `100000.0`, overflow -> `Infinity`).
//!
//! A parser of our own because serde_json would turn big integers into floats and lose the
//! difference between `1` and `1.0`.

use indexmap::IndexMap;

enum Json {
    Null,
    Bool(bool),
    /// Integer literal text, already normalised (`-0` -> `0`).
    Int(String),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(IndexMap<String, Json>),
}

/// Re-serialises JSON as Python does; `None` when the text is not JSON (SAM then prints it raw).
pub fn dumps(text: &str) -> Option<String> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    parser.skip_ws();
    let value = parser.value()?;
    parser.skip_ws();
    if parser.at != parser.bytes.len() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    write(&value, &mut out);
    Some(out)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.at < self.bytes.len()
            && matches!(self.bytes[self.at], b' ' | b'\t' | b'\n' | b'\r')
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, literal: &str) -> bool {
        if self.bytes[self.at..].starts_with(literal.as_bytes()) {
            self.at += literal.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Json> {
        self.depth += 1;
        if self.depth > 1000 {
            return None; // Python's recursion limit would stop here too
        }
        let value = match *self.bytes.get(self.at)? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string().map(Json::Str),
            b't' if self.eat("true") => Some(Json::Bool(true)),
            b'f' if self.eat("false") => Some(Json::Bool(false)),
            b'n' if self.eat("null") => Some(Json::Null),
            b'N' if self.eat("NaN") => Some(Json::Float(f64::NAN)),
            b'I' if self.eat("Infinity") => Some(Json::Float(f64::INFINITY)),
            b'-' if self.eat("-Infinity") => Some(Json::Float(f64::NEG_INFINITY)),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        };
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Option<Json> {
        self.at += 1;
        let mut map = IndexMap::new();
        self.skip_ws();
        if self.eat("}") {
            return Some(Json::Object(map));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.at) != Some(&b'"') {
                return None;
            }
            let key = self.string()?;
            self.skip_ws();
            if !self.eat(":") {
                return None;
            }
            self.skip_ws();
            let value = self.value()?;
            map.insert(key, value); // a repeated key keeps its place, takes the new value
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            return self.eat("}").then_some(Json::Object(map));
        }
    }

    fn array(&mut self) -> Option<Json> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.eat("]") {
            return Some(Json::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value()?);
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            return self.eat("]").then_some(Json::Array(items));
        }
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.at;
        if self.bytes[self.at] == b'-' {
            self.at += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.at;
            while p.at < p.bytes.len() && p.bytes[p.at].is_ascii_digit() {
                p.at += 1;
            }
            p.at - s
        };
        let int_start = self.at;
        if digits(self) == 0 || (self.bytes[int_start] == b'0' && self.at - int_start > 1) {
            return None;
        }
        let mut is_float = false;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return None;
            }
            is_float = true;
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.bytes.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return None;
            }
            is_float = true;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        if is_float {
            Some(Json::Float(text.parse().ok()?))
        } else {
            let normalised = if text == "-0" {
                "0".to_string()
            } else {
                text.to_string()
            };
            Some(Json::Int(normalised))
        }
    }

    fn string(&mut self) -> Option<String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let byte = *self.bytes.get(self.at)?;
            match byte {
                b'"' => {
                    self.at += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.at += 1;
                    let escape = *self.bytes.get(self.at)?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let first = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&first)
                                && self.bytes[self.at..].starts_with(b"\\u")
                            {
                                let save = self.at;
                                self.at += 2;
                                let second = self.hex4()?;
                                if (0xDC00..0xE000).contains(&second) {
                                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                                } else {
                                    self.at = save;
                                    first
                                }
                            } else {
                                first
                            };
                            // A lone surrogate cannot be UTF-8; Python would print it back escaped,
                            // which the replacement character approximates.
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None, // raw control characters are invalid JSON (strict)
                _ => {
                    let rest = std::str::from_utf8(&self.bytes[self.at..])
                        .ok()
                        .or_else(|| {
                            std::str::from_utf8(&self.bytes[self.at..self.at + utf8_len(byte)]).ok()
                        })?;
                    let ch = rest.chars().next()?;
                    out.push(ch);
                    self.at += ch.len_utf8();
                }
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let text = std::str::from_utf8(self.bytes.get(self.at..self.at + 4)?).ok()?;
        self.at += 4;
        u32::from_str_radix(text, 16).ok()
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

fn write(value: &Json, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Int(text) => out.push_str(text),
        Json::Float(f) => out.push_str(&float(*f)),
        Json::Str(s) => write_str(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(key, out);
                out.push_str(": ");
                write(item, out);
            }
            out.push('}');
        }
    }
}

/// `float.__repr__`, with JSON's spellings of the special values.
fn float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        crate::environment::python_float(f)
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::dumps;

    #[test]
    fn test_pyjson_matches_python() {
        // Expected values are what CPython 3.11's json.dumps(json.loads(x), ensure_ascii=False) prints.
        let cases = [
            (
                r#"{"statusCode":200,"body":"hi"}"#,
                r#"{"statusCode": 200, "body": "hi"}"#,
            ),
            (
                "[1.10, 1E5, 1e-7, 2.5e20, -0, 0.0, 12345678901234567890123]",
                "[1.1, 100000.0, 1e-07, 2.5e+20, 0, 0.0, 12345678901234567890123]",
            ),
            (r#"{"a":1,"b":2,"a":3}"#, r#"{"a": 3, "b": 2}"#),
            (
                r#""caf\u00e9 \ud83d\ude00 ü\n\u0001""#,
                "\"café 😀 ü\\n\\u0001\"",
            ),
            ("[1e400, -1e400, NaN]", "[Infinity, -Infinity, NaN]"),
            (
                " {\"nested\": {\"x\": [true, false, null]}} ",
                r#"{"nested": {"x": [true, false, null]}}"#,
            ),
            (r#""a\/b""#, r#""a/b""#),
            ("[]", "[]"),
            ("{}", "{}"),
        ];
        for (input, expected) in cases {
            assert_eq!(dumps(input).as_deref(), Some(expected), "{input}");
        }
        for bad in [
            "",
            "{",
            "[1,]",
            "01",
            "hello",
            "{\"a\" 1}",
            "\"raw\ncontrol\"",
            "1 2",
        ] {
            assert!(dumps(bad).is_none(), "{bad:?} is not JSON");
        }
    }
}
