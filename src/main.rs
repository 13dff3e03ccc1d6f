use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(lamina::cli::invoke::main(std::env::args_os().collect()))
}
