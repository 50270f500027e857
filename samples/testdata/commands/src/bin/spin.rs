//! Test guest: prints one line, then busy-loops forever without sleeping (CPU-limit tests).

use std::io::Write as _;

fn main() {
    println!("spin: started");
    let _ = std::io::stdout().flush();
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
