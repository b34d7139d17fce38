//! The wasmtime engine every worker of a process shares: the pooling allocator with
//! copy-on-write memory images (a fresh instance per request costs microseconds), epoch
//! interruption ticking every millisecond (the CPU-time deadline), an on-disk cache of compiled
//! code (a restart does not recompile), and the linker with WASI, wasi:http, wasi:config and
//! wasi:keyvalue.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::error::DeployError;
use crate::host::HostState;
use crate::spec::MAX_MEMORY_MIB;

/// One epoch tick; CPU-time limits are counted in ticks.
pub(crate) const TICK: Duration = Duration::from_millis(1);
/// Instances that may exist at once in the process (all workers together).
const TOTAL_INSTANCES: u32 = 1000;

/// The engine and linker shared by every worker of the process.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    stop: Arc<AtomicBool>,
    /// Stores alive now; the epoch ticks only while there is one.
    running: Arc<AtomicUsize>,
    /// The epoch thread, woken when the first store of a quiet spell is made.
    ticker: std::thread::Thread,
}

/// Keeps the epoch ticking while it lives: one per store (it lives in the store's state, so it
/// goes with the store).
pub(crate) struct Ticking {
    running: Arc<AtomicUsize>,
}

impl Drop for Ticking {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// An engine whose compiled code is cached in `cache_dir` (none with `None`).
    pub fn new(cache_dir: Option<&Path>) -> Result<Arc<Self>, DeployError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.memory_init_cow(true);
        // wasi:http/proxy 0.2 calls are synchronous from the guest's side: without the
        // bookkeeping for component-model async tasks, a host call costs less.
        config.concurrency_support(false);
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(TOTAL_INSTANCES)
            .total_core_instances(TOTAL_INSTANCES * 4)
            .total_memories(TOTAL_INSTANCES * 2)
            .total_tables(TOTAL_INSTANCES * 4)
            .total_stacks(TOTAL_INSTANCES)
            .max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024)
            // Find the pages an instance wrote (PAGEMAP_SCAN, Linux 6.7 and later) and copy
            // them back from the image in place, up to a limit, instead of handing them back
            // to the kernel: the next instance in the slot then takes no page faults and no
            // TLB shootdowns. Without the ioctl, the first pages are reset in place and the
            // rest returned in batches.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(1024 * 1024)
            .table_keep_resident(256 * 1024)
            .decommit_batch_size(32);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        if let Some(dir) = cache_dir {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            let cache = wasmtime::Cache::new(cache).map_err(|e| {
                DeployError::Storage(format!("compiled-code cache in {}: {e}", dir.display()))
            })?;
            config.cache(Some(cache));
        }
        let engine =
            Engine::new(&config).map_err(|e| DeployError::Compile(format!("engine: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        let link = |result: wasmtime::Result<()>| {
            result.map_err(|e| DeployError::Compile(format!("linker: {e:#}")))
        };
        // Full WASI (guests built with std import wasi:cli too), then only the HTTP part.
        link(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
        link(wasmtime_wasi_http::p2::add_only_http_to_linker_async(
            &mut linker,
        ))?;
        link(wasmtime_wasi_config::add_to_linker(
            &mut linker,
            HostState::config,
        ))?;
        link(crate::kv::add_to_linker(&mut linker, HostState::kv))?;

        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        let weak = engine.weak();
        let (stopped, alive) = (stop.clone(), running.clone());
        // Ticks every millisecond while a guest may run, and sleeps otherwise: an idle edge
        // spends no CPU on it (it took about 24 ms of CPU a second when it always ticked).
        let ticker = std::thread::Builder::new()
            .name("outpost-epoch".to_owned())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    if alive.load(Ordering::SeqCst) == 0 {
                        std::thread::park_timeout(Duration::from_secs(1));
                        continue;
                    }
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| DeployError::Compile(format!("epoch thread: {e}")))?
            .thread()
            .clone();
        Ok(Arc::new(Self {
            engine,
            linker,
            stop,
            running,
            ticker,
        }))
    }

    /// The epoch ticks until the returned guard is dropped.
    pub(crate) fn ticking(&self) -> Ticking {
        if self.running.fetch_add(1, Ordering::SeqCst) == 0 {
            self.ticker.unpark();
        }
        Ticking {
            running: self.running.clone(),
        }
    }

    /// Checks that `bytes` is a wasi:http/proxy component that compiles and links here.
    pub fn validate(&self, bytes: &[u8]) -> Result<(), DeployError> {
        self.compile(bytes).map(|_| ())
    }

    /// Checks that `bytes` is a wasi:http/proxy component and compiles it (from the cache when
    /// it was compiled before), ready to instantiate per request.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<ProxyPre<HostState>, DeployError> {
        check_header(bytes)?;
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| DeployError::Compile(format!("{e:#}")))?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        if !exports
            .iter()
            .any(|name| name.starts_with("wasi:http/incoming-handler@0.2"))
        {
            return Err(DeployError::WrongWorld(if exports.is_empty() {
                "it exports nothing".to_owned()
            } else {
                format!("it exports {}", exports.join(", "))
            }));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| DeployError::Compile(format!("{e:#}")))?;
        ProxyPre::new(pre).map_err(|e| DeployError::WrongWorld(format!("{e:#}")))
    }
}

/// A component starts with `\0asm`, then version 0x0d and layer 1; a core module has version 1
/// and layer 0.
pub fn check_header(bytes: &[u8]) -> Result<(), DeployError> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(DeployError::NotAComponent),
        _ => Err(DeployError::NotWasm),
    }
}
