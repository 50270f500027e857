//! The node's wasmtime engine: pooling allocator sized by probing the address space and the
//! node's memory, copy-on-write memory images, and an epoch ticker thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use crate::error::{Error, Result};

/// What the engine was sized for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Pods this node can hold (the Node's `pods` allocatable).
    pub pods: u32,
    /// Instances that can be live at once (running commands plus in-flight requests).
    pub instances: u32,
    /// Largest linear memory one instance may have, in bytes (the highest memory limit a
    /// container may ask for).
    pub max_memory_per_instance: u64,
}

/// Sizing inputs (from [`RuntimeConfig`](super::RuntimeConfig)).
pub(crate) struct Sizing {
    pub(crate) node_memory_bytes: u64,
    pub(crate) max_pods: u32,
    pub(crate) max_instances: u32,
    pub(crate) max_memory_per_instance: u64,
    /// Elements of the largest table (see [`GuestLimits`](super::GuestLimits)).
    pub(crate) max_table_elements: u32,
}

/// Smallest pool worth running.
const MIN_INSTANCES: u32 = 8;
/// Core instances, memories and tables per component instance (components built by
/// componentize-py and friends have many).
const CORE_PER_COMPONENT: u32 = 12;
const MEMORIES_PER_COMPONENT: u32 = 3;
const TABLES_PER_COMPONENT: u32 = 6;
/// Bytes of each linear memory slot reset in place rather than decommitted (covers the
/// stack and first heap pages of a typical Rust or C guest).
const KEEP_RESIDENT: usize = 2 << 20;
/// Guard region after each linear memory (also covers bounds-check elision of small offsets).
const GUARD: u64 = 32 << 20;
/// Wasm stack one instance may use (wasmtime's default, set here so that the reported reason
/// can name it); deeper recursion traps with `StackOverflow`. Below the fiber stack size (2 MiB).
pub(crate) const MAX_WASM_STACK: usize = 512 << 10;

fn config_for(instances: u32, max_memory: u64, max_table_elements: u32) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_PER_COMPONENT))
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(instances)
        .max_memories_per_component(16)
        .max_tables_per_component(32)
        .max_core_instances_per_component(64)
        .max_memories_per_module(2)
        .max_tables_per_module(8)
        .table_elements(max_table_elements as usize)
        .max_component_instance_size(4 << 20)
        .max_core_instance_size(4 << 20)
        .max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX))
        // Reset a slot's memory in place (only its dirty pages, found with PAGEMAP_SCAN where
        // the kernel has it) instead of `madvise`: a fresh instance per request then takes no
        // page faults and the node no TLB shootdowns.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto)
        .max_unused_warm_slots(instances.min(100));

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .parallel_compilation(true)
        .memory_init_cow(true)
        .memory_reservation(max_memory.max(64 << 10))
        .memory_guard_size(GUARD)
        .memory_reservation_for_growth(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Builds the engine, halving the pool until the address-space reservation succeeds.
pub(crate) fn build(sizing: &Sizing) -> Result<(Engine, Capacity)> {
    let max_memory = sizing
        .max_memory_per_instance
        .min(sizing.node_memory_bytes.max(64 << 20))
        .clamp(1 << 20, 4 << 30)
        // Whole wasm pages.
        / 65536
        * 65536;
    let mut instances = sizing.max_instances.max(MIN_INSTANCES);
    let mut last_err;
    loop {
        match Engine::new(&config_for(
            instances,
            max_memory,
            sizing.max_table_elements.max(1),
        )) {
            Ok(engine) => {
                let capacity = Capacity {
                    pods: sizing.max_pods,
                    instances,
                    max_memory_per_instance: max_memory,
                };
                tracing::info!(
                    instances,
                    max_memory,
                    "wasm engine ready with pooling allocator"
                );
                return Ok((engine, capacity));
            }
            Err(e) => {
                last_err = format!("{e:#}");
                if instances <= MIN_INSTANCES {
                    break;
                }
                tracing::debug!(instances, error = %last_err, "pool reservation failed; halving");
                instances = (instances / 2).max(MIN_INSTANCES);
            }
        }
    }
    Err(Error::Engine(format!(
        "cannot reserve a pooling allocator for {MIN_INSTANCES} instances: {last_err}"
    )))
}

/// Ticks the engine's epoch on a plain thread holding only a weak reference.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(engine: EngineWeak, tick: Duration) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("skiff-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| Error::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Ticker {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
