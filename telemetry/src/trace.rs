//! Tracing set-up: log formats (`--log-format json|text`) and the OpenTelemetry OTLP exporter, on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
