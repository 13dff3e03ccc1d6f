//! CloudFormation intrinsic functions, resolved locally as `sam local invoke` does
//! (`samcli/lib/intrinsic_resolver`), with SAM's defaults for pseudo parameters.
//!
//! Resolution never fails as a whole: an intrinsic that cannot be resolved locally (`Fn::ImportValue`,
//! `Fn::GetAtt` of anything but `Arn`, a `Ref` to an unknown name) keeps its original form, exactly as
//! SAM's `ignore_errors=True` does. Callers decide what an unresolved value means (an environment
//! variable holding one becomes `""`).

use std::cell::Cell;
use std::sync::LazyLock;

use base64::Engine as _;
use indexmap::IndexMap;
use regex::{Captures, Regex};
use serde_json::{Map, Value};

pub const DEFAULT_ACCOUNT_ID: &str = "123456789012";
pub const DEFAULT_REGION: &str = "us-east-1";

const LAYER_TYPES: [&str; 2] = ["AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"];

/// Values for `Ref` and `Fn::Sub`: pseudo parameters, template parameters and overrides.
#[derive(Debug, Clone)]
pub struct SymbolTable {
    values: IndexMap<String, Value>,
    /// Parameters declared in the template, with their `Type`.
    declared: IndexMap<String, String>,
}

impl SymbolTable {
    /// Builds the table in SAM's order, later entries winning: pseudo-parameter defaults, the
    /// template's `Parameters.*.Default`, then `overrides` (which include `AWS::Region` when `--region`
    /// was given).
    pub fn new(parameters: Option<&Value>, overrides: &IndexMap<String, Value>) -> SymbolTable {
        let region = overrides
            .get("AWS::Region")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_REGION)
            .to_string();
        let account = overrides
            .get("AWS::AccountId")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_ACCOUNT_ID)
            .to_string();
        let mut values = IndexMap::new();
        values.insert("AWS::AccountId".into(), Value::String(account.clone()));
        values.insert(
            "AWS::Partition".into(),
            Value::String(partition_of(&region).into()),
        );
        values.insert("AWS::Region".into(), Value::String(region.clone()));
        values.insert("AWS::StackName".into(), Value::String("local".into()));
        values.insert(
            "AWS::StackId".into(),
            Value::String(format!(
                "arn:aws:cloudformation:{region}:{account}:stack/local/51af3dc0-da77-11e4-872e-1234567db123"
            )),
        );
        values.insert("AWS::URLSuffix".into(), Value::String("localhost".into()));
        values.insert("AWS::NotificationARNs".into(), Value::Array(vec![]));
        values.insert("AWS::NoValue".into(), Value::Null);

        let mut declared = IndexMap::new();
        if let Some(Value::Object(params)) = parameters {
            for (name, spec) in params {
                let kind = spec
                    .get("Type")
                    .and_then(Value::as_str)
                    .unwrap_or("String")
                    .to_string();
                if let Some(default) = spec.get("Default") {
                    values.insert(name.clone(), default.clone());
                }
                declared.insert(name.clone(), kind);
            }
        }
        for (name, value) in overrides {
            values.insert(name.clone(), value.clone());
        }
        SymbolTable { values, declared }
    }

    pub fn region(&self) -> &str {
        self.values["AWS::Region"]
            .as_str()
            .unwrap_or(DEFAULT_REGION)
    }

    pub fn account_id(&self) -> &str {
        self.values["AWS::AccountId"]
            .as_str()
            .unwrap_or(DEFAULT_ACCOUNT_ID)
    }

    pub fn partition(&self) -> &str {
        self.values["AWS::Partition"].as_str().unwrap_or("aws")
    }

    /// The value of a parameter or pseudo parameter for `Ref`.
    fn lookup(&self, name: &str) -> Option<Value> {
        let is_list = self
            .declared
            .get(name)
            .is_some_and(|kind| kind == "CommaDelimitedList" || kind.starts_with("List<"));
        match self.values.get(name) {
            Some(Value::String(s)) if is_list => Some(Value::Array(
                s.split(',')
                    .map(|p| Value::String(p.trim().to_string()))
                    .collect(),
            )),
            Some(value) => Some(value.clone()),
            // A declared parameter with neither default nor override resolves to its own name (SAM quirk).
            None if self.declared.contains_key(name) => Some(Value::String(name.to_string())),
            None => None,
        }
    }
}

fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Resolves intrinsics in the values of one stack's template.
pub struct Resolver<'a> {
    symbols: &'a SymbolTable,
    resources: &'a Map<String, Value>,
    conditions: Option<&'a Map<String, Value>>,
    mappings: Option<&'a Map<String, Value>>,
    depth: Cell<usize>,
}

/// Why an intrinsic stayed unresolved; only used to decide to keep the original value.
struct Unresolved;

type Resolved = Result<Value, Unresolved>;

const MAX_DEPTH: usize = 64;

impl<'a> Resolver<'a> {
    pub fn new(
        symbols: &'a SymbolTable,
        template: &'a Map<String, Value>,
        resources: &'a Map<String, Value>,
    ) -> Self {
        Resolver {
            symbols,
            resources,
            conditions: template.get("Conditions").and_then(Value::as_object),
            mappings: template.get("Mappings").and_then(Value::as_object),
            depth: Cell::new(0),
        }
    }

    /// Resolves every intrinsic inside `value`, keeping the ones that cannot be resolved.
    pub fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().expect("one entry");
                if is_intrinsic(key) {
                    return self
                        .apply(key, arg)
                        .unwrap_or_else(|Unresolved| value.clone());
                }
                Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), self.resolve(v)))
                        .collect(),
                )
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.resolve(v)).collect()),
            other => other.clone(),
        }
    }

    /// Evaluates a named condition from the `Conditions` section.
    pub fn condition(&self, name: &str) -> Option<bool> {
        self.eval_condition_name(name).ok()
    }

    fn apply(&self, key: &str, arg: &Value) -> Resolved {
        let depth = self.depth.get();
        if depth > MAX_DEPTH {
            return Err(Unresolved);
        }
        self.depth.set(depth + 1);
        let result = self.apply_inner(key, arg);
        self.depth.set(depth);
        result
    }

    fn apply_inner(&self, key: &str, arg: &Value) -> Resolved {
        match key {
            "Ref" => self.reference(&self.resolve_str(arg)?),
            "Fn::GetAtt" => {
                let (resource, attr) = match self.resolve(arg) {
                    Value::Array(items) if items.len() == 2 => {
                        (as_string(&items[0])?, as_string(&items[1])?)
                    }
                    Value::String(s) => {
                        let (r, a) = s.split_once('.').ok_or(Unresolved)?;
                        (r.to_string(), a.to_string())
                    }
                    _ => return Err(Unresolved),
                };
                self.get_att(&resource, &attr).map(Value::String)
            }
            "Fn::Sub" => self.sub(arg),
            "Fn::Join" => {
                let args = self.resolve(arg);
                let [delimiter, Value::Array(items)] =
                    args.as_array().ok_or(Unresolved)?.as_slice()
                else {
                    return Err(Unresolved);
                };
                let delimiter = as_string(delimiter)?;
                let parts: Result<Vec<String>, Unresolved> = items.iter().map(as_string).collect();
                Ok(Value::String(parts?.join(&delimiter)))
            }
            "Fn::Split" => {
                let args = self.resolve(arg);
                let [delimiter, source] = args.as_array().ok_or(Unresolved)?.as_slice() else {
                    return Err(Unresolved);
                };
                let (delimiter, source) = (as_string(delimiter)?, as_string(source)?);
                if delimiter.is_empty() {
                    return Err(Unresolved);
                }
                Ok(Value::Array(
                    source
                        .split(delimiter.as_str())
                        .map(|s| Value::String(s.into()))
                        .collect(),
                ))
            }
            "Fn::Select" => {
                let args = self.resolve(arg);
                let [index, Value::Array(items)] = args.as_array().ok_or(Unresolved)?.as_slice()
                else {
                    return Err(Unresolved);
                };
                let index: usize = as_string(index)?.parse().map_err(|_| Unresolved)?;
                items.get(index).cloned().ok_or(Unresolved)
            }
            "Fn::Base64" => {
                let text = as_string(&self.resolve(arg))?;
                Ok(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(text),
                ))
            }
            "Fn::FindInMap" => {
                let args = self.resolve(arg);
                let items = args.as_array().ok_or(Unresolved)?;
                if items.len() < 3 {
                    return Err(Unresolved);
                }
                let found = self
                    .mappings
                    .and_then(|m| m.get(&as_string(&items[0]).ok()?))
                    .and_then(|m| m.get(as_string(&items[1]).ok()?))
                    .and_then(|m| m.get(as_string(&items[2]).ok()?))
                    .cloned();
                // The 4th argument is the language extensions' `{"DefaultValue": v}`.
                found
                    .or_else(|| items.get(3).and_then(|d| d.get("DefaultValue")).cloned())
                    .ok_or(Unresolved)
            }
            "Fn::GetAZs" => {
                let region = as_string(&self.resolve(arg))?;
                let region = if region.is_empty() {
                    self.symbols.region().to_string()
                } else {
                    region
                };
                Ok(Value::Array(availability_zones(&region)))
            }
            "Fn::If" => {
                let items = arg.as_array().ok_or(Unresolved)?;
                let [condition, yes, no] = items.as_slice() else {
                    return Err(Unresolved);
                };
                let name = as_string(condition)?;
                let chosen = if self.eval_condition_name(&name)? {
                    yes
                } else {
                    no
                };
                Ok(self.resolve(chosen))
            }
            "Fn::Equals" | "Fn::And" | "Fn::Or" | "Fn::Not" | "Condition" => {
                let mut map = Map::new();
                map.insert(key.to_string(), arg.clone());
                self.eval_condition(&Value::Object(map)).map(Value::Bool)
            }
            _ => Err(Unresolved),
        }
    }

    fn resolve_str(&self, value: &Value) -> Result<String, Unresolved> {
        as_string(&self.resolve(value))
    }

    fn resource_type(&self, id: &str) -> Option<&str> {
        self.resources.get(id)?.get("Type")?.as_str()
    }

    fn reference(&self, name: &str) -> Resolved {
        if let Some(value) = self.symbols.lookup(name) {
            return Ok(value);
        }
        match self.resource_type(name) {
            // Layers stay `{"Ref": id}` so that the function's Layers can find them.
            Some(kind) if LAYER_TYPES.contains(&kind) => Err(Unresolved),
            Some("AWS::Lambda::Alias") => {
                let target = self.resources[name]
                    .get("Properties")
                    .and_then(|p| p.get("FunctionName"));
                let function = target.map(|t| self.resolve(t)).ok_or(Unresolved)?;
                Ok(Value::String(self.function_arn(&as_string(&function)?)))
            }
            Some(_) => Ok(Value::String(name.to_string())),
            None => Err(Unresolved),
        }
    }

    /// SAM resolves `Fn::GetAtt [X, Arn]` to a Lambda function ARN for every resource type; layers stay
    /// unresolved so that they can be found, and other attributes cannot be known locally.
    fn get_att(&self, resource: &str, attr: &str) -> Result<String, Unresolved> {
        if attr != "Arn" {
            return Err(Unresolved);
        }
        if self
            .resource_type(resource)
            .is_some_and(|kind| LAYER_TYPES.contains(&kind))
        {
            return Err(Unresolved);
        }
        let name = self
            .resources
            .get(resource)
            .and_then(|r| r.get("Properties"))
            .and_then(|p| p.get("FunctionName"))
            .map(|n| self.resolve(n))
            .and_then(|n| as_string(&n).ok())
            .unwrap_or_else(|| resource.to_string());
        Ok(self.function_arn(&name))
    }

    fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:{}:lambda:{}:{}:function:{name}",
            self.symbols.partition(),
            self.symbols.region(),
            self.symbols.account_id()
        )
    }

    fn sub(&self, arg: &Value) -> Resolved {
        let (template, vars) = match arg {
            Value::String(s) => (s.clone(), Map::new()),
            Value::Array(items) if items.len() == 2 => {
                let template = as_string(&items[0])?;
                let vars = items[1].as_object().ok_or(Unresolved)?;
                (
                    template,
                    vars.iter()
                        .map(|(k, v)| (k.clone(), self.resolve(v)))
                        .collect(),
                )
            }
            _ => return Err(Unresolved),
        };
        static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"\$\{!([^}]*)\}|\$\{(AWS::[A-Za-z]+|[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)?)\}")
                .expect("valid regex")
        });
        let replaced = VARIABLE.replace_all(&template, |caps: &Captures| {
            let whole = caps[0].to_string();
            // `${!Anything}` is CloudFormation's escape for a literal `${Anything}`. (SAM leaves it as
            // is; we follow CloudFormation, so the function sees what it would see in AWS.)
            if let Some(literal) = caps.get(1) {
                return format!("${{{}}}", literal.as_str());
            }
            let name = &caps[2];
            if let Some(value) = vars.get(name) {
                return sub_text(value).unwrap_or(whole);
            }
            if let Some((resource, attr)) = name.split_once('.') {
                return match self.get_att(resource, attr) {
                    Ok(arn) => arn,
                    Err(Unresolved) => whole,
                };
            }
            match self.reference(name) {
                Ok(value) => sub_text(&value).unwrap_or(whole),
                Err(Unresolved) => whole,
            }
        });
        Ok(Value::String(replaced.into_owned()))
    }

    fn eval_condition_name(&self, name: &str) -> Result<bool, Unresolved> {
        let definition = self
            .conditions
            .and_then(|c| c.get(name))
            .ok_or(Unresolved)?;
        let depth = self.depth.get();
        if depth > MAX_DEPTH {
            return Err(Unresolved);
        }
        self.depth.set(depth + 1);
        let result = self.eval_condition(definition);
        self.depth.set(depth);
        result
    }

    fn eval_condition(&self, value: &Value) -> Result<bool, Unresolved> {
        let map = value
            .as_object()
            .filter(|m| m.len() == 1)
            .ok_or(Unresolved)?;
        let (key, arg) = map.iter().next().expect("one entry");
        let operands = || arg.as_array().ok_or(Unresolved);
        match key.as_str() {
            "Condition" => self.eval_condition_name(&as_string(arg)?),
            "Fn::Equals" => {
                let items = operands()?;
                let [a, b] = items.as_slice() else {
                    return Err(Unresolved);
                };
                let (a, b) = (self.resolve(a), self.resolve(b));
                if is_unresolved(&a) || is_unresolved(&b) {
                    return Err(Unresolved);
                }
                Ok(equals_text(&a) == equals_text(&b))
            }
            "Fn::Not" => {
                let items = operands()?;
                let [inner] = items.as_slice() else {
                    return Err(Unresolved);
                };
                Ok(!self.eval_condition(inner)?)
            }
            "Fn::And" => {
                let results: Result<Vec<bool>, _> =
                    operands()?.iter().map(|c| self.eval_condition(c)).collect();
                Ok(results?.into_iter().all(|b| b))
            }
            "Fn::Or" => {
                let results: Result<Vec<bool>, _> =
                    operands()?.iter().map(|c| self.eval_condition(c)).collect();
                Ok(results?.into_iter().any(|b| b))
            }
            _ => match self.apply(key, arg)? {
                Value::Bool(b) => Ok(b),
                Value::String(s) if s == "true" => Ok(true),
                Value::String(s) if s == "false" => Ok(false),
                _ => Err(Unresolved),
            },
        }
    }
}

/// Names that make a single-key mapping an intrinsic function.
fn is_intrinsic(key: &str) -> bool {
    key == "Ref" || key == "Condition" || key.starts_with("Fn::")
}

/// Whether a mapping is an intrinsic function call (`{"Ref": ...}`, `{"Fn::X": ...}`).
pub(crate) fn is_intrinsic_map(map: &Map<String, Value>) -> bool {
    map.len() == 1 && map.keys().next().is_some_and(|k| is_intrinsic(k))
}

/// Whether a value still holds an intrinsic that could not be resolved.
pub fn is_unresolved(value: &Value) -> bool {
    matches!(value, Value::Object(map) if is_intrinsic_map(map))
}

fn as_string(value: &Value) -> Result<String, Unresolved> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(Unresolved),
    }
}

fn sub_text(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| as_string(v).ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        Value::Null => Some(String::new()),
        other => as_string(other).ok(),
    }
}

fn equals_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `Fn::GetAZs`: SAM answers from a fixed table; three zones `a`-`c` match it for most regions.
fn availability_zones(region: &str) -> Vec<Value> {
    let letters: &[char] = match region {
        "us-east-1" => &['a', 'b', 'c', 'd', 'e', 'f'],
        "us-west-1" => &['a', 'c'],
        _ => &['a', 'b', 'c'],
    };
    letters
        .iter()
        .map(|l| Value::String(format!("{region}{l}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve_in(template: Value, overrides: &[(&str, &str)], value: Value) -> Value {
        let template = template.as_object().unwrap().clone();
        let overrides: IndexMap<String, Value> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let symbols = SymbolTable::new(template.get("Parameters"), &overrides);
        let empty = Map::new();
        let resources = template
            .get("Resources")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        Resolver::new(&symbols, &template, resources).resolve(&value)
    }

    fn resolve(value: Value) -> Value {
        resolve_in(json!({}), &[], value)
    }

    #[test]
    fn test_intrinsics_pseudo_parameters() {
        assert_eq!(resolve(json!({"Ref": "AWS::Region"})), json!("us-east-1"));
        assert_eq!(
            resolve(json!({"Ref": "AWS::AccountId"})),
            json!("123456789012")
        );
        assert_eq!(resolve(json!({"Ref": "AWS::NoValue"})), json!(null));
        assert_eq!(
            resolve_in(
                json!({}),
                &[("AWS::Region", "eu-west-1")],
                json!({"Ref": "AWS::Region"})
            ),
            json!("eu-west-1")
        );
    }

    #[test]
    fn test_intrinsics_parameters_defaults_and_overrides() {
        let t = json!({"Parameters": {"Stage": {"Type": "String", "Default": "dev"},
                                      "NoDefault": {"Type": "String"},
                                      "Subnets": {"Type": "CommaDelimitedList", "Default": "a, b"}}});
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Ref": "Stage"})),
            json!("dev")
        );
        assert_eq!(
            resolve_in(t.clone(), &[("Stage", "prod")], json!({"Ref": "Stage"})),
            json!("prod")
        );
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Ref": "NoDefault"})),
            json!("NoDefault")
        );
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Ref": "Subnets"})),
            json!(["a", "b"])
        );
        assert_eq!(
            resolve_in(t, &[], json!({"Ref": "Unknown"})),
            json!({"Ref": "Unknown"})
        );
    }

    #[test]
    fn test_intrinsics_sub() {
        let t = json!({"Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
                       "Resources": {"Table": {"Type": "AWS::DynamoDB::Table"}}});
        assert_eq!(
            resolve_in(
                t.clone(),
                &[],
                json!({"Fn::Sub": "${AWS::Region}-${Stage}-${Table}-${!Literal}-${!Odd_Name}-${Missing}"})
            ),
            json!("us-east-1-dev-Table-${Literal}-${Odd_Name}-${Missing}")
        );
        assert_eq!(
            resolve_in(
                t.clone(),
                &[],
                json!({"Fn::Sub": ["${A}/${Stage}", {"A": {"Ref": "AWS::Partition"}}]})
            ),
            json!("aws/dev")
        );
        assert_eq!(
            resolve_in(t, &[], json!({"Fn::Sub": "${Fn.Arn}"})),
            json!("arn:aws:lambda:us-east-1:123456789012:function:Fn")
        );
    }

    #[test]
    fn test_intrinsics_getatt() {
        let t = json!({"Resources": {"F": {"Type": "AWS::Serverless::Function", "Properties": {"FunctionName": "real-name"}},
                                     "L": {"Type": "AWS::Serverless::LayerVersion"}}});
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Fn::GetAtt": ["F", "Arn"]})),
            json!("arn:aws:lambda:us-east-1:123456789012:function:real-name")
        );
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Fn::GetAtt": ["F", "Other"]})),
            json!({"Fn::GetAtt": ["F", "Other"]})
        );
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Fn::GetAtt": ["L", "Arn"]})),
            json!({"Fn::GetAtt": ["L", "Arn"]})
        );
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Ref": "L"})),
            json!({"Ref": "L"})
        );
        assert_eq!(resolve_in(t, &[], json!({"Ref": "F"})), json!("F"));
    }

    #[test]
    fn test_intrinsics_list_functions() {
        assert_eq!(
            resolve(json!({"Fn::Join": ["-", ["a", {"Ref": "AWS::Partition"}, 3]]})),
            json!("a-aws-3")
        );
        assert_eq!(
            resolve(json!({"Fn::Split": [",", "a,b"]})),
            json!(["a", "b"])
        );
        assert_eq!(
            resolve(json!({"Fn::Select": ["1", {"Fn::Split": [",", "a,b"]}]})),
            json!("b")
        );
        assert_eq!(
            resolve(json!({"Fn::Select": [5, ["a"]]})),
            json!({"Fn::Select": [5, ["a"]]})
        );
        assert_eq!(resolve(json!({"Fn::Base64": "hi"})), json!("aGk="));
        assert_eq!(resolve(json!({"Fn::GetAZs": ""}))[0], json!("us-east-1a"));
        assert_eq!(
            resolve(json!({"Fn::ImportValue": "x"})),
            json!({"Fn::ImportValue": "x"})
        );
        // A failure inside keeps the original outer value.
        assert_eq!(
            resolve(json!({"Fn::Join": ["-", [{"Fn::ImportValue": "x"}]]})),
            json!({"Fn::Join": ["-", [{"Fn::ImportValue": "x"}]]})
        );
    }

    #[test]
    fn test_intrinsics_find_in_map() {
        let t = json!({"Mappings": {"Env": {"dev": {"Size": 256}}}});
        assert_eq!(
            resolve_in(
                t.clone(),
                &[],
                json!({"Fn::FindInMap": ["Env", "dev", "Size"]})
            ),
            json!(256)
        );
        assert_eq!(
            resolve_in(
                t,
                &[],
                json!({"Fn::FindInMap": ["Env", "prod", "Size", {"DefaultValue": 1}]})
            ),
            json!(1)
        );
    }

    #[test]
    fn test_intrinsics_conditions() {
        let t = json!({
            "Parameters": {"Stage": {"Type": "String", "Default": "prod"}},
            "Conditions": {
                "IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
                "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
                "Both": {"Fn::And": [{"Condition": "IsProd"}, {"Fn::Equals": ["a", "a"]}]},
                "Either": {"Fn::Or": [{"Condition": "NotProd"}, {"Condition": "IsProd"}]},
                "Loop": {"Condition": "Loop"}
            }
        });
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Fn::If": ["IsProd", 1024, 128]})),
            json!(1024)
        );
        assert_eq!(
            resolve_in(
                t.clone(),
                &[("Stage", "dev")],
                json!({"Fn::If": ["IsProd", 1024, 128]})
            ),
            json!(128)
        );
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Fn::If": ["NotProd", 1, 2]})),
            json!(2)
        );
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Fn::If": ["Both", 1, 2]})),
            json!(1)
        );
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Fn::If": ["Either", 1, 2]})),
            json!(1)
        );
        assert_eq!(
            resolve_in(t.clone(), &[], json!({"Fn::If": ["Loop", 1, 2]})),
            json!({"Fn::If": ["Loop", 1, 2]})
        );
        assert_eq!(
            resolve_in(t, &[], json!({"Fn::If": ["Missing", 1, 2]})),
            json!({"Fn::If": ["Missing", 1, 2]})
        );
    }
}
