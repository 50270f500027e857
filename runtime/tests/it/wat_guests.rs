//! Small guests written in WAT for behaviour the sample guests do not cover.

/// A preview-1 command printing `msg` and a newline to stdout, then exiting with `code`.
pub(crate) fn p1_print_and_exit(msg: &str, code: i32) -> Vec<u8> {
    let text = format!("{msg}\n");
    let escaped: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    let len = text.len();
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "{escaped}")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const {len}))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (call $proc_exit (i32.const {code}))))"#
    ))
    .expect("valid wat")
}

/// A preview-1 command that traps at once.
pub(crate) fn p1_trap() -> Vec<u8> {
    wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#)
        .expect("valid wat")
}

/// A preview-1 command growing its memory by 1 MiB forever.
pub(crate) fn p1_grow_forever() -> Vec<u8> {
    wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "_start")
               (loop (drop (memory.grow (i32.const 16))) (br 0))))"#,
    )
    .expect("valid wat")
}

/// A component importing an interface no host provides.
pub(crate) fn component_bad_import() -> Vec<u8> {
    wat::parse_str(
        r#"(component
             (import "acme:nothing/here@1.0.0" (instance (export "f" (func)))))"#,
    )
    .expect("valid wat")
}
