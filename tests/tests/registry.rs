//! End-to-end tests of the registry through real clients: skopeo copies an umoci-built busybox
//! image in and out of `skiff registry` with the same digest, the Skiff client pulls it, `skiff
//! push` output is read by `skopeo inspect`, the Skiff client speaks to Debian's reference
//! `docker-registry`, and bad input is refused while the server keeps serving.
//!
//! The `skiff` binary comes from `skiff_tests::skiff_bin()` (`$SKIFF_BIN`, else the one cargo
//! built beside this test: run `cargo build -p skiff` first). Tools (skopeo, umoci, busybox,
//! docker-registry) are skipped with a printed reason unless `SKIFF_REQUIRE_TOOLS` is set.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use skiff_registry::{ClientOptions, Digest, Platform, RegistryClient};
use skiff_tests::{skiff_bin, tools, wait_ready_file};

/// A `skiff registry` process on a free loopback port.
struct RegistryProcess {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    token: String,
}

impl RegistryProcess {
    fn start(dir: &Path) -> RegistryProcess {
        // Beside the data directory, whose files some tests count.
        let ready_file = dir.with_extension("ready");
        let mut child = Command::new(skiff_bin())
            .args(["registry", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .arg("--ready-file")
            .arg(&ready_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("skiff registry starts");
        let ready = wait_ready_file(&ready_file, &mut child, Duration::from_secs(60))
            .expect("skiff registry comes up");
        let addr = ready["registry"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("the ready file names the registry's address");
        let token = std::fs::read_to_string(dir.join("registry.token"))
            .expect("the token file exists after start")
            .trim()
            .to_string();
        RegistryProcess {
            child,
            addr,
            dir: dir.to_path_buf(),
            token,
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    /// SIGTERM and wait: a graceful stop.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("skiff registry exits");
        assert!(status.success(), "skiff registry exit status {status}");
        // Dropping `self` kills nothing more: the child has been reaped.
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Debian's `docker-registry` (distribution 2.8) on a free loopback port.
struct DockerRegistry {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl DockerRegistry {
    fn start(bin: &Path) -> DockerRegistry {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        wait_for_port(addr);
        DockerRegistry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Waits (bounded, not asserted on time) until something accepts connections on `addr`.
fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
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

fn component() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (import "wasi:cli/stdout@0.2.0" (instance $i))
            (export "wasi:http/incoming-handler@0.2.0" (instance $i)))"#,
    )
    .expect("the test component assembles")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Builds an OCI image layout holding a busybox rootfs with umoci; returns the manifest digest.
fn busybox_layout(umoci: &Path, busybox: &Path, work: &Path) -> (PathBuf, String) {
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    run(Command::new(umoci).args(["init", "--layout"]).arg(&layout));
    run(Command::new(umoci)
        .args(["new", "--image"])
        .arg(format!("{}:latest", layout.display())));
    run(Command::new(umoci)
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle));
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "echo", "nc"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    run(Command::new(umoci)
        .args(["repack", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle));
    run(Command::new(umoci)
        .args(["config", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .args(["--config.cmd", "/bin/sh"]));
    let digest = layout_manifest_digest(&layout);
    (layout, digest)
}

fn layout_manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .expect("index.json names a manifest")
        .to_string()
}

#[test]
fn skopeo_copies_an_image_in_and_out_with_the_same_digest() {
    let (Some(skopeo), Some(umoci), Some(busybox)) =
        (tools::skopeo(), tools::umoci(), tools::busybox())
    else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (layout, digest) = busybox_layout(&umoci, &busybox, work.path());
    let reg = RegistryProcess::start(&work.path().join("registry"));
    let dest = format!("docker://{}/e2e/busybox:latest", reg.host());

    // Without the token the push is refused.
    let out = Command::new(&skopeo)
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(&dest)
        .output()
        .unwrap();
    assert!(!out.status.success(), "an anonymous push must fail");

    run(Command::new(&skopeo)
        .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
        .arg(format!("skiff:{}", reg.token))
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(&dest));
    let raw = run(Command::new(&skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&dest))
    .stdout;
    assert_eq!(Digest::sha256_of(&raw).to_string(), digest);

    let back = work.path().join("back");
    run(Command::new(&skopeo)
        .args(["copy", "--src-tls-verify=false"])
        .arg(&dest)
        .arg(format!("oci:{}:latest", back.display())));
    assert_eq!(layout_manifest_digest(&back), digest);

    // A Docker schema 2 copy is stored and served with its own media type.
    let docker_dest = format!("docker://{}/e2e/busybox:docker", reg.host());
    run(Command::new(&skopeo)
        .args([
            "copy",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
            "--dest-creds",
        ])
        .arg(format!("skiff:{}", reg.token))
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(&docker_dest));
    let raw_docker = run(Command::new(&skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&docker_dest))
    .stdout;
    let docker: serde_json::Value = serde_json::from_slice(&raw_docker).unwrap();
    assert_eq!(
        docker["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    // The Skiff client pulls the image; layers stay as blobs for the container backend.
    let cache = work.path().join("cache");
    let rt = runtime();
    let client = RegistryClient::new(ClientOptions::new(&cache)).unwrap();
    let image = rt
        .block_on(client.pull_image(
            &format!("{}/e2e/busybox:latest", reg.host()),
            &Platform::linux_host(),
        ))
        .expect("the skiff client pulls the image");
    assert_eq!(image.manifest_digest.to_string(), digest);
    assert!(!image.layers.is_empty());
    for layer in &image.layers {
        let bytes = std::fs::read(&layer.path).unwrap();
        assert_eq!(Digest::sha256_of(&bytes), layer.digest);
        // The same layer blob is in the OCI layout skopeo wrote back.
        assert!(back.join("blobs/sha256").join(layer.digest.hex()).exists());
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&image.config_path).unwrap()).unwrap();
    assert_eq!(config["config"]["Cmd"][0], "/bin/sh");
    let docker_image = rt
        .block_on(client.pull_image(
            &format!("{}/e2e/busybox:docker", reg.host()),
            &Platform::linux_host(),
        ))
        .expect("the skiff client pulls the docker schema 2 image");
    assert_eq!(docker_image.manifest_digest, Digest::sha256_of(&raw_docker));
    assert_eq!(docker_image.layers.len(), image.layers.len());
    // The cached image is found again without a registry.
    reg.stop();
    let again = rt
        .block_on(client.cached_image(&image.manifest_digest))
        .expect("cached image");
    assert_eq!(again.layers.len(), image.layers.len());
}

#[test]
fn skiff_push_is_readable_by_skopeo_and_pull_round_trips() {
    let Some(skopeo) = tools::skopeo() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let reg = RegistryProcess::start(&work.path().join("registry"));
    let wasm_path = work.path().join("hello.wasm");
    std::fs::write(&wasm_path, component()).unwrap();
    let reference = format!("{}/e2e/hello:1.0", reg.host());
    let cache = work.path().join("cache");

    // No token: refused with the registry's 401.
    let out = Command::new(skiff_bin())
        .arg("push")
        .arg(&wasm_path)
        .arg(&reference)
        .arg("--cache-dir")
        .arg(&cache)
        .env_remove("SKIFF_REGISTRY_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "the refusal names the status: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(Command::new(skiff_bin())
        .arg("push")
        .arg(&wasm_path)
        .arg(&reference)
        .arg("--cache-dir")
        .arg(&cache)
        .env("SKIFF_REGISTRY_TOKEN", &reg.token));
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        digest.starts_with("sha256:"),
        "push prints the digest: {digest}"
    );

    let raw = run(Command::new(&skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")))
    .stdout;
    assert_eq!(Digest::sha256_of(&raw).to_string(), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    let config = run(Command::new(&skopeo)
        .args(["inspect", "--config", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")))
    .stdout;
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(
        config["component"]["exports"][0],
        "wasi:http/incoming-handler@0.2.0"
    );
    assert_eq!(config["component"]["target"], "wasi:http/proxy@0.2.0");

    let out_path = work.path().join("pulled.wasm");
    let out = run(Command::new(skiff_bin())
        .arg("pull")
        .arg(&reference)
        .arg("-o")
        .arg(&out_path)
        .arg("--cache-dir")
        .arg(&cache));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), digest);
    assert_eq!(std::fs::read(&out_path).unwrap(), component());

    // The server stops; a pull by digest is served by the cache.
    let host = reg.host();
    reg.stop();
    let offline = work.path().join("offline.wasm");
    run(Command::new(skiff_bin())
        .arg("pull")
        .arg(format!("{host}/e2e/hello@{digest}"))
        .arg("-o")
        .arg(&offline)
        .arg("--cache-dir")
        .arg(&cache));
    assert_eq!(std::fs::read(&offline).unwrap(), component());
}

#[test]
fn skiff_client_speaks_to_the_reference_registry() {
    let Some(bin) = tools::docker_registry() else {
        return;
    };
    let reference_registry = DockerRegistry::start(&bin);
    let work = tempfile::tempdir().unwrap();
    let wasm_path = work.path().join("hello.wasm");
    std::fs::write(&wasm_path, component()).unwrap();
    let reference = format!("{}/e2e/hello:1.0", reference_registry.addr);
    let cache = work.path().join("cache");
    let out = run(Command::new(skiff_bin())
        .arg("push")
        .arg(&wasm_path)
        .arg(&reference)
        .arg("--cache-dir")
        .arg(&cache)
        .env_remove("SKIFF_REGISTRY_TOKEN"));
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out_path = work.path().join("pulled.wasm");
    let out = run(Command::new(skiff_bin())
        .arg("pull")
        .arg(&reference)
        .arg("-o")
        .arg(&out_path)
        .arg("--cache-dir")
        .arg(&cache));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), digest);
    assert_eq!(std::fs::read(&out_path).unwrap(), component());

    // A larger blob through the library client, pulled into a fresh cache.
    let rt = runtime();
    let client = RegistryClient::new(ClientOptions::new(work.path().join("cache2"))).unwrap();
    let pushed = rt
        .block_on(client.push_wasm(
            &format!("{}/e2e/big:1", reference_registry.addr),
            big_module().into(),
        ))
        .expect("push to docker-registry");
    let pulled = rt
        .block_on(client.pull_wasm(&format!(
            "{}/e2e/big@{}",
            reference_registry.addr, pushed.manifest_digest
        )))
        .expect("pull from docker-registry");
    assert_eq!(std::fs::read(pulled.path).unwrap(), big_module());
}

/// A core module with a 3 MiB data segment.
fn big_module() -> Vec<u8> {
    let data: String = (0..3 * 1024 * 1024)
        .map(|i| format!("\\{:02x}", (i * 7 % 251) as u8))
        .collect();
    wat::parse_str(format!(
        "(module (memory 64) (data (i32.const 0) \"{data}\"))"
    ))
    .unwrap()
}

/// Sends one raw HTTP/1.1 request and returns the status line's code and the body.
fn raw(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn bad_input_is_refused_and_the_registry_keeps_serving() {
    let work = tempfile::tempdir().unwrap();
    let reg = RegistryProcess::start(&work.path().join("registry"));
    let auth = format!("Authorization: Bearer {}\r\n", reg.token);
    let alive = || {
        let (code, _) = raw(reg.addr, "GET", "/v2/", &auth, b"");
        assert_eq!(code, 200, "the registry still serves");
    };

    // Bytes that do not match the digest: DIGEST_INVALID, nothing stored.
    let claimed = Digest::sha256_of(b"expected bytes");
    let (code, body) = raw(
        reg.addr,
        "POST",
        &format!("/v2/e2e/x/blobs/uploads/?digest={claimed}"),
        &auth,
        b"other bytes",
    );
    assert_eq!(code, 400);
    assert!(body.contains("DIGEST_INVALID"), "{body}");
    let (code, _) = raw(
        reg.addr,
        "HEAD",
        &format!("/v2/e2e/x/blobs/{claimed}"),
        "",
        b"",
    );
    assert_eq!(code, 404);
    alive();

    // A manifest naming a blob that was never pushed.
    let missing = Digest::sha256_of(b"missing");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": missing.to_string(), "size": 7},
        "layers": [],
    })
    .to_string();
    let (code, body) = raw(
        reg.addr,
        "PUT",
        "/v2/e2e/x/manifests/latest",
        &format!("{auth}Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"),
        manifest.as_bytes(),
    );
    assert_eq!(code, 400);
    assert!(body.contains("MANIFEST_BLOB_UNKNOWN"), "{body}");
    alive();

    // Names with `..` or upper case.
    for name in ["e2e/../x", "..", "E2E/x"] {
        let (code, body) = raw(
            reg.addr,
            "POST",
            &format!("/v2/{name}/blobs/uploads/"),
            &auth,
            b"",
        );
        assert_eq!(code, 400, "{name}");
        assert!(body.contains("NAME_INVALID"), "{name}: {body}");
    }
    alive();

    // A push without the token: 401 with a challenge.
    let mut s = TcpStream::connect(reg.addr).unwrap();
    s.write_all(b"POST /v2/e2e/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut head = String::new();
    s.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm="),
        "{head}"
    );
    alive();

    // A killed upload: the client dies half-way through the body.
    let data = vec![9u8; 4 << 20];
    let d = Digest::sha256_of(&data);
    // The connection closes half-way through the body, as when the client is killed (the
    // kernel closes a killed process's sockets).
    let mut s = TcpStream::connect(reg.addr).unwrap();
    write!(
        s,
        "POST /v2/e2e/x/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        reg.token,
        data.len()
    )
    .unwrap();
    s.write_all(&data[..data.len() / 2]).unwrap();
    drop(s);
    alive();
    let (code, _) = raw(reg.addr, "HEAD", &format!("/v2/e2e/x/blobs/{d}"), "", b"");
    assert_eq!(code, 404, "a killed upload leaves no blob");
    for entry in walk(&reg.dir.join("blobs")) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&entry).unwrap();
        assert_eq!(
            Digest::sha256_of(&bytes).hex(),
            name,
            "every stored blob matches its name"
        );
    }

    // gc refuses while the registry runs, and runs once it has stopped.
    let out = Command::new(skiff_bin())
        .args(["registry", "gc", "--grace", "0", "--data-dir"])
        .arg(&reg.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    let dir = reg.dir.clone();
    reg.stop();
    let out = run(Command::new(skiff_bin())
        .args(["registry", "gc", "--grace", "0", "--data-dir"])
        .arg(&dir));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("removed "));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
