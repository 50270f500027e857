//! Build script of a command guest: links wasi-libc's command start-up object (`_start`).
fn main() {
    println!("cargo:rustc-link-arg-bins=/usr/lib/wasm32-wasi/crt1-command.o");
}
