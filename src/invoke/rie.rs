//! `--emulator rie`: the image's own Runtime Interface Emulator serves the Runtime API (as under
//! SAM), and lamina invokes the function the way SAM does: one POST of the event to the RIE's
//! `:8080` inside the sandbox's network namespace.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::{Finished, Limits, Outcome};

/// Where the RIE listens inside the sandbox.
const RIE_PORT: u16 = 8080;
const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";

/// Opens a TCP connection to the RIE from inside the sandbox's network namespace (root: a thread
/// that joins the namespace; the socket stays bound to it after the thread is gone). Without a
/// namespace (`--network host`) it connects on the host's loopback.
fn connect(netns: Option<OwnedFd>, give_up: Instant) -> std::io::Result<std::net::TcpStream> {
    std::thread::spawn(move || {
        if let Some(netns) = netns {
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
        }
        loop {
            match std::net::TcpStream::connect(("127.0.0.1", RIE_PORT)) {
                Ok(stream) => return Ok(stream),
                Err(err) if Instant::now() >= give_up => return Err(err),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the connecting thread panicked")))
}

async fn post(stream: std::net::TcpStream, event: Bytes) -> Result<(u16, Bytes), String> {
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let stream = tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::post(INVOKE_PATH)
        .header("host", format!("127.0.0.1:{RIE_PORT}"))
        .header("content-type", "application/json")
        .body(Full::new(event))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// Invokes through the RIE and waits as SAM does, with lamina's own timeout and exit codes.
pub async fn drive(
    netns: Option<OwnedFd>,
    event: Bytes,
    exited: impl Future<Output = String>,
    started: Instant,
    limits: Limits,
) -> Finished {
    tokio::pin!(exited);
    let connect_limit = started + Duration::from_secs(20);
    let invoke = async {
        let stream = tokio::task::spawn_blocking(move || connect(netns, connect_limit))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot reach the RIE on port {RIE_PORT}: {e}"))?;
        post(stream, event).await
    };
    let sleep = async {
        match limits.invoke {
            // SAM's timer starts once the port answers; the RIE's own timer covers init too.
            Some(limit) => tokio::time::sleep(limit + Duration::from_millis(200)).await,
            None => std::future::pending().await,
        }
    };
    let finish = |outcome| Finished {
        outcome,
        init: None,
        duration: started.elapsed(),
        delivered: true,
    };
    tokio::select! {
        result = invoke => match result {
            Ok((status, body)) => finish(classify(status, body)),
            Err(message) => finish(Outcome::RuntimeExit { status: message }),
        },
        status = &mut exited => finish(Outcome::RuntimeExit { status }),
        () = sleep => {
            let mut finished = finish(Outcome::Timeout);
            finished.duration = limits.invoke.unwrap_or_default();
            finished
        }
    }
}

/// The RIE answers 200 for successes and function errors alike (it never sends
/// `X-Amz-Function-Error`): a JSON object with `errorType` and `errorMessage` is taken as an error.
fn classify(status: u16, body: Bytes) -> Outcome {
    let text = String::from_utf8_lossy(&body);
    if status == 200 && text.starts_with("Task timed out after ") {
        return Outcome::Timeout;
    }
    let looks_like_error = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.as_object()
                .map(|o| o.contains_key("errorType") && o.contains_key("errorMessage"))
        })
        .unwrap_or(false);
    match status {
        200 if looks_like_error => Outcome::FunctionError {
            body,
            error_type: None,
        },
        200 => Outcome::Success {
            body,
            content_type: None,
        },
        _ if body.is_empty() => Outcome::RuntimeExit {
            status: format!("the RIE answered HTTP {status}"),
        },
        _ => Outcome::FunctionError {
            body,
            error_type: None,
        },
    }
}
