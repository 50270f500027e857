//! Test guest (stack exhaustion): prints a line, then recurses without bound. Each frame keeps
//! eight values live across the call in wasm locals (nothing whose address is taken), so the
//! recursion is neither a loop nor a tail call and it fills the engine's wasm stack, not the
//! guest's own stack in linear memory (where Rust keeps address-taken locals: overflowing that is
//! an out-of-bounds memory access instead).

use std::io::Write as _;

#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn down(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64) -> u64 {
    if a == u64::MAX {
        return b;
    }
    let r = down(
        a + 1,
        b ^ a,
        c.wrapping_add(a),
        d.wrapping_mul(3),
        e + 1,
        f ^ b,
        g.wrapping_add(c),
        h.wrapping_add(d),
    );
    r ^ a ^ b ^ c ^ d ^ e ^ f ^ g ^ h
}

fn main() {
    println!("recurse: started");
    let _ = std::io::stdout().flush();
    let seed = std::hint::black_box(std::env::args().count() as u64);
    println!("recurse: {}", down(seed, 1, 2, 3, 4, 5, 6, 7));
}
