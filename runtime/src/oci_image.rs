//! OCI images for the Linux container backend, apart from pulling: layer tars unpacked into a
//! root filesystem shared read-only by the containers of an image, each container's writable
//! root prepared from it, and the image config the runtime builds `config.json` from.
//!
//! Every path of a layer is resolved inside the root through `cap-std` (as `openat2` with
//! `RESOLVE_BENEATH` does): an entry with a `..` component, or one that would reach outside the
//! root through a symlink (absolute or relative) or a hard link, refuses the whole image, and
//! nothing is written outside the root. Absolute entry names are taken relative to the root, as
//! the OCI image spec says. OCI whiteouts (`.wh.NAME`) and opaque directories (`.wh..wh..opq`)
//! apply across layers; device nodes and FIFOs are skipped (with a log line); ownership is
//! kept when the process runs as root.
//!
//! Layout of an image store directory: `STORE/<algo>-<hex>/{rootfs/,config.json}` per manifest
//! digest, built in `STORE/tmp-*` and renamed into place, so a half-unpacked image is never seen
//! and two unpacks of one image race harmlessly.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _, Permissions, PermissionsExt as _};
use serde::{Deserialize, Serialize};

/// OCI layer, uncompressed tar.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip-compressed tar.
pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd-compressed tar (not supported).
pub const LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 layer, gzip-compressed tar.
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker schema 2 layer, uncompressed tar.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const CONFIG_FILE: &str = "config.json";
const ROOTFS_DIR: &str = "rootfs";

/// Errors from unpacking an image or preparing a container's root.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An entry of a layer is refused (escape, `..`, a path that cannot be resolved inside the
    /// root); the image is not unpacked.
    #[error("layer {layer}: entry {entry:?} refused: {reason}")]
    Refused {
        /// The layer digest.
        layer: String,
        /// The entry's name as the tar has it.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The layer's media type cannot be unpacked.
    #[error("layer {layer}: media type {media_type:?} is not supported")]
    MediaType {
        /// The layer digest.
        layer: String,
        /// Its media type.
        media_type: String,
    },
    /// The layer is not a readable tar.
    #[error("layer {layer}: {source}")]
    Layer {
        /// The layer digest.
        layer: String,
        /// What went wrong.
        source: io::Error,
    },
    /// The image config is not valid JSON of the expected shape.
    #[error("image config: {0}")]
    Config(#[from] serde_json::Error),
    /// Local file system failure outside any layer entry.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

/// Result of this module.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A layer blob on disk, as the registry client cached it.
#[derive(Debug, Clone)]
pub struct LayerFile {
    /// The layer digest (named in errors).
    pub digest: String,
    /// Its media type (decides the decompression).
    pub media_type: String,
    /// The blob.
    pub path: PathBuf,
}

/// What the runtime needs from an image config (`config` of an OCI or Docker image config) to
/// build a container's `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, `NAME=value` each.
    pub env: Vec<String>,
    /// `WorkingDir`, if set.
    pub working_dir: Option<String>,
    /// `User` (`uid`, `uid:gid`, `name`, …), if set.
    pub user: Option<String>,
    /// `ExposedPorts` keys (`80/tcp`, …), sorted.
    pub exposed_ports: Vec<String>,
}

#[derive(Deserialize)]
struct RawImageConfig {
    #[serde(default)]
    config: Option<RawRunConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

impl ImageConfig {
    /// Reads the run config out of an image config blob (OCI or Docker; both have the same
    /// `config` object).
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig> {
        let raw: RawImageConfig = serde_json::from_slice(bytes)?;
        let Some(c) = raw.config else {
            return Ok(ImageConfig::default());
        };
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: non_empty(c.working_dir),
            user: non_empty(c.user),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
        })
    }
}

/// An image unpacked in an image store: the shared read-only root and the config.
#[derive(Debug, Clone)]
pub struct UnpackedImage {
    /// `STORE/<algo>-<hex>`, the directory given to the runtime as `Image::Path`.
    pub dir: PathBuf,
    /// `dir/rootfs`: the lower directory every container of the image starts from. Never
    /// write into it.
    pub rootfs: PathBuf,
    /// The image's run config.
    pub config: ImageConfig,
}

impl UnpackedImage {
    /// Opens an image unpacked before by [`unpack_image`] (`dir` is [`UnpackedImage::dir`]).
    pub fn open(dir: &Path) -> Result<UnpackedImage> {
        let config_path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&config_path).map_err(io_err(&config_path))?;
        Ok(UnpackedImage {
            dir: dir.to_path_buf(),
            rootfs: dir.join(ROOTFS_DIR),
            config: serde_json::from_slice(&bytes)?,
        })
    }
}

/// The directory of the image with manifest digest `manifest_digest` in `store`.
pub fn image_dir(store: &Path, manifest_digest: &str) -> PathBuf {
    store.join(manifest_digest.replace(':', "-"))
}

/// Unpacks an image into `store` (once per manifest digest: an image already there is opened).
/// `config` is the image config blob, `layers` bottom first. Blocking: call it from
/// `spawn_blocking`.
pub fn unpack_image(
    store: &Path,
    manifest_digest: &str,
    config: &[u8],
    layers: &[LayerFile],
) -> Result<UnpackedImage> {
    let dir = image_dir(store, manifest_digest);
    if dir.join(CONFIG_FILE).is_file() {
        return UnpackedImage::open(&dir);
    }
    let image_config = ImageConfig::parse(config)?;
    std::fs::create_dir_all(store).map_err(io_err(store))?;
    let tmp = tempfile::Builder::new()
        .prefix("tmp-")
        .tempdir_in(store)
        .map_err(io_err(store))?;
    let rootfs = tmp.path().join(ROOTFS_DIR);
    std::fs::create_dir(&rootfs).map_err(io_err(&rootfs))?;
    unpack_layers(&rootfs, layers)?;
    let config_path = tmp.path().join(CONFIG_FILE);
    std::fs::write(&config_path, serde_json::to_vec(&image_config)?)
        .map_err(io_err(&config_path))?;
    let tmp_path = tmp.keep();
    match std::fs::rename(&tmp_path, &dir) {
        Ok(()) => {}
        // Another unpack of the same image won the race: keep its copy.
        Err(_) if dir.join(CONFIG_FILE).is_file() => {
            let _ = make_writable_and_remove(&tmp_path);
        }
        Err(e) => {
            let _ = make_writable_and_remove(&tmp_path);
            return Err(io_err(&dir)(e));
        }
    }
    Ok(UnpackedImage {
        rootfs: dir.join(ROOTFS_DIR),
        dir,
        config: image_config,
    })
}

/// Removes a tree that may hold read-only directories (an unpacked root, as non-root).
fn make_writable_and_remove(path: &Path) -> io::Result<()> {
    fn walk(p: &Path) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(p)?;
        if meta.is_dir() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))?;
            for e in std::fs::read_dir(p)? {
                walk(&e?.path())?;
            }
        }
        Ok(())
    }
    let _ = walk(path);
    std::fs::remove_dir_all(path)
}

/// Whether the process runs with effective uid 0.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Unpacks `layers` (bottom first) into the existing directory `root`, applying whiteouts.
/// Blocking.
pub fn unpack_layers(root: &Path, layers: &[LayerFile]) -> Result<()> {
    let dir = Dir::open_ambient_dir(root, ambient_authority()).map_err(io_err(root))?;
    let mut state = Unpacker {
        root: dir,
        root_path: root.to_path_buf(),
        chown: is_root(),
        dir_modes: BTreeMap::new(),
    };
    for layer in layers {
        let file = std::fs::File::open(&layer.path).map_err(io_err(&layer.path))?;
        state.layer(&layer.digest, &layer.media_type, BufReader::new(file))?;
    }
    state.finish();
    Ok(())
}

/// Unpacks one layer from a reader into `root` (for tests and callers holding a stream).
pub fn unpack_layer_from(
    root: &Path,
    digest: &str,
    media_type: &str,
    reader: impl Read,
) -> Result<()> {
    let dir = Dir::open_ambient_dir(root, ambient_authority()).map_err(io_err(root))?;
    let mut state = Unpacker {
        root: dir,
        root_path: root.to_path_buf(),
        chown: is_root(),
        dir_modes: BTreeMap::new(),
    };
    state.layer(digest, media_type, BufReader::new(reader))?;
    state.finish();
    Ok(())
}

struct Unpacker {
    root: Dir,
    root_path: PathBuf,
    chown: bool,
    /// Directory modes, applied after every layer so that a read-only directory can still
    /// receive the entries of later layers.
    dir_modes: BTreeMap<PathBuf, u32>,
}

/// The path of an entry inside the root: leading `/` and `.` dropped, `..` refused.
fn normalise(p: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => return Err("the path has a `..` component".to_string()),
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

impl Unpacker {
    fn layer(
        &mut self,
        digest: &str,
        media_type: &str,
        mut reader: impl io::BufRead,
    ) -> Result<()> {
        let layer_err = |source| ImageError::Layer {
            layer: digest.to_string(),
            source,
        };
        if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
            return Err(ImageError::MediaType {
                layer: digest.to_string(),
                media_type: media_type.to_string(),
            });
        }
        let known = [
            LAYER_TAR,
            LAYER_TAR_GZIP,
            DOCKER_LAYER_TAR,
            DOCKER_LAYER_TAR_GZIP,
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        ];
        if !media_type.is_empty() && !known.contains(&media_type) {
            return Err(ImageError::MediaType {
                layer: digest.to_string(),
                media_type: media_type.to_string(),
            });
        }
        // Tell gzip from plain tar by the magic number: registries mislabel layers often enough.
        let gzip = reader
            .fill_buf()
            .map_err(layer_err)?
            .starts_with(&[0x1f, 0x8b]);
        if gzip {
            self.entries(digest, flate2::bufread::MultiGzDecoder::new(reader))
        } else {
            self.entries(digest, reader)
        }
    }

    fn entries(&mut self, digest: &str, reader: impl Read) -> Result<()> {
        let layer_err = |source| ImageError::Layer {
            layer: digest.to_string(),
            source,
        };
        let mut archive = tar::Archive::new(reader);
        let mut written: HashSet<PathBuf> = HashSet::new();
        for entry in archive.entries().map_err(layer_err)? {
            let mut entry = entry.map_err(layer_err)?;
            let raw = entry.path().map_err(layer_err)?.into_owned();
            let refused = |reason: String| ImageError::Refused {
                layer: digest.to_string(),
                entry: raw.display().to_string(),
                reason,
            };
            let path = normalise(&raw).map_err(refused)?;
            let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
                continue; // the root itself
            };
            let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
            let entry_io = |e: io::Error| refused(e.to_string());
            let name_str = name.to_string_lossy();
            if name_str == OPAQUE {
                let pdir = self.open_parent(&parent).map_err(entry_io)?;
                for child in pdir.entries().map_err(entry_io)? {
                    let child = child.map_err(entry_io)?;
                    if written.contains(&parent.join(child.file_name())) {
                        continue;
                    }
                    remove_entry(&pdir, Path::new(&child.file_name())).map_err(entry_io)?;
                    let gone = parent.join(child.file_name());
                    self.dir_modes.retain(|p, _| !p.starts_with(&gone));
                }
                continue;
            }
            if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
                if hidden.is_empty() || hidden == "." || hidden == ".." {
                    return Err(refused("invalid whiteout".to_string()));
                }
                let pdir = match self.root.open_dir(non_empty(&parent)) {
                    Ok(d) => d,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(entry_io(e)),
                };
                match remove_entry(&pdir, Path::new(hidden)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(entry_io(e)),
                }
                self.dir_modes
                    .retain(|p, _| !p.starts_with(parent.join(hidden)));
                continue;
            }
            let pdir = self.open_parent(&parent).map_err(entry_io)?;
            let name = Path::new(&name);
            let header = entry.header();
            let kind = header.entry_type();
            let mode = header.mode().map_err(layer_err)? & 0o7777;
            let (uid, gid) = if self.chown {
                (
                    header.uid().map_err(layer_err)?,
                    header.gid().map_err(layer_err)?,
                )
            } else {
                (0, 0)
            };
            let existing = pdir.symlink_metadata(name).ok();
            if let Some(m) = &existing
                && !(m.is_dir() && kind.is_dir())
            {
                remove_entry(&pdir, name).map_err(entry_io)?;
                self.dir_modes.retain(|p, _| !p.starts_with(&path));
            }
            match kind {
                tar::EntryType::Directory => {
                    if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                        pdir.create_dir(name).map_err(entry_io)?;
                    }
                    if self.chown {
                        // A real descriptor (`open_dir`'s is `O_PATH`, which fchown refuses).
                        let d = pdir
                            .open_with(name, OpenOptions::new().read(true))
                            .map_err(entry_io)?;
                        std::os::unix::fs::fchown(&d, to_id(uid), to_id(gid)).map_err(entry_io)?;
                    }
                    self.dir_modes.insert(path.clone(), mode);
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut opts = OpenOptions::new();
                    opts.write(true).create_new(true).mode(0o600);
                    let mut file = pdir.open_with(name, &opts).map_err(entry_io)?;
                    io::copy(&mut entry, &mut file).map_err(entry_io)?;
                    if self.chown {
                        std::os::unix::fs::fchown(&file, to_id(uid), to_id(gid))
                            .map_err(entry_io)?;
                    }
                    // After chown, which clears set-id bits.
                    file.set_permissions(Permissions::from_mode(mode))
                        .map_err(entry_io)?;
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(layer_err)?
                        .ok_or_else(|| refused("symlink without a target".to_string()))?;
                    pdir.symlink_contents(&*target, name).map_err(entry_io)?;
                    if self.chown {
                        let abs = self.root_path.join(&path);
                        std::os::unix::fs::lchown(&abs, to_id(uid), to_id(gid))
                            .map_err(entry_io)?;
                    }
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(layer_err)?
                        .ok_or_else(|| refused("hard link without a target".to_string()))?;
                    let target = normalise(&target).map_err(refused)?;
                    self.root
                        .hard_link(&target, &pdir, name)
                        .map_err(|e| refused(format!("hard link to {target:?}: {e}")))?;
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    tracing::info!(
                        layer = digest,
                        entry = %raw.display(),
                        "device node or fifo in an image layer skipped"
                    );
                    continue;
                }
                other => {
                    tracing::debug!(layer = digest, entry = %raw.display(), kind = ?other, "tar entry of an unhandled type skipped");
                    continue;
                }
            }
            written.insert(path);
        }
        Ok(())
    }

    /// Opens the entry's parent directory inside the root, creating it if needed.
    fn open_parent(&self, parent: &Path) -> io::Result<Dir> {
        if parent.as_os_str().is_empty() {
            return self.root.try_clone();
        }
        match self.root.open_dir(parent) {
            Ok(d) => Ok(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.root.create_dir_all(parent)?;
                self.root.open_dir(parent)
            }
            Err(e) => Err(e),
        }
    }

    /// Applies the directory modes, deepest first.
    fn finish(&mut self) {
        for (path, mode) in std::mem::take(&mut self.dir_modes).into_iter().rev() {
            if let Err(e) = self
                .root
                .set_permissions(&path, Permissions::from_mode(mode))
            {
                tracing::debug!(path = %path.display(), error = %e, "directory mode not applied");
            }
        }
    }
}

fn non_empty(p: &Path) -> &Path {
    if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    }
}

fn to_id(id: u64) -> Option<u32> {
    u32::try_from(id).ok()
}

/// Removes a file, symlink or directory tree named `name` in `dir`, without following a
/// symlink at `name`.
fn remove_entry(dir: &Dir, name: &Path) -> io::Result<()> {
    let meta = dir.symlink_metadata(name)?;
    if meta.is_dir() {
        // A read-only directory left by a previous layer (modes are applied at the end only
        // within one unpack, but a store may hold such trees): make it writable first.
        let _ = dir.set_permissions(name, Permissions::from_mode(0o700));
        dir.remove_dir_all(name)
    } else {
        dir.remove_file(name)
    }
}

/// A container's own root filesystem, on top of its image's shared root.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerRootfs {
    /// An overlay mount: the image root as lower directory, the container's changes in
    /// `upper`. Unmount with [`release_container_rootfs`].
    Overlay {
        /// The mount point: the container's root.
        merged: PathBuf,
        /// The writable layer.
        upper: PathBuf,
        /// overlayfs's work directory.
        work: PathBuf,
    },
    /// A private copy of the image root.
    Copy {
        /// The container's root.
        rootfs: PathBuf,
    },
}

impl ContainerRootfs {
    /// The directory to give the OCI runtime as `root.path`.
    pub fn path(&self) -> &Path {
        match self {
            ContainerRootfs::Overlay { merged, .. } => merged,
            ContainerRootfs::Copy { rootfs } => rootfs,
        }
    }
}

/// How [`prepare_container_rootfs`] may build a container's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsMode {
    /// overlayfs when running as root and the mount succeeds, else a copy.
    Auto,
    /// Always a copy.
    Copy,
}

/// Prepares the writable root of one container in `dir` (created; one directory per
/// container): an overlay over `image.rootfs` when allowed and possible, else a copy of it.
/// Blocking.
pub fn prepare_container_rootfs(
    image: &UnpackedImage,
    dir: &Path,
    mode: RootfsMode,
) -> Result<ContainerRootfs> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    if mode == RootfsMode::Auto && is_root() {
        let (merged, upper, work) = (dir.join("merged"), dir.join("upper"), dir.join("work"));
        for d in [&merged, &upper, &work] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.rootfs.display(),
            upper.display(),
            work.display()
        );
        let mounted = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&merged)
            .output();
        match mounted {
            Ok(out) if out.status.success() => {
                return Ok(ContainerRootfs::Overlay {
                    merged,
                    upper,
                    work,
                });
            }
            Ok(out) => tracing::info!(
                error = %String::from_utf8_lossy(&out.stderr).trim(),
                "overlay mount refused; copying the image root instead"
            ),
            Err(e) => {
                tracing::info!(error = %e, "mount not available; copying the image root instead")
            }
        }
        for d in [&merged, &upper, &work] {
            let _ = std::fs::remove_dir(d);
        }
    }
    let rootfs = dir.join(ROOTFS_DIR);
    copy_tree(&image.rootfs, &rootfs).map_err(io_err(&rootfs))?;
    Ok(ContainerRootfs::Copy { rootfs })
}

/// Undoes [`prepare_container_rootfs`]: unmounts an overlay and removes the container's
/// directory `dir`.
pub fn release_container_rootfs(rootfs: &ContainerRootfs, dir: &Path) -> Result<()> {
    if let ContainerRootfs::Overlay { merged, .. } = rootfs {
        let out = Command::new("umount")
            .arg(merged)
            .output()
            .map_err(io_err(merged))?;
        if !out.status.success() {
            return Err(ImageError::Io {
                path: merged.clone(),
                source: io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            });
        }
    }
    match make_writable_and_remove(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Copies a tree the node unpacked itself: symlinks as symlinks, modes kept, ownership kept
/// when root; hard links become separate files.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let root = is_root();
    fn walk(from: &Path, to: &Path, root: bool) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(to)?;
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
            for e in std::fs::read_dir(from)? {
                let e = e?;
                walk(&e.path(), &to.join(e.file_name()), root)?;
            }
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
        } else if ft.is_file() {
            std::fs::copy(from, to)?;
        } else {
            return Ok(());
        }
        if root {
            std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
        }
        if !ft.is_symlink() {
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        Ok(())
    }
    walk(from, to, root)
}

#[cfg(test)]
mod tests;
