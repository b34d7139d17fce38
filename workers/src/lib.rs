//! Wasm edge workers: customer code that runs on an edge for each request on its routes, as a
//! standard `wasi:http/proxy` component (the world `wasmtime serve` and Spin run), in a fresh
//! instance per request with capped memory, CPU time, concurrency and outbound requests. A
//! worker answers from the edge or changes the request and sends it on; its outbound requests
//! go through the edge's own cache, parent tier and origin. Workers get `wasi:keyvalue` backed
//! by a store local to the edge and their configuration as environment and `wasi:config`.
//!
//! This crate owns the runtime (engine, linker, limits), the route table, deploys and their
//! storage, and the admin endpoints; it does not cache or proxy by itself (that is the
//! pipeline it is given).

mod admin;
mod error;
mod files;
mod host;
mod kv;
mod metrics;
mod registry;
mod route;
mod runtime;
mod spec;
mod worker;

pub use admin::{WorkerSummary, WorkersAdmin, deploy_body};
pub use error::{DeployError, InvokeError};
pub use host::Pipeline;
pub use kv::{KvError, KvQuota, KvStore};
pub use metrics::WorkersMetrics;
pub use registry::{
    CLIENT_IP_HEADER, EDGE_HEADER, EdgeInfo, LOCATION_HEADER, REQUEST_ID_HEADER, WorkerFront,
    Workers,
};
pub use route::{Route, RouteError, RouteTable};
pub use runtime::{Runtime, check_header};
pub use spec::{MAX_CPU_MS, MAX_MEMORY_MIB, WorkerSpec, defaults};
pub use worker::Worker;
