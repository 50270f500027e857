//! ServiceAccount tokens for projected `serviceAccountToken` volume sources, as kubelet's token
//! manager keeps them: asked of the API server's TokenRequest (`serviceaccounts/NAME/token`,
//! bound to the pod), cached per (ServiceAccount, pod uid, audiences, expiration), refreshed
//! once 80% of the token's lifetime or 24 hours have passed, and dropped when the pod goes.
//! Time comes from a [`Clock`], so tests drive rotation without waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

/// Kubelet's default lifetime of a projected token (the API server defaults the source's
/// `expirationSeconds` to it as well).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The oldest a token may get before it is refreshed, whatever its lifetime.
pub const MAX_TOKEN_AGE: SignedDuration = SignedDuration::from_hours(24);

/// How long after a failed refresh the next one is tried.
const RETRY_FAILED: SignedDuration = SignedDuration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the token manager reads the time, and waits for it.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Completes once [`Clock::now`] has reached `at`.
    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()>;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()> {
        let wait = Timestamp::now()
            .duration_until(at)
            .try_into()
            .unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to (tests of rotation).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves the clock forward by `by`, waking whoever waits for a time now reached.
    pub fn advance(&self, by: SignedDuration) {
        self.now
            .send_modify(|t| *t = t.saturating_add(by).unwrap_or(*t));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            if rx.wait_for(|t| *t >= at).await.is_err() {
                futures::future::pending::<()>().await;
            }
        })
    }
}

/// When a token issued for `ttl` and expiring at `expires` is refreshed: kubelet's rule, 80% of
/// its lifetime after it was issued, or once it is 24 hours old if that comes first.
pub fn refresh_at(expires: Timestamp, ttl: SignedDuration) -> Timestamp {
    let issued = expires.saturating_sub(ttl).unwrap_or(expires);
    let by_age = issued.saturating_add(MAX_TOKEN_AGE).unwrap_or(expires);
    let by_ttl = expires.saturating_sub(ttl / 5).unwrap_or(expires);
    by_age.min(by_ttl)
}

/// What one token is issued for: the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub(crate) namespace: String,
    pub(crate) service_account: String,
    pub(crate) pod_name: String,
    pub(crate) pod_uid: String,
    /// Empty: the API server's own audiences.
    pub(crate) audiences: Vec<String>,
    pub(crate) expiration_seconds: i64,
}

/// A token the API server issued.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) token: String,
    pub(crate) expires: Timestamp,
    pub(crate) refresh_at: Timestamp,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Issued")
            .field("expires", &self.expires)
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

/// A token that could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// The API server refused the TokenRequest (its message).
    #[error("failed to fetch token: {0}")]
    Refused(String),
    /// The request did not get an answer, or the answer had no token.
    #[error("failed to fetch token: {0}")]
    Failed(String),
}

/// The node's ServiceAccount tokens.
pub(crate) struct TokenManager {
    client: kube::Client,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<TokenKey, Issued>>,
}

impl TokenManager {
    pub(crate) fn new(client: kube::Client, clock: Arc<dyn Clock>) -> TokenManager {
        TokenManager {
            client,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The token for `key`: the cached one until it is due for refresh, else a new one. A
    /// failed refresh keeps serving the cached token while it is still valid, as kubelet does.
    pub(crate) async fn get(&self, key: &TokenKey) -> Result<Issued, TokenError> {
        let now = self.clock.now();
        let cached = lock(&self.cache).get(key).cloned();
        if let Some(t) = &cached
            && now < t.refresh_at
        {
            return Ok(t.clone());
        }
        match self.request(key).await {
            Ok(t) => {
                lock(&self.cache).insert(key.clone(), t.clone());
                Ok(t)
            }
            Err(e) => {
                // The next attempt comes after a pause, not at once.
                if let Some(t) = lock(&self.cache).get_mut(key) {
                    t.refresh_at = now.saturating_add(RETRY_FAILED).unwrap_or(now);
                }
                match cached {
                    Some(t) if now < t.expires => {
                        tracing::warn!(pod = %format!("{}/{}", key.namespace, key.pod_name), service_account = %key.service_account, error = %e, "refreshing a ServiceAccount token failed; the current one is still valid");
                        Ok(t)
                    }
                    _ => Err(e),
                }
            }
        }
    }

    async fn request(&self, key: &TokenKey) -> Result<Issued, TokenError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &key.namespace);
        let tr = TokenRequest {
            spec: TokenRequestSpec {
                audiences: key.audiences.clone(),
                expiration_seconds: Some(key.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(key.pod_name.clone()),
                    uid: Some(key.pod_uid.clone()),
                }),
            },
            ..Default::default()
        };
        let answer = api
            .create_token_request(&key.service_account, &PostParams::default(), &tr)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) => TokenError::Refused(s.message.clone()),
                e => TokenError::Failed(e.to_string()),
            })?;
        let status = answer
            .status
            .filter(|s| !s.token.is_empty())
            .ok_or_else(|| TokenError::Failed("the TokenRequest answer holds no token".into()))?;
        // The server may issue a longer token than asked for; its answer says so.
        let ttl = SignedDuration::from_secs(
            answer
                .spec
                .expiration_seconds
                .unwrap_or(key.expiration_seconds)
                .max(1),
        );
        let expires = status.expiration_timestamp.0;
        Ok(Issued {
            token: status.token,
            expires,
            refresh_at: refresh_at(expires, ttl),
        })
    }

    /// The earliest refresh time of a pod's cached tokens.
    pub(crate) fn next_refresh(&self, pod_uid: &str) -> Option<Timestamp> {
        lock(&self.cache)
            .iter()
            .filter(|(k, _)| k.pod_uid == pod_uid)
            .map(|(_, t)| t.refresh_at)
            .min()
    }

    /// True if one of the pod's cached tokens is due for refresh.
    pub(crate) fn due(&self, pod_uid: &str) -> bool {
        self.next_refresh(pod_uid)
            .is_some_and(|t| t <= self.clock.now())
    }

    /// Drops the tokens of a pod that is gone.
    pub(crate) fn forget_pod(&self, pod_uid: &str) {
        lock(&self.cache).retain(|k, _| k.pod_uid != pod_uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    #[test]
    fn a_token_is_refreshed_at_80_percent_of_its_lifetime_or_at_24_hours() {
        // One hour: refreshed 48 minutes after issue.
        assert_eq!(
            refresh_at(ts("2026-01-01T01:00:00Z"), SignedDuration::from_hours(1)),
            ts("2026-01-01T00:48:00Z")
        );
        // Ten minutes (the least the API allows): after eight.
        assert_eq!(
            refresh_at(ts("2026-01-01T00:10:00Z"), SignedDuration::from_mins(10)),
            ts("2026-01-01T00:08:00Z")
        );
        // A year (an extended token): after a day, not after 292 days.
        let issued = ts("2026-01-01T00:00:00Z");
        let year = SignedDuration::from_hours(24 * 365);
        assert_eq!(
            refresh_at(issued.saturating_add(year).unwrap(), year),
            ts("2026-01-02T00:00:00Z")
        );
        // Exactly 30 hours: 24 h comes before 80% (24 h) — the same instant.
        let thirty = SignedDuration::from_hours(30);
        assert_eq!(
            refresh_at(issued.saturating_add(thirty).unwrap(), thirty),
            ts("2026-01-02T00:00:00Z")
        );
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_it_passes_their_time() {
        let clock = ManualClock::new(ts("2026-01-01T00:00:00Z"));
        let sleep = clock.sleep_until(ts("2026-01-01T00:30:00Z"));
        let mut sleep = std::pin::pin!(sleep);
        clock.advance(SignedDuration::from_mins(10));
        assert!(
            futures::poll!(sleep.as_mut()).is_pending(),
            "10 minutes are not 30"
        );
        clock.advance(SignedDuration::from_mins(20));
        sleep.await;
        assert_eq!(clock.now(), ts("2026-01-01T00:30:00Z"));
    }
}
