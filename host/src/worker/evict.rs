//! Node-pressure eviction of this pod, as kubelet's eviction manager kills a pod: an
//! `Evicted` Warning Event, the containers stopped within the order's grace period, the sandbox
//! removed, and the status `Failed` with reason `Evicted` (through `pod_status`). Also kubelet's
//! admission under memory pressure: a new BestEffort pod that does not tolerate the
//! `node.kubernetes.io/memory-pressure` taint is refused the same way, without running.

use std::time::Duration;

use super::{Phase, Worker};
use crate::events::EventType;
use crate::eviction::{self, Order};

impl Worker {
    /// Evicts the pod if the eviction manager posted an order for it.
    pub(super) async fn take_eviction(&mut self) {
        self.evict_rx.borrow_and_update();
        if self.evicted.is_some() || self.phase.terminating() {
            return;
        }
        if let Some(order) = self.ctx.eviction.take(&self.uid) {
            self.evict(order).await;
        }
    }

    /// Stops the pod for good and reports it `Failed`/`Evicted`.
    async fn evict(&mut self, order: Order) {
        tracing::warn!(
            pod = %format!("{}/{}", self.ns, self.name),
            message = %order.message,
            "evicting pod"
        );
        self.event(None, EventType::Warning, eviction::REASON, &order.message)
            .await;
        if let Some(sb) = self.sandbox.clone() {
            let names: Vec<String> = self
                .ctrs
                .iter()
                .filter(|c| c.created)
                .map(|c| c.spec.name.clone())
                .collect();
            futures::future::join_all(names.iter().map(|n| sb.stop_container(n, order.grace)))
                .await;
        }
        for c in &mut self.ctrs {
            c.done = true;
            c.retry_at = None;
            let _ = c.state();
        }
        self.evicted = Some(order.message);
        self.report().await;
        self.stop(Duration::ZERO).await;
        self.report().await;
        if let Some(done) = order.done {
            let _ = done.send(());
        }
    }

    /// Kubelet's admission under memory pressure: a BestEffort pod not yet started, which
    /// does not tolerate the memory-pressure taint, is refused (`Failed`, `Evicted`).
    pub(super) async fn admit(&mut self) {
        if !self.ctx.eviction.memory_pressure().under_pressure
            || !matches!(self.phase, Phase::Sandbox { .. })
            || self.pod.metadata.deletion_timestamp.is_some()
        {
            return;
        }
        let started = self
            .pod
            .status
            .as_ref()
            .is_some_and(|s| s.start_time.is_some());
        let Some(spec) = self.pod.spec.as_ref() else {
            return;
        };
        let best_effort = skiff_meta::qos::qos_class(spec) == skiff_meta::qos::QosClass::BestEffort;
        let tolerates = spec.tolerations.iter().flatten().any(|t| {
            let key_ok = match t.operator.as_deref().unwrap_or("Equal") {
                "Exists" => t
                    .key
                    .as_deref()
                    .is_none_or(|k| k.is_empty() || k == eviction::MEMORY_PRESSURE_TAINT),
                _ => t.key.as_deref() == Some(eviction::MEMORY_PRESSURE_TAINT),
            };
            key_ok
                && t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "NoSchedule")
        });
        if started || !best_effort || tolerates {
            return;
        }
        let message = eviction::rank::ADMISSION_MESSAGE.to_string();
        tracing::warn!(
            pod = %format!("{}/{}", self.ns, self.name),
            "refusing a BestEffort pod under memory pressure"
        );
        self.event(None, EventType::Warning, eviction::REASON, &message)
            .await;
        for c in &mut self.ctrs {
            c.done = true;
        }
        self.evicted = Some(message);
        self.report().await;
    }
}
