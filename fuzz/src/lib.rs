//! Fuzz targets for Skiff's parsers of outside bytes; the targets are the tests in `tests/it`.
//!
//! `cargo test -p skiff-fuzz` runs every target over its committed corpus (`corpus/<target>/`)
//! and a few thousand random inputs; `cargo bolero test -p skiff-fuzz --test it <target>` runs
//! one under libFuzzer for as long as wanted (see RELIABILITY.md).
