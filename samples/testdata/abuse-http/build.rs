//! Links the component with the `wasi:http/proxy` adapter so it imports only the proxy world.
fn main() {
    println!("cargo:rustc-link-arg-cdylib=--wasi-adapter=proxy");
}
