//! `samconfig.toml` / `samconfig.yaml`: default option values per environment
//! (`samcli/cli/cli_config_file.py`). Values come from `[<env>.local_invoke.parameters]` over
//! `[<env>.global.parameters]`; the command line and option environment variables beat them.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

/// The file names looked for, in priority order, when `--config-file` is not given.
pub const DEFAULT_NAMES: [&str; 3] = ["samconfig.toml", "samconfig.yaml", "samconfig.yml"];

/// The samconfig section for this command.
const COMMAND_SECTION: &str = "local_invoke";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Config file {} does not exist or could not be read!", .0.display())]
    Missing(PathBuf),
    #[error("The config file {} uses an unsupported extension, and cannot be read.", .0.display())]
    Extension(PathBuf),
    #[error("Error reading configuration: {}: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: `{key}`: {message}", .path.display())]
    Value {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Option values from a samconfig file, keyed by option name with underscores (`parameter_overrides`).
#[derive(Debug, Clone, Default)]
pub struct SamConfig {
    pub path: Option<PathBuf>,
    pub values: IndexMap<String, Value>,
}

/// Finds the config file: `config_file` relative to `dir`, else the first default name in `dir`.
/// `Ok(None)` means there is no config, which is fine.
pub fn locate(dir: &Path, config_file: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(name) = config_file {
        let path = dir.join(name);
        if path.is_file() || is_fifo(&path) {
            return Ok(Some(path));
        }
        // SAM's own default name may be absent without complaint.
        if name == Path::new(DEFAULT_NAMES[0]) {
            return Ok(None);
        }
        return Err(ConfigError::Missing(path));
    }
    let found: Vec<PathBuf> = DEFAULT_NAMES
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    if found.len() > 1 {
        tracing::info!(
            "More than one samconfig file found; using {}. To use another config file, please specify it using the '--config-file' flag.",
            found[0].file_name().unwrap_or_default().to_string_lossy()
        );
    }
    Ok(found.into_iter().next())
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Reads the values of `env` for `local invoke`.
pub fn load(path: &Path, env: &str) -> Result<SamConfig, ConfigError> {
    let parse_error = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let text = crate::limits::read_text_file(path).map_err(|e| parse_error(e.to_string()))?;
    let document: Value = match ext {
        "toml" => crate::params::toml_value(&text).map_err(parse_error)?,
        "yaml" | "yml" => crate::yaml::parse(&text).map_err(|e| parse_error(e.to_string()))?,
        _ => return Err(ConfigError::Extension(path.to_path_buf())),
    };
    if !document.get("version").is_some_and(Value::is_number) {
        return Err(parse_error(
            "'version' key is not present or is in unrecognized format.".into(),
        ));
    }
    let section = |name: &str| -> Result<IndexMap<String, Value>, ConfigError> {
        match document
            .get(env)
            .and_then(|e| e.get(name))
            .and_then(|c| c.get("parameters"))
        {
            None => Ok(IndexMap::new()),
            Some(Value::Object(map)) => {
                Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            Some(_) => Err(parse_error(format!(
                "[{env}.{name}.parameters] must be a table"
            ))),
        }
    };
    let mut values = section("global")?;
    values.extend(section(COMMAND_SECTION)?);
    Ok(SamConfig {
        path: Some(path.to_path_buf()),
        values,
    })
}

/// `--save-params`: writes the options given on the command line into
/// `[<env>.local_invoke.parameters]` and the region into `[<env>.global.parameters]`, keeping the
/// rest of the file (comments included). Keys whose value equals the global one are dropped from
/// the command section, as SAM does. Only TOML files can be written.
pub fn save(
    path: &Path,
    env: &str,
    values: &IndexMap<String, Value>,
    region: &str,
) -> Result<(), ConfigError> {
    use toml_edit::{DocumentMut, Item, Table, value};
    let parse_error = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    if path.extension().and_then(|e| e.to_str()) != Some("toml") {
        return Err(parse_error(
            "--save-params can only write samconfig.toml files".into(),
        ));
    }
    let text = match fs_err::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => "version = 0.1\n".to_string(),
        Err(err) => return Err(parse_error(err.to_string())),
    };
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| parse_error(e.to_string()))?;
    let mut section = |command: &str| -> Result<Table, ConfigError> {
        let env_table = doc.entry(env).or_insert(Item::Table(Table::new()));
        let env_table = env_table
            .as_table_mut()
            .ok_or_else(|| parse_error(format!("[{env}] is not a table")))?;
        env_table.set_implicit(true);
        let command_table = env_table
            .entry(command)
            .or_insert(Item::Table(Table::new()));
        let command_table = command_table
            .as_table_mut()
            .ok_or_else(|| parse_error(format!("[{env}.{command}] is not a table")))?;
        command_table.set_implicit(true);
        let parameters = command_table
            .entry("parameters")
            .or_insert(Item::Table(Table::new()));
        parameters
            .as_table()
            .cloned()
            .ok_or_else(|| parse_error(format!("[{env}.{command}.parameters] is not a table")))
    };
    let mut global = section("global")?;
    let mut local = section(COMMAND_SECTION)?;
    global.insert("region", value(region));
    for (key, v) in values {
        if global.get(key).map(|g| g.to_string().trim().to_string())
            == Some(toml_value(v).to_string().trim().to_string())
        {
            local.remove(key);
            continue;
        }
        local.insert(key, Item::Value(toml_value(v)));
    }
    doc[env]["global"]["parameters"] = Item::Table(global);
    doc[env][COMMAND_SECTION]["parameters"] = Item::Table(local);
    fs_err::write(path, doc.to_string()).map_err(|e| parse_error(e.to_string()))?;
    Ok(())
}

fn toml_value(v: &Value) -> toml_edit::Value {
    match v {
        Value::Bool(b) => (*b).into(),
        Value::Number(n) if n.is_i64() => n.as_i64().unwrap_or_default().into(),
        Value::Number(n) => n.as_f64().unwrap_or_default().into(),
        Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push(toml_value(item));
            }
            toml_edit::Value::Array(array)
        }
        Value::String(s) => s.as_str().into(),
        other => other.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_samconfig_sections_merge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samconfig.toml");
        fs_err::write(
            &path,
            "version = 0.1\n[default.global.parameters]\nregion = \"eu-west-1\"\nprofile = \"g\"\n\
             [default.local_invoke.parameters]\nprofile = \"local\"\n[prod.local_invoke.parameters]\nprofile = \"p\"\n",
        )
        .unwrap();
        let found = locate(dir.path(), None).unwrap().unwrap();
        let config = load(&found, "default").unwrap();
        assert_eq!(config.values["region"], "eu-west-1");
        assert_eq!(config.values["profile"], "local");
        assert_eq!(load(&found, "prod").unwrap().values["profile"], "p");
        assert!(load(&found, "none").unwrap().values.is_empty());
    }

    #[test]
    fn test_samconfig_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(locate(dir.path(), None).unwrap().is_none());
        assert!(
            locate(dir.path(), Some(Path::new("samconfig.toml")))
                .unwrap()
                .is_none()
        );
        let err = locate(dir.path(), Some(Path::new("other.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("other.toml does not exist"), "{err}");

        let bad = dir.path().join("samconfig.toml");
        fs_err::write(&bad, "[default\n").unwrap();
        assert!(
            load(&bad, "default")
                .unwrap_err()
                .to_string()
                .starts_with("Error reading configuration")
        );
        fs_err::write(&bad, "[default.global.parameters]\nregion = \"x\"\n").unwrap();
        assert!(
            load(&bad, "default")
                .unwrap_err()
                .to_string()
                .contains("'version' key")
        );
        let json = dir.path().join("samconfig.json");
        fs_err::write(&json, "{}").unwrap();
        assert!(matches!(
            load(&json, "default"),
            Err(ConfigError::Extension(_))
        ));
    }

    #[test]
    fn test_samconfig_save_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samconfig.toml");
        fs_err::write(
            &path,
            "# my settings\nversion = 0.1\n[default.deploy.parameters]\nstack_name = \"app\"\n",
        )
        .unwrap();
        let mut values = IndexMap::new();
        values.insert(
            "parameter_overrides".to_string(),
            Value::String("A=1 B=2".into()),
        );
        values.insert("debug_port".to_string(), serde_json::json!([5858]));
        values.insert("skip_pull_image".to_string(), Value::Bool(true));
        save(&path, "default", &values, "eu-west-1").unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my settings"), "{text}");
        assert!(text.contains("stack_name = \"app\""), "{text}");
        let config = load(&path, "default").unwrap();
        assert_eq!(config.values["parameter_overrides"], "A=1 B=2");
        assert_eq!(config.values["debug_port"], serde_json::json!([5858]));
        assert_eq!(config.values["skip_pull_image"], true);
        assert_eq!(config.values["region"], "eu-west-1");
        let yaml = dir.path().join("samconfig.yaml");
        assert!(save(&yaml, "default", &values, "x").is_err());
    }

    #[test]
    fn test_samconfig_yaml() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("samconfig.yaml"),
            "version: 0.1\ndefault:\n  local_invoke:\n    parameters:\n      skip_pull_image: true\n",
        )
        .unwrap();
        let found = locate(dir.path(), None).unwrap().unwrap();
        assert_eq!(
            load(&found, "default").unwrap().values["skip_pull_image"],
            true
        );
    }
}
