//! `EtcdStore`: the `Store` trait over an etcd v3 cluster, for several API servers on one store.
//!
//! One etcd key per object, `{prefix}{key}` (the default prefix `/registry` gives
//! kube-apiserver's layout, `/registry/{group}/{resource}/...`). The store's revision is etcd's:
//! an object's `mod_revision` is its `resourceVersion`. Create, update and delete are single
//! transactions that compare the key's version or mod revision, so preconditions hold across
//! every API server sharing the cluster. Lists read at one revision with etcd's own limit and
//! `more`; watches are etcd watches from `after + 1` with previous values and progress
//! notifications. History: etcd's compaction; a background pass (as kube-apiserver's) compacts
//! to `current - compaction_retain` every `compaction_interval`, and whatever any server
//! compacted is found again by probing reads (etcd answers "compacted" for any read below its
//! compaction revision). Durability is etcd's: a write is acknowledged once the etcd cluster
//! committed it. etcd refuses requests over its `--max-request-bytes` (1.5 MiB by default) while
//! the API takes bodies up to 3 MiB: raise it (to 4 MiB, as the test etcd does) for such objects.

pub mod launch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    KvClient, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;

use crate::{
    Error, Event, EventType, KeyValue, ListOptions, ListResult, Result, Revision, Store,
    WatchStream,
};

/// Keys read per etcd range request when listing (a long list takes several, at one revision).
const RANGE_CHUNK: usize = 1000;

/// Largest gRPC message the store accepts from etcd (a page of a big list, a watch batch).
const MAX_MESSAGE: usize = 256 << 20;

/// How to reach the etcd cluster and how much history to keep.
#[derive(Clone, Debug)]
pub struct EtcdStoreOptions {
    /// Client URLs (`http://host:2379` or `https://...`); requests are balanced over them.
    pub endpoints: Vec<String>,
    /// Prepended to every key (kube-apiserver's `--etcd-prefix`, default `/registry`; a
    /// trailing `/` is dropped, as keys start with one).
    pub prefix: String,
    /// PEM CA bundle to verify the etcd servers (`--etcd-cafile`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key (`--etcd-certfile`, `--etcd-keyfile`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Revisions of history the background pass keeps (default 10 000).
    pub compaction_retain: u64,
    /// How often the background pass runs (default 60 s; `Duration::ZERO` turns it off).
    pub compaction_interval: Duration,
    /// How long to wait for the cluster when connecting (default 10 s).
    pub connect_timeout: Duration,
}

impl EtcdStoreOptions {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: "/registry".to_owned(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            compaction_retain: 10_000,
            compaction_interval: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A `Store` over etcd. Cheap to share; dropping it stops its compaction pass (watches already
/// open keep running until their streams are dropped).
pub struct EtcdStore {
    client: Client,
    /// The key prefix, as bytes.
    root: Vec<u8>,
    /// The highest compaction revision seen (by this process or found by probing).
    compacted: Arc<AtomicU64>,
    compactor: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &String::from_utf8_lossy(&self.root))
            .field("compacted", &self.compacted.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(task) = self.compactor.take() {
            task.abort();
        }
    }
}

fn backend(context: &str, err: etcd_client::Error) -> Error {
    if let etcd_client::Error::GRpcStatus(status) = &err
        && status.message().contains("request is too large")
    {
        return Error::Backend(format!(
            "etcd {context}: the object is larger than etcd accepts (etcd's --max-request-bytes, \
             1.5 MiB unless raised; the API accepts bodies up to 3 MiB)"
        ));
    }
    Error::Backend(format!("etcd {context}: {err}"))
}

/// What an etcd error means for a read at a revision.
enum ReadError {
    Compacted,
    Future,
    Other(etcd_client::Error),
}

fn classify(err: etcd_client::Error) -> ReadError {
    if let etcd_client::Error::GRpcStatus(status) = &err {
        let message = status.message();
        if message.contains("required revision has been compacted") {
            return ReadError::Compacted;
        }
        if message.contains("required revision is a future revision") {
            return ReadError::Future;
        }
    }
    ReadError::Other(err)
}

fn to_revision(revision: i64) -> Revision {
    u64::try_from(revision).unwrap_or(0)
}

fn to_etcd_revision(revision: Revision) -> Result<i64> {
    i64::try_from(revision).map_err(|_| Error::Backend(format!("revision {revision} too large")))
}

/// The first key after every key starting with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every key: etcd's "\0" range end means "to the end of the keyspace".
    vec![0]
}

fn read_file(path: &PathBuf, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Backend(format!("etcd {what} {}: {e}", path.display())))
}

impl EtcdStore {
    /// Connects to the cluster and checks it answers (within `connect_timeout`).
    pub async fn connect(opts: EtcdStoreOptions) -> Result<Self> {
        if opts.endpoints.is_empty() {
            return Err(Error::Backend("no etcd endpoints given".to_owned()));
        }
        let tls = opts.ca_file.is_some() || opts.cert_file.is_some() || opts.key_file.is_some();
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(opts.connect_timeout)
            .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10));
        if tls {
            let mut config = TlsOptions::new();
            if let Some(ca) = &opts.ca_file {
                config = config.ca_certificate(Certificate::from_pem(read_file(ca, "CA file")?));
            }
            match (&opts.cert_file, &opts.key_file) {
                (Some(cert), Some(key)) => {
                    config = config.identity(Identity::from_pem(
                        read_file(cert, "certificate file")?,
                        read_file(key, "key file")?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(Error::Backend(
                        "--etcd-certfile and --etcd-keyfile go together".to_owned(),
                    ));
                }
            }
            connect = connect.with_tls(config);
        }
        for endpoint in &opts.endpoints {
            let secure = endpoint.starts_with("https://");
            if !secure && !endpoint.starts_with("http://") {
                return Err(Error::Backend(format!(
                    "etcd endpoint {endpoint:?}: expected an http:// or https:// URL"
                )));
            }
            if secure != tls {
                return Err(Error::Backend(format!(
                    "etcd endpoint {endpoint}: {} (TLS files {})",
                    if secure {
                        "an https:// endpoint needs --etcd-cafile"
                    } else {
                        "an http:// endpoint cannot use TLS"
                    },
                    if tls { "given" } else { "not given" }
                )));
            }
        }
        let joined = opts.endpoints.join(",");
        let client = tokio::time::timeout(
            opts.connect_timeout,
            Client::connect(&opts.endpoints, Some(connect)),
        )
        .await
        .map_err(|_| Error::Backend(format!("etcd at {joined}: no answer when connecting")))?
        .map_err(|e| Error::Backend(format!("etcd at {joined}: {e}")))?;
        let mut store = Self {
            client,
            root: opts.prefix.trim_end_matches('/').as_bytes().to_vec(),
            compacted: Arc::default(),
            compactor: None,
        };
        tokio::time::timeout(opts.connect_timeout, store.current_revision())
            .await
            .map_err(|_| Error::Backend(format!("etcd at {joined}: no answer")))?
            .map_err(|e| match e {
                Error::Backend(message) => Error::Backend(format!("at {joined}: {message}")),
                other => other,
            })?;
        if !opts.compaction_interval.is_zero() {
            store.compactor = Some(tokio::spawn(compaction_pass(
                store.shallow(),
                opts.compaction_interval,
                opts.compaction_retain,
            )));
        }
        Ok(store)
    }

    /// A second handle on the same client and compaction state (without a compactor).
    fn shallow(&self) -> Self {
        Self {
            client: self.client.clone(),
            root: self.root.clone(),
            compacted: self.compacted.clone(),
            compactor: None,
        }
    }

    fn kv(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    /// `{prefix}{key}` for a key of the trait's form, `/...` (so that the prefix `/one` never
    /// reads the keys of the prefix `/one-more`).
    fn etcd_key(&self, key: &str) -> Result<Vec<u8>> {
        if !key.starts_with('/') {
            return Err(Error::Backend(format!(
                "key {key:?}: keys in the etcd store start with '/'"
            )));
        }
        Ok(self.raw_key(key))
    }

    fn raw_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.root.len() + key.len());
        full.extend_from_slice(&self.root);
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The etcd range `[start, end)` of keys starting with `prefix` (`""`: every key).
    fn range(&self, prefix: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        let start = self.etcd_key(if prefix.is_empty() { "/" } else { prefix })?;
        let end = prefix_end(&start);
        Ok((start, end))
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = kv
            .key()
            .strip_prefix(self.root.as_slice())
            .ok_or_else(|| Error::Backend("etcd returned a key outside the prefix".to_owned()))?;
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| Error::Backend("etcd returned a key that is not UTF-8".to_owned()))?;
        Ok(KeyValue {
            key,
            value: kv.value().to_vec(),
            create_revision: to_revision(kv.create_revision()),
            mod_revision: to_revision(kv.mod_revision()),
        })
    }

    /// Whether a read at `revision` (≥ 1) is still possible (not compacted away).
    async fn readable_at(&self, revision: Revision) -> Result<bool> {
        let opts = GetOptions::new()
            .with_revision(to_etcd_revision(revision)?)
            .with_count_only();
        match self.kv().get(self.raw_key("/"), Some(opts)).await {
            Ok(_) => Ok(true),
            Err(err) => match classify(err) {
                ReadError::Compacted => Ok(false),
                ReadError::Future => Ok(true),
                ReadError::Other(err) => Err(backend("read", err)),
            },
        }
    }

    fn note_compacted(&self, revision: Revision) {
        self.compacted.fetch_max(revision, Ordering::Relaxed);
    }

    /// The current value of `key` checked against the precondition, for a failed transaction.
    fn precondition_error(
        &self,
        key: &str,
        expected: Option<Revision>,
        response: &etcd_client::TxnResponse,
    ) -> Error {
        let current = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| to_revision(kv.mod_revision())),
            _ => None,
        });
        match (current, expected) {
            (Some(actual), Some(expected)) => Error::Conflict {
                key: key.to_owned(),
                expected,
                actual,
            },
            _ => Error::NotFound(key.to_owned()),
        }
    }

    /// The compares of an update or delete: the key exists, and has `expected` as mod revision.
    fn preconditions(full: &[u8], expected: Option<Revision>) -> Result<Vec<Compare>> {
        let mut compares = vec![Compare::version(full.to_vec(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(
                full.to_vec(),
                CompareOp::Equal,
                to_etcd_revision(expected)?,
            ));
        }
        Ok(compares)
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| to_revision(h.revision()))
        .ok_or_else(|| Error::Backend("etcd response without a header".to_owned()))
}

/// Compacts to `current - retain` every `interval` (as kube-apiserver's compactor does).
async fn compaction_pass(store: EtcdStore, interval: Duration, retain: u64) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let result = async {
            let current = store.current_revision().await?;
            let target = current.saturating_sub(retain);
            if target > store.compacted.load(Ordering::Relaxed) {
                store.compact(target).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(%err, "etcd compaction pass failed");
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = self
            .kv()
            .get(self.etcd_key(key)?, None)
            .await
            .map_err(|e| backend("get", e))?;
        response
            .kvs()
            .first()
            .map(|kv| self.convert(kv))
            .transpose()
    }

    async fn list(&self, opts: ListOptions) -> Result<ListResult> {
        if opts.revision == Some(0) {
            // Revision 0 is the empty state before any write.
            let compacted = self.compacted_revision().await?;
            if compacted > 0 {
                return Err(Error::Compacted {
                    requested: 0,
                    compacted,
                });
            }
            return Ok(ListResult {
                items: Vec::new(),
                revision: 0,
                more: false,
            });
        }
        let (start, end) = self.range(&opts.prefix)?;
        let from = match &opts.start_after {
            Some(after) => {
                let mut next = self.raw_key(after);
                next.push(0);
                next.max(start)
            }
            None => start,
        };
        let wanted = opts.limit.filter(|&limit| limit > 0);
        let mut from = from;
        let mut at = opts.revision;
        let mut items = Vec::new();
        // Read in chunks at one revision, so that no single etcd response grows with the list.
        loop {
            let chunk = wanted.map_or(RANGE_CHUNK, |wanted| {
                (wanted - items.len()).min(RANGE_CHUNK)
            });
            let mut get = GetOptions::new()
                .with_range(end.clone())
                .with_limit(i64::try_from(chunk).unwrap_or(i64::MAX));
            if let Some(revision) = at {
                get = get.with_revision(to_etcd_revision(revision)?);
            }
            let response = match self.kv().get(from, Some(get)).await {
                Ok(response) => response,
                Err(err) => {
                    let requested = at.unwrap_or(0);
                    return Err(match classify(err) {
                        ReadError::Compacted => Error::Compacted {
                            requested,
                            compacted: self.compacted_revision().await?,
                        },
                        ReadError::Future => Error::FutureRevision {
                            requested,
                            current: self.current_revision().await?,
                        },
                        ReadError::Other(err) => backend("list", err),
                    });
                }
            };
            if at.is_none() {
                at = Some(header_revision(response.header())?);
            }
            for kv in response.kvs() {
                items.push(self.convert(kv)?);
            }
            let more = response.more();
            let last = response.kvs().last().map(|kv| kv.key().to_vec());
            match last {
                Some(mut last) if more && wanted.is_none_or(|wanted| items.len() < wanted) => {
                    last.push(0);
                    from = last;
                }
                _ => {
                    return Ok(ListResult {
                        items,
                        revision: at.unwrap_or_default(),
                        more,
                    });
                }
            }
        }
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let full = self.etcd_key(key)?;
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.clone(), None)]);
        let response = self.kv().txn(txn).await.map_err(|e| backend("create", e))?;
        if !response.succeeded() {
            return Err(Error::AlreadyExists(key.to_owned()));
        }
        let revision = header_revision(response.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let full = self.etcd_key(key)?;
        let txn = Txn::new()
            .when(Self::preconditions(&full, expected)?)
            .and_then([TxnOp::put(
                full.clone(),
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let response = self.kv().txn(txn).await.map_err(|e| backend("update", e))?;
        if !response.succeeded() {
            return Err(self.precondition_error(key, expected, &response));
        }
        let revision = header_revision(response.header())?;
        let create_revision = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => {
                    put.prev_key().map(|kv| to_revision(kv.create_revision()))
                }
                _ => None,
            })
            .ok_or_else(|| Error::Backend("etcd update without the previous value".to_owned()))?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let full = self.etcd_key(key)?;
        let txn = Txn::new()
            .when(Self::preconditions(&full, expected)?)
            .and_then([TxnOp::delete(
                full.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let response = self.kv().txn(txn).await.map_err(|e| backend("delete", e))?;
        if !response.succeeded() {
            return Err(self.precondition_error(key, expected, &response));
        }
        let revision = header_revision(response.header())?;
        let prev = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| Error::Backend("etcd delete without the previous value".to_owned()))?;
        Ok(KeyValue {
            mod_revision: revision,
            ..self.convert(&prev)?
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let compacted = self.compacted_revision().await?;
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        let (start, end) = self.range(prefix)?;
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(to_etcd_revision(after + 1)?)
            .with_prev_key()
            .with_progress_notify();
        let stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(start, Some(options))
            .await
            .map_err(|e| backend("watch", e))?;
        let (sender, responses) = stream.split();
        let state = WatchState {
            store: self.shallow(),
            // Dropping the sender would end the etcd watch: it lives as long as the stream.
            _sender: sender,
            responses,
            pending: std::collections::VecDeque::new(),
            last: after,
            done: false,
        };
        Ok(futures::stream::unfold(state, next_watch_item).boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        if revision == 0 {
            return Ok(());
        }
        match self.kv().compact(to_etcd_revision(revision)?, None).await {
            Ok(_) => {
                self.note_compacted(revision);
                Ok(())
            }
            Err(err) => match classify(err) {
                // Already compacted at or past `revision` (by this or another server).
                ReadError::Compacted => Ok(()),
                ReadError::Future => Err(Error::FutureRevision {
                    requested: revision,
                    current: self.current_revision().await?,
                }),
                ReadError::Other(err) => Err(backend("compact", err)),
            },
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let opts = GetOptions::new().with_count_only();
        let response = self
            .kv()
            .get(self.raw_key("/"), Some(opts))
            .await
            .map_err(|e| backend("read revision", e))?;
        header_revision(response.header())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        // Compaction only moves forward: if a read at the known revision still works, nobody
        // compacted past it; otherwise find the first readable revision by bisection.
        let known = self.compacted.load(Ordering::Relaxed);
        if self.readable_at(known.max(1)).await? {
            return Ok(known);
        }
        let (mut unreadable, mut readable) = (known.max(1), self.current_revision().await?);
        while readable - unreadable > 1 {
            let middle = unreadable + (readable - unreadable) / 2;
            if self.readable_at(middle).await? {
                readable = middle;
            } else {
                unreadable = middle;
            }
        }
        self.note_compacted(readable);
        Ok(self.compacted.load(Ordering::Relaxed))
    }
}

struct WatchState {
    store: EtcdStore,
    _sender: etcd_client::WatchRequestSender,
    responses: etcd_client::WatchResponseStream,
    pending: std::collections::VecDeque<Event>,
    /// The revision of the last event delivered (or the watch's `after`).
    last: Revision,
    done: bool,
}

async fn next_watch_item(mut state: WatchState) -> Option<(Result<Event>, WatchState)> {
    loop {
        if let Some(event) = state.pending.pop_front() {
            state.last = event.revision();
            return Some((Ok(event), state));
        }
        if state.done {
            return None;
        }
        let response = match state.responses.message().await {
            Ok(Some(response)) => response,
            Ok(None) => {
                state.done = true;
                return Some((
                    Err(Error::Backend("etcd ended the watch".to_owned())),
                    state,
                ));
            }
            Err(err) => {
                state.done = true;
                return Some((Err(backend("watch", err)), state));
            }
        };
        if response.compact_revision() > 0 {
            let compacted = to_revision(response.compact_revision());
            state.store.note_compacted(compacted);
            state.done = true;
            let requested = state.last;
            return Some((
                Err(Error::Compacted {
                    requested,
                    compacted,
                }),
                state,
            ));
        }
        if response.canceled() {
            state.done = true;
            let reason = response.cancel_reason().to_owned();
            return Some((
                Err(Error::Backend(format!("etcd canceled the watch: {reason}"))),
                state,
            ));
        }
        for event in response.events() {
            match convert_event(&state.store, event) {
                Ok(event) => state.pending.push_back(event),
                Err(err) => {
                    state.done = true;
                    return Some((Err(err), state));
                }
            }
        }
    }
}

fn convert_event(store: &EtcdStore, event: &etcd_client::Event) -> Result<Event> {
    let kv = event
        .kv()
        .ok_or_else(|| Error::Backend("etcd watch event without a key".to_owned()))?;
    let prev = event.prev_kv().map(|kv| store.convert(kv)).transpose()?;
    match event.event_type() {
        etcd_client::EventType::Put => Ok(Event {
            event_type: EventType::Put,
            kv: store.convert(kv)?,
            prev,
        }),
        etcd_client::EventType::Delete => {
            let deleted = store.convert(kv)?;
            // etcd's delete event carries only the key; the trait's carries the last state.
            let state = match &prev {
                Some(prev) => KeyValue {
                    mod_revision: deleted.mod_revision,
                    ..prev.clone()
                },
                None => deleted,
            };
            Ok(Event {
                event_type: EventType::Delete,
                kv: state,
                prev,
            })
        }
    }
}
