//! Fairness: a bound on requests in flight (reads and mutations apart, as kube-apiserver's
//! `--max-requests-inflight` and `--max-mutating-requests-inflight`), with per-user queues
//! served fairly when the server is busy — the idea of API Priority and Fairness, simplified.
//!
//! - Not busy: a request takes a slot with one compare-and-swap on the level's counter (and a
//!   load of its waiting count); no lock.
//! - Busy: it waits in its user's queue (the flow is the user name), bounded by
//!   `queue_length_per_user` and `queue_wait`; past either it is answered 429 `TooManyRequests`
//!   with `Retry-After: 1`, which kubectl and client-go retry.
//! - A freed slot goes to the user with the shortest queue (ties: the user queued first), so a
//!   flooding user, whose queue is the longest, waits behind everyone else.
//! - Exempt (never counted nor queued): `system:masters` and the cluster's own components
//!   (`system:kube-controller-manager`, `system:kube-scheduler`, `system:node:*` and the
//!   `system:nodes` group, `kube-apiserver-kubelet-client`), so a tenant flood cannot starve the
//!   cluster's own loops.
//! - Long-running requests (watches, exec/attach/portforward/proxy, followed logs) are not
//!   counted in flight; a user may hold at most `max_watches_per_user` of them at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, StatusReason};
use crate::state::{AppState, MASTERS, UserInfo};

/// The limits, as the server's flags set them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FairnessOptions {
    /// Reads in flight at once (0: unbounded, fairness off).
    pub max_requests_inflight: usize,
    /// Mutations in flight at once (0: unbounded).
    pub max_mutating_requests_inflight: usize,
    /// Requests of one user waiting for a slot at once.
    pub queue_length_per_user: usize,
    /// The longest a request waits for a slot.
    pub queue_wait: Duration,
    /// Long-running requests of one user at once (0: unbounded).
    pub max_watches_per_user: usize,
}

/// The machine's parallelism (at least 1): what the default bounds derive from.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl FairnessOptions {
    /// The default bound on reads in flight: the machine's cores (at least 2). Reads are CPU
    /// work, so admitting more than the cores only makes every admitted request share them — a
    /// tenant's flood then sets everyone's latency. Measured in BENCHMARKS.md ("Fairness"):
    /// with the bound at the cores another user's GET p99 stays under 100 ms during a flood of
    /// 400 LISTs in flight; at kube-apiserver's 400 it does not.
    pub fn default_max_requests_inflight() -> usize {
        cores().max(2)
    }

    /// The default bound on mutations in flight: 8 per core. A mutation mostly waits for the
    /// store's group commit, where more writers in one batch cost little.
    pub fn default_max_mutating_requests_inflight() -> usize {
        cores() * 8
    }
}

impl Default for FairnessOptions {
    fn default() -> Self {
        FairnessOptions {
            max_requests_inflight: Self::default_max_requests_inflight(),
            max_mutating_requests_inflight: Self::default_max_mutating_requests_inflight(),
            queue_length_per_user: 50,
            queue_wait: Duration::from_secs(15),
            max_watches_per_user: 1000,
        }
    }
}

/// Kubernetes' answer to a request refused for load.
pub fn too_many_requests() -> ApiError {
    let mut err = ApiError::new(
        429,
        StatusReason::TooManyRequests,
        "Too many requests, please try again later.",
    );
    err.retry_after_seconds = Some(1);
    err
}

/// Whether a user bypasses the limits: masters and the cluster's own components.
pub fn exempt(user: &UserInfo) -> bool {
    user.in_group(MASTERS)
        || user.in_group("system:nodes")
        || user.name.starts_with("system:node:")
        || matches!(
            user.name.as_str(),
            "system:kube-controller-manager"
                | "system:kube-scheduler"
                | "system:apiserver"
                | skiff_meta::names::KUBELET_CLIENT_USER
        )
}

struct Waiter {
    id: u64,
    wake: tokio::sync::oneshot::Sender<()>,
}

#[derive(Default)]
struct Queues {
    by_user: HashMap<String, VecDeque<Waiter>>,
    /// Users with waiters, in the order they queued.
    order: Vec<String>,
}

impl Queues {
    /// The next waiter: the head of the shortest queue (ties: the user queued first).
    fn pop_fair(&mut self) -> Option<Waiter> {
        let (index, _) = self
            .order
            .iter()
            .enumerate()
            .min_by_key(|(i, u)| (self.by_user.get(*u).map_or(0, VecDeque::len), *i))?;
        let user = self.order[index].clone();
        let queue = self.by_user.get_mut(&user)?;
        let waiter = queue.pop_front();
        if queue.is_empty() {
            self.by_user.remove(&user);
            self.order.remove(index);
        }
        waiter
    }

    fn remove(&mut self, user: &str, id: u64) -> bool {
        let Some(queue) = self.by_user.get_mut(user) else {
            return false;
        };
        let before = queue.len();
        queue.retain(|w| w.id != id);
        let removed = queue.len() < before;
        if queue.is_empty() {
            self.by_user.remove(user);
            self.order.retain(|u| u != user);
        }
        removed
    }
}

/// One bound (reads, or mutations) and its queues.
struct Level {
    limit: usize,
    inflight: AtomicUsize,
    waiting: AtomicUsize,
    queues: Mutex<Queues>,
}

impl Level {
    fn new(limit: usize) -> Self {
        Level {
            limit,
            inflight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            queues: Mutex::new(Queues::default()),
        }
    }

    fn try_take(&self) -> bool {
        let mut current = self.inflight.load(Ordering::SeqCst);
        while current < self.limit {
            match self.inflight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        false
    }

    /// Gives freed slots to waiters while both exist.
    fn dispatch(&self, queues: &mut Queues) {
        while self.waiting.load(Ordering::SeqCst) > 0 {
            if !self.try_take() {
                return;
            }
            let Some(waiter) = queues.pop_fair() else {
                self.inflight.fetch_sub(1, Ordering::SeqCst);
                return;
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if waiter.wake.send(()).is_err() {
                // Its request is gone: the slot goes back.
                self.inflight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn release(&self) {
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            self.dispatch(&mut queues);
        }
    }
}

/// A slot in flight, given back when dropped.
pub struct Permit {
    level: Arc<Fairness>,
    mutating: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.mutating {
            self.level.mutating.release();
        } else {
            self.level.reads.release();
        }
    }
}

/// The in-flight bounds of a server.
pub struct Fairness {
    options: FairnessOptions,
    reads: Level,
    mutating: Level,
    next_id: AtomicU64,
    watches: Mutex<HashMap<String, usize>>,
    rejected: AtomicU64,
}

impl Fairness {
    pub fn new(options: FairnessOptions) -> Arc<Fairness> {
        Arc::new(Fairness {
            reads: Level::new(options.max_requests_inflight),
            mutating: Level::new(options.max_mutating_requests_inflight),
            options,
            next_id: AtomicU64::new(0),
            watches: Mutex::new(HashMap::new()),
            rejected: AtomicU64::new(0),
        })
    }

    pub fn options(&self) -> &FairnessOptions {
        &self.options
    }

    /// Requests answered 429 so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// A slot for a request of `user`, waiting in its queue when the server is busy; 429 when
    /// the queue is full or the wait too long. `None` when the level is unbounded.
    pub async fn acquire(
        self: &Arc<Self>,
        user: &str,
        mutating: bool,
    ) -> Result<Option<Permit>, ApiError> {
        let level = if mutating {
            &self.mutating
        } else {
            &self.reads
        };
        if level.limit == 0 {
            return Ok(None);
        }
        let permit = || Permit {
            level: self.clone(),
            mutating,
        };
        if level.waiting.load(Ordering::SeqCst) == 0 && level.try_take() {
            return Ok(Some(permit()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        {
            let mut queues = level.queues.lock().unwrap_or_else(|e| e.into_inner());
            let queued = queues.by_user.get(user).map_or(0, VecDeque::len);
            if queued >= self.options.queue_length_per_user {
                drop(queues);
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(too_many_requests());
            }
            if !queues.by_user.contains_key(user) {
                queues.order.push(user.to_string());
            }
            queues
                .by_user
                .entry(user.to_string())
                .or_default()
                .push_back(Waiter { id, wake: tx });
            level.waiting.fetch_add(1, Ordering::SeqCst);
            // A slot freed before this request queued goes to the fairest waiter now.
            level.dispatch(&mut queues);
        }
        tokio::select! {
            woken = &mut rx => {
                if woken.is_ok() {
                    return Ok(Some(permit()));
                }
            }
            _ = tokio::time::sleep(self.options.queue_wait) => {}
        }
        let removed = level
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user, id);
        if removed {
            level.waiting.fetch_sub(1, Ordering::SeqCst);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(too_many_requests());
        }
        // Dispatched while the wait ran out: the slot is ours.
        match rx.await {
            Ok(()) => Ok(Some(permit())),
            Err(_) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Err(too_many_requests())
            }
        }
    }

    /// Counts a long-running request of `user`; 429 past `max_watches_per_user`.
    pub fn start_watch(self: &Arc<Self>, user: &str) -> Result<WatchGuard, ApiError> {
        let max = self.options.max_watches_per_user;
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let count = watches.entry(user.to_string()).or_insert(0);
        if max > 0 && *count >= max {
            drop(watches);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(too_many_requests());
        }
        *count += 1;
        Ok(WatchGuard {
            fairness: self.clone(),
            user: user.to_string(),
        })
    }

    /// Requests of the reads level in flight now (tests and the bench).
    pub fn reads_in_flight(&self) -> usize {
        self.reads.inflight.load(Ordering::SeqCst)
    }

    /// Requests waiting in the reads level's queues now.
    pub fn reads_waiting(&self) -> usize {
        self.reads.waiting.load(Ordering::SeqCst)
    }
}

/// A long-running request counted against its user, uncounted when dropped.
pub struct WatchGuard {
    fairness: Arc<Fairness>,
    user: String,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut watches = self
            .fairness
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = watches.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                watches.remove(&self.user);
            }
        }
    }
}

/// The fairness middleware; it runs after authentication, so the request carries its user.
pub(crate) async fn limit(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(fairness) = state.fairness.clone() else {
        return next.run(request).await;
    };
    let Some(user) = request.extensions().get::<UserInfo>() else {
        return next.run(request).await;
    };
    if exempt(user) {
        return next.run(request).await;
    }
    let user = user.name.clone();
    let method = request.method().clone();
    if crate::audit::long_running(&method, request.uri().path(), request.uri().query()) {
        let guard = match fairness.start_watch(&user) {
            Ok(guard) => guard,
            Err(err) => return err.into_response(),
        };
        let response = next.run(request).await;
        let (parts, body) = response.into_parts();
        let body = http_body_util::BodyExt::map_frame(body, move |frame| {
            let _ = &guard;
            frame
        });
        return Response::from_parts(parts, Body::new(body));
    }
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let permit = match fairness.acquire(&user, mutating).await {
        Ok(permit) => permit,
        Err(err) => return err.into_response(),
    };
    let response = next.run(request).await;
    drop(permit);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(limit: usize, queue: usize) -> FairnessOptions {
        FairnessOptions {
            max_requests_inflight: limit,
            max_mutating_requests_inflight: limit,
            queue_length_per_user: queue,
            queue_wait: Duration::from_secs(60),
            max_watches_per_user: 2,
        }
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_and_the_shortest_queue_goes_first() {
        let fairness = Fairness::new(options(1, 2));
        let held = fairness.acquire("a", false).await.unwrap();
        let f = fairness.clone();
        let a1 = tokio::spawn(async move { f.acquire("a", false).await });
        let f = fairness.clone();
        let a2 = tokio::spawn(async move { f.acquire("a", false).await });
        while fairness.reads_waiting() < 2 {
            tokio::task::yield_now().await;
        }
        let err = fairness.acquire("a", false).await.err().unwrap();
        assert_eq!(err.code, 429);
        assert_eq!(err.retry_after_seconds, Some(1));
        let f = fairness.clone();
        let b = tokio::spawn(async move { f.acquire("b", false).await });
        while fairness.reads_waiting() < 3 {
            tokio::task::yield_now().await;
        }
        drop(held);
        // b's queue is the shortest: it is served first, while a's two still wait.
        let b_permit = b.await.unwrap().unwrap();
        assert!(b_permit.is_some());
        assert_eq!(fairness.reads_waiting(), 2);
        assert!(!a1.is_finished() && !a2.is_finished());
        drop(b_permit);
        let a1_permit = a1.await.unwrap().unwrap();
        assert!(a1_permit.is_some());
        drop(a1_permit);
        assert!(a2.await.unwrap().unwrap().is_some());
        assert_eq!(fairness.reads_in_flight(), 0);
    }

    #[test]
    fn masters_and_components_are_exempt() {
        assert!(exempt(&UserInfo::admin("admin")));
        assert!(exempt(&UserInfo::from("system:kube-scheduler")));
        assert!(exempt(&UserInfo::from("system:node:n1")));
        assert!(!exempt(&UserInfo::from("alice")));
    }

    #[tokio::test]
    async fn watches_have_their_own_cap() {
        let fairness = Fairness::new(options(1, 1));
        let w1 = fairness.start_watch("a").unwrap();
        let _w2 = fairness.start_watch("a").unwrap();
        assert_eq!(fairness.start_watch("a").err().unwrap().code, 429);
        let _b = fairness.start_watch("b").unwrap();
        drop(w1);
        let _w3 = fairness.start_watch("a").unwrap();
    }
}
