//! The wasm backend's image service: wasm OCI artifacts pulled through the registry client
//! (plain HTTP for loopback registries), or local files (`file:///abs/path.wasm`) when the node
//! allows them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use skiff_registry::{ClientOptions, RegistryClient};
use skiff_runtime::{Image, ImageService, PulledImage};

mod oci;

pub use oci::OciImages;

/// The full reference for an image name: names without a registry host get `default_registry`.
fn full_reference(default_registry: Option<&str>, image: &str) -> String {
    if image.starts_with("file://") {
        return image.to_string();
    }
    let first = image.split('/').next().unwrap_or("");
    let has_host =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match (default_registry, has_host) {
        (Some(reg), false) => format!("{}/{image}", reg.trim_end_matches('/')),
        _ => image.to_string(),
    }
}

/// The repository of a reference (tag and digest dropped), for `imageID`s `REPO@DIGEST`.
fn repository_of(reference: &str) -> String {
    reference
        .split('@')
        .next()
        .unwrap_or(reference)
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map(|(r, _)| r.to_string())
        .unwrap_or_else(|| reference.split('@').next().unwrap_or(reference).to_string())
}

/// The images an image service has pulled, by full reference.
#[derive(Default)]
pub(crate) struct Pulled(Mutex<HashMap<String, PulledImage>>);

impl Pulled {
    /// The image pulled for `reference`, if any.
    pub(crate) fn get(&self, reference: &str) -> Option<PulledImage> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(reference)
            .cloned()
    }

    /// Remembers the image pulled for `reference`.
    pub(crate) fn insert(&self, reference: String, image: PulledImage) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(reference, image);
    }
}

/// Pulls wasm images for the node's pods and remembers what it pulled.
pub struct WasmImages {
    client: RegistryClient,
    default_registry: Option<String>,
    allow_files: bool,
    pulled: Pulled,
}

impl std::fmt::Debug for WasmImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmImages")
            .field("default_registry", &self.default_registry)
            .field("allow_files", &self.allow_files)
            .finish_non_exhaustive()
    }
}

impl WasmImages {
    /// Pulls into `cache_dir`; names without a registry host get `default_registry`; `token`
    /// authenticates to registries that want one; `allow_files` accepts `file://` images.
    pub fn new(
        cache_dir: PathBuf,
        default_registry: Option<String>,
        token: Option<String>,
        allow_files: bool,
    ) -> crate::Result<WasmImages> {
        let mut opts = ClientOptions::new(cache_dir);
        opts.token = token;
        let client = RegistryClient::new(opts).map_err(|e| crate::Error::Config(e.to_string()))?;
        Ok(WasmImages {
            client,
            default_registry,
            allow_files,
            pulled: Pulled::default(),
        })
    }

    /// The full reference for an image name: names without a registry host get the node's
    /// default registry.
    fn full_reference(&self, image: &str) -> String {
        full_reference(self.default_registry.as_deref(), image)
    }

    /// Pulls an image. Errors are messages for the `ErrImagePull` reason.
    async fn fetch(&self, image: &str) -> Result<PulledImage, String> {
        let reference = self.full_reference(image);
        let pulled = if let Some(path) = reference.strip_prefix("file://") {
            if !self.allow_files {
                return Err(format!(
                    "failed to pull image {image:?}: file images are not allowed on this node \
                     (start it with --allow-file-images)"
                ));
            }
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!(
                    "failed to pull image {image:?}: the path must be absolute"
                ));
            }
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(|e| format!("failed to pull image {image:?}: {e}"))?;
            if !meta.is_file() {
                return Err(format!("failed to pull image {image:?}: not a file"));
            }
            PulledImage {
                image_id: reference.clone(),
                size: meta.len(),
                image: Image::Path(path),
            }
        } else {
            let w = self
                .client
                .pull_wasm(&reference)
                .await
                .map_err(|e| format!("failed to pull and unpack image {reference:?}: {e}"))?;
            let repo = repository_of(&reference);
            let size = tokio::fs::metadata(&w.path)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            PulledImage {
                image_id: format!("{repo}@{}", w.manifest_digest),
                image: Image::Path(w.path),
                size,
            }
        };
        self.pulled.insert(reference, pulled.clone());
        Ok(pulled)
    }
}

#[async_trait::async_trait]
impl ImageService for WasmImages {
    fn reference(&self, image: &str) -> String {
        self.full_reference(image)
    }

    fn present(&self, image: &str) -> Option<PulledImage> {
        self.pulled.get(&self.full_reference(image))
    }

    async fn pull(&self, image: &str) -> skiff_runtime::Result<PulledImage> {
        self.fetch(image)
            .await
            .map_err(skiff_runtime::Error::ImagePull)
    }
}
