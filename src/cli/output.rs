//! What the user sees while lamina works: progress bars for pulls (only on a terminal) and
//! human-readable sizes and ages.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::image::Reporter;

/// One progress line per blob on stderr when it is a terminal; silent otherwise (messages still
/// go to the log).
pub struct ProgressReporter {
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
}

impl ProgressReporter {
    pub fn new() -> ProgressReporter {
        let bars = std::io::stderr().is_terminal().then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Mutex::new(HashMap::new()),
            )
        });
        ProgressReporter { bars }
    }
}

impl Default for ProgressReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for ProgressReporter {
    fn blob_started(&self, digest: &str, size: u64) {
        let Some((multi, bars)) = &self.bars else {
            return;
        };
        let bar = multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(short_digest(digest).to_string());
        bars.lock()
            .expect("bars lock")
            .insert(digest.to_string(), bar);
    }

    fn blob_progress(&self, digest: &str, bytes: u64) {
        if let Some((_, bars)) = &self.bars
            && let Some(bar) = bars.lock().expect("bars lock").get(digest)
        {
            bar.inc(bytes);
        }
    }

    fn blob_finished(&self, digest: &str) {
        if let Some((_, bars)) = &self.bars
            && let Some(bar) = bars.lock().expect("bars lock").get(digest)
        {
            bar.finish();
        }
    }

    fn message(&self, text: &str) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            None => tracing::info!("{text}"),
        }
    }
}

/// `sha256:0123456789ab...` -> `0123456789ab`.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// Bytes as `12.3 MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds ago as `5 minutes ago`.
pub fn human_age(seconds: u64) -> String {
    match seconds {
        0..60 => "just now".into(),
        60..3600 => format!("{} minutes ago", seconds / 60),
        3600..86400 => format!("{} hours ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86400),
    }
}
