//! The built-in Runtime API with a real runtime client (awslambdaric from PyPI, run as a plain
//! host process): every outcome, the wire errors, and the timings.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lamina::emulator::{Invocation, RuntimeApi};
use lamina::invoke::{Finished, Limits, Outcome, drive};

use crate::util::skip;

/// A Python with awslambdaric (`LAMINA_TEST_PYTHON`, set by .ci/run; or the venv .ci/run makes).
fn python() -> Option<PathBuf> {
    crate::util::python_with(&["awslambdaric"])
}

fn invocation(event: &str, timeout: Duration) -> Invocation {
    let (request_id, trace_id) = Invocation::new_ids();
    Invocation {
        request_id,
        event: Bytes::from(event.to_string()),
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:Test".into(),
        function_name: "Test".into(),
        function_version: "$LATEST".into(),
        handler: "app.handler".into(),
        timeout,
        trace_id,
        client_context: None,
        tenant_id: None,
    }
}

/// Runs `app.py` with awslambdaric against the emulator; returns the outcome and the runtime's output.
async fn run(
    python: &PathBuf,
    code: &str,
    event: &str,
    timeout: Duration,
) -> (Finished, String, Invocation) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), code).unwrap();
    let invocation = invocation(event, timeout);
    let (api, events) = RuntimeApi::new(invocation.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(api.serve(listener));
    let started = Instant::now();
    let mut child = tokio::process::Command::new(python)
        .args(["-m", "awslambdaric", "app.handler"])
        .current_dir(dir.path())
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("LAMBDA_TASK_ROOT", dir.path())
        .env("_HANDLER", "app.handler")
        .env("AWS_LAMBDA_FUNCTION_NAME", "Test")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("MY_SETTING", "visible")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let exited = async move {
        let status = child.wait().await.unwrap();
        match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(9)) => "signal: killed".to_string(),
            (None, Some(signal)) => format!("signal: {signal}"),
            _ => "unknown".into(),
        }
    };
    let finished = drive(
        events,
        exited,
        started,
        Limits::for_function(timeout, false),
        || {},
    )
    .await;
    server.abort();
    // The runtime is killed with the environment (kill_on_drop); collect what it printed.
    let mut logs = String::new();
    use tokio::io::AsyncReadExt;
    let mut out = stdout;
    let mut err = stderr;
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        let mut a = String::new();
        let mut b = String::new();
        let _ = out.read_to_string(&mut a).await;
        let _ = err.read_to_string(&mut b).await;
        logs = a + &b;
    })
    .await;
    (finished, logs, invocation)
}

fn body(finished: &Finished) -> String {
    match &finished.outcome {
        Outcome::Success { body, .. }
        | Outcome::FunctionError { body, .. }
        | Outcome::InitError { body, .. } => String::from_utf8_lossy(body).into_owned(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_emulator_success_unicode_env_and_context() {
    let Some(python) = python() else { return };
    let code = r#"
import os, json
def handler(event, context):
    print("log line from the handler")
    return {"echo": event, "greeting": "héllo wörld ✓", "setting": os.environ.get("MY_SETTING"),
            "request_id": context.aws_request_id, "arn": context.invoked_function_arn,
            "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 3000,
            "trace": os.environ.get("_X_AMZN_TRACE_ID", "")}
"#;
    let (finished, logs, invocation) =
        run(&python, code, r#"{"key": "välue"}"#, Duration::from_secs(3)).await;
    let Outcome::Success { body, .. } = &finished.outcome else {
        panic!("{finished:?}\n{logs}")
    };
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(value["echo"]["key"], "välue");
    assert_eq!(value["greeting"], "héllo wörld ✓");
    assert_eq!(value["setting"], "visible");
    assert_eq!(value["request_id"], invocation.request_id.as_str());
    assert_eq!(value["arn"], invocation.function_arn.as_str());
    assert_eq!(value["remaining_ok"], true, "the deadline header is right");
    assert_eq!(value["trace"], invocation.trace_id.as_str());
    assert!(finished.init.is_some() && finished.delivered);
    assert!(finished.duration < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_emulator_handler_exception_is_a_function_error() {
    let Some(python) = python() else { return };
    let code = "def handler(event, context):\n    raise ValueError('bad input: ' + event['x'])\n";
    let (finished, logs, _) = run(&python, code, r#"{"x": "42"}"#, Duration::from_secs(3)).await;
    let Outcome::FunctionError { .. } = &finished.outcome else {
        panic!("{finished:?}\n{logs}")
    };
    let value: serde_json::Value = serde_json::from_str(&body(&finished)).unwrap();
    assert_eq!(value["errorType"], "ValueError");
    assert_eq!(value["errorMessage"], "bad input: 42");
    assert!(
        value["stackTrace"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_emulator_import_error_is_an_init_error() {
    let Some(python) = python() else { return };
    let (finished, logs, _) = run(
        &python,
        "import no_such_module\n\ndef handler(e, c):\n    return 1\n",
        "{}",
        Duration::from_secs(3),
    )
    .await;
    assert!(
        matches!(finished.outcome, Outcome::InitError { .. }),
        "{finished:?}\n{logs}"
    );
    let value: serde_json::Value = serde_json::from_str(&body(&finished)).unwrap();
    assert_eq!(value["errorType"], "Runtime.ImportModuleError");
    assert!(
        value["errorMessage"]
            .as_str()
            .unwrap()
            .contains("no_such_module")
    );
    assert!(!finished.delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_emulator_crash_is_a_runtime_exit() {
    let Some(python) = python() else { return };
    let (finished, logs, _) = run(
        &python,
        "import os\ndef handler(e, c):\n    os._exit(7)\n",
        "{}",
        Duration::from_secs(3),
    )
    .await;
    match &finished.outcome {
        Outcome::RuntimeExit { status } => assert_eq!(status, "exit status 7"),
        other => panic!("{other:?}\n{logs}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_emulator_timeout_is_on_time() {
    let Some(python) = python() else { return };
    let started = Instant::now();
    let (finished, logs, _) = run(
        &python,
        "import time\ndef handler(e, c):\n    time.sleep(30)\n",
        "{}",
        Duration::from_secs(1),
    )
    .await;
    assert!(
        matches!(finished.outcome, Outcome::Timeout),
        "{finished:?}\n{logs}"
    );
    assert_eq!(
        finished.duration,
        Duration::from_secs(1),
        "REPORT shows the timeout as the duration"
    );
    let elapsed = started.elapsed();
    let init = finished.init.unwrap();
    assert!(
        elapsed < init + Duration::from_millis(1500),
        "timed out {elapsed:?} after start, init {init:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_emulator_response_over_six_megabytes() {
    let Some(python) = python() else { return };
    let code = "def handler(e, c):\n    return 'x' * (6 * 1024 * 1024 + 200)\n";
    let (finished, logs, _) = run(&python, code, "{}", Duration::from_secs(5)).await;
    assert!(
        matches!(
            finished.outcome,
            Outcome::ResponseTooLarge | Outcome::FunctionError { .. }
        ),
        "{finished:?}\n{logs}"
    );
    // Just under the limit is fine.
    let code = "def handler(e, c):\n    return 'x' * (6 * 1024 * 1024)\n";
    let (finished, logs, _) = run(&python, code, "{}", Duration::from_secs(5)).await;
    let Outcome::Success { body, .. } = &finished.outcome else {
        panic!("{finished:?}\n{logs}")
    };
    assert_eq!(body.len(), 6 * 1024 * 1024 + 2, "a JSON string with quotes");
}

/// The wire behaviour clients rely on, checked with plain HTTP requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_emulator_state_machine_on_the_wire() {
    let invocation = invocation("{\"a\":1}", Duration::from_secs(3));
    let id = invocation.request_id.clone();
    let (api, mut events) = RuntimeApi::new(invocation);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(api.serve(listener));
    let http = |method: &'static str, path: String, body: &'static str| {
        let base = base.clone();
        async move {
            let output = tokio::process::Command::new("curl")
                .args([
                    "-s",
                    "-i",
                    "-X",
                    method,
                    "--data-binary",
                    body,
                    &format!("{base}{path}"),
                ])
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    };
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        skip::<()>("curl is not installed");
        return;
    }
    let early = http(
        "POST",
        format!("/2018-06-01/runtime/invocation/{id}/response"),
        "x",
    )
    .await;
    assert!(
        early.starts_with("HTTP/1.1 400") && early.contains("InvalidRequestID"),
        "{early}"
    );
    let next = http("GET", "/2018-06-01/runtime/invocation/next".into(), "").await;
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
    let lower = next.to_ascii_lowercase();
    for header in [
        "lambda-runtime-aws-request-id",
        "lambda-runtime-deadline-ms",
        "lambda-runtime-invoked-function-arn",
        "lambda-runtime-trace-id",
    ] {
        assert!(lower.contains(header), "{header} missing:\n{next}");
    }
    assert!(next.ends_with("{\"a\":1}"), "the event verbatim");
    let again = http("GET", "/2018-06-01/runtime/invocation/next".into(), "").await;
    assert!(
        again.starts_with("HTTP/1.1 200") && again.contains(&id),
        "same event again while running"
    );
    let wrong = http(
        "POST",
        "/2018-06-01/runtime/invocation/not-the-id/response".into(),
        "x",
    )
    .await;
    assert!(wrong.starts_with("HTTP/1.1 400"), "{wrong}");
    let init_err = http("POST", "/2018-06-01/runtime/init/error".into(), "{}").await;
    assert!(
        init_err.starts_with("HTTP/1.1 403")
            && init_err.contains("State transition from Running to InitError failed"),
        "{init_err}"
    );
    let ok = http(
        "POST",
        format!("/2018-06-01/runtime/invocation/{id}/response"),
        "done",
    )
    .await;
    assert!(
        ok.starts_with("HTTP/1.1 202") && ok.ends_with("{\"status\":\"OK\"}\n"),
        "{ok}"
    );
    let twice = http(
        "POST",
        format!("/2018-06-01/runtime/invocation/{id}/error"),
        "x",
    )
    .await;
    assert!(
        twice.starts_with("HTTP/1.1 403") && twice.contains("InvocationErrorResponse"),
        "{twice}"
    );
    assert!(
        http("GET", "/nope".into(), "")
            .await
            .starts_with("HTTP/1.1 404")
    );
    assert!(
        http("DELETE", "/2018-06-01/runtime/invocation/next".into(), "")
            .await
            .starts_with("HTTP/1.1 405")
    );
    assert!(
        http("GET", "/2018-06-01/ping".into(), "")
            .await
            .ends_with("pong")
    );
    server.abort();
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(
            format!("{event:?}")
                .split(['(', ' ', '{'])
                .next()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen, ["EventDelivered", "Response"]);
}
