//! Test guest (log flood): writes numbered 100-byte lines to stdout as fast as it can, forever,
//! in 64 KiB writes.

use std::io::Write as _;

fn main() {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let mut i: u64 = 0;
    loop {
        let _ = writeln!(out, "log-flood: line {i:>12} {:.<66}", "");
        i += 1;
    }
}
