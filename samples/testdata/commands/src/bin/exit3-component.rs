//! Test guest: a command component that prints a line to stderr and exits with code 3 through
//! `wasi:cli/exit.exit-with-code` (an unstable WASI 0.2 function: the host must link it, like
//! `wasmtime run -S cli-exit-with-code`; plain `exit` in WASI 0.2 only tells success from failure).

fn main() {
    eprintln!("exit3: exiting with code 3");
    wasip2::cli::exit::exit_with_code(3);
}
