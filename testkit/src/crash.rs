//! Kill -9 of the API server under write load: a real `skiff server` process on a data
//! directory, many clients creating, replacing and deleting ConfigMaps as fast as they can while
//! recording every acknowledged write, SIGKILL at a random moment, a restart on the same
//! directory timed to `/readyz` and to the first write, and a check that every acknowledged
//! write is there as acknowledged. Used by `skiff bench crash` and by the `crash_kill9` test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The namespace the writers write in.
const NAMESPACE: &str = "crash";
/// The label naming the round an object was created in.
const ROUND_LABEL: &str = "crash-round";

/// What went wrong running the crash rounds (a lost write is not an error: it is reported).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Server(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

/// How to run the crash rounds.
#[derive(Clone, Debug)]
pub struct CrashOptions {
    /// The `skiff` binary whose `skiff server` is killed.
    pub skiff: PathBuf,
    /// Directory the server's data directory is made in (removed at the end unless a write
    /// was lost).
    pub dir: PathBuf,
    /// Rounds: each ends with a SIGKILL and a restart.
    pub kills: usize,
    /// Concurrent writers, each with a client (and connections) of its own.
    pub clients: usize,
    /// The kill lands at a random moment up to this long after every writer's first
    /// acknowledged write.
    pub max_load: Duration,
    /// Seed of the writers' choices and the kill moments.
    pub seed: u64,
    /// Bytes of data in each ConfigMap.
    pub value_bytes: usize,
    /// More `skiff server` flags.
    pub server_args: Vec<String>,
    /// Keep the data directory at the end (it is always kept when a write was lost).
    pub keep: bool,
}

impl CrashOptions {
    /// 64 writers of 256-byte ConfigMaps, killed up to 2 s after they start.
    pub fn new(skiff: impl Into<PathBuf>, dir: impl Into<PathBuf>, kills: usize) -> CrashOptions {
        CrashOptions {
            skiff: skiff.into(),
            dir: dir.into(),
            kills,
            clients: 64,
            max_load: Duration::from_secs(2),
            seed: 1,
            value_bytes: 256,
            server_args: Vec::new(),
            keep: false,
        }
    }
}

/// One round: writes, the kill, the restart and the check.
#[derive(Clone, Debug, Default)]
pub struct Round {
    /// 1-based.
    pub round: usize,
    /// Writing time before the kill.
    pub load: Duration,
    /// Acknowledged creates, replaces and deletes.
    pub creates: u64,
    pub updates: u64,
    pub deletes: u64,
    /// Writes in flight when the server died (either outcome is correct for them).
    pub in_flight: u64,
    /// Of those, how many had landed.
    pub in_flight_landed: u64,
    /// Writers refused with a 4xx (none expected: each writer owns its keys).
    pub refused: Vec<String>,
    /// Process start to `/readyz` answering 200.
    pub to_ready: Duration,
    /// Process start to the first acknowledged create.
    pub to_first_write: Duration,
    /// Acknowledged writes not found as acknowledged after the restart (must stay empty).
    pub lost: Vec<String>,
}

impl Round {
    /// Acknowledged writes of the round.
    pub fn acknowledged(&self) -> u64 {
        self.creates + self.updates + self.deletes
    }
}

/// Every round, and the final check of every object ever written.
#[derive(Clone, Debug, Default)]
pub struct CrashReport {
    pub rounds: Vec<Round>,
    /// Objects the final check compared (live and deleted keys of every round).
    pub keys_checked: usize,
    /// Acknowledged writes of earlier rounds not found as acknowledged at the end.
    pub final_lost: Vec<String>,
    /// The store file at the end.
    pub store_bytes: u64,
    /// The data directory, when kept (asked for, or a write was lost).
    pub kept_dir: Option<PathBuf>,
}

impl CrashReport {
    /// Acknowledged writes over all rounds.
    pub fn acknowledged(&self) -> u64 {
        self.rounds.iter().map(Round::acknowledged).sum()
    }

    /// Acknowledged writes lost, in any round or in the final check.
    pub fn lost(&self) -> usize {
        self.rounds.iter().map(|r| r.lost.len()).sum::<usize>() + self.final_lost.len()
    }

    /// Restart times to `/readyz`, sorted.
    pub fn to_ready(&self) -> Vec<Duration> {
        sorted(self.rounds.iter().map(|r| r.to_ready))
    }

    /// Restart times to the first acknowledged write, sorted.
    pub fn to_first_write(&self) -> Vec<Duration> {
        sorted(self.rounds.iter().map(|r| r.to_first_write))
    }
}

fn sorted(it: impl Iterator<Item = Duration>) -> Vec<Duration> {
    let mut v: Vec<Duration> = it.collect();
    v.sort();
    v
}

/// The nearest-rank percentile `p` (0..=1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What a key holds after its acknowledged writes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Present { value: String, rv: String },
    Absent,
}

/// A write sent but not answered when the server died.
#[derive(Clone, Debug)]
enum Pending {
    Create(String),
    Replace(String),
    Delete,
}

/// One writer's keys: the state its acknowledged writes left, and the write in flight.
#[derive(Debug, Default)]
struct WriterLog {
    keys: BTreeMap<String, State>,
    pending: Option<(String, Pending)>,
    creates: u64,
    updates: u64,
    deletes: u64,
    refused: Vec<String>,
}

/// The `skiff server` under test; SIGKILLed on drop.
struct ServerProcess {
    child: Option<Child>,
}

impl ServerProcess {
    fn spawn(opts: &CrashOptions, data: &Path, port: u16) -> Result<(ServerProcess, Instant)> {
        let log_path = data.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        let err = log
            .try_clone()
            .map_err(io(format!("opening {}", log_path.display())))?;
        let started = Instant::now();
        let child = Command::new(&opts.skiff)
            .arg("server")
            .arg("--data-dir")
            .arg(data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(&opts.server_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {} server", opts.skiff.display())))?;
        Ok((ServerProcess { child: Some(child) }, started))
    }

    /// SIGKILL, and the exit reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Fails when the process has exited.
    fn check_running(&mut self, log: &Path) -> Result<()> {
        if let Some(child) = &mut self.child
            && let Ok(Some(status)) = child.try_wait()
        {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(Error::Server(format!(
                "skiff server exited ({status}); log {}:\n{tail}",
                log.display()
            )));
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `/readyz` until it answers 200, then creates a ConfigMap until one is acknowledged;
/// returns both times from `started`.
async fn wait_serving(
    server: &mut ServerProcess,
    log: &Path,
    kubeconfig: &Path,
    started: Instant,
    probe: &str,
) -> Result<(Duration, Duration, kube::Client)> {
    let deadline = started + Duration::from_secs(120);
    // The kubeconfig is written by the first start; later starts rewrite it the same.
    let client = loop {
        server.check_running(log)?;
        if let Ok(client) = client_from(kubeconfig).await {
            break client;
        }
        if Instant::now() > deadline {
            return Err(Error::Server(format!(
                "no kubeconfig {} within 120 s",
                kubeconfig.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let to_ready = loop {
        server.check_running(log)?;
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .expect("a valid request");
        if client.request_text(request).await.is_ok() {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            return Err(Error::Server(
                "/readyz did not answer 200 within 120 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let to_first_write = loop {
        server.check_running(log)?;
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(probe.to_string());
        match api.create(&PostParams::default(), &cm).await {
            Ok(_) => break started.elapsed(),
            // The namespace does not exist before the first round.
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let namespaces: Api<Namespace> = Api::all(client.clone());
                let mut ns = Namespace::default();
                ns.metadata.name = Some(NAMESPACE.into());
                match namespaces.create(&PostParams::default(), &ns).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(kube_err("creating the namespace")(e)),
                }
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Err(Error::Server(format!("the probe {probe} already exists")));
            }
            Err(_) => {}
        }
        if Instant::now() > deadline {
            return Err(Error::Server("no write succeeded within 120 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    Ok((to_ready, to_first_write, client))
}

async fn client_from(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::Server(format!("reading {}: {e}", kubeconfig.display())))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| Error::Server(format!("{}: {e}", kubeconfig.display())))?;
    kube::Client::try_from(config).map_err(kube_err("building a client"))
}

fn value(prefix: &str, bytes: usize) -> String {
    let mut v = prefix.to_string();
    while v.len() < bytes {
        v.push('.');
    }
    v
}

fn config_map(name: &str, round: usize, value: &str, rv: Option<&str>) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.metadata.labels = Some([(ROUND_LABEL.to_string(), round.to_string())].into());
    cm.metadata.resource_version = rv.map(str::to_string);
    cm.data = Some([("v".to_string(), value.to_string())].into());
    cm
}

/// One writer: creates (60%), replaces (25%) and deletes (15%) its own keys until the server
/// fails a request or `stop` is set.
async fn writer(
    api: Api<ConfigMap>,
    round: usize,
    id: usize,
    seed: u64,
    value_bytes: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> WriterLog {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = WriterLog::default();
    let mut live: Vec<String> = Vec::new();
    let mut next = 0usize;
    let mut writes = 0usize;
    while !stop.load(Ordering::Relaxed) {
        writes += 1;
        let pick = rng.random_range(0..100);
        let (key, pending, result) = if live.len() < 4 || pick < 60 {
            let name = format!("r{round}-c{id}-{next}");
            next += 1;
            let v = value(&format!("{name}/{writes}"), value_bytes);
            let cm = config_map(&name, round, &v, None);
            let result = api.create(&PostParams::default(), &cm).await.map(Some);
            (name, Pending::Create(v), result)
        } else if pick < 85 {
            let name = live[rng.random_range(0..live.len())].clone();
            let Some(State::Present { rv, .. }) = log.keys.get(&name) else {
                unreachable!("a live key is present")
            };
            let v = value(&format!("{name}/{writes}"), value_bytes);
            // A replace with the acknowledged resourceVersion as its precondition.
            let cm = config_map(&name, round, &v, Some(rv));
            let result = api
                .replace(&name, &PostParams::default(), &cm)
                .await
                .map(Some);
            (name, Pending::Replace(v), result)
        } else {
            let i = rng.random_range(0..live.len());
            let name = live.swap_remove(i);
            let result = api
                .delete(&name, &DeleteParams::default())
                .await
                .map(|_| None);
            (name, Pending::Delete, result)
        };
        match result {
            Ok(answer) => {
                let state = match (&pending, answer) {
                    (Pending::Create(v) | Pending::Replace(v), Some(cm)) => State::Present {
                        value: v.clone(),
                        rv: cm.metadata.resource_version.unwrap_or_default(),
                    },
                    _ => State::Absent,
                };
                match pending {
                    Pending::Create(_) => {
                        log.creates += 1;
                        live.push(key.clone());
                    }
                    Pending::Replace(_) => log.updates += 1,
                    Pending::Delete => log.deletes += 1,
                }
                log.keys.insert(key, state);
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(kube::Error::Api(status)) if status.code < 500 => {
                // A definite refusal: the write was not made.
                log.refused
                    .push(format!("{key}: {} {}", status.code, status.message));
                if matches!(pending, Pending::Delete) {
                    live.push(key);
                }
                break;
            }
            Err(_) => {
                // The server died (or failed) with the write in flight: it may have landed.
                log.pending = Some((key, pending));
                break;
            }
        }
    }
    log
}

/// What a key holds on the server: its value and resourceVersion.
type Found = BTreeMap<String, (String, String)>;

async fn list(api: &Api<ConfigMap>, params: &ListParams) -> Result<Found> {
    let mut found = Found::new();
    let mut params = params.clone().limit(2000);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(kube_err("listing the ConfigMaps"))?;
        for cm in page.items {
            let name = cm.metadata.name.unwrap_or_default();
            let v = cm
                .data
                .as_ref()
                .and_then(|d| d.get("v").cloned())
                .unwrap_or_default();
            found.insert(name, (v, cm.metadata.resource_version.unwrap_or_default()));
        }
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    Ok(found)
}

fn describe(state: &State) -> String {
    match state {
        State::Present { value, rv } => {
            format!("{:?} at resourceVersion {rv}", value.trim_end_matches('.'))
        }
        State::Absent => "deleted".into(),
    }
}

fn observed(found: Option<&(String, String)>) -> State {
    match found {
        Some((value, rv)) => State::Present {
            value: value.clone(),
            rv: rv.clone(),
        },
        None => State::Absent,
    }
}

/// Whether `seen` is what the acknowledged state `want` (exact) says.
fn matches(want: &State, seen: &State) -> bool {
    match (want, seen) {
        (State::Absent, State::Absent) => true,
        (State::Present { value, rv }, State::Present { value: v, rv: r }) => v == value && r == rv,
        _ => false,
    }
}

/// Checks the writers' logs against what the server holds; resolves the writes in flight into
/// `model` as found. Returns the lost writes and how many in-flight writes had landed.
fn check(
    logs: Vec<WriterLog>,
    found: &Found,
    model: &mut BTreeMap<String, State>,
) -> (Vec<String>, u64) {
    let mut lost = Vec::new();
    let mut landed = 0;
    for log in logs {
        let mut keys = log.keys;
        if let Some((key, pending)) = log.pending {
            let before = keys.get(&key).cloned().unwrap_or(State::Absent);
            let seen = observed(found.get(&key));
            let ok_new = match (&pending, &seen) {
                (Pending::Create(v) | Pending::Replace(v), State::Present { value, .. }) => {
                    value == v
                }
                (Pending::Delete, State::Absent) => true,
                _ => false,
            };
            if ok_new {
                landed += 1;
                keys.insert(key, seen);
            } else if matches(&before, &seen) {
                keys.insert(key, before);
            } else {
                lost.push(format!(
                    "{key}: acknowledged {} (then {pending:?} in flight), found {}",
                    describe(&before),
                    describe(&seen)
                ));
                keys.insert(key, seen);
            }
        }
        for (key, want) in keys {
            let seen = observed(found.get(&key));
            if !matches(&want, &seen) {
                lost.push(format!(
                    "{key}: acknowledged {}, found {}",
                    describe(&want),
                    describe(&seen)
                ));
            }
            model.insert(key, want);
        }
    }
    (lost, landed)
}

/// Runs `opts.kills` rounds of write load, SIGKILL, restart and check on one data directory,
/// calling `each` after every round, then checks every key of every round once more.
pub async fn run(opts: CrashOptions, mut each: impl FnMut(&Round)) -> Result<CrashReport> {
    if opts.kills == 0 || opts.clients == 0 {
        return Err(Error::Server("kills and clients must be positive".into()));
    }
    std::fs::create_dir_all(&opts.dir).map_err(io(format!("creating {}", opts.dir.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-crash-")
        .tempdir_in(&opts.dir)
        .map_err(io(format!("a directory in {}", opts.dir.display())))?;
    let data = tmp.path().join("server");
    let log = data.with_extension("log");
    let kubeconfig = data.join("admin.kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io("finding a free port"))?
        .port();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut model: BTreeMap<String, State> = BTreeMap::new();
    let mut report = CrashReport::default();

    let (mut server, started) = ServerProcess::spawn(&opts, &data, port)?;
    let (_, _, mut client) =
        wait_serving(&mut server, &log, &kubeconfig, started, "probe-0").await?;
    for round in 1..=opts.kills {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for id in 0..opts.clients {
            // A client of its own per writer, as separate programs would have.
            let c = client_from(&kubeconfig).await?;
            writers.push(tokio::spawn(writer(
                Api::namespaced(c, NAMESPACE),
                round,
                id,
                rng.random(),
                opts.value_bytes,
                stop.clone(),
                acked.clone(),
            )));
        }
        // The kill lands at a random moment once every writer could have been acknowledged.
        let loaded = Instant::now();
        while acked.load(Ordering::Relaxed) < opts.clients as u64 {
            server.check_running(&log)?;
            if loaded.elapsed() > Duration::from_secs(120) {
                return Err(Error::Server(
                    "the writers got no acknowledgement within 120 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let delay = opts.max_load.mul_f64(rng.random::<f64>());
        tokio::time::sleep(delay).await;
        server.check_running(&log)?;
        server.kill();
        let load = loaded.elapsed();
        stop.store(true, Ordering::Relaxed);
        let mut logs = Vec::new();
        for w in writers {
            logs.push(
                w.await
                    .map_err(|e| Error::Server(format!("a writer task failed: {e}")))?,
            );
        }

        let (s, started) = ServerProcess::spawn(&opts, &data, port)?;
        server = s;
        let (to_ready, to_first_write, c) = wait_serving(
            &mut server,
            &log,
            &kubeconfig,
            started,
            &format!("probe-{round}"),
        )
        .await?;
        client = c;
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
        let found = list(
            &api,
            &ListParams::default().labels(&format!("{ROUND_LABEL}={round}")),
        )
        .await?;
        let mut r = Round {
            round,
            load,
            to_ready,
            to_first_write,
            ..Default::default()
        };
        for l in &logs {
            r.creates += l.creates;
            r.updates += l.updates;
            r.deletes += l.deletes;
            r.in_flight += u64::from(l.pending.is_some());
            r.refused.extend(l.refused.iter().cloned());
        }
        let (lost, landed) = check(logs, &found, &mut model);
        r.lost = lost;
        r.in_flight_landed = landed;
        each(&r);
        report.rounds.push(r);
    }

    // Every key of every round, after all the kills.
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let found = list(&api, &ListParams::default().labels(ROUND_LABEL)).await?;
    report.keys_checked = model.len();
    for (key, want) in &model {
        let seen = observed(found.get(key));
        if !matches(want, &seen) {
            report.final_lost.push(format!(
                "{key}: acknowledged {}, found {} at the end",
                describe(want),
                describe(&seen)
            ));
        }
    }
    for key in found.keys().filter(|k| !model.contains_key(*k)) {
        report
            .final_lost
            .push(format!("{key}: present at the end, never written"));
    }
    report.store_bytes = std::fs::metadata(data.join("store.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    server.kill();
    if opts.keep || report.lost() > 0 {
        report.kept_dir = Some(tmp.keep());
    }
    Ok(report)
}
