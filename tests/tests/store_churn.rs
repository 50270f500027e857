//! Store growth under churn on the default redb store: an API server whose ConfigMaps are
//! created, patched and deleted at full speed keeps a bounded event log (the server's history
//! compaction) and, once history is compacted, a file within twice the live data.

use std::time::Duration;

use skiff_testkit::churn::{ChurnOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_file_and_event_log_stay_bounded_under_churn() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ChurnOptions::new(dir.path(), Duration::from_secs(20));
    opts.clients = 8;
    opts.keys_per_client = 32;
    opts.history_revisions = 500;
    opts.compaction_interval = Duration::from_secs(2);
    let r = run(opts.clone()).await.unwrap();
    println!("{r:#?}");
    println!(
        "{} writes ({:.0}/s); after compacting all history the file is {:.2}x the live data",
        r.writes,
        r.writes_per_second(),
        r.final_ratio()
    );
    assert!(
        r.writes > 2 * opts.history_revisions,
        "too few writes to churn the history: {}",
        r.writes
    );
    assert!(r.history_compactions >= 2, "{r:?}");
    // The event log: after the server's pass it holds the retained history at most; during the
    // run, at most what one interval (with a generous margin for a slow pass) adds to it.
    assert!(r.after_pass.log_entries <= opts.history_revisions, "{r:?}");
    let per_interval =
        (r.writes_per_second() * (opts.compaction_interval.as_secs_f64() + 3.0)).ceil() as u64;
    assert!(
        r.peak_log_entries <= opts.history_revisions + 2 * per_interval,
        "event log reached {} entries (history {}, about {per_interval} writes per interval)",
        r.peak_log_entries,
        opts.history_revisions
    );
    // The file after a background pass: at most four times what redb uses (its policy), and
    // after all history is compacted, within twice the live data (plus 1 MiB of slack for
    // redb's fixed regions on so small a store).
    assert!(
        r.after_pass.file_bytes <= 4 * r.after_pass.allocated_bytes + (1 << 20),
        "{r:?}"
    );
    assert!(
        r.after_full_compaction.file_bytes <= 2 * r.live_bytes + (1 << 20),
        "file of {} bytes for {} bytes of live data",
        r.after_full_compaction.file_bytes,
        r.live_bytes
    );
}
