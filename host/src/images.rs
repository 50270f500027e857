//! Image pulls: wasm OCI artifacts through the registry client (plain HTTP for loopback
//! registries), or local files (`file:///abs/path.wasm`) when the node allows them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use skiff_registry::{ClientOptions, RegistryClient};

/// A pulled image: where its wasm bytes are and its digest (`imageID`).
#[derive(Debug, Clone)]
pub(crate) struct Pulled {
    pub(crate) path: PathBuf,
    pub(crate) image_id: String,
}

/// Pulls images for the node's pods and remembers what it pulled.
pub(crate) struct Puller {
    client: RegistryClient,
    default_registry: Option<String>,
    allow_files: bool,
    pulled: Mutex<HashMap<String, Pulled>>,
}

impl Puller {
    pub(crate) fn new(
        cache_dir: PathBuf,
        default_registry: Option<String>,
        token: Option<String>,
        allow_files: bool,
    ) -> Result<Puller, String> {
        let mut opts = ClientOptions::new(cache_dir);
        opts.token = token;
        let client = RegistryClient::new(opts).map_err(|e| e.to_string())?;
        Ok(Puller {
            client,
            default_registry,
            allow_files,
            pulled: Mutex::new(HashMap::new()),
        })
    }

    /// The full reference for an image name: names without a registry host get the node's
    /// default registry.
    pub(crate) fn reference(&self, image: &str) -> String {
        if image.starts_with("file://") {
            return image.to_string();
        }
        let first = image.split('/').next().unwrap_or("");
        let has_host = image.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        match (&self.default_registry, has_host) {
            (Some(reg), false) => format!("{}/{image}", reg.trim_end_matches('/')),
            _ => image.to_string(),
        }
    }

    /// An image pulled before, if any (for `imagePullPolicy: IfNotPresent`).
    pub(crate) fn present(&self, image: &str) -> Option<Pulled> {
        let reference = self.reference(image);
        self.pulled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&reference)
            .cloned()
    }

    /// Pulls an image. Errors are messages for the `ErrImagePull` reason.
    pub(crate) async fn pull(&self, image: &str) -> Result<Pulled, String> {
        let reference = self.reference(image);
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
            Pulled {
                image_id: reference.clone(),
                path,
            }
        } else {
            let w = self
                .client
                .pull_wasm(&reference)
                .await
                .map_err(|e| format!("failed to pull and unpack image {reference:?}: {e}"))?;
            let repo = reference
                .split('@')
                .next()
                .unwrap_or(&reference)
                .rsplit_once(':')
                .filter(|(_, tag)| !tag.contains('/'))
                .map(|(r, _)| r.to_string())
                .unwrap_or_else(|| reference.clone());
            Pulled {
                image_id: format!("{repo}@{}", w.manifest_digest),
                path: w.path,
            }
        };
        self.pulled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(reference, pulled.clone());
        Ok(pulled)
    }
}
