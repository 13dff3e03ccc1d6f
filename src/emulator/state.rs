//! The runtime's state machine, as the RIE (and Lambda) enforce it (runtime-api.md §1.6), for one
//! environment that serves one invocation.

/// Where the runtime is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeState {
    /// Started, has not asked for an event yet.
    Started,
    /// Holds the invocation.
    Running,
    /// Posted `/response` or `/error`; its next `/next` waits for an invocation that never comes.
    ResponseSent,
    /// Posted `/init/error`; every later call is refused.
    InitError,
}

impl RuntimeState {
    /// The name the RIE puts in its error messages.
    pub fn wire_name(self) -> &'static str {
        match self {
            RuntimeState::Started => "Started",
            RuntimeState::Running => "Running",
            RuntimeState::ResponseSent => "RuntimeResponseSentState",
            RuntimeState::InitError => "InitError",
        }
    }
}

/// The message of a refused transition, e.g. "State transition from Running to InitError failed ...".
pub fn transition_error(from: RuntimeState, to: &str) -> String {
    format!(
        "State transition from {} to {to} failed for runtime. Error: State transition is not allowed",
        from.wire_name()
    )
}
