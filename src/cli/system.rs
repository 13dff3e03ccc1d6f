//! `lamina system check`: prints the host report (`system_check`) on stdout and exits 1 when
//! functions cannot run here.

use std::io::Write;

use crate::system_check;

pub fn check(json: bool, env: &dyn Fn(&str) -> Option<String>) -> u8 {
    let report = system_check::gather(env);
    let text = if json {
        let mut text = serde_json::to_string_pretty(&report).expect("the report serialises");
        text.push('\n');
        text
    } else {
        report.render()
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`lamina system check | head`) is not an error.
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            super::invoke::fail(&format!("cannot write to standard output: {err}"))
        }
        _ => report.exit_code(),
    }
}
