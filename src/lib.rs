//! lamina: a daemonless, rootless `sam local invoke`.
//!
//! One invoke, end to end:
//! 1. `cli` parses the command line (with samconfig defaults, `samconfig`) into `InvokeArgs`;
//! 2. `plan` reads the template (`template`, `yaml`), event (`event`) and env files (`environment`,
//!    `params`) and decides everything about the run: the function, its runtime image (`runtimes`),
//!    code, layers, environment, debug settings (`debug`) — `--dry-run` prints this plan;
//! 3. `run` gets the image (`image`: registry, verified blobs, rootfs cache), the code and layers
//!    (`artifacts`; layers published in AWS through `remote_layers`, with the region and credentials
//!    of `aws`), creates the sandbox (`sandbox`: OCI spec, libcontainer, the Runtime API hook,
//!    rootless, network, debug ports), serves the Runtime API (`emulator`) and turns what the runtime
//!    does into SAM's output and lamina's exit codes (`invoke`).
//!
//! `system_check` (`lamina system check`) reports which of the sandbox's needs this host meets.

pub mod artifacts;
pub mod aws;
pub mod cli;
pub mod debug;
pub mod emulator;
pub mod env_vars;
pub mod environment;
pub mod event;
pub mod image;
pub mod invoke;
pub mod limits;
pub mod params;
pub mod paths;
pub mod plan;
pub mod process;
pub mod readability;
pub mod remote_layers;
pub mod run;
pub mod runtimes;
pub mod samconfig;
pub mod sandbox;
pub mod signals;
pub mod system_check;
pub mod template;
pub mod yaml;

/// Process exit codes. SAM exits 0 when the function fails; lamina tells the outcomes apart.
pub mod exit {
    /// The function succeeded.
    pub const SUCCESS: u8 = 0;
    /// lamina could not run the function: bad template, file, image, ...
    pub const LAMINA_ERROR: u8 = 1;
    /// Usage error: unknown option, malformed value.
    pub const USAGE: u8 = 2;
    /// The function returned an error (handled, unhandled, init error, runtime crash).
    pub const FUNCTION_ERROR: u8 = 3;
    /// The function timed out.
    pub const TIMEOUT: u8 = 4;
    /// The function ran out of memory.
    pub const OUT_OF_MEMORY: u8 = 5;
    /// Interrupted with Ctrl-C (SIGTERM and SIGHUP exit 143 and 129: 128 + the signal, see `signals`).
    pub const INTERRUPTED: u8 = 130;
}
