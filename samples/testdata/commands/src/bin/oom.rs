//! Test guest: allocates and touches 1 MiB chunks forever, printing progress every 16 MiB.

use std::io::Write as _;

const CHUNK: usize = 1 << 20;

fn main() {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        // Touch every page so the memory is really used.
        for i in (0..CHUNK).step_by(4096) {
            chunk[i] = (chunks.len() as u8).wrapping_add(1);
        }
        chunks.push(std::hint::black_box(chunk));
        if chunks.len() % 16 == 0 {
            println!("oom: allocated {} MiB", chunks.len());
            let _ = std::io::stdout().flush();
        }
    }
}
