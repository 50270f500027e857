//! What every reconciling controller shares: the run wrapper around kube-runtime's `Controller`,
//! one error policy with per-object exponential back-off, the clock controllers read, and the
//! reconcile metrics (`metrics_registry`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Resource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use crate::Error;

/// The first retry delay after a failed reconcile.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Per-object exponential back-off: the n-th consecutive failure of one object waits
/// `BACKOFF_BASE * 2^(n-1)`, at most `BACKOFF_CAP`; a success forgets the object.
pub struct Backoff<K: Resource<DynamicType = ()>> {
    name: &'static str,
    failures: Mutex<HashMap<ObjectRef<K>, u32>>,
    total: AtomicU64,
}

impl<K: Resource<DynamicType = ()>> Backoff<K> {
    /// An empty back-off for the controller called `name`.
    pub fn new(name: &'static str) -> Backoff<K> {
        Backoff {
            name,
            failures: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: ObjectRef<K>, err: &Error) -> Duration {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if !m.contains_key(&key) {
            metrics().retrying(self.name).inc();
        }
        let n = m.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        let delay = delay_after(*n);
        tracing::debug!(controller = self.name, object = %key, failures = *n, ?delay, error = %err,
            "reconcile failed");
        delay
    }

    /// Forgets the failures of `key` (it reconciled).
    pub fn succeeded(&self, key: &ObjectRef<K>) {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if m.remove(key).is_some() {
            metrics().retrying(self.name).dec();
        }
    }

    /// Every failure recorded since the controller started.
    pub fn total_failures(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The delay after `n` consecutive failures (`n >= 1`).
pub fn delay_after(n: u32) -> Duration {
    let shift = n.saturating_sub(1).min(16);
    BACKOFF_BASE
        .checked_mul(1u32 << shift)
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP)
}

/// Runs `controller` with `reconcile` until its streams end, with the shared error policy.
pub async fn run<K, C, F, Fut>(
    name: &'static str,
    controller: Controller<K>,
    reconcile: F,
    ctx: Arc<C>,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    C: Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let backoff = Arc::new(Backoff::<K>::new(name));
    let on_error = backoff.clone();
    let reconcile = Arc::new(reconcile);
    controller
        .run(
            move |obj: Arc<K>, ctx: Arc<C>| {
                let backoff = backoff.clone();
                let reconcile = reconcile.clone();
                async move {
                    let key = ObjectRef::from_obj(obj.as_ref());
                    let m = metrics();
                    let working = m.working(name);
                    let started = Instant::now();
                    let result = if skiff_telemetry::trace::enabled() {
                        let span = tracing::info_span!(
                            "reconcile",
                            otel.name = %format!("reconcile {name}"),
                            controller = name,
                            namespace = key.namespace.as_deref().unwrap_or(""),
                            name = %key.name,
                            error = tracing::field::Empty,
                        );
                        let result =
                            tracing::Instrument::instrument(reconcile(obj, ctx), span.clone())
                                .await;
                        if let Err(e) = &result {
                            span.record("error", tracing::field::display(e));
                        }
                        result
                    } else {
                        reconcile(obj, ctx).await
                    };
                    drop(working);
                    m.reconciled(name, result.is_ok(), started.elapsed());
                    if result.is_ok() {
                        backoff.succeeded(&key);
                    }
                    result
                }
            },
            move |obj: Arc<K>, err: &Error, _ctx: Arc<C>| {
                Action::requeue(on_error.failed(ObjectRef::from_obj(obj.as_ref()), err))
            },
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// The reconcile metrics of every controller in this process, named as controller-runtime's
/// (`controller_runtime_reconcile_total{controller,result}`, `…_reconcile_errors_total`,
/// `…_reconcile_time_seconds`, `…_active_workers`) and client-go's workqueue
/// (`workqueue_depth{name}`). kube-runtime keeps its queue to itself: the depth counted is the
/// objects waiting for a retry after a failure plus the reconciles running. Like
/// kube-controller-manager's, these are the process's: every controller manager in a process
/// records into the same families.
struct ControllerMetrics {
    reconciles: skiff_telemetry::metrics::Family<
        skiff_telemetry::metrics::Labels<2>,
        skiff_telemetry::metrics::Counter,
    >,
    errors: skiff_telemetry::metrics::Family<
        skiff_telemetry::metrics::Labels<1>,
        skiff_telemetry::metrics::Counter,
    >,
    seconds: skiff_telemetry::metrics::HistogramFamily<skiff_telemetry::metrics::Labels<1>>,
    active: skiff_telemetry::metrics::Family<
        skiff_telemetry::metrics::Labels<1>,
        skiff_telemetry::metrics::Gauge,
    >,
    depth: skiff_telemetry::metrics::Family<
        skiff_telemetry::metrics::Labels<1>,
        skiff_telemetry::metrics::Gauge,
    >,
}

fn metrics() -> &'static ControllerMetrics {
    static METRICS: OnceLock<ControllerMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ControllerMetrics {
        reconciles: Default::default(),
        errors: Default::default(),
        seconds: skiff_telemetry::metrics::histogram_family(
            skiff_telemetry::metrics::SHORT_SECONDS,
        ),
        active: Default::default(),
        depth: Default::default(),
    })
}

/// A reconcile in progress (see `ControllerMetrics::working`).
struct Working {
    active: skiff_telemetry::metrics::Gauge,
    depth: skiff_telemetry::metrics::Gauge,
}

impl Drop for Working {
    fn drop(&mut self) {
        self.active.dec();
        self.depth.dec();
    }
}

/// A registry of the reconcile metrics of this process's controllers, to serve at a
/// `/metrics` (the API server's when the controllers run in its process, else
/// `skiff controllers --metrics-bind-address`).
pub fn metrics_registry() -> skiff_telemetry::metrics::Registry {
    let m = metrics();
    let mut registry = skiff_telemetry::metrics::Registry::default();
    registry.register(
        "controller_runtime_reconcile",
        "Total number of reconciliations per controller",
        m.reconciles.clone(),
    );
    registry.register(
        "controller_runtime_reconcile_errors",
        "Total number of reconciliation errors per controller",
        m.errors.clone(),
    );
    registry.register(
        "controller_runtime_reconcile_time_seconds",
        "Length of time per reconciliation per controller",
        m.seconds.clone(),
    );
    registry.register(
        "controller_runtime_active_workers",
        "Number of currently used workers per controller",
        m.active.clone(),
    );
    registry.register(
        "workqueue_depth",
        "Current depth of workqueue: objects waiting for a retry plus reconciles running",
        m.depth.clone(),
    );
    registry
}

impl ControllerMetrics {
    /// Counts one reconcile of `controller` as running (and in its queue) until dropped.
    fn working(&self, controller: &'static str) -> Working {
        let active = self
            .active
            .get_or_create(&[("controller", controller.to_string())])
            .clone();
        let depth = self.retrying(controller);
        active.inc();
        depth.inc();
        Working { active, depth }
    }

    fn retrying(&self, controller: &'static str) -> skiff_telemetry::metrics::Gauge {
        self.depth
            .get_or_create(&[("name", controller.to_string())])
            .clone()
    }

    fn reconciled(&self, controller: &'static str, ok: bool, took: Duration) {
        let result = if ok { "success" } else { "error" };
        self.reconciles
            .get_or_create(&[
                ("controller", controller.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
        if !ok {
            self.errors
                .get_or_create(&[("controller", controller.to_string())])
                .inc();
        }
        self.seconds
            .get_or_create(&[("controller", controller.to_string())])
            .observe_duration(took);
    }
}

/// The time controllers read: the system clock, or a fake one tests set and advance.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<Mutex<jiff::Timestamp>>>);

impl Clock {
    /// The system clock.
    pub fn real() -> Clock {
        Clock(None)
    }

    /// A clock that stands at `at` until set or advanced.
    pub fn fake(at: jiff::Timestamp) -> Clock {
        Clock(Some(Arc::new(Mutex::new(at))))
    }

    /// The current time.
    pub fn now(&self) -> jiff::Timestamp {
        match &self.0 {
            None => jiff::Timestamp::now(),
            Some(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Sets a fake clock to `at` (a real clock ignores it).
    pub fn set(&self, at: jiff::Timestamp) {
        if let Some(t) = &self.0 {
            *t.lock().unwrap_or_else(|e| e.into_inner()) = at;
        }
    }

    /// Moves a fake clock forward by `by` (a real clock ignores it).
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.0 {
            let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(next) = t.checked_add(by) {
                *t = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_on_success() {
        let b = Backoff::<Pod>::new("test");
        let key = ObjectRef::<Pod>::new("a").within("ns");
        let other = ObjectRef::<Pod>::new("b").within("ns");
        let err = Error::NotSupported("x".into());
        let delays: Vec<u64> = (0..11)
            .map(|_| b.failed(key.clone(), &err).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(b.failed(other.clone(), &err), Duration::from_secs(1));
        b.succeeded(&key);
        assert_eq!(b.failed(key, &err), Duration::from_secs(1));
        assert_eq!(b.total_failures(), 13);
        assert_eq!(delay_after(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn reconciles_errors_and_retries_are_exposed_per_controller() {
        use skiff_telemetry::metrics::{render, sample};
        let name = "metrics-test";
        let b = Backoff::<Pod>::new(name);
        let key = ObjectRef::<Pod>::new("a").within("ns");
        let m = metrics();
        {
            let _working = m.working(name);
            let text = render(&metrics_registry());
            let labels = [("controller", name)];
            assert_eq!(
                sample(&text, "controller_runtime_active_workers", &labels),
                Some(1.0)
            );
        }
        m.reconciled(name, true, Duration::from_millis(2));
        m.reconciled(name, false, Duration::from_millis(2));
        b.failed(key.clone(), &Error::NotSupported("x".into()));
        b.failed(key.clone(), &Error::NotSupported("x".into()));
        let text = render(&metrics_registry());
        let ctl = [("controller", name)];
        assert_eq!(
            sample(
                &text,
                "controller_runtime_reconcile_total",
                &[("controller", name), ("result", "success")]
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "controller_runtime_reconcile_errors_total", &ctl),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "controller_runtime_reconcile_time_seconds_count",
                &ctl
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "controller_runtime_active_workers", &ctl),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "workqueue_depth", &[("name", name)]),
            Some(1.0),
            "one object waits for its retry: {text}"
        );
        b.succeeded(&key);
        let text = render(&metrics_registry());
        assert_eq!(
            sample(&text, "workqueue_depth", &[("name", name)]),
            Some(0.0)
        );
    }

    #[test]
    fn a_fake_clock_moves_only_when_told() {
        let start = jiff::Timestamp::from_second(1_000_000).unwrap();
        let c = Clock::fake(start);
        assert_eq!(c.now(), start);
        c.advance(Duration::from_secs(61));
        assert_eq!(c.now().as_second(), 1_000_061);
        let shared = c.clone();
        shared.set(start);
        assert_eq!(c.now(), start);
    }
}
