//! Unpacking crafted layers: whiteouts, opaque directories, links, escapes refused.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use super::*;

/// A tar layer built entry by entry.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    /// Writes the raw name into the header, bypassing the tar crate's own `..` checks.
    fn raw(mut self, mut h: tar::Header, name: &str, link: Option<&str>, data: &[u8]) -> Layer {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            gnu.linkname = [0; 100];
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(self, name: &str, data: &str) -> Layer {
        self.raw(
            Layer::header(tar::EntryType::Regular, 0o644),
            name,
            None,
            data.as_bytes(),
        )
    }

    fn exe(self, name: &str, data: &str) -> Layer {
        self.raw(
            Layer::header(tar::EntryType::Regular, 0o755),
            name,
            None,
            data.as_bytes(),
        )
    }

    fn dir(self, name: &str) -> Layer {
        self.raw(
            Layer::header(tar::EntryType::Directory, 0o755),
            name,
            None,
            b"",
        )
    }

    fn symlink(self, name: &str, target: &str) -> Layer {
        self.raw(
            Layer::header(tar::EntryType::Symlink, 0o777),
            name,
            Some(target),
            b"",
        )
    }

    fn hardlink(self, name: &str, target: &str) -> Layer {
        self.raw(
            Layer::header(tar::EntryType::Link, 0o644),
            name,
            Some(target),
            b"",
        )
    }

    fn device(self, name: &str) -> Layer {
        self.raw(Layer::header(tar::EntryType::Char, 0o600), name, None, b"")
    }

    fn tar(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }

    fn gzip(self) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&self.tar()).unwrap();
        enc.finish().unwrap()
    }
}

fn unpack(root: &Path, layers: Vec<Vec<u8>>) -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<LayerFile> = layers
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            let path = dir.path().join(format!("layer{i}"));
            std::fs::write(&path, bytes).unwrap();
            LayerFile {
                digest: format!("sha256:layer{i}"),
                media_type: if i % 2 == 0 {
                    LAYER_TAR_GZIP
                } else {
                    LAYER_TAR
                }
                .to_string(),
                path,
            }
        })
        .collect();
    unpack_layers(root, &files)
}

/// A sandbox: `outside/` next to `root/`, to check nothing lands beside the root.
fn sandbox() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let outside = t.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    (t, root, outside)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn whiteouts_and_opaque_directories_apply_across_layers() {
    let (_t, root, _) = sandbox();
    let lower = Layer::new()
        .dir("etc/")
        .file("etc/a", "a")
        .file("etc/b", "b")
        .dir("var/")
        .file("var/old1", "1")
        .dir("var/sub/")
        .file("var/sub/old2", "2")
        .file("keep", "k")
        .dir("was-dir/")
        .gzip();
    let upper = Layer::new()
        .file("etc/.wh.a", "")
        .file("var/new", "n")
        .file("var/.wh..wh..opq", "")
        .file("/abs", "normalised")
        .file("was-dir", "now a file")
        .tar();
    unpack(&root, vec![lower, upper]).unwrap();
    assert_eq!(listing(&root.join("etc")), vec!["b"]);
    assert_eq!(listing(&root.join("var")), vec!["new"]);
    assert_eq!(listing(&root), vec!["abs", "etc", "keep", "var", "was-dir"]);
    // The directory's mode from the lower layer does not land on the file that replaced it.
    let replaced = std::fs::metadata(root.join("was-dir")).unwrap();
    assert!(replaced.is_file());
    assert_eq!(replaced.permissions().mode() & 0o777, 0o644);
    assert_eq!(
        std::fs::read_to_string(root.join("abs")).unwrap(),
        "normalised"
    );
}

#[test]
fn links_modes_and_devices() {
    let (_t, root, _) = sandbox();
    let layer = Layer::new()
        .dir("bin/")
        .exe("bin/busybox", "#!")
        .symlink("bin/sh", "busybox")
        .symlink("bin/abs", "/bin/busybox")
        .hardlink("bin/ls", "bin/busybox")
        .device("dev-null")
        .dir("usr/lib/")
        .symlink("lib", "usr/lib")
        .file("lib/through", "inside")
        .gzip();
    unpack(&root, vec![layer]).unwrap();
    // A relative symlink that stays inside the root is followed.
    assert_eq!(
        std::fs::read_to_string(root.join("usr/lib/through")).unwrap(),
        "inside"
    );
    let bb = std::fs::metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(bb.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/abs")).unwrap(),
        Path::new("/bin/busybox")
    );
    let ls = std::fs::metadata(root.join("bin/ls")).unwrap();
    assert_eq!(ls.ino(), bb.ino());
    assert!(!root.join("dev-null").exists());
}

fn assert_refused(err: ImageError, entry: &str) {
    match err {
        ImageError::Refused { entry: e, .. } => assert_eq!(e, entry),
        other => panic!("expected a refusal naming {entry:?}, got {other}"),
    }
}

#[test]
fn dot_dot_entries_are_refused() {
    let (_t, root, outside) = sandbox();
    let layer = Layer::new().file("../outside/evil", "x").tar();
    let err = unpack(&root, vec![Layer::new().tar(), layer]).unwrap_err();
    assert_refused(err, "../outside/evil");
    assert!(listing(&outside).is_empty());
}

#[test]
fn writes_through_a_relative_symlink_escape_are_refused() {
    let (_t, root, outside) = sandbox();
    let layer = Layer::new()
        .symlink("esc", "../outside")
        .file("esc/evil", "x")
        .gzip();
    let err = unpack(&root, vec![layer]).unwrap_err();
    assert_refused(err, "esc/evil");
    assert!(listing(&outside).is_empty());
}

#[test]
fn writes_through_an_absolute_symlink_are_refused_across_layers() {
    let (_t, root, outside) = sandbox();
    let first = Layer::new()
        .symlink("abs", outside.to_str().unwrap())
        .gzip();
    let second = Layer::new().file("abs/evil", "x").tar();
    let err = unpack(&root, vec![first, second]).unwrap_err();
    assert_refused(err, "abs/evil");
    assert!(listing(&outside).is_empty());
    // A hard link to something outside is refused as well.
    let (_t2, root2, outside2) = sandbox();
    std::fs::write(outside2.join("secret"), "s").unwrap();
    let link = Layer::new()
        .symlink("out", outside2.to_str().unwrap())
        .hardlink("stolen", "out/secret")
        .gzip();
    let err = unpack(&root2, vec![link]).unwrap_err();
    assert_refused(err, "stolen");
    assert!(!root2.join("stolen").exists());
}

#[test]
fn zstd_layers_are_not_supported() {
    let (_t, root, _) = sandbox();
    let err = unpack_layer_from(&root, "sha256:z", LAYER_TAR_ZSTD, &b""[..]).unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
}

#[test]
fn image_config_and_store_and_copied_rootfs() {
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh"],"Cmd":["-c","echo hi"],"Env":["PATH=/bin"],"WorkingDir":"/w","User":"1000:1000","ExposedPorts":{"8080/tcp":{},"53/udp":{}}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let c = ImageConfig::parse(config).unwrap();
    assert_eq!(c.entrypoint, vec!["/bin/sh"]);
    assert_eq!(c.cmd, vec!["-c", "echo hi"]);
    assert_eq!(c.env, vec!["PATH=/bin"]);
    assert_eq!(c.working_dir.as_deref(), Some("/w"));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(c.exposed_ports, vec!["53/udp", "8080/tcp"]);
    assert!(ImageConfig::parse(b"not json").is_err());

    let store = tempfile::tempdir().unwrap();
    let blob = store.path().join("blob");
    std::fs::write(
        &blob,
        Layer::new()
            .dir("ro/")
            .exe("ro/x", "x")
            .symlink("l", "ro/x")
            .gzip(),
    )
    .unwrap();
    let layers = [LayerFile {
        digest: "sha256:l".to_string(),
        media_type: DOCKER_LAYER_TAR_GZIP.to_string(),
        path: blob,
    }];
    let img = unpack_image(store.path(), "sha256:abc", config, &layers).unwrap();
    assert_eq!(img.dir, store.path().join("sha256-abc"));
    assert!(img.rootfs.join("ro/x").is_file());
    let again = UnpackedImage::open(&img.dir).unwrap();
    assert_eq!(again.config, c);

    let cdir = store.path().join("containers/c1");
    let r = prepare_container_rootfs(&img, &cdir, RootfsMode::Copy).unwrap();
    assert_eq!(r.path(), cdir.join("rootfs"));
    std::fs::write(r.path().join("new"), "w").unwrap();
    assert!(!img.rootfs.join("new").exists());
    assert_eq!(
        std::fs::read_link(r.path().join("l")).unwrap(),
        Path::new("ro/x")
    );
    release_container_rootfs(&r, &cdir).unwrap();
    assert!(!cdir.exists());
}

#[test]
fn a_container_root_is_private_and_released() {
    let store = tempfile::tempdir().unwrap();
    let blob = store.path().join("blob");
    std::fs::write(
        &blob,
        Layer::new().dir("etc/").file("etc/f", "image").gzip(),
    )
    .unwrap();
    let layers = [LayerFile {
        digest: "sha256:l".to_string(),
        media_type: LAYER_TAR_GZIP.to_string(),
        path: blob,
    }];
    let img = unpack_image(store.path(), "sha256:def", b"{}", &layers).unwrap();
    let cdir = store.path().join("containers/c2");
    // Overlay when root and the kernel allow it, else a copy: both must behave the same.
    let r = prepare_container_rootfs(&img, &cdir, RootfsMode::Auto).unwrap();
    let kind = match &r {
        ContainerRootfs::Overlay { .. } => "overlay",
        ContainerRootfs::Copy { .. } => "copy",
    };
    eprintln!("container root prepared as: {kind}");
    assert_eq!(
        std::fs::read_to_string(r.path().join("etc/f")).unwrap(),
        "image"
    );
    std::fs::write(r.path().join("etc/f"), "container").unwrap();
    assert_eq!(
        std::fs::read_to_string(img.rootfs.join("etc/f")).unwrap(),
        "image"
    );
    release_container_rootfs(&r, &cdir).unwrap();
    assert!(!cdir.exists());
    assert!(img.rootfs.join("etc/f").is_file());
}
