//! `Fn::Transform` with `AWS::Include`: a snippet from a local file, put where the transform
//! stands before anything else reads the template, as SAM's resolver loads it. As a value
//! (`Key: {Fn::Transform: ...}`) the snippet replaces it; as a key among others in a map, the
//! snippet's entries join that map (the map's own entries win). A `Location` in S3 or on the web
//! cannot be read locally and stays as it is, with a warning.

use std::path::Path;

use serde_json::{Map, Value};

use super::{TemplateError, parse_value_file};

const TRANSFORM: &str = "Fn::Transform";
/// Snippets may include snippets; this deep at most (a file including itself stops here).
const MAX_DEPTH: usize = 8;

/// Replaces every `AWS::Include` in `template`; relative locations are taken from `base_dir`.
pub fn apply(template: &mut Map<String, Value>, base_dir: &Path) -> Result<(), TemplateError> {
    for value in template.values_mut() {
        walk(value, base_dir, 0)?;
    }
    Ok(())
}

fn walk(value: &mut Value, base_dir: &Path, depth: usize) -> Result<(), TemplateError> {
    match value {
        Value::Object(map) => {
            if let Some(spec) = map.get(TRANSFORM)
                && let Some(mut snippet) = load(spec, base_dir, depth)?
            {
                walk(&mut snippet, base_dir, depth + 1)?;
                if map.len() == 1 {
                    *value = snippet;
                    return Ok(());
                }
                let Value::Object(entries) = snippet else {
                    return Err(TemplateError::invalid(
                        "Fn::Transform AWS::Include next to other keys must include a mapping",
                    ));
                };
                map.remove(TRANSFORM);
                for (key, entry) in entries {
                    map.entry(key).or_insert(entry);
                }
            }
            for child in map.values_mut() {
                walk(child, base_dir, depth)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, base_dir, depth)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The snippet an `AWS::Include` names; `None` for other transforms and remote locations.
fn load(spec: &Value, base_dir: &Path, depth: usize) -> Result<Option<Value>, TemplateError> {
    if spec.get("Name").and_then(Value::as_str) != Some("AWS::Include") {
        return Ok(None);
    }
    let Some(location) = spec
        .get("Parameters")
        .and_then(|p| p.get("Location"))
        .and_then(Value::as_str)
    else {
        return Err(TemplateError::invalid(
            "Fn::Transform AWS::Include needs Parameters.Location",
        ));
    };
    if location.contains("://") {
        tracing::warn!(
            "Fn::Transform AWS::Include: {location} is not a local file; lamina leaves it unresolved"
        );
        return Ok(None);
    }
    if depth >= MAX_DEPTH {
        return Err(TemplateError::invalid(format!(
            "Fn::Transform AWS::Include: {location}: includes nest more than {MAX_DEPTH} deep (does a snippet include itself?)"
        )));
    }
    let path = base_dir.join(location);
    parse_value_file(&path).map(Some).map_err(|err| match err {
        TemplateError::NotFound(path) => TemplateError::invalid(format!(
            "Fn::Transform AWS::Include: {} does not exist",
            path.display()
        )),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snippets_replace_values_and_join_maps() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("env.yaml"), "A: from-snippet\nB: '2'\n").unwrap();
        std::fs::write(
            dir.path().join("fn.json"),
            r#"{"Type": "AWS::Serverless::Function", "Properties": {"Environment": {"Variables": {"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "env.yaml"}}}}}}"#,
        )
        .unwrap();
        let mut template = json!({
            "Resources": {
                "Included": {"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "fn.json"}}},
                "Merged": {"Type": "T", "Properties": {
                    "A": "mine",
                    "Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "env.yaml"}}
                }},
                "Remote": {"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "s3://b/k.yaml"}}}
            }
        });
        apply(template.as_object_mut().unwrap(), dir.path()).unwrap();
        let resources = &template["Resources"];
        assert_eq!(
            resources["Included"]["Properties"]["Environment"]["Variables"],
            json!({"A": "from-snippet", "B": "2"})
        );
        assert_eq!(
            resources["Merged"]["Properties"],
            json!({"A": "mine", "B": "2"})
        );
        assert_eq!(
            resources["Remote"]["Fn::Transform"]["Parameters"]["Location"],
            "s3://b/k.yaml"
        );
    }

    #[test]
    fn missing_and_self_including_snippets_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let include = |location: &str| json!({"R": {"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": location}}}});
        let mut template = include("nope.yaml");
        let err = apply(template.as_object_mut().unwrap(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.yaml does not exist"), "{err}");
        std::fs::write(
            dir.path().join("self.json"),
            include("self.json").to_string(),
        )
        .unwrap();
        let mut template = include("self.json");
        let err = apply(template.as_object_mut().unwrap(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("nest more than 8 deep"), "{err}");
    }
}
