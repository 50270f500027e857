//! What every reconciling controller shares: the run wrapper around kube-runtime's `Controller`,
//! one error policy with per-object exponential back-off, and the clock controllers read.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        m.remove(key);
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
                    let result = reconcile(obj, ctx).await;
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
