//! The registry's Prometheus metrics, served at `/metrics` to callers presenting the
//! registry's token (as a push does; Basic or Bearer): requests by handler, method and code
//! and their latency as distribution names them (`registry_http_requests_total`,
//! `registry_http_request_duration_seconds`), manifest pushes and pulls, and blob bytes
//! received and sent (from the requests' and responses' `Content-Length`).

use std::time::Duration;

use skiff_telemetry::metrics::{
    Counter, Exposition, Family, HistogramFamily, Labels, REQUEST_SECONDS, Registry,
    histogram_family,
};

/// The registry's metric families and the exposition `/metrics` serves.
pub(crate) struct RegistryMetrics {
    exposition: Exposition,
    requests: Family<Labels<3>, Counter>,
    durations: HistogramFamily<Labels<2>>,
    pushes: Counter,
    pulls: Counter,
    bytes_received: Counter,
    bytes_sent: Counter,
}

impl RegistryMetrics {
    pub(crate) fn new() -> Self {
        let requests: Family<Labels<3>, Counter> = Family::default();
        let durations: HistogramFamily<Labels<2>> = histogram_family(REQUEST_SECONDS);
        let (pushes, pulls) = (Counter::default(), Counter::default());
        let (bytes_received, bytes_sent) = (Counter::default(), Counter::default());
        let mut registry = Registry::default();
        registry.register(
            "registry_http_requests",
            "The number of requests received by the registry, by handler, method and HTTP code.",
            requests.clone(),
        );
        registry.register(
            "registry_http_request_duration_seconds",
            "The HTTP request latencies in seconds, by handler and method.",
            durations.clone(),
        );
        registry.register(
            "skiff_registry_manifest_pushes",
            "Manifests pushed (PUT answered 201).",
            pushes.clone(),
        );
        registry.register(
            "skiff_registry_manifest_pulls",
            "Manifests pulled (GET answered 200).",
            pulls.clone(),
        );
        registry.register(
            "skiff_registry_blob_bytes_received",
            "Bytes of blob uploads received.",
            bytes_received.clone(),
        );
        registry.register(
            "skiff_registry_blob_bytes_sent",
            "Bytes of blobs sent to pulling clients.",
            bytes_sent.clone(),
        );
        let exposition = Exposition::new();
        exposition.add(registry);
        RegistryMetrics {
            exposition,
            requests,
            durations,
            pushes,
            pulls,
            bytes_received,
            bytes_sent,
        }
    }

    /// Records one answered request. `handler` is one of distribution's handler names
    /// (`base`, `catalog`, `tags`, `manifest`, `blob`, `blob_upload`, `blob_upload_chunk`,
    /// `referrers`, `metrics`), never the path.
    pub(crate) fn record(
        &self,
        handler: &'static str,
        method: &http::Method,
        status: u16,
        elapsed: Duration,
        request_bytes: Option<u64>,
        response_bytes: Option<u64>,
    ) {
        let method = match *method {
            http::Method::GET => "GET",
            http::Method::HEAD => "HEAD",
            http::Method::PUT => "PUT",
            http::Method::POST => "POST",
            http::Method::PATCH => "PATCH",
            http::Method::DELETE => "DELETE",
            _ => "OTHER",
        };
        self.requests
            .get_or_create(&[
                ("handler", handler.to_string()),
                ("method", method.to_string()),
                ("code", status.to_string()),
            ])
            .inc();
        self.durations
            .get_or_create(&[
                ("handler", handler.to_string()),
                ("method", method.to_string()),
            ])
            .observe_duration(elapsed);
        let ok = (200..300).contains(&status);
        match (handler, method) {
            ("manifest", "PUT") if status == 201 => {
                self.pushes.inc();
            }
            ("manifest", "GET") if status == 200 => {
                self.pulls.inc();
            }
            ("blob", "GET") if ok => {
                self.bytes_sent.inc_by(response_bytes.unwrap_or(0));
            }
            ("blob_upload" | "blob_upload_chunk", "POST" | "PATCH" | "PUT") if ok => {
                self.bytes_received.inc_by(request_bytes.unwrap_or(0));
            }
            _ => {}
        }
    }

    /// The OpenMetrics text.
    pub(crate) fn render(&self) -> String {
        self.exposition.render()
    }
}
