//! `wasi:cli/command` sample: prints its environment and the files under /config and /secret.
//!
//! Output, one item per line: `KEY=value` for every env var (sorted), then for every file under
//! /config and /secret (recursively, sorted) `<path>: <content>` with newlines in the content
//! escaped as `\n`. With `--loop SECONDS` it prints the same report every SECONDS forever.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DIRS: [&str; 2] = ["/config", "/secret"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let interval = match args.iter().position(|a| a == "--loop") {
        Some(i) => match args.get(i + 1).and_then(|s| s.parse::<u64>().ok()) {
            Some(secs) => Some(secs),
            None => {
                eprintln!("usage: env-reader [--loop SECONDS]");
                std::process::exit(2);
            }
        },
        None => None,
    };
    let mut round = 0u64;
    loop {
        let report = report();
        let mut out = std::io::stdout().lock();
        if interval.is_some() {
            let _ = writeln!(out, "--- round {round}");
        }
        let _ = out.write_all(report.as_bytes());
        let _ = out.flush();
        drop(out);
        match interval {
            Some(secs) => std::thread::sleep(Duration::from_secs(secs.max(1))),
            None => break,
        }
        round += 1;
    }
}

fn report() -> String {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    let mut out = String::new();
    for (k, v) in vars {
        out.push_str(&format!("{k}={v}\n"));
    }
    for dir in DIRS {
        let mut files = Vec::new();
        if let Err(e) = walk(Path::new(dir), &mut files) {
            out.push_str(&format!("{dir}: <{e}>\n"));
            continue;
        }
        files.sort();
        for file in files {
            match fs::read(&file) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let text = text.trim_end_matches('\n').replace('\n', "\\n");
                    out.push_str(&format!("{}: {}\n", file.display(), text));
                }
                Err(e) => out.push_str(&format!("{}: <{e}>\n", file.display())),
            }
        }
    }
    out
}

/// Collects regular files below `dir`, skipping dot-entries (Kubernetes' `..data` symlinks).
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = fs::metadata(&path)?;
        if meta.is_dir() {
            walk(&path, files)?;
        } else if meta.is_file() {
            files.push(path);
        }
    }
    Ok(())
}
