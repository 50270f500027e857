//! Fuzz targets, one test each: random inputs for a second (`BOLERO_RANDOM_TEST_TIME_MS` for
//! longer) after the committed corpus in `__fuzz__/<target>/corpus` and any `crashes`.

mod input;

mod body;
mod cron;
mod patch;
mod quantity;
mod registry;
mod selectors;
mod smp_recorded;
mod wasm;
