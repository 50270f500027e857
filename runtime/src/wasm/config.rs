//! `wasi:config/store` for containers that declare it (wasmtime's `wasmtime-wasi-config`): the
//! values are the files of the directory mounted at
//! [`CONFIG_MOUNT_PATH`](crate::capabilities::CONFIG_MOUNT_PATH) — file name = key, contents =
//! value — so a ConfigMap or Secret behind that volume reaches the running component when the
//! node refreshes the volume.
//!
//! The values are cached per instance and read again when the volume changed: a file-set volume
//! is switched atomically through its `..data` symlink, so one `readlink` per call tells
//! whether the cached set is current (for any other kind of directory the files are read on
//! every call).

use std::path::{Path, PathBuf};

use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

/// The config state of one store.
#[derive(Default)]
pub(crate) struct ConfigFiles {
    /// The host directory behind the config mount; `None`: no values.
    dir: Option<PathBuf>,
    /// The `..data` target the cached values were read from.
    stamp: Option<PathBuf>,
    /// Whether `vars` was read at least once.
    loaded: bool,
    vars: WasiConfigVariables,
}

impl ConfigFiles {
    /// Values read from `dir` (when first asked for).
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        ConfigFiles {
            dir,
            ..Default::default()
        }
    }

    /// The current values, read again if the volume changed.
    pub(crate) fn view(&mut self) -> WasiConfig<'_> {
        self.refresh();
        WasiConfig::from(&self.vars)
    }

    fn refresh(&mut self) {
        let Some(dir) = &self.dir else { return };
        let stamp = std::fs::read_link(dir.join("..data")).ok();
        if self.loaded && stamp.is_some() && stamp == self.stamp {
            return;
        }
        self.vars = read_values(dir);
        self.stamp = stamp;
        self.loaded = true;
    }
}

/// The regular files directly in `dir` (following the file-set volume's symlinks), skipping
/// hidden names; a file that is not UTF-8 is skipped with a warning (values are strings).
fn read_values(dir: &Path) -> WasiConfigVariables {
    let mut vars = WasiConfigVariables::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the config directory");
            return vars;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(key) = name.to_str() else { continue };
        if key.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if !path.metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        match std::fs::read(&path).map(String::from_utf8) {
            Ok(Ok(value)) => {
                vars.insert(key, value);
            }
            Ok(Err(_)) => {
                tracing::warn!(file = %path.display(), "config value is not UTF-8; skipped")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read config value")
            }
        }
    }
    vars
}
