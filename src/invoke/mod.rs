//! One invocation, from the runtime's point of view: wait for what it does through the Runtime API
//! (or for its process to end, or for the clock), decide the outcome, and present it as SAM does:
//! the result on stdout, START/END/REPORT on stderr, and an exit code that tells outcomes apart.

pub mod pyjson;
pub mod rie;

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::emulator::RuntimeEvent;
use crate::exit;

/// How an invocation ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Success {
        body: Bytes,
        content_type: Option<String>,
    },
    /// The runtime posted `/error` (handled or unhandled).
    FunctionError {
        body: Bytes,
        error_type: Option<String>,
    },
    /// The runtime posted `/init/error`.
    InitError {
        body: Bytes,
        error_type: Option<String>,
    },
    /// The runtime's process ended without answering (`exit status 7`, `signal: killed`).
    RuntimeExit {
        status: String,
    },
    Timeout,
    OutOfMemory,
    ResponseTooLarge,
}

/// Time limits. `None` means no limit (debug mode, as SAM).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Lambda gives init its own limit (10 s, or the function timeout when that is longer).
    pub init: Option<Duration>,
    pub invoke: Option<Duration>,
}

impl Limits {
    pub fn for_function(timeout: Duration, debugging: bool) -> Limits {
        if debugging {
            return Limits {
                init: None,
                invoke: None,
            };
        }
        Limits {
            init: Some(timeout.max(Duration::from_secs(10))),
            invoke: Some(timeout),
        }
    }
}

/// The outcome with the times the REPORT line needs.
#[derive(Debug, Clone)]
pub struct Finished {
    pub outcome: Outcome,
    /// From the runtime's start to its first `/next`.
    pub init: Option<Duration>,
    /// From the event's delivery to the answer (or the end).
    pub duration: Duration,
    /// When the event was delivered (START is printed then).
    pub delivered: bool,
}

/// Waits for the invocation to end. `exited` resolves with a description of how the runtime's
/// process ended (`exit status 7`); `on_start` runs when the event is delivered (to print START).
pub async fn drive(
    mut events: mpsc::UnboundedReceiver<RuntimeEvent>,
    exited: impl Future<Output = String>,
    started: Instant,
    limits: Limits,
    mut on_start: impl FnMut(),
) -> Finished {
    tokio::pin!(exited);
    let mut delivered_at: Option<Instant> = None;
    let finish = |outcome, delivered_at: Option<Instant>, end: Instant| Finished {
        outcome,
        init: delivered_at.map(|d| d - started),
        duration: delivered_at.map_or(Duration::ZERO, |d| end.saturating_duration_since(d)),
        delivered: delivered_at.is_some(),
    };
    loop {
        let deadline = match delivered_at {
            None => limits.init.map(|l| started + l),
            Some(at) => limits.invoke.map(|l| at + l),
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = events.recv() => match event {
                Some(RuntimeEvent::EventDelivered(at)) if delivered_at.is_none() => {
                    delivered_at = Some(at);
                    on_start();
                }
                Some(RuntimeEvent::EventDelivered(_)) => {}
                Some(RuntimeEvent::Response { body, content_type, at }) => {
                    return finish(Outcome::Success { body, content_type }, delivered_at, at);
                }
                Some(RuntimeEvent::Error { body, error_type, at }) => {
                    return finish(Outcome::FunctionError { body, error_type }, delivered_at, at);
                }
                Some(RuntimeEvent::InitError { body, error_type, at }) => {
                    return finish(Outcome::InitError { body, error_type }, delivered_at, at);
                }
                Some(RuntimeEvent::ResponseTooLarge { at }) => {
                    return finish(Outcome::ResponseTooLarge, delivered_at, at);
                }
                None => {}
            },
            status = &mut exited => {
                // Events sent just before the exit still count.
                while let Ok(event) = events.try_recv() {
                    match event {
                        RuntimeEvent::Response { body, content_type, at } => return finish(Outcome::Success { body, content_type }, delivered_at, at),
                        RuntimeEvent::Error { body, error_type, at } => return finish(Outcome::FunctionError { body, error_type }, delivered_at, at),
                        RuntimeEvent::InitError { body, error_type, at } => return finish(Outcome::InitError { body, error_type }, delivered_at, at),
                        RuntimeEvent::EventDelivered(at) => delivered_at = delivered_at.or(Some(at)),
                        RuntimeEvent::ResponseTooLarge { at } => return finish(Outcome::ResponseTooLarge, delivered_at, at),
                    }
                }
                return finish(Outcome::RuntimeExit { status }, delivered_at, Instant::now());
            }
            () = sleep => {
                let end = Instant::now();
                let mut finished = finish(Outcome::Timeout, delivered_at, end);
                if let (Some(limit), true) = (limits.invoke, finished.delivered) {
                    finished.duration = limit;
                }
                return finished;
            }
        }
    }
}

/// What the user sees of an outcome.
pub struct Presentation {
    /// Exactly what goes to stdout (no trailing newline, as SAM).
    pub stdout: Vec<u8>,
    pub exit_code: u8,
}

/// Formats the outcome as SAM prints a response (§9.3), and Lambda-style error bodies where SAM
/// would print nothing useful (timeouts, crashes).
pub fn present(outcome: &Outcome, request_id: &str, timeout: Duration) -> Presentation {
    let lambda_error = |error_type: &str, message: String| -> Vec<u8> {
        let body =
            serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string();
        pyjson::dumps(&body).unwrap_or(body).into_bytes()
    };
    match outcome {
        Outcome::Success { body, content_type } => Presentation {
            stdout: format_body(body, content_type.as_deref()),
            exit_code: exit::SUCCESS,
        },
        Outcome::FunctionError { body, .. } | Outcome::InitError { body, .. } => Presentation {
            stdout: format_body(body, None),
            exit_code: exit::FUNCTION_ERROR,
        },
        Outcome::RuntimeExit { status } => Presentation {
            stdout: lambda_error(
                "Runtime.ExitError",
                format!("RequestId: {request_id} Error: Runtime exited with error: {status}"),
            ),
            exit_code: exit::FUNCTION_ERROR,
        },
        Outcome::Timeout => Presentation {
            stdout: lambda_error(
                "Sandbox.Timedout",
                format!(
                    "RequestId: {request_id} Error: Task timed out after {}.00 seconds",
                    timeout.as_secs()
                ),
            ),
            exit_code: exit::TIMEOUT,
        },
        Outcome::OutOfMemory => Presentation {
            stdout: lambda_error(
                "Runtime.OutOfMemory",
                format!("RequestId: {request_id} Error: Runtime exited with error: signal: killed"),
            ),
            exit_code: exit::OUT_OF_MEMORY,
        },
        Outcome::ResponseTooLarge => Presentation {
            stdout: lambda_error(
                "Function.ResponseSizeTooLarge",
                format!(
                    "Response payload size exceeded maximum allowed payload size ({} bytes).",
                    crate::emulator::MAX_RESPONSE_BYTES
                ),
            ),
            exit_code: exit::FUNCTION_ERROR,
        },
    }
}

/// SAM's rules: image content types raw; JSON re-serialised like Python; anything else as text.
fn format_body(body: &[u8], content_type: Option<&str>) -> Vec<u8> {
    if content_type.is_some_and(|c| c.contains("image")) {
        return body.to_vec();
    }
    let text = String::from_utf8_lossy(body);
    match pyjson::dumps(&text) {
        Some(json) => json.into_bytes(),
        None => text.into_owned().into_bytes(),
    }
}

/// The REPORT line, Lambda's layout with honest numbers: measured memory, real init time (last),
/// `Status: timeout` when it timed out. Ends with a tab, like Lambda's and the RIE's.
pub fn report_line(
    request_id: &str,
    finished: &Finished,
    memory_mb: u64,
    max_used_bytes: Option<u64>,
) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let duration = ms(finished.duration);
    let mut line = format!(
        "REPORT RequestId: {request_id}\tDuration: {duration:.2} ms\tBilled Duration: {} ms\tMemory Size: {memory_mb} MB\t",
        duration.ceil() as u64
    );
    if let Some(bytes) = max_used_bytes {
        line.push_str(&format!(
            "Max Memory Used: {} MB\t",
            bytes.div_ceil(1024 * 1024)
        ));
    }
    if let Some(init) = finished.init {
        line.push_str(&format!("Init Duration: {:.2} ms\t", ms(init)));
    }
    match finished.outcome {
        Outcome::Timeout => line.push_str("Status: timeout\t"),
        Outcome::OutOfMemory => line.push_str("Status: error\tError Type: Runtime.OutOfMemory\t"),
        _ => {}
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_invoke_present_outcomes() {
        let ok = present(
            &Outcome::Success {
                body: Bytes::from_static(br#"{"a":1.50}"#),
                content_type: None,
            },
            "id",
            Duration::from_secs(3),
        );
        assert_eq!(String::from_utf8(ok.stdout).unwrap(), r#"{"a": 1.5}"#);
        assert_eq!(ok.exit_code, 0);
        let text = present(
            &Outcome::Success {
                body: Bytes::from_static(b"plain"),
                content_type: None,
            },
            "id",
            Duration::from_secs(3),
        );
        assert_eq!(text.stdout, b"plain");
        let timeout = present(&Outcome::Timeout, "r1", Duration::from_secs(3));
        assert_eq!(
            String::from_utf8(timeout.stdout).unwrap(),
            r#"{"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: r1 Error: Task timed out after 3.00 seconds"}"#
        );
        assert_eq!(timeout.exit_code, exit::TIMEOUT);
        let crash = present(
            &Outcome::RuntimeExit {
                status: "exit status 7".into(),
            },
            "r1",
            Duration::from_secs(3),
        );
        assert!(
            String::from_utf8(crash.stdout)
                .unwrap()
                .contains("Runtime exited with error: exit status 7")
        );
        assert_eq!(crash.exit_code, exit::FUNCTION_ERROR);
        assert_eq!(
            present(&Outcome::OutOfMemory, "r", Duration::from_secs(1)).exit_code,
            exit::OUT_OF_MEMORY
        );
    }

    #[test]
    fn test_invoke_report_line() {
        let finished = Finished {
            outcome: Outcome::Success {
                body: Bytes::new(),
                content_type: None,
            },
            init: Some(Duration::from_micros(51_234)),
            duration: Duration::from_micros(1_230),
            delivered: true,
        };
        assert_eq!(
            report_line("abc", &finished, 128, Some(40 * 1024 * 1024 + 1)),
            "REPORT RequestId: abc\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 41 MB\tInit Duration: 51.23 ms\t"
        );
    }
}
