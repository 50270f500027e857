//! `--ready-file PATH`: once a serving command (`server`, `registry`, `node`, `up`) is serving,
//! it writes its listening addresses to PATH as one JSON object, atomically (a temporary file
//! beside PATH renamed into place), so scripts and tests wait for the file instead of reading
//! log lines. The file is removed again on a clean shutdown.
//!
//! Keys (camelCase, only those of the components the command runs): `pid`; `apiServer`
//! (`https://HOST:PORT`) and `kubeconfig` (path); `registry` (`HOST:PORT`), `registryUrl`
//! (`http[s]://HOST:PORT`) and `registryTokenFile` (path); `node` (name) and `nodeEndpoint`
//! (`HOST:PORT`, plain HTTP); `ingress` (`HOST:PORT`, plain HTTP) and `ingressTls`
//! (`HOST:PORT`, HTTPS).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Map, Value};

#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct ReadyArgs {
    /// Once serving, write the listening addresses to this file as JSON (atomically: written
    /// beside it, then renamed into place); removed on a clean shutdown.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
}

impl ReadyArgs {
    /// Writes `fields` (plus `pid`) to the ready file, if one was asked for.
    pub(crate) fn write(&self, fields: Map<String, Value>) -> anyhow::Result<()> {
        let Some(path) = &self.ready_file else {
            return Ok(());
        };
        let mut object = Map::new();
        object.insert("pid".into(), Value::from(std::process::id()));
        object.extend(fields);
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".ready-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        serde_json::to_writer(&mut tmp, &Value::Object(object))?;
        std::io::Write::write_all(&mut tmp, b"\n")?;
        tmp.as_file().sync_all()?;
        tmp.persist(path)
            .with_context(|| format!("writing the ready file {}", path.display()))?;
        Ok(())
    }

    /// Removes the ready file (on a clean shutdown).
    pub(crate) fn remove(&self) {
        if let Some(path) = &self.ready_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Waits until `path` holds a ready file and returns its object; fails when `child` exits first
/// or after `timeout`. (Used by `skiff bench pods` to wait for the node it starts.)
#[cfg(feature = "bench")]
pub(crate) async fn wait_for_file(
    path: &Path,
    child: &mut tokio::process::Child,
    timeout: std::time::Duration,
) -> anyhow::Result<Map<String, Value>> {
    use anyhow::bail;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(Value::Object(object)) = serde_json::from_str(&text)
        {
            return Ok(object);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the process exited ({status}) before writing {}",
                path.display()
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no ready file {} within {timeout:?}", path.display());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_file_appears_whole_with_the_pid_and_goes_on_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ready");
        let args = ReadyArgs {
            ready_file: Some(path.clone()),
        };
        let mut fields = Map::new();
        fields.insert("registry".into(), "127.0.0.1:5000".into());
        args.write(fields).unwrap();
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written["registry"], "127.0.0.1:5000");
        assert_eq!(written["pid"], Value::from(std::process::id()));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.ready"], "no temporary file is left beside it");
        args.remove();
        assert!(!path.exists());
    }

    #[test]
    fn without_a_path_nothing_is_written() {
        ReadyArgs::default().write(Map::new()).unwrap();
        ReadyArgs::default().remove();
    }
}
