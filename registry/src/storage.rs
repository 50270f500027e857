//! On-disk, content-addressed storage for the registry: blobs, upload sessions, manifests, tags,
//! the referrers index, and garbage collection.
//!
//! Layout under the data directory:
//! - `blobs/<algo>/<hh>/<hex>`: every blob and every manifest, named by its digest;
//! - `uploads/<uuid>`: bytes of an upload in progress (never visible as a blob);
//! - `repositories/<name>/_manifests/<algo>/<hex>`: a manifest belongs to a repository (the file
//!   holds its media type); `_tags/<tag>` holds a digest; `_referrers/<algo>/<hex>/<algo>-<hex>`
//!   holds the descriptor of a manifest whose subject is `<algo>:<hex>`.
//!
//! Every write goes to a temporary file that is fsync'd and renamed into place, so a crash or a
//! killed upload never leaves a partial file under a final name, and two concurrent writers of
//! the same content both succeed. Garbage collection takes the write side of a gate that every
//! mutating operation holds for reading, and spares blobs younger than a grace period, so it never
//! removes a blob pushed by an upload whose manifest has not arrived yet.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::digest::{Algorithm, Digest, Digester};
use crate::manifest::{self, Descriptor, ManifestError};

/// Largest manifest accepted.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Errors from storage operations.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// File system failure.
    #[error("storage i/o error: {0}")]
    Io(#[from] io::Error),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another registry process")]
    Locked(PathBuf),
    /// The bytes do not match the digest they were declared with.
    #[error("digest mismatch: expected {expected}, content has {actual}")]
    DigestMismatch {
        /// Declared digest.
        expected: Digest,
        /// Digest of the bytes received.
        actual: Digest,
    },
    /// The blob does not exist.
    #[error("blob {0} is unknown")]
    BlobUnknown(Digest),
    /// The upload session does not exist.
    #[error("upload {0} is unknown")]
    UploadUnknown(String),
    /// A chunk did not start where the upload ends.
    #[error("chunk starts at {got} but the upload has {have} bytes")]
    RangeInvalid {
        /// Bytes stored so far.
        have: u64,
        /// Start offset of the chunk.
        got: u64,
    },
    /// The manifest could not be read.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(#[from] ManifestError),
    /// A size in a manifest does not match the stored blob.
    #[error("manifest invalid: blob {digest} has size {actual}, manifest says {declared}")]
    ManifestSize {
        /// Blob.
        digest: Digest,
        /// Stored size.
        actual: u64,
        /// Declared size.
        declared: i64,
    },
    /// The manifest names a blob or child manifest that is not stored.
    #[error("manifest references unknown blob {0}")]
    ManifestBlobUnknown(Digest),
    /// The manifest does not exist in the repository.
    #[error("manifest unknown")]
    ManifestUnknown,
    /// The manifest is larger than [`MAX_MANIFEST_SIZE`].
    #[error("manifest is larger than {MAX_MANIFEST_SIZE} bytes")]
    ManifestTooLarge,
    /// The repository does not exist.
    #[error("repository {0} is unknown")]
    NameUnknown(String),
    /// A request body failed while being received.
    #[error("request body failed: {0}")]
    Body(String),
}

type Result<T> = std::result::Result<T, StorageError>;

struct Upload {
    repo: String,
    path: PathBuf,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    hasher: Digester,
    size: u64,
    touched: Instant,
}

/// The registry's storage. Cheap to share behind an `Arc`.
pub struct Storage {
    root: PathBuf,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>,
    gate: tokio::sync::RwLock<()>,
    _lock: std::fs::File,
}

/// What garbage collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs kept because something references them.
    pub live: usize,
    /// Blobs removed.
    pub removed: usize,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub spared_young: usize,
}

/// Status of an upload session.
#[derive(Debug, Clone)]
pub struct UploadStatus {
    /// Session id.
    pub id: String,
    /// Bytes received.
    pub size: u64,
}

impl Storage {
    /// Opens (creating if needed) the storage at `root` and locks it against other processes.
    /// Blocking: call it from a blocking context.
    pub fn open(root: &Path) -> Result<Storage> {
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("repositories"))?;
        let lock = lock_dir(root)?;
        // Upload sessions live in memory; bytes of sessions from an earlier run are unreachable.
        let uploads = root.join("uploads");
        if uploads.exists() {
            std::fs::remove_dir_all(&uploads)?;
        }
        std::fs::create_dir_all(&uploads)?;
        Ok(Storage {
            root: root.to_path_buf(),
            uploads: Mutex::new(HashMap::new()),
            gate: tokio::sync::RwLock::new(()),
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join("repositories").join(repo)
    }

    fn manifest_marker(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn tag_path(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo_dir(repo).join("_tags").join(tag)
    }

    fn referrers_dir(&self, repo: &str, subject: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
    }

    /// Size of a stored blob, or `None`.
    pub async fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(d)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a stored blob for reading, with its size.
    pub async fn open_blob(&self, d: &Digest) -> Result<(tokio::fs::File, u64)> {
        match tokio::fs::File::open(self.blob_path(d)).await {
            Ok(f) => {
                let size = f.metadata().await?.len();
                Ok((f, size))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StorageError::BlobUnknown(d.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a whole (small) stored blob.
    pub async fn read_blob(&self, d: &Digest) -> Result<Bytes> {
        match tokio::fs::read(self.blob_path(d)).await {
            Ok(b) => Ok(b.into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StorageError::BlobUnknown(d.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Starts an upload session for `repo`.
    pub async fn start_upload(&self, repo: &str) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = self.root.join("uploads").join(&id);
        let file = tokio::fs::File::create(&path).await?;
        let upload = Upload {
            repo: repo.to_string(),
            path,
            file: Some(tokio::io::BufWriter::with_capacity(1 << 20, file)),
            hasher: Digester::new(Algorithm::Sha256),
            size: 0,
            touched: Instant::now(),
        };
        lock(&self.uploads).insert(id.clone(), Arc::new(tokio::sync::Mutex::new(upload)));
        Ok(UploadStatus { id, size: 0 })
    }

    fn session(&self, repo: &str, id: &str) -> Result<Arc<tokio::sync::Mutex<Upload>>> {
        let map = lock(&self.uploads);
        let _ = repo; // checked by callers once the session is locked
        map.get(id)
            .cloned()
            .ok_or_else(|| StorageError::UploadUnknown(id.to_string()))
    }

    /// Status of an upload session.
    pub async fn upload_status(&self, repo: &str, id: &str) -> Result<UploadStatus> {
        let session = self.session(repo, id)?;
        let u = session.lock().await;
        if u.repo != repo {
            return Err(StorageError::UploadUnknown(id.to_string()));
        }
        Ok(UploadStatus {
            id: id.to_string(),
            size: u.size,
        })
    }

    /// Appends a chunk to an upload. `start` is the chunk's declared offset, if any.
    pub async fn append_upload<S, E>(
        &self,
        repo: &str,
        id: &str,
        start: Option<u64>,
        body: S,
    ) -> Result<UploadStatus>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let _gate = self.gate.read().await;
        let session = self.session(repo, id)?;
        let mut u = session.lock().await;
        if u.repo != repo {
            return Err(StorageError::UploadUnknown(id.to_string()));
        }
        if let Some(start) = start
            && start != u.size
        {
            return Err(StorageError::RangeInvalid {
                have: u.size,
                got: start,
            });
        }
        let res = write_stream(&mut u, body).await;
        u.touched = Instant::now();
        res?;
        Ok(UploadStatus {
            id: id.to_string(),
            size: u.size,
        })
    }

    /// Appends the last chunk (possibly empty) and commits the upload as blob `digest`. The
    /// session ends either way; on a digest mismatch nothing is stored.
    pub async fn finish_upload<S, E>(
        &self,
        repo: &str,
        id: &str,
        digest: &Digest,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let _gate = self.gate.read().await;
        let session = self.session(repo, id)?;
        let mut u = session.lock().await;
        if u.repo != repo {
            return Err(StorageError::UploadUnknown(id.to_string()));
        }
        let res = write_stream(&mut u, body).await;
        u.touched = Instant::now();
        // A body that failed part-way leaves the session open for a retry.
        res?;
        lock(&self.uploads).remove(id);
        let result = self.commit(&mut u, digest).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&u.path).await;
        }
        result
    }

    async fn commit(&self, u: &mut Upload, digest: &Digest) -> Result<u64> {
        let mut file = u
            .file
            .take()
            .ok_or_else(|| StorageError::UploadUnknown(String::new()))?;
        file.flush().await?;
        file.get_mut().sync_data().await?;
        drop(file);
        let actual = if digest.algorithm() == Algorithm::Sha256 {
            std::mem::replace(&mut u.hasher, Digester::new(Algorithm::Sha256)).finish()
        } else {
            hash_file(u.path.clone(), digest.algorithm()).await?
        };
        if actual != *digest {
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let dest = self.blob_path(digest);
        rename_into_place(u.path.clone(), dest).await?;
        Ok(u.size)
    }

    /// Cancels an upload session and removes its bytes.
    pub async fn cancel_upload(&self, repo: &str, id: &str) -> Result<()> {
        let session = self.session(repo, id)?;
        lock(&self.uploads).remove(id);
        let mut u = session.lock().await;
        u.file.take();
        match tokio::fs::remove_file(&u.path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends sessions idle for longer than `idle`, removing their bytes. Returns how many ended.
    pub async fn expire_uploads(&self, idle: Duration) -> usize {
        let sessions: Vec<(String, Arc<tokio::sync::Mutex<Upload>>)> = lock(&self.uploads)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut ended = 0;
        for (id, session) in sessions {
            let Ok(mut u) = session.try_lock() else {
                continue;
            };
            if u.touched.elapsed() < idle {
                continue;
            }
            lock(&self.uploads).remove(&id);
            u.file.take();
            let _ = tokio::fs::remove_file(&u.path).await;
            ended += 1;
        }
        ended
    }

    /// Number of upload sessions in progress.
    pub fn uploads_in_progress(&self) -> usize {
        lock(&self.uploads).len()
    }

    /// Stores a small blob whose bytes are in memory, verifying `digest`.
    pub async fn put_blob_bytes(&self, digest: &Digest, data: Bytes) -> Result<()> {
        let _gate = self.gate.read().await;
        self.put_bytes_unlocked(digest, data).await
    }

    async fn put_bytes_unlocked(&self, digest: &Digest, data: Bytes) -> Result<()> {
        let actual = digest.of_same_kind(&data);
        if actual != *digest {
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let dest = self.blob_path(digest);
        if tokio::fs::try_exists(&dest).await? {
            return Ok(());
        }
        let tmp = self
            .root
            .join("uploads")
            .join(format!("m-{}", uuid::Uuid::new_v4().simple()));
        write_file_synced(tmp.clone(), data).await?;
        rename_into_place(tmp, dest).await
    }

    /// Whether `repo` has at least one manifest (or tag).
    pub async fn repo_exists(&self, repo: &str) -> bool {
        tokio::fs::try_exists(self.repo_dir(repo).join("_manifests"))
            .await
            .unwrap_or(false)
    }

    /// Resolves a tag to a digest.
    pub async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Digest> {
        match tokio::fs::read_to_string(self.tag_path(repo, tag)).await {
            Ok(s) => s.trim().parse().map_err(|_| StorageError::ManifestUnknown),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::ManifestUnknown),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a manifest of `repo`: its bytes and media type.
    pub async fn get_manifest(&self, repo: &str, d: &Digest) -> Result<(Bytes, String)> {
        let media_type = match tokio::fs::read_to_string(self.manifest_marker(repo, d)).await {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::ManifestUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        let bytes = self.read_blob(d).await.map_err(|e| match e {
            StorageError::BlobUnknown(_) => StorageError::ManifestUnknown,
            e => e,
        })?;
        Ok((bytes, media_type))
    }

    /// Stores a manifest in `repo`, tagging it when `tag` is given. If `expected` is given the
    /// body must have that digest. Returns the manifest digest and its subject, if any.
    pub async fn put_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        expected: Option<&Digest>,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<(Digest, Option<Digest>)> {
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(StorageError::ManifestTooLarge);
        }
        let digest = match expected {
            Some(e) => {
                let actual = e.of_same_kind(&body);
                if actual != *e {
                    return Err(StorageError::DigestMismatch {
                        expected: e.clone(),
                        actual,
                    });
                }
                actual
            }
            None => Digest::sha256_of(&body),
        };
        let view = manifest::parse(&body, content_type)?;
        let _gate = self.gate.read().await;
        for (blob, declared) in &view.blobs {
            match self.blob_size(blob).await? {
                None => return Err(StorageError::ManifestBlobUnknown(blob.clone())),
                Some(actual) if i64::try_from(actual).ok() != Some(*declared) => {
                    return Err(StorageError::ManifestSize {
                        digest: blob.clone(),
                        actual,
                        declared: *declared,
                    });
                }
                Some(_) => {}
            }
        }
        for child in &view.children {
            if !tokio::fs::try_exists(self.manifest_marker(repo, child)).await? {
                return Err(StorageError::ManifestBlobUnknown(child.clone()));
            }
        }
        let size = body.len();
        self.put_bytes_unlocked(&digest, body).await?;
        let marker = self.manifest_marker(repo, &digest);
        write_small_atomic(&self.root, marker, view.media_type.clone().into_bytes()).await?;
        if let Some(subject) = &view.subject {
            let desc = Descriptor {
                media_type: view.media_type.clone(),
                digest: digest.to_string(),
                size: size as i64,
                urls: None,
                artifact_type: view.artifact_type.clone(),
                annotations: view.annotations.clone(),
                platform: None,
            };
            let path = self.referrers_dir(repo, subject).join(format!(
                "{}-{}",
                digest.algorithm().as_str(),
                digest.hex()
            ));
            let json = serde_json::to_vec(&desc).map_err(io::Error::other)?;
            write_small_atomic(&self.root, path, json).await?;
        }
        if let Some(tag) = tag {
            write_small_atomic(
                &self.root,
                self.tag_path(repo, tag),
                digest.to_string().into_bytes(),
            )
            .await?;
        }
        Ok((digest, view.subject))
    }

    /// Removes a tag.
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        let _gate = self.gate.read().await;
        match tokio::fs::remove_file(self.tag_path(repo, tag)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::ManifestUnknown),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a manifest from `repo`, with every tag pointing at it and its referrer entry.
    /// The bytes stay until garbage collection.
    pub async fn delete_manifest(&self, repo: &str, d: &Digest) -> Result<()> {
        let _gate = self.gate.read().await;
        let (body, media_type) = self.get_manifest(repo, d).await?;
        tokio::fs::remove_file(self.manifest_marker(repo, d)).await?;
        for tag in self.list_tags(repo).await.unwrap_or_default() {
            if self.resolve_tag(repo, &tag).await.ok().as_ref() == Some(d) {
                let _ = tokio::fs::remove_file(self.tag_path(repo, &tag)).await;
            }
        }
        if let Ok(view) = manifest::parse(&body, Some(&media_type))
            && let Some(subject) = view.subject
        {
            let path = self.referrers_dir(repo, &subject).join(format!(
                "{}-{}",
                d.algorithm().as_str(),
                d.hex()
            ));
            let _ = tokio::fs::remove_file(path).await;
        }
        Ok(())
    }

    /// Tags of `repo`, sorted.
    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        if !self.repo_exists(repo).await {
            return Err(StorageError::NameUnknown(repo.to_string()));
        }
        let dir = self.repo_dir(repo).join("_tags");
        let mut tags = list_dir_names(dir).await?;
        tags.sort();
        Ok(tags)
    }

    /// Every repository with manifests, sorted.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        let root = self.root.join("repositories");
        let mut repos = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk_repos(&root, String::new(), &mut out)?;
            Ok::<_, io::Error>(out)
        })
        .await
        .map_err(io::Error::other)??;
        repos.sort();
        Ok(repos)
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`.
    pub async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>> {
        let dir = self.referrers_dir(repo, subject);
        let mut out = Vec::new();
        for name in list_dir_names(dir.clone()).await? {
            if name.starts_with('.') {
                continue;
            }
            let data = match tokio::fs::read(dir.join(&name)).await {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if let Ok(desc) = serde_json::from_slice::<Descriptor>(&data) {
                out.push(desc);
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Removes blobs no manifest references and that are older than `grace`. Waits for
    /// mutating operations in flight and blocks new ones while it runs.
    pub async fn gc(&self, grace: Duration) -> Result<GcReport> {
        let _gate = self.gate.write().await;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || gc_blocking(&root, grace))
            .await
            .map_err(io::Error::other)?
    }
}

/// Garbage-collects a data directory that no registry process is serving.
/// Blocking: call it from a blocking context.
pub fn gc_offline(root: &Path, grace: Duration) -> Result<GcReport> {
    let _lock = lock_dir(root)?;
    let uploads = root.join("uploads");
    if uploads.exists() {
        std::fs::remove_dir_all(&uploads)?;
    }
    gc_blocking(root, grace)
}

fn lock_dir(root: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(root)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("lock"))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Locked(root.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

fn gc_blocking(root: &Path, grace: Duration) -> Result<GcReport> {
    let mut live: HashSet<Digest> = HashSet::new();
    let mut repos = Vec::new();
    walk_repos(&root.join("repositories"), String::new(), &mut repos)?;
    for repo in repos {
        let mdir = root.join("repositories").join(&repo).join("_manifests");
        for algo_entry in read_dir_or_empty(&mdir)? {
            let algo = algo_entry.file_name().to_string_lossy().into_owned();
            for m in read_dir_or_empty(&algo_entry.path())? {
                let name = format!("{algo}:{}", m.file_name().to_string_lossy());
                let Ok(d) = name.parse::<Digest>() else {
                    continue;
                };
                let media_type = std::fs::read_to_string(m.path()).unwrap_or_default();
                let blob = root
                    .join("blobs")
                    .join(&algo)
                    .join(&d.hex()[..2])
                    .join(d.hex());
                if let Ok(body) = std::fs::read(&blob)
                    && let Ok(view) = manifest::parse(&body, Some(&media_type))
                {
                    live.extend(view.blobs.into_iter().map(|(d, _)| d));
                }
                live.insert(d);
            }
        }
    }
    let mut report = GcReport::default();
    let now = SystemTime::now();
    for algo_entry in read_dir_or_empty(&root.join("blobs"))? {
        let algo = algo_entry.file_name().to_string_lossy().into_owned();
        for prefix in read_dir_or_empty(&algo_entry.path())? {
            for blob in read_dir_or_empty(&prefix.path())? {
                let name = format!("{algo}:{}", blob.file_name().to_string_lossy());
                let Ok(d) = name.parse::<Digest>() else {
                    continue;
                };
                if live.contains(&d) {
                    report.live += 1;
                    continue;
                }
                let meta = blob.metadata()?;
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                if age < grace {
                    report.spared_young += 1;
                    continue;
                }
                std::fs::remove_file(blob.path())?;
                report.removed += 1;
                report.freed_bytes += meta.len();
            }
        }
    }
    Ok(report)
}

fn read_dir_or_empty(dir: &Path) -> io::Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn walk_repos(dir: &Path, prefix: String, out: &mut Vec<String>) -> io::Result<()> {
    for entry in read_dir_or_empty(dir)? {
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "_manifests" {
            if !prefix.is_empty() {
                out.push(prefix.clone());
            }
            continue;
        }
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        let child = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        walk_repos(&entry.path(), child, out)?;
    }
    Ok(())
}

async fn list_dir_names(dir: PathBuf) -> Result<Vec<String>> {
    let mut rd = match tokio::fs::read_dir(&dir).await {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    while let Some(entry) = rd.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".tmp-") {
            out.push(name);
        }
    }
    Ok(out)
}

async fn write_stream<S, E>(u: &mut Upload, mut body: S) -> Result<()>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let Upload {
        file, hasher, size, ..
    } = u;
    let file = file
        .as_mut()
        .ok_or_else(|| StorageError::UploadUnknown(String::new()))?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
        file.write_all(&chunk).await?;
        hasher.update(&chunk);
        *size += chunk.len() as u64;
    }
    file.flush().await?;
    Ok(())
}

async fn hash_file(path: PathBuf, algorithm: Algorithm) -> Result<Digest> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let mut h = Digester::new(algorithm);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    })
    .await
    .map_err(io::Error::other)?
}

async fn write_file_synced(path: PathBuf, data: Bytes) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&data)?;
        f.sync_data()?;
        Ok::<_, io::Error>(())
    })
    .await
    .map_err(io::Error::other)??;
    Ok(())
}

/// Renames `tmp` to `dest` (creating parent directories) and makes the rename durable.
async fn rename_into_place(tmp: PathBuf, dest: PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let parent = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&parent)?;
        std::fs::rename(&tmp, &dest)?;
        std::fs::File::open(&parent)?.sync_all()?;
        Ok::<_, io::Error>(())
    })
    .await
    .map_err(io::Error::other)??;
    Ok(())
}

/// Writes a small metadata file through a temporary file in the data directory's uploads area.
async fn write_small_atomic(root: &Path, dest: PathBuf, data: Vec<u8>) -> Result<()> {
    let tmp = root
        .join("uploads")
        .join(format!("w-{}", uuid::Uuid::new_v4().simple()));
    write_file_synced(tmp.clone(), data.into()).await?;
    rename_into_place(tmp, dest).await
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(
        chunks: &[&'static [u8]],
    ) -> impl Stream<Item = std::result::Result<Bytes, io::Error>> + Unpin {
        futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn upload_commit_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"hello world");
        let up = s.start_upload("a/b").await.unwrap();
        s.append_upload("a/b", &up.id, Some(0), body(&[b"hello "]))
            .await
            .unwrap();
        assert!(matches!(
            s.append_upload("a/b", &up.id, Some(0), body(&[b"x"])).await,
            Err(StorageError::RangeInvalid { have: 6, got: 0 })
        ));
        assert!(s.blob_size(&d).await.unwrap().is_none());
        let size = s
            .finish_upload("a/b", &up.id, &d, body(&[b"world"]))
            .await
            .unwrap();
        assert_eq!(size, 11);
        assert_eq!(s.blob_size(&d).await.unwrap(), Some(11));

        let up = s.start_upload("a/b").await.unwrap();
        let wrong = Digest::sha256_of(b"other");
        assert!(matches!(
            s.finish_upload("a/b", &up.id, &wrong, body(&[b"bytes"]))
                .await,
            Err(StorageError::DigestMismatch { .. })
        ));
        assert!(s.blob_size(&wrong).await.unwrap().is_none());
        assert_eq!(s.uploads_in_progress(), 0);
        assert_eq!(
            std::fs::read_dir(dir.path().join("uploads"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn idle_sessions_expire_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let up = s.start_upload("a").await.unwrap();
        s.append_upload("a", &up.id, None, body(&[b"partial"]))
            .await
            .unwrap();
        assert_eq!(s.expire_uploads(Duration::from_secs(3600)).await, 0);
        assert_eq!(s.uploads_in_progress(), 1);
        assert_eq!(s.expire_uploads(Duration::ZERO).await, 1);
        assert_eq!(s.uploads_in_progress(), 0);
        assert!(matches!(
            s.upload_status("a", &up.id).await,
            Err(StorageError::UploadUnknown(_))
        ));
        assert_eq!(
            std::fs::read_dir(dir.path().join("uploads"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn second_process_cannot_open() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Storage::open(dir.path()).unwrap();
        assert!(matches!(
            Storage::open(dir.path()),
            Err(StorageError::Locked(_))
        ));
        assert!(matches!(
            gc_offline(dir.path(), Duration::ZERO),
            Err(StorageError::Locked(_))
        ));
    }

    #[tokio::test]
    async fn concurrent_pushes_of_one_blob() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Storage::open(dir.path()).unwrap());
        let data: &'static [u8] = &[7u8; 100_000];
        let d = Digest::sha256_of(data);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = s.clone();
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                let up = s.start_upload("x").await.unwrap();
                let chunks: Vec<&'static [u8]> = data.chunks(7000).collect();
                s.finish_upload("x", &up.id, &d, body(&chunks)).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 100_000);
        }
        assert_eq!(s.read_blob(&d).await.unwrap().as_ref(), data);
    }

    #[tokio::test]
    async fn manifests_tags_referrers_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let config = Bytes::from_static(b"{}");
        let layer = Bytes::from_static(b"layer");
        let cd = Digest::sha256_of(&config);
        let ld = Digest::sha256_of(&layer);
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":5}}]}}"#,
            manifest::OCI_MANIFEST
        );
        // Blobs missing: refused.
        assert!(matches!(
            s.put_manifest("r", Some("t"), None, m.clone().into(), None)
                .await,
            Err(StorageError::ManifestBlobUnknown(_))
        ));
        s.put_blob_bytes(&cd, config).await.unwrap();
        s.put_blob_bytes(&ld, layer).await.unwrap();
        let (md, _) = s
            .put_manifest("r", Some("t"), None, m.clone().into(), None)
            .await
            .unwrap();
        assert_eq!(s.resolve_tag("r", "t").await.unwrap(), md);
        assert_eq!(s.list_tags("r").await.unwrap(), vec!["t".to_string()]);
        assert_eq!(s.catalog().await.unwrap(), vec!["r".to_string()]);
        // A referrer.
        let a = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/x-sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{cd}","size":2}},"layers":[],"subject":{{"mediaType":"{}","digest":"{md}","size":{}}}}}"#,
            manifest::OCI_MANIFEST,
            manifest::OCI_MANIFEST,
            m.len()
        );
        let (ad, subject) = s
            .put_manifest("r", None, None, a.into(), None)
            .await
            .unwrap();
        assert_eq!(subject, Some(md.clone()));
        let refs = s.referrers("r", &md).await.unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].digest, ad.to_string());
        assert_eq!(refs[0].artifact_type.as_deref(), Some("application/x-sig"));

        // An orphan blob: spared while young, removed after.
        let orphan = Digest::sha256_of(b"orphan");
        s.put_blob_bytes(&orphan, Bytes::from_static(b"orphan"))
            .await
            .unwrap();
        let r = s.gc(Duration::from_secs(3600)).await.unwrap();
        assert_eq!((r.removed, r.spared_young), (0, 1));
        let r = s.gc(Duration::ZERO).await.unwrap();
        assert_eq!(r.removed, 1);
        assert!(s.blob_size(&orphan).await.unwrap().is_none());
        assert!(s.blob_size(&ld).await.unwrap().is_some());

        // Deleting the manifest drops its tag; gc then frees its layer.
        s.delete_manifest("r", &ad).await.unwrap();
        s.delete_manifest("r", &md).await.unwrap();
        assert!(s.resolve_tag("r", "t").await.is_err());
        assert!(s.referrers("r", &md).await.unwrap().is_empty());
        let r = s.gc(Duration::ZERO).await.unwrap();
        assert_eq!(r.live, 0);
        assert!(s.blob_size(&ld).await.unwrap().is_none());
    }
}
