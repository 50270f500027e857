//! Waiting in tests, always with a deadline: watch one object until a condition holds
//! ([`wait_object`], kube-runtime's `await_condition`), or, where no watch fits, poll a check
//! ([`wait_for`]).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::{Api, Resource};

/// How often [`wait_for`] calls its check.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Some`, failing with `what` after
/// `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Watches the object `name` of `api` until `cond` holds for it (`None`: it does not exist);
/// returns the object as it was then. Fails after `timeout`, showing the object's last state.
pub async fn wait_object<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: impl Fn(Option<&K>) -> bool,
) -> Result<Option<K>>
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + 'static,
{
    let watch = kube::runtime::wait::await_condition(api.clone(), name, cond);
    match tokio::time::timeout(timeout, watch).await {
        Ok(found) => Ok(found?),
        Err(_) => {
            let last = match api.get_opt(name).await {
                Ok(Some(obj)) => serde_json::to_string_pretty(&obj).unwrap_or_default(),
                Ok(None) => "(absent)".into(),
                Err(e) => format!("(cannot read it: {e})"),
            };
            bail!("timed out after {timeout:?} waiting for {name}: {what}; it was:\n{last}")
        }
    }
}

/// Watches the object `name` until `check` returns `Some` for it; returns that value.
pub async fn wait_object_map<K, T>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&K) -> Option<T>,
) -> Result<T>
where
    K: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + 'static,
{
    let obj = wait_object(api, name, what, timeout, |o: Option<&K>| {
        o.is_some_and(|o| check(o).is_some())
    })
    .await?;
    match obj.as_ref().and_then(&check) {
        Some(v) => Ok(v),
        None => bail!("{name}: {what} held, then not on the object returned"),
    }
}
