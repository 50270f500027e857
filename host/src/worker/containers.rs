//! A container's way into the sandbox: pulling its image through the backend's image service
//! (by `imagePullPolicy`), creating it, starting it, and replacing it when its image changes.

use std::time::{Duration, Instant};

use skiff_meta::pod::default_pull_policy;
use skiff_runtime::ContainerState;

use super::{Ctr, REFRESH_FILES, Worker, WorkerError, next_backoff};
use crate::convert;
use crate::events::EventType;

impl Worker {
    /// Pulls and creates a container if needed. True once it exists in the sandbox.
    pub(super) async fn ensure_created(&mut self, i: usize) -> bool {
        if self.ctrs[i].created {
            return true;
        }
        let now = Instant::now();
        if !self.ctrs[i].due(now) {
            return false;
        }
        let (Some(sb), Some(backend)) = (self.sandbox.clone(), self.backend.clone()) else {
            return false;
        };
        let images = backend.images.clone();
        let image = self.ctrs[i].spec.image.clone().unwrap_or_default();
        let policy = self.ctrs[i]
            .spec
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&image).to_string());
        let present = if policy == "Always" {
            None
        } else {
            images.present(&image)
        };
        let pulled = match present {
            Some(p) => {
                self.event(
                    Some(i),
                    EventType::Normal,
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                )
                .await;
                p
            }
            None if policy == "Never" => {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.event(Some(i), EventType::Warning, "ErrImageNeverPull", &msg)
                    .await;
                let c = &mut self.ctrs[i];
                c.error = Some(WorkerError::ErrImageNeverPull(msg));
                c.backoff = next_backoff(c.backoff);
                c.retry_at = Some(now + c.backoff);
                return false;
            }
            None => {
                self.event(
                    Some(i),
                    EventType::Normal,
                    "Pulling",
                    &format!("Pulling image \"{image}\""),
                )
                .await;
                let started = Instant::now();
                let span = match self.start_span(i) {
                    Some(parent) => tracing::info_span!(parent: &parent, "pull", image = %image),
                    None => tracing::Span::none(),
                };
                match tracing::Instrument::instrument(images.pull(&image), span).await {
                    Ok(p) => {
                        let took = started.elapsed();
                        self.event(
                            Some(i),
                            EventType::Normal,
                            "Pulled",
                            &format!(
                                "Successfully pulled image \"{image}\" in {took:.3?}. Image size: {} bytes.",
                                p.size
                            ),
                        )
                        .await;
                        p
                    }
                    Err(e) => {
                        let e = e.to_string();
                        self.event(Some(i), EventType::Warning, "Failed", &e).await;
                        self.event(Some(i), EventType::Warning, "Failed", "Error: ErrImagePull")
                            .await;
                        let c = &mut self.ctrs[i];
                        let again = matches!(
                            c.error,
                            Some(WorkerError::ErrImagePull(_) | WorkerError::ImagePullBackOff(_))
                        );
                        c.error = Some(WorkerError::ErrImagePull(e));
                        c.backoff = next_backoff(c.backoff);
                        c.retry_at = Some(now + c.backoff);
                        if again {
                            // Second and later failures: kubelet shows the back-off.
                            let msg = format!("Back-off pulling image \"{image}\"");
                            c.error = Some(WorkerError::ImagePullBackOff(msg.clone()));
                            self.event(Some(i), EventType::Normal, "BackOff", &msg)
                                .await;
                        }
                        return false;
                    }
                }
            }
        };
        if backend.handler() == skiff_runtime::OCI_HANDLER
            && let Some(e) = convert::unsupported(&self.pod, &self.ctrs[i].spec)
        {
            self.event(
                Some(i),
                EventType::Warning,
                "Failed",
                &format!("Error: {e}"),
            )
            .await;
            let c = &mut self.ctrs[i];
            c.error = Some(WorkerError::CreateContainerConfigError(e));
            c.retry_at = Some(now + Duration::from_secs(10));
            return false;
        }
        let mut spec = match convert::container_spec(
            &self.pod,
            &self.ctrs[i].spec,
            &self.refs,
            self.addrs(),
        ) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("Error: {e}");
                self.event(Some(i), EventType::Warning, "Failed", &msg)
                    .await;
                let c = &mut self.ctrs[i];
                c.error = Some(WorkerError::CreateContainerConfigError(e));
                c.retry_at = Some(now + Duration::from_secs(10));
                // Re-read the references before the next attempt.
                self.refs_at = Instant::now()
                    .checked_sub(REFRESH_FILES)
                    .unwrap_or(self.refs_at);
                return false;
            }
        };
        spec.image = pulled.image.clone();
        let name = spec.name.clone();
        // Reading, compiling (or the cache's copy) and link-checking the image.
        let span = match self.start_span(i) {
            Some(parent) => tracing::info_span!(parent: &parent, "compile"),
            None => tracing::Span::none(),
        };
        let result = tracing::Instrument::instrument(sb.create_container(spec), span).await;
        // Say where a capability is declared: the runtime knows no pod annotations.
        let result = result.map_err(|e| match &e {
            skiff_runtime::Error::UndeclaredCapability {
                container,
                capability,
                ..
            } => format!(
                "{e} (declare it in the pod annotation {}{container}: \"{capability}\")",
                skiff_meta::names::CAPABILITIES_PREFIX
            ),
            _ => e.to_string(),
        });
        match result {
            Ok(_kind) => {
                let rx = match sb.watch_container(&name) {
                    Ok(rx) => rx,
                    Err(e) => {
                        tracing::warn!(pod = %self.name, container = %name, error = %e, "watching a created container");
                        return false;
                    }
                };
                // A container the backend re-adopted is already running or terminated.
                let adopted = !matches!(*rx.borrow(), ContainerState::Waiting { .. });
                let c = &mut self.ctrs[i];
                c.created = true;
                c.image_id = pulled.image_id;
                c.error = None;
                c.backoff = Duration::ZERO;
                c.retry_at = None;
                if adopted {
                    if rx.borrow().is_running() {
                        c.run_started = Some(Instant::now());
                        let now = Instant::now();
                        c.liveness.reset(now);
                        c.readiness.reset(now);
                        c.startup.reset(now);
                    }
                    c.rx = Some(rx);
                    tracing::info!(pod = %self.name, container = %name, "container re-adopted");
                    return true;
                }
                c.rx = Some(rx);
                let msg = format!("Created container: {name}");
                self.event(Some(i), EventType::Normal, "Created", &msg)
                    .await;
                true
            }
            Err(e) => {
                let msg = e.to_string();
                self.event(
                    Some(i),
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {msg}"),
                )
                .await;
                let c = &mut self.ctrs[i];
                c.error = Some(WorkerError::CreateContainerError(msg));
                c.backoff = next_backoff(c.backoff);
                c.retry_at = Some(now + c.backoff);
                false
            }
        }
    }

    /// Starts (or restarts) a created container; probes start over.
    pub(super) async fn start(&mut self, i: usize) {
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        let name = self.ctrs[i].spec.name.clone();
        let span = match self.start_span(i) {
            Some(parent) => tracing::info_span!(parent: &parent, "instantiate"),
            None => tracing::Span::none(),
        };
        let started = tracing::Instrument::instrument(sb.start_container(&name), span).await;
        // The start is over, either way: its span ends.
        self.ctrs[i].start_span = None;
        match started {
            Ok(()) => {
                let restart = self.ctrs[i].restart_count > 0;
                (self.ctx.metrics).container_started(&self.ns, &self.name, restart);
                let c = &mut self.ctrs[i];
                c.run_started = Some(Instant::now());
                c.killed_by_probe = false;
                c.error = None;
                let now = Instant::now();
                c.liveness.reset(now);
                c.readiness.reset(now);
                c.startup.reset(now);
                self.event(
                    Some(i),
                    EventType::Normal,
                    "Started",
                    &format!("Started container {name}"),
                )
                .await;
            }
            Err(e) => {
                let msg = e.to_string();
                self.event(
                    Some(i),
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {msg}"),
                )
                .await;
                let c = &mut self.ctrs[i];
                c.error = Some(WorkerError::RunContainerError(msg));
                c.backoff = next_backoff(c.backoff);
                c.retry_at = Some(Instant::now() + c.backoff);
            }
        }
    }

    /// A container's image changed (the only mutable part of a pod's containers): kubelet
    /// kills it and starts it again from the new image.
    pub(super) async fn on_spec_change(&mut self) {
        // A pod being deleted keeps its containers, and so does one that finished: kubelet
        // never restarts a terminal pod's containers.
        if self.pod.metadata.deletion_timestamp.is_some()
            || self.network_released
            || self.terminal_phase()
        {
            return;
        }
        let Some(spec) = self.pod.spec.clone() else {
            return;
        };
        let all = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (c, true))
            .chain(spec.containers.iter().map(|c| (c, false)));
        let mut changed = Vec::new();
        for (new, init) in all {
            let Some(i) = self
                .ctrs
                .iter()
                .position(|c| c.init == init && c.spec.name == new.name)
            else {
                continue;
            };
            if self.ctrs[i].spec.image == new.image {
                continue;
            }
            if !self.ctrs[i].created || init {
                let c = &mut self.ctrs[i];
                c.spec.image = new.image.clone();
                c.retry_at = None;
                c.backoff = Duration::ZERO;
                continue;
            }
            changed.push((i, new.clone()));
        }
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        for (i, new) in changed {
            let name = new.name.clone();
            self.event(
                Some(i),
                EventType::Normal,
                "Killing",
                &format!("Container {name} definition changed, will be restarted"),
            )
            .await;
            if let Err(e) = sb.stop_container(&name, self.grace(None)).await {
                tracing::warn!(pod = %self.name, container = %name, error = %e, "stopping a changed container");
            }
            let last = self.ctrs[i].state().filter(|s| s.is_terminated());
            if let Err(e) = sb.remove_container(&name).await {
                tracing::warn!(pod = %self.name, container = %name, error = %e, "removing a changed container");
            }
            let restarts = self.ctrs[i].restart_count + i32::from(last.is_some());
            let mut fresh = Ctr::new(new, false, restarts);
            fresh.last = last;
            self.ctrs[i] = fresh;
        }
    }
}
