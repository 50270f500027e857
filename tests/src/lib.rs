//! Harness for Skiff's end-to-end tests: starts real `skiff` processes on free ports with their
//! own data directories, hands out clients for them (kubectl, kube-rs, Python), and tears them
//! down. Every end-to-end test in `tests/tests/` builds on it; [`cluster`] assembles whole
//! clusters from these processes.
//!
//! A process is ready when the file it was given with `--ready-file` exists: `skiff` writes it
//! atomically once serving, with its listening addresses (see `cli/src/ready.rs`). Logs are
//! for people; the harness never reads them to learn anything.

pub mod client;
pub mod cluster;
pub mod fixtures;
pub mod pods;
pub mod tools;
pub mod wait;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

pub use cluster::{Cluster, ClusterBuilder};
pub use fixtures::{image_of, node_of};
pub use wait::{wait_for, wait_object, wait_object_map};

/// The `skiff` binary under test: `$SKIFF_BIN`, else the one cargo built beside this test.
pub fn skiff_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SKIFF_BIN") {
        return PathBuf::from(p);
    }
    // Test executables live in target/<profile>/deps/; the binary in target/<profile>/.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is in target/<profile>/deps");
    let bin = profile_dir.join("skiff");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build -p skiff` (make test does)",
        bin.display()
    );
    bin
}

/// The repository root, for samples and scripts.
pub fn repo_root() -> PathBuf {
    skiff_tools::repo_root()
}

/// Whether the e2e servers keep their objects in etcd (`SKIFF_TEST_STORE=etcd`) rather than in
/// their own redb store (unset or `redb`).
pub fn test_store_is_etcd() -> bool {
    match std::env::var("SKIFF_TEST_STORE").as_deref() {
        Ok("etcd") => true,
        Ok("") | Ok("redb") | Err(_) => false,
        Ok(other) => panic!("SKIFF_TEST_STORE={other:?}: expected etcd or redb"),
    }
}

/// Under `SKIFF_TEST_STORE=etcd`, a fresh test etcd with its data in `DIR/etcd` (failing when
/// `etcd` is missing: the run asked for it); otherwise `None`.
fn test_etcd(dir: &Path) -> Result<Option<skiff_testkit::etcd::Etcd>> {
    if !test_store_is_etcd() {
        return Ok(None);
    }
    let etcd = skiff_testkit::etcd::Etcd::start(&dir.join("etcd"))
        .context("starting the test etcd (SKIFF_TEST_STORE=etcd; apt-get install etcd-server)")?;
    Ok(Some(etcd))
}

/// A `skiff server` process with its own data directory (and, under `SKIFF_TEST_STORE=etcd`,
/// its own test etcd).
pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    pub url: String,
    pub kubeconfig: PathBuf,
    extra_args: Vec<String>,
    /// The server's own test etcd under `SKIFF_TEST_STORE=etcd` (kept across `restart`).
    etcd: Option<skiff_testkit::etcd::Etcd>,
    /// Its files in `dir`: `NAME.log`, `NAME.ready` (`server` unless started with
    /// [`Server::start_in`]).
    name: String,
}

impl Server {
    /// Starts a server on a free loopback port with a fresh data directory.
    pub fn start() -> Result<Server> {
        Self::start_with(&[])
    }

    /// As `start`, with extra `skiff server` flags.
    pub fn start_with(extra: &[&str]) -> Result<Server> {
        let tempdir = tempfile::Builder::new().prefix("skiff-e2e-").tempdir()?;
        let dir = tempdir.path().to_path_buf();
        let mut server = Server {
            child: None,
            dir,
            _tempdir: Some(tempdir),
            url: String::new(),
            kubeconfig: PathBuf::new(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            etcd: None,
            name: "server".into(),
        };
        server.etcd = test_etcd(&server.dir)?;
        server.spawn("127.0.0.1:0")?;
        Ok(server)
    }

    /// A server on the data directory `dir`, which other servers may share (several API servers
    /// on one etcd: pass `--etcd-servers` in `extra`), logging to `DIR/NAME.log`. The directory
    /// is the caller's to remove.
    pub fn start_in(dir: &Path, name: &str, extra: &[&str]) -> Result<Server> {
        let mut server = Server {
            child: None,
            dir: dir.to_path_buf(),
            _tempdir: None,
            url: String::new(),
            kubeconfig: PathBuf::new(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            etcd: None,
            name: name.to_string(),
        };
        server.spawn("127.0.0.1:0")?;
        Ok(server)
    }

    /// The servers sharing this one's data directory as reached through `url` (a load balancer
    /// before them): no process of its own (dropping it stops nothing), an admin kubeconfig
    /// `DIR/NAME.kubeconfig` naming `url`, and nodes started with it (their minted kubeconfigs)
    /// reach the servers through `url` too.
    pub fn through(&self, url: &str, name: &str) -> Result<Server> {
        let ca = std::fs::read_to_string(self.dir.join("pki/ca.crt"))
            .context("reading the server's CA")?;
        let kubeconfig = self.dir.join(format!("{name}.kubeconfig"));
        let text = skiff_api::pki::kubeconfig(url, &ca, "admin", &self.token()?);
        skiff_api::pki::write_private(&kubeconfig, text.as_bytes(), 0o600)?;
        Ok(Server {
            child: None,
            dir: self.dir.clone(),
            _tempdir: None,
            url: url.to_string(),
            kubeconfig,
            extra_args: Vec::new(),
            etcd: None,
            name: name.to_string(),
        })
    }

    fn spawn(&mut self, listen: &str) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", self.name)))?;
        // A file left by an earlier run of this data directory (killed) says nothing.
        let ready_file = self.dir.join(format!("{}.ready", self.name));
        let _ = std::fs::remove_file(&ready_file);
        let child = Command::new(skiff_bin())
            .arg("server")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(listen)
            .arg("--ready-file")
            .arg(&ready_file)
            .args(&self.extra_args)
            .args(
                self.etcd
                    .iter()
                    .flat_map(|etcd| ["--etcd-servers".to_owned(), etcd.endpoint()]),
            )
            .env(
                "SKIFF_LOG",
                std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(child_env())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting skiff server")?;
        let child = self.child.insert(child);
        let ready = wait_ready_file(&ready_file, child, Duration::from_secs(60))
            .with_context(|| format!("skiff server did not come up; log:\n{}", self.log()))?;
        self.url = ready_field(&ready, "apiServer")?;
        self.kubeconfig = PathBuf::from(ready_field(&ready, "kubeconfig")?);
        Ok(())
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Everything the server wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// Kills the process with SIGKILL (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop with SIGTERM and waits for it.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        self.terminate()?;
        self.wait_exit(Duration::from_secs(30))
    }

    /// Sends SIGTERM to the process without waiting for it to end.
    pub fn terminate(&self) -> Result<()> {
        let Some(child) = &self.child else {
            bail!("server is not running")
        };
        terminate(child)
    }

    /// Waits up to `timeout` for the process to end (after [`Server::terminate`]); kills it
    /// when it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let Some(child) = self.child.take() else {
            bail!("server is not running")
        };
        wait_exit(child, timeout, "server")
    }

    /// Starts the server again on the same data directory and port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let listen = format!("127.0.0.1:{}", self.port());
        self.spawn(&listen)
    }

    /// A kube-rs client from the admin kubeconfig.
    pub async fn client(&self) -> Result<kube::Client> {
        client::client(&self.kubeconfig).await
    }

    /// The admin kubeconfig's bearer token.
    pub fn token(&self) -> Result<String> {
        client::bearer_token(&self.kubeconfig)
    }

    /// Runs a kubectl binary against this server with a fresh discovery cache.
    pub fn kubectl(&self, kubectl: &Path, args: &[&str]) -> Result<Output> {
        self.kubectl_stdin(kubectl, args, None)
    }

    /// As `kubectl`, feeding `stdin` (for `apply -f -`).
    pub fn kubectl_stdin(
        &self,
        kubectl: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Output> {
        let cache = self.dir.join("kube-cache");
        let mut cmd = Command::new(kubectl);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {}", kubectl.display()))?;
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(input.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- skiff server log ({}) ---\n{}",
                self.dir.display(),
                self.log()
            );
        }
        // Before its directory goes.
        drop(self.etcd.take());
    }
}

/// Sends SIGTERM to `child`.
fn terminate(child: &Child) -> Result<()> {
    let pid = i32::try_from(child.id()).context("a process id")?;
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -TERM {pid} failed ({status})");
    }
    Ok(())
}

/// Waits up to `timeout` for `child` to end; kills it (and fails) when it does not.
fn wait_exit(mut child: Child, timeout: Duration, what: &str) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not stop within {timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the ready file `path` exists (`skiff ... --ready-file`, written atomically once
/// the process serves) and returns its object; fails as soon as `child` exits, or after
/// `timeout`.
pub fn wait_ready_file(
    path: &Path,
    child: &mut Child,
    timeout: Duration,
) -> Result<Map<String, Value>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return match serde_json::from_str(&text)? {
                Value::Object(object) => Ok(object),
                other => bail!("{} holds {other}, not an object", path.display()),
            };
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the process exited ({status}) before writing {}",
                path.display()
            );
        }
        if Instant::now() > deadline {
            bail!("no ready file {} within {timeout:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The string `key` of a ready file's object.
fn ready_field(ready: &Map<String, Value>, key: &str) -> Result<String> {
    ready
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("the ready file has no {key:?}: {ready:?}"))
}

/// Asserts a command succeeded, returning its stdout.
pub fn ok(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "command failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A `skiff registry` process on a free loopback port with its own data directory.
pub struct Registry {
    child: Option<Child>,
    pub dir: PathBuf,
    _tempdir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub token: String,
}

impl Registry {
    /// Starts a registry.
    pub fn start() -> Result<Registry> {
        let tempdir = tempfile::Builder::new()
            .prefix("skiff-e2e-registry-")
            .tempdir()?;
        let dir = tempdir.path().to_path_buf();
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let ready_file = dir.join("registry.ready");
        let child = Command::new(skiff_bin())
            .args(["registry", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--ready-file")
            .arg(&ready_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting skiff registry")?;
        let mut registry = Registry {
            child: Some(child),
            dir: dir.clone(),
            _tempdir: tempdir,
            addr: String::new(),
            token: String::new(),
        };
        let child = registry.child.as_mut().expect("just started");
        let ready = wait_ready_file(&ready_file, child, Duration::from_secs(60))
            .with_context(|| format!("skiff registry did not come up; log:\n{}", registry.log()))?;
        registry.addr = ready_field(&ready, "registry")?;
        let token_file = ready_field(&ready, "registryTokenFile")?;
        registry.token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("reading the registry token {token_file}"))?
            .trim()
            .to_string();
        Ok(registry)
    }

    /// Everything the registry wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// Pushes a wasm file with `skiff push` as `ADDR/NAME`; returns the full reference.
    pub fn push(&self, file: &Path, name: &str) -> Result<String> {
        let reference = format!("{}/{name}", self.addr);
        let out = Command::new(skiff_bin())
            .arg("push")
            .arg(file)
            .arg(&reference)
            .arg("--cache-dir")
            .arg(self.dir.join("push-cache"))
            .env("SKIFF_REGISTRY_TOKEN", &self.token)
            .output()
            .context("running skiff push")?;
        if !out.status.success() {
            bail!(
                "skiff push {} {reference} failed: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(reference)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `skiff node` process registered with a [`Server`], with its own data directory.
pub struct Node {
    child: Option<Child>,
    pub dir: PathBuf,
    _tempdir: tempfile::TempDir,
    pub name: String,
    /// The loopback address the node listens on (`127.0.0.1` unless started with
    /// [`Node::start_at`]).
    pub ip: String,
    /// The node endpoint, `IP:PORT`.
    pub addr: String,
    /// The ingress (plain HTTP), `IP:PORT`, when started with one.
    pub ingress: Option<String>,
    /// The ingress's HTTPS address, `IP:PORT`, when started with one.
    pub ingress_tls: Option<String>,
    /// A bearer token the endpoint accepts: the API server's own node credential
    /// (`kube-apiserver-kubelet-client`, `DATA/pki/kubelet-client.token`), never a user's.
    pub token: String,
    /// The node's own kubeconfig (`system:node:NAME` in `system:nodes`), minted with the
    /// server's CA.
    pub kubeconfig: PathBuf,
    /// The `skiff node` arguments it was started with ([`Node::restart`] uses them again).
    args: Vec<std::ffi::OsString>,
}

/// Environment variables given to every `skiff` server and node a test starts from now on,
/// besides the test's own (nextest runs each test in a process of its own).
static CHILD_ENV: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Gives every `skiff` server and node started after this call `key=value` in its environment
/// (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`).
pub fn set_child_env(key: &str, value: &str) {
    let mut env = CHILD_ENV.lock().unwrap_or_else(|e| e.into_inner());
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
}

fn child_env() -> Vec<(String, String)> {
    CHILD_ENV.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Writes to `path` a kubeconfig for node `name` of `server`: a client certificate
/// `system:node:NAME` in `system:nodes` signed by the server's CA (what `skiff kubeconfig
/// --data-dir DIR --user system:node:NAME --group system:nodes` makes).
pub fn mint_node_kubeconfig(server: &Server, name: &str, path: &Path) -> Result<()> {
    mint_kubeconfig(
        server,
        &format!("system:node:{name}"),
        &["system:nodes"],
        path,
    )
}

/// How a test node gets its credential.
enum Credential<'a> {
    /// A kubeconfig minted with the server's CA, valid for this long.
    Minted(Duration),
    /// TLS bootstrap with this bootstrap-token kubeconfig.
    Bootstrap(&'a Path),
}

/// Writes to `path` a client-certificate kubeconfig for `user` in `groups`, signed by the
/// server's CA, valid for a day.
pub fn mint_kubeconfig(server: &Server, user: &str, groups: &[&str], path: &Path) -> Result<()> {
    mint_kubeconfig_valid_for(server, user, groups, path, Duration::from_secs(24 * 3600))
}

/// As [`mint_kubeconfig`], valid for `valid_for` (from five minutes ago, as the CA backdates).
pub fn mint_kubeconfig_valid_for(
    server: &Server,
    user: &str,
    groups: &[&str],
    path: &Path,
    valid_for: Duration,
) -> Result<()> {
    let pki = server.dir.join("pki");
    let ca = std::fs::read_to_string(pki.join("ca.crt")).context("reading the server's CA")?;
    let ca_key = std::fs::read_to_string(pki.join("ca.key")).context("reading the CA key")?;
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let (cert, key) = skiff_api::pki::client_certificate(&ca, &ca_key, user, &groups, valid_for)?;
    let text = skiff_api::pki::client_kubeconfig(&server.url, &ca, user, &cert, &key, None);
    skiff_api::pki::write_private(path, text.as_bytes(), 0o600)?;
    Ok(())
}

/// The API server's own node credential (`DATA/pki/kubelet-client.token`), which node
/// endpoints accept.
pub fn kubelet_client_token(server: &Server) -> Result<String> {
    let path = server.dir.join("pki").join("kubelet-client.token");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

impl Node {
    /// Starts a node named `name` against `server`, with a free endpoint port.
    pub fn start(server: &Server, name: &str) -> Result<Node> {
        Self::start_with(server, name, &[])
    }

    /// As `start`, with extra `skiff node` flags.
    pub fn start_with(server: &Server, name: &str, extra: &[&str]) -> Result<Node> {
        Self::start_at(server, name, "127.0.0.1", false, extra)
    }

    /// As `start_with`, listening on the loopback address `ip` (e.g. `127.0.0.3`; Linux
    /// answers on all of 127.0.0.0/8 without setup); with `ingress`, the node also serves its
    /// ingress on `ip` (`--ingress-listen IP:0 --ingress-tls-listen IP:0`), and so its NodePorts.
    pub fn start_at(
        server: &Server,
        name: &str,
        ip: &str,
        ingress: bool,
        extra: &[&str],
    ) -> Result<Node> {
        Self::spawn(
            server,
            name,
            ip,
            ingress,
            extra,
            Credential::Minted(Duration::from_secs(24 * 3600)),
        )
    }

    /// As `start_with`, with a minted client certificate valid for `valid_for` only (the node
    /// must rotate it before it expires).
    pub fn start_with_certificate_valid_for(
        server: &Server,
        name: &str,
        valid_for: Duration,
        extra: &[&str],
    ) -> Result<Node> {
        Self::spawn(
            server,
            name,
            "127.0.0.1",
            false,
            extra,
            Credential::Minted(valid_for),
        )
    }

    /// As `start_with`, joining through TLS bootstrap: the node gets no kubeconfig, only
    /// `bootstrap` (a kubeconfig with a bootstrap token), and writes its own to `self.kubeconfig`.
    pub fn start_bootstrapping(
        server: &Server,
        name: &str,
        bootstrap: &Path,
        extra: &[&str],
    ) -> Result<Node> {
        Self::spawn(
            server,
            name,
            "127.0.0.1",
            false,
            extra,
            Credential::Bootstrap(bootstrap),
        )
    }

    fn spawn(
        server: &Server,
        name: &str,
        ip: &str,
        ingress: bool,
        extra: &[&str],
        credential: Credential<'_>,
    ) -> Result<Node> {
        let any_port = format!("{ip}:0");
        let mut listen = vec!["--listen", any_port.as_str()];
        if ingress {
            listen.extend([
                "--ingress-listen",
                any_port.as_str(),
                "--ingress-tls-listen",
                any_port.as_str(),
            ]);
        }
        let tempdir = tempfile::Builder::new()
            .prefix("skiff-e2e-node-")
            .tempdir()?;
        let dir = tempdir.path().to_path_buf();
        let ready_file = dir.join("node.ready");
        let kubeconfig = dir.join("node.kubeconfig");
        let mut credentials = Vec::new();
        match credential {
            Credential::Bootstrap(file) => credentials.extend([
                "--bootstrap-kubeconfig".into(),
                file.to_path_buf().into_os_string(),
            ]),
            Credential::Minted(valid_for) => mint_kubeconfig_valid_for(
                server,
                &format!("system:node:{name}"),
                &["system:nodes"],
                &kubeconfig,
                valid_for,
            )?,
        }
        let mut args: Vec<std::ffi::OsString> = vec!["node".into(), "--kubeconfig".into()];
        args.push(kubeconfig.clone().into());
        args.extend(credentials);
        args.extend(["--name".into(), name.into()]);
        args.extend(listen.iter().map(Into::into));
        args.extend(["--data-dir".into(), dir.join("data").into()]);
        args.extend(["--ready-file".into(), ready_file.into()]);
        // Linux containers only where a test asks for them: a node running `oci` puts a
        // bridge and addresses on the host, which tests running side by side must not share.
        if !extra.contains(&"--runtimes") {
            args.extend(["--runtimes".into(), "wasm".into()]);
        }
        args.extend(extra.iter().map(Into::into));
        let mut node = Node {
            child: None,
            dir: dir.clone(),
            _tempdir: tempdir,
            name: name.to_string(),
            ip: ip.to_string(),
            addr: String::new(),
            ingress: None,
            ingress_tls: None,
            token: kubelet_client_token(server)?,
            kubeconfig,
            args,
        };
        node.launch(ingress)?;
        Ok(node)
    }

    /// Runs `skiff node` with `self.args`, appending to its log, and waits for its ready file.
    fn launch(&mut self, ingress: bool) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))?;
        let ready_file = self.dir.join("node.ready");
        // A file left by an earlier run (killed) says nothing.
        let _ = std::fs::remove_file(&ready_file);
        let child = Command::new(skiff_bin())
            .args(&self.args)
            .env(
                "SKIFF_LOG",
                std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(child_env())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting skiff node")?;
        let child = self.child.insert(child);
        let ready = wait_ready_file(&ready_file, child, Duration::from_secs(120))
            .with_context(|| format!("skiff node did not come up; log:\n{}", self.log()))?;
        self.addr = ready_field(&ready, "nodeEndpoint")?;
        if ingress {
            self.ingress = Some(ready_field(&ready, "ingress")?);
            self.ingress_tls = Some(ready_field(&ready, "ingressTls")?);
        }
        Ok(())
    }

    /// Starts the node again (after [`Node::kill`] or [`Node::terminate`] and
    /// [`Node::wait_exit`]) with the same arguments and data directory; its ports are new.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let ingress = self.ingress.is_some();
        self.launch(ingress)
    }

    /// Sends SIGTERM to the process without waiting for it to end.
    pub fn terminate(&self) -> Result<()> {
        let Some(child) = &self.child else {
            bail!("node is not running")
        };
        terminate(child)
    }

    /// Waits up to `timeout` for the process to end (after [`Node::terminate`]); kills it
    /// when it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let Some(child) = self.child.take() else {
            bail!("node is not running")
        };
        wait_exit(child, timeout, "node")
    }

    /// Everything the node wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// `GET path` on the node endpoint with the bearer token (HTTP/1.0, so the body is
    /// close-delimited); returns the status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        self.request(path, Some(&self.token))
    }

    /// `GET path` on the node endpoint with the given token (or none).
    pub fn request(&self, path: &str, token: Option<&str>) -> Result<(u16, String)> {
        http_get(&self.addr, path, token, Duration::from_secs(30))
    }

    /// The process id of the `skiff node` process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL (no clean shutdown: its Lease is no longer renewed and
    /// its pods stop with it).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP answer read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `addr` (`IP:PORT`) with the `Host` header `host` (an ingress's virtual host),
/// over a fresh connection with HTTP/1.0 so the body is close-delimited; `timeout` bounds
/// connecting and each read.
pub fn http_request(addr: &str, host: &str, path: &str, timeout: Duration) -> Result<HttpAnswer> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr:?} is not IP:PORT"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("an HTTP response with headers, not {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("an HTTP status line in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// `GET path` on `addr` (`HOST:PORT`) over a fresh connection, with a bearer token (or none)
/// and HTTP/1.0 so the body is close-delimited; `timeout` bounds connecting and each read.
/// Returns the status and the body.
pub fn http_get(
    addr: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr:?} is not HOST:PORT"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("an HTTP response with headers")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP status line")?;
    Ok((status, body.to_string()))
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- skiff node log ({}) ---\n{}",
                self.dir.display(),
                self.log()
            );
        }
    }
}

/// The `skiff up` process, killed if the test ends early, and its test etcd under
/// `SKIFF_TEST_STORE=etcd` (stopped after it).
pub struct Up(pub Child, pub Option<skiff_testkit::etcd::Etcd>);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `skiff up` (wasm runtime only, every address on a free loopback port) in `dir`, its
/// log in `dir/up.log`: the process, its kubeconfig and its ingress address.
pub fn start_up(dir: &Path) -> (Up, String, String) {
    let (up, ready) = start_up_with(dir, &[]);
    let field = |key: &str| {
        ready
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no {key:?} in the ready file {ready:?}"))
            .to_string()
    };
    (up, field("kubeconfig"), field("ingress"))
}

/// [`start_up`] with `extra` arguments to `skiff up` (e.g. `--node-name`): the process and its
/// whole ready file.
pub fn start_up_with(dir: &Path, extra: &[&str]) -> (Up, Map<String, Value>) {
    let mut up = spawn_up(dir, extra);
    let ready = wait_ready_file(&dir.join("up.ready"), &mut up.0, Duration::from_secs(120))
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\n{}",
                std::fs::read_to_string(dir.join("up.log")).unwrap_or_default()
            )
        });
    (up, ready)
}

/// Runs `skiff up` as [`start_up_with`] does (ready file `dir/up.ready`, log `dir/up.log`)
/// without waiting for it to be ready.
pub fn spawn_up(dir: &Path, extra: &[&str]) -> Up {
    let ready_file = dir.join("up.ready");
    let _ = std::fs::remove_file(&ready_file);
    let log = std::fs::File::create(dir.join("up.log")).unwrap();
    let etcd = test_etcd(dir).expect("the test etcd starts");
    let etcd_args: Vec<String> = etcd
        .iter()
        .flat_map(|etcd| ["--etcd-servers".to_owned(), etcd.endpoint()])
        .collect();
    let child = Command::new(skiff_bin())
        .arg("up")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(&etcd_args)
        .args(["--runtimes", "wasm"])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--registry-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--node-listen",
            "127.0.0.1:0",
            "--ingress-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--ready-file")
        .arg(&ready_file)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("skiff up starts");
    Up(child, etcd)
}

/// Acknowledged writes lost: the names in `acknowledged` that the ConfigMaps `api` lists with
/// `params` do not hold, and how many ConfigMaps the list found.
pub async fn lost_config_maps(
    api: &kube::Api<k8s_openapi::api::core::v1::ConfigMap>,
    params: &kube::api::ListParams,
    acknowledged: &[String],
) -> Result<(Vec<String>, usize)> {
    let found: std::collections::HashSet<String> = api
        .list(params)
        .await
        .context("listing the written ConfigMaps")?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost = acknowledged
        .iter()
        .filter(|n| !found.contains(*n))
        .cloned()
        .collect();
    Ok((lost, found.len()))
}
