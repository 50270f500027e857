//! The CNCF wasm OCI artifact format: config (`application/vnd.wasm.config.v0+json`), one
//! `application/wasm` layer, and the component's imports, exports and target world read from
//! the binary itself.
//!
//! The `oci-wasm` crate describes the same format, but its current release is built on
//! oci-client 0.17 (the workspace uses 0.18) and wit-component; the config is a handful of
//! fields, and wasmparser (already linked by wasmtime) reads a component's top-level imports
//! and exports, so the format is written here.

use serde::{Deserialize, Serialize};
use wasmparser::{Encoding, Parser, Payload, Validator, WasmFeatures};

use crate::digest::Digest;

/// Media type of the artifact's config.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the wasm layer.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// runwasi's component layer media type (accepted on pull).
pub const RUNWASI_COMPONENT_LAYER_MEDIA_TYPE: &str =
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
/// The legacy wasm-to-oci layer media type (accepted on pull).
pub const LEGACY_WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// Every layer media type that carries a wasm binary.
pub const WASM_LAYER_MEDIA_TYPES: [&str; 3] = [
    WASM_LAYER_MEDIA_TYPE,
    RUNWASI_COMPONENT_LAYER_MEDIA_TYPE,
    LEGACY_WASM_LAYER_MEDIA_TYPE,
];
/// `os` of a component.
pub const COMPONENT_OS: &str = "wasip2";
/// `os` of a core module.
pub const MODULE_OS: &str = "wasip1";

/// Errors from reading a wasm binary.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The bytes are not a valid wasm module or component.
    #[error("not a valid wasm module or component: {0}")]
    Invalid(String),
}

/// The artifact config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// Creation time (RFC 3339); left out by Skiff so that pushes are reproducible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip2` for a component, `wasip1` for a core module.
    pub os: String,
    /// Digests of the layers, in manifest order.
    #[serde(default)]
    pub layer_digests: Vec<String>,
    /// What the component imports and exports (components only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentInfo>,
}

/// A component's world as seen from outside.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentInfo {
    /// Names of top-level exports (`wasi:http/incoming-handler@0.2.0`, …).
    pub exports: Vec<String>,
    /// Names of top-level imports.
    pub imports: Vec<String>,
    /// The world the component targets, when it can be told from its exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What kind of wasm binary some bytes are.
#[derive(Debug, Clone, PartialEq)]
pub enum WasmKind {
    /// A component, with its world.
    Component(ComponentInfo),
    /// A core module.
    Module,
}

/// Validates `bytes` and reads a component's imports, exports and target world.
pub fn inspect(bytes: &[u8]) -> Result<WasmKind, WasmError> {
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| WasmError::Invalid(e.to_string()))?;
    let mut depth = 0usize;
    let mut is_component = false;
    let mut info = ComponentInfo::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| WasmError::Invalid(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if depth == 1 {
                    is_component = encoding == Encoding::Component;
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| WasmError::Invalid(e.to_string()))?;
                    info.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| WasmError::Invalid(e.to_string()))?;
                    info.exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if !is_component {
        return Ok(WasmKind::Module);
    }
    info.target = infer_target(&info.exports);
    Ok(WasmKind::Component(info))
}

/// The standard world a component's exports imply: `wasi:http/proxy` for an HTTP handler,
/// `wasi:cli/command` for a command.
fn infer_target(exports: &[String]) -> Option<String> {
    let version = |e: &str| {
        e.split_once('@')
            .map(|(_, v)| format!("@{v}"))
            .unwrap_or_default()
    };
    for e in exports {
        if e.starts_with("wasi:http/incoming-handler") {
            return Some(format!("wasi:http/proxy{}", version(e)));
        }
    }
    for e in exports {
        if e.starts_with("wasi:cli/run") {
            return Some(format!("wasi:cli/command{}", version(e)));
        }
    }
    None
}

/// Builds the config for a wasm binary: validates it and records its world.
pub fn config_for(bytes: &[u8]) -> Result<WasmConfig, WasmError> {
    let kind = inspect(bytes)?;
    let (os, component) = match kind {
        WasmKind::Component(info) => (COMPONENT_OS, Some(info)),
        WasmKind::Module => (MODULE_OS, None),
    };
    Ok(WasmConfig {
        created: None,
        author: None,
        architecture: "wasm".to_string(),
        os: os.to_string(),
        layer_digests: vec![Digest::sha256_of(bytes).to_string()],
        component,
    })
}

/// Manifest annotation: a component's imports, a JSON array of names
/// (`skiff_meta::wit::IMPORTS_ANNOTATION`).
pub const IMPORTS_ANNOTATION: &str = "dev.skiff.wit.imports";
/// Manifest annotation: a component's exports, a JSON array of names.
pub const EXPORTS_ANNOTATION: &str = "dev.skiff.wit.exports";

/// The manifest annotations recording a component's world (none for a core module).
pub fn world_annotations(config: &WasmConfig) -> Vec<(String, String)> {
    let Some(c) = &config.component else {
        return Vec::new();
    };
    let list = |names: &[String]| serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
    vec![
        (IMPORTS_ANNOTATION.to_string(), list(&c.imports)),
        (EXPORTS_ANNOTATION.to_string(), list(&c.exports)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_component_world() {
        let wasm = wat::parse_str(
            r#"(component
                (import "wasi:cli/stdout@0.2.0" (instance $i))
                (export "wasi:cli/run@0.2.0" (instance $i)))"#,
        )
        .unwrap();
        let cfg = config_for(&wasm).unwrap();
        assert_eq!(cfg.os, "wasip2");
        let c = cfg.component.clone().unwrap();
        assert_eq!(c.imports, vec!["wasi:cli/stdout@0.2.0"]);
        assert_eq!(c.exports, vec!["wasi:cli/run@0.2.0"]);
        assert_eq!(c.target.as_deref(), Some("wasi:cli/command@0.2.0"));
        assert_eq!(
            world_annotations(&cfg),
            [
                (
                    IMPORTS_ANNOTATION.into(),
                    r#"["wasi:cli/stdout@0.2.0"]"#.into()
                ),
                (
                    EXPORTS_ANNOTATION.into(),
                    r#"["wasi:cli/run@0.2.0"]"#.into()
                )
            ]
        );
        let json = serde_json::to_value(config_for(&wasm).unwrap()).unwrap();
        assert_eq!(json["architecture"], "wasm");
        assert!(
            json["layerDigests"][0]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
    }

    #[test]
    fn module_and_garbage() {
        let m = wat::parse_str("(module)").unwrap();
        assert_eq!(inspect(&m).unwrap(), WasmKind::Module);
        assert_eq!(config_for(&m).unwrap().os, "wasip1");
        assert!(inspect(b"not wasm").is_err());
    }
}
