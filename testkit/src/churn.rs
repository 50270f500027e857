//! Store growth under churn: an API server on its redb store, clients creating, updating and
//! deleting ConfigMaps at full speed for a while, and the file and event log measured throughout,
//! after the server's own history compaction, and after all history is compacted. Used by
//! `skiff bench churn` and by the store-growth test.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use skiff_store::{ListOptions, RedbStore, RedbStoreOptions, StorageStats, Store};

use skiff_controllers::Error;

/// How to run a churn.
#[derive(Clone, Debug)]
pub struct ChurnOptions {
    /// Directory the server's data directory is made in.
    pub dir: PathBuf,
    /// How long the clients write.
    pub duration: Duration,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys each client cycles through (create, update, update, delete).
    pub keys_per_client: usize,
    /// Bytes of data in each ConfigMap.
    pub value_bytes: usize,
    /// Revisions of history the server keeps (`skiff server --history-revisions`).
    pub history_revisions: u64,
    /// How often the server compacts its history (`skiff server --compaction-interval-seconds`).
    pub compaction_interval: Duration,
}

impl ChurnOptions {
    /// 16 clients over 1 000 keys of 1 KiB, the server's default history (10 000 revisions,
    /// compacted every 60 s).
    pub fn new(dir: impl Into<PathBuf>, duration: Duration) -> ChurnOptions {
        ChurnOptions {
            dir: dir.into(),
            duration,
            clients: 16,
            keys_per_client: 64,
            value_bytes: 1024,
            history_revisions: 10_000,
            compaction_interval: Duration::from_secs(60),
        }
    }
}

/// What a churn measured.
#[derive(Clone, Debug, Default)]
pub struct ChurnReport {
    /// Creates, updates and deletes acknowledged.
    pub writes: u64,
    /// How long the clients wrote.
    pub elapsed: Duration,
    /// Largest file seen (sampled every second, and after each background pass).
    pub peak_file_bytes: u64,
    /// Most events in the log seen.
    pub peak_log_entries: u64,
    /// Background history compactions during the run.
    pub history_compactions: u64,
    /// Times the file was shrunk (redb `Database::compact`).
    pub file_compactions: u64,
    /// The file and log just after the server's first background pass once writes stopped.
    pub after_pass: StorageStats,
    /// Bytes of keys and values of every live object.
    pub live_bytes: u64,
    /// The file and log after compacting all history (to the current revision).
    pub after_full_compaction: StorageStats,
}

impl ChurnReport {
    /// Acknowledged writes per second.
    pub fn writes_per_second(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// File size after all history is compacted, against the live data.
    pub fn final_ratio(&self) -> f64 {
        self.after_full_compaction.file_bytes as f64 / self.live_bytes.max(1) as f64
    }
}

fn store_err(e: skiff_store::Error) -> Error {
    Error::NotSupported(format!("store: {e}"))
}

fn configmap(name: &str, fill: u8, bytes: usize) -> ConfigMap {
    let value: String = std::iter::repeat_n((b'a' + fill % 26) as char, bytes).collect();
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some([("value".to_string(), value)].into()),
        ..Default::default()
    }
}

/// Runs an API server on a fresh redb store in `opts.dir`, churns ConfigMaps for
/// `opts.duration`, then waits for the server's next history compaction and measures.
pub async fn run(opts: ChurnOptions) -> Result<ChurnReport, Error> {
    let io = |e: std::io::Error| Error::NotSupported(format!("churn directory: {e}"));
    std::fs::create_dir_all(&opts.dir).map_err(io)?;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-churn-")
        .tempdir_in(&opts.dir)
        .map_err(io)?;
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).map_err(io)?;
    let mut store_opts = RedbStoreOptions::new(data.join("store.redb"));
    store_opts.compaction_retain = opts.history_revisions;
    store_opts.compaction_interval = opts.compaction_interval;
    let store = Arc::new(RedbStore::open_async(store_opts).await.map_err(store_err)?);
    let mut server_opts = skiff_api::ServerOptions::new(&data, "127.0.0.1:0".parse().unwrap());
    server_opts.history_revisions = opts.history_revisions;
    server_opts.compaction_interval = opts.compaction_interval;
    let server = skiff_api::start_with_store(server_opts, store.clone() as Arc<dyn Store>)
        .await
        .map_err(|e| Error::NotSupported(format!("starting the server: {e}")))?;
    let client = skiff_controllers::client_from_kubeconfig(&server.kubeconfig_path).await?;
    let ns = "churn";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut obj = Namespace::default();
    obj.metadata.name = Some(ns.into());
    namespaces.create(&PostParams::default(), &obj).await?;

    let before = store.stats();
    let writes = Arc::new(AtomicU64::new(0));
    let peak_file = Arc::new(AtomicU64::new(0));
    let peak_log = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (store, peak_file, peak_log) = (store.clone(), peak_file.clone(), peak_log.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(s) = store.storage_stats().await {
                    peak_file.fetch_max(s.file_bytes, Ordering::Relaxed);
                    peak_log.fetch_max(s.log_entries, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let writes = writes.clone();
        let (keys, bytes) = (opts.keys_per_client, opts.value_bytes);
        tasks.push(tokio::spawn(async move {
            // Each key goes through create, update, update, delete; the keys are staggered so
            // about three quarters of them are live at any time.
            let mut step: Vec<usize> = (0..keys).map(|k| k % 4).collect();
            let mut round = 0u8;
            let mut first = vec![true; keys];
            while Instant::now() < deadline {
                round = round.wrapping_add(1);
                for k in 0..keys {
                    let name = format!("c{c}-k{k}");
                    if first[k] {
                        // Bring each key to the state its stagger says.
                        first[k] = false;
                        if step[k] != 0 {
                            api.create(&PostParams::default(), &configmap(&name, round, bytes))
                                .await?;
                            writes.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    match step[k] {
                        0 => {
                            api.create(&PostParams::default(), &configmap(&name, round, bytes))
                                .await?;
                        }
                        1 | 2 => {
                            let patch = serde_json::json!({"data": {"value":
                                std::iter::repeat_n((b'a' + round % 26) as char, bytes)
                                    .collect::<String>()}});
                            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                                .await?;
                        }
                        _ => {
                            api.delete(&name, &DeleteParams::default()).await?;
                        }
                    }
                    step[k] = (step[k] + 1) % 4;
                    writes.fetch_add(1, Ordering::Relaxed);
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| Error::NotSupported(format!("churn client: {e}")))??;
    }
    let elapsed = started.elapsed();
    // The server's own background pass, once writes have stopped.
    let compactions = store.stats().history_compactions;
    let wait_until = Instant::now() + opts.compaction_interval * 2 + Duration::from_secs(10);
    while store.stats().history_compactions == compactions {
        if Instant::now() > wait_until {
            sampler.abort();
            return Err(Error::NotSupported(
                "no history compaction ran after the churn".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sampler.abort();
    let after_pass = store.storage_stats().await.map_err(store_err)?;
    peak_file.fetch_max(after_pass.file_bytes, Ordering::Relaxed);
    let live_bytes: u64 = store
        .list(ListOptions::default())
        .await
        .map_err(store_err)?
        .items
        .iter()
        .map(|kv| (kv.key.len() + kv.value.len()) as u64)
        .sum();
    let current = store.current_revision().await.map_err(store_err)?;
    store.compact(current).await.map_err(store_err)?;
    let after_full_compaction = store.storage_stats().await.map_err(store_err)?;
    let stats = store.stats();
    server.shutdown().await;
    let _ = store.close().await;
    Ok(ChurnReport {
        writes: writes.load(Ordering::Relaxed),
        elapsed,
        peak_file_bytes: peak_file.load(Ordering::Relaxed),
        peak_log_entries: peak_log.load(Ordering::Relaxed),
        history_compactions: stats.history_compactions - before.history_compactions,
        file_compactions: stats.file_compactions - before.file_compactions,
        after_pass,
        live_bytes,
        after_full_compaction,
    })
}
