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
/// Deployment annotation: `"true"` lets the Deployment sit at zero replicas behind its Services;
/// the first request scales it to one and is held until a pod is ready.
pub const SCALE_TO_ZERO: &str = "skiff.dev/scale-to-zero";
/// Deployment annotation: how long (a Go duration such as `60s`, `5m`) without a request before a
/// scale-to-zero Deployment returns to zero replicas. Default [`SCALE_TO_ZERO_IDLE_DEFAULT`].
pub const SCALE_TO_ZERO_IDLE: &str = "skiff.dev/scale-to-zero-idle";
/// The idle period when [`SCALE_TO_ZERO_IDLE`] is absent.
pub const SCALE_TO_ZERO_IDLE_DEFAULT: std::time::Duration = std::time::Duration::from_secs(60);
/// Deployment annotation: how long a request held for a scale from zero waits (Go duration)
/// before it is answered 504. Default [`HOLD_DEADLINE_DEFAULT`].
pub const HOLD_DEADLINE: &str = "skiff.dev/scale-from-zero-deadline";
/// The hold deadline when [`HOLD_DEADLINE`] is absent.
pub const HOLD_DEADLINE_DEFAULT: std::time::Duration = std::time::Duration::from_secs(30);
/// Deployment annotation: how many requests one node holds at once for a scale from zero of
/// this Deployment; beyond it, 503 at once. Default [`MAX_HELD_DEFAULT`].
pub const MAX_HELD: &str = "skiff.dev/scale-from-zero-max-held";
/// The cap on held requests when [`MAX_HELD`] is absent.
pub const MAX_HELD_DEFAULT: usize = 1000;
/// Deployment annotation written by the nodes' routers (RFC 3339, at most every quarter of the
/// idle period): when a request for the Deployment was last served on any node. The
/// scale-to-zero controller returns the Deployment to zero once it is older than the idle period.
pub const LAST_REQUEST: &str = "skiff.dev/last-request-time";
/// The request header the service router owns: how many Service hops the request has taken;
/// beyond the limit the router answers 508 Loop Detected.
pub const HOP_HEADER: &str = "skiff-service-hops";
/// The default hop limit of the service router.
pub const HOP_LIMIT_DEFAULT: u32 = 16;
/// Ingress annotation: the largest request body the ingress forwards to the Ingress's backends,
/// in nginx's size syntax (bytes, or a `k`, `m` or `g` suffix, binary; `0`: unbounded). Past it,
/// 413. Default [`INGRESS_BODY_SIZE_DEFAULT`]; ingress-nginx's
/// `nginx.ingress.kubernetes.io/proxy-body-size` is honoured when this one is absent.
pub const INGRESS_BODY_SIZE: &str = "skiff.dev/proxy-body-size";
/// The ingress's body bound when no annotation sets one: ingress-nginx's default (`1m`).
pub const INGRESS_BODY_SIZE_DEFAULT: u64 = 1024 * 1024;
/// The IngressClass the nodes serve (created at start, marked default).
pub const INGRESS_CLASS: &str = "skiff";
/// The IngressClass `spec.controller` of [`INGRESS_CLASS`].
pub const INGRESS_CONTROLLER: &str = "skiff.dev/ingress";
/// EndpointSlice `endpointslice.kubernetes.io/managed-by` value of Skiff's controller (as
/// Kubernetes' `endpointslice-controller.k8s.io`).
pub const ENDPOINTSLICE_MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Claim annotation written by the scheduler for a `WaitForFirstConsumer` claim: the node the
/// first pod using it was placed on, where the volume must be provisioned or found.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Claim annotation written by the PV controller: the provisioner expected to create its volume.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`STORAGE_PROVISIONER`], still written beside it as Kubernetes does.
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Claim annotation (`"yes"`): the PV controller finished binding the claim to its volume.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// PV and claim annotation (`"yes"`): the PV controller, not the user, made the binding.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// PV annotation: the provisioner that created the volume (and deletes it under `Delete`).
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Finalizer on every claim: kept while a non-terminal pod uses the claim.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// Finalizer on every PV: kept while the volume is bound to a claim.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// The StorageClass every cluster starts with (created at start, marked default): volumes on the
/// node's own disk, provisioned where the claim's first pod is scheduled.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// The `provisioner` of [`LOCAL_PATH_CLASS`]: Skiff's local-path provisioner.
pub const LOCAL_PATH_PROVISIONER: &str = "skiff.dev/local-path";
/// StorageClass annotation (`"true"`) marking the default class, which claims created without
/// `storageClassName` get.
pub const DEFAULT_STORAGE_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The RuntimeClass (and its handler) of WebAssembly pods, created at start; a pod without
/// `runtimeClassName` runs on this handler.
pub const WASM_RUNTIME_CLASS: &str = "wasm";
/// The RuntimeClass (and its handler) of Linux container pods, created at start.
pub const OCI_RUNTIME_CLASS: &str = "oci";
/// Namespace label: the Pod Security Standards level (`privileged`, `baseline`, `restricted`)
/// enforced on the namespace's Linux container pods.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
/// Namespace label: the policy version of [`POD_SECURITY_ENFORCE`] (`latest`, `v1.35`).
pub const POD_SECURITY_ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";

/// The user the API server is to nodes when it calls their endpoint (logs, proxy, exec), as
/// kube-apiserver's `--kubelet-client-certificate` identity; the node accepts it on every path.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// The audience of the ServiceAccount tokens nodes present to each other's `/endpoints`.
pub const NODE_ENDPOINT_AUDIENCE: &str = "skiff.dev/node-endpoint";

/// The ServiceAccount (in `kube-system`) whose node-bound tokens nodes present to each other.
pub const NODE_ENDPOINT_SERVICE_ACCOUNT: &str = "skiff-node";

/// Pod annotation prefix declaring a container's guest capabilities:
/// `capabilities.skiff.dev/<container>` = comma-separated WASI packages (`wasi:config`,
/// `wasi:keyvalue`) the container is given beyond the default interfaces.
pub const CAPABILITIES_PREFIX: &str = "capabilities.skiff.dev/";
