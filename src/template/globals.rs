//! The `Globals` section, merged into `AWS::Serverless::*` resources the way aws-sam-translator's
//! Globals plugin does: the resource's own value wins for scalars, intrinsics and type mismatches,
//! mappings merge deeply, lists concatenate (global items first), and `Architectures` is replaced.

use serde_json::{Map, Value};

use super::TemplateError;
use super::intrinsics::is_intrinsic_map;

/// Properties of `AWS::Serverless::Function` that `Globals.Function` may set (aws-sam-translator 1.115).
const FUNCTION_PROPERTIES: &[&str] = &[
    "Handler",
    "Runtime",
    "CodeUri",
    "DeadLetterQueue",
    "Description",
    "MemorySize",
    "Timeout",
    "VpcConfig",
    "Environment",
    "Tags",
    "PropagateTags",
    "Tracing",
    "KmsKeyArn",
    "AutoPublishAlias",
    "AutoPublishAliasAllProperties",
    "Layers",
    "DeploymentPreference",
    "RolePath",
    "PermissionsBoundary",
    "ReservedConcurrentExecutions",
    "ProvisionedConcurrencyConfig",
    "AssumeRolePolicyDocument",
    "EventInvokeConfig",
    "FileSystemConfigs",
    "CodeSigningConfigArn",
    "Architectures",
    "SnapStart",
    "EphemeralStorage",
    "FunctionUrlConfig",
    "RuntimeManagementConfig",
    "LoggingConfig",
    "RecursiveLoop",
    "SourceKMSKeyArn",
    "TenancyConfig",
    "DurableConfig",
    "CapacityProviderConfig",
    "FunctionScalingConfig",
    "PublishToLatestPublished",
    "VersionDeletionPolicy",
];

/// The resource kinds a `Globals` section may configure, and the SAM type each applies to.
const SECTIONS: &[(&str, &str)] = &[
    ("Function", "AWS::Serverless::Function"),
    ("Api", "AWS::Serverless::Api"),
    ("HttpApi", "AWS::Serverless::HttpApi"),
    ("SimpleTable", "AWS::Serverless::SimpleTable"),
    ("StateMachine", "AWS::Serverless::StateMachine"),
    ("LayerVersion", "AWS::Serverless::LayerVersion"),
    ("CapacityProvider", "AWS::Serverless::CapacityProvider"),
];

/// Merges `template.Globals` into the resources it applies to, in place, and removes the section.
pub fn apply(template: &mut Map<String, Value>) -> Result<(), TemplateError> {
    let Some(globals) = template.remove("Globals") else {
        return Ok(());
    };
    let Value::Object(globals) = globals else {
        return Err(TemplateError::invalid(
            "'Globals' section must be a mapping",
        ));
    };
    for (section, settings) in &globals {
        let Some((_, resource_type)) = SECTIONS.iter().find(|(name, _)| name == section) else {
            let known: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
            return Err(TemplateError::invalid(format!(
                "'{section}' is not a supported resource type in the Globals section. Supported: {}",
                known.join(", ")
            )));
        };
        let Value::Object(settings) = settings else {
            return Err(TemplateError::invalid(format!(
                "Globals.{section} must be a mapping"
            )));
        };
        if *section == "Function"
            && let Some(bad) = settings
                .keys()
                .find(|k| !FUNCTION_PROPERTIES.contains(&k.as_str()))
        {
            return Err(TemplateError::invalid(format!(
                "'{bad}' is not a supported property of 'Function' in the Globals section"
            )));
        }
        let Some(Value::Object(resources)) = template.get_mut("Resources") else {
            continue;
        };
        for resource in resources.values_mut() {
            if resource.get("Type").and_then(Value::as_str) != Some(resource_type) {
                continue;
            }
            let Some(resource) = resource.as_object_mut() else {
                continue;
            };
            let local = resource
                .remove("Properties")
                .unwrap_or_else(|| Value::Object(Map::new()));
            let merged = merge_properties(settings, local);
            resource.insert("Properties".into(), merged);
        }
    }
    Ok(())
}

fn merge_properties(global: &Map<String, Value>, local: Value) -> Value {
    let Value::Object(local) = local else {
        return local;
    };
    let mut merged = global.clone();
    for (key, value) in local {
        let combined = match merged.remove(&key) {
            Some(_) if key == "Architectures" => value,
            Some(global_value) => merge(global_value, value),
            None => value,
        };
        merged.insert(key, combined);
    }
    Value::Object(merged)
}

fn merge(global: Value, local: Value) -> Value {
    match (global, local) {
        (Value::Object(g), Value::Object(l)) if !is_intrinsic_map(&g) && !is_intrinsic_map(&l) => {
            let mut merged = g;
            for (key, value) in l {
                let combined = match merged.remove(&key) {
                    Some(existing) => merge(existing, value),
                    None => value,
                };
                merged.insert(key, combined);
            }
            Value::Object(merged)
        }
        (Value::Array(mut g), Value::Array(l)) => {
            g.extend(l);
            Value::Array(g)
        }
        (_, local) => local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_globals_merge_rules() {
        let mut t = json!({
            "Globals": {"Function": {
                "Runtime": "python3.12", "Timeout": 10, "Layers": ["arn:g"],
                "Architectures": ["arm64"],
                "Environment": {"Variables": {"G": "g", "SHARED": "global"}},
                "MemorySize": {"Ref": "Mem"}
            }},
            "Resources": {
                "F": {"Type": "AWS::Serverless::Function", "Properties": {
                    "Timeout": 5, "Layers": ["arn:l"], "Architectures": ["x86_64"],
                    "Environment": {"Variables": {"SHARED": "local", "L": "l"}},
                    "MemorySize": 256
                }},
                "Bare": {"Type": "AWS::Serverless::Function"},
                "Plain": {"Type": "AWS::Lambda::Function", "Properties": {}}
            }
        });
        apply(t.as_object_mut().unwrap()).unwrap();
        let f = &t["Resources"]["F"]["Properties"];
        assert_eq!(f["Runtime"], "python3.12");
        assert_eq!(f["Timeout"], 5);
        assert_eq!(f["Layers"], json!(["arn:g", "arn:l"]));
        assert_eq!(f["Architectures"], json!(["x86_64"]));
        assert_eq!(
            f["Environment"]["Variables"],
            json!({"G": "g", "SHARED": "local", "L": "l"})
        );
        assert_eq!(f["MemorySize"], 256);
        assert_eq!(
            t["Resources"]["Bare"]["Properties"]["Runtime"],
            "python3.12"
        );
        assert_eq!(t["Resources"]["Plain"]["Properties"], json!({}));
        assert!(t.get("Globals").is_none());
    }

    #[test]
    fn test_globals_rejects_unknown_property() {
        let mut t = json!({"Globals": {"Function": {"Handlr": "x"}}, "Resources": {}});
        let err = apply(t.as_object_mut().unwrap()).unwrap_err();
        assert!(err.to_string().contains("'Handlr'"), "{err}");
        let mut t = json!({"Globals": {"Functions": {}}, "Resources": {}});
        let err = apply(t.as_object_mut().unwrap()).unwrap_err();
        assert!(err.to_string().contains("'Functions'"), "{err}");
    }
}
