//! The `skiff.dev/*` labels, annotations and field managers, named once.

/// Node label listing the runtime handlers the node runs, dot-separated (`wasm`, `wasm.oci`):
/// a label value cannot hold a comma, and handlers are DNS labels without dots.
pub const RUNTIME_LABEL: &str = "skiff.dev/runtime";
/// Field manager and event source of the controllers.
pub const CONTROLLER_FIELD_MANAGER: &str = "skiff.dev/controller";
/// Field manager and event source of the scheduler.
pub const SCHEDULER: &str = "skiff.dev/scheduler";
/// Pod annotation: reuse a wasm instance across HTTP requests instead of one per request.
pub const REUSE_INSTANCES: &str = "skiff.dev/reuse-instances";
/// Node label marking a simulated node (tests and benchmarks).
pub const FAKE_NODE_LABEL: &str = "skiff.dev/fake";
/// Pod annotation a simulated node reads: the exit code its containers end with.
pub const FAKE_EXIT_CODE: &str = "skiff.dev/fake-exit-code";
