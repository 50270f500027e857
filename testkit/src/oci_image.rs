//! Container images for the Linux container tests and benchmark, built without a daemon: a
//! busybox image (umoci, `busybox-static`), pushed to a Skiff registry with skopeo; and broken
//! variants — a missing entrypoint, a layer whose stored blob no longer matches its digest, layers
//! whose tar escapes the root (`../` paths, an absolute symlink followed by a file through it).
//!
//! The busybox layout is built once per machine and busybox binary, and shared ([`busybox`]);
//! the variants are small and built per call into the caller's directory. Every function takes the tools' paths ([`OciTools`]): finding them
//! (and skipping when one is missing) is the caller's business.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Media type of an OCI image manifest.
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of an uncompressed tar layer.
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// The page busybox `httpd -h /www` serves at `/` in the busybox image.
pub const INDEX_HTML: &str = "hello from busybox\n";

/// Paths of the external tools the fixture runs.
#[derive(Debug, Clone)]
pub struct OciTools {
    /// `umoci`.
    pub umoci: PathBuf,
    /// `skopeo`.
    pub skopeo: PathBuf,
    /// A statically linked `busybox` (Debian's `busybox-static`).
    pub busybox: PathBuf,
}

/// Why building or pushing an image failed.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A tool exited unsuccessfully.
    #[error("{what} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        what: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The layout on disk is not what was expected.
    #[error("image layout {0}")]
    Layout(String),
}

type Result<T, E = FixtureError> = std::result::Result<T, E>;

fn io<T>(what: impl FnOnce() -> String, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| FixtureError::Io {
        what: what(),
        source,
    })
}

/// An OCI image layout on disk holding one tagged image.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The layout directory (`oci-layout`, `index.json`, `blobs/`).
    pub dir: PathBuf,
    /// The tag of the image in the layout.
    pub tag: String,
    /// `sha256:…` of the image manifest.
    pub manifest_digest: String,
    /// `sha256:…` of each layer, in order.
    pub layers: Vec<String>,
}

impl Layout {
    /// `oci:DIR:TAG`, skopeo's name of the image.
    pub fn skopeo_ref(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }

    /// Reads the layout at `dir` and the manifest tagged `tag` in it.
    pub fn read(dir: &Path, tag: &str) -> Result<Layout> {
        let index = read_json(&dir.join("index.json"))?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let entry = manifests
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .ok_or_else(|| {
                FixtureError::Layout(format!("{}: no manifest tagged {tag}", dir.display()))
            })?;
        let manifest_digest = entry["digest"]
            .as_str()
            .ok_or_else(|| FixtureError::Layout(format!("{}: a digest", dir.display())))?
            .to_string();
        let manifest = read_json(&blob_path(dir, &manifest_digest)?)?;
        let layers = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(str::to_string))
            .collect();
        Ok(Layout {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            manifest_digest,
            layers,
        })
    }
}

/// What the image config says the container runs.
#[derive(Debug, Clone, Default)]
pub struct ImageSettings {
    /// `Entrypoint` (none when empty).
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
}

impl ImageSettings {
    /// The busybox image's defaults: `sh` with `PATH=/bin`, in `/`.
    pub fn busybox() -> ImageSettings {
        ImageSettings {
            entrypoint: Vec::new(),
            cmd: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin:/sbin:/usr/bin".into()],
            workdir: Some("/".into()),
        }
    }
}

fn run(cmd: &mut Command) -> Result<String> {
    let what = format!("{cmd:?}");
    let out = io(|| format!("running {what}"), cmd.output())?;
    if !out.status.success() {
        return Err(FixtureError::Command {
            what,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = io(
        || format!("reading {}", path.display()),
        std::fs::read(path),
    )?;
    serde_json::from_slice(&bytes)
        .map_err(|e| FixtureError::Layout(format!("{}: {e}", path.display())))
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf> {
    let (algo, hex) = digest
        .split_once(':')
        .ok_or_else(|| FixtureError::Layout(format!("{digest:?} is not ALGO:HEX")))?;
    Ok(layout.join("blobs").join(algo).join(hex))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Builds a busybox image in a new layout at `dir` tagged `tag`: `/bin/busybox` with a symlink
/// per applet (`busybox --list`), `/www/index.html` ([`INDEX_HTML`]), `/tmp`, `/etc`, and the
/// config of `settings`.
pub fn build_busybox(
    tools: &OciTools,
    dir: &Path,
    tag: &str,
    settings: &ImageSettings,
) -> Result<Layout> {
    let image = format!("{}:{tag}", dir.display());
    run(Command::new(&tools.umoci)
        .args(["init", "--layout"])
        .arg(dir))?;
    run(Command::new(&tools.umoci).args(["new", "--image", &image]))?;
    let bundle = dir.with_extension("bundle");
    run(Command::new(&tools.umoci)
        .args(["unpack", "--image", &image])
        .arg(&bundle))?;
    let rootfs = bundle.join("rootfs");
    let bin = rootfs.join("bin");
    for d in [
        &bin,
        &rootfs.join("www"),
        &rootfs.join("tmp"),
        &rootfs.join("etc"),
    ] {
        io(
            || format!("creating {}", d.display()),
            std::fs::create_dir_all(d),
        )?;
    }
    io(
        || "copying busybox".into(),
        std::fs::copy(&tools.busybox, bin.join("busybox")),
    )?;
    let applets = run(Command::new(&tools.busybox).arg("--list"))?;
    for applet in applets.lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        io(
            || format!("linking applet {applet}"),
            std::os::unix::fs::symlink("busybox", bin.join(applet)),
        )?;
    }
    io(
        || "writing /www/index.html".into(),
        std::fs::write(rootfs.join("www/index.html"), INDEX_HTML),
    )?;
    io(
        || "writing /etc/passwd".into(),
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
    )?;
    run(Command::new(&tools.umoci)
        .args(["repack", "--image", &image])
        .arg(&bundle))?;
    let _ = std::fs::remove_dir_all(&bundle);
    configure(tools, dir, tag, settings)?;
    Layout::read(dir, tag)
}

/// Sets the image config of `dir:tag` (umoci rewrites config and manifest).
pub fn configure(tools: &OciTools, dir: &Path, tag: &str, settings: &ImageSettings) -> Result<()> {
    let image = format!("{}:{tag}", dir.display());
    let mut cmd = Command::new(&tools.umoci);
    cmd.args(["config", "--image", &image, "--clear=config.entrypoint"]);
    cmd.arg("--clear=config.cmd");
    for e in &settings.entrypoint {
        cmd.args(["--config.entrypoint", e]);
    }
    for c in &settings.cmd {
        cmd.args(["--config.cmd", c]);
    }
    for e in &settings.env {
        cmd.args(["--config.env", e]);
    }
    if let Some(w) = &settings.workdir {
        cmd.args(["--config.workingdir", w]);
    }
    run(&mut cmd)?;
    Ok(())
}

/// Bumped when [`build_busybox`] changes what it builds, so a cached layout is not reused.
const BUSYBOX_FIXTURE_VERSION: &str = "1";

/// The busybox image with [`ImageSettings::busybox`], tagged `latest`: built once per machine
/// and busybox binary into `$TMPDIR/skiff-oci-busybox-KEY` (KEY from the binary's digest and
/// the fixture's version; built in a scratch directory and renamed into place, so concurrent
/// test processes share one complete copy), then remembered by this process.
pub fn busybox(tools: &OciTools) -> Result<Layout> {
    static CACHE: OnceLock<Mutex<Option<Layout>>> = OnceLock::new();
    let mut cached = CACHE
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(layout) = &*cached {
        return Ok(layout.clone());
    }
    let binary = io(
        || format!("reading {}", tools.busybox.display()),
        std::fs::read(&tools.busybox),
    )?;
    let mut key = Sha256::new();
    key.update(BUSYBOX_FIXTURE_VERSION.as_bytes());
    key.update(&binary);
    let key = hex::encode(key.finalize());
    let tmp = std::env::temp_dir();
    let home = tmp.join(format!("skiff-oci-busybox-{}", &key[..16]));
    let layout = match Layout::read(&home.join("layout"), "latest") {
        Ok(layout) => layout,
        Err(_) => {
            let scratch = io(
                || "a directory for the busybox image".into(),
                tempfile::Builder::new()
                    .prefix("skiff-oci-busybox-build-")
                    .tempdir_in(&tmp),
            )?;
            build_busybox(
                tools,
                &scratch.path().join("layout"),
                "latest",
                &ImageSettings::busybox(),
            )?;
            // Another process may have won the race: its copy is as good as this one.
            if std::fs::rename(scratch.path(), &home).is_ok() {
                let _ = scratch.keep();
            }
            Layout::read(&home.join("layout"), "latest")?
        }
    };
    *cached = Some(layout.clone());
    Ok(layout)
}

/// A copy of the busybox image at `dir` whose entrypoint is a file that does not exist.
pub fn missing_entrypoint(tools: &OciTools, dir: &Path) -> Result<Layout> {
    let base = busybox(tools)?;
    copy_dir(&base.dir, dir)?;
    let settings = ImageSettings {
        entrypoint: vec!["/bin/no-such-entrypoint".into()],
        cmd: Vec::new(),
        ..ImageSettings::busybox()
    };
    configure(tools, dir, &base.tag, &settings)?;
    Layout::read(dir, &base.tag)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    io(
        || format!("creating {}", to.display()),
        std::fs::create_dir_all(to),
    )?;
    for entry in io(
        || format!("reading {}", from.display()),
        std::fs::read_dir(from),
    )? {
        let entry = io(|| format!("reading {}", from.display()), entry)?;
        let target = to.join(entry.file_name());
        let kind = io(|| "a file type".into(), entry.file_type())?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            io(
                || format!("copying {}", entry.path().display()),
                std::fs::copy(entry.path(), &target),
            )?;
        }
    }
    Ok(())
}

/// One entry of a hand-built layer.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A directory.
    Dir(String),
    /// A regular file with its content.
    File(String, Vec<u8>),
    /// A symlink `path -> target`.
    Symlink(String, String),
}

/// An uncompressed tar of `entries`, written with the raw names given: unlike the `tar`
/// crate's path setters, `..` components and absolute names are kept (the escapes the
/// unpacker must refuse).
pub fn raw_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match entry {
            Entry::Dir(p) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                (p, &[])
            }
            Entry::File(p, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                (p, data)
            }
            Entry::Symlink(p, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                io(
                    || format!("link name {target}"),
                    header.set_link_name(target),
                )?;
                (p, &[])
            }
        };
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let slot = &mut header.as_old_mut().name;
        if name.len() >= slot.len() {
            return Err(FixtureError::Layout(format!(
                "tar name {name:?} is longer than {} bytes",
                slot.len() - 1
            )));
        }
        slot.fill(0);
        slot[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_cksum();
        io(
            || format!("tar entry {name}"),
            builder.append(&header, data),
        )?;
    }
    io(|| "finishing the tar".into(), builder.into_inner())
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Result<String> {
    let digest = sha256(bytes);
    let path = blob_path(dir, &digest)?;
    io(
        || format!("writing {}", path.display()),
        std::fs::write(&path, bytes),
    )?;
    Ok(digest)
}

/// A new layout at `dir` holding one image tagged `tag` made of `layers` (uncompressed tars)
/// with the config of `settings`, written by hand (no umoci: its repack would refuse or
/// normalise the escapes).
pub fn layout_of_layers(
    dir: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    settings: &ImageSettings,
) -> Result<Layout> {
    let blobs = dir.join("blobs/sha256");
    io(
        || format!("creating {}", blobs.display()),
        std::fs::create_dir_all(&blobs),
    )?;
    io(
        || "writing oci-layout".into(),
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#),
    )?;
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    for layer in layers {
        let digest = write_blob(dir, layer)?;
        layer_descs.push(json!({"mediaType": LAYER_TAR, "digest": digest, "size": layer.len()}));
        diff_ids.push(digest.clone());
        layer_digests.push(digest);
    }
    let mut config = json!({
        "architecture": host_architecture(),
        "os": "linux",
        "config": {"Env": settings.env},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if !settings.entrypoint.is_empty() {
        config["config"]["Entrypoint"] = json!(settings.entrypoint);
    }
    if !settings.cmd.is_empty() {
        config["config"]["Cmd"] = json!(settings.cmd);
    }
    if let Some(w) = &settings.workdir {
        config["config"]["WorkingDir"] = json!(w);
    }
    let config = config.to_string().into_bytes();
    let config_digest = write_blob(dir, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": config.len()},
        "layers": layer_descs,
    })
    .to_string()
    .into_bytes();
    let manifest_digest = write_blob(dir, &manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    io(
        || "writing index.json".into(),
        std::fs::write(dir.join("index.json"), index.to_string()),
    )?;
    Ok(Layout {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        manifest_digest,
        layers: layer_digests,
    })
}

/// The OCI name of this machine's architecture.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// How a layer tries to write outside the container's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// A file named `../../…/TARGET/dotdot`.
    DotDot,
    /// A symlink `link -> TARGET` (absolute), then a file `link/symlink` through it.
    AbsoluteSymlink,
}

/// The file an [`Escape`] layer aims at inside `target` (an absolute directory on the host):
/// it must not exist after the image was refused.
pub fn escape_victim(target: &Path, escape: Escape) -> PathBuf {
    target.join(match escape {
        Escape::DotDot => "dotdot",
        Escape::AbsoluteSymlink => "symlink",
    })
}

/// A layout at `dir` tagged `tag` whose single layer tries to write [`escape_victim`] of
/// `target` (an absolute host directory), besides an innocent `/etc/ok` file.
pub fn escaping(dir: &Path, tag: &str, target: &Path, escape: Escape) -> Result<Layout> {
    let target = target
        .to_str()
        .ok_or_else(|| FixtureError::Layout(format!("{} is not UTF-8", target.display())))?;
    let rel = target.trim_start_matches('/');
    let mut entries = vec![
        Entry::Dir("etc/".into()),
        Entry::File("etc/ok".into(), b"ok\n".to_vec()),
    ];
    match escape {
        Escape::DotDot => entries.push(Entry::File(
            format!("{}{rel}/dotdot", "../".repeat(12)),
            b"escaped through ..\n".to_vec(),
        )),
        Escape::AbsoluteSymlink => {
            entries.push(Entry::Symlink("link".into(), format!("/{rel}")));
            entries.push(Entry::File(
                "link/symlink".into(),
                b"escaped through a symlink\n".to_vec(),
            ));
        }
    }
    layout_of_layers(
        dir,
        tag,
        &[raw_tar(&entries)?],
        &ImageSettings {
            cmd: vec!["/bin/sh".into()],
            ..ImageSettings::default()
        },
    )
}

/// Pushes `layout` to the registry at `registry` (`HOST:PORT`, plain HTTP) as `name` (`REPO:TAG`)
/// with skopeo, authenticating with the registry's `token` when given; returns the reference
/// `HOST:PORT/NAME`.
pub fn push(
    tools: &OciTools,
    layout: &Layout,
    registry: &str,
    name: &str,
    token: Option<&str>,
) -> Result<String> {
    let reference = format!("{registry}/{name}");
    let mut cmd = Command::new(&tools.skopeo);
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if let Some(token) = token {
        cmd.arg("--dest-creds").arg(format!("skiff:{token}"));
    }
    cmd.arg(layout.skopeo_ref())
        .arg(format!("docker://{reference}"));
    run(&mut cmd)?;
    Ok(reference)
}

/// The layer digests of the manifest the registry holds for `reference` (`HOST:PORT/NAME:TAG`,
/// plain HTTP), read with `skopeo inspect --raw`: skopeo compresses uncompressed layers on the
/// way in, so these are not the layout's digests.
pub fn pushed_layers(tools: &OciTools, reference: &str) -> Result<Vec<String>> {
    let raw = run(Command::new(&tools.skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")))?;
    let manifest: serde_json::Value = serde_json::from_str(&raw)
        .map_err(|e| FixtureError::Layout(format!("the manifest of {reference}: {e}")))?;
    Ok(manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["digest"].as_str().map(str::to_string))
        .collect())
}

/// Flips the bytes of the blob `digest` in the data directory `store` of a `skiff registry`
/// (`STORE/blobs/ALGO/XX/HEX`), keeping its length, so the registry serves content that no
/// longer matches its digest.
pub fn tamper_registry_blob(store: &Path, digest: &str) -> Result<()> {
    let (algo, hex) = digest
        .split_once(':')
        .ok_or_else(|| FixtureError::Layout(format!("{digest:?} is not ALGO:HEX")))?;
    let path = store
        .join("blobs")
        .join(algo)
        .join(hex.get(..2).unwrap_or(hex))
        .join(hex);
    let mut bytes = io(
        || format!("reading {}", path.display()),
        std::fs::read(&path),
    )?;
    for b in &mut bytes {
        *b ^= 0xff;
    }
    io(
        || format!("writing {}", path.display()),
        std::fs::write(&path, bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_tar_keeps_escaping_names_and_absolute_link_targets() {
        let tar = raw_tar(&[
            Entry::File("../../x".into(), b"x".to_vec()),
            Entry::Symlink("l".into(), "/etc".into()),
        ])
        .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(Vec<u8>, Option<Vec<u8>>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path_bytes().into_owned(),
                    e.link_name_bytes().map(|l| l.into_owned()),
                )
            })
            .collect();
        assert_eq!(entries[0].0, b"../../x");
        let mut again = tar::Archive::new(tar.as_slice());
        for e in again.entries().unwrap() {
            let header = e.unwrap().header().clone();
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        }
        assert_eq!(entries[1], (b"l".to_vec(), Some(b"/etc".to_vec())));
    }

    #[test]
    fn a_hand_built_layout_reads_back_with_its_digests() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("outside");
        let layout = escaping(&dir.path().join("l"), "v1", &target, Escape::DotDot).unwrap();
        let again = Layout::read(&layout.dir, "v1").unwrap();
        assert_eq!(again.manifest_digest, layout.manifest_digest);
        assert_eq!(again.layers, layout.layers);
        for digest in [&layout.manifest_digest, &layout.layers[0]] {
            let bytes = std::fs::read(blob_path(&layout.dir, digest).unwrap()).unwrap();
            assert_eq!(&sha256(&bytes), digest);
        }
        assert!(Layout::read(&layout.dir, "v2").is_err());
    }
}
