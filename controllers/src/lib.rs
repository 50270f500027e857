//! Skiff scheduler and workload controllers, clients of the public API (not yet built).
