//! Prometheus metrics: registries and the text exposition every surface serves at `/metrics`.
//!
//! Built on `prometheus-client` (the Prometheus org's Rust client): typed metric families, no
//! global registry — each process surface owns its `Registry`s and serves them through one
//! `Exposition`. Counters and gauges are atomics; `Histogram` here is an all-atomic histogram
//! (the crate's own takes a mutex per observation), so recording on a hot path takes no lock
//! beyond the shared read lock of a `Family` lookup.
//!
//! Label sets are arrays of `(&'static str, String)` pairs (`[("verb", v), ("code", c)]`), which
//! need no derive in the crates that use them. Counters registered as `NAME` are exposed as
//! `NAME_total`, as OpenMetrics requires: register `apiserver_request` to serve
//! `apiserver_request_total`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::{Family, MetricConstructor};
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::{MetricType, TypedMetric};
pub use prometheus_client::registry::{Registry, Unit};

/// The media type of the exposition (OpenMetrics 1.0 text, which Prometheus asks for first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set of `N` named values.
pub type Labels<const N: usize> = [(&'static str, String); N];

/// Request latency buckets in seconds, as kube-apiserver's `apiserver_request_duration_seconds`.
pub const REQUEST_SECONDS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Short operation buckets in seconds (store commits, reconciles), as client_golang's defaults
/// with a finer low end.
pub const SHORT_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every registry one surface serves at `/metrics`, rendered together. Clones share the list:
/// a component running in another's process (the controllers in `skiff server`) adds its
/// registry to the host surface's `Exposition`.
#[derive(Clone, Default)]
pub struct Exposition {
    registries: Arc<RwLock<Vec<Arc<Registry>>>>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition").finish_non_exhaustive()
    }
}

impl Exposition {
    /// An exposition of no registry yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `registry` too. Metric names must not repeat across the registries of one
    /// exposition.
    pub fn add(&self, registry: Registry) {
        self.add_shared(Arc::new(registry));
    }

    /// As `add`, for a registry shared with another exposition.
    pub fn add_shared(&self, registry: Arc<Registry>) {
        self.registries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(registry);
    }

    /// The OpenMetrics text of every registry, ending with `# EOF`.
    pub fn render(&self) -> String {
        let registries = self
            .registries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let mut out = String::new();
        for registry in &registries {
            // Writing into a String cannot fail; a metric's own encoder failing would leave
            // its lines out, and the rest is still served.
            let _ = prometheus_client::encoding::text::encode_registry(&mut out, registry);
        }
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// A histogram of fixed buckets whose observations are atomic additions (bucket count, then the
/// sum by compare-and-swap): no lock. Clones share the counts.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// One per bound, then `+Inf`; not cumulative.
    counts: Box<[AtomicU64]>,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending; `+Inf` is implied).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            inner: Arc::new(HistogramInner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Records one value.
    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        let slot = inner
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(inner.bounds.len());
        inner.counts[slot].fetch_add(1, Ordering::Relaxed);
        let _ = inner
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, duration: std::time::Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The sum of the recorded values.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.inner.sum.load(Ordering::Relaxed))
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total, so `_count` always equals the `+Inf` bucket.
        let count = buckets.iter().map(|(_, c)| c).sum();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum(),
            count,
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Makes a family's histograms with one set of buckets.
#[derive(Clone, Copy, Debug)]
pub struct Buckets(pub &'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0)
    }
}

/// A family of histograms sharing buckets.
pub type HistogramFamily<S> = Family<S, Histogram, Buckets>;

/// A new histogram family with these buckets.
pub fn histogram_family<S: Clone + std::hash::Hash + Eq>(
    bounds: &'static [f64],
) -> HistogramFamily<S> {
    Family::new_with_constructor(Buckets(bounds))
}

/// A gauge family computed at each scrape (pods by phase, a file's size): `F` returns every
/// series' labels and value. Nothing is kept between scrapes, so a series whose subject went
/// away simply stops being served.
pub struct GaugeFn<F> {
    name: &'static str,
    help: &'static str,
    compute: F,
}

impl<F> GaugeFn<F> {
    pub fn new(name: &'static str, help: &'static str, compute: F) -> Self {
        GaugeFn {
            name,
            help,
            compute,
        }
    }
}

impl<F> std::fmt::Debug for GaugeFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaugeFn").field("name", &self.name).finish()
    }
}

impl<F> Collector for GaugeFn<F>
where
    F: Fn() -> Vec<(Vec<(&'static str, String)>, i64)> + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = (self.compute)();
        let mut metric =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        for (labels, value) in &series {
            metric.encode_family(labels)?.encode_gauge(value)?;
        }
        Ok(())
    }
}

/// A registry's text alone (no `# EOF`), for tests of one surface's exposition.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, registry);
    out
}

/// The value of the series `name{labels}` in exposition `text` (labels in any order; every one
/// given must match), summed over matching series. For tests and `skiff` diagnostics.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(pair) => pair,
            None => continue,
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let all = labels.iter().all(|(k, v)| {
            let mut want = String::new();
            let _ = write!(want, "{k}=\"{v}\"");
            series_labels.split(',').any(|pair| pair == want)
        });
        if !all {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_as_openmetrics_text() {
        let mut registry = Registry::default();
        let requests: Family<Labels<2>, Counter> = Family::default();
        registry.register("apiserver_request", "Requests served", requests.clone());
        let inflight: Gauge = Gauge::default();
        registry.register("inflight", "Requests in flight", inflight.clone());
        let latency: HistogramFamily<Labels<1>> = histogram_family(&[0.1, 1.0]);
        registry.register("latency_seconds", "Latency", latency.clone());

        requests
            .get_or_create(&[("verb", "GET".into()), ("code", "200".into())])
            .inc_by(3);
        inflight.set(2);
        let h = latency.get_or_create(&[("verb", "GET".into())]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);

        let exposition = Exposition::new();
        exposition.add(registry);
        let text = exposition.render();
        assert!(text.contains("# TYPE apiserver_request counter"), "{text}");
        assert!(
            text.contains("apiserver_request_total{verb=\"GET\",code=\"200\"} 3"),
            "{text}"
        );
        assert!(text.contains("inflight 2"), "{text}");
        assert!(text.contains("# TYPE latency_seconds histogram"), "{text}");
        assert!(
            text.contains("latency_seconds_bucket{le=\"0.1\",verb=\"GET\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"1.0\",verb=\"GET\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"+Inf\",verb=\"GET\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_count{verb=\"GET\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_sum{verb=\"GET\"} 7.55"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            sample(&text, "apiserver_request_total", &[("code", "200")]),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, "apiserver_request_total", &[("code", "500")]),
            None
        );
    }

    #[test]
    fn computed_gauges_serve_only_what_exists_at_the_scrape() {
        let pods = Arc::new(RwLock::new(vec![("Running", 2i64), ("Pending", 1)]));
        let mut registry = Registry::default();
        let source = pods.clone();
        registry.register_collector(Box::new(GaugeFn::new("pods", "Pods by phase", move || {
            source
                .read()
                .unwrap()
                .iter()
                .map(|(phase, n)| (vec![("phase", phase.to_string())], *n))
                .collect()
        })));
        let text = render(&registry);
        assert_eq!(sample(&text, "pods", &[("phase", "Running")]), Some(2.0));
        assert_eq!(sample(&text, "pods", &[("phase", "Pending")]), Some(1.0));
        pods.write()
            .unwrap()
            .retain(|(phase, _)| *phase == "Running");
        let text = render(&registry);
        assert_eq!(sample(&text, "pods", &[("phase", "Pending")]), None);
        assert!(text.contains("# TYPE pods gauge"), "{text}");
    }

    #[test]
    fn exposition_of_several_registries_has_one_eof() {
        let exposition = Exposition::new();
        for name in ["a", "b"] {
            let mut registry = Registry::default();
            let counter: Counter = Counter::default();
            counter.inc();
            registry.register(name, "a counter", counter);
            exposition.add(registry);
        }
        let text = exposition.render();
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert_eq!(sample(&text, "a_total", &[]), Some(1.0));
        assert_eq!(sample(&text, "b_total", &[]), Some(1.0));
    }
}
