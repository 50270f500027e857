//! The runtime's error type.

use std::path::PathBuf;

/// Errors of the pod runtime. Messages name the pod, container, volume or path involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image is neither a wasm core module nor a component.
    #[error("container {container}: image is not a wasm module or component ({detail})")]
    NotWasm {
        /// Container name.
        container: String,
        /// What was found instead.
        detail: String,
    },
    /// The binary is wasm but not something the runtime knows how to run.
    #[error("container {container}: {detail}")]
    UnsupportedKind {
        /// Container name.
        container: String,
        /// Why.
        detail: String,
    },
    /// The component or module imports something the host does not provide.
    #[error("container {container}: unsatisfied import: {detail}")]
    MissingImport {
        /// Container name.
        container: String,
        /// The linker's message, naming the import.
        detail: String,
    },
    /// The component imports an interface of a capability its container did not declare.
    #[error(
        "container {container}: the component imports {import}, which is given only to \
         containers that declare the capability {capability}"
    )]
    UndeclaredCapability {
        /// Container name.
        container: String,
        /// The import, fully qualified (`wasi:keyvalue/store@0.2.0-draft`).
        import: String,
        /// The capability to declare.
        capability: crate::capabilities::Capability,
    },
    /// Compilation failed (invalid wasm, unsupported feature, resource limits).
    #[error("container {container}: compiling the image failed: {detail}")]
    Compile {
        /// Container name.
        container: String,
        /// The compiler's message.
        detail: String,
    },
    /// Reading the image file failed.
    #[error("reading image {path}: {source}")]
    ImageRead {
        /// The image path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The container spec names no image.
    #[error("container {0}: no image given")]
    NoImage(String),
    /// A filesystem operation on a volume or pod directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A volume could not be set up or updated.
    #[error("volume {volume}: {detail}")]
    Volume {
        /// Volume name.
        volume: String,
        /// Why.
        detail: String,
    },
    /// The spec is inconsistent.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// No container of this name in the pod.
    #[error("pod {pod}: no container named {container}")]
    UnknownContainer {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
    },
    /// No container of the pod serves this port.
    #[error("pod {pod}: no container serves port {port}")]
    UnknownPort {
        /// Pod name.
        pod: String,
        /// The port.
        port: u16,
    },
    /// The container exists but is in the wrong state for the operation.
    #[error("pod {pod}: container {container}: {detail}")]
    ContainerState {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
        /// Why.
        detail: String,
    },
    /// A container or pod of that name already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The pod was removed.
    #[error("pod {0} was removed")]
    PodRemoved(String),
    /// Pulling an image failed; the message names the image and why.
    #[error("{0}")]
    ImagePull(String),
    /// No runtime for this handler name.
    #[error("no runtime handler named {0:?}")]
    UnknownHandler(String),
    /// Setting up the engine failed.
    #[error("engine: {0}")]
    Engine(String),
    /// Serving an HTTP request failed before the guest answered.
    #[error("http: {0}")]
    Http(String),
    /// The feature exists in the API but this backend does not support it.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// A background task failed unexpectedly.
    #[error("internal: {0}")]
    Internal(String),
    /// The OCI runtime or the container monitor failed; the message names the container and
    /// carries the runtime's own.
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
    /// A Linux container's runtime config could not be built from its spec or image
    /// (reported as `CreateContainerError`).
    #[error(transparent)]
    Spec(#[from] crate::oci::SpecError),
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `release_network` refused: `container` of `pod` still runs.
pub(crate) fn still_running(pod: &str, container: &str) -> Error {
    Error::ContainerState {
        pod: pod.to_string(),
        container: container.to_string(),
        detail: "is still running: the pod's network is kept".into(),
    }
}

pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}
