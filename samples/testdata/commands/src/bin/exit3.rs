//! Test guest: prints a line to stderr and exits with code 3.

fn main() {
    eprintln!("exit3: exiting with code 3");
    std::process::exit(3);
}
