//! `skiff registry`, `skiff push` and `skiff pull`: the OCI registry and its client.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use skiff_registry::{ClientOptions, RegistryClient, RegistryConfig, TlsFiles};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RegistryArgs {
    #[command(subcommand)]
    command: Option<RegistryCommand>,
    /// Directory for blobs, manifests and the push token (DIR/registry.token).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: String,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require the token for pulls too (pulls are anonymous by default).
    #[arg(long)]
    require_pull_auth: bool,
    #[command(flatten)]
    ready: crate::ready::ReadyArgs,
}

#[derive(clap::Subcommand)]
enum RegistryCommand {
    /// Remove blobs no manifest references, in a data directory no registry is serving.
    ///
    /// Example: skiff registry gc --data-dir /var/lib/skiff-registry
    Gc(GcArgs),
}

#[derive(clap::Args)]
struct GcArgs {
    /// The registry's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Keep unreferenced blobs younger than this (e.g. 30s, 10m, 1h; 0 for none).
    #[arg(long, default_value = "1h")]
    grace: String,
}

#[derive(clap::Args)]
pub(crate) struct PushArgs {
    /// The component to push.
    file: PathBuf,
    /// Where to push it: `HOST[:PORT]/NAME[:TAG]`.
    reference: String,
    /// Use plain HTTP (loopback registries always use it).
    #[arg(long)]
    plain_http: bool,
    /// The registry token.
    #[arg(long, env = "SKIFF_REGISTRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Local blob cache (default: $XDG_CACHE_HOME/skiff/registry).
    #[arg(long, env = "SKIFF_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Trust this CA certificate (PEM) and use HTTPS even for a loopback registry.
    #[arg(long, conflicts_with = "plain_http")]
    ca_cert: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct PullArgs {
    /// What to pull: `HOST[:PORT]/NAME[:TAG|@DIGEST]`.
    reference: String,
    /// Where to write the component.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// Use plain HTTP (loopback registries always use it).
    #[arg(long)]
    plain_http: bool,
    /// The registry token (needed only by registries that require it for pulls).
    #[arg(long, env = "SKIFF_REGISTRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Local blob cache (default: $XDG_CACHE_HOME/skiff/registry).
    #[arg(long, env = "SKIFF_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Trust this CA certificate (PEM) and use HTTPS even for a loopback registry.
    #[arg(long, conflicts_with = "plain_http")]
    ca_cert: Option<PathBuf>,
}

pub(crate) async fn run_registry(args: RegistryArgs) -> anyhow::Result<()> {
    if let Some(RegistryCommand::Gc(gc)) = args.command {
        let grace = parse_duration(&gc.grace)?;
        let dir = gc.data_dir.clone();
        let report = tokio::task::spawn_blocking(move || skiff_registry::gc_offline(&dir, grace))
            .await
            .context("garbage collection task failed")?
            .with_context(|| format!("garbage collection of {}", gc.data_dir.display()))?;
        println!(
            "removed {} blobs ({} bytes), kept {} referenced and {} younger than {}",
            report.removed, report.freed_bytes, report.live, report.spared_young, gc.grace
        );
        return Ok(());
    }
    let Some(data_dir) = args.data_dir else {
        bail!("--data-dir is required");
    };
    let addr: std::net::SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen {:?} is not an address like 127.0.0.1:5000",
            args.listen
        )
    })?;
    let mut config = RegistryConfig::new(&data_dir);
    config.require_auth_for_pull = args.require_pull_auth;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsFiles { cert, key });
    }
    let handle = skiff_registry::start(addr, config)
        .await
        .with_context(|| format!("starting the registry on {addr}"))?;
    let scheme = if handle.is_tls() { "https" } else { "http" };
    eprintln!(
        "registry listening on {scheme}://{} (token in {})",
        handle.local_addr(),
        data_dir.join(skiff_registry::auth::TOKEN_FILE).display()
    );
    let mut ready = serde_json::Map::new();
    ready.insert("registry".into(), handle.local_addr().to_string().into());
    ready.insert(
        "registryUrl".into(),
        format!("{scheme}://{}", handle.local_addr()).into(),
    );
    ready.insert(
        "registryTokenFile".into(),
        data_dir
            .join(skiff_registry::auth::TOKEN_FILE)
            .display()
            .to_string()
            .into(),
    );
    args.ready.write(ready)?;
    crate::signals::wait_for_shutdown().await;
    eprintln!("registry shutting down");
    args.ready.remove();
    handle.shutdown(Duration::from_secs(10)).await?;
    Ok(())
}

pub(crate) async fn run_push(args: PushArgs) -> anyhow::Result<()> {
    let wasm = tokio::fs::read(&args.file)
        .await
        .with_context(|| format!("reading {}", args.file.display()))?;
    let client = client(args.cache_dir, args.token, args.plain_http, args.ca_cert)
        .await?
        .with_push_progress(std::sync::Arc::new(crate::progress::PushBars::new(
            &args.reference,
        )));
    let pushed = client
        .push_wasm(&args.reference, wasm.into())
        .await
        .map_err(|e| unreachable_hint(e, &args.reference))
        .with_context(|| format!("pushing {} to {}", args.file.display(), args.reference))?;
    println!("{}", pushed.manifest_digest);
    Ok(())
}

pub(crate) async fn run_pull(args: PullArgs) -> anyhow::Result<()> {
    let client = client(args.cache_dir, args.token, args.plain_http, args.ca_cert).await?;
    let pulled = client
        .pull_wasm(&args.reference)
        .await
        .map_err(|e| unreachable_hint(e, &args.reference))
        .with_context(|| format!("pulling {}", args.reference))?;
    tokio::fs::copy(&pulled.path, &args.output)
        .await
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("{}", pulled.manifest_digest);
    Ok(())
}

/// A client error, with what to do when the registry did not answer at all.
fn unreachable_hint(e: skiff_registry::ClientError, reference: &str) -> anyhow::Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut unreachable = false;
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            unreachable |= matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut
            );
        }
        unreachable |= err.to_string().contains("error sending request");
        source = err.source();
    }
    if !unreachable {
        return e.into();
    }
    let host = reference.split('/').next().unwrap_or(reference);
    anyhow::Error::new(e).context(format!(
        "no registry answers at {host}: is it running? (`skiff up` runs one and prints its \
         address; `skiff registry` runs one alone)"
    ))
}

async fn client(
    cache_dir: Option<PathBuf>,
    token: Option<String>,
    plain_http: bool,
    ca_cert: Option<PathBuf>,
) -> anyhow::Result<RegistryClient> {
    let mut opts = ClientOptions::new(cache_dir.unwrap_or_else(default_cache_dir));
    opts.token = token.filter(|t| !t.is_empty());
    opts.plain_http = plain_http;
    if let Some(ca) = ca_cert {
        let pem = tokio::fs::read(&ca)
            .await
            .with_context(|| format!("reading {}", ca.display()))?;
        opts.extra_root_certificates.push(pem);
        opts.force_https = true;
    }
    Ok(RegistryClient::new(opts)?)
}

pub(crate) fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("skiff/registry");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache/skiff/registry");
    }
    std::env::temp_dir().join("skiff-registry-cache")
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 30s, 10m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("{s:?} is not a duration like 30s, 10m or 1h"),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
