//! Kill -9 of `skiff server` under 64 writers, a few times (the documented long run is
//! `skiff bench crash --kills 50`, the same rounds): every acknowledged create, replace and
//! delete is there as acknowledged after each restart. Restart times are printed, not asserted.

use std::time::Duration;

use skiff_testkit::crash::{CrashOptions, percentile, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sigkill_under_64_writers_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = CrashOptions::new(skiff_tests::skiff_bin(), dir.path(), 4);
    opts.max_load = Duration::from_millis(1500);
    opts.seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    println!("seed {} (CrashOptions::seed replays it)", opts.seed);
    let report = run(opts, |r| {
        println!(
            "round {}: {} acknowledged writes, {} in flight ({} landed); restart: /readyz {:?}, \
             first write {:?}; lost {}",
            r.round,
            r.acknowledged(),
            r.in_flight,
            r.in_flight_landed,
            r.to_ready,
            r.to_first_write,
            r.lost.len()
        );
    })
    .await
    .expect("the crash rounds run");
    let ready = report.to_ready();
    println!(
        "{} kills, {} acknowledged writes, {} keys checked at the end, lost {}; restart to \
         /readyz p50 {:?} max {:?}",
        report.rounds.len(),
        report.acknowledged(),
        report.keys_checked,
        report.lost(),
        percentile(&ready, 0.5),
        ready.last().copied().unwrap_or_default()
    );
    let refused: Vec<&String> = report.rounds.iter().flat_map(|r| &r.refused).collect();
    assert!(refused.is_empty(), "writes refused: {refused:?}");
    let lost: Vec<&String> = report
        .rounds
        .iter()
        .flat_map(|r| &r.lost)
        .chain(&report.final_lost)
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost (data kept in {:?}): {lost:#?}",
        report.kept_dir
    );
    assert!(
        report.rounds.iter().all(|r| r.acknowledged() >= 64),
        "every round had the writers going before the kill"
    );
}
