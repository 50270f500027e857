//! Clients of a server under test, from its admin kubeconfig: the one place tests build a
//! kube-rs `Client` and read the kubeconfig's bearer token.

use std::path::Path;

use anyhow::{Context, Result};

/// The kube-rs configuration of `kubeconfig` (its current context).
pub async fn config(kubeconfig: &Path) -> Result<kube::Config> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    Ok(kube::Config::from_custom_kubeconfig(file, &Default::default()).await?)
}

/// A kube-rs client of `kubeconfig`.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    Ok(kube::Client::try_from(config(kubeconfig).await?)?)
}

/// A client of `kubeconfig`'s server that sends no bearer token (for 401 tests).
pub async fn anonymous_client(kubeconfig: &Path) -> Result<kube::Client> {
    let mut config = config(kubeconfig).await?;
    config.auth_info.token = None;
    Ok(kube::Client::try_from(config)?)
}

/// The bearer token of the first user of `kubeconfig` (`users[0].user.token`).
pub fn bearer_token(kubeconfig: &Path) -> Result<String> {
    let text = std::fs::read_to_string(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let doc: serde_json::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not YAML", kubeconfig.display()))?;
    doc["users"][0]["user"]["token"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{} has no users[0].user.token", kubeconfig.display()))
}

/// Runs `tests/python/SCRIPT` with the Python `kubernetes` client against a fresh `skiff server`
/// (the script takes the kubeconfig path and prints `ok` last when every check held); returns
/// without running when Python is missing and tools are not required.
pub fn run_python_script(script: &str) {
    let Some(python) = crate::tools::python() else {
        return;
    };
    let server = crate::Server::start().expect("server starts");
    let out = std::process::Command::new(python)
        .arg(crate::repo_root().join("tests/python").join(script))
        .arg(&server.kubeconfig)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().last(), Some("ok"), "{stdout}");
}
