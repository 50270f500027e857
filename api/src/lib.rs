//! Skiff API server: the Kubernetes-compatible HTTP API over a revisioned store.
