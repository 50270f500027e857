//! A local single-member etcd (Debian's `etcd` binary) on free loopback ports, for tests and
//! benchmarks: the store's conformance suite, the e2e harness (`SKIFF_TEST_STORE=etcd`) and
//! `skiff_testkit::etcd`, which re-exports it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to answer on its client port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `etcd` binary on `PATH`; `None` (after printing `SKIPPED: ...`) when it is missing, or a
/// panic when `SKIFF_REQUIRE_TOOLS` is set.
pub fn available() -> Option<PathBuf> {
    skiff_tools::system("etcd", "apt-get install etcd-server")
}

/// A running etcd; dropping it kills the process (its data stays in the directory).
#[derive(Debug)]
pub struct Etcd {
    child: Option<Child>,
    client_port: u16,
    dir: PathBuf,
    /// "ready" lines already in the log before this start (the log is appended to).
    starts_seen: usize,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

impl Etcd {
    /// Starts etcd with its data (and its log, `etcd.log`) in `dir`, and waits until its client
    /// port accepts connections. Fails if `etcd` is not on `PATH` (check `available()` first).
    pub fn start(dir: &Path) -> std::io::Result<Etcd> {
        let mut last_error = None;
        // A port picked free may be taken before etcd binds it: try a few times.
        for _ in 0..3 {
            match Self::try_start(dir) {
                Ok(etcd) => return Ok(etcd),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("etcd did not start")))
    }

    fn try_start(dir: &Path) -> std::io::Result<Etcd> {
        std::fs::create_dir_all(dir)?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let starts_seen = std::fs::read_to_string(dir.join("etcd.log"))
            .unwrap_or_default()
            .matches("serving client traffic")
            .count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg("--name=skiff-test")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=skiff-test={peer}"))
            // The API accepts request bodies up to 3 MiB: let etcd take such an object.
            .arg("--max-request-bytes=4194304")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .env_remove("ETCDCTL_API")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut etcd = Etcd {
            child: Some(child),
            client_port,
            dir: dir.to_path_buf(),
            starts_seen,
        };
        etcd.wait_ready()?;
        Ok(etcd)
    }

    fn wait_ready(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.client_port));
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(std::io::Error::other(format!(
                    "etcd exited with {status} (log: {})",
                    self.dir.join("etcd.log").display()
                )));
            }
            // The port is bound before etcd serves: wait for its own word that it is ready.
            let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
            let ready = log.matches("serving client traffic").count() > self.starts_seen;
            if ready
                && std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(std::io::Error::other(format!(
                    "etcd did not listen on {addr} within {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd (SIGKILL) and waits for it; a no-op once done.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
