//! `AWS::LanguageExtensions`, expanded before anything else reads the template, as SAM's
//! `--language-extensions` and CloudFormation do: `Fn::ForEach` loops (a key
//! `Fn::ForEach::<Name>` in any map: `Resources`, `Conditions`, `Outputs`, a resource's
//! properties), `Fn::Length` and `Fn::ToJsonString`. (`Fn::FindInMap` with `DefaultValue` is part
//! of the intrinsics.)
//!
//! A loop is `[Identifier, Collection, {OutputKey: OutputValue, ...}]`. For each item of the
//! collection (a list of strings, or anything that resolves to one, such as a `Ref` to a
//! `CommaDelimitedList` parameter), the fragment is copied with `${Identifier}` replaced by the
//! item, `&{Identifier}` by the item without its non-alphanumeric characters, and
//! `{"Ref": Identifier}` by the item, in keys and values; loops inside the fragment are expanded
//! after that, so they may use the outer identifier.

use serde_json::{Map, Value};

use super::TemplateError;
use super::intrinsics::{Resolver, SymbolTable};

const FOR_EACH: &str = "Fn::ForEach::";
/// CloudFormation's limit on nested loops.
const MAX_DEPTH: usize = 5;

/// Whether a template declares the transform (`Transform: AWS::LanguageExtensions`, or in a list).
pub fn declared(template: &Map<String, Value>) -> bool {
    match template.get("Transform") {
        Some(Value::String(t)) => t == "AWS::LanguageExtensions",
        Some(Value::Array(items)) => items
            .iter()
            .any(|t| t.as_str() == Some("AWS::LanguageExtensions")),
        _ => false,
    }
}

/// Whether a template uses a loop anywhere at the top of its sections.
pub fn used(template: &Map<String, Value>) -> bool {
    ["Resources", "Conditions", "Outputs"]
        .iter()
        .any(|section| {
            template
                .get(*section)
                .and_then(Value::as_object)
                .is_some_and(|m| m.keys().any(|k| k.starts_with(FOR_EACH)))
        })
}

/// Expands every loop, `Fn::Length` and `Fn::ToJsonString` of `template` in place.
pub fn expand(
    template: &mut Map<String, Value>,
    symbols: &SymbolTable,
) -> Result<(), TemplateError> {
    // Collections may use intrinsics (a `Ref` to a list parameter, `Fn::FindInMap`, `Fn::Split`):
    // they are resolved against the template as written.
    let context = template.clone();
    let resources = context
        .get("Resources")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let resolver = Resolver::new(symbols, &context, &resources);
    for section in ["Conditions", "Resources", "Outputs"] {
        if let Some(value) = template.get_mut(section) {
            expand_value(value, &resolver, 0)?;
        }
    }
    Ok(())
}

fn expand_value(value: &mut Value, resolver: &Resolver, depth: usize) -> Result<(), TemplateError> {
    match value {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(result) = functions(map, resolver)?
            {
                *value = result;
                return Ok(());
            }
            if map.keys().any(|k| k.starts_with(FOR_EACH)) {
                *map = expand_loops(std::mem::take(map), resolver, depth)?;
            }
            for child in map.values_mut() {
                expand_value(child, resolver, depth)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                expand_value(item, resolver, depth)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `Fn::Length` and `Fn::ToJsonString`, whose arguments may hold intrinsics.
fn functions(
    map: &Map<String, Value>,
    resolver: &Resolver,
) -> Result<Option<Value>, TemplateError> {
    let (key, arg) = map.iter().next().expect("one entry");
    match key.as_str() {
        "Fn::Length" => match resolver.resolve(arg) {
            Value::Array(items) => Ok(Some(Value::from(items.len()))),
            other => Err(TemplateError::invalid(format!(
                "Fn::Length needs a list, found {other}"
            ))),
        },
        "Fn::ToJsonString" => {
            let mut arg = arg.clone();
            expand_value(&mut arg, resolver, 0)?;
            let resolved = resolver.resolve(&arg);
            Ok(Some(Value::String(resolved.to_string())))
        }
        _ => Ok(None),
    }
}

/// A map with its `Fn::ForEach::*` entries replaced by what they generate, in place.
fn expand_loops(
    map: Map<String, Value>,
    resolver: &Resolver,
    depth: usize,
) -> Result<Map<String, Value>, TemplateError> {
    let mut out = Map::new();
    for (key, value) in map {
        let Some(name) = key.strip_prefix(FOR_EACH) else {
            insert(&mut out, key, value, None)?;
            continue;
        };
        if depth >= MAX_DEPTH {
            return Err(TemplateError::invalid(format!(
                "{key}: loops nest more than {MAX_DEPTH} deep"
            )));
        }
        let bad = |what: &str| TemplateError::invalid(format!("{key}: {what}"));
        let Value::Array(parts) = value else {
            return Err(bad(
                "expected [Identifier, Collection, {OutputKey: OutputValue}]",
            ));
        };
        let [identifier, collection, fragment] = parts.as_slice() else {
            return Err(bad(
                "expected [Identifier, Collection, {OutputKey: OutputValue}]",
            ));
        };
        let identifier = identifier
            .as_str()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| bad("the identifier must be a string"))?;
        let Value::Object(fragment) = fragment else {
            return Err(bad("the third item must be a map {OutputKey: OutputValue}"));
        };
        let items = match resolver.resolve(collection) {
            Value::Array(items) => items,
            other => {
                return Err(bad(&format!(
                    "the collection must be a list of strings, found {other}"
                )));
            }
        };
        for item in items {
            let item = match item {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(bad(&format!(
                        "the collection may hold strings only, found {other}"
                    )));
                }
            };
            let copy = substitute(&Value::Object(fragment.clone()), identifier, &item);
            let Value::Object(copy) = copy else {
                unreachable!("a map stays a map")
            };
            // Loops in the fragment see this item; they expand at the next depth.
            let copy = if copy.keys().any(|k| k.starts_with(FOR_EACH)) {
                expand_loops(copy, resolver, depth + 1)?
            } else {
                copy
            };
            for (generated, value) in copy {
                insert(&mut out, generated, value, Some(name))?;
            }
        }
    }
    Ok(out)
}

fn insert(
    out: &mut Map<String, Value>,
    key: String,
    value: Value,
    from_loop: Option<&str>,
) -> Result<(), TemplateError> {
    if out.contains_key(&key) {
        return Err(TemplateError::invalid(format!(
            "Fn::ForEach::{}: it generates `{key}`, which already exists",
            from_loop.unwrap_or("?")
        )));
    }
    out.insert(key, value);
    Ok(())
}

/// `value` with the loop variable replaced in every key and string, and `Ref` to it replaced.
fn substitute(value: &Value, identifier: &str, item: &str) -> Value {
    let plain = format!("${{{identifier}}}");
    let alnum = format!("&{{{identifier}}}");
    let stripped: String = item.chars().filter(char::is_ascii_alphanumeric).collect();
    let text = |s: &str| s.replace(&plain, item).replace(&alnum, &stripped);
    fn walk(value: &Value, identifier: &str, item: &str, text: &dyn Fn(&str) -> String) -> Value {
        match value {
            Value::String(s) => Value::String(text(s)),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| walk(v, identifier, item, text))
                    .collect(),
            ),
            Value::Object(map) => {
                if map.len() == 1 && map.get("Ref").and_then(Value::as_str) == Some(identifier) {
                    return Value::String(item.to_string());
                }
                Value::Object(
                    map.iter()
                        .map(|(k, v)| (text(k), walk(v, identifier, item, text)))
                        .collect(),
                )
            }
            other => other.clone(),
        }
    }
    walk(value, identifier, item, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use serde_json::json;

    fn expanded(template: Value) -> Result<Value, TemplateError> {
        let Value::Object(mut map) = template else {
            panic!("a map")
        };
        let symbols = SymbolTable::new(map.get("Parameters"), &IndexMap::new());
        expand(&mut map, &symbols)?;
        Ok(Value::Object(map))
    }

    #[test]
    fn loops_generate_resources_with_the_identifier_replaced() {
        let out = expanded(json!({
            "Parameters": {"Names": {"Type": "CommaDelimitedList", "Default": "a-1,b_2"}},
            "Resources": {
                "Fn::ForEach::Functions": ["Name", {"Ref": "Names"}, {
                    "&{Name}Function": {
                        "Type": "AWS::Serverless::Function",
                        "Properties": {
                            "Handler": "${Name}.handler",
                            "Environment": {"Variables": {"NAME": {"Ref": "Name"}, "SUB": {"Fn::Sub": "x-${Name}-${AWS::Region}"}}}
                        }
                    }
                }],
                "Other": {"Type": "AWS::SNS::Topic"}
            }
        }))
        .unwrap();
        let resources = out["Resources"].as_object().unwrap();
        assert_eq!(
            resources.keys().collect::<Vec<_>>(),
            ["a1Function", "b2Function", "Other"]
        );
        assert_eq!(
            resources["a1Function"]["Properties"]["Handler"],
            "a-1.handler"
        );
        assert_eq!(
            resources["b2Function"]["Properties"]["Environment"]["Variables"],
            json!({"NAME": "b_2", "SUB": {"Fn::Sub": "x-b_2-${AWS::Region}"}})
        );
    }

    #[test]
    fn nested_loops_and_loops_in_properties() {
        let out = expanded(json!({
            "Resources": {
                "Fn::ForEach::Outer": ["Env", ["dev", "prod"], {
                    "Fn::ForEach::Inner": ["Size", ["Small", "Large"], {
                        "${Size}${Env}": {
                            "Type": "AWS::Serverless::Function",
                            "Properties": {
                                "Environment": {"Variables": {
                                    "Fn::ForEach::Vars": ["V", ["A", "B"], {"${V}_${Env}": "${Size}"}]
                                }}
                            }
                        }
                    }]
                }]
            }
        }))
        .unwrap();
        let resources = out["Resources"].as_object().unwrap();
        assert_eq!(
            resources.keys().collect::<Vec<_>>(),
            ["Smalldev", "Largedev", "Smallprod", "Largeprod"]
        );
        assert_eq!(
            resources["Largeprod"]["Properties"]["Environment"]["Variables"],
            json!({"A_prod": "Large", "B_prod": "Large"})
        );
    }

    #[test]
    fn length_and_to_json_string() {
        let out = expanded(json!({
            "Parameters": {"Subnets": {"Type": "CommaDelimitedList", "Default": "a,b,c"}},
            "Resources": {"F": {"Type": "AWS::Serverless::Function", "Properties": {
                "Environment": {"Variables": {
                    "COUNT": {"Fn::Length": {"Ref": "Subnets"}},
                    "CONFIG": {"Fn::ToJsonString": {"subnets": {"Ref": "Subnets"}, "n": 1}}
                }}
            }}}
        }))
        .unwrap();
        let vars = &out["Resources"]["F"]["Properties"]["Environment"]["Variables"];
        assert_eq!(vars["COUNT"], 3);
        assert_eq!(vars["CONFIG"], r#"{"subnets":["a","b","c"],"n":1}"#);
    }

    #[test]
    fn malformed_loops_and_collisions_are_errors() {
        let err = expanded(json!({"Resources": {"Fn::ForEach::L": ["X", ["a"]]}}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Fn::ForEach::L: expected [Identifier, Collection"),
            "{err}"
        );
        let err = expanded(json!({"Resources": {
            "Fn::ForEach::L": ["X", ["a", "a"], {"R${X}": {"Type": "T"}}]
        }}))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("generates `Ra`, which already exists"),
            "{err}"
        );
        let err = expanded(json!({"Resources": {
            "Fn::ForEach::L": ["X", "notalist", {"R${X}": {"Type": "T"}}]
        }}))
        .unwrap_err()
        .to_string();
        assert!(err.contains("the collection must be a list"), "{err}");
    }

    #[test]
    fn declared_and_used() {
        let map = |v: Value| v.as_object().unwrap().clone();
        assert!(declared(&map(
            json!({"Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]})
        )));
        assert!(!declared(&map(
            json!({"Transform": "AWS::Serverless-2016-10-31"})
        )));
        assert!(used(&map(json!({"Outputs": {"Fn::ForEach::O": []}}))));
    }
}
