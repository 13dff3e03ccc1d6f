//! lamina's own Lambda Runtime API: served to the function's runtime client (awslambdaric, the
//! Rust `lambda_runtime`, a shell bootstrap...) on `127.0.0.1:9001` inside its sandbox, for one
//! invocation. It follows the RIE's wire behaviour (status codes, bodies, the state machine, the
//! 6,291,556-byte limit) and reports what the runtime does as `RuntimeEvent`s; `invoke` turns those
//! into an outcome with honest timings.

mod headers;
mod routes;
mod state;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

pub use headers::MAX_RESPONSE_BYTES;
pub use state::RuntimeState;

/// The invocation the runtime will receive from `/next`.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub event: Bytes,
    pub function_arn: String,
    pub function_name: String,
    pub function_version: String,
    pub handler: String,
    /// The function's timeout, for `Lambda-Runtime-Deadline-Ms`.
    pub timeout: Duration,
    /// `Root=1-...;Parent=...;Sampled=0`: Lambda always sends one (the RIE never does).
    pub trace_id: String,
    /// Already base64-decoded client-context JSON.
    pub client_context: Option<String>,
    pub tenant_id: Option<String>,
}

impl Invocation {
    /// A fresh request id and X-Ray trace id.
    pub fn new_ids() -> (String, String) {
        let request_id = uuid::Uuid::new_v4().to_string();
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let random = uuid::Uuid::new_v4().simple().to_string();
        let trace_id = format!(
            "Root=1-{epoch:08x}-{};Parent={};Sampled=0",
            &random[..24],
            &random[16..32]
        );
        (request_id, trace_id)
    }
}

/// What the runtime did, in order.
#[derive(Debug, Clone)]
pub enum RuntimeEvent {
    /// The runtime took the event (its first `/next`): init is over.
    EventDelivered(Instant),
    Response {
        body: Bytes,
        content_type: Option<String>,
        at: Instant,
    },
    Error {
        body: Bytes,
        error_type: Option<String>,
        at: Instant,
    },
    InitError {
        body: Bytes,
        error_type: Option<String>,
        at: Instant,
    },
    /// The runtime tried to post a response over the limit (it got 413).
    ResponseTooLarge { at: Instant },
}

struct Shared {
    invocation: Invocation,
    state: Mutex<RuntimeState>,
    events: mpsc::UnboundedSender<RuntimeEvent>,
    /// The deadline (epoch ms) once the event has been delivered; extensions wait on it.
    delivered: watch::Sender<Option<u64>>,
    /// Registered extensions: (identifier, whether it has been sent INVOKE).
    extensions: Mutex<Vec<(String, bool)>>,
    /// How many extensions were started in `/opt/extensions`; init waits for them (Lambda does).
    expected_extensions: std::sync::atomic::AtomicUsize,
    /// How many extensions have registered and are waiting for their first event.
    ready_extensions: watch::Sender<usize>,
    /// Set when the environment shuts down (`--shutdown`): extensions then get SHUTDOWN with this
    /// reason and deadline (Unix ms).
    shutdown: watch::Sender<Option<(String, u64)>>,
}

/// The Runtime API for one invocation. Clone it freely; all clones share the state.
#[derive(Clone)]
pub struct RuntimeApi {
    shared: Arc<Shared>,
}

impl RuntimeApi {
    pub fn new(invocation: Invocation) -> (RuntimeApi, mpsc::UnboundedReceiver<RuntimeEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let (delivered, _) = watch::channel(None);
        let shared = Shared {
            invocation,
            state: Mutex::new(RuntimeState::Started),
            events,
            delivered,
            extensions: Mutex::new(Vec::new()),
            expected_extensions: std::sync::atomic::AtomicUsize::new(0),
            ready_extensions: watch::channel(0).0,
            shutdown: watch::channel(None).0,
        };
        (
            RuntimeApi {
                shared: Arc::new(shared),
            },
            receiver,
        )
    }

    /// Tells the API that `count` extensions were started: the runtime's first `/next` waits until
    /// they have all registered and asked for their first event, as init does in Lambda.
    pub fn expect_extensions(&self, count: usize) {
        self.shared
            .expected_extensions
            .store(count, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sends every extension waiting for its next event a SHUTDOWN event with this reason and
    /// `deadlineMs` = now + `budget`, the same for all of them.
    pub fn shutdown(&self, reason: &str, budget: std::time::Duration) {
        let deadline = routes::now_ms() + budget.as_millis() as u64;
        self.shared
            .shutdown
            .send_replace(Some((reason.to_string(), deadline)));
    }

    /// Serves HTTP/1.1 on `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let api = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let api = api.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            routes::handle(&api.shared, request).await,
                        )
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    }
}
