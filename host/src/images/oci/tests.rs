//! A busybox image built with umoci, pushed with skopeo to the reference `docker-registry`,
//! pulled and unpacked by [`OciImages`]; a corrupted layer is refused and not cached.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use skiff_runtime::oci_image::UnpackedImage;

use super::*;

fn tool(name: &str, package: &str) -> Option<PathBuf> {
    skiff_tools::system(name, &format!("apt-get install {package}"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Debian's `docker-registry` on a free loopback port, its data under `dir/data`.
struct Registry {
    child: Child,
    addr: SocketAddr,
}

impl Registry {
    fn start(bin: &Path, dir: &Path) -> Registry {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        // Bounded wait for the listener (not a timing assertion).
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, addr }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI layout with a busybox root (`bin/busybox` and applet symlinks) and `Cmd ["/bin/sh"]`.
fn busybox_layout(umoci: &Path, busybox: &Path, work: &Path) -> PathBuf {
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    let image = format!("{}:latest", layout.display());
    run(Command::new(umoci).args(["init", "--layout"]).arg(&layout));
    run(Command::new(umoci).args(["new", "--image", &image]));
    run(Command::new(umoci)
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle));
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "ls", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    run(Command::new(umoci)
        .args(["repack", "--image", &image])
        .arg(&bundle));
    run(Command::new(umoci).args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "GREETING=hi",
    ]));
    layout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_and_unpacks_a_busybox_image_and_refuses_a_corrupted_layer() {
    let (Some(umoci), Some(skopeo), Some(busybox), Some(registry_bin)) = (
        tool("umoci", "umoci"),
        tool("skopeo", "skopeo"),
        tool("busybox", "busybox-static"),
        tool("docker-registry", "docker-registry"),
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let layout = busybox_layout(&umoci, &busybox, work.path());
    let reg_dir = work.path().join("registry");
    std::fs::create_dir(&reg_dir).unwrap();
    let reg = Registry::start(&registry_bin, &reg_dir);
    let reference = format!("{}/test/busybox:latest", reg.addr);
    run(Command::new(&skopeo)
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{reference}")));

    let images = OciImages::new(
        work.path().join("cache"),
        work.path().join("store"),
        Some(reg.addr.to_string()),
        None,
    )
    .unwrap();
    assert!(images.present("test/busybox:latest").is_none());
    // Two pulls at once share one pull and one unpack.
    let (a, b) = tokio::join!(images.pull("test/busybox:latest"), images.pull(&reference));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.image_id, b.image_id);
    assert!(
        a.image_id
            .starts_with(&format!("{}/test/busybox@sha256:", reg.addr)),
        "{}",
        a.image_id
    );
    let Image::Path(dir) = &a.image else {
        panic!("an unpacked image is a directory, got {:?}", a.image);
    };
    let unpacked = UnpackedImage::open(dir).unwrap();
    let bb = std::fs::metadata(unpacked.rootfs.join("bin/busybox")).unwrap();
    assert!(bb.is_file() && bb.permissions().mode() & 0o111 != 0);
    assert_eq!(
        std::fs::read_link(unpacked.rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(unpacked.config.cmd, vec!["/bin/sh"]);
    assert!(unpacked.config.env.iter().any(|e| e == "GREETING=hi"));
    assert_eq!(
        images.present("test/busybox:latest").unwrap().image_id,
        a.image_id
    );
    // Exactly one image directory in the store: no leftover temporary unpack.
    assert_eq!(std::fs::read_dir(images.store()).unwrap().count(), 1);
    assert!(dir.starts_with(images.store()));

    // A Docker schema 2 copy (Docker manifest and layer media types) unpacks the same root.
    let docker_ref = format!("{}/test/busybox-v2s2:latest", reg.addr);
    run(Command::new(&skopeo)
        .args(["copy", "--format", "v2s2", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{docker_ref}")));
    let raw = run(Command::new(&skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{docker_ref}")))
    .stdout;
    assert!(
        String::from_utf8_lossy(&raw).contains("application/vnd.docker.image.rootfs.diff.tar.gzip")
    );
    let d = images.pull(&docker_ref).await.unwrap();
    let Image::Path(ddir) = &d.image else {
        panic!("an unpacked image is a directory, got {:?}", d.image);
    };
    let docker = UnpackedImage::open(ddir).unwrap();
    assert!(docker.rootfs.join("bin/busybox").is_file());
    assert_eq!(docker.config.cmd, vec!["/bin/sh"]);

    // Corrupt the layer blob in the registry's storage (same size), then pull afresh.
    let blobs = reg_dir.join("data/docker/registry/v2/blobs/sha256");
    let layer_digest = {
        let manifest: serde_json::Value = serde_json::from_slice(
            &run(Command::new(&skopeo)
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{reference}")))
            .stdout,
        )
        .unwrap();
        manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string()
    };
    let data = blobs
        .join(&layer_digest[..2])
        .join(&layer_digest)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let fresh = OciImages::new(
        work.path().join("cache2"),
        work.path().join("store2"),
        None,
        None,
    )
    .unwrap();
    let err = fresh.pull(&reference).await.unwrap_err().to_string();
    assert!(err.contains("digest"), "{err}");
    let cached = work
        .path()
        .join("cache2/blobs/sha256")
        .join(&layer_digest[..2])
        .join(&layer_digest);
    assert!(!cached.exists(), "a mismatching layer must not be cached");
    assert!(fresh.present(&reference).is_none());
    assert!(
        std::fs::read_dir(fresh.store())
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    );
}

/// A wasm artifact pulled for a Linux container pod comes back as the module's bytes, for the
/// backend to run on the wasm runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_artifact_comes_back_as_wasm_bytes() {
    let Some(registry_bin) = tool("docker-registry", "docker-registry") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let reg_dir = work.path().join("registry");
    std::fs::create_dir(&reg_dir).unwrap();
    let reg = Registry::start(&registry_bin, &reg_dir);
    // The smallest valid core module.
    let module: &[u8] = b"\0asm\x01\0\0\0";
    let pusher = RegistryClient::new(ClientOptions::new(work.path().join("push-cache"))).unwrap();
    pusher
        .push_wasm(
            &format!("{}/test/app:1.0", reg.addr),
            bytes::Bytes::from_static(module),
        )
        .await
        .expect("pushed");
    let images = OciImages::new(
        work.path().join("cache"),
        work.path().join("store"),
        Some(reg.addr.to_string()),
        None,
    )
    .unwrap();
    let pulled = images.pull("test/app:1.0").await.expect("pulled");
    match &pulled.image {
        Image::Bytes(b) => assert_eq!(&b[..], module),
        other => panic!("a wasm artifact came back as {other:?}"),
    }
    assert!(
        pulled.image_id.contains("/test/app@sha256:"),
        "{}",
        pulled.image_id
    );
    assert!(images.present("test/app:1.0").is_some());
}
