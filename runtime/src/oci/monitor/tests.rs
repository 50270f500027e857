//! Containers run for real under the monitor with runc and crun (root only): exit codes, the
//! CRI log, kill, an OOM kill under a memory limit, exec, a container and monitor that outlive
//! every handle of this process, and cgroup removal. Each prints which cgroup version ran.

use std::collections::BTreeMap;
use std::path::Path;

use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::*;
use crate::exec::ExecRequest;
use crate::logs::LogOptions;
use crate::oci::cgroup;
use crate::oci::runc::{OciBinary, RuntimeKind};
use crate::oci::spec::{
    CgroupVersion, EtcFiles, SecurityOptions, SpecInput, cgroup_dirs, cgroup_path, config_json,
};
use crate::oci_image::ImageConfig;
use crate::spec::{ContainerSpec, Resources};

/// Bundles with a busybox-static root, run by one runtime; everything it made is removed on
/// drop (containers, cgroups, files).
struct Fixture {
    bin: OciBinary,
    version: CgroupVersion,
    dir: tempfile::TempDir,
    /// Names this test's pod cgroup (`/skiff/<unique>`) and prefixes container ids.
    unique: String,
    ids: Vec<String>,
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

impl Fixture {
    /// `None` (after a `SKIPPED:` line) when not root or a tool is missing.
    fn new(kind: RuntimeKind, test: &str) -> Option<Fixture> {
        if !is_root() {
            eprintln!("SKIPPED: running containers under the monitor needs root");
            return None;
        }
        skiff_tools::system(kind.name(), &format!("apt-get install {}", kind.name()))?;
        skiff_tools::system("conmon", "apt-get install conmon")?;
        let busybox = skiff_tools::system("busybox", "apt-get install busybox-static")?;
        let version = CgroupVersion::detect();
        eprintln!("{} under conmon on cgroup {version:?}", kind.name());
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::copy(&busybox, bin_dir.join("busybox")).unwrap();
        for applet in ["sh", "true", "sleep", "echo", "head", "tr", "cat"] {
            std::os::unix::fs::symlink("busybox", bin_dir.join(applet)).unwrap();
        }
        let bin = OciBinary::find(kind, None, dir.path().join("state")).unwrap();
        let unique = format!("h1-{test}-{}-{}", kind.name(), std::process::id());
        Some(Fixture {
            bin,
            version,
            dir,
            unique,
            ids: Vec::new(),
        })
    }

    /// A bundle for container `name` running `sh -c script`, with an optional memory limit.
    fn bundle(
        &mut self,
        name: &str,
        script: &str,
        memory: Option<u64>,
    ) -> (String, ContainerPaths, PathBuf) {
        let bundle = self.dir.path().join(name);
        std::fs::create_dir_all(&bundle).unwrap();
        let cgroups_path = cgroup_path(&self.unique, name).unwrap();
        let input = SpecInput {
            container: ContainerSpec {
                name: name.into(),
                resources: Resources {
                    memory_limit: memory,
                    ..Default::default()
                },
                ..Default::default()
            },
            command: vec!["sh".into(), "-c".into(), script.into()],
            args: Vec::new(),
            image: ImageConfig::default(),
            rootfs: self.dir.path().join("rootfs"),
            hostname: "h1".into(),
            netns: None,
            cgroups_path: cgroups_path.clone(),
            cgroup_version: self.version,
            volume_dirs: BTreeMap::new(),
            etc_files: EtcFiles::default(),
            security: SecurityOptions::default(),
            pids_limit: Some(64),
        };
        config_json(&input)
            .unwrap()
            .save(bundle.join("config.json"))
            .unwrap();
        let id = format!("{}-{name}", self.unique);
        self.ids.push(id.clone());
        let paths = ContainerPaths::new(bundle.clone(), bundle.join("container.log"));
        (id, paths, cgroups_path)
    }

    fn pod_cgroup(&self) -> PathBuf {
        Path::new("/skiff").join(&self.unique)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = std::process::Command::new(self.bin.program())
                .arg("--root")
                .arg(self.bin.root())
                .args(["delete", "--force", id])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = cgroup::remove(self.version, &self.pod_cgroup());
    }
}

/// The session id of a process (`/proc/PID/stat`, the fourth field after the name).
fn session(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    after_name.split_whitespace().nth(3).unwrap().to_string()
}

async fn log_lines(path: &Path) -> Vec<String> {
    crate::oci::crilog::stream(path, LogOptions::default(), std::future::ready(()))
        .map(|l| String::from_utf8_lossy(&l.line).into_owned())
        .collect()
        .await
}

async fn runs_echo_and_reports_exit_code_and_log(kind: RuntimeKind) {
    let Some(mut f) = Fixture::new(kind, "echo") else {
        return;
    };
    let (id, paths, _) = f.bundle("echo", "echo hello; echo oops >&2; exit 3", None);
    let created = create(&f.bin, &id, &paths).await.unwrap();
    assert_eq!(f.bin.state(&id).await.unwrap().unwrap().status, "created");
    f.bin.start(&id).await.unwrap();
    let exit = wait_exit(&paths, &id, created.monitor_pid).await.unwrap();
    assert_eq!(exit.code, 3);
    assert_eq!(exit_status(&paths, &id), Some(exit));
    assert_eq!(log_lines(&paths.log).await, vec!["hello", "oops"]);
    // A missing entrypoint fails with the runtime's message, at create or at start.
    let (bad, bad_paths, _) = f.bundle("bad", "true", None);
    let mut spec = oci_spec::runtime::Spec::load(bad_paths.bundle.join("config.json")).unwrap();
    let mut process = spec.process().clone().unwrap();
    process.set_args(Some(vec!["/nonexistent".into()]));
    spec.set_process(Some(process));
    spec.save(bad_paths.bundle.join("config.json")).unwrap();
    let message = match create(&f.bin, &bad, &bad_paths).await {
        Err(e) => e.to_string(),
        Ok(_) => f.bin.start(&bad).await.unwrap_err().to_string(),
    };
    assert!(message.contains("/nonexistent"), "{message}");
    f.bin.delete(&id, false).await.unwrap();
    assert_eq!(f.bin.state(&id).await.unwrap(), None);
    // Unknown ids: nothing to delete or kill.
    f.bin.delete(&id, true).await.unwrap();
    f.bin.kill(&id, 9).await.unwrap();
}

#[tokio::test]
async fn root_runc_runs_echo_under_the_monitor() {
    runs_echo_and_reports_exit_code_and_log(RuntimeKind::Runc).await;
}

#[tokio::test]
async fn root_crun_runs_echo_under_the_monitor() {
    runs_echo_and_reports_exit_code_and_log(RuntimeKind::Crun).await;
}

#[tokio::test]
async fn root_a_killed_container_exits_137_and_an_oom_kill_is_seen() {
    let Some(mut f) = Fixture::new(RuntimeKind::Runc, "kill") else {
        return;
    };
    let (id, paths, _) = f.bundle("sleeper", "sleep 100", None);
    let created = create(&f.bin, &id, &paths).await.unwrap();
    f.bin.start(&id).await.unwrap();
    // sh as PID 1 has no TERM handler: TERM does nothing, KILL ends it.
    f.bin.kill(&id, 15).await.unwrap();
    f.bin.kill(&id, 9).await.unwrap();
    let exit = wait_exit(&paths, &id, created.monitor_pid).await.unwrap();
    assert_eq!(exit.code, 137);
    f.bin.kill(&id, 9).await.unwrap();
    f.bin.delete(&id, false).await.unwrap();

    let (id, paths, cg) = f.bundle(
        "hog",
        "x=$(head -c 50000000 /dev/zero | tr '\\0' a); echo survived",
        Some(16 << 20),
    );
    let created = create(&f.bin, &id, &paths).await.unwrap();
    assert!(!cgroup::oom_killed(f.version, &cg));
    f.bin.start(&id).await.unwrap();
    let exit = wait_exit(&paths, &id, created.monitor_pid).await.unwrap();
    assert_eq!(exit.code, 137, "log: {:?}", log_lines(&paths.log).await);
    assert!(cgroup::oom_killed(f.version, &cg));
    f.bin.delete(&id, true).await.unwrap();
}

#[tokio::test]
async fn root_runc_exec_and_a_container_that_outlives_every_handle() {
    exec_and_a_container_that_outlives_every_handle(RuntimeKind::Runc).await;
}

#[tokio::test]
async fn root_crun_exec_and_a_container_that_outlives_every_handle() {
    exec_and_a_container_that_outlives_every_handle(RuntimeKind::Crun).await;
}

async fn exec_and_a_container_that_outlives_every_handle(kind: RuntimeKind) {
    let Some(mut f) = Fixture::new(kind, "exec") else {
        return;
    };
    let (id, paths, cg) = f.bundle("app", "sleep 100", None);
    let created = create(&f.bin, &id, &paths).await.unwrap();
    f.bin.start(&id).await.unwrap();

    let exec = |command: &[&str], tty: bool| ExecRequest {
        command: command.iter().map(|s| s.to_string()).collect(),
        stdin: false,
        tty,
    };
    let p = f
        .bin
        .exec(&id, &exec(&["sh", "-c", "exit 7"], false))
        .await
        .unwrap();
    assert_eq!(p.exit.await.unwrap(), 7);
    let mut p = f
        .bin
        .exec(&id, &exec(&["echo", "hi"], false))
        .await
        .unwrap();
    let mut out = String::new();
    p.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert_eq!(out, "hi\n");
    assert_eq!(p.exit.await.unwrap(), 0);
    let mut p = f
        .bin
        .exec(&id, &exec(&["sh", "-c", "echo on a tty; exit 4"], true))
        .await
        .unwrap();
    assert!(p.stderr.is_none());
    let mut out = String::new();
    p.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert!(out.contains("on a tty"), "{out:?}");
    assert_eq!(p.exit.await.unwrap(), 4);

    // Every handle of this process gone: the monitor and the container live on, detached.
    let (kind, root) = (f.bin.kind(), f.bin.root().to_path_buf());
    f.bin = OciBinary::find(kind, None, root).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", created.monitor_pid)).unwrap();
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(
        ppid,
        std::process::id().to_string(),
        "the monitor is a child of this process"
    );
    // Its own session: a signal to the node's process group or session does not reach it.
    assert_ne!(
        session(created.monitor_pid),
        session(std::process::id() as i32)
    );
    let state = f.bin.state(&id).await.unwrap().unwrap();
    assert_eq!(state.status, "running");
    assert_eq!(state.pid, created.pid);
    assert!(cgroup::usage(f.version, &cg).memory_bytes > 0);

    f.bin.kill(&id, 9).await.unwrap();
    let exit = wait_exit(&paths, &id, created.monitor_pid).await.unwrap();
    assert_eq!(exit.code, 137);
    f.bin.delete(&id, false).await.unwrap();
    cgroup::remove(f.version, &f.pod_cgroup()).unwrap();
    let root = Path::new(cgroup::CGROUP_ROOT);
    assert_eq!(
        cgroup_dirs(f.version, root, &cg).unwrap(),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        cgroup_dirs(f.version, root, &f.pod_cgroup()).unwrap(),
        Vec::<PathBuf>::new()
    );
}

/// The cost floor of a container: create (under the monitor), start and the exit of
/// `/bin/true`, printed as the median of a few runs for each runtime. Nothing is asserted
/// about the time.
#[tokio::test]
async fn root_measure_create_start_wait_of_true() {
    for kind in [RuntimeKind::Runc, RuntimeKind::Crun] {
        let Some(mut f) = Fixture::new(kind, "time") else {
            continue;
        };
        let mut times = Vec::new();
        for i in 0..5 {
            let (id, paths, _) = f.bundle(&format!("t{i}"), "true", None);
            let t = std::time::Instant::now();
            let created = create(&f.bin, &id, &paths).await.unwrap();
            f.bin.start(&id).await.unwrap();
            let exit = wait_exit(&paths, &id, created.monitor_pid).await.unwrap();
            times.push(t.elapsed());
            assert_eq!(exit.code, 0);
            f.bin.delete(&id, true).await.unwrap();
        }
        times.sort();
        eprintln!(
            "{}: create+start+wait of true under conmon: median {:?} (runs {times:?})",
            kind.name(),
            times[times.len() / 2]
        );
    }
}
