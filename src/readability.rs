//! Files that work here but may fail in AWS: Lambda runs the function as an unprivileged user
//! (`sbx_user1051`) that owns none of the deployed files, so each file needs the "others" read bit
//! and each directory the "others" read and search bits. lamina's sandbox runs the function as
//! root, so it would not notice; this check warns instead. A zip is deployed with its modes as
//! they are; a directory is zipped by the deploying tool, and `sam deploy`/`sam package` add the
//! read bits then (other tools may not), so for directories the warning says so.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Directories with more entries than this are checked only that far (the check runs every invoke).
const MAX_ENTRIES: usize = 5_000;
/// How many offending paths a warning names.
const SHOWN: usize = 3;

/// Entries under `root` that Lambda's sandbox user could not read, with their modes (at most
/// `MAX_ENTRIES` entries are looked at).
pub fn unreadable(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut seen = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return found;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o7777;
            let needed = if meta.is_dir() {
                0o005
            } else if meta.is_file() {
                0o004
            } else {
                continue;
            };
            if mode & needed != needed {
                found.push((entry.path(), mode));
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    found
}

/// Warns (one line) when `root`, the code or a layer of the function, has entries Lambda could not
/// read. `from_zip`: `root` was unpacked from a zip that is deployed as it is.
pub fn warn_unreadable(what: &str, root: &Path, from_zip: Option<&Path>) {
    let mut found = unreadable(root);
    if found.is_empty() {
        return;
    }
    found.sort();
    let shown: Vec<String> = found
        .iter()
        .take(SHOWN)
        .map(|(path, mode)| {
            format!(
                "{} ({mode:04o})",
                path.strip_prefix(root).unwrap_or(path).display()
            )
        })
        .collect();
    let more = found.len().saturating_sub(SHOWN);
    let count = if found.len() == 1 {
        "1 entry".to_string()
    } else {
        format!("{} entries", found.len())
    };
    let list = format!(
        "{}{}",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    match from_zip {
        Some(zip) => tracing::warn!(
            "Warning: {count} in {what} {} cannot be read by the user Lambda runs functions as: {list}; it works here (as root) but fails in AWS (fix the modes in the zip, e.g. chmod -R o+rX before zipping)",
            zip.display()
        ),
        None => tracing::warn!(
            "Warning: {count} in {what} {} cannot be read by the user Lambda runs functions as: {list}; it works here (as root), and in AWS only if your packaging adds read permission as sam deploy does (fix: chmod -R o+rX {})",
            root.display(),
            root.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn finds_files_and_dirs_others_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("ok.py"), "").unwrap();
        std::fs::write(root.join("secret.py"), "").unwrap();
        std::fs::create_dir(root.join("pkg")).unwrap();
        std::fs::write(root.join("pkg/inner.py"), "").unwrap();
        std::fs::create_dir(root.join("closed")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", root.join("link")).unwrap();
        chmod(&root.join("ok.py"), 0o644);
        chmod(&root.join("secret.py"), 0o600);
        chmod(&root.join("pkg/inner.py"), 0o640);
        chmod(&root.join("closed"), 0o750);
        let mut found = unreadable(root);
        found.sort();
        assert_eq!(
            found,
            vec![
                (root.join("closed"), 0o750),
                (root.join("pkg/inner.py"), 0o640),
                (root.join("secret.py"), 0o600),
            ]
        );
    }
}
