//! `skiff new NAME --template T`: writes a starter app, a directory with a `skiff.toml` and the
//! sources of one HTTP component (`wasi:http/incoming-handler`) in Rust, C, JavaScript or Python,
//! whose `[component.build] command` (a `build.sh` beside it) builds the component with this
//! machine's guest toolchain, or names the toolchain piece that is missing and how to install it.
//!
//! The templates live in `cli/templates/` and are compiled into the binary; `{{name}}` in them
//! becomes the app's name. The WASI WIT files the C, Python and JavaScript templates need are
//! kept once, in `cli/templates/wasi-0.2.12/` (the versions the `wasip2` crate and wasmtime 48
//! speak).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub(crate) struct NewArgs {
    /// Name of the app and its component: a DNS label (lowercase letters, digits and `-`,
    /// starting with a letter, at most 63 characters). The directory NAME/ is created.
    name: String,
    /// The starter to write.
    #[arg(short, long, value_enum)]
    template: Template,
    /// Write into this directory instead of ./NAME (it must not exist or be empty).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// A starter app: the language of its one HTTP component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Template {
    /// Rust, built by Debian's rustc-web for wasm32-wasip2 with the `wasip2` crate.
    HttpRust,
    /// C, with bindings from `wit-bindgen c`, built by clang-22 for wasm32-wasip2.
    HttpC,
    /// JavaScript, built by componentize-js (npm).
    HttpJs,
    /// Python, built by componentize-py (pip).
    HttpPython,
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Template::HttpRust => "http-rust",
            Template::HttpC => "http-c",
            Template::HttpJs => "http-js",
            Template::HttpPython => "http-python",
        })
    }
}

/// One file of a template: its path in the app, its text (with `{{name}}` placeholders), and
/// whether it is a script.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

macro_rules! template_file {
    ($dir:literal, $path:literal) => {
        TemplateFile {
            path: $path,
            text: include_str!(concat!("../templates/", $dir, "/", $path)),
            executable: false,
        }
    };
    ($dir:literal, $path:literal, executable) => {
        TemplateFile {
            path: $path,
            text: include_str!(concat!("../templates/", $dir, "/", $path)),
            executable: true,
        }
    };
}

const HTTP_RUST: &[TemplateFile] = &[
    template_file!("http-rust", "skiff.toml"),
    template_file!("http-rust", "build.sh", executable),
    template_file!("http-rust", "Cargo.toml"),
    template_file!("http-rust", "Cargo.lock"),
    template_file!("http-rust", ".cargo/config.toml"),
    template_file!("http-rust", "build.rs"),
    template_file!("http-rust", "src/lib.rs"),
    template_file!("http-rust", ".gitignore"),
];

const HTTP_C: &[TemplateFile] = &[
    template_file!("http-c", "skiff.toml"),
    template_file!("http-c", "build.sh", executable),
    template_file!("http-c", "src/app.c"),
    template_file!("http-c", "wit/world.wit"),
    template_file!("http-c", ".gitignore"),
];

const HTTP_JS: &[TemplateFile] = &[
    template_file!("http-js", "skiff.toml"),
    template_file!("http-js", "build.sh", executable),
    template_file!("http-js", "package.json"),
    template_file!("http-js", "app.js"),
    template_file!("http-js", "wit/world.wit"),
    template_file!("http-js", ".gitignore"),
];

const HTTP_PYTHON: &[TemplateFile] = &[
    template_file!("http-python", "skiff.toml"),
    template_file!("http-python", "build.sh", executable),
    template_file!("http-python", "app.py"),
    template_file!("http-python", "wit/world.wit"),
    template_file!("http-python", ".gitignore"),
];

/// The WASI 0.2.12 packages of the `wasi:http/proxy` world (from the `wasip2` crate), written to
/// `wit/deps/` of the C and Python apps, and lowered to 0.2.10 for the JavaScript app.
const WASI_WIT: &[TemplateFile] = &[
    template_file!("wasi-0.2.12", "cli.wit"),
    template_file!("wasi-0.2.12", "clocks.wit"),
    template_file!("wasi-0.2.12", "filesystem.wit"),
    template_file!("wasi-0.2.12", "http.wit"),
    template_file!("wasi-0.2.12", "io.wit"),
    template_file!("wasi-0.2.12", "random.wit"),
    template_file!("wasi-0.2.12", "sockets.wit"),
];

impl Template {
    fn files(self) -> &'static [TemplateFile] {
        match self {
            Template::HttpRust => HTTP_RUST,
            Template::HttpC => HTTP_C,
            Template::HttpJs => HTTP_JS,
            Template::HttpPython => HTTP_PYTHON,
        }
    }

    /// The WASI version of the WIT files in the app's `wit/deps`, if it has them.
    fn wasi_wit(self) -> Option<WasiVersion> {
        match self {
            Template::HttpRust => None,
            Template::HttpC | Template::HttpPython => Some(WasiVersion::V0_2_12),
            // componentize-js 0.23's engine is built against WASI 0.2.10: its world must not
            // name a newer version.
            Template::HttpJs => Some(WasiVersion::V0_2_10),
        }
    }
}

#[derive(Clone, Copy)]
enum WasiVersion {
    V0_2_12,
    V0_2_10,
}

/// A WASI 0.2.12 WIT file as the same package at 0.2.10: the versions in package names and
/// references lowered, and the one function added after 0.2.10 (`wasi:cli/exit`'s
/// `exit-with-code`, `@since(version = 0.2.12)`) marked unstable, as it was in 0.2.10.
fn lower_to_0_2_10(text: &str) -> String {
    text.replace(
        "@since(version = 0.2.12)",
        "@unstable(feature = cli-exit-with-code)",
    )
    .replace("@0.2.12", "@0.2.10")
}

/// Checks that `name` can name the app, its namespace, its component's Deployment and Service
/// (an RFC 1035 label), its package (Rust, npm) and file names.
pub(crate) fn validate_name(name: &str) -> anyhow::Result<()> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("it must start with a lowercase letter")
    } else if name.ends_with('-') {
        Some("it must not end with '-'")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some("only lowercase letters, digits and '-' are allowed")
    } else {
        None
    };
    match why {
        Some(why) => bail!(
            "invalid app name {name:?}: {why} (the name becomes a Kubernetes namespace and \
             Service name, an RFC 1035 label such as \"hello-world\")"
        ),
        None => Ok(()),
    }
}

/// The files of `template` for an app called `name`: (path relative to the app, contents,
/// executable).
fn render(template: Template, name: &str) -> Vec<(String, String, bool)> {
    let mut out: Vec<(String, String, bool)> = template
        .files()
        .iter()
        .map(|f| {
            (
                f.path.to_string(),
                f.text.replace("{{name}}", name),
                f.executable,
            )
        })
        .collect();
    if let Some(version) = template.wasi_wit() {
        for f in WASI_WIT {
            let text = match version {
                WasiVersion::V0_2_12 => f.text.to_string(),
                WasiVersion::V0_2_10 => lower_to_0_2_10(f.text),
            };
            out.push((format!("wit/deps/{}", f.path), text, false));
        }
    }
    out
}

/// Writes the app `name` from `template` into `dir`, which must not exist or be empty.
pub(crate) fn write_app(dir: &Path, template: Template, name: &str) -> anyhow::Result<()> {
    validate_name(name)?;
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty; choose another name or --dir",
                    dir.display()
                );
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", dir.display())),
    }
    for (path, text, executable) in render(template, name) {
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
        if executable {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", target.display()))?;
        }
    }
    Ok(())
}

/// `skiff new`: writes the app and says what to run next.
pub(crate) fn run(args: NewArgs) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    write_app(&dir, args.template, &args.name)?;
    let toolchain = match args.template {
        Template::HttpRust => {
            "Debian's rustc-web (apt-get install rustc-web cargo-web rust-web-src rust-web-llvm \
             lld-22 wasi-libc)"
        }
        Template::HttpC => {
            "clang-22 and wit-bindgen (apt-get install clang-22 lld-22 libclang-rt-22-dev-wasm32 \
             wasi-libc rust-web-llvm; cargo install --locked wit-bindgen-cli@0.57.1)"
        }
        Template::HttpJs => {
            "componentize-js (npm install in the app's directory, or npm install -g \
             @bytecodealliance/componentize-js@0.23.0)"
        }
        Template::HttpPython => "componentize-py (pip install componentize-py==0.25.1)",
    };
    println!(
        "created {} ({}): build it with {toolchain}",
        dir.display(),
        args.template
    );
    println!("next: cd {} && skiff build && skiff deploy", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_rfc_1035_labels() {
        for good in ["demo", "hello-world", "a", "app2", &"a".repeat(63)] {
            validate_name(good).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("Demo", "start with a lowercase letter"),
            ("2demo", "start with a lowercase letter"),
            ("demo-", "end with '-'"),
            ("de_mo", "only lowercase letters"),
            ("de.mo", "only lowercase letters"),
            (&"a".repeat(64), "longer than 63"),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn every_file_under_templates_is_written_by_some_template() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut listed: Vec<String> = Vec::new();
        for (dir, files) in [
            ("http-rust", HTTP_RUST),
            ("http-c", HTTP_C),
            ("http-js", HTTP_JS),
            ("http-python", HTTP_PYTHON),
            ("wasi-0.2.12", WASI_WIT),
        ] {
            listed.extend(files.iter().map(|f| format!("{dir}/{}", f.path)));
        }
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(&root).unwrap();
                    on_disk.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        listed.sort();
        on_disk.sort();
        assert_eq!(listed, on_disk);
    }

    #[test]
    fn rendering_fills_in_the_name_everywhere() {
        for template in [
            Template::HttpRust,
            Template::HttpC,
            Template::HttpJs,
            Template::HttpPython,
        ] {
            let files = render(template, "shop");
            for (path, text, _) in &files {
                assert!(
                    !text.contains("{{"),
                    "{template}: {path} keeps a placeholder"
                );
            }
            let manifest = &files.iter().find(|f| f.0 == "skiff.toml").unwrap().1;
            assert!(manifest.contains("name = \"shop\""), "{manifest}");
            assert!(
                manifest.contains("source = \"target/shop.wasm\""),
                "{manifest}"
            );
            let build = files.iter().find(|f| f.0 == "build.sh").unwrap();
            assert!(build.2, "{template}: build.sh is executable");
        }
    }

    #[test]
    fn the_javascript_wit_names_wasi_0_2_10_only() {
        let files = render(Template::HttpJs, "shop");
        let wit: Vec<_> = files.iter().filter(|f| f.0.ends_with(".wit")).collect();
        assert_eq!(wit.len(), WASI_WIT.len() + 1);
        for (path, text, _) in wit {
            assert!(!text.contains("0.2.12"), "{path}");
        }
        let c = render(Template::HttpC, "shop");
        let http = &c.iter().find(|f| f.0 == "wit/deps/http.wit").unwrap().1;
        assert!(http.starts_with("package wasi:http@0.2.12;"));
    }

    #[test]
    fn an_existing_non_empty_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("keep"), "x").unwrap();
        let err = write_app(tmp.path(), Template::HttpC, "demo")
            .unwrap_err()
            .to_string();
        assert!(err.contains("already exists and is not empty"), "{err}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write_app(&empty, Template::HttpC, "demo").unwrap();
        assert!(empty.join("wit/deps/http.wit").is_file());
    }
}
