//! What one invocation's store holds: WASI (with the worker's environment and its stdout and
//! stderr going to the edge's log), wasi:http with outbound requests sent into the edge's own
//! pipeline, the key-value store, and the limits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::BodyExt;
use outpost_server::{Body, Peer};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use crate::kv::{KvStore, KvView};
use crate::route::HostPattern;

/// Where a worker's outbound requests go: the edge's own pipeline (its cache, the parent tier
/// and the origin), never back into workers.
pub trait Pipeline: Send + Sync + 'static {
    fn fetch(
        &self,
        request: Request<Body>,
        peer: Peer,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
}

/// Outbound requests of one invocation: counted, checked against the allowed hosts, and sent
/// into the pipeline.
pub(crate) struct Outbound {
    pub(crate) pipeline: Arc<dyn Pipeline>,
    pub(crate) allowed_hosts: Arc<[HostPattern]>,
    pub(crate) remaining: u32,
    pub(crate) worker: Arc<str>,
    pub(crate) request_id: Arc<str>,
    pub(crate) peer: Peer,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

fn host_allowed(allowed: &[HostPattern], host: &str) -> bool {
    allowed.iter().any(|pattern| pattern.matches(host))
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let host = request.uri().host().unwrap_or_default();
        if self.remaining == 0 {
            tracing::warn!(target: "outpost::worker", worker = %self.worker, request_id = %self.request_id, "outbound request refused: the per-invocation limit is spent");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if !host_allowed(&self.allowed_hosts, host) {
            tracing::warn!(target: "outpost::worker", worker = %self.worker, request_id = %self.request_id, host, "outbound request refused: host not allowed");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        self.remaining -= 1;
        let (mut parts, body) = request.into_parts();
        // Origin-form with a Host header, as a client would send it to the edge.
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        if let Some(authority) = uri.authority.take()
            && let Ok(value) = http::HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(http::header::HOST, value);
        }
        uri.scheme = None;
        uri.path_and_query
            .get_or_insert(http::uri::PathAndQuery::from_static("/"));
        parts.uri = http::Uri::from_parts(uri).unwrap_or_else(|_| http::Uri::from_static("/"));
        let body: Body = body
            .map_err(|e| -> outpost_server::BoxError { Box::new(e) })
            .boxed_unsync();
        let request = Request::from_parts(parts, body);
        let pipeline = self.pipeline.clone();
        let peer = self.peer;
        Box::new(async move {
            let response = pipeline.fetch(request, peer).await;
            let response = response.map(|body| {
                body.map_err(|e| HttpError::InternalError(Some(e.to_string())))
                    .boxed_unsync()
            });
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

/// The state of one invocation's store.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) outbound: Outbound,
    pub(crate) limits: Limits,
    pub(crate) kv: Arc<KvStore>,
    /// The worker's `wasi:config` values, shared by its invocations.
    pub(crate) config: Arc<wasmtime_wasi_config::WasiConfigVariables>,
    /// Epoch ticks (milliseconds) the guest has run.
    pub(crate) cpu_ticks: u32,
    pub(crate) cpu_budget: u32,
    /// Keeps the epoch ticking while this store lives.
    pub(crate) _ticking: crate::runtime::Ticking,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.outbound,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

impl HostState {
    pub(crate) fn kv(&mut self) -> KvView<'_> {
        KvView {
            store: &self.kv,
            table: &mut self.table,
        }
    }

    pub(crate) fn config(&mut self) -> wasmtime_wasi_config::WasiConfig<'_> {
        wasmtime_wasi_config::WasiConfig::from(&*self.config)
    }
}

/// The store's limits, remembering whether the memory cap refused a growth, so that a trap
/// it caused is reported as the memory limit.
pub(crate) struct Limits {
    pub(crate) store: StoreLimits,
    pub(crate) memory_refused: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = self.store.memory_growing(current, desired, maximum);
        self.memory_refused |= !matches!(grown, Ok(true));
        grown
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.store.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.store.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.store.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.store.instances()
    }

    fn tables(&self) -> usize {
        self.store.tables()
    }

    fn memories(&self) -> usize {
        self.store.memories()
    }
}

/// A worker's stdout or stderr: each line goes to the edge's log with the worker's name and
/// the request id. Lines longer than 16 KiB are cut.
#[derive(Clone)]
pub(crate) struct LogStream {
    pub(crate) worker: Arc<str>,
    pub(crate) request_id: Arc<str>,
    pub(crate) stream: &'static str,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            stream: self.clone(),
            line: Vec::new(),
        })
    }
}

const MAX_LINE: usize = 16 * 1024;

struct LineWriter {
    stream: LogStream,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        tracing::info!(
            target: "outpost::worker",
            worker = %self.stream.worker,
            request_id = %self.stream.request_id,
            stream = self.stream.stream,
            "{}",
            text.trim_end()
        );
        self.line.clear();
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        for &byte in buf {
            if byte == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LINE {
                self.line.push(byte);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::host_allowed;
    use crate::route::HostPattern;

    #[test]
    fn allowed_hosts_are_exact_or_subdomains() {
        let allowed = ["www.outpost.test", "*.example.test"].map(HostPattern::allowed);
        assert!(host_allowed(&allowed, "www.outpost.test"));
        assert!(host_allowed(&allowed, "WWW.outpost.test"));
        assert!(host_allowed(&allowed, "a.example.test"));
        assert!(!host_allowed(&allowed, "example.test"));
        assert!(!host_allowed(&allowed, "evil.test"));
        assert!(!host_allowed(&allowed, "www.outpost.test.evil"));
        assert!(host_allowed(&[HostPattern::allowed("*")], "anything.test"));
    }
}
