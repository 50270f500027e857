//! Test guest (sandbox): tries to read files outside its preopens and reports each attempt.
//!
//! For each path prints `READ <path>` or `DENIED <path>` on stdout (the error goes to stderr),
//! then exits 0. Paths: `/etc/passwd`, `/data/../../etc/passwd` (`../../etc/passwd` relative to
//! the `/data` preopen) and `/proc/self/environ`.

use std::io::Write as _;

const PATHS: [&str; 3] = ["/etc/passwd", "/data/../../etc/passwd", "/proc/self/environ"];

fn main() {
    for path in PATHS {
        match std::fs::read(path) {
            Ok(bytes) => println!("READ {path} ({} bytes)", bytes.len()),
            Err(e) => {
                println!("DENIED {path}");
                eprintln!("escape: {path}: {e}");
            }
        }
        let _ = std::io::stdout().flush();
    }
}
