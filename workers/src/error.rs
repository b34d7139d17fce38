//! Typed errors: what a deploy can get wrong, and how one invocation can fail.

/// A deploy that cannot go live; the message is sent back to whoever deployed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The spec (name, routes, limits) is invalid.
    #[error("{0}")]
    BadSpec(String),
    /// The file is a core Wasm module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component: build for wasm32-wasip2 (or run `wasm-tools component new`)"
    )]
    NotAComponent,
    /// The file is not WebAssembly at all.
    #[error("this is not a WebAssembly file (no \\0asm header)")]
    NotWasm,
    /// The component does not export `wasi:http/incoming-handler`.
    #[error(
        "the component does not target the wasi:http/proxy world: it must export wasi:http/incoming-handler@0.2.x ({0})"
    )]
    WrongWorld(String),
    /// The component fails to compile or link.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// No worker of that name (remove).
    #[error("no worker named {0:?}")]
    Unknown(String),
    /// Storing the worker failed on the edge.
    #[error("storing the worker: {0}")]
    Storage(String),
}

/// Why one invocation failed; each maps to the status the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// Every instance is busy and the queue is full (or the wait too long): 503.
    #[error("worker {0} is at its concurrency limit")]
    Overloaded(String),
    /// The CPU-time deadline passed: 500.
    #[error("worker {0} ran past its CPU-time limit")]
    CpuTime(String),
    /// The memory cap was hit: 500.
    #[error("worker {0} exceeded its memory limit")]
    Memory(String),
    /// The guest trapped (including stack exhaustion): 500.
    #[error("worker {worker} trapped: {reason}")]
    Trap { worker: String, reason: String },
    /// The guest returned without setting a response: 500.
    #[error("worker {0} returned no response")]
    NoResponse(String),
}

impl InvokeError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            InvokeError::Overloaded(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short label for metrics.
    /// Every [`kind`](Self::kind), for metrics that exist at 0 before the first failure.
    pub const KINDS: [&'static str; 5] =
        ["overloaded", "cpu_time", "memory", "trap", "no_response"];

    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Overloaded(_) => "overloaded",
            InvokeError::CpuTime(_) => "cpu_time",
            InvokeError::Memory(_) => "memory",
            InvokeError::Trap { .. } => "trap",
            InvokeError::NoResponse(_) => "no_response",
        }
    }
}
