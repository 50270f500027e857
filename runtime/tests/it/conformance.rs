//! The pod-runtime conformance suite: the same cases against every backend behind
//! `Arc<dyn PodRuntime>` (the wasm runtime here; the Linux container backend as root), plus the
//! Linux backend's own root tests (re-adoption, OOM kill, teardown leaving nothing behind).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use skiff_runtime::oci::runc::RuntimeKind;
use skiff_runtime::oci::{OciConfig, OciRuntime};
use skiff_runtime::{
    ContainerSpec, ContainerState, Error, Image, LinuxContainer, LogOptions, Mount, Network,
    PodNetwork, PodRuntime, PodSandbox, PodSpec, Resources, TerminationReason, VolumeSource,
    VolumeSpec,
};

/// The line the long-running container prints first.
pub(crate) const LINE: &str = "conformance-line";

/// Builds the spec of a pod with this id (`n` numbers the pods of one case).
pub(crate) type PodSpecFn = Box<dyn Fn(&str, u8) -> PodSpec + Send + Sync>;

/// A backend under test and how to make its pods and containers.
pub(crate) struct Subject {
    pub(crate) runtime: Arc<dyn PodRuntime>,
    /// A pod spec for a fresh pod id.
    pub(crate) pod_spec: PodSpecFn,
    /// A container that prints [`LINE`] and runs until stopped.
    pub(crate) long_running: ContainerSpec,
    /// A container that exits with code 3.
    pub(crate) exit3: ContainerSpec,
}

/// A hang guard, not a timing assertion.
const HANG: Duration = Duration::from_secs(60);

async fn wait_state(
    pod: &Arc<dyn PodSandbox>,
    name: &str,
    what: &str,
    f: impl Fn(&ContainerState) -> bool,
) -> Result<ContainerState> {
    let mut rx = pod.watch_container(name)?;
    let state = tokio::time::timeout(HANG, rx.wait_for(|s| f(s)))
        .await
        .with_context(|| format!("container {name} never became {what}"))??
        .clone();
    Ok(state)
}

/// Follows the log until a line equal to `line` appears.
async fn wait_log_line(pod: &Arc<dyn PodSandbox>, name: &str, line: &str) -> Result<()> {
    let mut stream = pod.logs(
        name,
        LogOptions {
            follow: true,
            ..Default::default()
        },
    )?;
    let found = tokio::time::timeout(HANG, async {
        while let Some(l) = stream.next().await {
            if l.line.as_ref() == line.as_bytes() {
                return true;
            }
        }
        false
    })
    .await
    .with_context(|| format!("log of {name} never showed {line:?}"))?;
    ensure!(found, "log of {name} ended without {line:?}");
    Ok(())
}

fn exit_of(state: &ContainerState) -> Result<(i32, TerminationReason)> {
    match state {
        ContainerState::Terminated {
            exit_code, reason, ..
        } => Ok((*exit_code, *reason)),
        other => bail!("not terminated: {other:?}"),
    }
}

/// Runs every case against `s`.
pub(crate) async fn run_all(s: &Subject, prefix: &str) -> Result<()> {
    lifecycle(s, &format!("{prefix}-life"))
        .await
        .context("lifecycle")?;
    exit_code(s, &format!("{prefix}-exit"))
        .await
        .context("exit code")?;
    unknown_container(s, &format!("{prefix}-unknown"))
        .await
        .context("unknown container")?;
    double_start(s, &format!("{prefix}-double"))
        .await
        .context("double start")?;
    network_release(s, &format!("{prefix}-release"))
        .await
        .context("network release")?;
    Ok(())
}

/// A pod whose containers have all ended gives its network up: refused while one runs; after
/// it the pod has no IP and its logs stay; a second release does nothing; the pod is removed
/// as any other.
async fn network_release(s: &Subject, id: &str) -> Result<()> {
    let spec = (s.pod_spec)(id, 5);
    let pod = s.runtime.create_pod(spec.clone()).await?;
    let name = s.long_running.name.clone();
    pod.create_container(s.long_running.clone()).await?;
    pod.start_container(&name).await?;
    wait_log_line(&pod, &name, LINE).await?;
    let refused = pod.release_network().await;
    ensure!(
        matches!(refused, Err(skiff_runtime::Error::ContainerState { .. })),
        "released while {name} runs: {refused:?}"
    );
    ensure!(pod.ip() == spec.ip, "IP kept: {:?}", pod.ip());
    pod.stop_container(&name, Duration::ZERO).await?;
    pod.release_network().await?;
    ensure!(pod.ip().is_none(), "IP after the release: {:?}", pod.ip());
    wait_log_line(&pod, &name, LINE).await?;
    pod.release_network().await?;
    pod.remove(Duration::ZERO).await?;
    ensure!(s.runtime.pod(id).is_none(), "removed pod still found");
    Ok(())
}

/// Create pod, create and start a container, Running, its line in the log, stop with grace,
/// Terminated; remove the container, remove the pod: it is no longer listed.
async fn lifecycle(s: &Subject, id: &str) -> Result<()> {
    let pod = s.runtime.create_pod((s.pod_spec)(id, 1)).await?;
    ensure!(s.runtime.pods().contains(&id.to_string()), "pod listed");
    ensure!(s.runtime.pod(id).is_some(), "pod found by id");
    let name = s.long_running.name.clone();
    pod.create_container(s.long_running.clone()).await?;
    ensure!(
        !pod.container_states()[&name].is_running(),
        "created, not yet running"
    );
    pod.start_container(&name).await?;
    wait_state(&pod, &name, "running", ContainerState::is_running).await?;
    wait_log_line(&pod, &name, LINE).await?;
    pod.stop_container(&name, Duration::from_secs(1)).await?;
    ensure!(
        pod.container_states()[&name].is_terminated(),
        "terminated once stop returns: {:?}",
        pod.container_states()[&name]
    );
    pod.remove_container(&name).await?;
    ensure!(pod.container_states().is_empty(), "container forgotten");
    pod.remove(Duration::from_secs(1)).await?;
    ensure!(
        !s.runtime.pods().contains(&id.to_string()),
        "removed pod still listed"
    );
    ensure!(s.runtime.pod(id).is_none(), "removed pod still found");
    Ok(())
}

/// A container exiting with 3 is Terminated with exit code 3 and reason Error.
async fn exit_code(s: &Subject, id: &str) -> Result<()> {
    let pod = s.runtime.create_pod((s.pod_spec)(id, 2)).await?;
    let name = s.exit3.name.clone();
    pod.create_container(s.exit3.clone()).await?;
    pod.start_container(&name).await?;
    let state = wait_state(&pod, &name, "terminated", ContainerState::is_terminated).await?;
    let (code, reason) = exit_of(&state)?;
    ensure!(code == 3, "exit code {code}, want 3");
    ensure!(reason == TerminationReason::Error, "reason {reason}");
    // A restart runs it again; the first run's log is the previous one.
    let first_start = started_at(&state);
    pod.start_container(&name).await?;
    let again = wait_state(&pod, &name, "terminated again", |s| {
        s.is_terminated() && started_at(s) != first_start
    })
    .await?;
    ensure!(exit_of(&again)?.0 == 3, "{again:?}");
    let previous: Vec<_> = pod
        .logs(
            &name,
            LogOptions {
                previous: true,
                ..Default::default()
            },
        )?
        .collect()
        .await;
    ensure!(
        previous.iter().any(|l| l.line.as_ref() == b"bye"),
        "previous log: {previous:?}"
    );
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

fn started_at(state: &ContainerState) -> Option<jiff::Timestamp> {
    match state {
        ContainerState::Running { started_at } | ContainerState::Terminated { started_at, .. } => {
            Some(*started_at)
        }
        ContainerState::Waiting { .. } => None,
    }
}

/// Every per-container call on a name the pod does not have: `UnknownContainer`.
async fn unknown_container(s: &Subject, id: &str) -> Result<()> {
    let pod = s.runtime.create_pod((s.pod_spec)(id, 3)).await?;
    let unknown = |r: Result<(), Error>, what: &str| -> Result<()> {
        match r {
            Err(Error::UnknownContainer { container, .. }) if container == "nope" => Ok(()),
            other => bail!("{what}: want UnknownContainer, got {other:?}"),
        }
    };
    unknown(pod.start_container("nope").await, "start")?;
    unknown(pod.stop_container("nope", Duration::ZERO).await, "stop")?;
    unknown(pod.remove_container("nope").await, "remove")?;
    unknown(pod.watch_container("nope").map(|_| ()), "watch")?;
    unknown(pod.logs("nope", LogOptions::default()).map(|_| ()), "logs")?;
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

/// Starting a running container again is `Ok` (left running) or a container-state error,
/// and the container keeps running either way.
async fn double_start(s: &Subject, id: &str) -> Result<()> {
    let pod = s.runtime.create_pod((s.pod_spec)(id, 4)).await?;
    let name = s.long_running.name.clone();
    pod.create_container(s.long_running.clone()).await?;
    pod.start_container(&name).await?;
    wait_state(&pod, &name, "running", ContainerState::is_running).await?;
    match pod.start_container(&name).await {
        Ok(()) | Err(Error::ContainerState { .. }) => {}
        Err(e) => bail!("second start: {e}"),
    }
    ensure!(
        pod.container_states()[&name].is_running(),
        "still running after a second start"
    );
    pod.remove(Duration::ZERO).await?;
    ensure!(!s.runtime.pods().contains(&id.to_string()));
    Ok(())
}

// ---- the wasm backend ----

/// A preview-1 command printing `line` and then sleeping (poll_oneoff) until killed.
fn p1_print_and_sleep(line: &str) -> Vec<u8> {
    let text = format!("{line}\n");
    let escaped: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    let len = text.len();
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "{escaped}")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const {len}))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (i64.store (i32.const 256) (i64.const 0))
            (i32.store8 (i32.const 264) (i32.const 0))
            (i32.store (i32.const 272) (i32.const 1))
            (i64.store (i32.const 280) (i64.const 1000000000000))
            (i64.store (i32.const 288) (i64.const 0))
            (i32.store16 (i32.const 296) (i32.const 0))
            (loop (drop (call $poll (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 600))) (br 0))))"#
    ))
    .expect("valid wat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_wasm() -> Result<()> {
    let subject = Subject {
        runtime: Arc::new(crate::rt().clone()),
        pod_spec: Box::new(|id, n| PodSpec {
            id: id.to_string(),
            name: format!("default/{id}"),
            // Virtual addresses in the shared runtime's table, used by no other test.
            ip: Some(IpAddr::V4(Ipv4Addr::new(10, 250, 77, n))),
            ..Default::default()
        }),
        long_running: ContainerSpec {
            name: "sleeper".into(),
            image: Image::Bytes(p1_print_and_sleep(LINE).into()),
            ..Default::default()
        },
        exit3: ContainerSpec {
            name: "three".into(),
            image: Image::Bytes(crate::wat_guests::p1_print_and_exit("bye", 3).into()),
            ..Default::default()
        },
    };
    run_all(&subject, "conf-wasm").await
}

// ---- the Linux container backend (root) ----

/// Why the Linux backend's tests cannot run here, if they cannot (a missing tool fails with
/// `SKIFF_REQUIRE_TOOLS=1`).
fn oci_skip(test: &str) -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Some(format!("SKIP {test}: not root (uid {uid})"));
    }
    let require = std::env::var("SKIFF_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    for tool in ["runc", "conmon", "ip"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            || Path::new("/usr/libexec/podman").join(tool).is_file();
        if !found {
            let msg = format!("SKIP {test}: {tool} is not installed");
            assert!(!require, "{msg} (SKIFF_REQUIRE_TOOLS=1)");
            return Some(msg);
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        let msg = format!("SKIP {test}: /bin/busybox (busybox-static) is not installed");
        assert!(!require, "{msg} (SKIFF_REQUIRE_TOOLS=1)");
        return Some(msg);
    }
    None
}

/// A busybox image directory as the image store holds one: `rootfs/` and `config.json`.
fn busybox_image(dir: &Path) -> Result<PathBuf> {
    let image = dir.join("image");
    let bin = image.join("rootfs/bin");
    std::fs::create_dir_all(&bin)?;
    for d in ["etc", "tmp", "proc", "sys", "dev", "data"] {
        std::fs::create_dir_all(image.join("rootfs").join(d))?;
    }
    std::fs::copy("/bin/busybox", bin.join("busybox"))?;
    let out = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
    }
    std::fs::write(
        image.join("config.json"),
        r#"{"entrypoint":[],"cmd":["/bin/sh"],"env":["PATH=/bin"],"working_dir":null,"user":null,"exposed_ports":[]}"#,
    )?;
    Ok(image)
}

fn sh(name: &str, image: &Path, script: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: Image::Path(image.to_path_buf()),
        linux: LinuxContainer {
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A private /24 per test: 10.`base`.N.0/24 with N from the test's name.
fn subnet(test: &str, base: u8) -> (u8, u8) {
    let n = test
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (base, 10 + (n % 200) as u8)
}

/// The Linux backend of one test, on its own directory, node name (so bridge) and subnet;
/// shut down at the end of the test or, on failure, when dropped.
struct OciHarness {
    rt: Option<OciRuntime>,
    /// A runtime dropped by [`OciHarness::forget`]: cleaned up on failure before a restart.
    stale: Option<OciRuntime>,
    dir: tempfile::TempDir,
    node: String,
    net: (u8, u8),
    image: PathBuf,
}

impl OciHarness {
    async fn new(test: &str, base: u8) -> Result<OciHarness> {
        let dir = tempfile::Builder::new().prefix("skiff-oci-it").tempdir()?;
        let image = busybox_image(dir.path())?;
        let node = format!("it-{test}");
        let rt = OciRuntime::new(Self::config(dir.path(), &node), Network::new(), None)
            .await
            .context("starting the OCI runtime")?;
        println!("{test}: cgroup {:?}", rt.cgroup_version());
        Ok(OciHarness {
            rt: Some(rt),
            stale: None,
            dir,
            node,
            net: subnet(test, base),
            image,
        })
    }

    fn config(dir: &Path, node: &str) -> OciConfig {
        OciConfig {
            dir: dir.join("oci"),
            runtime: RuntimeKind::Runc,
            runtime_path: None,
            node_name: node.to_string(),
            max_pods: 16,
        }
    }

    fn rt(&self) -> &OciRuntime {
        self.rt.as_ref().expect("runtime")
    }

    fn pod_spec(net: (u8, u8), id: &str, n: u8) -> PodSpec {
        let (a, b) = net;
        PodSpec {
            id: id.to_string(),
            name: format!("default/{id}"),
            hostname: id.to_string(),
            namespace: "default".into(),
            ip: Some(IpAddr::V4(Ipv4Addr::new(10, a, b, 10 + n))),
            network: Some(PodNetwork {
                gateway: Ipv4Addr::new(10, a, b, 1),
                prefix_len: 24,
            }),
            ..Default::default()
        }
    }

    /// Drops the runtime without shutting it down, as a killed node leaves it.
    fn forget(&mut self) {
        self.stale = self.rt.take();
    }

    /// Replaces the runtime by a new one on the same directory (the old one is dropped
    /// without shutdown, as a killed node would leave it).
    async fn restart(&mut self) -> Result<()> {
        drop(self.rt.take());
        self.stale = None;
        let rt = OciRuntime::new(
            Self::config(self.dir.path(), &self.node),
            Network::new(),
            None,
        )
        .await?;
        self.rt = Some(rt);
        Ok(())
    }

    async fn finish(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown(Duration::from_secs(1)).await;
        }
    }
}

impl Drop for OciHarness {
    fn drop(&mut self) {
        let Some(rt) = self.rt.take().or_else(|| self.stale.take()) else {
            return;
        };
        // A failed test: clean up on a runtime of our own (the test's may be unwinding).
        let _ = std::thread::spawn(move || {
            if let Ok(tokio_rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                tokio_rt.block_on(rt.shutdown(Duration::ZERO));
            }
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_conformance_oci() -> Result<()> {
    if let Some(skip) = oci_skip("root_conformance_oci") {
        println!("{skip}");
        return Ok(());
    }
    let h = OciHarness::new("root_conformance_oci", 231).await?;
    let net = h.net;
    let subject = Subject {
        runtime: Arc::new(h.rt().clone()),
        pod_spec: Box::new(move |id, n| OciHarness::pod_spec(net, id, n)),
        long_running: sh(
            "sleeper",
            &h.image,
            &format!("echo {LINE}; exec sleep 1000"),
        ),
        exit3: sh("three", &h.image, "echo bye; exit 3"),
    };
    run_all(&subject, "conf-oci").await?;
    ensure!(h.rt().pods().is_empty(), "pods left: {:?}", h.rt().pods());
    drop(subject);
    h.finish().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_oci_containers_are_readopted_after_a_restart() -> Result<()> {
    let test = "root_oci_containers_are_readopted_after_a_restart";
    if let Some(skip) = oci_skip(test) {
        println!("{skip}");
        return Ok(());
    }
    let mut h = OciHarness::new(test, 232).await?;
    let id = "readopt";
    let mut spec = OciHarness::pod_spec(h.net, id, 1);
    spec.volumes = vec![VolumeSpec {
        name: "data".into(),
        source: VolumeSource::EmptyDir { memory: false },
    }];
    let pod = h.rt().create_pod(spec.clone()).await?;
    let mut c = sh(
        "waiter",
        &h.image,
        "echo waiting; while [ ! -e /data/go ]; do sleep 1; done; exit 5",
    );
    c.mounts = vec![Mount {
        volume: "data".into(),
        mount_path: "/data".into(),
        ..Default::default()
    }];
    pod.create_container(c.clone()).await?;
    pod.start_container("waiter").await?;
    wait_state(&pod, "waiter", "running", ContainerState::is_running).await?;
    // A second container that ends while the node is down.
    let mut quick = sh(
        "quick",
        &h.image,
        "while [ ! -e /data/go-quick ]; do sleep 1; done; exit 4",
    );
    quick.mounts = c.mounts.clone();
    pod.create_container(quick.clone()).await?;
    pod.start_container("quick").await?;
    wait_state(&pod, "quick", "running", ContainerState::is_running).await?;
    let volume = h.dir.path().join("oci/pods").join(id).join("volumes/data");
    // The node "dies": the runtime object goes without a shutdown. (Its exit watchers live
    // on in this process; a killed node's would not, which the new runtime does not rely on.)
    h.forget();
    std::fs::write(volume.join("go-quick"), b"")?;
    wait_state(&pod, "quick", "terminated", ContainerState::is_terminated).await?;
    drop(pod);

    h.restart().await?;
    ensure!(
        h.rt().pods() == vec![id.to_string()],
        "adopted: {:?}",
        h.rt().pods()
    );
    // The node re-creates its pods: the adopted sandbox comes back, its container untouched.
    let pod = h.rt().create_pod(spec).await?;
    ensure!(
        pod.container_states()["waiter"].is_running(),
        "still running after the restart: {:?}",
        pod.container_states()
    );
    let quick_state = pod.container_states()["quick"].clone();
    ensure!(
        exit_of(&quick_state)? == (4, TerminationReason::Error),
        "the exit while the node was down: {quick_state:?}"
    );
    pod.create_container(c).await?;
    pod.start_container("waiter").await?;
    ensure!(pod.container_states()["waiter"].is_running());
    std::fs::write(volume.join("go"), b"")?;
    let state = wait_state(&pod, "waiter", "terminated", ContainerState::is_terminated).await?;
    let (code, reason) = exit_of(&state)?;
    ensure!(code == 5 && reason == TerminationReason::Error, "{state:?}");
    pod.remove(Duration::ZERO).await?;
    h.finish().await;
    Ok(())
}

/// A pod whose containers have all ended gives its network up (kubelet's StopPodSandbox): the
/// release is refused while a container runs; after it the IP is gone, and the namespace and
/// veth with it, while the containers' states and logs stay. A node restart re-adopts the
/// finished pod without a network, and removing it leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_oci_a_finished_pod_releases_its_network_and_keeps_its_logs() -> Result<()> {
    let test = "root_oci_a_finished_pod_releases_its_network_and_keeps_its_logs";
    if let Some(skip) = oci_skip(test) {
        println!("{skip}");
        return Ok(());
    }
    let mut h = OciHarness::new(test, 239).await?;
    let id = "finished";
    let spec = OciHarness::pod_spec(h.net, id, 1);
    let pod = h.rt().create_pod(spec.clone()).await?;
    pod.create_container(sh(
        "app",
        &h.image,
        &format!("echo {LINE}; exec sleep 1000"),
    ))
    .await?;
    pod.start_container("app").await?;
    wait_log_line(&pod, "app", LINE).await?;
    let refused = pod.release_network().await;
    ensure!(
        matches!(refused, Err(skiff_runtime::Error::ContainerState { .. })),
        "released while a container runs: {refused:?}"
    );
    ensure!(pod.ip() == spec.ip, "the IP is kept: {:?}", pod.ip());
    let netns = skiff_runtime::oci::net::netns_name(id);
    let veth = skiff_runtime::oci::net::host_veth_name(&netns);
    ensure!(Path::new("/var/run/netns").join(&netns).exists());
    pod.stop_container("app", Duration::ZERO).await?;
    wait_state(&pod, "app", "terminated", ContainerState::is_terminated).await?;

    pod.release_network().await?;
    ensure!(pod.ip().is_none(), "IP after the release: {:?}", pod.ip());
    ensure!(
        !Path::new("/var/run/netns").join(&netns).exists(),
        "netns {netns} left"
    );
    ensure!(
        !Path::new("/sys/class/net").join(&veth).exists(),
        "veth {veth} left"
    );
    wait_log_line(&pod, "app", LINE).await?;
    // Twice is fine.
    pod.release_network().await?;
    drop(pod);

    // The node is killed and starts again: the finished pod comes back without a network.
    h.forget();
    h.restart().await?;
    ensure!(
        h.rt().pods() == vec![id.to_string()],
        "adopted: {:?}",
        h.rt().pods()
    );
    let pod = h.rt().pod(id).context("the adopted pod")?;
    ensure!(pod.ip().is_none(), "IP after the restart: {:?}", pod.ip());
    ensure!(
        pod.container_states()["app"].is_terminated(),
        "{:?}",
        pod.container_states()
    );
    wait_log_line(&pod, "app", LINE).await?;
    ensure!(
        !Path::new("/var/run/netns").join(&netns).exists(),
        "netns {netns} made again"
    );
    pod.remove(Duration::ZERO).await?;
    ensure!(
        !h.dir.path().join("oci/pods").join(id).exists(),
        "pod directory left"
    );
    ensure!(
        cgroups_of(id).is_empty(),
        "cgroups left: {:?}",
        cgroups_of(id)
    );
    h.finish().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_oci_memory_limit_is_oom_killed() -> Result<()> {
    let test = "root_oci_memory_limit_is_oom_killed";
    if let Some(skip) = oci_skip(test) {
        println!("{skip}");
        return Ok(());
    }
    let h = OciHarness::new(test, 233).await?;
    let pod = h
        .rt()
        .create_pod(OciHarness::pod_spec(h.net, "oom", 1))
        .await?;
    let mut c = sh(
        "hog",
        &h.image,
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    );
    c.resources = Resources {
        memory_limit: Some(16 << 20),
        ..Default::default()
    };
    pod.create_container(c).await?;
    pod.start_container("hog").await?;
    let state = wait_state(&pod, "hog", "terminated", ContainerState::is_terminated).await?;
    let (code, reason) = exit_of(&state)?;
    ensure!(
        reason == TerminationReason::OomKilled,
        "want OOMKilled, got {state:?}"
    );
    ensure!(code == 137, "exit code {code}");
    pod.remove(Duration::ZERO).await?;
    h.finish().await;
    Ok(())
}

/// Mount points below `dir`.
fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.starts_with(&dir))
        .map(str::to_string)
        .collect()
}

fn cgroups_of(id: &str) -> Vec<PathBuf> {
    let mut left = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let p = e.path().join("skiff").join(id);
            if p.exists() {
                left.push(p);
            }
        }
    }
    if Path::new("/sys/fs/cgroup/skiff").join(id).exists() {
        left.push(Path::new("/sys/fs/cgroup/skiff").join(id));
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_oci_teardown_leaves_nothing_behind() -> Result<()> {
    let test = "root_oci_teardown_leaves_nothing_behind";
    if let Some(skip) = oci_skip(test) {
        println!("{skip}");
        return Ok(());
    }
    let h = OciHarness::new(test, 234).await?;
    let id = "teardown";
    let mut spec = OciHarness::pod_spec(h.net, id, 1);
    spec.volumes = vec![VolumeSpec {
        name: "mem".into(),
        source: VolumeSource::EmptyDir { memory: true },
    }];
    let pod = h.rt().create_pod(spec).await?;
    let mut c = sh(
        "app",
        &h.image,
        &format!("echo {LINE} > /mem/x; exec sleep 1000"),
    );
    c.mounts = vec![Mount {
        volume: "mem".into(),
        mount_path: "/mem".into(),
        ..Default::default()
    }];
    pod.create_container(c).await?;
    pod.start_container("app").await?;
    wait_state(&pod, "app", "running", ContainerState::is_running).await?;
    let pod_dir = h.dir.path().join("oci/pods").join(id);
    ensure!(
        !mounts_below(&pod_dir).is_empty(),
        "rootfs and tmpfs mounted"
    );
    ensure!(
        !cgroups_of(id).is_empty(),
        "the pod's cgroups exist while it runs"
    );
    let netns = skiff_runtime::oci::net::netns_name(id);
    let veth = skiff_runtime::oci::net::host_veth_name(&netns);
    ensure!(
        Path::new("/sys/class/net").join(&veth).exists(),
        "veth {veth}"
    );

    pod.remove(Duration::from_secs(1)).await?;
    ensure!(
        mounts_below(&pod_dir).is_empty(),
        "mounts left: {:?}",
        mounts_below(&pod_dir)
    );
    ensure!(
        cgroups_of(id).is_empty(),
        "cgroups left: {:?}",
        cgroups_of(id)
    );
    ensure!(
        !Path::new("/var/run/netns").join(&netns).exists(),
        "netns {netns} left"
    );
    ensure!(
        !Path::new("/sys/class/net").join(&veth).exists(),
        "veth {veth} left"
    );
    ensure!(!pod_dir.exists(), "pod directory left");
    let bridge = skiff_runtime::oci::net::Bridge::name_for(&h.node);
    h.finish().await;
    ensure!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} left after shutdown"
    );
    Ok(())
}

/// A pod with wasm and Linux containers shares `localhost`: a Linux container reaches the wasm
/// HTTP service on `localhost:8080`, and a wasm container fetches from the Linux container's
/// `httpd` on `localhost:8081`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_oci_mixed_pod_shares_localhost() -> Result<()> {
    let test = "root_oci_mixed_pod_shares_localhost";
    if let Some(skip) = oci_skip(test) {
        println!("{skip}");
        return Ok(());
    }
    let (Some(puller), Some(hello)) = (
        crate::sample("fileserver/puller.wasm"),
        crate::sample("hello-http/hello-http.wasm"),
    ) else {
        return Ok(());
    };
    let dir = tempfile::Builder::new().prefix("skiff-oci-it").tempdir()?;
    let image = busybox_image(dir.path())?;
    let node = format!("it-{test}");
    let wasm = Arc::new(crate::rt().clone());
    let rt = OciRuntime::new(
        OciHarness::config(dir.path(), &node),
        wasm.network().clone(),
        Some(wasm),
    )
    .await?;
    let h = OciHarness {
        rt: Some(rt),
        stale: None,
        dir,
        node,
        net: subnet(test, 235),
        image,
    };
    let mut spec = OciHarness::pod_spec(h.net, "mixed", 1);
    spec.volumes = vec![VolumeSpec {
        name: "data".into(),
        source: VolumeSource::EmptyDir { memory: false },
    }];
    let pod = h.rt().create_pod(spec).await?;
    let data = Mount {
        volume: "data".into(),
        mount_path: "/data".into(),
        ..Default::default()
    };
    pod.create_container(ContainerSpec {
        name: "hello".into(),
        image: hello,
        ports: vec![8080],
        ..Default::default()
    })
    .await?;
    let mut httpd = sh(
        "httpd",
        &h.image,
        "mkdir -p /data/www && echo from-linux > /data/www/x && exec httpd -f -p 8081 -h /data/www",
    );
    httpd.mounts = vec![data.clone()];
    httpd.ports = vec![8081];
    pod.create_container(httpd).await?;
    pod.start_container("hello").await?;
    pod.start_container("httpd").await?;
    ensure!(
        crate::eventually(|| pod.serves_port(8081)).await,
        "httpd never listened"
    );
    ensure!(pod.serves_port(8080), "the wasm service's port");

    // Linux -> wasm over the pod's localhost.
    let mut curl = sh(
        "curl",
        &h.image,
        // busybox nc quits when its input ends: keep it open until the answer is in.
        "{ printf 'GET / HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n'; \
         while [ ! -s /data/from-wasm ]; do sleep 1; done; } | nc 127.0.0.1 8080 > /data/from-wasm",
    );
    curl.mounts = vec![data.clone()];
    pod.create_container(curl).await?;
    pod.start_container("curl").await?;
    let state = wait_state(&pod, "curl", "terminated", ContainerState::is_terminated).await?;
    ensure!(exit_of(&state)?.0 == 0, "{state:?}");
    let got = std::fs::read_to_string(h.dir.path().join("oci/pods/mixed/volumes/data/from-wasm"))?;
    ensure!(got.starts_with("HTTP/1.") && got.contains(" 200 "), "{got}");

    // wasm -> Linux over the pod's localhost.
    pod.create_container(ContainerSpec {
        name: "puller".into(),
        image: puller,
        env: vec![("SOURCE_URL".into(), "http://localhost:8081/x".into())],
        mounts: vec![data],
        ..Default::default()
    })
    .await?;
    pod.start_container("puller").await?;
    let state = wait_state(&pod, "puller", "terminated", ContainerState::is_terminated).await?;
    ensure!(exit_of(&state)?.0 == 0, "{state:?}");
    let fetched =
        std::fs::read_to_string(h.dir.path().join("oci/pods/mixed/volumes/data/index.html"))?;
    ensure!(fetched == "from-linux\n", "{fetched:?}");

    // The network is kept while the wasm container still runs, and given up once it ends.
    pod.stop_container("httpd", Duration::ZERO).await?;
    let refused = pod.release_network().await;
    ensure!(
        matches!(refused, Err(skiff_runtime::Error::ContainerState { ref container, .. }) if container == "hello"),
        "released while the wasm container runs: {refused:?}"
    );
    pod.stop_container("hello", Duration::ZERO).await?;
    pod.release_network().await?;
    ensure!(pod.ip().is_none(), "IP after the release: {:?}", pod.ip());
    pod.remove(Duration::from_secs(1)).await?;
    h.finish().await;
    Ok(())
}

/// Runs `command` in the container and returns its exit code and standard output.
async fn exec_out(
    pod: &Arc<dyn PodSandbox>,
    name: &str,
    command: &[&str],
) -> Result<(i32, String)> {
    use tokio::io::AsyncReadExt;
    let mut p = pod
        .exec(
            name,
            skiff_runtime::ExecRequest {
                command: command.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
        .await?;
    let mut out = String::new();
    if let Some(mut stdout) = p.stdout.take() {
        tokio::time::timeout(HANG, stdout.read_to_string(&mut out)).await??;
    }
    let code = tokio::time::timeout(HANG, p.exit).await??;
    Ok((code, out))
}

/// `exec` runs commands in a running container with their exit code and output; a file-set
/// volume updated while bound in shows the new files; a hostPath and a subPath are bound;
/// usage is read from the container's cgroup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_oci_exec_volumes_and_usage() -> Result<()> {
    let test = "root_oci_exec_volumes_and_usage";
    if let Some(skip) = oci_skip(test) {
        println!("{skip}");
        return Ok(());
    }
    let h = OciHarness::new(test, 237).await?;
    let host_dir = h.dir.path().join("host-dir");
    std::fs::create_dir_all(&host_dir)?;
    std::fs::write(host_dir.join("h.txt"), "from-host\n")?;
    let mut files = std::collections::BTreeMap::new();
    files.insert(
        "a.txt".to_string(),
        skiff_runtime::FileContent::new(&b"one\n"[..]),
    );
    let mut spec = OciHarness::pod_spec(h.net, "exec", 1);
    spec.volumes = vec![
        VolumeSpec {
            name: "cfg".into(),
            source: VolumeSource::Files {
                files: files.clone(),
                sensitive: false,
            },
        },
        VolumeSpec {
            name: "host".into(),
            source: VolumeSource::HostPath {
                path: host_dir.clone(),
            },
        },
        VolumeSpec {
            name: "data".into(),
            source: VolumeSource::EmptyDir { memory: false },
        },
    ];
    let pod = h.rt().create_pod(spec).await?;
    let mut c = sh("app", &h.image, "exec sleep 1000");
    c.mounts = vec![
        Mount {
            volume: "cfg".into(),
            mount_path: "/cfg".into(),
            ..Default::default()
        },
        Mount {
            volume: "host".into(),
            mount_path: "/host".into(),
            read_only: true,
            ..Default::default()
        },
        Mount {
            volume: "data".into(),
            mount_path: "/sub".into(),
            sub_path: Some("deep/dir".into()),
            ..Default::default()
        },
    ];
    pod.create_container(c).await?;
    pod.start_container("app").await?;
    wait_state(&pod, "app", "running", ContainerState::is_running).await?;

    ensure!(exec_out(&pod, "app", &["sh", "-c", "exit 7"]).await?.0 == 7);
    let (code, out) = exec_out(&pod, "app", &["echo", "hi"]).await?;
    ensure!(code == 0 && out == "hi\n", "{code} {out:?}");
    ensure!(exec_out(&pod, "app", &["cat", "/cfg/a.txt"]).await?.1 == "one\n");
    ensure!(exec_out(&pod, "app", &["cat", "/host/h.txt"]).await?.1 == "from-host\n");
    let (code, _) = exec_out(&pod, "app", &["touch", "/host/nope"]).await?;
    ensure!(code != 0, "a read-only hostPath mount refused a write");
    ensure!(
        exec_out(&pod, "app", &["sh", "-c", "echo x > /sub/f"])
            .await?
            .0
            == 0
    );
    ensure!(
        h.dir
            .path()
            .join("oci/pods/exec/volumes/data/deep/dir/f")
            .is_file(),
        "the subPath is inside the volume"
    );
    ensure!(
        exec_out(&pod, "app", &["cat", "/cfg/a.txt"]).await?.1 == "one\n",
        "file set before the update"
    );
    files.insert(
        "a.txt".to_string(),
        skiff_runtime::FileContent::new(&b"two\n"[..]),
    );
    pod.update_files("cfg", files).await?;
    ensure!(
        exec_out(&pod, "app", &["cat", "/cfg/a.txt"]).await?.1 == "two\n",
        "the update shows through the bind mount"
    );
    let usage = pod.usage();
    ensure!(
        usage.memory_bytes > 0,
        "memory usage from the cgroup: {usage:?}"
    );
    pod.stop_container("app", Duration::ZERO).await?;
    let e = exec_out(&pod, "app", &["true"]).await;
    ensure!(e.is_err(), "exec into a stopped container fails");
    pod.remove(Duration::ZERO).await?;
    h.finish().await;
    Ok(())
}

/// An entrypoint that does not exist: starting fails with the runtime's message naming it,
/// and the container is not running. A restarted container starts from a fresh root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_oci_missing_entrypoint_reports_the_runtime_message() -> Result<()> {
    let test = "root_oci_missing_entrypoint_reports_the_runtime_message";
    if let Some(skip) = oci_skip(test) {
        println!("{skip}");
        return Ok(());
    }
    let h = OciHarness::new(test, 238).await?;
    let pod = h
        .rt()
        .create_pod(OciHarness::pod_spec(h.net, "noentry", 1))
        .await?;
    let mut c = sh("bad", &h.image, "");
    c.linux.command = vec!["/no/such/binary".into()];
    pod.create_container(c).await?;
    let err = pod
        .start_container("bad")
        .await
        .expect_err("a missing entrypoint cannot start");
    ensure!(err.to_string().contains("/no/such/binary"), "{err}");
    ensure!(!pod.container_states()["bad"].is_running());

    // A restarted container gets a fresh writable root: the first run's file is gone.
    let script = "if [ -e /marker ]; then exit 9; fi; touch /marker; exit 3";
    pod.create_container(sh("again", &h.image, script)).await?;
    pod.start_container("again").await?;
    let first = wait_state(&pod, "again", "terminated", ContainerState::is_terminated).await?;
    ensure!(exit_of(&first)?.0 == 3, "{first:?}");
    pod.start_container("again").await?;
    let second = wait_state(&pod, "again", "terminated again", |s| {
        s.is_terminated() && started_at(s) != started_at(&first)
    })
    .await?;
    ensure!(
        exit_of(&second)?.0 == 3,
        "the root was not fresh: {second:?}"
    );
    pod.remove(Duration::ZERO).await?;
    h.finish().await;
    Ok(())
}
