//! One deployed worker and one invocation of it: admission (a cap on concurrent instances and
//! a bounded queue), a fresh instance per request from the pre-instantiated component, the
//! limits (memory, CPU time, outbound requests), and the response handed to the client as the
//! guest writes it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use outpost_server::{Body, Peer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::error::InvokeError;
use crate::host::{HostState, Limits, LogStream, Outbound, Pipeline};
use crate::kv::KvStore;
use crate::metrics::WorkerMetrics;
use crate::route::{HostPattern, Route};
use crate::runtime::Runtime;
use crate::spec::WorkerSpec;

/// How long a request may wait in the queue for an instance.
const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// How long a worker may take to hand over a response head, waiting included (the CPU-time
/// limit only counts time the guest runs).
const HEAD_DEADLINE: Duration = Duration::from_secs(30);

/// A worker as it runs on one edge.
pub struct Worker {
    pub(crate) spec: WorkerSpec,
    pub(crate) routes: Vec<Route>,
    pub(crate) name: Arc<str>,
    pre: ProxyPre<HostState>,
    runtime: Arc<Runtime>,
    kv: Arc<KvStore>,
    env: Vec<(String, String)>,
    config: Arc<wasmtime_wasi_config::WasiConfigVariables>,
    allowed_hosts: Arc<[HostPattern]>,
    slots: Arc<Semaphore>,
    queued: AtomicU32,
    metrics: WorkerMetrics,
}

impl Worker {
    pub(crate) fn new(
        spec: WorkerSpec,
        routes: Vec<Route>,
        pre: ProxyPre<HostState>,
        runtime: Arc<Runtime>,
        kv: Arc<KvStore>,
        allowed_hosts: Vec<HostPattern>,
        metrics: WorkerMetrics,
    ) -> Self {
        let env: Vec<(String, String)> = spec.env.clone().into_iter().collect();
        Self {
            name: spec.name.as_str().into(),
            config: Arc::new(env.iter().cloned().collect()),
            env,
            slots: Arc::new(Semaphore::new(spec.max_concurrent as usize)),
            queued: AtomicU32::new(0),
            allowed_hosts: allowed_hosts.into(),
            spec,
            routes,
            pre,
            runtime,
            kv,
            metrics,
        }
    }

    pub fn spec(&self) -> &WorkerSpec {
        &self.spec
    }

    /// A slot for one instance: at once if one is free, else after waiting in the queue.
    async fn admit(&self) -> Result<OwnedSemaphorePermit, InvokeError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let overloaded = || InvokeError::Overloaded(self.name.to_string());
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.spec.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(overloaded());
        }
        let waited = tokio::time::timeout(QUEUE_WAIT, self.slots.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(overloaded()),
        }
    }

    /// Runs the worker for one request; its outbound requests go to `pipeline`.
    pub async fn invoke(
        self: Arc<Self>,
        request: Request<Body>,
        peer: Peer,
        request_id: Arc<str>,
        pipeline: Arc<dyn Pipeline>,
    ) -> Response<Body> {
        let started = Instant::now();
        let result = self
            .clone()
            .run(request, peer, request_id.clone(), pipeline)
            .await;
        self.metrics
            .finished(started.elapsed(), result.as_ref().err());
        match result {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(target: "outpost::worker", worker = %self.name, request_id = %request_id, "{error}");
                outpost_server::body::text(error.status(), error.to_string())
            }
        }
    }

    /// What a failed call means for the client; `memory_refused`: the memory cap turned down
    /// a growth during it.
    fn classify(&self, error: &wasmtime::Error, memory_refused: bool) -> InvokeError {
        let name = self.name.to_string();
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => InvokeError::CpuTime(name),
            Some(Trap::StackOverflow) => InvokeError::Trap {
                worker: name,
                reason: "stack overflow (recursion too deep)".to_owned(),
            },
            _ if memory_refused => InvokeError::Memory(name),
            _ => InvokeError::Trap {
                worker: name,
                reason: error
                    .downcast_ref::<Trap>()
                    .map_or_else(|| format!("{error:#}"), |trap| trap.to_string()),
            },
        }
    }

    async fn run(
        self: Arc<Self>,
        request: Request<Body>,
        peer: Peer,
        request_id: Arc<str>,
        pipeline: Arc<dyn Pipeline>,
    ) -> Result<Response<Body>, InvokeError> {
        let permit = self.admit().await?;
        let trap = |error: wasmtime::Error| self.classify(&error, false);

        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env);
        for (stream, name) in [("stdout", true), ("stderr", false)] {
            let log = LogStream {
                worker: self.name.clone(),
                request_id: request_id.clone(),
                stream,
            };
            if name {
                wasi.stdout(log);
            } else {
                wasi.stderr(log);
            }
        }
        let state = HostState {
            wasi: wasi.build(),
            table: wasmtime::component::ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound: Outbound {
                pipeline,
                allowed_hosts: self.allowed_hosts.clone(),
                remaining: self.spec.max_outbound,
                worker: self.name.clone(),
                request_id: request_id.clone(),
                peer,
            },
            limits: Limits {
                store: StoreLimitsBuilder::new()
                    .memory_size(self.spec.memory_mib as usize * 1024 * 1024)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_refused: false,
            },
            kv: self.kv.clone(),
            config: self.config.clone(),
            cpu_ticks: 0,
            cpu_budget: self.spec.cpu_ms,
            _ticking: self.runtime.ticking(),
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| &mut state.limits);
        // The deadline comes every tick the guest runs: count the ticks, stop it past its
        // budget, and yield in between so a busy guest does not hold a thread.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            state.cpu_ticks += 1;
            if state.cpu_ticks > state.cpu_budget {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
        let scheme = if peer.tls {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let request = request.map(|body| {
            body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
        });
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, request)
            .map_err(trap)?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(trap)?;

        let instantiating = Instant::now();
        let proxy = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|error| self.classify(&error, store.data().limits.memory_refused))?;
        self.metrics.instantiated(instantiating.elapsed());

        // The guest runs in its own task: it goes on writing the body after handing over the
        // response head, and holds its slot until it returns. How it ended goes to whoever
        // holds the other end: the body (after the head) or this function (before it).
        let (finished, outcome) = tokio::sync::oneshot::channel();
        let worker = self.clone();
        let request_id_for_guest = request_id.clone();
        let deadline = Duration::from_secs(u64::from(self.spec.deadline_secs));
        let guest = tokio::spawn(async move {
            // The whole response, body included, within the deadline: a client that stops
            // reading (the guest then waits to write) cannot keep the instance and its slot.
            let result = match tokio::time::timeout(
                deadline,
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, out),
            )
            .await
            {
                Ok(result) => result.map_err(Some),
                Err(_) => Err(None),
            };
            let memory_refused = store.data().limits.memory_refused;
            drop(store);
            drop(permit);
            let outcome = result.map_err(|error| match error {
                Some(error) => worker.classify(&error, memory_refused),
                None => InvokeError::Trap {
                    worker: worker.name.to_string(),
                    reason: format!(
                        "the response was not complete within {} s",
                        deadline.as_secs()
                    ),
                },
            });
            // Nobody waits for the outcome any more (the client went away, or the worker
            // answered with an error code first): log it here.
            if let Err(Err(error)) = finished.send(outcome) {
                worker.metrics.failed(&error);
                tracing::warn!(target: "outpost::worker", worker = %worker.name, request_id = %request_id_for_guest, "with nobody waiting for its answer: {error}");
            }
        });

        let Ok(answer) = tokio::time::timeout(HEAD_DEADLINE, receiver).await else {
            guest.abort();
            return Err(InvokeError::Trap {
                worker: self.name.to_string(),
                reason: format!("no response within {} s", HEAD_DEADLINE.as_secs()),
            });
        };
        match answer {
            Ok(Ok(response)) => Ok(response.map(|body| {
                CheckedBody {
                    inner: body,
                    outcome: Some(outcome),
                    worker: self,
                    request_id,
                }
                .boxed_unsync()
            })),
            Ok(Err(code)) => Err(InvokeError::Trap {
                worker: self.name.to_string(),
                reason: format!("the worker answered with an error: {code:?}"),
            }),
            Err(_) => match outcome.await {
                Ok(Err(error)) => Err(error),
                Ok(Ok(())) => Err(InvokeError::NoResponse(self.name.to_string())),
                Err(_) => Err(InvokeError::Trap {
                    worker: self.name.to_string(),
                    reason: "the worker's task ended abnormally".to_owned(),
                }),
            },
        }
    }
}

/// The body a worker writes, ending cleanly only if the worker returned without error: a
/// worker that traps or runs out of time mid-body gives the client a broken body, never one
/// that looks complete.
struct CheckedBody {
    inner: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
    outcome: Option<tokio::sync::oneshot::Receiver<Result<(), InvokeError>>>,
    worker: Arc<Worker>,
    request_id: Arc<str>,
}

impl http_body::Body for CheckedBody {
    type Data = bytes::Bytes;
    type Error = outpost_server::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {}
            Poll::Ready(Some(frame)) => {
                return Poll::Ready(Some(
                    frame.map_err(|e| -> outpost_server::BoxError { Box::new(e) }),
                ));
            }
            Poll::Pending => return Poll::Pending,
        }
        let Some(outcome) = self.outcome.as_mut() else {
            return Poll::Ready(None);
        };
        match std::pin::Pin::new(outcome).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.outcome = None;
                let error = match result {
                    Ok(Ok(())) => return Poll::Ready(None),
                    Ok(Err(error)) => error,
                    Err(_) => InvokeError::Trap {
                        worker: self.worker.name.to_string(),
                        reason: "the worker's task ended abnormally".to_owned(),
                    },
                };
                // A failure after the head breaks the body; the log says why.
                self.worker.metrics.failed(&error);
                tracing::warn!(target: "outpost::worker", worker = %self.worker.name, request_id = %self.request_id, "after the response head: {error}");
                Poll::Ready(Some(Err(
                    "the worker failed before finishing the body".into()
                )))
            }
        }
    }
}
