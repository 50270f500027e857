//! The registry client used by nodes and the CLI: pushes wasm components as OCI artifacts and
//! pulls artifacts and images through a local content-addressed cache, over oci-client.
//!
//! Every manifest and blob fetched is checked against its digest before it enters the cache,
//! and the cache is consulted first: a pull by digest whose content is cached touches no
//! network. Image pulls keep the layer blobs as they are (compressed tars) for the container
//! backend to unpack later ([`PulledImage::layers`], [`RegistryClient::cached_image`]).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{DescriptorBuilder, ImageManifestBuilder, MediaType};

use crate::digest::{Algorithm, Digest, Digester};
use crate::manifest::{self, Descriptor, ManifestView};
use crate::wasm::{self, WasmConfig};

/// Errors from the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The reference does not parse.
    #[error("invalid reference {reference:?}: {reason}")]
    Reference {
        /// The reference given.
        reference: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The registry answered with an error or could not be reached.
    #[error("registry request failed: {0}")]
    Registry(oci_client::errors::OciDistributionError),
    /// The registry refused the request for lack of (valid) credentials.
    #[error(
        "the registry refused the request (401 unauthorized) at {url}: pushes need the registry \
         token (--token or SKIFF_REGISTRY_TOKEN; `skiff registry` keeps it in DIR/registry.token)"
    )]
    Unauthorized {
        /// The refused URL.
        url: String,
    },
    /// Content did not match its digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Expected digest.
        expected: String,
        /// Digest of what arrived.
        actual: String,
    },
    /// A digest is malformed.
    #[error(transparent)]
    Digest(#[from] crate::digest::DigestError),
    /// The manifest could not be read.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// The file is not wasm.
    #[error(transparent)]
    Wasm(#[from] wasm::WasmError),
    /// The artifact has no wasm layer.
    #[error("{0} is not a wasm artifact: no layer of a wasm media type")]
    NotWasm(String),
    /// No manifest in an index matches the wanted platform.
    #[error("no manifest for platform {0} in the index")]
    NoPlatform(String),
    /// Not everything needed is cached, and the client is offline for this call.
    #[error("{0} is not in the local cache")]
    NotCached(String),
    /// Building a manifest failed.
    #[error("cannot build manifest: {0}")]
    Build(String),
    /// Local file system failure.
    #[error("client cache i/o error: {0}")]
    Io(#[from] io::Error),
    /// JSON encoding or decoding failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

type Result<T> = std::result::Result<T, ClientError>;

impl From<oci_client::errors::OciDistributionError> for ClientError {
    fn from(e: oci_client::errors::OciDistributionError) -> ClientError {
        use oci_client::errors::OciDistributionError as E;
        match e {
            E::ServerError { code: 401, url, .. } | E::UnauthorizedError { url } => {
                ClientError::Unauthorized { url }
            }
            E::RegistryError { envelope, url }
                if envelope
                    .errors
                    .iter()
                    .any(|e| e.code == oci_client::errors::OciErrorCode::Unauthorized) =>
            {
                ClientError::Unauthorized { url }
            }
            other => ClientError::Registry(other),
        }
    }
}

/// A local content-addressed blob cache: `ROOT/blobs/<algo>/<hh>/<hex>`, written through
/// `ROOT/tmp` and renamed into place after the digest is checked.
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

impl BlobCache {
    /// A cache rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> BlobCache {
        BlobCache { root: root.into() }
    }

    /// Where blob `d` lives (whether or not it is cached).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    /// Whether blob `d` is cached.
    pub async fn contains(&self, d: &Digest) -> bool {
        tokio::fs::try_exists(self.path(d)).await.unwrap_or(false)
    }

    /// Reads a cached blob, or `None`.
    pub async fn read(&self, d: &Digest) -> Result<Option<Bytes>> {
        match tokio::fs::read(self.path(d)).await {
            Ok(b) => Ok(Some(b.into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Stores bytes as blob `d` after checking their digest.
    pub async fn insert_bytes(&self, d: &Digest, data: &[u8]) -> Result<()> {
        let actual = d.of_same_kind(data);
        if actual != *d {
            return Err(ClientError::DigestMismatch {
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        let tmp = self.temp_path();
        tokio::fs::create_dir_all(self.root.join("tmp")).await?;
        tokio::fs::write(&tmp, data).await?;
        self.place(tmp, d).await
    }

    /// Moves a downloaded file into the cache as blob `d` after checking its digest; the file is
    /// removed if it does not match.
    async fn insert_file(&self, tmp: PathBuf, d: &Digest) -> Result<()> {
        let algorithm = d.algorithm();
        let path = tmp.clone();
        let actual = tokio::task::spawn_blocking(move || hash_file(&path, algorithm))
            .await
            .map_err(io::Error::other)??;
        if actual != *d {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ClientError::DigestMismatch {
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        self.place(tmp, d).await
    }

    async fn place(&self, tmp: PathBuf, d: &Digest) -> Result<()> {
        let dest = self.path(d);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(&tmp, &dest).await?;
        Ok(())
    }
}

fn hash_file(path: &Path, algorithm: Algorithm) -> io::Result<Digest> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Digester::new(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// How to build a [`RegistryClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The local blob cache.
    pub cache_dir: PathBuf,
    /// The registry token (sent as HTTP Basic password), if any.
    pub token: Option<String>,
    /// Use plain HTTP for every registry. Loopback registries get plain HTTP unless
    /// `force_https` is set.
    pub plain_http: bool,
    /// Use HTTPS even for loopback registries (e.g. a local registry started with TLS).
    pub force_https: bool,
    /// Extra CA certificates (PEM) to trust for HTTPS registries.
    pub extra_root_certificates: Vec<Vec<u8>>,
}

impl ClientOptions {
    /// Options with a cache at `cache_dir`, no token, HTTPS except for loopback registries.
    pub fn new(cache_dir: impl Into<PathBuf>) -> ClientOptions {
        ClientOptions {
            cache_dir: cache_dir.into(),
            token: None,
            plain_http: false,
            force_https: false,
            extra_root_certificates: Vec::new(),
        }
    }
}

/// A manifest as pulled: verified bytes, digest and media type.
#[derive(Debug, Clone)]
pub struct PulledManifest {
    /// Digest of the bytes.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// The manifest bytes.
    pub bytes: Bytes,
}

/// A wasm artifact as pulled.
#[derive(Debug, Clone)]
pub struct PulledWasm {
    /// Digest of the image manifest.
    pub manifest_digest: Digest,
    /// The artifact config, when it is a CNCF wasm config.
    pub config: Option<WasmConfig>,
    /// Digest of the wasm layer.
    pub wasm_digest: Digest,
    /// The wasm binary in the cache.
    pub path: PathBuf,
}

/// An image layer kept in the cache, not unpacked.
#[derive(Debug, Clone)]
pub struct PulledLayer {
    /// Layer digest.
    pub digest: Digest,
    /// Layer media type (e.g. `application/vnd.oci.image.layer.v1.tar+gzip`).
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The layer blob in the cache.
    pub path: PathBuf,
}

/// An OCI or Docker image as pulled: its config and its layers, in order, for the container
/// backend to unpack.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// Digest of the image manifest (after platform selection).
    pub manifest_digest: Digest,
    /// Digest of the index the manifest was chosen from, if any.
    pub index_digest: Option<Digest>,
    /// Media type of the image config.
    pub config_media_type: String,
    /// The image config in the cache.
    pub config_path: PathBuf,
    /// Layers, bottom first.
    pub layers: Vec<PulledLayer>,
}

/// The result of a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Digest of the pushed manifest.
    pub manifest_digest: Digest,
    /// The reference pinned by digest: `HOST/NAME@DIGEST`.
    pub pinned: String,
}

/// A platform wanted from an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, `wasip2`, …
    pub os: String,
    /// `amd64`, `arm64`, `wasm`, …
    pub architecture: String,
}

impl Platform {
    /// The platform of this machine for Linux containers.
    pub fn linux_host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
        }
    }
}

/// What a push reports as it goes, for a progress display (see
/// [`RegistryClient::with_push_progress`]). Every method has an empty default.
pub trait PushProgress: Send + Sync {
    /// A blob of `total` bytes starts uploading.
    fn blob_started(&self, _digest: &Digest, _total: u64) {}
    /// `sent` of the blob's `total` bytes have been handed to the connection.
    fn blob_progress(&self, _digest: &Digest, _sent: u64, _total: u64) {}
    /// The blob is in the registry: uploaded now, or already there (`existed`).
    fn blob_done(&self, _digest: &Digest, _total: u64, _existed: bool) {}
}

/// How much of a blob a push hands over at a time when progress is reported.
const PROGRESS_CHUNK: usize = 256 * 1024;

/// A registry client with a local cache.
pub struct RegistryClient {
    https: oci_client::Client,
    http: oci_client::Client,
    plain_http: bool,
    force_https: bool,
    auth: RegistryAuth,
    cache: BlobCache,
    progress: Option<std::sync::Arc<dyn PushProgress>>,
}

impl RegistryClient {
    /// Builds a client.
    pub fn new(opts: ClientOptions) -> Result<RegistryClient> {
        // reqwest is built without a default TLS provider; use ring, as the rest of Skiff does.
        // Installing fails harmlessly if the process already chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs: Vec<oci_client::client::Certificate> = opts
            .extra_root_certificates
            .iter()
            .map(|pem| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect();
        let config = |protocol| ClientConfig {
            protocol,
            use_monolithic_push: true,
            extra_root_certificates: certs.clone(),
            platform_resolver: None,
            ..Default::default()
        };
        Ok(RegistryClient {
            https: oci_client::Client::new(config(ClientProtocol::Https)),
            http: oci_client::Client::new(config(ClientProtocol::Http)),
            plain_http: opts.plain_http,
            force_https: opts.force_https,
            auth: match opts.token {
                Some(t) => RegistryAuth::Basic("skiff".to_string(), t),
                None => RegistryAuth::Anonymous,
            },
            cache: BlobCache::new(opts.cache_dir),
            progress: None,
        })
    }

    /// Reports the bytes of every blob this client pushes to `progress`.
    pub fn with_push_progress(
        mut self,
        progress: std::sync::Arc<dyn PushProgress>,
    ) -> RegistryClient {
        self.progress = Some(progress);
        self
    }

    /// The local cache.
    pub fn cache(&self) -> &BlobCache {
        &self.cache
    }

    fn oci(&self, r: &Reference) -> &oci_client::Client {
        if self.plain_http || (!self.force_https && is_loopback_registry(r.resolve_registry())) {
            &self.http
        } else {
            &self.https
        }
    }

    /// Pushes a wasm component (or core module) to `reference` as a CNCF wasm artifact and
    /// returns the manifest digest. A component's world is recorded as the manifest annotations
    /// [`wasm::IMPORTS_ANNOTATION`] and [`wasm::EXPORTS_ANNOTATION`].
    pub async fn push_wasm(&self, reference: &str, wasm_bytes: Bytes) -> Result<Pushed> {
        self.push_wasm_annotated(reference, wasm_bytes, BTreeMap::new())
            .await
    }

    /// [`push_wasm`](Self::push_wasm) with more manifest annotations (`extra`; the world
    /// annotations cannot be overridden).
    pub async fn push_wasm_annotated(
        &self,
        reference: &str,
        wasm_bytes: Bytes,
        extra: BTreeMap<String, String>,
    ) -> Result<Pushed> {
        let r = parse_reference(reference)?;
        let config = wasm::config_for(&wasm_bytes)?;
        let mut annotations: HashMap<String, String> = extra.into_iter().collect();
        annotations.extend(wasm::world_annotations(&config));
        let config_bytes = Bytes::from(serde_json::to_vec(&config)?);
        let config_digest = Digest::sha256_of(&config_bytes);
        let layer_digest = Digest::sha256_of(&wasm_bytes);
        let build = |e: oci_spec::OciSpecError| ClientError::Build(e.to_string());
        let oci_digest = |d: &Digest| {
            d.to_string()
                .parse::<oci_spec::image::Digest>()
                .map_err(|e| ClientError::Build(e.to_string()))
        };
        let config_desc = DescriptorBuilder::default()
            .media_type(MediaType::Other(wasm::WASM_CONFIG_MEDIA_TYPE.to_string()))
            .digest(oci_digest(&config_digest)?)
            .size(config_bytes.len() as u64)
            .build()
            .map_err(build)?;
        let layer_desc = DescriptorBuilder::default()
            .media_type(MediaType::Other(wasm::WASM_LAYER_MEDIA_TYPE.to_string()))
            .digest(oci_digest(&layer_digest)?)
            .size(wasm_bytes.len() as u64)
            .build()
            .map_err(build)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(vec![layer_desc])
            .annotations(annotations)
            .build()
            .map_err(build)?;
        // The same component and annotations always make the same manifest (and digest): the
        // annotations are a hash map, so they are written in key order.
        let mut manifest = serde_json::to_value(&manifest)?;
        if let Some(serde_json::Value::Object(annotations)) = manifest.get_mut("annotations") {
            let sorted: BTreeMap<String, serde_json::Value> =
                std::mem::take(annotations).into_iter().collect();
            annotations.extend(sorted);
        }
        let manifest_bytes = Bytes::from(serde_json::to_vec(&manifest)?);
        self.push_blob_if_missing(&r, &config_digest, config_bytes)
            .await?;
        self.push_blob_if_missing(&r, &layer_digest, wasm_bytes)
            .await?;
        let digest = self
            .push_manifest(&r, manifest_bytes, manifest::OCI_MANIFEST)
            .await?;
        Ok(Pushed {
            pinned: format!("{}/{}@{digest}", r.registry(), r.repository()),
            manifest_digest: digest,
        })
    }

    /// Pushes a blob unless the registry already has it.
    pub async fn push_blob_if_missing(&self, r: &Reference, d: &Digest, data: Bytes) -> Result<()> {
        let oci = self.oci(r);
        oci.store_auth_if_needed(r.resolve_registry(), &self.auth)
            .await;
        oci.auth(r, &self.auth, oci_client::RegistryOperation::Push)
            .await?;
        let total = data.len() as u64;
        if oci.blob_exists(r, &d.to_string()).await? {
            if let Some(p) = &self.progress {
                p.blob_done(d, total, true);
            }
            return Ok(());
        }
        let Some(progress) = self.progress.clone().filter(|_| total > 0) else {
            oci.push_blob(r, data, &d.to_string()).await?;
            return Ok(());
        };
        // The blob goes out as a stream of slices, counted as the connection takes each.
        progress.blob_started(d, total);
        let chunks: Vec<Bytes> = (0..data.len())
            .step_by(PROGRESS_CHUNK)
            .map(|at| data.slice(at..(at + PROGRESS_CHUNK).min(data.len())))
            .collect();
        let (reporter, digest) = (progress.clone(), d.clone());
        let mut sent = 0u64;
        let stream = futures::stream::iter(chunks.into_iter().map(move |chunk| {
            sent += chunk.len() as u64;
            reporter.blob_progress(&digest, sent, total);
            Ok(chunk)
        }));
        oci.push_blob_stream(r, stream, &d.to_string(), Some(total))
            .await?;
        progress.blob_done(d, total, false);
        Ok(())
    }

    /// Pushes manifest bytes to `r` (tag or digest) and returns their digest.
    pub async fn push_manifest(
        &self,
        r: &Reference,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Digest> {
        let digest = Digest::sha256_of(&bytes);
        let oci = self.oci(r);
        oci.store_auth_if_needed(r.resolve_registry(), &self.auth)
            .await;
        let content_type = http::HeaderValue::from_str(media_type)
            .map_err(|e| ClientError::Build(e.to_string()))?;
        oci.push_manifest_raw(r, bytes, content_type).await?;
        Ok(digest)
    }

    /// Pulls the manifest `reference` names. By digest, a cached copy is used without network.
    pub async fn pull_manifest(&self, reference: &str) -> Result<PulledManifest> {
        let r = parse_reference(reference)?;
        self.manifest(&r).await
    }

    async fn manifest(&self, r: &Reference) -> Result<PulledManifest> {
        let wanted: Option<Digest> = r.digest().map(str::parse).transpose()?;
        if let Some(d) = &wanted
            && let Some(bytes) = self.cache.read(d).await?
        {
            let view = manifest::parse(&bytes, None)?;
            return Ok(PulledManifest {
                digest: d.clone(),
                media_type: view.media_type,
                bytes,
            });
        }
        let oci = self.oci(r);
        let (bytes, _reported) = oci
            .pull_manifest_raw(r, &self.auth, &manifest::MANIFEST_MEDIA_TYPES)
            .await?;
        let digest = match &wanted {
            Some(d) => {
                let actual = d.of_same_kind(&bytes);
                if actual != *d {
                    return Err(ClientError::DigestMismatch {
                        expected: d.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        let view = manifest::parse(&bytes, None)?;
        self.cache.insert_bytes(&digest, &bytes).await?;
        Ok(PulledManifest {
            digest,
            media_type: view.media_type,
            bytes,
        })
    }

    /// The digest and annotations of the manifest `reference` names (for an index, its own
    /// annotations). By digest, a cached manifest is read without network.
    pub async fn manifest_annotations(
        &self,
        reference: &str,
    ) -> Result<(Digest, BTreeMap<String, String>)> {
        #[derive(serde::Deserialize)]
        struct Annotated {
            #[serde(default)]
            annotations: Option<BTreeMap<String, String>>,
        }
        let m = self.pull_manifest(reference).await?;
        let a: Annotated = serde_json::from_slice(&m.bytes)?;
        Ok((m.digest, a.annotations.unwrap_or_default()))
    }

    /// Makes sure blob `desc` of repository `r` is cached and returns its path.
    async fn blob(&self, r: &Reference, desc: &Descriptor) -> Result<PathBuf> {
        let d: Digest = desc.digest.parse()?;
        let path = self.cache.path(&d);
        if self.cache.contains(&d).await {
            return Ok(path);
        }
        tokio::fs::create_dir_all(self.cache.root.join("tmp")).await?;
        let tmp = self.cache.temp_path();
        let file = tokio::fs::File::create(&tmp).await?;
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size,
            urls: None,
            annotations: None,
            artifact_type: None,
        };
        let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let res = self.oci(r).pull_blob(r, &oci_desc, &mut writer).await;
        drop(writer);
        if let Err(e) = res {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        self.cache.insert_file(tmp, &d).await?;
        Ok(path)
    }

    /// Resolves an index to the manifest for `platform`; returns (manifest, index digest).
    async fn select(
        &self,
        r: &Reference,
        top: PulledManifest,
        pick: impl Fn(&[Descriptor]) -> Option<Descriptor>,
        platform_name: &str,
    ) -> Result<(PulledManifest, ManifestView, Option<Digest>)> {
        let view = manifest::parse(&top.bytes, Some(&top.media_type))?;
        if !view.is_index() {
            return Ok((top, view, None));
        }
        let child = pick(&view.manifests)
            .ok_or_else(|| ClientError::NoPlatform(platform_name.to_string()))?;
        let child_ref = r.clone_with_digest(child.digest.clone());
        let m = self.manifest(&child_ref).await?;
        let v = manifest::parse(&m.bytes, Some(&m.media_type))?;
        Ok((m, v, Some(top.digest)))
    }

    /// Pulls a wasm artifact (any of the wasm layer layouts in use) into the cache.
    pub async fn pull_wasm(&self, reference: &str) -> Result<PulledWasm> {
        let r = parse_reference(reference)?;
        let top = self.manifest(&r).await?;
        let pick = |ms: &[Descriptor]| {
            ms.iter()
                .find(|m| platform_of(m).is_some_and(|(_, arch)| arch == "wasm"))
                .or_else(|| ms.first())
                .cloned()
        };
        let (m, view, _) = self.select(&r, top, pick, "wasm").await?;
        let layer = view
            .layers
            .iter()
            .find(|l| wasm::WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
            .cloned()
            .ok_or_else(|| ClientError::NotWasm(reference.to_string()))?;
        let config = match &view.config {
            Some(c) if c.media_type == wasm::WASM_CONFIG_MEDIA_TYPE => {
                let path = self.blob(&r, c).await?;
                let bytes = tokio::fs::read(path).await?;
                serde_json::from_slice(&bytes).ok()
            }
            _ => None,
        };
        let path = self.blob(&r, &layer).await?;
        Ok(PulledWasm {
            manifest_digest: m.digest,
            config,
            wasm_digest: layer.digest.parse()?,
            path,
        })
    }

    /// Pulls an OCI or Docker image for `platform` into the cache, layers kept as blobs.
    pub async fn pull_image(&self, reference: &str, platform: &Platform) -> Result<PulledImage> {
        let r = parse_reference(reference)?;
        let top = self.manifest(&r).await?;
        let pick = |ms: &[Descriptor]| {
            ms.iter()
                .find(|m| {
                    platform_of(m).is_some_and(|(os, arch)| {
                        os == platform.os && arch == platform.architecture
                    })
                })
                .cloned()
        };
        let name = format!("{}/{}", platform.os, platform.architecture);
        let (m, view, index_digest) = self.select(&r, top, pick, &name).await?;
        let config = view
            .config
            .clone()
            .ok_or(manifest::ManifestError::Missing("config"))?;
        let config_path = self.blob(&r, &config).await?;
        let mut layers = Vec::new();
        for l in &view.layers {
            if l.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                continue;
            }
            let path = self.blob(&r, l).await?;
            layers.push(PulledLayer {
                digest: l.digest.parse()?,
                media_type: l.media_type.clone(),
                size: u64::try_from(l.size).unwrap_or(0),
                path,
            });
        }
        Ok(PulledImage {
            manifest_digest: m.digest,
            index_digest,
            config_media_type: config.media_type,
            config_path,
            layers,
        })
    }

    /// The cached image whose manifest has digest `manifest_digest`, without any network.
    pub async fn cached_image(&self, manifest_digest: &Digest) -> Result<PulledImage> {
        let not_cached = |d: &str| ClientError::NotCached(d.to_string());
        let bytes = self
            .cache
            .read(manifest_digest)
            .await?
            .ok_or_else(|| not_cached(&manifest_digest.to_string()))?;
        let view = manifest::parse(&bytes, None)?;
        let config = view
            .config
            .clone()
            .ok_or(manifest::ManifestError::Missing("config"))?;
        let config_digest: Digest = config.digest.parse()?;
        if !self.cache.contains(&config_digest).await {
            return Err(not_cached(&config.digest));
        }
        let mut layers = Vec::new();
        for l in &view.layers {
            if l.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                continue;
            }
            let d: Digest = l.digest.parse()?;
            if !self.cache.contains(&d).await {
                return Err(not_cached(&l.digest));
            }
            layers.push(PulledLayer {
                path: self.cache.path(&d),
                digest: d,
                media_type: l.media_type.clone(),
                size: u64::try_from(l.size).unwrap_or(0),
            });
        }
        Ok(PulledImage {
            manifest_digest: manifest_digest.clone(),
            index_digest: None,
            config_media_type: config.media_type,
            config_path: self.cache.path(&config_digest),
            layers,
        })
    }
}

fn platform_of(d: &Descriptor) -> Option<(String, String)> {
    let p = d.platform.as_ref()?;
    Some((
        p.get("os")?.as_str()?.to_string(),
        p.get("architecture")?.as_str()?.to_string(),
    ))
}

/// Parses `HOST[:PORT]/NAME[:TAG][@DIGEST]`.
pub fn parse_reference(reference: &str) -> Result<Reference> {
    reference
        .parse::<Reference>()
        .map_err(|e| ClientError::Reference {
            reference: reference.to_string(),
            reason: e.to_string(),
        })
}

/// Whether a registry host (`HOST[:PORT]`) is a loopback address, which may be reached over
/// plain HTTP as Docker allows.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                registry
            }
        })
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("localhost"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(is_loopback_registry("127.1.2.3"));
        assert!(!is_loopback_registry("registry.example.com:5000"));
        assert!(!is_loopback_registry("10.0.0.1:5000"));
    }

    #[tokio::test]
    async fn cache_refuses_wrong_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(dir.path());
        let d = Digest::sha256_of(b"abc");
        assert!(cache.insert_bytes(&d, b"abd").await.is_err());
        assert!(!cache.contains(&d).await);
        cache.insert_bytes(&d, b"abc").await.unwrap();
        assert_eq!(cache.read(&d).await.unwrap().unwrap().as_ref(), b"abc");
    }
}
