//! Startup, liveness and readiness probes of a running container, as kubelet runs them: a
//! failed startup or liveness probe kills the run (it restarts by policy), readiness only
//! gates the Ready condition.

use std::time::Instant;

use super::Worker;
use crate::events::EventType;
use crate::probe::{self, ProbeKind};

impl Worker {
    /// Runs the container's probes that are due.
    pub(super) async fn probe(&mut self, i: usize) {
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        let now = Instant::now();
        let pod_ports = probe::pod_ports(&self.pod);
        for kind in [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ] {
            let c = &self.ctrs[i];
            if kind != ProbeKind::Startup && c.spec.startup_probe.is_some() && !c.startup.passed {
                continue;
            }
            let st = match kind {
                ProbeKind::Startup => &c.startup,
                ProbeKind::Liveness => &c.liveness,
                ProbeKind::Readiness => &c.readiness,
            };
            if kind == ProbeKind::Startup && st.passed {
                continue;
            }
            let Some(p) = st.probe.clone() else { continue };
            if st.next_due().is_none_or(|t| t > now) {
                continue;
            }
            let result = probe::run(&*sb, &c.spec, &pod_ports, &p, true).await;
            let c = &mut self.ctrs[i];
            let st = match kind {
                ProbeKind::Startup => &mut c.startup,
                ProbeKind::Liveness => &mut c.liveness,
                ProbeKind::Readiness => &mut c.readiness,
            };
            let verdict = st.record(result.is_ok(), Instant::now());
            if let Err(msg) = result {
                let text = format!("{} probe failed: {msg}", kind.title());
                self.event(Some(i), EventType::Warning, "Unhealthy", &text)
                    .await;
            }
            if verdict == probe::Verdict::Failed && kind != ProbeKind::Readiness {
                let name = self.ctrs[i].spec.name.clone();
                let why = match kind {
                    ProbeKind::Startup => "failed startup probe",
                    _ => "failed liveness probe",
                };
                self.event(
                    Some(i),
                    EventType::Normal,
                    "Killing",
                    &format!("Container {name} {why}, will be restarted"),
                )
                .await;
                self.ctrs[i].killed_by_probe = true;
                let grace = self.grace(None);
                if let Err(e) = sb.stop_container(&name, grace).await {
                    tracing::warn!(pod = %self.name, container = %name, error = %e, "stopping after a failed probe");
                }
                return;
            }
        }
    }
}
