//! Prometheus metrics: registries and the text exposition every surface serves at `/metrics`.
