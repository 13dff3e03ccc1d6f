//! Integration tests: the `lamina` binary run on real project directories.

mod bad_input;
mod cli;
mod emulator;
mod environment;
mod events;
mod image_cache;
mod image_limits;
mod images;
mod oci;
mod samconfig;
mod sandbox;
mod system;
mod templates;
mod util;
