//! Resource limits: a store limiter for memory (exceeding it is `OOMKilled`) and a per-pod
//! CPU meter that charges guest execution time and throttles a pod over its CFS-like quota.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::status::PodUsage;

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
        if delta >= 0 {
            self.memory_bytes.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.memory_bytes
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }
}

/// Metering of one running instance: the execution-time mark shared between the future
/// wrapper ([`Metered`]) and the store's epoch callback, and a kill switch.
pub(crate) struct RunMeter {
    pod: Arc<PodMeter>,
    mark: Mutex<Option<Instant>>,
    killed: AtomicBool,
}

impl RunMeter {
    pub(crate) fn new(pod: Arc<PodMeter>) -> Arc<Self> {
        Arc::new(RunMeter {
            pod,
            mark: Mutex::new(None),
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
        *self.mark.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn end(&self) {
        let mark = self.mark.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mark) = mark {
            let now = Instant::now();
            self.pod
                .charge(now.saturating_duration_since(mark).as_nanos() as u64, now);
        }
    }

    /// Called from the epoch callback while the guest runs: charges the time since the last
    /// mark and returns the instant until which the pod must sleep, if it is over quota.
    pub(crate) fn checkpoint(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut mark = self.mark.lock().unwrap_or_else(|e| e.into_inner());
        let since = mark.replace(now).unwrap_or(now);
        drop(mark);
        let until = self
            .pod
            .charge(now.saturating_duration_since(since).as_nanos() as u64, now)?;
        let throttled = until.saturating_duration_since(now);
        self.pod
            .throttled_nanos
            .fetch_add(throttled.as_nanos() as u64, Ordering::Relaxed);
        Some(until)
    }
}

/// A future wrapper charging the wall time spent inside `poll` (which is where the guest runs,
/// on its fiber) to the pod.
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

/// Store limiter: caps the sum of an instance's linear memories and reports usage to the pod.
pub(crate) struct MemLimiter {
    limit: Option<usize>,
    total: usize,
    pub(crate) oom: bool,
    pod: Arc<PodMeter>,
}

impl MemLimiter {
    pub(crate) fn new(limit: Option<u64>, pod: Arc<PodMeter>) -> Self {
        MemLimiter {
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            total: 0,
            oom: false,
            pod,
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
            return Err(wasmtime::Error::new(OutOfMemory {
                limit,
                wanted: new_total,
            }));
        }
        self.pod.add_memory(new_total as i64 - self.total as i64);
        self.total = new_total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl Drop for MemLimiter {
    fn drop(&mut self) {
        self.pod.add_memory(-(self.total as i64));
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
        let mut l = MemLimiter::new(Some(1 << 20), pod.clone());
        assert!(l.memory_growing(0, 65536, None).unwrap());
        assert_eq!(pod.usage().memory_bytes, 65536);
        assert!(l.memory_growing(65536, 2 << 20, None).is_err());
        assert!(l.oom);
        drop(l);
        assert_eq!(pod.usage().memory_bytes, 0);
        assert_eq!(pod.usage().oom_kills, 1);
    }
}
