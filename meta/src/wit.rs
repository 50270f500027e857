//! WIT worlds and scheduling: the annotation names that carry a component's imports from the
//! registry to the pod and a node's interfaces to the scheduler, and the one rule for whether an
//! interface a node provides satisfies an import — wasmtime's linker rule, so the scheduler and
//! the admission step agree with what the node will actually instantiate.

use std::collections::BTreeMap;

/// Manifest annotation: the component's imports, a JSON array of names
/// (`["wasi:keyvalue/store@0.2.0-draft", …]`).
pub const IMPORTS_ANNOTATION: &str = "dev.skiff.wit.imports";
/// Manifest annotation: the component's exports, a JSON array of names.
pub const EXPORTS_ANNOTATION: &str = "dev.skiff.wit.exports";
/// Node annotation: the interfaces the node's runtime provides, a JSON array of names.
pub const NODE_INTERFACES: &str = "skiff.dev/interfaces";
/// Pod annotation written by the API server at create: the imports of each container's image
/// whose artifact records them, a JSON object `{"container": ["ns:pkg/iface@version", …]}`.
pub const POD_IMPORTS: &str = "skiff.dev/imports";

/// The part of `name` before `@` and the version after it, if any.
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    }
}

/// wasmtime's semver track of a versioned name (`NameMap`'s `alternate_lookup_key`): `a:b/c@1`
/// for `1.x.y`, `a:b/c@0.2` for `0.2.y`; none for a pre-release, a `0.0.z` version or an
/// unversioned name (those match only exactly).
pub fn semver_track(name: &str) -> Option<String> {
    let (base, version) = split_version(name);
    let version = version?;
    let core = version.split('+').next().unwrap_or(version);
    if core.contains('-') {
        return None;
    }
    let mut parts = core.split('.');
    let major: u64 = parts.next()?.parse().ok()?;
    let minor: u64 = parts.next()?.parse().ok()?;
    let _patch: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    if major != 0 {
        Some(format!("{base}@{major}"))
    } else if minor != 0 {
        Some(format!("{base}@0.{minor}"))
    } else {
        None
    }
}

/// Whether an interface named `provided` satisfies an import named `import`: the same name, or
/// the same semver track (wasmtime links `wasi:cli/stdout@0.2.0` to a host's `@0.2.6`).
pub fn satisfies(provided: &str, import: &str) -> bool {
    provided == import
        || semver_track(import).is_some_and(|t| semver_track(provided).as_deref() == Some(&t))
}

/// Whether any of `provided` satisfies `import`.
pub fn provides<S: AsRef<str>>(provided: &[S], import: &str) -> bool {
    provided.iter().any(|p| satisfies(p.as_ref(), import))
}

/// The imports none of `provided` satisfies, in order, without repeats.
pub fn missing<'a, S: AsRef<str>>(provided: &[S], imports: &'a [String]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in imports {
        if !provides(provided, i) && !out.contains(&i.as_str()) {
            out.push(i);
        }
    }
    out
}

/// Whether `name` names a WIT interface (`ns:pkg/iface`, optionally `@version`), the only
/// imports a host can provide by name.
pub fn is_interface(name: &str) -> bool {
    let (base, _) = split_version(name);
    match base.split_once(':') {
        Some((ns, rest)) => {
            !ns.is_empty()
                && rest
                    .split_once('/')
                    .is_some_and(|(pkg, iface)| !pkg.is_empty() && !iface.is_empty())
        }
        None => false,
    }
}

/// Whether `name` (an interface) is selected by `pattern`: a package (`wasi:keyvalue`, any
/// version), a package with version (`wasi:keyvalue@0.2.0-draft`), an interface without version
/// (`wasi:keyvalue/store`) or an exact name.
pub fn matches_pattern(name: &str, pattern: &str) -> bool {
    let (base, version) = split_version(name);
    let (pbase, pversion) = split_version(pattern);
    let version_ok = pversion.is_none() || pversion == version;
    if pbase.contains('/') {
        return pbase == base && version_ok;
    }
    base.split_once('/').is_some_and(|(pkg, _)| pkg == pbase) && version_ok
}

/// Checks a `--disable-interface` pattern: `ns:pkg`, `ns:pkg/iface`, either with `@version`.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let (base, version) = split_version(pattern);
    let ok_id = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let ok = match base.split_once(':') {
        Some((ns, rest)) => {
            ok_id(ns)
                && match rest.split_once('/') {
                    Some((pkg, iface)) => ok_id(pkg) && ok_id(iface),
                    None => ok_id(rest),
                }
        }
        None => false,
    } && version.is_none_or(|v| !v.is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid interface {pattern:?}: expected a WIT package (`wasi:keyvalue`) or \
             interface (`wasi:keyvalue/store`), optionally with `@VERSION`"
        ))
    }
}

/// Reads a JSON array of names (the manifest and node annotations).
pub fn parse_list(value: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(value).map_err(|e| format!("not a JSON array of strings: {e}"))
}

/// Reads the pod annotation [`POD_IMPORTS`].
pub fn parse_pod_imports(value: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    serde_json::from_str(value).map_err(|e| format!("not a JSON object of string arrays: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_follow_wasmtime() {
        assert_eq!(semver_track("x:y/z@1.1.2").as_deref(), Some("x:y/z@1"));
        assert_eq!(
            semver_track("x:y/z@0.2.3+abc").as_deref(),
            Some("x:y/z@0.2")
        );
        assert_eq!(semver_track("x:y/z@0.0.1"), None);
        assert_eq!(semver_track("x:y/z@0.2.0-draft"), None);
        assert_eq!(semver_track("x:y/z"), None);
    }

    #[test]
    fn satisfaction() {
        let have = ["wasi:cli/stdout@0.2.6", "wasi:keyvalue/store@0.2.0-draft"];
        assert!(provides(&have, "wasi:cli/stdout@0.2.0"));
        assert!(provides(&have, "wasi:cli/stdout@0.2.9"));
        assert!(!provides(&have, "wasi:cli/stdout@0.3.0"));
        assert!(provides(&have, "wasi:keyvalue/store@0.2.0-draft"));
        assert!(!provides(&have, "wasi:keyvalue/store@0.2.0-draft2"));
        assert!(!provides(&have, "wasi:keyvalue/atomics@0.2.0-draft"));
        let imports = vec![
            "wasi:cli/stdout@0.2.0".to_string(),
            "wasi:keyvalue/batch@0.2.0-draft".to_string(),
            "wasi:keyvalue/batch@0.2.0-draft".to_string(),
        ];
        assert_eq!(
            missing(&have, &imports),
            ["wasi:keyvalue/batch@0.2.0-draft"]
        );
    }

    #[test]
    fn patterns() {
        assert!(matches_pattern(
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:keyvalue"
        ));
        assert!(matches_pattern(
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:keyvalue/store"
        ));
        assert!(matches_pattern(
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:keyvalue@0.2.0-draft"
        ));
        assert!(!matches_pattern(
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:key"
        ));
        assert!(!matches_pattern(
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:keyvalue/batch"
        ));
        assert!(check_pattern("wasi:keyvalue").is_ok());
        assert!(check_pattern("wasi:keyvalue/store@0.2.0-draft").is_ok());
        assert!(check_pattern("keyvalue").is_err());
        assert!(check_pattern("wasi:").is_err());
        assert!(is_interface("wasi:http/types@0.2.0"));
        assert!(!is_interface("run"));
    }
}
