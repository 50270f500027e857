//! Per-pod guards against hostile or runaway guests that the engine's own limits (memory, CPU,
//! stack, tables) do not cover: a cap on a pod's concurrent HTTP instances, a rate and a
//! concurrency cap on its outgoing requests, a log rate per container run, and a deadline for a
//! request's response. Each guard throttles or refuses the one pod, notes it in the container's
//! log and records a [`LimitEvent`] the node reports as a Warning Event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::logs::{LogStreamKind, RunLog};

/// Limits on what one guest may do, beyond its memory and CPU limits. Part of
/// [`RuntimeConfig`](super::RuntimeConfig); the node sets them from its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLimits {
    /// Most elements one table may have (also the pooling allocator's per-table size). Growing
    /// a table past it ends the run (`TableLimitExceeded`); declaring a larger table is refused
    /// when the container is created.
    pub max_table_elements: u32,
    /// Bytes per second a container run may write to stdout and stderr together (a token bucket
    /// holding one second's worth); the excess is dropped with a note in the log (`0`: no
    /// limit).
    pub log_bytes_per_second: u64,
    /// Most instances serving HTTP requests in one pod at once; requests past it answer 503
    /// (`0`: the engine's capacity only).
    pub max_instances_per_pod: u32,
    /// Outgoing HTTP requests per second one pod may start (a token bucket holding one second's
    /// worth); faster requests wait for their turn (`0`: no limit).
    pub outgoing_requests_per_second: u32,
    /// Most outgoing HTTP requests of one pod waiting for their response at once; more fail
    /// with `connection-limit-reached` (`0`: no limit).
    pub max_outgoing_requests_per_pod: u32,
    /// How long a pod may take to start answering a request (the response head) before the
    /// request's instance is killed and the caller answered 504 (`None`: no deadline).
    pub request_timeout: Option<Duration>,
    /// Connect, first-byte and between-bytes timeouts of outgoing requests that leave the node,
    /// unless the guest sets its own.
    pub outgoing_timeout: Duration,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            max_table_elements: 100_000,
            log_bytes_per_second: 1 << 20,
            max_instances_per_pod: 100,
            outgoing_requests_per_second: 10_000,
            max_outgoing_requests_per_pod: 100,
            request_timeout: Some(Duration::from_secs(60)),
            outgoing_timeout: Duration::from_secs(60),
        }
    }
}

/// Event reason: a container's output was dropped by the log rate limit.
pub const LOG_RATE_LIMITED: &str = "LogRateLimited";
/// Event reason: a request was refused because the pod had its most concurrent instances.
pub const INSTANCE_LIMIT_EXCEEDED: &str = "InstanceLimitExceeded";
/// Event reason: outgoing requests waited for the pod's outgoing request rate.
pub const OUTGOING_REQUESTS_THROTTLED: &str = "OutgoingRequestsThrottled";
/// Event reason: an outgoing request was refused because the pod had its most in flight.
pub const OUTGOING_REQUEST_LIMIT_EXCEEDED: &str = "OutgoingRequestLimitExceeded";
/// Event reason: a request's instance was killed for not answering within the deadline.
pub const REQUEST_TIMEOUT: &str = "RequestTimeout";

/// A limit a running container hit: throttled or refused, the container kept running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitEvent {
    /// The container.
    pub container: String,
    /// A CamelCase reason, one of this module's constants (for example `LogRateLimited`).
    pub reason: String,
    /// What happened, with the limit and counts.
    pub message: String,
}

/// The same reason of the same container is reported at most this often.
const EVENT_INTERVAL: Duration = Duration::from_secs(10);
/// Pending events kept for the node at most (older ones are dropped).
const MAX_PENDING: usize = 64;

/// A token bucket refilled at `rate` per second up to `rate` (one second's worth).
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        Bucket {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
    }

    /// Takes `n` tokens if there are that many; more than the bucket holds are taken from a
    /// full bucket, into debt (so that one write larger than a second's worth is not refused
    /// forever, and what follows it waits until the debt is paid).
    fn try_take(&mut self, n: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n.min(self.rate) {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens, going into debt: returns how long the caller must wait for them.
    fn reserve(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The guards of one pod.
pub(crate) struct PodGuard {
    pub(crate) limits: GuestLimits,
    instances: AtomicU32,
    outgoing: AtomicU32,
    outgoing_rate: Option<Mutex<Bucket>>,
    /// Counts of refusals and throttles, by reason (for the event messages).
    counts: Mutex<HashMap<&'static str, u64>>,
    pending: Mutex<Vec<LimitEvent>>,
    last: Mutex<HashMap<(String, &'static str), Instant>>,
    /// Bumped whenever an event is pending.
    notify: watch::Sender<u64>,
}

impl PodGuard {
    /// Guards with `limits`, the instance cap bounded by the engine's `capacity`.
    pub(crate) fn new(mut limits: GuestLimits, capacity: u32) -> Arc<Self> {
        if limits.max_instances_per_pod == 0 || limits.max_instances_per_pod > capacity {
            limits.max_instances_per_pod = capacity;
        }
        let outgoing_rate = (limits.outgoing_requests_per_second > 0)
            .then(|| Mutex::new(Bucket::new(f64::from(limits.outgoing_requests_per_second))));
        Arc::new(PodGuard {
            limits,
            instances: AtomicU32::new(0),
            outgoing: AtomicU32::new(0),
            outgoing_rate,
            counts: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            last: Mutex::new(HashMap::new()),
            notify: watch::channel(0).0,
        })
    }

    /// Counts one more of `reason`; returns the total.
    fn count(&self, reason: &'static str, n: u64) -> u64 {
        let mut counts = lock(&self.counts);
        let c = counts.entry(reason).or_insert(0);
        *c += n;
        *c
    }

    /// Records an event for the node unless the same one was recorded recently; returns
    /// whether it was (so callers note it in the log at the same pace).
    pub(crate) fn report(&self, container: &str, reason: &'static str, message: String) -> bool {
        let now = Instant::now();
        {
            let mut last = lock(&self.last);
            let key = (container.to_string(), reason);
            if last
                .get(&key)
                .is_some_and(|t| now.saturating_duration_since(*t) < EVENT_INTERVAL)
            {
                return false;
            }
            last.insert(key, now);
        }
        tracing::warn!(container, reason, %message, "guest limit");
        let mut pending = lock(&self.pending);
        if pending.len() >= MAX_PENDING {
            pending.remove(0);
        }
        pending.push(LimitEvent {
            container: container.to_string(),
            reason: reason.to_string(),
            message,
        });
        self.notify.send_modify(|n| *n = n.wrapping_add(1));
        true
    }

    /// The events recorded since the last call.
    pub(crate) fn take_events(&self) -> Vec<LimitEvent> {
        std::mem::take(&mut *lock(&self.pending))
    }

    /// Changes whenever events are pending.
    pub(crate) fn watch_events(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// A slot for one more HTTP instance, or `None` at the cap (reported).
    pub(crate) fn instance_slot(self: &Arc<Self>, container: &str) -> Option<InstanceSlot> {
        let max = self.limits.max_instances_per_pod;
        let taken = self
            .instances
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_ok() {
            return Some(InstanceSlot(self.clone()));
        }
        let refused = self.count(INSTANCE_LIMIT_EXCEEDED, 1);
        self.report(
            container,
            INSTANCE_LIMIT_EXCEEDED,
            format!(
                "the pod has {max} instances serving requests, its limit: requests past it \
                 answer 503 ({refused} refused so far)"
            ),
        );
        None
    }

    /// Admits one outgoing request: `Err` at the concurrency cap (reported), else a permit to
    /// hold until the response head arrives and how long to wait for the rate first.
    pub(crate) fn outgoing(
        self: &Arc<Self>,
        container: &str,
    ) -> std::result::Result<(OutgoingPermit, Duration), ()> {
        let max = self.limits.max_outgoing_requests_per_pod;
        if max > 0 {
            let taken = self
                .outgoing
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                });
            if taken.is_err() {
                let refused = self.count(OUTGOING_REQUEST_LIMIT_EXCEEDED, 1);
                self.report(
                    container,
                    OUTGOING_REQUEST_LIMIT_EXCEEDED,
                    format!(
                        "the pod has {max} outgoing requests in flight, its limit: more fail \
                         with connection-limit-reached ({refused} refused so far)"
                    ),
                );
                return Err(());
            }
        } else {
            self.outgoing.fetch_add(1, Ordering::AcqRel);
        }
        let permit = OutgoingPermit(self.clone());
        let wait = match &self.outgoing_rate {
            Some(bucket) => lock(bucket).reserve(1.0, Instant::now()),
            None => Duration::ZERO,
        };
        if !wait.is_zero() {
            let throttled = self.count(OUTGOING_REQUESTS_THROTTLED, 1);
            self.report(
                container,
                OUTGOING_REQUESTS_THROTTLED,
                format!(
                    "outgoing requests are faster than the pod's limit of {} per second: they \
                     wait for their turn ({throttled} delayed so far)",
                    self.limits.outgoing_requests_per_second
                ),
            );
        }
        Ok((permit, wait))
    }

    /// The log limiter of one run of `container` (`None`: no log rate limit).
    pub(crate) fn log_limiter(
        self: &Arc<Self>,
        container: &str,
        log: &Arc<RunLog>,
    ) -> Option<Arc<LogLimiter>> {
        let rate = self.limits.log_bytes_per_second;
        (rate > 0).then(|| {
            Arc::new(LogLimiter {
                bucket: Mutex::new(Bucket::new(rate as f64)),
                rate,
                dropped: AtomicU64::new(0),
                dropped_total: AtomicU64::new(0),
                dropping: AtomicBool::new(false),
                guard: self.clone(),
                container: container.to_string(),
                log: log.clone(),
            })
        })
    }
}

/// One HTTP instance of a pod, counted until dropped.
pub(crate) struct InstanceSlot(Arc<PodGuard>);

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        self.0.instances.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One outgoing request of a pod, counted until dropped.
pub(crate) struct OutgoingPermit(Arc<PodGuard>);

impl Drop for OutgoingPermit {
    fn drop(&mut self) {
        self.0.outgoing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The log rate limit of one container run (stdout and stderr together).
pub(crate) struct LogLimiter {
    bucket: Mutex<Bucket>,
    rate: u64,
    /// Bytes dropped since output was last let through.
    dropped: AtomicU64,
    dropped_total: AtomicU64,
    dropping: AtomicBool,
    guard: Arc<PodGuard>,
    container: String,
    log: Arc<RunLog>,
}

impl LogLimiter {
    /// Whether `len` bytes of output may be logged now. The first refusal of an episode and the
    /// first write let through after one are noted in the log (on stderr).
    pub(crate) fn admit(&self, len: usize) -> bool {
        let ok = lock(&self.bucket).try_take(len as f64, Instant::now());
        if ok {
            if self.dropping.swap(false, Ordering::AcqRel) {
                let n = self.dropped.swap(0, Ordering::AcqRel);
                self.note(&format!(
                    "[skiff] log rate limit: {n} bytes of output dropped (limit {} bytes/s)\n",
                    self.rate
                ));
            }
            return true;
        }
        self.dropped.fetch_add(len as u64, Ordering::AcqRel);
        let total = self.dropped_total.fetch_add(len as u64, Ordering::AcqRel) + len as u64;
        if !self.dropping.swap(true, Ordering::AcqRel) {
            self.note(&format!(
                "[skiff] log rate limit of {} bytes/s exceeded: output dropped until it slows down\n",
                self.rate
            ));
        }
        self.guard.report(
            &self.container,
            LOG_RATE_LIMITED,
            format!(
                "container {} writes logs faster than {} bytes/s: {total} bytes dropped in this run",
                self.container, self.rate
            ),
        );
        false
    }

    fn note(&self, text: &str) {
        self.log.write(LogStreamKind::Stderr, text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_one_second_and_reserves_into_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100.0);
        b.at = t0;
        assert!(b.try_take(100.0, t0));
        assert!(!b.try_take(1.0, t0));
        // Half a second refills half.
        assert!(b.try_take(50.0, t0 + Duration::from_millis(500)));
        let wait = b.reserve(10.0, t0 + Duration::from_millis(500));
        assert_eq!(wait, Duration::from_millis(100));
        // More than a second's worth: only from a full bucket, then into debt.
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.try_take(250.0, t1));
        assert!(!b.try_take(1.0, t1 + Duration::from_millis(500)));
        assert!(b.try_take(1.0, t1 + Duration::from_millis(1510)));
    }

    #[test]
    fn the_instance_cap_refuses_and_reports_once_per_interval() {
        let guard = PodGuard::new(
            GuestLimits {
                max_instances_per_pod: 2,
                ..GuestLimits::default()
            },
            1000,
        );
        let mut rx = guard.watch_events();
        let a = guard.instance_slot("c").expect("first");
        let _b = guard.instance_slot("c").expect("second");
        assert!(guard.instance_slot("c").is_none());
        assert!(guard.instance_slot("c").is_none());
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let events = guard.take_events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].reason, INSTANCE_LIMIT_EXCEEDED);
        assert!(events[0].message.contains("2 instances"), "{events:?}");
        drop(a);
        assert!(guard.instance_slot("c").is_some());
    }

    #[test]
    fn the_cap_is_bounded_by_the_engine() {
        let guard = PodGuard::new(
            GuestLimits {
                max_instances_per_pod: 0,
                ..GuestLimits::default()
            },
            8,
        );
        assert_eq!(guard.limits.max_instances_per_pod, 8);
    }

    #[test]
    fn outgoing_requests_are_capped_and_paced() {
        let guard = PodGuard::new(
            GuestLimits {
                max_outgoing_requests_per_pod: 3,
                outgoing_requests_per_second: 2,
                ..GuestLimits::default()
            },
            1000,
        );
        let (p1, w1) = guard.outgoing("c").unwrap();
        let (p2, w2) = guard.outgoing("c").unwrap();
        let (_p3, w3) = guard.outgoing("c").unwrap();
        assert!(w1.is_zero() && w2.is_zero());
        assert!(w3 > Duration::from_millis(400), "{w3:?}");
        assert!(guard.outgoing("c").is_err());
        drop((p1, p2));
        assert!(guard.outgoing("c").is_ok());
        let reasons: Vec<String> = guard.take_events().into_iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            [OUTGOING_REQUESTS_THROTTLED, OUTGOING_REQUEST_LIMIT_EXCEEDED]
        );
    }

    #[test]
    fn the_log_limit_drops_the_excess_and_notes_it() {
        let guard = PodGuard::new(
            GuestLimits {
                log_bytes_per_second: 1000,
                ..GuestLimits::default()
            },
            1000,
        );
        let log = RunLog::new(1 << 20, None);
        let limiter = guard.log_limiter("c", &log).expect("a limit");
        assert!(limiter.admit(600));
        assert!(!limiter.admit(600));
        assert!(!limiter.admit(600));
        // Refilled: let through, with a note of what was dropped.
        limiter.bucket.lock().unwrap().tokens = 1000.0;
        assert!(limiter.admit(10));
        let lines: Vec<String> = log
            .snapshot()
            .iter()
            .map(|l| String::from_utf8_lossy(&l.line).into_owned())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("exceeded"), "{lines:?}");
        assert!(
            lines[1].contains("1200 bytes of output dropped"),
            "{lines:?}"
        );
        let events = guard.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, LOG_RATE_LIMITED);
    }
}
