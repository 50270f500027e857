//! Resource limits and usage accounting: a store limiter for memory (exceeding it is
//! `OOMKilled`) that also reports each instance's memory to its pod and container, and a CPU
//! meter that charges the thread CPU time a guest runs for to its pod and container and
//! throttles a pod over its CFS-like quota.
//!
//! What is counted:
//! - CPU: the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) across every poll of an
//!   instance's future (instantiation, the guest's code and the host calls it makes inline), so
//!   time the thread is preempted or the guest waits is not charged.
//! - Memory: for every live instance (running, serving a request, or idle and kept for reuse)
//!   the sizes of its linear memories and tables (elements × pointer size) plus a fixed
//!   [`INSTANCE_BOOKKEEPING_BYTES`] for the engine's own state of that instance.
//!
//! Accounting is done with relaxed atomics and one thread-CPU clock read at each poll's start
//! and end; `SKIFF_USAGE_ACCOUNTING=off` in the node's environment (read once) turns it off for
//! benchmarking its cost, and CPU limits with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::status::PodUsage;

/// The engine's bookkeeping charged per live instance on top of its memories and tables: an
/// estimate of what a typical instance keeps resident besides its linear memory (the touched
/// pages of its fiber stack, its `vmctx`, the store and its WASI and HTTP contexts).
pub(crate) const INSTANCE_BOOKKEEPING_BYTES: u64 = 64 << 10;

/// Bytes one table element takes (a pointer).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Whether usage accounting is on (`SKIFF_USAGE_ACCOUNTING=off` turns it off; read once).
pub(crate) static ACCOUNTING: LazyLock<bool> = LazyLock::new(|| {
    !matches!(
        std::env::var("SKIFF_USAGE_ACCOUNTING").as_deref(),
        Ok("off" | "0" | "false")
    )
});

/// CPU time the calling thread has used, in nanoseconds.
pub(crate) fn thread_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// Usage of one container, shared by all its instances.
#[derive(Default)]
pub(crate) struct ContainerMeter {
    cpu_nanos: AtomicU64,
    memory_bytes: AtomicU64,
    oom_kills: AtomicU64,
    requests_total: AtomicU64,
}

impl ContainerMeter {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ContainerMeter::default())
    }

    pub(crate) fn cpu_nanos(&self) -> u64 {
        self.cpu_nanos.load(Ordering::Relaxed)
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn oom_kills(&self) -> u64 {
        self.oom_kills.load(Ordering::Relaxed)
    }

    pub(crate) fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }

    /// Counts one request served (answered or failed).
    pub(crate) fn request_done(&self) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
    }

    fn add_memory(&self, delta: i64) {
        add_signed(&self.memory_bytes, delta);
    }
}

fn add_signed(counter: &AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

/// Length of one CPU quota period, as CFS uses by default.
pub(crate) const CPU_PERIOD: Duration = Duration::from_millis(100);

/// CPU and memory accounting of one pod, shared by all its instances.
pub(crate) struct PodMeter {
    cpu_nanos: AtomicU64,
    throttled_nanos: AtomicU64,
    memory_bytes: AtomicU64,
    oom_kills: AtomicU64,
    /// CPU time allowed per period in nanoseconds; 0 means unlimited.
    quota_nanos: AtomicU64,
    period: Mutex<Period>,
}

struct Period {
    start: Instant,
    used: u64,
}

impl PodMeter {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(PodMeter {
            cpu_nanos: AtomicU64::new(0),
            throttled_nanos: AtomicU64::new(0),
            memory_bytes: AtomicU64::new(0),
            oom_kills: AtomicU64::new(0),
            quota_nanos: AtomicU64::new(0),
            period: Mutex::new(Period {
                start: Instant::now(),
                used: 0,
            }),
        })
    }

    /// Sets the pod's CPU limit in millicores (`None`: unlimited).
    pub(crate) fn set_cpu_limit(&self, millis: Option<u64>) {
        let quota = match millis {
            Some(m) => (CPU_PERIOD.as_nanos() as u64).saturating_mul(m.max(1)) / 1000,
            None => 0,
        };
        self.quota_nanos.store(quota, Ordering::Relaxed);
    }

    pub(crate) fn usage(&self) -> PodUsage {
        PodUsage {
            cpu_nanos: self.cpu_nanos.load(Ordering::Relaxed),
            throttled_nanos: self.throttled_nanos.load(Ordering::Relaxed),
            memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
            oom_kills: self.oom_kills.load(Ordering::Relaxed),
            ..PodUsage::default()
        }
    }

    /// Charges `nanos` of CPU time; returns when the pod may run again if it is over quota.
    fn charge(&self, nanos: u64, now: Instant) -> Option<Instant> {
        self.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
        let quota = self.quota_nanos.load(Ordering::Relaxed);
        if quota == 0 {
            return None;
        }
        let mut p = self.period.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(p.start);
        if elapsed >= CPU_PERIOD {
            let periods = (elapsed.as_nanos() / CPU_PERIOD.as_nanos()) as u64;
            // Carry over only the overshoot of a throttled period (the epoch tick is coarse).
            p.used = p.used.saturating_sub(quota.saturating_mul(periods));
            p.start += CPU_PERIOD * periods.min(u32::MAX as u64) as u32;
        }
        p.used = p.used.saturating_add(nanos);
        if p.used >= quota {
            let periods_owed = p.used / quota;
            Some(p.start + CPU_PERIOD * periods_owed.min(u32::MAX as u64) as u32)
        } else {
            None
        }
    }

    fn add_memory(&self, delta: i64) {
        add_signed(&self.memory_bytes, delta);
    }
}

/// No mark: the guest is not being polled.
const NO_MARK: u64 = u64::MAX;

/// Metering of one running instance: the thread-CPU-time mark shared between the future
/// wrapper ([`Metered`]) and the store's epoch callback (both run on the polling thread), and
/// a kill switch.
pub(crate) struct RunMeter {
    pod: Arc<PodMeter>,
    container: Arc<ContainerMeter>,
    mark: AtomicU64,
    killed: AtomicBool,
}

impl RunMeter {
    pub(crate) fn new(pod: Arc<PodMeter>, container: Arc<ContainerMeter>) -> Arc<Self> {
        Arc::new(RunMeter {
            pod,
            container,
            mark: AtomicU64::new(NO_MARK),
            killed: AtomicBool::new(false),
        })
    }

    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    fn begin(&self) {
        if *ACCOUNTING {
            self.mark.store(thread_cpu_nanos(), Ordering::Relaxed);
        }
    }

    fn end(&self) {
        if !*ACCOUNTING {
            return;
        }
        let mark = self.mark.swap(NO_MARK, Ordering::Relaxed);
        if mark != NO_MARK {
            let used = thread_cpu_nanos().saturating_sub(mark);
            self.charge(used, Instant::now());
        }
    }

    fn charge(&self, nanos: u64, now: Instant) -> Option<Instant> {
        self.container.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.pod.charge(nanos, now)
    }

    /// Called from the epoch callback while the guest runs (on the thread polling it): charges
    /// the CPU time since the last mark and returns the instant until which the pod must sleep,
    /// if it is over quota.
    pub(crate) fn checkpoint(&self) -> Option<Instant> {
        if !*ACCOUNTING {
            return None;
        }
        let cpu = thread_cpu_nanos();
        let since = self.mark.swap(cpu, Ordering::Relaxed);
        let used = if since == NO_MARK {
            0
        } else {
            cpu.saturating_sub(since)
        };
        let now = Instant::now();
        let until = self.charge(used, now)?;
        let throttled = until.saturating_duration_since(now);
        self.pod
            .throttled_nanos
            .fetch_add(throttled.as_nanos() as u64, Ordering::Relaxed);
        Some(until)
    }
}

/// A future wrapper charging the thread CPU time spent inside `poll` (which is where the guest
/// runs, on its fiber) to the pod and container.
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Arc<RunMeter>,
}

impl<F: Future> Metered<F> {
    pub(crate) fn new(meter: Arc<RunMeter>, inner: F) -> Self {
        Metered {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.meter.begin();
        let out = self.inner.as_mut().poll(cx);
        self.meter.end();
        out
    }
}

/// The trap raised in a guest that is killed while it runs.
#[derive(Debug, thiserror::Error)]
#[error("killed")]
pub(crate) struct Killed;

/// The error a limiter raises when an instance exceeds its memory limit.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (wanted {wanted} bytes)")]
pub(crate) struct OutOfMemory {
    pub(crate) limit: usize,
    pub(crate) wanted: usize,
}

/// The error a limiter raises when a table would grow past the node's table element limit.
#[derive(Debug, thiserror::Error)]
#[error("table limit of {limit} elements exceeded (wanted {wanted} elements)")]
pub(crate) struct TableLimit {
    pub(crate) limit: usize,
    pub(crate) wanted: usize,
}

/// Store limiter: caps the sum of an instance's linear memories and reports the instance's
/// memory (linear memories, tables, [`INSTANCE_BOOKKEEPING_BYTES`]) to its pod and container
/// for as long as it lives.
pub(crate) struct MemLimiter {
    limit: Option<usize>,
    total: usize,
    tables: usize,
    /// Most elements of one table.
    max_table_elements: usize,
    pub(crate) oom: bool,
    /// Set once a table was refused growth past `max_table_elements`.
    pub(crate) table_exceeded: bool,
    pod: Arc<PodMeter>,
    container: Arc<ContainerMeter>,
}

impl MemLimiter {
    pub(crate) fn new(
        limit: Option<u64>,
        max_table_elements: u32,
        pod: Arc<PodMeter>,
        container: Arc<ContainerMeter>,
    ) -> Self {
        let l = MemLimiter {
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            total: 0,
            tables: 0,
            max_table_elements: max_table_elements as usize,
            oom: false,
            table_exceeded: false,
            pod,
            container,
        };
        l.add(INSTANCE_BOOKKEEPING_BYTES as i64);
        l
    }

    fn add(&self, delta: i64) {
        if delta != 0 {
            self.pod.add_memory(delta);
            self.container.add_memory(delta);
        }
    }
}

impl wasmtime::ResourceLimiter for MemLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let new_total = self.total.saturating_sub(current).saturating_add(desired);
        if let Some(limit) = self.limit
            && new_total > limit
        {
            self.oom = true;
            self.pod.oom_kills.fetch_add(1, Ordering::Relaxed);
            self.container.oom_kills.fetch_add(1, Ordering::Relaxed);
            return Err(wasmtime::Error::new(OutOfMemory {
                limit,
                wanted: new_total,
            }));
        }
        self.add(new_total as i64 - self.total as i64);
        self.total = new_total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            self.table_exceeded = true;
            return Err(wasmtime::Error::new(TableLimit {
                limit: self.max_table_elements,
                wanted: desired,
            }));
        }
        let grown = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        self.tables = self.tables.saturating_add(grown);
        self.add(grown as i64);
        Ok(true)
    }
}

impl Drop for MemLimiter {
    fn drop(&mut self) {
        self.add(-((self.total + self.tables) as i64 + INSTANCE_BOOKKEEPING_BYTES as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_throttles_after_budget() {
        let pod = PodMeter::new();
        pod.set_cpu_limit(Some(200)); // 20 ms per 100 ms
        let t0 = Instant::now();
        assert!(pod.charge(10_000_000, t0).is_none());
        let until = pod.charge(15_000_000, t0).expect("over quota");
        assert!(until >= t0 + CPU_PERIOD - Duration::from_millis(1));
        assert_eq!(pod.usage().cpu_nanos, 25_000_000);
        // In the next period the overshoot (5 ms) is carried, 15 ms remain.
        assert!(pod.charge(10_000_000, t0 + CPU_PERIOD).is_none());
    }

    #[test]
    fn unlimited_never_throttles() {
        let pod = PodMeter::new();
        assert!(pod.charge(1_000_000_000, Instant::now()).is_none());
    }

    #[test]
    fn limiter_flags_oom_and_tracks_usage() {
        use wasmtime::ResourceLimiter;
        let pod = PodMeter::new();
        let container = ContainerMeter::new();
        let mut l = MemLimiter::new(Some(1 << 20), 1000, pod.clone(), container.clone());
        assert_eq!(pod.usage().memory_bytes, INSTANCE_BOOKKEEPING_BYTES);
        assert!(l.memory_growing(0, 65536, None).unwrap());
        assert_eq!(pod.usage().memory_bytes, 65536 + INSTANCE_BOOKKEEPING_BYTES);
        assert_eq!(container.memory_bytes(), 65536 + INSTANCE_BOOKKEEPING_BYTES);
        assert!(l.table_growing(0, 10, None).unwrap());
        let table = 10 * TABLE_ELEMENT_BYTES as u64;
        assert_eq!(
            container.memory_bytes(),
            65536 + table + INSTANCE_BOOKKEEPING_BYTES
        );
        assert!(l.memory_growing(65536, 2 << 20, None).is_err());
        assert!(l.oom);
        assert!(!l.table_exceeded);
        assert!(l.table_growing(10, 1001, None).is_err());
        assert!(l.table_exceeded);
        drop(l);
        assert_eq!(pod.usage().memory_bytes, 0);
        assert_eq!(container.memory_bytes(), 0);
        assert_eq!(pod.usage().oom_kills, 1);
        assert_eq!(container.oom_kills(), 1);
    }

    #[test]
    fn two_instances_of_a_container_add_up_and_go_away() {
        use wasmtime::ResourceLimiter;
        let pod = PodMeter::new();
        let (a, b) = (ContainerMeter::new(), ContainerMeter::new());
        let mut la = MemLimiter::new(None, 1000, pod.clone(), a.clone());
        let mut la2 = MemLimiter::new(None, 1000, pod.clone(), a.clone());
        let mut lb = MemLimiter::new(None, 1000, pod.clone(), b.clone());
        la.memory_growing(0, 1 << 20, None).unwrap();
        la2.memory_growing(0, 2 << 20, None).unwrap();
        lb.memory_growing(0, 65536, None).unwrap();
        assert_eq!(a.memory_bytes(), (3 << 20) + 2 * INSTANCE_BOOKKEEPING_BYTES);
        assert_eq!(b.memory_bytes(), 65536 + INSTANCE_BOOKKEEPING_BYTES);
        assert_eq!(
            pod.usage().memory_bytes,
            a.memory_bytes() + b.memory_bytes()
        );
        drop(la2);
        assert_eq!(a.memory_bytes(), (1 << 20) + INSTANCE_BOOKKEEPING_BYTES);
        drop((la, lb));
        assert_eq!(pod.usage().memory_bytes, 0);
    }

    /// Burns the calling thread's CPU for about `ms` milliseconds of its own CPU time.
    fn burn_cpu(ms: u64) {
        let start = thread_cpu_nanos();
        let mut x = 1u64;
        while thread_cpu_nanos() - start < ms * 1_000_000 {
            for _ in 0..1000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    }

    #[test]
    fn a_busy_poll_is_charged_its_cpu_time_and_a_sleeping_one_nothing() {
        if !*ACCOUNTING {
            println!("skipped: SKIFF_USAGE_ACCOUNTING is off");
            return;
        }
        let pod = PodMeter::new();
        let (busy, idle) = (ContainerMeter::new(), ContainerMeter::new());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let busy_run = RunMeter::new(pod.clone(), busy.clone());
        let idle_run = RunMeter::new(pod.clone(), idle.clone());
        rt.block_on(async {
            Metered::new(busy_run, async { burn_cpu(50) }).await;
            Metered::new(idle_run, tokio::time::sleep(Duration::from_millis(50))).await;
        });
        // At least the 50 ms burned (its own thread CPU clock), and not the idle container's
        // 50 ms of sleep.
        assert!(busy.cpu_nanos() >= 50_000_000, "{}", busy.cpu_nanos());
        assert!(idle.cpu_nanos() < 5_000_000, "{}", idle.cpu_nanos());
        assert_eq!(pod.usage().cpu_nanos, busy.cpu_nanos() + idle.cpu_nanos());
    }

    #[test]
    fn checkpoints_charge_cpu_between_polls_once() {
        if !*ACCOUNTING {
            println!("skipped: SKIFF_USAGE_ACCOUNTING is off");
            return;
        }
        let pod = PodMeter::new();
        let c = ContainerMeter::new();
        let run = RunMeter::new(pod.clone(), c.clone());
        // Outside a poll a checkpoint charges nothing.
        assert!(run.checkpoint().is_none());
        assert_eq!(c.cpu_nanos(), 0);
        run.begin();
        burn_cpu(20);
        run.checkpoint();
        let at_checkpoint = c.cpu_nanos();
        assert!(at_checkpoint >= 20_000_000, "{at_checkpoint}");
        burn_cpu(20);
        run.end();
        let total = c.cpu_nanos();
        assert!(total >= 40_000_000, "{total}");
        // What the checkpoint charged is not charged again at the end.
        assert!(
            total - at_checkpoint < 30_000_000,
            "{total} after {at_checkpoint}"
        );
    }
}
