//! Tracing set-up: log formats (`--log-format json|text`) and the OpenTelemetry OTLP exporter, on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! `tracing` is the one instrumentation API. [`init`] installs the log layer (text or JSON lines
//! on stderr, filtered by `SKIFF_LOG`) and, only when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, a `tracing-opentelemetry` layer whose spans a
//! batch exporter sends over OTLP/HTTP (protobuf). Off, there is no exporter and no layer, and
//! the propagation helpers below return at one atomic load.
//!
//! Propagation is W3C Trace Context (`traceparent`, `tracestate`): [`set_parent_from`] makes an
//! incoming request's context the parent of a span, [`inject`] writes a span's context into an
//! outgoing request, [`inject_current_if_absent`] does so for the current span unless the
//! request already carries one.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The environment variable of the log filter (`tracing_subscriber` directives; default `info`).
pub const LOG_ENV: &str = "SKIFF_LOG";
/// The environment variable of the span filter of the OTLP exporter (default `info`).
pub const TRACE_FILTER_ENV: &str = "SKIFF_TRACE";
/// The spans exported unless `SKIFF_TRACE` says otherwise: `info` and up, but not the
/// long-lived span of each pod's worker (target `skiff::pod`, for log lines only) nor the HTTP
/// libraries' own.
pub const DEFAULT_SPAN_FILTER: &str = "info,skiff::pod=off,h2=off,hyper=off,tower=off";
/// The OTLP endpoint for every signal (`http://host:4318`; traces go to `/v1/traces`).
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The OTLP endpoint for traces alone (the full URL).
pub const OTLP_TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The service name of the exported spans (default: per command, e.g. `skiff-node`).
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";

/// The W3C Trace Context header of a request's trace and parent span.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The W3C Trace Context header of vendor state.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Whether the OpenTelemetry layer is installed in this process.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`tracing_subscriber`'s default format).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`, the current `span`'s
    /// fields and the list of `spans` in scope.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = TraceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(TraceError::LogFormat(other.to_string())),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Errors setting up logs and traces.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("unknown log format {0:?}: expected json or text")]
    LogFormat(String),
    #[error("the OTLP trace exporter: {0}")]
    Exporter(String),
    #[error("installing the log subscriber: {0}")]
    Install(String),
}

/// What [`init`] set up; dropping it flushes and shuts down the span exporter.
#[must_use = "dropping it shuts the span exporter down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes the spans not yet sent and stops the exporter (also done on drop).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.force_flush() {
                eprintln!("warning: flushing spans: {e}");
            }
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: stopping the span exporter: {e}");
            }
            ENABLED.store(false, Ordering::Release);
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether an OTLP trace endpoint is configured in the environment.
pub fn otlp_configured() -> bool {
    [OTLP_TRACES_ENDPOINT_ENV, OTLP_ENDPOINT_ENV]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Whether spans are exported by this process (the propagation helpers do nothing otherwise).
#[inline]
pub fn enabled() -> bool {
    !cfg!(feature = "compiled-out") && ENABLED.load(Ordering::Relaxed)
}

/// Installs the global subscriber: logs in `format` on stderr, and the OTLP span exporter when
/// [`otlp_configured`]. `service` is the default `service.name` (`OTEL_SERVICE_NAME` wins);
/// `attributes` are added to the resource (e.g. `k8s.node.name`).
pub fn init(
    service: &str,
    attributes: &[(&'static str, String)],
    format: LogFormat,
) -> Result<Telemetry, TraceError> {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let (otel, provider) = if otlp_configured() {
        let provider = provider(service, attributes)?;
        let tracer = provider.tracer("skiff");
        let span_filter = EnvFilter::try_from_env(TRACE_FILTER_ENV)
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_SPAN_FILTER));
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(span_filter);
        (Some(layer), Some(provider))
    } else {
        (None, None)
    };
    tracing_subscriber::registry()
        .with(log)
        .with(otel)
        .try_init()
        .map_err(|e| TraceError::Install(e.to_string()))?;
    if provider.is_some() {
        ENABLED.store(true, Ordering::Release);
    }
    Ok(Telemetry { provider })
}

/// The tracer provider: a batch exporter to the configured OTLP/HTTP endpoint.
fn provider(
    service: &str,
    attributes: &[(&'static str, String)],
) -> Result<SdkTracerProvider, TraceError> {
    // reqwest is built here without a crypto provider of its own: the process's default (ring,
    // as the rest of Skiff's TLS), if none is installed yet.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os(SERVICE_NAME_ENV).is_none_or(|s| s.is_empty()) {
        resource = resource.with_service_name(service.to_string());
    }
    resource = resource.with_attributes(
        attributes
            .iter()
            .map(|(k, v)| opentelemetry::KeyValue::new(*k, v.clone())),
    );
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes the trace context of `headers` (`traceparent`, `tracestate`), if any, the parent of
/// `span`, and records the span's `trace_id` field. Call before the span is first entered.
pub fn set_parent_from(span: &tracing::Span, headers: &HeaderMap) {
    if !enabled() {
        return;
    }
    if headers.contains_key(&TRACEPARENT) {
        let cx = TraceContextPropagator::new().extract(&Headers(headers));
        if cx.span().span_context().is_valid() {
            // Refused only for a disabled span or one already started: it keeps its own parent.
            let _ = span.set_parent(cx);
        }
    }
    record_trace_id(span);
}

/// Writes `span`'s context into `headers` as `traceparent` (and `tracestate`), replacing any.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(headers));
    }
}

/// Writes the current span's context into `headers` unless they carry a `traceparent` already
/// (a guest's outgoing request that propagates its own).
pub fn inject_current_if_absent(headers: &mut HeaderMap) {
    if !enabled() || headers.contains_key(&TRACEPARENT) {
        return;
    }
    inject(&tracing::Span::current(), headers);
}

/// Whether the current span belongs to an exported trace (spans are exported and one of the
/// current span or its ancestors is).
pub fn in_trace() -> bool {
    enabled()
        && tracing::Span::current()
            .context()
            .span()
            .span_context()
            .is_valid()
}

/// The trace id of `span` (32 hex digits), when spans are exported and it has one.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Records `span`'s trace id in its `trace_id` field (declared `tracing::field::Empty`), so
/// that the log lines inside it carry the trace id.
pub fn record_trace_id(span: &tracing::Span) {
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse_and_print() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::Json.to_string(), "json");
        let err = "xml".parse::<LogFormat>().unwrap_err();
        assert!(err.to_string().contains("json or text"), "{err}");
    }

    #[test]
    fn off_the_helpers_leave_requests_alone() {
        let span = tracing::info_span!("test", trace_id = tracing::field::Empty);
        let mut headers = HeaderMap::new();
        inject(&span, &mut headers);
        inject_current_if_absent(&mut headers);
        assert!(headers.is_empty());
        assert_eq!(trace_id(&span), None);
    }

    #[test]
    fn a_span_continues_the_incoming_trace_and_passes_its_own_context_on() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        // This process exports spans (the off test does not depend on it: its spans are not
        // seen by an OpenTelemetry layer, so they have no context either way).
        ENABLED.store(true, Ordering::Release);
        tracing::subscriber::with_default(subscriber, || {
            let mut incoming = HeaderMap::new();
            incoming.insert(
                &TRACEPARENT,
                HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            let span = tracing::info_span!("ingress", trace_id = tracing::field::Empty);
            set_parent_from(&span, &incoming);
            assert_eq!(
                trace_id(&span).as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736")
            );
            let mut out = HeaderMap::new();
            inject(&span, &mut out);
            let sent = out.get(&TRACEPARENT).unwrap().to_str().unwrap().to_string();
            assert!(
                sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent.ends_with("-01"),
                "{sent}"
            );
            assert!(
                !sent.contains("00f067aa0ba902b7"),
                "the span's own id: {sent}"
            );
            // A call made inside the span carries it on, unless the call has its own context.
            let mut call = HeaderMap::new();
            span.in_scope(|| {
                assert!(in_trace());
                inject_current_if_absent(&mut call);
            });
            assert_eq!(call.get(&TRACEPARENT).unwrap(), sent.as_str());
            let mut own = incoming.clone();
            span.in_scope(|| inject_current_if_absent(&mut own));
            assert_eq!(own.get(&TRACEPARENT), incoming.get(&TRACEPARENT));
            // Outside any span there is no trace to continue.
            assert!(!in_trace());
        });
    }

    #[test]
    fn headers_round_trip_a_trace_context() {
        let mut headers = HeaderMap::new();
        headers.insert(
            &TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let cx = TraceContextPropagator::new().extract(&Headers(&headers));
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut out = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(&mut out));
        assert_eq!(
            out.get(&TRACEPARENT).unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }
}
