//! Graceful deletion, as kubelet does it: Ready=False at once, `preStop` hooks within the grace
//! period while the containers keep serving, then stop, report the last status, remove the
//! sandbox and delete the Pod object for good.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Probe};
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use skiff_runtime::PodSandbox;
use tokio::sync::watch;

use super::{MIN_GRACE_AFTER_HOOKS, Phase, RETRY, Worker, humanize};
use crate::events::EventType;
use crate::probe;

impl Worker {
    /// Runs the `preStop` hooks of the running containers concurrently, for at most `grace`
    /// or until the pod object is gone; the containers keep serving meanwhile. Failures are
    /// `FailedPreStopHook` Events. True when any hook ran.
    async fn run_pre_stop_hooks(
        &mut self,
        sb: &dyn PodSandbox,
        grace: Duration,
        rx: &mut watch::Receiver<Pod>,
    ) -> bool {
        let hooks: Vec<(usize, LifecycleHandler)> = self
            .ctrs
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.init && c.running())
            .filter_map(|(i, c)| Some((i, c.spec.lifecycle.as_ref()?.pre_stop.clone()?)))
            .collect();
        if hooks.is_empty() {
            return false;
        }
        let named = probe::pod_ports(&self.pod);
        let ctrs = &self.ctrs;
        let all =
            futures::future::join_all(hooks.iter().map(|(i, h)| async {
                (*i, pre_stop(sb, &ctrs[*i].spec, &named, h, grace).await)
            }));
        let gone = async { while rx.changed().await.is_ok() {} };
        let results = tokio::select! {
            r = tokio::time::timeout(grace, all) => r.ok(),
            _ = gone => Some(Vec::new()),
        };
        match results {
            Some(results) => {
                for (i, r) in results {
                    if let Err(e) = r {
                        let msg = format!("PreStopHook failed: {e}");
                        self.event(Some(i), EventType::Warning, "FailedPreStopHook", &msg)
                            .await;
                    }
                }
            }
            None => {
                let msg = format!(
                    "PreStopHook did not complete within the grace period of {}",
                    humanize(grace)
                );
                for (i, _) in &hooks {
                    self.event(Some(*i), EventType::Warning, "FailedPreStopHook", &msg)
                        .await;
                }
            }
        }
        true
    }

    /// Graceful deletion, as kubelet does it: the pod reports Ready=False at once (clients
    /// move away while it still serves), each running container's `preStop` hook runs
    /// within the grace period, then the containers stop with what is left of it (at least
    /// 2 s after hooks, like kubelet), the status is reported and the pod deleted for good.
    pub(super) async fn terminate_and_delete(&mut self, rx: &mut watch::Receiver<Pod>) {
        let started = Instant::now();
        let grace = self.grace(None);
        self.begin_terminating();
        if self.sandbox.is_some() && !self.terminal_phase() {
            self.report().await;
        }
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].running() {
                let name = self.ctrs[i].spec.name.clone();
                self.event(
                    Some(i),
                    EventType::Normal,
                    "Killing",
                    &format!("Stopping container {name}"),
                )
                .await;
            }
        }
        let mut stop_grace = grace;
        if let Some(sb) = self.sandbox.clone()
            && self.run_pre_stop_hooks(&*sb, grace, rx).await
        {
            stop_grace = grace
                .saturating_sub(started.elapsed())
                .max(MIN_GRACE_AFTER_HOOKS);
        }
        if let Some(sb) = self.sandbox.clone() {
            let names: Vec<String> = self
                .ctrs
                .iter()
                .filter(|c| c.created)
                .map(|c| c.spec.name.clone())
                .collect();
            futures::future::join_all(names.iter().map(|n| sb.stop_container(n, stop_grace))).await;
            for c in &mut self.ctrs {
                c.done = true;
                let _ = c.state();
            }
            if !self.terminal_phase() {
                self.report().await;
            }
        }
        self.stop(Duration::ZERO).await;
        // An eviction ordered while the pod was going anyway is done now: the eviction manager
        // waits for it no longer (it waited out its 30 s cleanup timeout before).
        if let Some(done) = self.ctx.eviction.take(&self.uid).and_then(|o| o.done) {
            let _ = done.send(());
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        // Until it is gone, as kubelet's status manager does: a refused delete would leave the
        // pod Terminating with no worker left to finish it. Ends early if the node stops.
        let mut warned = false;
        loop {
            match api.delete(&self.name, &dp).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{}/{}", self.ns, self.name), "pod stopped and deleted");
                    return;
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(pod = %self.name, error = %e, "deleting the pod; retrying");
                }
                Err(e) => tracing::debug!(pod = %self.name, error = %e, "deleting the pod"),
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Moves to [`Phase::Terminating`], remembering how far the pod had come.
    pub(super) fn begin_terminating(&mut self) {
        if !self.phase.terminating() {
            self.phase = Phase::Terminating {
                initialized: self.phase.initialized(),
                init_failed: self.phase.init_failed(),
            };
        }
    }
}

/// Runs one `preStop` handler: `sleep` waits (the container keeps serving), `httpGet` asks the
/// container through the sandbox like a probe; `exec` is not supported by wasm containers and
/// `tcpSocket` is ignored, as kubelet ignores it.
async fn pre_stop(
    sb: &dyn PodSandbox,
    c: &Container,
    named: &HashMap<String, u16>,
    h: &LifecycleHandler,
    budget: Duration,
) -> Result<(), String> {
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(budget)).await;
        return Ok(());
    }
    if let Some(get) = &h.http_get {
        let probe = Probe {
            http_get: Some(get.clone()),
            timeout_seconds: Some(i32::try_from(budget.as_secs().max(1)).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        return probe::run(sb, c, named, &probe, true).await;
    }
    if h.exec.is_some() {
        return Err("exec hooks are not supported by the wasm runtime".into());
    }
    Ok(())
}
