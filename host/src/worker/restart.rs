//! Driving the containers: init containers one at a time and in order, then the containers;
//! what a terminated run means under the restartPolicy, and restarts with kubelet's back-off.

use std::time::{Duration, Instant};

use skiff_runtime::ContainerState;

use super::{BACKOFF_RESET, Phase, Worker, WorkerError, humanize, next_backoff, restart_policy};
use crate::events::EventType;

impl Worker {
    /// One pass: sandbox, files, init containers, containers.
    pub(super) async fn step(&mut self) {
        // A finished pod whose network is released runs nothing again.
        if self.network_released {
            return;
        }
        if !self.ensure_sandbox().await {
            return;
        }
        self.refresh_files().await;
        if self.phase == Phase::Initializing {
            self.step_init().await;
        }
        if self.phase != Phase::Running {
            return;
        }
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].init {
                continue;
            }
            if !self.ensure_created(i).await {
                continue;
            }
            let Some(state) = self.ctrs[i].state() else {
                continue;
            };
            match &state {
                ContainerState::Waiting { .. } => {
                    if self.ctrs[i].due(Instant::now()) && self.ctrs[i].handled_finish.is_none() {
                        self.start(i).await;
                    }
                }
                ContainerState::Running { .. } => self.probe(i).await,
                ContainerState::Terminated { .. } => {
                    self.on_terminated(i, &state).await;
                    self.maybe_restart(i, &state).await;
                }
            }
        }
    }

    /// Runs the first unfinished init container; moves to `Running` once all are done (or to
    /// `InitFailed` when one fails for good).
    async fn step_init(&mut self) {
        let inits: Vec<usize> = (0..self.ctrs.len())
            .filter(|&i| self.ctrs[i].init)
            .collect();
        let mut all_done = true;
        for i in inits {
            if self.ctrs[i].done {
                continue;
            }
            all_done = false;
            if !self.ensure_created(i).await {
                break;
            }
            let Some(state) = self.ctrs[i].state() else {
                break;
            };
            match &state {
                ContainerState::Waiting { .. } => {
                    if self.ctrs[i].due(Instant::now()) {
                        self.start(i).await;
                    }
                }
                ContainerState::Running { .. } => {}
                ContainerState::Terminated { exit_code, .. } => {
                    if *exit_code == 0 {
                        self.ctrs[i].done = true;
                        self.ctrs[i].handled_finish = None;
                        all_done = true;
                        continue;
                    }
                    self.on_terminated(i, &state).await;
                    self.maybe_restart(i, &state).await;
                }
            }
            break;
        }
        if self.phase == Phase::InitFailed {
            return;
        }
        if all_done && self.ctrs.iter().filter(|c| c.init).all(|c| c.done) {
            self.phase = Phase::Running;
        }
    }

    /// Handles a terminated run: decides whether and when to restart.
    pub(super) async fn on_terminated(&mut self, i: usize, state: &ContainerState) {
        let ContainerState::Terminated {
            exit_code,
            finished_at,
            ..
        } = state
        else {
            return;
        };
        if self.ctrs[i].handled_finish == Some(*finished_at) {
            return;
        }
        let policy = restart_policy(&self.pod).to_string();
        let c = &mut self.ctrs[i];
        c.handled_finish = Some(*finished_at);
        let failed = *exit_code != 0 || c.killed_by_probe;
        let restart = if c.init {
            failed && policy != "Never"
        } else {
            match policy.as_str() {
                "Never" => false,
                "OnFailure" => failed,
                _ => true,
            }
        };
        if !restart {
            c.done = true;
            if c.init && failed {
                self.phase = Phase::InitFailed;
            }
            return;
        }
        // Kubelet's back-off: a run longer than 10 min resets it; the first restart is
        // immediate, then 10 s doubling to 5 min.
        if c.run_started.is_some_and(|t| t.elapsed() >= BACKOFF_RESET) {
            c.backoff = Duration::ZERO;
        }
        let delay = c.backoff;
        c.backoff = next_backoff(c.backoff);
        c.retry_at = Some(Instant::now() + delay);
        if !delay.is_zero() {
            let name = c.spec.name.clone();
            let msg = format!(
                "back-off {} restarting failed container={name} pod={}_{}({})",
                humanize(delay),
                self.name,
                self.ns,
                self.uid
            );
            c.error = Some(WorkerError::CrashLoopBackOff(msg));
            let ev = format!(
                "Back-off restarting failed container {name} in pod {}_{}({})",
                self.name, self.ns, self.uid
            );
            self.event(Some(i), EventType::Warning, "BackOff", &ev)
                .await;
        }
    }

    /// Restarts a terminated container whose back-off has elapsed.
    pub(super) async fn maybe_restart(&mut self, i: usize, state: &ContainerState) {
        if !state.is_terminated() || self.ctrs[i].done || !self.ctrs[i].due(Instant::now()) {
            return;
        }
        if self.ctrs[i].handled_finish.is_none() {
            return;
        }
        self.ctrs[i].last = Some(state.clone());
        self.ctrs[i].restart_count += 1;
        self.ctrs[i].retry_at = None;
        self.start(i).await;
    }
}
