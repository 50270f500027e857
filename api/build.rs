//! Stamps the build for `/version`: the git commit (`SKIFF_GIT_COMMIT`), whether the tree had
//! changes (`SKIFF_GIT_TREE_STATE`) and the build time (`SKIFF_BUILD_DATE`, RFC 3339 UTC).
//!
//! Reruns only when HEAD moves (the HEAD file or the branch it points to), so incremental builds
//! stay incremental. Outside git the commit is forty zeros (clients check it against `[0-9a-f]+`)
//! and the tree state is empty, as Kubernetes reports for builds not made from git.
//! `SOURCE_DATE_EPOCH` sets the build time for reproducible builds.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch (civil-from-days, proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = git(&["rev-parse", "HEAD"])
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|c| c.to_ascii_lowercase());
    let tree_state = match &commit {
        Some(_) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if s.is_empty() => "clean",
            Some(_) => "dirty",
            None => "",
        },
        None => "",
    };
    // Rerun when HEAD moves: the HEAD file, and the branch file or packed refs it resolves through.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let git_dir = PathBuf::from(git_dir);
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
            let common = git_dir.join(common);
            println!(
                "cargo:rerun-if-changed={}",
                common.join("packed-refs").display()
            );
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                println!("cargo:rerun-if-changed={}", common.join(branch).display());
            }
        }
    } else {
        println!("cargo:rerun-if-changed=build.rs");
    }
    let now = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    let commit = commit.unwrap_or_else(|| "0".repeat(40));
    println!("cargo:rustc-env=SKIFF_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SKIFF_GIT_TREE_STATE={tree_state}");
    println!("cargo:rustc-env=SKIFF_BUILD_DATE={}", rfc3339(now));
}
