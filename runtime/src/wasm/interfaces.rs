//! The WIT interfaces this node's component linker provides, found by asking the linker itself,
//! and `--disable-interface`: taking interfaces out of the linker after it is built.
//!
//! A wasmtime `Linker` cannot list its definitions, so each candidate name is looked up the way
//! the node links a real component: a probe component importing a function of that name goes
//! through `Linker::instantiate_pre`, whose lookup follows the linker's own rules
//! (semver-compatible names included) and which answers "expected function found instance"
//! exactly when an instance is defined under the name (an absent name is "missing"; an empty
//! instance import would link even to nothing, so it cannot be the probe). The
//! candidates are the WASI interfaces the host crates at the pinned wasmtime implement or may
//! implement; a candidate the linker does not define is simply not advertised, so what a node
//! advertises follows what is added to (or disabled in) its linker, never this list alone.

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// Interface names worth asking the linker about: WASI 0.2 (as `wasmtime-wasi` and
/// `wasmtime-wasi-http` at the pinned version), and the proposals a container may declare
/// (`wasi:config`, `wasi:keyvalue`, in the versions guests are built against).
const CANDIDATES: &[&str] = &[
    "wasi:cli/environment@0.2.12",
    "wasi:cli/exit@0.2.12",
    "wasi:cli/run@0.2.12",
    "wasi:cli/stdin@0.2.12",
    "wasi:cli/stdout@0.2.12",
    "wasi:cli/stderr@0.2.12",
    "wasi:cli/terminal-input@0.2.12",
    "wasi:cli/terminal-output@0.2.12",
    "wasi:cli/terminal-stdin@0.2.12",
    "wasi:cli/terminal-stdout@0.2.12",
    "wasi:cli/terminal-stderr@0.2.12",
    "wasi:clocks/monotonic-clock@0.2.12",
    "wasi:clocks/wall-clock@0.2.12",
    "wasi:clocks/timezone@0.2.12",
    "wasi:filesystem/types@0.2.12",
    "wasi:filesystem/preopens@0.2.12",
    "wasi:io/error@0.2.12",
    "wasi:io/poll@0.2.12",
    "wasi:io/streams@0.2.12",
    "wasi:random/random@0.2.12",
    "wasi:random/insecure@0.2.12",
    "wasi:random/insecure-seed@0.2.12",
    "wasi:sockets/network@0.2.12",
    "wasi:sockets/instance-network@0.2.12",
    "wasi:sockets/udp@0.2.12",
    "wasi:sockets/udp-create-socket@0.2.12",
    "wasi:sockets/tcp@0.2.12",
    "wasi:sockets/tcp-create-socket@0.2.12",
    "wasi:sockets/ip-name-lookup@0.2.12",
    "wasi:http/types@0.2.12",
    "wasi:http/outgoing-handler@0.2.12",
    "wasi:http/incoming-handler@0.2.12",
    "wasi:config/store@0.2.0-draft",
    "wasi:config/store@0.2.0-rc.1",
    "wasi:keyvalue/store@0.2.0-draft",
    "wasi:keyvalue/atomics@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
    "wasi:keyvalue/watcher@0.2.0-draft",
    "wasi:blobstore/blobstore@0.2.0-draft",
    "wasi:logging/logging@0.1.0-draft",
    "wasi:messaging/producer@0.2.0-draft",
];

/// The smallest component importing a function `name: func()`.
fn probe_binary(name: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    // Preamble: magic, version 0x0d, layer 1 (component).
    let mut out = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    // Type section (7): one function type, no parameters, no result.
    out.extend_from_slice(&[0x07, 0x05, 0x01, 0x40, 0x00, 0x01, 0x00]);
    // Import section (10): one import, plain name, a function of type 0.
    let mut import = vec![0x01, 0x00];
    leb(name.len(), &mut import);
    import.extend_from_slice(name.as_bytes());
    import.extend_from_slice(&[0x01, 0x00]);
    out.push(0x0a);
    leb(import.len(), &mut out);
    out.extend_from_slice(&import);
    out
}

/// What wasmtime's type check says when the name is defined, but as an instance.
const DEFINED_AS_INSTANCE: &str = "expected function found instance";

/// Whether `linker` defines an instance a component importing `name` is linked to.
pub(crate) fn provides<T: 'static>(engine: &Engine, linker: &Linker<T>, name: &str) -> bool {
    match Component::new(engine, probe_binary(name)) {
        Ok(component) => match linker.instantiate_pre(&component) {
            Ok(_) => false, // a function, e.g. a name `disable` shadowed
            Err(e) => format!("{e:#}").contains(DEFINED_AS_INSTANCE),
        },
        Err(e) => {
            tracing::warn!(interface = name, error = %format!("{e:#}"), "cannot build an interface probe");
            false
        }
    }
}

/// The candidate interfaces `linker` provides, in the candidates' order.
pub(crate) fn provided<T: 'static>(engine: &Engine, linker: &Linker<T>) -> Vec<String> {
    CANDIDATES
        .iter()
        .filter(|name| provides(engine, linker, name))
        .map(|name| name.to_string())
        .collect()
}

/// Whether `package` (`wasi:keyvalue`) is disabled as a whole by one of `patterns`.
pub(crate) fn package_disabled(patterns: &[String], package: &str) -> bool {
    patterns.iter().any(|p| {
        let (base, _) = p.split_once('@').unwrap_or((p, ""));
        base == package
    })
}

/// Takes every candidate interface matching one of `patterns` (see
/// `skiff_meta::wit::matches_pattern`: a package, an interface, either with a version) out of
/// `linker`: its name is redefined as a function, which no instance import links to, so a
/// component importing it fails to link ("expected instance found func") and [`provided`] no
/// longer lists it.
pub(crate) fn disable<T: 'static>(
    engine: &Engine,
    linker: &mut Linker<T>,
    patterns: &[String],
) -> wasmtime::Result<Vec<String>> {
    let mut removed = Vec::new();
    if patterns.is_empty() {
        return Ok(removed);
    }
    let names: Vec<&str> = CANDIDATES
        .iter()
        .copied()
        .filter(|name| patterns.iter().any(|p| matches_pattern(name, p)))
        .filter(|name| provides(engine, linker, name))
        .collect();
    linker.allow_shadowing(true);
    for name in names {
        linker
            .root()
            .func_wrap(name, |_: wasmtime::StoreContextMut<'_, T>, (): ()| {
                Err::<(), _>(wasmtime::Error::msg("interface disabled on this node"))
            })?;
        removed.push(name.to_string());
    }
    linker.allow_shadowing(false);
    Ok(removed)
}

/// `skiff_meta::wit::matches_pattern` (the runtime depends on no other Skiff crate).
fn matches_pattern(name: &str, pattern: &str) -> bool {
    let split = |s: &str| -> (String, Option<String>) {
        match s.split_once('@') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (s.to_string(), None),
        }
    };
    let (base, version) = split(name);
    let (pbase, pversion) = split(pattern);
    let version_ok = pversion.is_none() || pversion == version;
    if pbase.contains('/') {
        return pbase == base && version_ok;
    }
    base.split_once('/').is_some_and(|(pkg, _)| pkg == pbase) && version_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_the_component_wat_describes() {
        let name = "wasi:keyvalue/store@0.2.0-draft";
        let wat = wat::parse_str(format!(r#"(component (import "{name}" (func)))"#)).unwrap();
        assert_eq!(probe_binary(name), wat);
    }

    #[test]
    fn probes_follow_the_linker_and_disabling_removes() {
        let engine = Engine::default();
        let mut linker = Linker::<()>::new(&engine);
        linker
            .instance("wasi:cli/stdout@0.2.3")
            .unwrap()
            .func_wrap("f", |_, (): ()| Ok(()))
            .unwrap();
        linker
            .instance("wasi:keyvalue/store@0.2.0-draft")
            .unwrap()
            .func_wrap("f", |_, (): ()| Ok(()))
            .unwrap();
        linker
            .instance("wasi:keyvalue/atomics@0.2.0-draft")
            .unwrap()
            .func_wrap("f", |_, (): ()| Ok(()))
            .unwrap();
        // A semver-compatible definition counts; an absent one does not.
        assert_eq!(
            provided(&engine, &linker),
            [
                "wasi:cli/stdout@0.2.12",
                "wasi:keyvalue/store@0.2.0-draft",
                "wasi:keyvalue/atomics@0.2.0-draft"
            ]
        );
        let removed = disable(&engine, &mut linker, &["wasi:keyvalue".to_string()]).unwrap();
        assert_eq!(
            removed,
            [
                "wasi:keyvalue/store@0.2.0-draft",
                "wasi:keyvalue/atomics@0.2.0-draft"
            ]
        );
        assert_eq!(provided(&engine, &linker), ["wasi:cli/stdout@0.2.12"]);
        assert!(package_disabled(
            &["wasi:keyvalue@0.2.0-draft".into()],
            "wasi:keyvalue"
        ));
        assert!(!package_disabled(
            &["wasi:keyvalue/store".into()],
            "wasi:keyvalue"
        ));
    }
}
