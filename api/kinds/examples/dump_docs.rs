//! Writes every discovery document, OpenAPI v3 document and the Swagger 2.0 `/openapi/v2` to a
//! directory, laid out by URL path, so the
//! documents can be inspected or served by a static test server: `cargo run -p skiff-kinds
//! --example dump_docs -- DIR`.

use std::path::Path;

fn write(dir: &Path, url: &str, value: &serde_json::Value) -> std::io::Result<()> {
    let path = dir.join(url.trim_start_matches('/')).join("index.json");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap_or_default())
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docs".to_string());
    let dir = Path::new(&dir);
    use skiff_kinds::{discovery, openapi};
    write(dir, "/api", &discovery::api_versions())?;
    write(dir, "/apis", &discovery::api_group_list())?;
    for path in discovery::group_version_paths() {
        let parts: Vec<&str> = path.split('/').collect();
        let (group, version) = match parts.as_slice() {
            ["api", v] => ("", *v),
            ["apis", g, v] => (*g, *v),
            _ => continue,
        };
        if let Some(list) = discovery::api_resource_list(group, version) {
            write(dir, &format!("/{path}"), &list)?;
        }
        if let Some(doc) = openapi::v3_document(&path) {
            write(dir, &format!("/openapi/v3/{path}"), &doc)?;
        }
    }
    for group in discovery::groups() {
        if let Some(g) = discovery::api_group(group) {
            write(dir, &format!("/apis/{group}"), &g)?;
        }
    }
    write(dir, "/openapi/v3", &openapi::v3_index())?;
    write(dir, "/openapi/v2", &openapi::published(&[]).v2_value())?;
    write(dir, "/aggregated/api", &discovery::aggregated(true, "v2"))?;
    write(dir, "/aggregated/apis", &discovery::aggregated(false, "v2"))?;
    Ok(())
}
