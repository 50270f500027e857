//! Test guest: prints a line, then traps (a panic with `panic = "abort"` is a wasm `unreachable`).

use std::io::Write as _;

fn main() {
    println!("trap: about to trap");
    let _ = std::io::stdout().flush();
    let v: Vec<u32> = std::hint::black_box(Vec::new());
    if v.is_empty() {
        panic!("trap: deliberate panic");
    }
}
