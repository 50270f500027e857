//! Test guest: prints `started`, sleeps for the seconds in argument 1 (default 3600) through
//! wasi clocks/poll, prints `done` and exits 0.

use std::io::Write as _;

fn main() {
    let secs = std::env::args()
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(3600);
    println!("started");
    let _ = std::io::stdout().flush();
    std::thread::sleep(std::time::Duration::from_secs(secs));
    println!("done");
}
