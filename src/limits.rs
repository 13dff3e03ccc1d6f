//! The limits lamina puts on what it reads, in one place: each input is bounded so that a hostile or
//! broken file (a "billion laughs" YAML, a zip bomb, an endless stdin) ends in a one-line error
//! instead of filling memory, the disk or the stack. Where Lambda or CloudFormation has a limit we
//! use theirs, with their wording; elsewhere the value is far above anything real. README.md
//! ("Limits") lists them for users.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

/// Template, samconfig, parameter and `--env-vars` files: 10 MiB. CloudFormation takes at most
/// 1 MB from S3 (51,200 bytes inline), so every deployable template fits ten times over, with room
/// for comments and local-only snippets; the cap keeps `-t /dev/zero` or a FIFO from being held.
pub const MAX_TEXT_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// Nesting of YAML, JSON and TOML documents: 128 levels, in every syntax (block and flow YAML,
/// JSON, TOML; after `AWS::Include` snippets are spliced in). serde_json refuses 128 levels by
/// itself (such JSON is then read by the YAML loader, which names this limit), serde_yaml stops at
/// 128 too, PyYAML at about 450 (Python's recursion limit); real templates stay under 30 (Step
/// Functions definitions are the deepest). The loaders and the walkers over templates recurse
/// per level: the deepest, the YAML loader, takes 5-8 KiB a level in a debug build (under 1 MiB
/// at the limit, measured), so even a 2 MiB thread has room; lamina parses on its main thread.
pub const MAX_DEPTH: usize = 128;

/// What YAML anchors and aliases may copy, in nodes: PyYAML shares an aliased node, lamina's
/// loader copies it, so a "billion laughs" document (nine aliases of nine aliases ...) would
/// grow without bound. 100,000 nodes is far above real templates (a block of tens of nodes
/// shared a few dozen times) and keeps a refused document in tens of MB.
pub const MAX_ALIAS_NODES: u64 = 100_000;

/// What YAML anchors and aliases may copy, in bytes of text (a long string aliased many times):
/// as much as a whole template may hold.
pub const MAX_ALIAS_BYTES: u64 = MAX_TEXT_FILE_BYTES;

/// The event: Lambda's limit for a synchronous invoke's payload (6 MB).
pub const MAX_EVENT_BYTES: u64 = 6_291_456;

/// AWS's words for an event over [`MAX_EVENT_BYTES`].
pub const EVENT_TOO_LARGE: &str =
    "Request must be smaller than 6291456 bytes for the InvokeFunction operation";

/// A function's zip code and its layers, unzipped, together: Lambda's 250 MB.
pub const MAX_UNZIPPED_BYTES: u64 = 262_144_000;

/// AWS's words for code and layers over [`MAX_UNZIPPED_BYTES`].
pub const UNZIPPED_TOO_LARGE: &str = "Unzipped size must be smaller than 262144000 bytes";

/// Why [`read_text_file`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the file is larger than {limit} bytes (lamina's limit)")]
    TooLarge { limit: u64 },
    #[error("the file is not valid UTF-8 (at byte {0})")]
    NotUtf8(usize),
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads a text file of at most [`MAX_TEXT_FILE_BYTES`]; never more than one byte past the limit
/// is read, so an endless file (a FIFO, `/dev/zero`) ends in an error too.
pub fn read_text_file(path: &Path) -> Result<String, ReadError> {
    let file = fs_err::File::open(path)?;
    let bytes = read_capped(file, MAX_TEXT_FILE_BYTES)?.ok_or(ReadError::TooLarge {
        limit: MAX_TEXT_FILE_BYTES,
    })?;
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8(e.utf8_error().valid_up_to()))
}

/// All of `reader` when it holds at most `limit` bytes, else `None` (having read `limit + 1`).
pub fn read_capped(reader: impl Read, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// How deep `value` nests (a scalar is 0, `[]` is 1), without recursion: it is used on values
/// that may be deeper than the recursive walkers can take.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0usize)];
    while let Some((value, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        pending.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// [`depth`] of a mapping.
pub fn map_depth(map: &serde_json::Map<String, Value>) -> usize {
    1 + map.values().map(depth).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_limits_depth() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!([])), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": []}], "c": 2})), 4);
        let mut deep = json!(0);
        for _ in 0..10_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(depth(&deep), 10_000);
        // Dropping it would recurse 10,000 levels: take it apart from the outside instead.
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or_default();
        }
    }

    #[test]
    fn test_limits_read_capped() {
        assert_eq!(read_capped(&b"abc"[..], 3).unwrap(), Some(b"abc".to_vec()));
        assert_eq!(read_capped(&b"abcd"[..], 3).unwrap(), None);
        // An endless reader is not held: one byte past the limit is all that is read.
        assert_eq!(read_capped(std::io::repeat(0), 1000).unwrap(), None);
    }

    #[test]
    fn test_limits_read_text_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        fs_err::write(&path, "a: 1\n").unwrap();
        assert_eq!(read_text_file(&path).unwrap(), "a: 1\n");
        assert!(
            read_text_file(&dir.path().join("missing"))
                .unwrap_err()
                .is_not_found()
        );
        let err = read_text_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the file is larger than 10485760 bytes (lamina's limit)"
        );
        fs_err::write(&path, b"a: \xff\n").unwrap();
        assert!(
            read_text_file(&path)
                .unwrap_err()
                .to_string()
                .contains("UTF-8 (at byte 3)")
        );
    }
}
