//! Compilation cache: compiled artifacts kept in memory and on disk, keyed by the sha256 of
//! the wasm bytes and the engine's compatibility fingerprint. Only artifacts this node compiled
//! itself are deserialized: each file carries an HMAC made with a node-private key, checked
//! before `deserialize` (the one place this crate uses `unsafe`).
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::Module;
use wasmtime::component::Component;

use crate::error::{Error, Result, io_err};

/// How a binary was recognised from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BinaryKind {
    Component,
    Module,
}

/// A compiled binary.
#[derive(Clone)]
pub(crate) enum Compiled {
    Component(Component),
    Module(Module),
}

/// Counters of the compilation cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Served from the in-memory table.
    pub memory_hits: u64,
    /// Loaded from a verified artifact on disk.
    pub disk_hits: u64,
    /// Compiled from wasm.
    pub compiled: u64,
    /// Artifacts on disk refused (bad HMAC, incompatible, unreadable) and recompiled.
    pub rejected: u64,
}

/// The sha256 of a wasm binary.
pub(crate) type Digest32 = [u8; 32];

const MAX_MEMORY_ENTRIES: usize = 1024;

pub(crate) struct Cache {
    engine: Engine,
    dir: PathBuf,
    key: [u8; 32],
    memory: Mutex<HashMap<Digest32, Compiled>>,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    compiled: AtomicU64,
    rejected: AtomicU64,
}

/// Recognises a wasm binary from its preamble.
pub(crate) fn detect(bytes: &[u8]) -> std::result::Result<BinaryKind, String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let what = if bytes.is_empty() {
            "the file is empty".to_string()
        } else if bytes.starts_with(b"\x7fELF") {
            "found an ELF executable".to_string()
        } else if bytes.starts_with(b"(module") || bytes.starts_with(b"(component") {
            "found wasm text format; compile it to binary first".to_string()
        } else {
            let n = bytes.len().min(4);
            format!("missing the \\0asm magic; starts with {:02x?}", &bytes[..n])
        };
        return Err(what);
    }
    match &bytes[4..8] {
        [1, 0, 0, 0] => Ok(BinaryKind::Module),
        [_, _, 1, 0] => Ok(BinaryKind::Component),
        other => Err(format!("unknown wasm binary version {other:02x?}")),
    }
}

/// A `Hasher` feeding sha256, to fingerprint the engine's compatibility hash stably.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Hex fingerprint of everything that makes a compiled artifact loadable by `engine`.
pub(crate) fn engine_fingerprint(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(&h.0.finalize()[..12])
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = Sha256::new();
    inner.update(ipad);
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(opad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl Cache {
    /// Opens (creating) the node-private cache under `root`.
    pub(crate) fn open(engine: Engine, root: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(root).map_err(io_err("creating cache directory", root))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("restricting cache directory", root))?;
        let key_path = root.join("hmac.key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&k);
                key
            }
            _ => {
                let key: [u8; 32] = rand::random();
                write_atomic(&key_path, &key, 0o600)
                    .map_err(io_err("writing cache key", &key_path))?;
                key
            }
        };
        let dir = root.join(engine_fingerprint(&engine));
        std::fs::create_dir_all(&dir).map_err(io_err("creating cache directory", &dir))?;
        Ok(Cache {
            engine,
            dir,
            key,
            memory: Mutex::new(HashMap::new()),
            memory_hits: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            compiled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            compiled: self.compiled.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// Directory holding this engine's artifacts.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn artifact_path(&self, digest: &Digest32, kind: BinaryKind) -> PathBuf {
        let ext = match kind {
            BinaryKind::Component => "component",
            BinaryKind::Module => "module",
        };
        self.dir
            .join(format!("{}.{ext}.cwasm", hex::encode(digest)))
    }

    fn mac(&self, digest: &Digest32, kind: BinaryKind, artifact: &[u8]) -> [u8; 32] {
        let tag: &[u8] = match kind {
            BinaryKind::Component => b"component",
            BinaryKind::Module => b"module",
        };
        hmac(&self.key, &[tag, digest, artifact])
    }

    /// Compiles `bytes` or loads them from the cache. Blocking: call from `spawn_blocking`.
    pub(crate) fn load(&self, container: &str, bytes: &[u8]) -> Result<(Compiled, Digest32)> {
        let kind = detect(bytes).map_err(|detail| Error::NotWasm {
            container: container.to_string(),
            detail,
        })?;
        let digest: Digest32 = Sha256::digest(bytes).into();
        if let Some(c) = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
        {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((c.clone(), digest));
        }
        let path = self.artifact_path(&digest, kind);
        let compiled = match self.load_verified(&path, &digest, kind) {
            Some(c) => {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                c
            }
            None => {
                let c = self.compile(container, kind, bytes)?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                self.store(&path, &digest, kind, &c);
                c
            }
        };
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if memory.len() >= MAX_MEMORY_ENTRIES
            && let Some(k) = memory.keys().next().copied()
        {
            memory.remove(&k);
        }
        memory.insert(digest, compiled.clone());
        Ok((compiled, digest))
    }

    fn compile(&self, container: &str, kind: BinaryKind, bytes: &[u8]) -> Result<Compiled> {
        let err = |e: wasmtime::Error| Error::Compile {
            container: container.to_string(),
            detail: format!("{e:#}"),
        };
        Ok(match kind {
            BinaryKind::Component => {
                Compiled::Component(Component::new(&self.engine, bytes).map_err(err)?)
            }
            BinaryKind::Module => Compiled::Module(Module::new(&self.engine, bytes).map_err(err)?),
        })
    }

    fn store(&self, path: &Path, digest: &Digest32, kind: BinaryKind, c: &Compiled) {
        let serialized = match c {
            Compiled::Component(c) => c.serialize(),
            Compiled::Module(m) => m.serialize(),
        };
        let artifact = match serialized {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serialize compiled artifact");
                return;
            }
        };
        let mac = self.mac(digest, kind, &artifact);
        let mut file = Vec::with_capacity(32 + artifact.len());
        file.extend_from_slice(&mac);
        file.extend_from_slice(&artifact);
        if let Err(e) = write_atomic(path, &file, 0o600) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compiled artifact");
        }
    }

    fn load_verified(&self, path: &Path, digest: &Digest32, kind: BinaryKind) -> Option<Compiled> {
        let file = match std::fs::read(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read compiled artifact");
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        if file.len() < 32 {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let (mac, artifact) = file.split_at(32);
        if !ct_eq(mac, &self.mac(digest, kind, artifact)) {
            tracing::warn!(path = %path.display(), "refusing compiled artifact not made by this node");
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let loaded = match kind {
            // SAFETY: `artifact` was produced by `Component::serialize` on this node with an
            // engine of the same compatibility fingerprint (the directory is keyed by it) and
            // is authenticated by an HMAC whose key never leaves this node's private cache
            // directory, so it is a trusted wasmtime artifact as `deserialize` requires.
            BinaryKind::Component => {
                unsafe { Component::deserialize(&self.engine, artifact) }.map(Compiled::Component)
            }
            // SAFETY: as above, for `Module::serialize` output.
            BinaryKind::Module => {
                unsafe { Module::deserialize(&self.engine, artifact) }.map(Compiled::Module)
            }
        };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot load compiled artifact");
                self.rejected.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kinds_and_garbage() {
        assert_eq!(detect(b"\0asm\x01\0\0\0"), Ok(BinaryKind::Module));
        assert_eq!(detect(b"\0asm\x0d\0\x01\0"), Ok(BinaryKind::Component));
        assert!(detect(b"").unwrap_err().contains("empty"));
        assert!(
            detect(b"\x7fELF\x02\x01\x01\0")
                .unwrap_err()
                .contains("ELF")
        );
        assert!(detect(b"hello world").unwrap_err().contains("magic"));
    }

    #[test]
    fn hmac_matches_rfc4231_shape() {
        // HMAC-SHA256 with a 32-byte key of 0x0b and "Hi There" (RFC 4231 case 1 uses a
        // 20-byte key; zero-padding to the block size makes a 32-byte key of 20 0x0b bytes
        // followed by zeros equivalent).
        let mut key = [0u8; 32];
        key[..20].copy_from_slice(&[0x0b; 20]);
        let mac = hmac(&key, &[b"Hi ", b"There"]);
        assert_eq!(
            hex::encode(mac),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }
}
