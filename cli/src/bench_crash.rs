//! `skiff bench crash`: kill -9 of the API server under write load, many times — a `skiff server`
//! process on one data directory, concurrent writers recording every acknowledged write, SIGKILL
//! at a random moment, restart timed to `/readyz` and to the first write, every acknowledged
//! write checked (the rounds are `skiff_testkit::crash`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use skiff_testkit::crash::{CrashOptions, percentile};

use crate::bench::ms;

#[derive(clap::Args)]
pub(crate) struct CrashBenchArgs {
    /// Directory the server's data directory is made in (removed after the run unless a write
    /// was lost).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Kills (rounds of load, SIGKILL, restart and check).
    #[arg(long, default_value_t = 50)]
    kills: usize,
    /// Concurrent writers, each with its own connections.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// The kill lands at a random moment up to this many milliseconds after every writer's
    /// first acknowledged write.
    #[arg(long, default_value_t = 2000)]
    max_load_ms: u64,
    /// Seed of the writers' choices and the kill moments (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Bytes of data in each ConfigMap.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// A `skiff server` flag to add (repeatable), e.g. `--server-arg=--no-controllers`.
    #[arg(long)]
    server_arg: Vec<String>,
    /// Keep the data directory (and the server's log beside it) after the run.
    #[arg(long)]
    keep: bool,
    /// Append the results to this Markdown file.
    #[arg(long)]
    append: Option<PathBuf>,
}

pub(crate) async fn run(args: CrashBenchArgs) -> Result<()> {
    let mut opts = CrashOptions::new(std::env::current_exe()?, &args.dir, args.kills);
    opts.clients = args.clients;
    opts.max_load = Duration::from_millis(args.max_load_ms);
    opts.seed = args.seed.unwrap_or_else(rand::random);
    opts.value_bytes = args.value_bytes;
    opts.server_args = args.server_arg.clone();
    opts.keep = args.keep;
    println!(
        "{} kills of skiff server under {} writers (seed {})",
        opts.kills, opts.clients, opts.seed
    );
    let r = skiff_testkit::crash::run(opts.clone(), |round| {
        println!(
            "round {:>3}: {:>5} acknowledged ({} creates, {} replaces, {} deletes) in {:>4} ms, \
             {} in flight ({} landed); restart: /readyz {} ms, first write {} ms; lost {}",
            round.round,
            round.acknowledged(),
            round.creates,
            round.updates,
            round.deletes,
            round.load.as_millis(),
            round.in_flight,
            round.in_flight_landed,
            ms(round.to_ready),
            ms(round.to_first_write),
            round.lost.len()
        );
        for l in round.lost.iter().chain(&round.refused).take(20) {
            println!("    {l}");
        }
    })
    .await?;
    for l in r.final_lost.iter().take(20) {
        println!("    {l}");
    }
    let ready = r.to_ready();
    let write = r.to_first_write();
    let max = |v: &[Duration]| v.last().copied().unwrap_or_default();
    let table = format!(
        "`skiff bench crash --kills {} --clients {}` ({}; {} build; {}; seed {})\n\n\
         | measurement | result |\n|---|---|\n\
         | kills (SIGKILL under load, restart on the same data directory) | {} |\n\
         | acknowledged writes (create, replace with resourceVersion, delete) | {} |\n\
         | writes in flight at the kills (either outcome correct) / landed | {} / {} |\n\
         | keys checked at the end (every round's, live and deleted) | {} |\n\
         | **acknowledged writes lost** | **{}** |\n\
         | restart: process start to `/readyz` 200, p50 / p99 / max | {} / {} / {} ms |\n\
         | restart: process start to first acknowledged write, p50 / p99 / max | {} / {} / {} ms |\n\
         | store file at the end | {:.1} MiB |\n",
        args.kills,
        args.clients,
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        crate::bench::machine_description(),
        opts.seed,
        r.rounds.len(),
        r.acknowledged(),
        r.rounds.iter().map(|x| x.in_flight).sum::<u64>(),
        r.rounds.iter().map(|x| x.in_flight_landed).sum::<u64>(),
        r.keys_checked,
        r.lost(),
        ms(percentile(&ready, 0.5)),
        ms(percentile(&ready, 0.99)),
        ms(max(&ready)),
        ms(percentile(&write, 0.5)),
        ms(percentile(&write, 0.99)),
        ms(max(&write)),
        r.store_bytes as f64 / (1024.0 * 1024.0),
    );
    crate::bench::publish(&format!("\n{table}\n"), args.append.as_deref())?;
    if let Some(dir) = &r.kept_dir {
        println!("data directory kept: {}", dir.display());
    }
    if r.lost() > 0 {
        bail!("{} acknowledged writes were lost", r.lost());
    }
    Ok(())
}
