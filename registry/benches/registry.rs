//! Registry benchmark.
fn main() {}
