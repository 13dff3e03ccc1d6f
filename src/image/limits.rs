//! Limits on what an image can make lamina read, hold in memory or write, so that a hostile or
//! broken image ends with a one-line error instead of filling the disk or the memory:
//!
//! - the unpacked size of an image: every byte of its uncompressed layer tars (file contents and
//!   the 512-byte header of each entry, which is how Lambda counts its 10 GB container-image
//!   limit), `LAMINA_MAX_IMAGE_BYTES`;
//! - the number of entries (files, directories, links) an image creates, because the unpacker
//!   remembers every directory until the last layer is applied;
//! - the tar metadata (PAX records, GNU long names) before one entry, which the `tar` crate reads
//!   into memory whole;
//! - manifests, indexes and configs, read into memory: a few MiB at most;
//! - every blob against the size its descriptor declares, checked while the bytes pass, so an
//!   endless blob stops one byte after the declared size.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use super::ImageError;
use crate::env_vars;

/// Lambda's limit on a container image, uncompressed (10 GB).
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// Manifests, image indexes and image configs are a few KiB; these are read whole into memory.
pub const MAX_METADATA_BYTES: u64 = 4 * 1024 * 1024;
/// Files, directories and links of one image, all layers together. The largest Lambda images
/// (ML frameworks with CUDA) have a few hundred thousand.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// PAX records and GNU long names before one tar entry (a path is at most 4 KiB, xattrs a few).
pub const MAX_HEADER_BYTES: u64 = 1024 * 1024;
/// Memory for what the unpacker remembers of the directories it made (their paths, modes and
/// times, applied after the last layer): with [`MAX_ENTRIES`], what bounds the unpack's memory
/// whatever the names' lengths. Real images need a few MiB.
pub const MAX_TRACKED_BYTES: u64 = 32 * 1024 * 1024;

/// The limits one unpack works under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_image_bytes: u64,
    pub max_entries: u64,
    pub max_tracked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            max_entries: MAX_ENTRIES,
            max_tracked_bytes: MAX_TRACKED_BYTES,
        }
    }
}

impl Limits {
    /// The defaults, with `LAMINA_MAX_IMAGE_BYTES` (a whole number of bytes) when it is set.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Limits, ImageError> {
        let mut limits = Limits::default();
        if let Some(text) = env(env_vars::LAMINA_MAX_IMAGE_BYTES).filter(|t| !t.is_empty()) {
            limits.max_image_bytes = text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ImageError::Settings {
                    source_name: env_vars::LAMINA_MAX_IMAGE_BYTES.into(),
                    message: format!(
                        "`{text}` is not a number of bytes (e.g. {DEFAULT_MAX_IMAGE_BYTES}, the default)"
                    ),
                })?;
        }
        Ok(limits)
    }

    /// The most compressed layer bytes an image within the limit can need: compression can grow
    /// incompressible data a little, never by 1/64.
    pub fn max_download_bytes(&self) -> u64 {
        self.max_image_bytes
            .saturating_add(self.max_image_bytes / 64)
            .saturating_add(1024 * 1024)
    }
}

/// Which limit an unpack ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    #[error(
        "the image unpacks to more than {limit} bytes (the limit, LAMINA_MAX_IMAGE_BYTES; Lambda's is {DEFAULT_MAX_IMAGE_BYTES})"
    )]
    ImageBytes { limit: u64 },
    #[error("the image has more than {limit} files, directories and links (lamina's limit)")]
    Entries { limit: u64 },
    #[error("more than {limit} bytes of tar metadata before one entry (lamina's limit)")]
    HeaderBytes { limit: u64 },
    #[error(
        "the image's directories take more than {limit} bytes to keep track of while unpacking (lamina's limit: too many, or too long names)"
    )]
    TrackedBytes { limit: u64 },
}

/// What the layers of one image have used of its limits. Shared (`Rc`) between the unpacker and
/// the reader under its tar parser; the first limit crossed is remembered, so whatever error the
/// tar parser makes of it, the unpacker reports the limit.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    bytes: Cell<u64>,
    entries: Cell<u64>,
    tracked: Cell<u64>,
    /// Bytes read since the current entry's content was finished: headers and their extensions.
    header_bytes: Cell<u64>,
    in_content: Cell<bool>,
    exceeded: Cell<Option<Exceeded>>,
}

impl Budget {
    pub fn new(limits: Limits) -> Rc<Budget> {
        Rc::new(Budget {
            limits,
            bytes: Cell::new(0),
            entries: Cell::new(0),
            tracked: Cell::new(0),
            header_bytes: Cell::new(0),
            in_content: Cell::new(false),
            exceeded: Cell::new(None),
        })
    }

    /// Bytes of uncompressed layer read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// The limit crossed, if one was.
    pub fn exceeded(&self) -> Option<Exceeded> {
        self.exceeded.get()
    }

    fn fail(&self, exceeded: Exceeded) -> Exceeded {
        if self.exceeded.get().is_none() {
            self.exceeded.set(Some(exceeded));
        }
        exceeded
    }

    /// One more file, directory or link.
    pub fn charge_entry(&self) -> Result<(), Exceeded> {
        let entries = self.entries.get() + 1;
        self.entries.set(entries);
        if entries > self.limits.max_entries {
            return Err(self.fail(Exceeded::Entries {
                limit: self.limits.max_entries,
            }));
        }
        Ok(())
    }

    /// `bytes` more of memory to remember a directory by.
    pub fn charge_memory(&self, bytes: u64) -> Result<(), Exceeded> {
        let tracked = self.tracked.get().saturating_add(bytes);
        self.tracked.set(tracked);
        if tracked > self.limits.max_tracked_bytes {
            return Err(self.fail(Exceeded::TrackedBytes {
                limit: self.limits.max_tracked_bytes,
            }));
        }
        Ok(())
    }

    /// The tar parser yielded an entry: what follows is its content until [`Budget::content_done`].
    pub fn content_started(&self) {
        self.in_content.set(true);
    }

    /// The entry's content is consumed; the next reads are headers again.
    pub fn content_done(&self) {
        self.in_content.set(false);
        self.header_bytes.set(0);
    }

    fn charge_read(&self, n: u64) -> Result<(), Exceeded> {
        let bytes = self.bytes.get().saturating_add(n);
        self.bytes.set(bytes);
        if bytes > self.limits.max_image_bytes {
            return Err(self.fail(Exceeded::ImageBytes {
                limit: self.limits.max_image_bytes,
            }));
        }
        if !self.in_content.get() {
            let header = self.header_bytes.get().saturating_add(n);
            self.header_bytes.set(header);
            if header > MAX_HEADER_BYTES {
                return Err(self.fail(Exceeded::HeaderBytes {
                    limit: MAX_HEADER_BYTES,
                }));
            }
        }
        Ok(())
    }
}

/// A reader of an uncompressed layer that charges every byte to the image's [`Budget`].
pub struct Metered<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R> Metered<R> {
    pub fn new(inner: R, budget: Rc<Budget>) -> Metered<R> {
        Metered { inner, budget }
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.budget
            .charge_read(n as u64)
            .map_err(io::Error::other)?;
        Ok(n)
    }
}

/// Checks the bytes of a blob against the size its descriptor declares, as they pass.
#[derive(Debug)]
pub struct DeclaredSize {
    declared: u64,
    seen: u64,
}

impl DeclaredSize {
    /// `declared` is the descriptor's `size`; a negative one can match no blob.
    pub fn new(declared: i64) -> Result<DeclaredSize, String> {
        u64::try_from(declared)
            .map(|declared| DeclaredSize { declared, seen: 0 })
            .map_err(|_| format!("its descriptor declares a negative size ({declared})"))
    }

    pub fn declared(&self) -> u64 {
        self.declared
    }

    /// `n` more bytes arrived; an error as soon as they pass the declared size.
    pub fn pass(&mut self, n: usize) -> Result<(), String> {
        self.seen = self.seen.saturating_add(n as u64);
        if self.seen > self.declared {
            return Err(format!(
                "is larger than the {} bytes its descriptor declares",
                self.declared
            ));
        }
        Ok(())
    }

    /// The blob ended: an error when it is shorter than declared.
    pub fn finish(&self) -> Result<(), String> {
        if self.seen < self.declared {
            return Err(format!(
                "has {} bytes, but its descriptor declares {}",
                self.seen, self.declared
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_bytes_and_header_bytes_are_charged_as_read() {
        let budget = Budget::new(Limits {
            max_image_bytes: 3 * 1024 * 1024,
            max_entries: 2,
            ..Limits::default()
        });
        // Headers: more than MAX_HEADER_BYTES without an entry's content in between.
        let mut headers = Metered::new(io::repeat(0).take(2 * MAX_HEADER_BYTES), budget.clone());
        let err = io::copy(&mut headers, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("tar metadata"), "{err}");
        assert_eq!(
            budget.exceeded(),
            Some(Exceeded::HeaderBytes {
                limit: MAX_HEADER_BYTES
            })
        );

        let budget = Budget::new(Limits {
            max_image_bytes: 3 * 1024 * 1024,
            max_entries: 2,
            ..Limits::default()
        });
        budget.content_started();
        let mut content = Metered::new(io::repeat(0).take(2 * 1024 * 1024), budget.clone());
        io::copy(&mut content, &mut io::sink()).unwrap();
        budget.content_done();
        assert_eq!(budget.bytes(), 2 * 1024 * 1024);
        budget.content_started();
        let mut more = Metered::new(io::repeat(0), budget.clone());
        let err = io::copy(&mut more, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("LAMINA_MAX_IMAGE_BYTES"), "{err}");
        assert!(budget.bytes() > 3 * 1024 * 1024 && budget.bytes() < 4 * 1024 * 1024);

        assert!(budget.charge_entry().is_ok() && budget.charge_entry().is_ok());
        // The first limit crossed is the one reported.
        assert!(budget.charge_entry().is_err());
        assert!(matches!(
            budget.exceeded(),
            Some(Exceeded::ImageBytes { .. })
        ));
    }

    #[test]
    fn declared_size_is_checked_as_bytes_pass() {
        let mut size = DeclaredSize::new(10).unwrap();
        size.pass(4).unwrap();
        assert!(size.finish().unwrap_err().contains("has 4 bytes"));
        size.pass(6).unwrap();
        size.finish().unwrap();
        assert!(
            size.pass(1)
                .unwrap_err()
                .contains("larger than the 10 bytes")
        );
        assert!(DeclaredSize::new(-1).is_err());
    }

    #[test]
    fn limits_from_the_environment() {
        let none = |_: &str| None;
        assert_eq!(Limits::from_env(&none).unwrap(), Limits::default());
        let set = |_: &str| Some("1000".to_string());
        assert_eq!(Limits::from_env(&set).unwrap().max_image_bytes, 1000);
        for bad in ["10G", "-1", "0", "lots"] {
            let env = |_: &str| Some(bad.to_string());
            let err = Limits::from_env(&env).unwrap_err().to_string();
            assert!(
                err.starts_with("LAMINA_MAX_IMAGE_BYTES: `") && err.contains("not a number"),
                "{err}"
            );
        }
    }
}
