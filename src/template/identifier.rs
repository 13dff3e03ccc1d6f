//! Choosing the function to invoke from what the user typed (`samcli/lib/utils/name_utils.py` and
//! `SamFunctionProvider.get`): logical ids, `FunctionName`s, stack paths and ARNs all work.

use std::sync::LazyLock;

use regex::Regex;

use super::Function;

#[derive(Debug, thiserror::Error)]
pub enum IdentifierError {
    #[error(
        "1 validation error detected: Value '{0}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}",
        pattern = NAME_PATTERN
    )]
    Invalid(String),
    #[error("Function {id} not found in template. Possible options in your template: {}", python_list(.available))]
    NotFound { id: String, available: Vec<String> },
    #[error(
        "You must provide a function logical ID when there are more than one functions in your template. Possible options in your template: {}",
        python_list(.0)
    )]
    Ambiguous(Vec<String>),
}

const NAME_PATTERN: &str =
    r"^(arn:[^:]+:lambda:[^:]*:\d{12}:function:|\d{12}:function:)?[a-zA-Z0-9-_\.\[\]]+(:[\w$-]+)?$";

static NAME_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(NAME_PATTERN).expect("valid regex"));

/// Turns an ARN, partial ARN or `name:alias` into the plain name, keeping any `Stack/` prefix.
pub fn normalize_identifier(identifier: &str) -> Result<String, IdentifierError> {
    let (prefix, tail) = match identifier.rsplit_once('/') {
        Some((stack, tail)) => (format!("{stack}/"), tail),
        None => (String::new(), identifier),
    };
    let invalid = || IdentifierError::Invalid(identifier.to_string());
    let parts: Vec<&str> = tail.split(':').collect();
    let name = if tail.starts_with("arn:") {
        if parts.len() < 6 || parts[2] != "lambda" {
            return Err(invalid());
        }
        if parts.len() >= 7 && parts[5] == "function" {
            parts[6]
        } else {
            tail
        }
    } else if parts.len() >= 3 && parts[1] == "function" {
        parts[2]
    } else if parts.len() == 2 {
        parts[0]
    } else {
        tail
    };
    if name.is_empty() || !NAME_RE.is_match(tail) {
        return Err(invalid());
    }
    Ok(format!("{prefix}{name}"))
}

/// Finds the function to invoke. With no identifier the template must hold exactly one function.
/// When several functions share a name, the first by full path wins and a warning lists them all.
pub fn find_function<'a>(
    functions: &'a [Function],
    identifier: Option<&str>,
) -> Result<&'a Function, IdentifierError> {
    let available = || {
        functions
            .iter()
            .map(|f| f.full_path.clone())
            .collect::<Vec<_>>()
    };
    let Some(identifier) = identifier else {
        return match functions {
            [only] => Ok(only),
            _ => Err(IdentifierError::Ambiguous(available())),
        };
    };
    let id = normalize_identifier(identifier)?;
    if let Some(exact) = functions.iter().find(|f| f.full_path == id) {
        return Ok(exact);
    }
    let mut matches: Vec<&Function> = functions
        .iter()
        .filter(|f| f.function_id == id || f.logical_id == id || f.function_name == id)
        .collect();
    matches.sort_by_key(|f| f.full_path.to_lowercase());
    match matches.as_slice() {
        [] => Err(IdentifierError::NotFound {
            id,
            available: available(),
        }),
        [only] => Ok(only),
        [first, ..] => {
            let mut message = format!(
                "Multiple functions found with keyword {id}! Function {} will be invoked! If it's not the function you are going to invoke, please choose one of them from below:",
                first.full_path
            );
            for f in &matches {
                message.push('\n');
                message.push_str(&f.full_path);
            }
            tracing::warn!("{message}");
            Ok(first)
        }
    }
}

/// `['A', 'Child/B']`, as SAM prints Python lists.
fn python_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_identifier_normalization() {
        let n = |s: &str| normalize_identifier(s).map_err(|e| e.to_string());
        assert_eq!(n("HelloFunction").unwrap(), "HelloFunction");
        assert_eq!(n("Child/HelloFunction").unwrap(), "Child/HelloFunction");
        assert_eq!(
            n("arn:aws:lambda:us-east-1:123456789012:function:my-fn").unwrap(),
            "my-fn"
        );
        assert_eq!(
            n("arn:aws:lambda:us-east-1:123456789012:function:my-fn:prod").unwrap(),
            "my-fn"
        );
        assert_eq!(n("123456789012:function:my-fn").unwrap(), "my-fn");
        assert_eq!(n("my-fn:live").unwrap(), "my-fn");
        assert_eq!(
            n("Child/arn:aws:lambda:us-east-1:123456789012:function:x").unwrap(),
            "Child/x"
        );
        assert!(
            n("arn:aws:s3:::bucket")
                .unwrap_err()
                .contains("failed to satisfy constraint")
        );
        assert!(n("has space").is_err());
        assert!(n("arn:aws:lambda").is_err());
    }
}
