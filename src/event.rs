//! The invoke payload: `-e FILE`, `-e -` (standard input) or, with neither, exactly `{}`.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The event when none is given. Standard input is never read then, TTY or not (as SAM).
pub const DEFAULT_EVENT: &str = "{}";

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("cannot read event file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event {origin} is not valid UTF-8 (at byte {offset})")]
    NotUtf8 { origin: String, offset: usize },
}

/// Reads the event. The text is not checked to be JSON (SAM posts it verbatim); line endings are
/// normalised to `\n`, as Python's text mode does when SAM reads it.
pub fn read(event: Option<&Path>, stdin: &mut dyn Read) -> Result<String, EventError> {
    let (bytes, origin) = match event {
        None => return Ok(DEFAULT_EVENT.to_string()),
        Some(path) if path == Path::new("-") => {
            tracing::info!(
                "Reading invoke payload from stdin (you can also pass it from file with --event)"
            );
            let mut bytes = Vec::new();
            stdin
                .read_to_end(&mut bytes)
                .map_err(|source| EventError::Read {
                    path: PathBuf::from("<stdin>"),
                    source,
                })?;
            (bytes, "from standard input".to_string())
        }
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| EventError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            (bytes, format!("file {}", path.display()))
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| EventError::NotUtf8 {
        origin,
        offset: e.utf8_error().valid_up_to(),
    })?;
    Ok(universal_newlines(&text))
}

/// `\r\n` and lone `\r` become `\n`.
fn universal_newlines(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_string();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_event_sources() {
        let mut empty: &[u8] = b"never read";
        assert_eq!(read(None, &mut empty).unwrap(), "{}");
        let mut stdin: &[u8] = b"{\"a\":\r\n1}";
        assert_eq!(
            read(Some(Path::new("-")), &mut stdin).unwrap(),
            "{\"a\":\n1}"
        );
        let err = read(Some(Path::new("/nonexistent/event.json")), &mut empty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/event.json"), "{err}");
        let mut bad: &[u8] = b"{\xff}";
        assert!(
            read(Some(Path::new("-")), &mut bad)
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
    }
}
