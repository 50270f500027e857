//! Fuzz targets for Skiff's parsers of outside bytes; the targets are the tests in `tests/it`.
//!
//! `cargo test -p skiff-fuzz` runs every target over its committed corpus
//! (`tests/it/__fuzz__/<target>/corpus`) and a second of random inputs; `fuzz/long-run.sh
//! SECONDS [TARGET...]` runs them under libFuzzer through cargo-bolero (see RELIABILITY.md).

// Linked so that a lib test binary built with the fuzzing instrumentation finds the libFuzzer
// runtime's symbols (see Cargo.toml).
extern crate bolero;
