//! The node half of scale from zero: per scale-to-zero Deployment, how many requests this node
//! holds (capped), one scale-up in flight at a time (single flight: a read of the scale and a
//! write conditional on its resourceVersion, only from zero, so a Deployment a user scaled up is
//! never lowered), and the `skiff.dev/last-request-time` annotation written at most every
//! quarter of the idle period while requests are served or held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use skiff_meta::names;

use super::table::ScaleTarget;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One Deployment's state on this node.
#[derive(Default)]
struct State {
    held: AtomicUsize,
    scaling: AtomicBool,
    last_write: Mutex<Option<Instant>>,
}

/// Every scale-to-zero Deployment's state on this node.
#[derive(Default)]
pub(crate) struct Holds {
    map: Mutex<HashMap<(String, String), Arc<State>>>,
}

/// A held request; leaving gives its place back.
pub(crate) struct Held(Arc<State>);

impl Drop for Held {
    fn drop(&mut self) {
        // The last held request leaving ends the scale-up episode: the next one may scale again.
        if self.0.held.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.scaling.store(false, Ordering::SeqCst);
        }
    }
}

impl Holds {
    fn state(&self, t: &ScaleTarget) -> Arc<State> {
        lock(&self.map)
            .entry((t.namespace.clone(), t.name.clone()))
            .or_default()
            .clone()
    }

    /// Takes a place among the held requests of `t`, or `None` when all are taken.
    pub(crate) fn enter(&self, t: &ScaleTarget) -> Option<Held> {
        let s = self.state(t);
        if s.held.fetch_add(1, Ordering::SeqCst) >= t.max_held {
            s.held.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Held(s))
    }

    /// Scales `t` from zero to one, unless this node already did while requests are held (the
    /// requests held meanwhile wait for the same pod) or a scale-up is in flight.
    /// The scale-up task when this call started one.
    pub(crate) fn scale_up(
        &self,
        client: &kube::Client,
        t: &ScaleTarget,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let s = self.state(t);
        if s.scaling.swap(true, Ordering::SeqCst) {
            return None;
        }
        let client = client.clone();
        let t = t.clone();
        Some(tokio::spawn(async move {
            match scale_from_zero(&client, &t).await {
                Ok(true) => {
                    tracing::info!(deployment = %format!("{}/{}", t.namespace, t.name), "scaled from zero for a held request");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(deployment = %format!("{}/{}", t.namespace, t.name), error = %e, "scaling from zero");
                    // The next held request tries again.
                    s.scaling.store(false, Ordering::SeqCst);
                }
            }
        }))
    }

    /// A request for `t` is served: writes `skiff.dev/last-request-time` unless written less
    /// than a quarter of the idle period ago.
    pub(crate) fn touch(&self, client: &kube::Client, t: &ScaleTarget) {
        let s = self.state(t);
        {
            let mut last = lock(&s.last_write);
            if last.is_some_and(|l| l.elapsed() < t.idle / 4) {
                return;
            }
            *last = Some(Instant::now());
        }
        let client = client.clone();
        let t = t.clone();
        tokio::spawn(async move {
            let api: Api<Deployment> = Api::namespaced(client, &t.namespace);
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let patch = serde_json::json!({
                "metadata": {"annotations": {names::LAST_REQUEST: now}}
            });
            if let Err(e) = api
                .patch(&t.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(deployment = %t.name, error = %e, "writing the last request time");
                *lock(&s.last_write) = None;
            }
        });
    }
}

/// How many times a scale-up is tried again after a conflicting write (the Deployment
/// controller writes the status at the same moment).
const SCALE_ATTEMPTS: usize = 10;

/// Sets `spec.replicas` to 1 through the scale subresource if it is 0, conditional on the
/// resourceVersion read: a conflict reads again, and a Deployment found above zero is left
/// alone (someone else scaled it). True when this call scaled it.
async fn scale_from_zero(client: &kube::Client, t: &ScaleTarget) -> kube::Result<bool> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &t.namespace);
    let mut attempt = 0;
    loop {
        let mut scale = api.get_scale(&t.name).await?;
        let replicas = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        if replicas != 0 {
            return Ok(false);
        }
        scale.spec.get_or_insert_with(Default::default).replicas = Some(1);
        scale.status = None;
        match api
            .replace_scale(&t.name, &PostParams::default(), &scale)
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt + 1 < SCALE_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::BodyExt;
    use serde_json::{Value, json};

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, Value)>>>;

    /// A client whose API server has one Deployment's scale at `replicas` and records every
    /// request (method, body); a PUT of the scale sets it.
    fn scale_server(replicas: i32) -> (kube::Client, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let current = Arc::new(Mutex::new(replicas));
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let log = log.clone();
            let current = current.clone();
            async move {
                let method = req.method().to_string();
                assert_eq!(
                    req.uri().path(),
                    "/apis/apps/v1/namespaces/shop/deployments/lazy/scale"
                );
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                lock(&log).push((method.clone(), body.clone()));
                if method == "PUT" {
                    *lock(&current) = body["spec"]["replicas"].as_i64().unwrap_or(0) as i32;
                }
                let reply = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": "lazy", "namespace": "shop", "resourceVersion": "7"},
                    "spec": {"replicas": *lock(&current)}});
                let resp = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(reply.to_string().into_bytes()))
                    .unwrap();
                Ok::<_, Infallible>(resp)
            }
        });
        (kube::Client::new(svc, "default"), seen)
    }

    fn methods(seen: &Seen) -> Vec<String> {
        lock(seen).iter().map(|(m, _)| m.clone()).collect()
    }

    #[tokio::test]
    async fn one_scale_up_per_episode_and_never_below_what_a_user_set() {
        let (client, seen) = scale_server(0);
        let holds = Holds::default();
        let t = target(100);
        let held: Vec<Held> = (0..10).map(|_| holds.enter(&t).unwrap()).collect();
        let started: Vec<_> = (0..10)
            .filter_map(|_| holds.scale_up(&client, &t))
            .collect();
        assert_eq!(started.len(), 1, "ten held requests, one scale-up");
        for task in started {
            task.await.unwrap();
        }
        assert_eq!(methods(&seen), ["GET", "PUT"]);
        assert_eq!(lock(&seen)[1].1["spec"]["replicas"], 1);
        // Later requests of the same episode wait for the same pod.
        assert!(holds.scale_up(&client, &t).is_none());
        drop(held);
        // A new episode asks again, and finds it scaled: nothing to write.
        let _h = holds.enter(&t).unwrap();
        holds.scale_up(&client, &t).unwrap().await.unwrap();
        assert_eq!(methods(&seen), ["GET", "PUT", "GET"]);

        // A Deployment a user scaled up is never lowered, nor written.
        let (client, seen) = scale_server(3);
        let holds = Holds::default();
        let _h = holds.enter(&t).unwrap();
        holds.scale_up(&client, &t).unwrap().await.unwrap();
        assert_eq!(methods(&seen), ["GET"]);
    }

    fn target(max_held: usize) -> ScaleTarget {
        ScaleTarget {
            namespace: "shop".into(),
            name: "lazy".into(),
            deadline: names::HOLD_DEADLINE_DEFAULT,
            max_held,
            idle: names::SCALE_TO_ZERO_IDLE_DEFAULT,
        }
    }

    #[test]
    fn held_requests_are_capped_per_deployment_and_leaving_frees_a_place() {
        let holds = Holds::default();
        let t = target(2);
        let a = holds.enter(&t).expect("first place");
        let b = holds.enter(&t).expect("second place");
        assert!(holds.enter(&t).is_none(), "beyond the cap");
        // Another Deployment has its own places.
        let other = ScaleTarget {
            name: "other".into(),
            ..target(1)
        };
        let c = holds.enter(&other).expect("its own place");
        drop(a);
        let d = holds.enter(&t).expect("a place was given back");
        assert!(holds.enter(&t).is_none());
        drop((b, c, d));
        assert!(holds.enter(&t).is_some());
    }

    #[test]
    fn the_last_held_request_leaving_ends_the_scale_up_episode() {
        let holds = Holds::default();
        let t = target(10);
        let a = holds.enter(&t).expect("a place");
        let b = holds.enter(&t).expect("a place");
        let s = holds.state(&t);
        s.scaling.store(true, Ordering::SeqCst);
        drop(a);
        assert!(s.scaling.load(Ordering::SeqCst), "a request is still held");
        drop(b);
        assert!(!s.scaling.load(Ordering::SeqCst));
    }
}
