//! Requests in flight on one connection, for the idle timeout: a request counts from the
//! service's call until its response body is dropped, so a watch or a log follow counts for as
//! long as it streams, and an HTTP/2 connection is idle only when no stream is open.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::Notify;

/// One connection's requests in flight.
#[derive(Default)]
pub(crate) struct Activity {
    active: AtomicUsize,
    /// Signalled when `active` leaves or reaches zero.
    changed: Notify,
}

/// One request in flight; dropping it ends it.
pub(crate) struct InFlight(Arc<Activity>);

impl Activity {
    fn start(self: &Arc<Self>) -> InFlight {
        if self.active.fetch_add(1, Ordering::AcqRel) == 0 {
            self.changed.notify_waiters();
        }
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `idle` in a row.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the count is read, so a change after the read wakes it.
            changed.as_mut().enable();
            if self.active.load(Ordering::Acquire) == 0 {
                if tokio::time::timeout(idle, changed).await.is_err() {
                    return;
                }
            } else {
                changed.await;
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

/// A response body that keeps its request in flight until it is dropped.
pub struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A service whose requests are counted in the connection's [`Activity`].
pub(crate) struct Tracked<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<Activity>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.start();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request_in_flight() {
        let activity = Arc::new(Activity::default());
        let idle = Duration::from_secs(10);
        // Nothing in flight: idle after `idle`.
        let t = tokio::time::Instant::now();
        activity.idle_for(idle).await;
        assert_eq!(t.elapsed(), idle);
        // A request in flight for 30 s: idle 10 s after it ends.
        let held = activity.start();
        let t = tokio::time::Instant::now();
        let waiter = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(idle).await }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!waiter.is_finished());
        drop(held);
        waiter.await.unwrap();
        assert_eq!(t.elapsed(), Duration::from_secs(40));
    }
}
