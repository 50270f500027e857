//! Tidy checks over the whole tree: every Rust file opens with a `//!` line saying what it is for,
//! no `dbg!` is left behind, generated files say so and name their generator, and everything
//! generated from Kubernetes comes from the one release `skiff_meta::KUBERNETES_MINOR` names.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The tracked and new (not ignored) `.rs` files of the workspace.
fn rust_files() -> Vec<PathBuf> {
    let root = skiff_tools::repo_root();
    let out = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
            "--",
            "*.rs",
        ])
        .current_dir(&root)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git ls-files failed");
    let files: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
        .filter(|p| p.exists())
        .collect();
    assert!(files.len() > 100, "found only {} Rust files", files.len());
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(skiff_tools::repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_rust_file_opens_with_a_doc_line() {
    let missing: Vec<String> = rust_files()
        .iter()
        .filter(|p| !read(p).starts_with("//!"))
        .map(|p| rel(p))
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line saying what they are for: {missing:#?}"
    );
}

#[test]
fn no_dbg_macro_is_left_behind() {
    let needle = concat!("dbg", "!(");
    let found: Vec<String> = rust_files()
        .iter()
        .filter(|p| read(p).contains(needle))
        .map(|p| rel(p))
        .collect();
    assert!(found.is_empty(), "`dbg!` left in: {found:#?}");
}

/// A generated file says so in its first lines, names the generator, and the generator exists.
#[test]
fn generated_files_are_marked_and_name_their_generator() {
    let mut generated = 0;
    for path in rust_files() {
        let text = read(&path);
        let head: String = text.lines().take(3).collect::<Vec<_>>().join("\n");
        let lower = head.to_lowercase();
        if !lower.contains("generated") {
            continue;
        }
        if !lower.contains("do not edit") {
            continue; // prose that mentions generation, not a generated file
        }
        generated += 1;
        let generator = head
            .split([' ', '\n'])
            .map(|w| w.trim_matches(|c: char| "`();,".contains(c)))
            .find(|w| w.contains("gen/") && (w.ends_with(".py") || w.ends_with(".rs")))
            .unwrap_or_else(|| panic!("{}: generated but names no generator (gen/…)", rel(&path)));
        let dir = path.parent().expect("a file has a parent");
        let exists = [
            skiff_tools::repo_root(),
            dir.to_path_buf(),
            dir.join(".."),
            dir.join("../.."),
        ]
        .iter()
        .any(|base| base.join(generator).exists());
        assert!(
            exists,
            "{}: its generator {generator} does not exist",
            rel(&path)
        );
    }
    assert!(
        generated >= 2,
        "expected the patch and proto tables among generated files"
    );
}

/// The patch table, the protobuf table and the k8s-openapi feature all come from the Kubernetes
/// release `skiff_meta::KUBERNETES_MINOR` names (what `/version` and discovery report).
#[test]
fn generated_tables_and_types_are_of_the_kubernetes_version_served() {
    let minor = skiff_meta::KUBERNETES_MINOR;
    let root = skiff_tools::repo_root();
    for table in ["api/patch/src/schema/table.rs", "api/proto/src/table.rs"] {
        let text = read(&root.join(table));
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!("Kubernetes v1.{minor} ")),
            "{table} says {first:?}; regenerate it from Kubernetes v1.{minor} (its gen/ script says how)"
        );
    }
    let cargo = read(&root.join("Cargo.toml"));
    let line = cargo
        .lines()
        .find(|l| l.starts_with("k8s-openapi"))
        .expect("the workspace depends on k8s-openapi");
    assert!(
        line.contains(&format!("\"v1_{minor}\"")),
        "Cargo.toml's k8s-openapi feature must be v1_{minor}: {line}"
    );
}
