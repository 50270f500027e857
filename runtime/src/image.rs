//! Image handling of one backend, apart from running containers (as the CRI splits its
//! ImageService from its RuntimeService): resolving names, pulling, remembering what is present.

use crate::error::Result;
use crate::spec::Image;

/// A pulled image, ready to go into a [`ContainerSpec`](crate::ContainerSpec).
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// What the backend's sandboxes create the container from.
    pub image: Image,
    /// The content-addressed id reported as the container's `imageID`.
    pub image_id: String,
    /// Size in bytes (for the `Pulled` event).
    pub size: u64,
}

/// Image handling of one backend: the wasm backend pulls wasm OCI artifacts, an OCI container
/// backend would pull and unpack filesystem layers.
#[async_trait::async_trait]
pub trait ImageService: Send + Sync {
    /// The full reference an image name stands for (for example with the node's default
    /// registry in front), as reported in container statuses.
    fn reference(&self, image: &str) -> String;

    /// The image, if it was pulled before (`imagePullPolicy: IfNotPresent` and `Never`).
    fn present(&self, image: &str) -> Option<PulledImage>;

    /// Pulls an image. The error's message is what the `ErrImagePull` waiting reason shows.
    async fn pull(&self, image: &str) -> Result<PulledImage>;
}
