//! Telemetry shared by every Skiff process: Prometheus metrics (`metrics`) and OpenTelemetry
//! traces and structured logs (`trace`).

pub mod metrics;
pub mod trace;
