//! Integration tests: the `lamina` binary run on real project directories.

mod bad_input;
mod cli;
mod emulator;
mod environment;
mod events;
mod images;
mod samconfig;
mod sandbox;
mod system;
mod templates;
mod util;
