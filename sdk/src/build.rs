//! Building an app: each component's `[component.build] command` runs (`sh -c`) in the app's
//! base directory, skipped when `watch` is given and no watched file is newer than the source;
//! afterwards every `.wasm` source must exist.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::deploy::Event;
use crate::model::{App, Component, Source};
use crate::{Error, Result};

/// Builds every component of `app` that has a build command, then checks every file source
/// exists. Output of the commands goes to this process's stdout and stderr.
pub async fn build(app: &App, progress: &mut (dyn FnMut(&Event) + Send)) -> Result<()> {
    app.validate()?;
    for c in &app.components {
        let Some(b) = &c.build else { continue };
        if let Some(reason) = up_to_date(app, c, &b.watch)? {
            progress(&Event::BuildSkipped {
                component: c.name.clone(),
                reason,
            });
            continue;
        }
        progress(&Event::Building {
            component: c.name.clone(),
            command: b.command.clone(),
        });
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&b.command)
            .current_dir(&app.base_dir)
            .stdin(std::process::Stdio::null())
            .status()
            .await
            .map_err(|e| Error::Build {
                component: c.name.clone(),
                message: format!("cannot run `sh -c {:?}`: {e}", b.command),
            })?;
        if !status.success() {
            return Err(Error::Build {
                component: c.name.clone(),
                message: format!("the build command `{}` failed ({status})", b.command),
            });
        }
        progress(&Event::Built {
            component: c.name.clone(),
        });
    }
    for c in &app.components {
        if let Source::File(p) = &c.source {
            let path = app.source_path(p);
            if !path.is_file() {
                let hint = if c.build.is_some() {
                    "its build command did not make it"
                } else {
                    "give the component a [component.build] command, or build it first"
                };
                return Err(Error::Build {
                    component: c.name.clone(),
                    message: format!("source {} does not exist: {hint}", path.display()),
                });
            }
        }
    }
    Ok(())
}

/// `Some(why)` when the component's source is newer than every file its `watch` globs match.
fn up_to_date(app: &App, c: &Component, watch: &[String]) -> Result<Option<String>> {
    let Source::File(p) = &c.source else {
        return Ok(None);
    };
    if watch.is_empty() {
        return Ok(None);
    }
    let Some(built) = modified(&app.source_path(p)) else {
        return Ok(None);
    };
    let mut files = 0usize;
    for pattern in watch {
        let full = app.base_dir.join(pattern);
        let paths = glob::glob(&full.to_string_lossy()).map_err(|e| Error::Build {
            component: c.name.clone(),
            message: format!("watch pattern {pattern:?} is invalid: {e}"),
        })?;
        for path in paths.flatten() {
            files += 1;
            if modified(&path).is_none_or(|m| m > built) {
                return Ok(None);
            }
        }
    }
    Ok(Some(format!(
        "{} is newer than the {files} watched files",
        p.display()
    )))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(PathBuf::from(path)).ok()?.modified().ok()
}
