//! The Linux container backend's image service: OCI and Docker images pulled through the
//! registry client (every blob checked against its digest and cached by digest), unpacked once
//! per manifest digest into the node's image store by `skiff_runtime::oci_image`, concurrent
//! pulls of one reference sharing one pull.
//!
//! The [`PulledImage`] it returns carries `Image::Path(STORE/<algo>-<hex>)`; the runtime opens
//! it with `skiff_runtime::oci_image::UnpackedImage::open` for the shared root and the config.
//!
//! A wasm artifact (its config or a layer has a wasm media type, as runwasi decides; or an
//! index with only wasm platforms) comes back as `Image::Bytes` of the module or component,
//! which the Linux container backend runs on the wasm runtime.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use skiff_registry::{ClientOptions, Platform, RegistryClient, wasm};
use skiff_runtime::oci_image::{self, LayerFile};
use skiff_runtime::{Image, ImageService, PulledImage};
use tokio::sync::OnceCell;

use super::{full_reference, repository_of};

type Shared = Arc<OnceCell<Result<PulledImage, String>>>;

/// Pulls and unpacks Linux container images for the node's pods.
pub struct OciImages {
    client: RegistryClient,
    store: PathBuf,
    default_registry: Option<String>,
    platform: Platform,
    pulled: super::Pulled,
    in_flight: Mutex<HashMap<String, Shared>>,
}

impl std::fmt::Debug for OciImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciImages")
            .field("store", &self.store)
            .field("default_registry", &self.default_registry)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

impl OciImages {
    /// Blobs are cached in `cache_dir`, images unpacked into `store_dir`; names without a
    /// registry host get `default_registry`; `token` authenticates to registries that want one.
    pub fn new(
        cache_dir: PathBuf,
        store_dir: PathBuf,
        default_registry: Option<String>,
        token: Option<String>,
    ) -> crate::Result<OciImages> {
        let mut opts = ClientOptions::new(cache_dir);
        opts.token = token;
        let client = RegistryClient::new(opts).map_err(|e| crate::Error::Config(e.to_string()))?;
        Ok(OciImages {
            client,
            store: store_dir,
            default_registry,
            platform: Platform::linux_host(),
            pulled: super::Pulled::default(),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The image store (one directory per manifest digest).
    pub fn store(&self) -> &std::path::Path {
        &self.store
    }

    fn full_reference(&self, image: &str) -> String {
        full_reference(self.default_registry.as_deref(), image)
    }

    /// Pulls, verifies and unpacks one image. Errors are messages for `ErrImagePull`.
    async fn fetch(&self, reference: &str) -> Result<PulledImage, String> {
        if reference.starts_with("file://") {
            return Err(format!(
                "failed to pull image {reference:?}: file images are not supported by the \
                 Linux container runtime"
            ));
        }
        let fail = |e: &dyn std::fmt::Display| {
            format!("failed to pull and unpack image {reference:?}: {e}")
        };
        let pulled = match self.client.pull_image(reference, &self.platform).await {
            Ok(p) => p,
            // An index of wasm platforms only (wasip1/wasip2 on `wasm`): a wasm artifact.
            Err(skiff_registry::ClientError::NoPlatform(_)) => {
                return self.fetch_wasm(reference).await;
            }
            Err(e) => return Err(fail(&e)),
        };
        let is_wasm = pulled.config_media_type == wasm::WASM_CONFIG_MEDIA_TYPE
            || pulled
                .layers
                .iter()
                .any(|l| wasm::WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()));
        if is_wasm {
            return self.fetch_wasm(reference).await;
        }
        let config = tokio::fs::read(&pulled.config_path)
            .await
            .map_err(|e| fail(&e))?;
        let layers: Vec<LayerFile> = pulled
            .layers
            .iter()
            .map(|l| LayerFile {
                digest: l.digest.to_string(),
                media_type: l.media_type.clone(),
                path: l.path.clone(),
            })
            .collect();
        let size = pulled.layers.iter().map(|l| l.size).sum::<u64>() + config.len() as u64;
        let store = self.store.clone();
        let digest = pulled.manifest_digest.to_string();
        let unpacked = tokio::task::spawn_blocking(move || {
            oci_image::unpack_image(&store, &digest, &config, &layers)
        })
        .await
        .map_err(|e| fail(&e))?
        .map_err(|e| fail(&e))?;
        let image = PulledImage {
            image_id: format!("{}@{}", repository_of(reference), pulled.manifest_digest),
            image: Image::Path(unpacked.dir),
            size,
        };
        self.pulled.insert(reference.to_string(), image.clone());
        Ok(image)
    }

    /// Pulls a wasm artifact's module or component into memory.
    async fn fetch_wasm(&self, reference: &str) -> Result<PulledImage, String> {
        let fail = |e: &dyn std::fmt::Display| format!("failed to pull image {reference:?}: {e}");
        let w = self
            .client
            .pull_wasm(reference)
            .await
            .map_err(|e| fail(&e))?;
        let bytes = tokio::fs::read(&w.path).await.map_err(|e| fail(&e))?;
        let image = PulledImage {
            image_id: format!("{}@{}", repository_of(reference), w.manifest_digest),
            size: bytes.len() as u64,
            image: Image::Bytes(bytes.into()),
        };
        self.pulled.insert(reference.to_string(), image.clone());
        Ok(image)
    }
}

#[async_trait::async_trait]
impl ImageService for OciImages {
    fn reference(&self, image: &str) -> String {
        self.full_reference(image)
    }

    fn present(&self, image: &str) -> Option<PulledImage> {
        self.pulled.get(&self.full_reference(image))
    }

    async fn pull(&self, image: &str) -> skiff_runtime::Result<PulledImage> {
        let reference = self.full_reference(image);
        // Callers pulling the same reference at once wait for the one pull under way.
        let cell: Shared = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reference.clone())
            .or_default()
            .clone();
        let result = cell.get_or_init(|| self.fetch(&reference)).await.clone();
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if in_flight
                .get(&reference)
                .is_some_and(|c| Arc::ptr_eq(c, &cell))
            {
                in_flight.remove(&reference);
            }
        }
        result.map_err(skiff_runtime::Error::ImagePull)
    }
}

#[cfg(test)]
mod tests;
