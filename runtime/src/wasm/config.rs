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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

/// The config state of one store.
#[derive(Default)]
pub(crate) struct ConfigFiles {
    /// The host directory behind the config mount; `None`: no values.
    dir: Option<PathBuf>,
    /// The `..data` target the cached values were read from.
    stamp: Option<PathBuf>,
    /// Whether the values were read at least once.
    loaded: bool,
    /// The values, as read.
    values: BTreeMap<String, String>,
    /// The same, as wasmtime-wasi-config takes them.
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
        self.values = read_values(dir);
        self.vars = self
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.stamp = stamp;
        self.loaded = true;
    }
}

/// The regular files directly in `dir` (following the file-set volume's symlinks), skipping
/// hidden names; a file that is not UTF-8 is skipped with a warning (values are strings).
fn read_values(dir: &Path) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
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
                vars.insert(key.to_string(), value);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::ConfigFiles;
    use crate::spec::FileContent;
    use crate::wasm::volumes::write_files;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, FileContent> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), FileContent::new(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn values_follow_the_volume_when_the_node_refreshes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config");
        std::fs::create_dir(&dir).unwrap();
        write_files("config", &dir, &files(&[("greeting", "hello"), ("b", "2")])).unwrap();
        let mut config = ConfigFiles::new(Some(dir.clone()));
        config.refresh();
        let want: BTreeMap<String, String> = [("b", "2"), ("greeting", "hello")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            config.values, want,
            "hidden `..data` entries are not values"
        );

        // Unchanged volume: the cached values stay.
        config.refresh();
        assert_eq!(config.values, want);

        // The node's atomic update: the next call sees the new set.
        write_files("config", &dir, &files(&[("greeting", "bonjour")])).unwrap();
        config.refresh();
        assert_eq!(
            config.values.get("greeting").map(String::as_str),
            Some("bonjour")
        );
        assert!(!config.values.contains_key("b"), "a removed key is gone");
    }

    #[test]
    fn no_mount_means_no_values() {
        let mut config = ConfigFiles::new(None);
        config.refresh();
        assert!(config.values.is_empty());
    }
}
