//! Test guest (stack exhaustion): prints a line, then recurses without bound, each frame keeping
//! a small array alive across the call so the recursion is neither a loop nor a tail call.

use std::hint::black_box;
use std::io::Write as _;

fn down(depth: u64) -> u64 {
    let frame = black_box([depth; 16]);
    if black_box(depth) != u64::MAX {
        down(depth + 1).wrapping_add(frame[(depth % 16) as usize])
    } else {
        frame[0]
    }
}

fn main() {
    println!("recurse: started");
    let _ = std::io::stdout().flush();
    println!("recurse: {}", down(0));
}
