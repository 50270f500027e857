//! Probes answered in-process: `httpGet` through the sandbox's HTTP entry, `tcpSocket` as
//! "a running container of the pod declares that port"; thresholds and periods as kubelet.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtime::{PodSandbox, empty_body};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub(crate) fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// The outcome of recording one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing changed.
    Unchanged,
    /// Reached the success threshold.
    Passed,
    /// Reached the failure threshold.
    Failed,
}

/// The schedule and counters of one probe of one container run.
#[derive(Debug, Clone)]
pub(crate) struct ProbeState {
    pub(crate) probe: Option<Probe>,
    pub(crate) passed: bool,
    next: Option<Instant>,
    successes: i32,
    failures: i32,
}

impl ProbeState {
    pub(crate) fn new(probe: Option<Probe>) -> ProbeState {
        ProbeState {
            probe,
            passed: false,
            next: None,
            successes: 0,
            failures: 0,
        }
    }

    fn period(&self) -> Duration {
        let p = self
            .probe
            .as_ref()
            .and_then(|p| p.period_seconds)
            .unwrap_or(10);
        Duration::from_secs(p.max(1) as u64)
    }

    /// A new run started: counters cleared, first probe after `initialDelaySeconds`.
    pub(crate) fn reset(&mut self, now: Instant) {
        self.passed = false;
        self.successes = 0;
        self.failures = 0;
        self.next = self
            .probe
            .as_ref()
            .map(|p| now + Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64));
    }

    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.probe.as_ref().and(self.next)
    }

    /// Records a result and schedules the next probe.
    pub(crate) fn record(&mut self, ok: bool, now: Instant) -> Verdict {
        self.next = Some(now + self.period());
        let Some(p) = &self.probe else {
            return Verdict::Unchanged;
        };
        if ok {
            self.failures = 0;
            self.successes += 1;
            if !self.passed && self.successes >= p.success_threshold.unwrap_or(1).max(1) {
                self.passed = true;
                return Verdict::Passed;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= p.failure_threshold.unwrap_or(3).max(1) {
                self.failures = 0;
                let was = self.passed;
                self.passed = false;
                let _ = was;
                return Verdict::Failed;
            }
        }
        Verdict::Unchanged
    }
}

/// Named ports of the pod's containers, and which container declares each port number.
pub(crate) fn pod_ports(pod: &Pod) -> HashMap<String, u16> {
    let mut out = HashMap::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        for p in c.ports.iter().flatten() {
            if let (Some(name), Ok(port)) = (&p.name, u16::try_from(p.container_port)) {
                out.insert(name.clone(), port);
            }
        }
    }
    out
}

fn resolve_port(
    port: &IntOrString,
    c: &Container,
    named: &HashMap<String, u16>,
) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(s) => {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .or_else(|| named.get(s).copied())
                .ok_or_else(|| format!("unknown named port {s:?}"))
        }
    }
}

/// Runs one probe. `Err` carries kubelet-style failure text.
pub(crate) async fn run(
    sb: &dyn PodSandbox,
    c: &Container,
    named: &HashMap<String, u16>,
    p: &Probe,
    running: bool,
) -> Result<(), String> {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(h) = &p.http_get {
        let port = resolve_port(&h.port, c, named)?;
        if h.scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"))
        {
            return Err("HTTPS probes are not supported by the wasm runtime".into());
        }
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let ip = sb
            .ip()
            .map(|i| i.to_string())
            .unwrap_or_else(|| "localhost".into());
        let mut req = http::Request::builder()
            .method(http::Method::GET)
            .uri(&path)
            .header(
                http::header::HOST,
                h.host.clone().unwrap_or_else(|| format!("{ip}:{port}")),
            )
            .header(
                http::header::USER_AGENT,
                format!("kube-probe/1.{}", skiff_meta::KUBERNETES_MINOR),
            );
        for hd in h.http_headers.iter().flatten() {
            req = req.header(hd.name.as_str(), hd.value.as_str());
        }
        let req = req
            .body(empty_body())
            .map_err(|e| format!("invalid probe request: {e}"))?;
        let resp = tokio::time::timeout(timeout, sb.handle_http(port, req))
            .await
            .map_err(|_| format!("Get \"http://{ip}:{port}{path}\": context deadline exceeded"))?
            .map_err(|e| format!("Get \"http://{ip}:{port}{path}\": {e}"))?;
        let code = resp.status().as_u16();
        if (200..400).contains(&code) {
            return Ok(());
        }
        return Err(format!("HTTP probe failed with statuscode: {code}"));
    }
    if let Some(t) = &p.tcp_socket {
        let port = resolve_port(&t.port, c, named)?;
        let declared = c
            .ports
            .iter()
            .flatten()
            .any(|p| p.container_port == i32::from(port))
            || named.values().any(|p| *p == port);
        if declared && running {
            return Ok(());
        }
        let ip = sb
            .ip()
            .map(|i| i.to_string())
            .unwrap_or_else(|| "localhost".into());
        return Err(format!("dial tcp {ip}:{port}: connect: connection refused"));
    }
    if p.exec.is_some() {
        return Err("exec probes are not supported by the wasm runtime".into());
    }
    if p.grpc.is_some() {
        return Err("grpc probes are not supported by the wasm runtime".into());
    }
    Err("probe has no handler".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide() {
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "httpGet": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 2, "successThreshold": 1
        }))
        .expect("probe");
        let mut s = ProbeState::new(Some(probe));
        let now = Instant::now();
        s.reset(now);
        assert_eq!(s.next_due(), Some(now));
        assert_eq!(s.record(true, now), Verdict::Passed);
        assert!(s.passed);
        assert_eq!(s.record(false, now), Verdict::Unchanged);
        assert_eq!(s.record(false, now), Verdict::Failed);
        assert!(!s.passed);
        assert_eq!(s.next_due(), Some(now + Duration::from_secs(1)));
    }
}
