//! A full disk through a real filesystem: `skiff server`'s data directory on a 32 MiB tmpfs,
//! filled by a file beside the store and then by ConfigMap writes until the API answers 507
//! (a Status saying the storage is full). Meanwhile reads and other clients keep working; once
//! the filler file is deleted writes succeed again, without a restart, and no acknowledged
//! write is lost. Needs root (to mount the tmpfs).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use skiff_tests::{Server, wait_for};

/// Bytes of data in each filling write: a few redb pages, well under the 1 MiB object limit.
const VALUE_BYTES: usize = 48 * 1024;

/// A tmpfs of `size` mounted on a fresh directory; unmounted (lazily if still busy) on drop,
/// also when the test fails.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("skiff-full-disk-")
            .tempdir()
            .unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "skiff-full",
            ])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            Command::new("umount")
                .args(lazy.then_some("-l"))
                .arg(self.dir.path())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount {}", self.dir.path().display());
        }
    }
}

/// Writes `path` in 1 MiB pieces until the filesystem is full, then gives back `spare` bytes;
/// returns its size.
fn fill(path: &Path, spare: u64) -> u64 {
    let mut f = std::fs::File::create(path).expect("creating the filler file");
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("writing the filler file: {e}"),
        }
    }
    let size = written.saturating_sub(spare);
    f.set_len(size).expect("shrinking the filler file");
    size
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.data = Some([("v".to_string(), value.to_string())].into());
    cm
}

fn value(name: &str, bytes: usize) -> String {
    let mut v = format!("{name}:");
    while v.len() < bytes {
        v.push_str("0123456789abcdef");
    }
    v.truncate(bytes);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_a_full_disk_answers_507_and_writes_resume_when_space_returns() {
    let test = "root_a_full_disk_answers_507_and_writes_resume_when_space_returns";
    if !skiff_tools::require_root(test, "it mounts a small tmpfs for the data directory") {
        return;
    }
    if skiff_tools::system("mount", "apt-get install mount").is_none() {
        return;
    }
    // Dropped last: the server (declared after it) is killed before the unmount.
    let tmpfs = Tmpfs::mount("32m");
    let data: PathBuf = tmpfs.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start_in(&data, "server", &[]).expect("server starts");
    let writer: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let reader: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..20 {
        let name = format!("before-{i}");
        let v = value(&name, 1024);
        writer
            .create(&PostParams::default(), &config_map(&name, &v))
            .await
            .expect("a write before the disk is full");
        acknowledged.insert(name, v);
    }

    // A file beside the store takes all but 4 MiB; writes use up the rest, until one is refused.
    let filler = tmpfs.path().join("filler");
    let filled = fill(&filler, 4 << 20);
    println!("filler file: {} MiB", filled >> 20);
    let mut refused = None;
    for i in 0..2_000 {
        let name = format!("fill-{i}");
        let v = value(&name, VALUE_BYTES);
        match writer
            .create(&PostParams::default(), &config_map(&name, &v))
            .await
        {
            Ok(_) => {
                acknowledged.insert(name, v);
            }
            Err(kube::Error::Api(status)) => {
                refused = Some(status);
                break;
            }
            Err(e) => panic!(
                "write {name} failed without a Status: {e}\n{}",
                server.log()
            ),
        }
    }
    let status = refused.expect("2 000 writes of 48 KiB on a full 32 MiB disk were all accepted");
    println!(
        "{} writes acknowledged, then: {} {} {:?}",
        acknowledged.len(),
        status.code,
        status.reason,
        status.message
    );
    assert_eq!(status.code, 507, "a full disk answers 507: {status:?}");
    assert_eq!(status.reason, "InsufficientStorage", "{status:?}");
    assert!(
        status.message.contains("storage is full"),
        "the message says the storage is full: {status:?}"
    );

    // Meanwhile reads and other clients work, and writes keep being refused clearly.
    let first = reader
        .get("before-0")
        .await
        .expect("a GET while the disk is full");
    assert_eq!(
        first.data.unwrap()["v"],
        acknowledged["before-0"],
        "the object read back while the disk is full"
    );
    let listed = reader
        .list(&ListParams::default())
        .await
        .expect("a LIST while the disk is full");
    assert!(
        listed.items.len() >= acknowledged.len(),
        "the list holds every acknowledged write"
    );
    let ready = server
        .client()
        .await
        .unwrap()
        .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
        .await;
    // Ready: the server still serves reads (a load balancer keeps sending them).
    assert!(ready.is_ok(), "/readyz while the disk is full: {ready:?}");
    match writer
        .create(
            &PostParams::default(),
            &config_map("while-full", &value("w", VALUE_BYTES)),
        )
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 507, "{s:?}"),
        Ok(_) => panic!("a write succeeded on a full disk after one was refused"),
        Err(e) => panic!("a write on a full disk failed without a Status: {e}"),
    }

    // Space returns: writes succeed again on the same server process.
    std::fs::remove_file(&filler).expect("removing the filler file");
    let mut attempt = 0;
    let (name, v) = wait_for(
        "a write once space is freed",
        Duration::from_secs(30),
        || {
            attempt += 1;
            let name = format!("after-{attempt}");
            let v = value(&name, VALUE_BYTES);
            let writer = writer.clone();
            async move {
                match writer
                    .create(&PostParams::default(), &config_map(&name, &v))
                    .await
                {
                    Ok(_) => Some((name, v)),
                    Err(e) => {
                        println!("{name}: {e}");
                        None
                    }
                }
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", server.log()));
    acknowledged.insert(name, v);
    for i in 0..20 {
        let name = format!("after-more-{i}");
        let v = value(&name, VALUE_BYTES);
        writer
            .create(&PostParams::default(), &config_map(&name, &v))
            .await
            .expect("writes keep succeeding once space is freed");
        acknowledged.insert(name, v);
    }

    // Every acknowledged write is there, as written.
    let found: BTreeMap<String, String> = reader
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|cm| {
            (
                cm.metadata.name.unwrap_or_default(),
                cm.data
                    .and_then(|d| d.get("v").cloned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|(name, v)| found.get(*name) != Some(*v))
        .map(|(name, _)| name)
        .collect();
    println!(
        "{} acknowledged writes, {} lost",
        acknowledged.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // What the store said, as far as the full disk let the log be written.
    for line in server.log().lines().filter(|l| l.contains("store")) {
        println!("server log: {line}");
    }
    drop(server);
}
