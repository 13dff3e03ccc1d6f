//! The invoke payload: `-e FILE`, `-e -` (standard input) or, with neither, exactly `{}`.
//!
//! Lambda refuses a synchronous payload over 6 MB ([`limits::MAX_EVENT_BYTES`]); so does lamina,
//! with AWS's words, and it reads no more than that (and one chunk) of an endless stdin.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::limits;

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
    #[error("event {origin} is too large: {}", limits::EVENT_TOO_LARGE)]
    TooLarge { origin: String },
}

/// Reads the event. The text is not checked to be JSON (SAM posts it verbatim); line endings are
/// normalised to `\n`, as Python's text mode does when SAM reads it. The size limit applies to
/// what is posted, after that.
pub fn read(event: Option<&Path>, stdin: &mut dyn Read) -> Result<String, EventError> {
    let (bytes, origin) = match event {
        None => return Ok(DEFAULT_EVENT.to_string()),
        Some(path) if path == Path::new("-") => {
            tracing::info!(
                "Reading invoke payload from stdin (you can also pass it from file with --event)"
            );
            let origin = "from standard input".to_string();
            let bytes = read_normalized(stdin).map_err(|source| EventError::Read {
                path: PathBuf::from("<stdin>"),
                source,
            })?;
            (bytes, origin)
        }
        Some(path) => {
            let read_error = |source| EventError::Read {
                path: path.to_path_buf(),
                source,
            };
            let mut file = std::fs::File::open(path).map_err(read_error)?;
            let bytes = read_normalized(&mut file).map_err(read_error)?;
            (bytes, format!("file {}", path.display()))
        }
    };
    let Some(bytes) = bytes else {
        return Err(EventError::TooLarge { origin });
    };
    String::from_utf8(bytes).map_err(|e| EventError::NotUtf8 {
        origin,
        offset: e.utf8_error().valid_up_to(),
    })
}

/// All of `reader` with `\r\n` and lone `\r` turned into `\n`, or `None` as soon as that is
/// more than [`limits::MAX_EVENT_BYTES`].
fn read_normalized(reader: &mut dyn Read) -> std::io::Result<Option<Vec<u8>>> {
    let limit = limits::MAX_EVENT_BYTES as usize;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // A `\r` that ended the previous chunk: a `\n` starting this one belongs to it.
    let mut after_cr = false;
    loop {
        let read = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        for &byte in &chunk[..read] {
            match byte {
                b'\n' if after_cr => {}
                b'\r' => out.push(b'\n'),
                other => out.push(other),
            }
            after_cr = byte == b'\r';
        }
        if out.len() > limit {
            return Ok(None);
        }
    }
    Ok(Some(out))
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

    #[test]
    fn test_event_newlines_across_chunks() {
        // 64 KiB chunks: a `\r\n` split between two reads is still one newline.
        let mut text = vec![b'x'; 64 * 1024 - 1];
        text.extend_from_slice(b"\r\ny\rz\r");
        let got = read_normalized(&mut &text[..]).unwrap().unwrap();
        assert_eq!(&got[64 * 1024 - 1..], b"\ny\nz\n");
    }

    #[test]
    fn test_event_size_limit() {
        let limit = limits::MAX_EVENT_BYTES as usize;
        let mut exactly = vec![b' '; limit];
        assert_eq!(
            read_normalized(&mut &exactly[..]).unwrap().unwrap().len(),
            limit
        );
        // What counts is what is posted: `\r\n` is one byte then.
        exactly.extend_from_slice(b"\r\n");
        exactly.truncate(limit + 1);
        exactly[limit - 1] = b'\r';
        exactly[limit] = b'\n';
        assert_eq!(
            read_normalized(&mut &exactly[..]).unwrap().unwrap().len(),
            limit
        );
        exactly.push(b' ');
        assert!(read_normalized(&mut &exactly[..]).unwrap().is_none());
        // An endless stdin: refused after the limit, not held.
        let err = read(Some(Path::new("-")), &mut std::io::repeat(b'a'))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "event from standard input is too large: Request must be smaller than 6291456 bytes for the InvokeFunction operation"
        );
    }
}
