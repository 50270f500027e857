//! The pod's sandbox: choosing the backend by RuntimeClass handler, reading referenced objects,
//! taking a pod IP, building volumes and creating the sandbox; keeping configMap and secret
//! files current and ServiceAccount tokens rotated; and removing the sandbox.

use std::time::{Duration, Instant};

use k8s_openapi::api::node::v1::RuntimeClass;
use kube::Api;
use skiff_meta::names::REUSE_INSTANCES;
use skiff_runtime::{Backend, PodSpec};

use super::{
    MOUNT_BACKOFF_INITIAL, MOUNT_BACKOFF_MAX, Phase, REFRESH_FILES, RETRY, Worker, WorkerError,
};
use crate::convert::{self, FetchError};
use crate::events::EventType;
use crate::net::table::LocalPod;
use crate::storage;

impl Worker {
    /// Records a failed sandbox attempt: an Event (with `event_reason`) unless the message is
    /// the one already shown, and the next attempt after `retry`.
    async fn sandbox_failed(
        &mut self,
        error: WorkerError,
        retry: Duration,
        event_reason: Option<&str>,
    ) {
        let previous = match &self.phase {
            Phase::Sandbox { error: Some(e), .. } => Some(e.message().to_string()),
            _ => None,
        };
        if let Some(reason) = event_reason
            && previous.as_deref() != Some(error.message())
        {
            let msg = error.message().to_string();
            self.event(None, EventType::Warning, reason, &msg).await;
        }
        self.phase = Phase::Sandbox {
            retry_at: Some(Instant::now() + retry),
            error: Some(error),
        };
    }

    /// Creates the sandbox: picks the backend, reads referenced objects, builds volumes, takes
    /// an IP. True once the sandbox exists.
    pub(super) async fn ensure_sandbox(&mut self) -> bool {
        if self.sandbox.is_some() {
            return true;
        }
        let Phase::Sandbox { retry_at, .. } = &self.phase else {
            return false;
        };
        if retry_at.is_some_and(|t| t > Instant::now()) {
            return false;
        }
        if self.start_time.is_none() {
            self.start_time = Some(jiff::Timestamp::now());
        }
        let backend = match self.select_backend().await {
            Ok(b) => b,
            Err(msg) => {
                self.sandbox_failed(
                    WorkerError::ContainerCreating(msg),
                    Duration::from_secs(10),
                    Some("FailedCreatePodSandBox"),
                )
                .await;
                return false;
            }
        };
        let refs = match convert::fetch(
            &self.ctx.client,
            &self.ctx.tokens,
            &self.ctx.objects,
            true,
            &self.pod,
        )
        .await
        {
            Ok(r) => r,
            Err(e @ FetchError::Read(_)) => {
                self.sandbox_failed(WorkerError::ContainerCreating(e.to_string()), RETRY, None)
                    .await;
                return false;
            }
            Err(e @ FetchError::Token { .. }) => {
                // Kubelet's volume manager: a FailedMount Event, the pod waits in
                // ContainerCreating, and the mount is retried with back-off.
                self.mount_backoff = if self.mount_backoff.is_zero() {
                    MOUNT_BACKOFF_INITIAL
                } else {
                    (self.mount_backoff * 2).min(MOUNT_BACKOFF_MAX)
                };
                self.sandbox_failed(
                    WorkerError::ContainerCreating(e.to_string()),
                    self.mount_backoff,
                    Some("FailedMount"),
                )
                .await;
                return false;
            }
        };
        self.mount_backoff = Duration::ZERO;
        self.refs = refs;
        self.refs_at = Instant::now();
        // A sandbox the backend re-adopted after a node restart keeps its IP.
        let adopted = backend.runtime.pod(&self.uid);
        if self.ip.is_none()
            && let Some(ip) = adopted.as_ref().and_then(|sb| sb.ip())
        {
            self.ctx.reserve_ip(ip, &self.uid);
            self.ip = Some(ip);
        }
        if self.ip.is_none() {
            let wanted = self
                .pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok());
            self.ip = self.ctx.allocate_ip(wanted, &self.uid);
            if self.ip.is_none() {
                // Kubelet's CNI fails the sandbox the same way when the range is used up.
                let msg = format!(
                    "Failed to create pod sandbox: no free IP in this node's pod CIDR {}",
                    self.ctx.pod_cidr()
                );
                self.sandbox_failed(
                    WorkerError::ContainerCreating(msg),
                    Duration::from_secs(5),
                    Some("FailedCreatePodSandBox"),
                )
                .await;
                return false;
            }
        }
        // Claims resolve to their volumes' directories; until a claim is bound the pod waits.
        let claims =
            match storage::resolve_claims(&self.ctx.client, &self.pod, &self.ctx.node_name).await {
                Ok(c) => c,
                Err(e) => {
                    self.sandbox_failed(
                        WorkerError::ContainerCreating(e),
                        Duration::from_secs(5),
                        Some("FailedMount"),
                    )
                    .await;
                    return false;
                }
            };
        let volumes = match convert::volumes(&self.pod, &self.refs, &claims, self.addrs()) {
            Ok(v) => v,
            Err(e) => {
                self.sandbox_failed(
                    WorkerError::CreateContainerConfigError(e),
                    Duration::from_secs(10),
                    Some("FailedMount"),
                )
                .await;
                return false;
            }
        };
        let network = self.ctx.pod_network();
        let dns = match convert::dns_config(
            &self.pod,
            network.map(|n| n.gateway.into()),
            &self.ctx.host_dns,
        ) {
            Ok(d) => d,
            Err(e) => {
                self.sandbox_failed(
                    WorkerError::ContainerCreating(format!("Failed to create pod sandbox: {e}")),
                    Duration::from_secs(10),
                    Some("FailedCreatePodSandBox"),
                )
                .await;
                return false;
            }
        };
        let spec = PodSpec {
            id: self.uid.clone(),
            name: format!("{}/{}", self.ns, self.name),
            ip: self.ip,
            volumes,
            http: skiff_runtime::HttpOptions {
                reuse_instances: self
                    .pod
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REUSE_INSTANCES))
                    .is_some_and(|v| v == "true"),
                max_idle_instances: 0,
            },
            hostname: convert::hostname(&self.pod),
            namespace: self.ns.clone(),
            network: network.filter(|_| self.ip.is_some()),
            dns: Some(dns),
        };
        match backend.runtime.create_pod(spec).await {
            Ok(sb) => {
                let adopted = adopted.is_some();
                tracing::info!(pod = %format!("{}/{}", self.ns, self.name), ip = ?self.ip, handler = %backend.handler(), adopted, "sandbox created");
                self.ctx.publish(&self.ns, &self.name, sb.clone());
                self.sandbox = Some(sb);
                self.backend = Some(backend);
                if adopted {
                    // Its files are from before the restart (tokens since replaced included).
                    self.write_file_volumes(None).await;
                } else {
                    self.runs_lost_with_the_node();
                }
                self.report_local(false);
                self.phase = if adopted && self.initialized_before() {
                    // The init containers ran before the node restarted: not again.
                    for c in self.ctrs.iter_mut().filter(|c| c.init) {
                        c.done = true;
                    }
                    Phase::Running
                } else {
                    Phase::Initializing
                };
                true
            }
            Err(e) => {
                let msg = format!("Failed to create pod sandbox: {e}");
                self.sandbox_failed(
                    WorkerError::ContainerCreating(msg),
                    Duration::from_secs(5),
                    Some("FailedCreatePodSandBox"),
                )
                .await;
                false
            }
        }
    }

    /// The Pod's status says its init containers all completed (`Initialized` is True).
    /// Containers the pod's status shows running, in a sandbox that was not re-adopted, ended
    /// with the node process that ran them (wasm containers run inside it; a Linux container
    /// whose state was lost): the next start is a restart, counted, and the lost run is the
    /// last state, as kubelet reports a container it can no longer find.
    fn runs_lost_with_the_node(&mut self) {
        let Some(status) = self.pod.status.as_ref() else {
            return;
        };
        let reported = status
            .init_container_statuses
            .iter()
            .flatten()
            .map(|s| (true, s))
            .chain(
                status
                    .container_statuses
                    .iter()
                    .flatten()
                    .map(|s| (false, s)),
            );
        let now = jiff::Timestamp::now();
        for (init, s) in reported {
            let Some(started) = s.state.as_ref().and_then(|st| st.running.as_ref()) else {
                continue;
            };
            let Some(c) = self
                .ctrs
                .iter_mut()
                .find(|c| c.init == init && c.spec.name == s.name)
            else {
                continue;
            };
            c.restart_count = s.restart_count + 1;
            c.last = Some(skiff_runtime::ContainerState::Terminated {
                exit_code: skiff_runtime::EXIT_KILLED,
                reason: skiff_runtime::TerminationReason::Error,
                message: "the node restarted and the container's run ended with it".into(),
                started_at: started.started_at.as_ref().map_or(now, |t| t.0),
                finished_at: now,
            });
        }
    }

    fn initialized_before(&self) -> bool {
        self.pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Initialized" && c.status == "True")
    }

    /// The backend for the pod: the default one without `runtimeClassName`, else the one
    /// serving its RuntimeClass's handler. `Err` is the message shown while waiting.
    async fn select_backend(&self) -> Result<Backend, String> {
        let class = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.clone());
        let handler = match class {
            None => None,
            Some(class) => {
                let api: Api<RuntimeClass> = Api::all(self.ctx.client.clone());
                let rc = api
                    .get_opt(&class)
                    .await
                    .map_err(|e| format!("reading RuntimeClass {class}: {e}"))?
                    .ok_or_else(|| format!("RuntimeClass \"{class}\" not found"))?;
                Some(rc.handler)
            }
        };
        self.ctx.runtimes.get(handler.as_deref()).map_err(|_| {
            let runs: Vec<String> = self
                .ctx
                .runtimes
                .handlers()
                .iter()
                .map(|h| format!("{h:?}"))
                .collect();
            format!(
                "Failed to create pod sandbox: no runtime for \"{}\" is configured on this node (it runs {})",
                handler.as_deref().unwrap_or_default(),
                runs.join(", ")
            )
        })
    }

    /// Re-reads referenced ConfigMaps and Secrets, rotates ServiceAccount tokens that are due,
    /// and rewrites changed file volumes (atomically: the runtime swaps `..data`).
    pub(super) async fn refresh_files(&mut self) {
        if !self.has_file_refs()
            || (self.refs_at.elapsed() < REFRESH_FILES && !self.ctx.tokens.due(&self.uid))
        {
            return;
        }
        self.refs_at = Instant::now();
        let refs = match convert::fetch(
            &self.ctx.client,
            &self.ctx.tokens,
            &self.ctx.objects,
            false,
            &self.pod,
        )
        .await
        {
            Ok(refs) => refs,
            Err(e @ FetchError::Token { .. }) => {
                // The volume keeps its current files; the token manager retries later.
                let msg = e.to_string();
                self.event(None, EventType::Warning, "FailedMount", &msg)
                    .await;
                return;
            }
            Err(FetchError::Read(_)) => return,
        };
        if refs == self.refs {
            return;
        }
        let old = std::mem::replace(&mut self.refs, refs);
        self.write_file_volumes(Some(&old)).await;
    }

    /// Writes the file-set volumes whose files differ from what `old` made (all of them
    /// without `old`: a sandbox re-adopted after a node restart holds files from before it).
    async fn write_file_volumes(&self, old: Option<&convert::Refs>) {
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        let volumes = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for v in &volumes {
            let Some(Ok((new_files, _))) =
                convert::volume_files(&self.pod, v, &self.refs, self.addrs())
            else {
                continue;
            };
            let old_files = old
                .and_then(|old| convert::volume_files(&self.pod, v, old, self.addrs()))
                .and_then(Result::ok)
                .map(|(f, _)| f);
            if old_files.as_ref() == Some(&new_files) {
                continue;
            }
            if let Err(e) = sb.update_files(&v.name, new_files).await {
                tracing::warn!(pod = %self.name, volume = %v.name, error = %e, "updating volume files");
            }
        }
    }

    /// Gives the network of a pod that finished back, as kubelet stops a terminal pod's
    /// sandbox: once its terminal status is written (see [`Worker::release_network`]), then the
    /// status again, whose `PodReadyToStartContainers` is False from then on.
    pub(super) async fn release_network_when_finished(&mut self) {
        if self.network_released || self.sandbox.is_none() {
            return;
        }
        let finished = self
            .last_status
            .as_ref()
            .and_then(|s| s.get("phase"))
            .and_then(|p| p.as_str())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if finished {
            self.release_network().await;
            if self.network_released {
                self.report().await;
            }
        }
    }

    /// The backend tears the sandbox's network down, then the Service table forgets the pod
    /// and its IP returns to the node's range. The status goes on showing the IP, as kubelet's
    /// does; the sandbox stays, with the containers' logs, until the pod is deleted. Without
    /// this a node's range would fill up with finished Job pods. A refused release is tried
    /// again on the next pass; until then the IP stays the pod's.
    pub(super) async fn release_network(&mut self) {
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        match sb.release_network().await {
            Ok(()) => {
                if let Some(ip) = self.ip {
                    self.ctx.services.remove_local(ip);
                    self.ctx.release_ip(ip, &self.uid);
                }
                self.network_released = true;
                tracing::info!(pod = %format!("{}/{}", self.ns, self.name), ip = ?self.ip, "pod finished: its network is released");
            }
            Err(e) => {
                tracing::warn!(pod = %self.name, error = %e, "releasing a finished pod's network");
            }
        }
    }

    /// A pod that finished before this worker started (the node restarted): a sandbox the
    /// backend re-adopted for it is the pod's again, so that its containers' logs are served
    /// and it is removed when the pod is deleted. What still runs in it is stopped (kubelet
    /// kills a terminal pod's containers) and its network is released.
    pub(super) async fn adopt_finished(&mut self) {
        let Some(sb) = self.ctx.runtimes.pod(&self.uid) else {
            return;
        };
        self.ctx.publish(&self.ns, &self.name, sb.clone());
        self.sandbox = Some(sb.clone());
        // Reserved by `reserve_adopted` at start, if it has one still.
        self.ip = sb.ip();
        let grace = self.grace(None);
        for (name, state) in sb.container_states() {
            if state.is_running()
                && let Err(e) = sb.stop_container(&name, grace).await
            {
                tracing::warn!(pod = %self.name, container = %name, error = %e, "stopping a container of a finished pod");
            }
        }
        tracing::info!(pod = %format!("{}/{}", self.ns, self.name), "re-adopted the sandbox of a finished pod");
        self.release_network().await;
    }

    /// Stops every container and removes the sandbox.
    pub(super) async fn stop(&mut self, grace: Duration) {
        self.ctx.tokens.forget_pod(&self.uid);
        if let Some(ip) = self.ip
            && !self.network_released
        {
            self.ctx.services.remove_local(ip);
        }
        if let Some(sb) = self.sandbox.take() {
            if let Err(e) = sb.remove(grace).await {
                tracing::warn!(pod = %self.name, error = %e, "removing the sandbox");
            }
            self.ctx.withdraw(&self.ns, &self.name, sb.id());
        }
        // A released address may be another pod's now: the pool frees it only for its owner.
        if let Some(ip) = self.ip.take() {
            self.ctx.release_ip(ip, &self.uid);
        }
    }

    /// Tells the Service routing table about this pod (its IP, namespace, labels, named ports)
    /// and whether it is Ready now.
    pub(super) fn report_local(&self, ready: bool) {
        let (Some(ip), Some(_), false) = (self.ip, &self.sandbox, self.network_released) else {
            return;
        };
        let ports = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
            .collect();
        self.ctx.services.set_local(
            ip,
            LocalPod {
                namespace: self.ns.clone(),
                name: self.name.clone(),
                labels: self.pod.metadata.labels.clone().unwrap_or_default(),
                ports,
                ready,
            },
        );
        // The bridge gives Linux containers the wasm backend's pods (a Linux pod's IP is on its
        // own veth, never the bridge's).
        if self
            .backend
            .as_ref()
            .is_some_and(|b| b.handler() == skiff_runtime::WASM_HANDLER)
        {
            let tcp = self
                .pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
                .filter_map(|p| u16::try_from(p.container_port).ok())
                .collect();
            self.ctx.services.set_wasm_pod(ip, tcp);
        }
    }
}
