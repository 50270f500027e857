//! The node's Prometheus metrics, served at the node endpoint's `/metrics` (behind its
//! authentication, like every route but `/healthz`; `nodes/NAME/proxy/metrics` through the API
//! server): pods and containers by state (kubelet's `kubelet_running_pods`,
//! `kubelet_running_containers`, and `skiff_node_pods` by phase), container starts and
//! restarts, requests each pod served by status class with their latency to the response head,
//! requests the Service router sent by source (the ingress and NodePorts, or a pod), Service and
//! code, and the compile cache.
//!
//! Per-pod series live in `PodSeries`, looked up without a lock (an `ArcSwap`ped map) and
//! dropped with the pod (`remove_pod` when the worker withdraws its sandbox): nothing of a pod
//! gone is served again. The Service family is bounded by the Services routed to: a request for a
//! name that matches no Service is not counted there.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use skiff_runtime::{ContainerState, PodSandbox};
use skiff_telemetry::metrics::{
    Collector, Counter, DescriptorEncoder, EncodeMetric, Exposition, Family, Histogram, Labels,
    MetricType, REQUEST_SECONDS, Registry,
};

/// One pod's series.
struct PodSeries {
    namespace: String,
    name: String,
    sandbox: Arc<dyn PodSandbox>,
    /// The IP it is indexed under in `by_ip` (a finished pod's sandbox gives its IP up).
    ip: Option<IpAddr>,
    /// Requests answered, by status class `1xx` … `5xx` (index 0 … 4).
    codes: [Counter; 5],
    /// Time to the response head.
    latency: Histogram,
    starts: Counter,
    restarts: Counter,
}

#[derive(Default, Clone)]
struct Pods {
    by_name: HashMap<(String, String), Arc<PodSeries>>,
    by_ip: HashMap<IpAddr, Arc<PodSeries>>,
}

/// What `/metrics` reads about the compile cache (the wasm backend's, when the node runs it).
pub(crate) type CacheReader = Arc<dyn Fn() -> Option<skiff_runtime::CacheStats> + Send + Sync>;

/// The node's metrics. Shared by the workers (through `NodeCtx`), the listener, the Service
/// router and the ingress.
pub struct NodeMetrics {
    pods: ArcSwap<Pods>,
    /// Serializes changes to `pods` (readers never take it).
    changing: Mutex<()>,
    services: Family<Labels<4>, Counter>,
    cache: Mutex<Option<CacheReader>>,
    /// Built at the first scrape.
    exposition: std::sync::OnceLock<Exposition>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics {
            pods: ArcSwap::from_pointee(Pods::default()),
            changing: Mutex::new(()),
            services: Family::default(),
            cache: Mutex::new(None),
            exposition: std::sync::OnceLock::new(),
        }
    }
}

fn class(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5)) - 1
}

impl NodeMetrics {
    /// A pod's sandbox was published: its series start (at zero).
    pub(crate) fn add_pod(&self, namespace: &str, name: &str, sandbox: Arc<dyn PodSandbox>) {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let mut pods = Pods::clone(&self.pods.load());
        let key = (namespace.to_string(), name.to_string());
        if let Some(old) = pods.by_name.get(&key)
            && old.sandbox.id() == sandbox.id()
        {
            return;
        }
        let series = Arc::new(PodSeries {
            namespace: namespace.to_string(),
            name: name.to_string(),
            sandbox: sandbox.clone(),
            ip: sandbox.ip(),
            codes: Default::default(),
            latency: Histogram::new(REQUEST_SECONDS),
            starts: Counter::default(),
            restarts: Counter::default(),
        });
        if let Some(old) = pods.by_name.insert(key, series.clone())
            && let Some(ip) = old.ip
            && pods.by_ip.get(&ip).is_some_and(|s| Arc::ptr_eq(s, &old))
        {
            pods.by_ip.remove(&ip);
        }
        if let Some(ip) = series.ip {
            pods.by_ip.insert(ip, series);
        }
        self.pods.store(Arc::new(pods));
    }

    /// A pod's sandbox was withdrawn: its series go.
    pub(crate) fn remove_pod(&self, namespace: &str, name: &str) {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let mut pods = Pods::clone(&self.pods.load());
        let key = (namespace.to_string(), name.to_string());
        if let Some(old) = pods.by_name.remove(&key) {
            if let Some(ip) = old.ip
                && pods.by_ip.get(&ip).is_some_and(|s| Arc::ptr_eq(s, &old))
            {
                pods.by_ip.remove(&ip);
            }
            self.pods.store(Arc::new(pods));
        }
    }

    /// A request a pod answered (by its IP), with the time to the response head.
    pub(crate) fn pod_request(&self, ip: IpAddr, status: u16, elapsed: Duration) {
        if let Some(series) = self.pods.load().by_ip.get(&ip) {
            series.codes[class(status)].inc();
            series.latency.observe_duration(elapsed);
        }
    }

    /// As `pod_request`, for a pod known by name.
    pub(crate) fn pod_request_named(
        &self,
        namespace: &str,
        name: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let pods = self.pods.load();
        if let Some(series) = pods.by_name.get(&(namespace.to_string(), name.to_string())) {
            series.codes[class(status)].inc();
            series.latency.observe_duration(elapsed);
        }
    }

    /// A container of the pod started (a first start or a restart).
    pub(crate) fn container_started(&self, namespace: &str, name: &str, restart: bool) {
        let pods = self.pods.load();
        if let Some(series) = pods.by_name.get(&(namespace.to_string(), name.to_string())) {
            series.starts.inc();
            if restart {
                series.restarts.inc();
            }
        }
    }

    /// A request the Service router sent to Service `namespace/service`, and its answer;
    /// `source` is `ingress` (the ingress and NodePorts) or `pod` (a pod's own call).
    pub fn service_request(
        &self,
        source: &'static str,
        namespace: &str,
        service: &str,
        status: u16,
    ) {
        self.services
            .get_or_create(&[
                ("source", source.to_string()),
                ("namespace", namespace.to_string()),
                ("service", service.to_string()),
                ("code", status.to_string()),
            ])
            .inc();
    }

    /// Reads the compile cache's counters at each scrape.
    pub(crate) fn set_compile_cache(&self, reader: CacheReader) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader);
    }

    /// The OpenMetrics text of the node's metrics.
    pub(crate) fn render(self: &Arc<Self>) -> String {
        self.exposition
            .get_or_init(|| self.build_exposition())
            .render()
    }

    fn build_exposition(self: &Arc<Self>) -> Exposition {
        let mut registry = Registry::default();
        registry.register(
            "skiff_service_requests",
            "Requests the node's Service router sent, by source (ingress: the ingress and NodePorts; pod: a pod's call), Service and HTTP code.",
            self.services.clone(),
        );
        registry.register_collector(Box::new(Scrape(Arc::downgrade(self))));
        let exposition = Exposition::new();
        exposition.add(registry);
        exposition
    }
}

/// The series computed at each scrape from the pods published now.
#[derive(Debug)]
struct Scrape(std::sync::Weak<NodeMetrics>);

fn pod_labels(p: &PodSeries) -> Vec<(&'static str, String)> {
    vec![("namespace", p.namespace.clone()), ("pod", p.name.clone())]
}

/// The phase a pod's containers add up to (kubelet's `getPhase`, without init containers).
fn phase(states: &std::collections::BTreeMap<String, ContainerState>) -> &'static str {
    let mut running = 0;
    let mut waiting = 0;
    let mut failed = 0;
    for state in states.values() {
        match state {
            ContainerState::Running { .. } => running += 1,
            ContainerState::Waiting { .. } => waiting += 1,
            ContainerState::Terminated { exit_code, .. } if *exit_code != 0 => failed += 1,
            ContainerState::Terminated { .. } => {}
        }
    }
    if waiting > 0 || states.is_empty() {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if failed > 0 {
        "Failed"
    } else {
        "Succeeded"
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(metrics) = self.0.upgrade() else {
            return Ok(());
        };
        let pods = metrics.pods.load();
        let mut series: Vec<&Arc<PodSeries>> = pods.by_name.values().collect();
        series.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let states: Vec<_> = series
            .iter()
            .map(|p| p.sandbox.container_states())
            .collect();

        let mut phases: std::collections::BTreeMap<&str, i64> =
            ["Pending", "Running", "Succeeded", "Failed"]
                .into_iter()
                .map(|p| (p, 0))
                .collect();
        let mut containers: std::collections::BTreeMap<&str, i64> =
            [("created", 0), ("running", 0), ("exited", 0)]
                .into_iter()
                .collect();
        for s in &states {
            *phases.entry(phase(s)).or_default() += 1;
            for state in s.values() {
                let key = match state {
                    ContainerState::Waiting { .. } => "created",
                    ContainerState::Running { .. } => "running",
                    ContainerState::Terminated { .. } => "exited",
                };
                *containers.entry(key).or_default() += 1;
            }
        }
        let running_pods = states
            .iter()
            .filter(|s| {
                s.values()
                    .any(|c| matches!(c, ContainerState::Running { .. }))
            })
            .count() as i64;
        encoder
            .encode_descriptor(
                "kubelet_running_pods",
                "Number of pods that have a running pod sandbox",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&running_pods)?;
        let mut metric = encoder.encode_descriptor(
            "kubelet_running_containers",
            "Number of containers currently running",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &containers {
            metric
                .encode_family(&[("container_state", *state)])?
                .encode_gauge(n)?;
        }
        let mut metric = encoder.encode_descriptor(
            "skiff_node_pods",
            "Pods on this node by the phase their containers add up to.",
            None,
            MetricType::Gauge,
        )?;
        for (phase, n) in &phases {
            metric
                .encode_family(&[("phase", *phase)])?
                .encode_gauge(n)?;
        }

        let mut metric = encoder.encode_descriptor(
            "skiff_container_starts",
            "Container starts (first starts and restarts) of each pod on this node.",
            None,
            MetricType::Counter,
        )?;
        for p in &series {
            p.starts.encode(metric.encode_family(&pod_labels(p))?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "skiff_container_restarts",
            "Container restarts of each pod on this node (what restartCount adds up).",
            None,
            MetricType::Counter,
        )?;
        for p in &series {
            p.restarts.encode(metric.encode_family(&pod_labels(p))?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "skiff_pod_requests",
            "HTTP requests each pod answered on this node, by status class.",
            None,
            MetricType::Counter,
        )?;
        for p in &series {
            for (i, counter) in p.codes.iter().enumerate() {
                let mut labels = pod_labels(p);
                labels.push(("code", format!("{}xx", i + 1)));
                counter.encode(metric.encode_family(&labels)?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "skiff_pod_request_duration_seconds",
            "Time each pod took to answer a request with its response head, in seconds.",
            None,
            MetricType::Histogram,
        )?;
        for p in &series {
            p.latency.encode(metric.encode_family(&pod_labels(p))?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "skiff_pod_instance_requests",
            "Requests each pod's guests served as the engine counts them (every instance's).",
            None,
            MetricType::Counter,
        )?;
        for p in &series {
            let usage = p.sandbox.usage();
            metric
                .encode_family(&pod_labels(p))?
                .encode_counter::<prometheus_labels::None, _, u64>(&usage.requests_total, None)?;
        }

        let cache = metrics
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(stats) = cache.and_then(|read| read()) {
            let mut metric = encoder.encode_descriptor(
                "skiff_compile_cache_lookups",
                "Lookups of compiled wasm by where they were answered: memory, disk (a verified artifact), compiled (a miss), rejected (an artifact on disk refused and recompiled).",
                None,
                MetricType::Counter,
            )?;
            for (result, n) in [
                ("memory", stats.memory_hits),
                ("disk", stats.disk_hits),
                ("compiled", stats.compiled),
                ("rejected", stats.rejected),
            ] {
                metric
                    .encode_family(&[("result", result)])?
                    .encode_counter::<prometheus_labels::None, _, u64>(&n, None)?;
            }
        }
        Ok(())
    }
}

/// The "no exemplar labels" type the counter encoder asks for.
mod prometheus_labels {
    pub(super) type None = skiff_telemetry::metrics::NoLabelSet;
}

/// `GET /metrics` on the node endpoint (behind its authentication).
pub(crate) async fn serve(
    axum::extract::State(state): axum::extract::State<crate::listener::ListenerState>,
) -> axum::response::Response {
    let mut response =
        axum::response::Response::new(axum::body::Body::from(state.ctx.metrics.render()));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(skiff_telemetry::metrics::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use skiff_runtime::Network;
    use skiff_runtime::fake::FakeRuntime;
    use skiff_telemetry::metrics::sample;

    use super::*;

    fn running() -> ContainerState {
        ContainerState::Running {
            started_at: jiff::Timestamp::now(),
        }
    }

    #[test]
    fn pods_requests_and_restarts_are_served_until_the_pod_goes() {
        let rt = FakeRuntime::new(Network::new());
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
        let web = rt
            .adopted_pod("uid-web", Some(ip), &[("app", running())])
            .unwrap();
        let job = rt
            .adopted_pod(
                "uid-job",
                None,
                &[(
                    "run",
                    ContainerState::Waiting {
                        reason: "ContainerCreating".into(),
                        message: String::new(),
                    },
                )],
            )
            .unwrap();
        let metrics = Arc::new(NodeMetrics::default());
        metrics.add_pod("default", "web", web.clone());
        metrics.add_pod("batch", "job", job);
        metrics.pod_request(ip, 200, Duration::from_millis(3));
        metrics.pod_request(ip, 204, Duration::from_millis(30));
        metrics.pod_request_named("default", "web", 503, Duration::from_millis(1));
        metrics.pod_request(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99)), 200, Duration::ZERO);
        metrics.container_started("default", "web", false);
        metrics.container_started("default", "web", true);
        metrics.service_request("ingress", "default", "web", 200);
        metrics.service_request("pod", "default", "web", 503);
        metrics.set_compile_cache(Arc::new(|| {
            Some(skiff_runtime::CacheStats {
                memory_hits: 4,
                disk_hits: 1,
                compiled: 2,
                rejected: 0,
            })
        }));

        let text = metrics.render();
        let web_labels = [("namespace", "default"), ("pod", "web")];
        let with = |extra: (&'static str, &'static str)| {
            let mut l = web_labels.to_vec();
            l.push(extra);
            l
        };
        assert_eq!(
            sample(&text, "kubelet_running_pods", &[]),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "kubelet_running_containers",
                &[("container_state", "created")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "skiff_node_pods", &[("phase", "Running")]),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "skiff_node_pods", &[("phase", "Pending")]),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "skiff_pod_requests_total", &with(("code", "2xx"))),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "skiff_pod_requests_total", &with(("code", "5xx"))),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "skiff_pod_request_duration_seconds_count",
                &web_labels
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                "skiff_pod_request_duration_seconds_bucket",
                &with(("le", "0.005"))
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "skiff_container_starts_total", &web_labels),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "skiff_container_restarts_total", &web_labels),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "skiff_service_requests_total",
                &[("source", "ingress"), ("service", "web"), ("code", "200")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "skiff_compile_cache_lookups_total",
                &[("result", "memory")]
            ),
            Some(4.0),
            "{text}"
        );
        assert!(text.contains("# TYPE skiff_pod_request_duration_seconds histogram"));
        assert!(text.ends_with("# EOF\n"));

        metrics.remove_pod("default", "web");
        let text = metrics.render();
        assert_eq!(
            sample(&text, "skiff_pod_requests_total", &web_labels),
            None,
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "skiff_pod_request_duration_seconds_count",
                &web_labels
            ),
            None
        );
        assert_eq!(sample(&text, "kubelet_running_pods", &[]), Some(0.0));
        // A request for the gone pod's address is no longer recorded anywhere.
        metrics.pod_request(ip, 200, Duration::ZERO);
        assert_eq!(
            sample(&metrics.render(), "skiff_pod_requests_total", &web_labels),
            None
        );
    }
}
