//! The route table. Handlers follow the RIE's responses byte for byte (runtime-api.md §1-§3).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::headers::{self, MAX_RESPONSE_BYTES, STATUS_OK, error_body};
use super::state::{RuntimeState, transition_error};
use super::{RuntimeEvent, Shared};

type Reply = Response<Full<Bytes>>;

pub async fn handle(shared: &Shared, request: Request<Incoming>) -> Reply {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (parts.as_slice(), &method) {
        (["2018-06-01", "runtime", "invocation", "next"], &Method::GET) => next(shared).await,
        (["2018-06-01", "runtime", "invocation", id, "response"], &Method::POST) => {
            let id = id.to_string();
            response(shared, &id, request).await
        }
        (["2018-06-01", "runtime", "invocation", id, "error"], &Method::POST) => {
            let id = id.to_string();
            error(shared, &id, request).await
        }
        (["2018-06-01", "runtime", "init", "error"], &Method::POST) => {
            init_error(shared, request).await
        }
        (["2018-06-01", "ping"], &Method::GET) => text(StatusCode::OK, "pong"),
        (["2020-01-01", "extension", "register"], &Method::POST) => register(shared, request).await,
        (["2020-01-01", "extension", "event", "next"], &Method::GET) => {
            extension_next(shared, request).await
        }
        (
            ["2020-01-01", "extension", "init", "error"]
            | ["2020-01-01", "extension", "exit", "error"],
            &Method::POST,
        ) => {
            if request.headers().contains_key(headers::EXTENSION_ID) {
                json(StatusCode::ACCEPTED, STATUS_OK.to_string())
            } else {
                json(
                    StatusCode::FORBIDDEN,
                    error_body(
                        "Extension.MissingExtensionIdentifier",
                        "Missing Lambda-Extension-Identifier header",
                    ),
                )
            }
        }
        (["2020-08-15", "logs"], &Method::PUT) => json(
            StatusCode::ACCEPTED,
            error_body("Logs.NotSupported", "Logs API is not supported"),
        ),
        (["2022-07-01", "telemetry"], &Method::PUT) => json(
            StatusCode::ACCEPTED,
            error_body("Telemetry.NotSupported", "Telemetry API is not supported"),
        ),
        (known, _) if is_known(known) => empty(StatusCode::METHOD_NOT_ALLOWED),
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

fn is_known(parts: &[&str]) -> bool {
    matches!(
        parts,
        ["2018-06-01", "runtime", "invocation", "next"]
            | [
                "2018-06-01",
                "runtime",
                "invocation",
                _,
                "response" | "error"
            ]
            | ["2018-06-01", "runtime", "init", "error"]
            | ["2018-06-01", "ping"]
            | ["2020-01-01", "extension", ..]
    )
}

/// Init is over when every started extension has registered and asked for its first event.
async fn wait_for_extensions(shared: &Shared) {
    let expected = shared
        .expected_extensions
        .load(std::sync::atomic::Ordering::SeqCst);
    if expected == 0 {
        return;
    }
    let mut ready = shared.ready_extensions.subscribe();
    let all_ready = ready.wait_for(|count| *count >= expected);
    if tokio::time::timeout(std::time::Duration::from_secs(10), all_ready)
        .await
        .is_err()
    {
        tracing::warn!(
            "not all of the {expected} extensions in /opt/extensions registered within 10 s; starting the invoke anyway"
        );
    }
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

async fn next(shared: &Shared) -> Reply {
    let state = *shared.state.lock().expect("state lock");
    match state {
        RuntimeState::Started | RuntimeState::Running => {}
        RuntimeState::InitError => {
            return json(
                StatusCode::FORBIDDEN,
                error_body("InvalidStateTransition", &transition_error(state, "Ready")),
            );
        }
        // The runtime is done with the only invocation; it waits for one that never comes.
        RuntimeState::ResponseSent => std::future::pending::<()>().await,
    }
    wait_for_extensions(shared).await;
    let deadline = {
        let mut current = shared.state.lock().expect("state lock");
        if *current == RuntimeState::Started {
            *current = RuntimeState::Running;
            let deadline = now_ms() + shared.invocation.timeout.as_millis() as u64;
            shared.delivered.send_replace(Some(deadline));
            let _ = shared
                .events
                .send(RuntimeEvent::EventDelivered(Instant::now()));
            deadline
        } else {
            // `/next` while holding the invocation returns the same event again (RIE).
            shared.delivered.borrow().unwrap_or_else(now_ms)
        }
    };
    let invocation = &shared.invocation;
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header(headers::REQUEST_ID, &invocation.request_id)
        .header(headers::DEADLINE_MS, deadline.to_string())
        .header(headers::FUNCTION_ARN, &invocation.function_arn)
        .header(headers::TRACE_ID, &invocation.trace_id);
    if let Some(context) = &invocation.client_context {
        builder = builder.header(headers::CLIENT_CONTEXT, context);
    }
    if let Some(tenant) = &invocation.tenant_id {
        builder = builder.header(headers::TENANT_ID, tenant);
    }
    builder
        .body(Full::new(invocation.event.clone()))
        .expect("valid response")
}

/// Checks the request id and that the runtime holds the invocation; `target` names the state for
/// the 403 message.
fn check_running(shared: &Shared, id: &str, target: &str) -> Result<(), Box<Reply>> {
    if id != shared.invocation.request_id
        || *shared.state.lock().expect("state lock") == RuntimeState::Started
    {
        return Err(Box::new(json(
            StatusCode::BAD_REQUEST,
            error_body("InvalidRequestID", "Invalid request ID"),
        )));
    }
    let state = *shared.state.lock().expect("state lock");
    if state != RuntimeState::Running {
        return Err(Box::new(json(
            StatusCode::FORBIDDEN,
            error_body("InvalidStateTransition", &transition_error(state, target)),
        )));
    }
    Ok(())
}

/// Reads a body of at most `MAX_RESPONSE_BYTES`; `None` when it is larger.
async fn read_limited(
    request: Request<Incoming>,
) -> Result<(Bytes, Option<hyper::HeaderMap>), Option<()>> {
    match Limited::new(request.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            Ok((collected.to_bytes(), trailers))
        }
        Err(err)
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Some(()))
        }
        Err(_) => Err(None),
    }
}

async fn response(shared: &Shared, id: &str, request: Request<Incoming>) -> Reply {
    if let Err(reply) = check_running(shared, id, "InvocationResponse") {
        return *reply;
    }
    let mode = request
        .headers()
        .get(headers::RESPONSE_MODE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if mode
        .as_deref()
        .is_some_and(|m| !m.eq_ignore_ascii_case("streaming"))
    {
        return json(
            StatusCode::BAD_REQUEST,
            error_body(
                "InvalidFunctionResponseMode",
                "Invalid function response mode",
            ),
        );
    }
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (body, trailers) = match read_limited(request).await {
        Ok(read) => read,
        Err(Some(())) => {
            let _ = shared
                .events
                .send(RuntimeEvent::ResponseTooLarge { at: Instant::now() });
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                error_body(
                    "RequestEntityTooLarge",
                    &format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
                ),
            );
        }
        Err(None) => {
            return json(
                StatusCode::BAD_REQUEST,
                error_body("TruncatedHTTPRequest", "HTTP request detected as truncated"),
            );
        }
    };
    *shared.state.lock().expect("state lock") = RuntimeState::ResponseSent;
    // A streamed response can end in an error, declared in trailers.
    let trailer_error = trailers
        .as_ref()
        .and_then(|t| t.get(headers::FUNCTION_ERROR_TYPE))
        .and_then(|v| v.to_str().ok());
    let event = match trailer_error {
        Some(error_type) => {
            let encoded = trailers
                .as_ref()
                .and_then(|t| t.get("lambda-runtime-function-error-body"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            use base64::Engine as _;
            let body = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default();
            RuntimeEvent::Error {
                body: body.into(),
                error_type: Some(error_type.to_string()),
                at: Instant::now(),
            }
        }
        None => RuntimeEvent::Response {
            body,
            content_type,
            at: Instant::now(),
        },
    };
    let _ = shared.events.send(event);
    json(StatusCode::ACCEPTED, STATUS_OK.to_string())
}

async fn error(shared: &Shared, id: &str, request: Request<Incoming>) -> Reply {
    if let Err(reply) = check_running(shared, id, "InvocationErrorResponse") {
        return *reply;
    }
    let error_type = header(&request, headers::FUNCTION_ERROR_TYPE);
    let cause_json = header(&request, "content-type")
        .is_some_and(|c| c == "application/vnd.aws.lambda.error.cause+json");
    let Ok((body, _)) = read_limited(request).await else {
        return json(
            StatusCode::BAD_REQUEST,
            error_body("TruncatedHTTPRequest", "HTTP request detected as truncated"),
        );
    };
    let body = if cause_json {
        rewrite_error_cause(&body)
    } else {
        body
    };
    *shared.state.lock().expect("state lock") = RuntimeState::ResponseSent;
    let _ = shared.events.send(RuntimeEvent::Error {
        body,
        error_type,
        at: Instant::now(),
    });
    json(StatusCode::ACCEPTED, STATUS_OK.to_string())
}

/// The error-cause content type keeps only `errorMessage`, `errorType` and `stackTrace` (RIE).
fn rewrite_error_cause(body: &[u8]) -> Bytes {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return Bytes::from_static(b"\"Invalid error body\"");
    };
    let mut kept = serde_json::Map::new();
    for key in ["errorMessage", "errorType", "stackTrace"] {
        if let Some(value) = map.get(key) {
            kept.insert(key.into(), value.clone());
        }
    }
    Bytes::from(serde_json::Value::Object(kept).to_string())
}

async fn init_error(shared: &Shared, request: Request<Incoming>) -> Reply {
    let state = *shared.state.lock().expect("state lock");
    if state != RuntimeState::Started {
        return json(
            StatusCode::FORBIDDEN,
            error_body(
                "InvalidStateTransition",
                &transition_error(state, "InitError"),
            ),
        );
    }
    let error_type = header(&request, headers::FUNCTION_ERROR_TYPE);
    let body = read_limited(request)
        .await
        .map(|(b, _)| b)
        .unwrap_or_default();
    *shared.state.lock().expect("state lock") = RuntimeState::InitError;
    let _ = shared.events.send(RuntimeEvent::InitError {
        body,
        error_type,
        at: Instant::now(),
    });
    json(StatusCode::ACCEPTED, STATUS_OK.to_string())
}

async fn register(shared: &Shared, request: Request<Incoming>) -> Reply {
    let Some(name) = header(&request, headers::EXTENSION_NAME).filter(|n| !n.is_empty()) else {
        return json(
            StatusCode::FORBIDDEN,
            error_body("Extension.InvalidExtensionName", "Empty extension name"),
        );
    };
    {
        let extensions = shared.extensions.lock().expect("extensions lock");
        if extensions.len() >= 10 {
            return json(
                StatusCode::FORBIDDEN,
                error_body(
                    "Extension.TooManyExtensions",
                    "Extension limit (10) reached",
                ),
            );
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    shared
        .extensions
        .lock()
        .expect("extensions lock")
        .push((id.clone(), false));
    tracing::debug!(%name, %id, "extension registered");
    let invocation = &shared.invocation;
    let body = serde_json::json!({
        "functionName": invocation.function_name,
        "functionVersion": invocation.function_version,
        "handler": invocation.handler,
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header(headers::EXTENSION_ID, id)
        .body(Full::new(Bytes::from(format!("{body}\n"))))
        .expect("valid response")
}

/// An extension's `event/next`: the INVOKE event once the runtime has the invocation, then nothing
/// more (the environment ends after one invocation).
async fn extension_next(shared: &Shared, request: Request<Incoming>) -> Reply {
    let Some(id) = header(&request, headers::EXTENSION_ID) else {
        return json(
            StatusCode::FORBIDDEN,
            error_body(
                "Extension.MissingExtensionIdentifier",
                "Missing Lambda-Extension-Identifier header",
            ),
        );
    };
    if !shared
        .extensions
        .lock()
        .expect("extensions lock")
        .iter()
        .any(|(known, _)| *known == id)
    {
        return json(
            StatusCode::FORBIDDEN,
            error_body(
                "Extension.UnknownExtensionIdentifier",
                "Unknown Lambda-Extension-Identifier",
            ),
        );
    }
    let first_call = !shared
        .extensions
        .lock()
        .expect("extensions lock")
        .iter()
        .any(|(known, invoked)| *known == id && *invoked);
    if first_call && shared.delivered.borrow().is_none() {
        shared.ready_extensions.send_modify(|count| *count += 1);
    }
    let mut delivered = shared.delivered.subscribe();
    let deadline = loop {
        if let Some(deadline) = *delivered.borrow_and_update() {
            break deadline;
        }
        if delivered.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    // Each extension sees INVOKE once; after that the environment has nothing more for it.
    let first = {
        let mut extensions = shared.extensions.lock().expect("extensions lock");
        let entry = extensions
            .iter_mut()
            .find(|(known, _)| *known == id)
            .expect("registered above");
        !std::mem::replace(&mut entry.1, true)
    };
    if !first {
        // After its INVOKE, an extension's next event is the environment's end (`--shutdown`).
        let mut shutdown = shared.shutdown.subscribe();
        let (reason, deadline) = loop {
            let current = shutdown.borrow_and_update().clone();
            if let Some(current) = current {
                break current;
            }
            if shutdown.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let event = serde_json::json!({"eventType": "SHUTDOWN", "deadlineMs": deadline, "shutdownReason": reason});
        return extension_event(&event);
    }
    let invocation = &shared.invocation;
    let event = serde_json::json!({
        "eventType": "INVOKE",
        "deadlineMs": deadline,
        "requestId": invocation.request_id,
        "invokedFunctionArn": invocation.function_arn,
        "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id},
    });
    extension_event(&event)
}

/// An event for an extension's `event/next`, with its own event identifier.
fn extension_event(event: &serde_json::Value) -> Reply {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header(
            headers::EXTENSION_EVENT_ID,
            uuid::Uuid::new_v4().to_string(),
        )
        .body(Full::new(Bytes::from(event.to_string())))
        .expect("valid response")
}

fn header(request: &Request<Incoming>, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn json(status: StatusCode, body: String) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("valid response")
}

fn empty(status: StatusCode) -> Reply {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}
