//! Wasm targets: what the node does with pulled bytes — inspect the component's world, then
//! compile it with the node's own engine. A malformed or hostile binary is an error, never a
//! panic. Random bytes rarely get past the header, so one target mutates real components (the
//! samples' `.wasm`, committed in the corpus) at a few places chosen by the input.

use std::path::PathBuf;
use std::sync::OnceLock;

use skiff_registry::wasm::{WasmKind, config_for, inspect};
use skiff_runtime::{Runtime, RuntimeConfig};

use crate::input::Bytes;

/// One runtime (its pooling engine is costly) for all inputs.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<(tempfile::TempDir, Runtime)> = OnceLock::new();
    &RUNTIME
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut config = RuntimeConfig::new(dir.path());
            config.max_instances = 8;
            let runtime =
                Runtime::new(config, skiff_runtime::Network::new()).expect("wasm runtime");
            (dir, runtime)
        })
        .1
}

/// Inspects and, if valid, compiles `bytes` as the node would.
fn pull_and_compile(bytes: &[u8]) {
    let kind = inspect(bytes);
    let _ = config_for(bytes);
    let engine = runtime().engine();
    match kind {
        Ok(WasmKind::Component(_)) => {
            let _ = wasmtime::component::Component::new(engine, bytes);
        }
        Ok(WasmKind::Module) => {
            let _ = wasmtime::Module::new(engine, bytes);
        }
        Err(_) => {
            // What inspect refuses never reaches the engine; the engine must refuse it too.
            assert!(wasmtime::component::Component::new(engine, bytes).is_err());
        }
    }
}

/// Any bytes, and the corpus's real components whole.
#[test]
fn wasm_bytes_target() {
    bolero::check!(name = "wasm_bytes").for_each(|input: &[u8]| pull_and_compile(input));
}

/// The seed components, each with up to eight bytes overwritten, inserted or cut where the
/// input says.
#[test]
fn wasm_mutated_target() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/__fuzz__/wasm_bytes/corpus");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("the wasm corpus")
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .filter(|b| b.starts_with(b"\0asm"))
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seed components in {}", dir.display());
    bolero::check!(name = "wasm_mutated")
        .with_iterations(40)
        .for_each(|input: &[u8]| {
            let mut bytes = Bytes::new(input);
            let mut wasm = seeds[bytes.byte() as usize % seeds.len()].clone();
            for _ in 0..(bytes.byte() % 8) + 1 {
                let at = (u32::from(bytes.byte()) << 16
                    | u32::from(bytes.byte()) << 8
                    | u32::from(bytes.byte())) as usize
                    % wasm.len();
                let value = bytes.byte();
                match bytes.byte() % 4 {
                    0 => wasm.insert(at, value),
                    1 => {
                        wasm.remove(at);
                    }
                    2 => wasm.truncate(at.max(8)),
                    _ => wasm[at] = value,
                }
            }
            pull_and_compile(&wasm);
        });
}
