//! The pod's status as kubelet reports it, computed by a pure function ([`pod_status`]) from a
//! [`Snapshot`] of the worker and its backend's container states, and written to the API when
//! it changes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState as KState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use skiff_runtime::ContainerState;

use super::{Ctr, Phase, RETRY, Worker, WorkerError};

/// One container as the status function sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerView {
    pub(crate) name: String,
    pub(crate) init: bool,
    /// The full image reference.
    pub(crate) image: String,
    pub(crate) image_id: String,
    pub(crate) created: bool,
    /// The backend's state, once created.
    pub(crate) state: Option<ContainerState>,
    /// Why it waits, as the worker knows it.
    pub(crate) error: Option<WorkerError>,
    /// A next attempt (restart, pull, create) is scheduled.
    pub(crate) backing_off: bool,
    /// It will not run again (or, for an init container, it succeeded).
    pub(crate) done: bool,
    pub(crate) restart_count: i32,
    /// The previous terminated run.
    pub(crate) last: Option<ContainerState>,
    /// Running, and its startup probe (if any) passed.
    pub(crate) started: bool,
    /// Started, and its readiness probe (if any) passed.
    pub(crate) ready: bool,
}

/// Everything a pod's status is computed from.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) phase: &'a Phase,
    /// The sandbox exists.
    pub(crate) sandbox_ready: bool,
    /// The RuntimeClass handler of the pod's backend (the scheme of container ids).
    pub(crate) handler: &'a str,
    pub(crate) uid: &'a str,
    pub(crate) pod_ip: Option<IpAddr>,
    pub(crate) host_ip: IpAddr,
    pub(crate) start_time: Option<Timestamp>,
    pub(crate) containers: Vec<ContainerView>,
    /// Condition type -> (status, lastTransitionTime) as last reported.
    pub(crate) transitions: &'a BTreeMap<String, (String, Timestamp)>,
    pub(crate) now: Timestamp,
    /// The node evicted the pod (or refused it under pressure), with kubelet's message.
    pub(crate) evicted: Option<&'a str>,
}

fn ts(t: Timestamp) -> Time {
    Time(t)
}

fn waiting_state(reason: &str, message: Option<String>) -> KState {
    KState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

fn condition(
    s: &Snapshot<'_>,
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = match s.transitions.get(kind) {
        Some((was, at)) if was == status => *at,
        _ => s.now,
    };
    PodCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        last_transition_time: Some(ts(since)),
        reason: if ok { None } else { reason.map(str::to_string) },
        message: if ok { None } else { message },
        ..Default::default()
    }
}

fn container_id(s: &Snapshot<'_>, c: &ContainerView) -> String {
    format!("{}://{}/{}", s.handler, s.uid, c.name)
}

fn kstate(s: &Snapshot<'_>, c: &ContainerView, state: &ContainerState) -> KState {
    match state {
        ContainerState::Waiting { reason, message } => {
            waiting_state(reason, (!message.is_empty()).then(|| message.clone()))
        }
        ContainerState::Running { started_at } => KState {
            running: Some(ContainerStateRunning {
                started_at: Some(ts(*started_at)),
            }),
            ..Default::default()
        },
        ContainerState::Terminated {
            exit_code,
            reason,
            message,
            started_at,
            finished_at,
        } => KState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.as_str().to_string()),
                message: (!message.is_empty()).then(|| message.clone()),
                started_at: Some(ts(*started_at)),
                finished_at: Some(ts(*finished_at)),
                container_id: Some(container_id(s, c)),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

fn container_status(s: &Snapshot<'_>, c: &ContainerView) -> ContainerStatus {
    let initialized = s.phase.initialized();
    let init_failed = s.phase.init_failed();
    let waits_for_init =
        !c.init && !initialized && !init_failed && s.containers.iter().any(|c| c.init);
    let sandbox_error = match s.phase {
        Phase::Sandbox { error, .. } if !s.sandbox_ready => error.as_ref(),
        _ => None,
    };
    let (state, last) = match (&c.error, &c.state) {
        // Back-off after a terminated run: kubelet shows the waiting reason and keeps the run
        // as lastState.
        (Some(w), Some(st)) if st.is_terminated() && !c.done && c.backing_off => (
            waiting_state(w.reason(), Some(w.message().to_string())),
            Some(kstate(s, c, st)),
        ),
        (_, Some(ContainerState::Waiting { .. })) | (_, None) => {
            let shown = if waits_for_init
                && c.error
                    .as_ref()
                    .is_none_or(|w| matches!(w, WorkerError::ContainerCreating(_)))
            {
                waiting_state("PodInitializing", None)
            } else if let Some(w) = sandbox_error.or(c.error.as_ref()) {
                let message = w.message();
                waiting_state(
                    w.reason(),
                    (!message.is_empty()).then(|| message.to_string()),
                )
            } else {
                waiting_state("ContainerCreating", None)
            };
            (shown, c.last.as_ref().map(|l| kstate(s, c, l)))
        }
        (_, Some(st)) => (kstate(s, c, st), c.last.as_ref().map(|l| kstate(s, c, l))),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: c.created.then(|| container_id(s, c)),
        ready: c.ready && !s.phase.terminating(),
        started: Some(c.started),
        restart_count: c.restart_count,
        state: Some(state),
        last_state: Some(last.unwrap_or_default()),
        ..Default::default()
    }
}

/// The pod's status, as kubelet computes it: phase, conditions, container statuses, IPs.
/// `status.qosClass` belongs to the API server (it sets it on create): kept as the pod has it,
/// computed only when absent.
pub(crate) fn pod_status(s: &Snapshot<'_>) -> PodStatus {
    let initialized = s.phase.initialized();
    let init_failed = s.phase.init_failed();
    let terminating = s.phase.terminating();
    let main: Vec<&ContainerView> = s.containers.iter().filter(|c| !c.init).collect();
    let all_terminated_for_good = !main.is_empty()
        && main
            .iter()
            .all(|c| c.done && c.state.as_ref().is_some_and(|s| s.is_terminated()));
    let phase = if init_failed || s.evicted.is_some() {
        "Failed"
    } else if !initialized {
        "Pending"
    } else if all_terminated_for_good {
        let all_ok = main.iter().all(|c| {
            matches!(
                c.state,
                Some(ContainerState::Terminated { exit_code: 0, .. })
            )
        });
        if all_ok { "Succeeded" } else { "Failed" }
    } else if main.iter().any(|c| {
        c.state
            .as_ref()
            .is_some_and(|st| st.is_running() || (st.is_terminated() && !c.done))
    }) {
        "Running"
    } else {
        "Pending"
    };
    let unready: Vec<&str> = main
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let incomplete: Vec<&str> = s
        .containers
        .iter()
        .filter(|c| c.init && !c.done)
        .map(|c| c.name.as_str())
        .collect();
    let ready = unready.is_empty() && initialized && !init_failed && !terminating;
    let completed = matches!(phase, "Succeeded" | "Failed");
    let unready_msg = format!("containers with unready status: [{}]", unready.join(" "));
    let (nr_reason, nr_msg) = if completed {
        ("PodCompleted", None)
    } else if terminating {
        (
            "PodTerminating",
            Some("the pod is being deleted".to_string()),
        )
    } else {
        ("ContainersNotReady", Some(unready_msg))
    };
    let scheduled_at = s
        .transitions
        .get("PodScheduled")
        .map(|t| t.1)
        .or(s.pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(s.now);
    let mut conditions = vec![
        condition(s, "PodReadyToStartContainers", s.sandbox_ready, None, None),
        condition(
            s,
            "Initialized",
            initialized || incomplete.is_empty(),
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
        ),
        condition(
            s,
            "Ready",
            ready && !completed,
            Some(nr_reason),
            nr_msg.clone(),
        ),
        condition(
            s,
            "ContainersReady",
            ready && !completed,
            Some(nr_reason),
            nr_msg,
        ),
        PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(ts(scheduled_at)),
            ..Default::default()
        },
    ];
    if let Some(message) = s.evicted {
        // Kubernetes' disruption condition for a pod the kubelet terminated.
        let mut c = condition(s, "DisruptionTarget", true, None, None);
        c.reason = Some("TerminationByKubelet".into());
        c.message = Some(message.to_string());
        conditions.push(c);
    }
    let init_statuses: Vec<ContainerStatus> = s
        .containers
        .iter()
        .filter(|c| c.init)
        .map(|c| container_status(s, c))
        .collect();
    let statuses: Vec<ContainerStatus> = main.iter().map(|c| container_status(s, c)).collect();
    let qos_class = s
        .pod
        .status
        .as_ref()
        .and_then(|st| st.qos_class.clone())
        .unwrap_or_else(|| {
            let spec = s.pod.spec.clone().unwrap_or_default();
            skiff_meta::qos::qos_class(&spec).as_str().to_string()
        });
    let host_ip = s.host_ip.to_string();
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.clone()),
        host_ips: Some(vec![HostIP { ip: host_ip }]),
        pod_ip: s.pod_ip.map(|ip| ip.to_string()),
        pod_ips: s.pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
        start_time: s.start_time.map(ts),
        qos_class: Some(qos_class),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        observed_generation: s.pod.metadata.generation,
        reason: s.evicted.map(|_| crate::eviction::REASON.to_string()),
        message: s.evicted.map(str::to_string),
        ..Default::default()
    }
}

impl Worker {
    fn container_view(
        &self,
        c: &Ctr,
        images: Option<&dyn skiff_runtime::ImageService>,
    ) -> ContainerView {
        let image = c.spec.image.clone().unwrap_or_default();
        ContainerView {
            name: c.spec.name.clone(),
            init: c.init,
            image: images.map(|i| i.reference(&image)).unwrap_or(image),
            image_id: c.image_id.clone(),
            created: c.created,
            state: c.peek(),
            error: c.error.clone(),
            backing_off: c.retry_at.is_some(),
            done: c.done,
            restart_count: c.restart_count,
            last: c.last.clone(),
            started: c.started(),
            ready: c.ready(),
        }
    }

    /// The worker's state and its containers' states, for [`pod_status`].
    pub(super) fn snapshot<'a>(&'a self, handler: &'a str, now: Timestamp) -> Snapshot<'a> {
        let images = self.images();
        Snapshot {
            pod: &self.pod,
            phase: &self.phase,
            // Kubelet's condition turns False once a finished pod's sandbox is stopped.
            sandbox_ready: self.sandbox.is_some() && !self.network_released,
            handler,
            uid: &self.uid,
            pod_ip: self.ip,
            host_ip: self.ctx.host_ip,
            start_time: self.start_time,
            containers: self
                .ctrs
                .iter()
                .map(|c| self.container_view(c, images.as_deref()))
                .collect(),
            transitions: &self.transitions,
            now,
            evicted: self.evicted.as_deref(),
        }
    }

    /// The status now; remembers the conditions' transition times.
    pub(super) fn status(&mut self) -> PodStatus {
        let handler = self.handler();
        let status = pod_status(&self.snapshot(&handler, Timestamp::now()));
        for c in status.conditions.iter().flatten() {
            if let Some(t) = &c.last_transition_time {
                self.transitions
                    .insert(c.type_.clone(), (c.status.clone(), t.0));
            }
        }
        status
    }

    /// Writes the status if it changed since the last write.
    pub(super) async fn report(&mut self) {
        let status = self.status();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        // The router learns it before the API server does: a held request is handed to the
        // pod the moment it is Ready here.
        self.report_local(ready);
        let value = match serde_json::to_value(&status) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "serializing pod status");
                return;
            }
        };
        if self.last_status.as_ref() == Some(&value) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let patch = json!({ "status": value });
        match api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.last_status = Some(value);
                self.status_retry_at = None;
            }
            Err(e) => {
                tracing::debug!(pod = %self.name, error = %e, "writing pod status");
                self.last_status = None;
                self.status_retry_at = Some(Instant::now() + RETRY);
            }
        }
    }
}
