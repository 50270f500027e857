//! `skiff status`: the cluster at a glance — the API server and its version, the console and
//! registry addresses, nodes (Ready, pods, capacity), pods by phase, apps and their URLs, and
//! the components in the registry (the samples `skiff up` pushes). Errors say what to do next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    /// Kubeconfig (default: $KUBECONFIG, then ~/.kube/config, as kubectl; then the one
    /// `skiff up` writes in its default data directory).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

/// Where the kubeconfig came from, for the report and for error messages.
struct Source {
    /// The file (the first of `$KUBECONFIG` when it lists several).
    path: String,
    context: String,
    user: String,
}

/// The kubeconfig to use: as kubectl finds it, then `skiff up`'s; a missing one says how to
/// get one.
async fn load(flag: Option<&Path>) -> anyhow::Result<(kube::Config, Source)> {
    let up = crate::up::default_data_dir().join("admin.kubeconfig");
    let next = || {
        if up.exists() {
            format!(
                "`skiff up` wrote one: export KUBECONFIG={} (or pass --kubeconfig)",
                up.display()
            )
        } else {
            "start a cluster with `skiff up`, then paste the `export KUBECONFIG=...` line it \
             prints (or pass --kubeconfig FILE)"
                .to_string()
        }
    };
    let path: PathBuf = match flag {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(v) => {
                let first = std::env::split_paths(&v).find(|p| p.exists());
                first.ok_or_else(|| {
                    anyhow!(
                        "KUBECONFIG={} names no file that exists: {}",
                        v.to_string_lossy(),
                        next()
                    )
                })?
            }
            None => {
                let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"));
                match home.filter(|p| p.exists()) {
                    Some(p) => p,
                    None if up.exists() => up.clone(),
                    None => bail!(
                        "no kubeconfig: --kubeconfig and $KUBECONFIG are not set and there is no \
                         ~/.kube/config; {}",
                        next()
                    ),
                }
            }
        },
    };
    if !path.exists() {
        bail!("no kubeconfig at {}: {}", path.display(), next());
    }
    let kubeconfig = if flag.is_none() && std::env::var_os("KUBECONFIG").is_some() {
        // Every file KUBECONFIG lists, merged as kubectl does.
        Kubeconfig::from_env()
            .with_context(|| format!("reading $KUBECONFIG ({})", path.display()))?
            .ok_or_else(|| anyhow!("$KUBECONFIG is empty: {}", next()))?
    } else {
        Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?
    };
    let context = kubeconfig.current_context.clone().unwrap_or_default();
    let user = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using {}", path.display()))?;
    Ok((
        config,
        Source {
            path: path.display().to_string(),
            context,
            user,
        },
    ))
}

/// Says what went wrong talking to the API server at `url` and what to do about it.
fn explain(e: &kube::Error, url: &str, src: &Source, what: &str) -> anyhow::Error {
    if let kube::Error::Api(status) = e {
        return match status.code {
            401 => anyhow!(
                "the API server at {url} refused the credentials of user {:?} in {} (401 \
                 Unauthorized): the token or client certificate is not valid for this cluster — \
                 use the admin.kubeconfig from the cluster's data directory (`skiff up` prints \
                 its path), or mint one with `skiff kubeconfig --user NAME`",
                src.user,
                src.path
            ),
            403 => anyhow!(
                "user {:?} (from {}) may not {what} (403 Forbidden: {}): ask an admin for a \
                 ClusterRole that allows it, or use the cluster's admin.kubeconfig",
                src.user,
                src.path,
                status.message
            ),
            code => anyhow!("{what} at {url}: {} ({code})", status.message),
        };
    }
    let mut chain = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut refused = false;
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        chain.push_str(&err.to_string());
        chain.push_str(": ");
        source = err.source();
    }
    let lower = chain.to_lowercase();
    if refused || lower.contains("connection refused") {
        anyhow!(
            "cannot reach the API server at {url} (connection refused): is the server running? \
             Start it with `skiff up` (or `skiff server`), or point --kubeconfig / KUBECONFIG \
             (now {}) at a running cluster",
            src.path
        )
    } else if lower.contains("certificate") || lower.contains("tls") {
        anyhow!(
            "the API server at {url} is not the one {} trusts (TLS: {}): the cluster was \
             probably made anew — use the admin.kubeconfig it wrote this time",
            src.path,
            chain.trim_end_matches(": ")
        )
    } else {
        anyhow!(
            "cannot {what} at {url}: {} (is the server running, and is {} its kubeconfig?)",
            chain.trim_end_matches(": "),
            src.path
        )
    }
}

pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let (config, src) = load(args.kubeconfig.as_deref()).await?;
    let url = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = kube::Client::try_from(config).context("creating the API client")?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| explain(&e, &url, &src, "read the server version"))?;
    let info = skiff_sdk::deploy::ClusterInfo::discover(&client)
        .await
        .unwrap_or_default();

    println!("Server:      {url} (Kubernetes {})", version.git_version);
    println!(
        "Kubeconfig:  {} (context {:?}, user {:?})",
        src.path, src.context, src.user
    );
    println!("Console:     {url}/ui/");
    match &info.registry {
        Some(r) => println!("Registry:    http://{r}"),
        None => println!("Registry:    none published (ConfigMap kube-public/skiff-info)"),
    }
    if let Some(i) = &info.ingress {
        println!("Ingress:     http://{i} (an app NAME answers on http://NAME.localhost:PORT/)");
    }

    let pods = match Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Some(list.items),
        Err(e) => {
            println!();
            println!("Pods:        {:#}", explain(&e, &url, &src, "list pods"));
            None
        }
    };

    println!();
    match Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) if list.items.is_empty() => {
            println!("Nodes (0):   none registered — `skiff up` runs one; `skiff node` joins more")
        }
        Ok(list) => {
            println!("Nodes ({}):", list.items.len());
            let rows: Vec<[String; 6]> = list
                .items
                .iter()
                .map(|n| node_row(n, pods.as_deref()))
                .collect();
            table(
                &["NAME", "STATUS", "PODS", "CPU", "MEMORY", "VERSION"],
                &rows,
            );
        }
        Err(e) => println!("Nodes:       {:#}", explain(&e, &url, &src, "list nodes")),
    }

    if let Some(pods) = &pods {
        let mut phases: BTreeMap<String, usize> = BTreeMap::new();
        for p in pods {
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into());
            *phases.entry(phase).or_default() += 1;
        }
        let order = ["Running", "Pending", "Succeeded", "Failed", "Unknown"];
        let mut parts: Vec<String> = order
            .iter()
            .filter_map(|p| phases.remove(*p).map(|n| format!("{n} {p}")))
            .collect();
        parts.extend(phases.into_iter().map(|(p, n)| format!("{n} {p}")));
        println!();
        if parts.is_empty() {
            println!("Pods (0):    none");
        } else {
            println!("Pods ({}):    {}", pods.len(), parts.join(", "));
        }
    }

    println!();
    match skiff_sdk::deploy::list(&client, info.ingress.as_deref()).await {
        Ok(apps) if apps.is_empty() => {
            println!("Apps (0):    none — deploy one with `skiff deploy` (beside a skiff.toml)")
        }
        Ok(apps) => {
            println!("Apps ({}):", apps.len());
            let rows: Vec<[String; 4]> = apps
                .iter()
                .map(|a| {
                    let components: Vec<String> = a
                        .components
                        .iter()
                        .map(|(name, ready, want)| format!("{name} {ready}/{want}"))
                        .collect();
                    [
                        a.name.clone(),
                        a.namespace.clone(),
                        components.join(", "),
                        if a.urls.is_empty() {
                            "-".into()
                        } else {
                            a.urls.join(" ")
                        },
                    ]
                })
                .collect();
            table(&["NAME", "NAMESPACE", "READY", "URLS"], &rows);
        }
        Err(e) => println!("Apps:        cannot list them: {e}"),
    }
    match components(&client, info.ingress.as_deref()).await {
        Ok(rows) if rows.is_empty() => {}
        Ok(rows) => {
            println!();
            println!("Deployed components ({}):", rows.len());
            table(&["NAME", "NAMESPACE", "READY", "URLS"], &rows);
        }
        Err(e) => println!("Deployed components: cannot list them: {e:#}"),
    }

    if let Some(registry) = &info.registry {
        println!();
        match catalog(registry, info.token.as_deref()).await {
            Ok(repos) if repos.is_empty() => println!("Registry repositories (0): none"),
            Ok(repos) => {
                let samples: Vec<&str> = repos
                    .iter()
                    .filter_map(|r| r.strip_prefix("samples/"))
                    .collect();
                println!("Registry repositories ({}):", repos.len());
                if !samples.is_empty() {
                    println!("  samples ({}): {}", samples.len(), samples.join(", "));
                }
                let others: Vec<&String> = repos
                    .iter()
                    .filter(|r| !r.starts_with("samples/"))
                    .collect();
                if !others.is_empty() {
                    let shown: Vec<&str> = others.iter().take(20).map(|s| s.as_str()).collect();
                    let more = others.len().saturating_sub(shown.len());
                    println!(
                        "  others ({}): {}{}",
                        others.len(),
                        shown.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Err(e) => println!("Registry repositories: cannot list them: {e:#}"),
        }
    }
    Ok(())
}

/// One node's row: name, Ready, its pods (not finished), capacity and version.
/// The components `skiff deploy FILE --name NAME` made (labelled managed-by skiff, part of no
/// app): one row each with its readiness and the URLs of its Ingress.
async fn components(
    client: &kube::Client,
    ingress: Option<&str>,
) -> anyhow::Result<Vec<[String; 4]>> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::networking::v1::Ingress;
    let lp = ListParams::default().labels(&format!(
        "{}={},!{}",
        skiff_sdk::LABEL_MANAGED_BY,
        skiff_sdk::FIELD_MANAGER,
        skiff_sdk::LABEL_PART_OF
    ));
    let deployments = Api::<Deployment>::all(client.clone()).list(&lp).await?;
    let ingresses = Api::<Ingress>::all(client.clone()).list(&lp).await?;
    let mut rows = Vec::new();
    for d in &deployments.items {
        let name = d.metadata.name.clone().unwrap_or_default();
        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        let (ready, want) = skiff_sdk::deploy::readiness(d);
        let urls: Vec<String> = ingresses
            .items
            .iter()
            .filter(|i| {
                i.metadata.namespace.as_deref() == Some(namespace.as_str())
                    && i.metadata.name.as_deref() == Some(name.as_str())
            })
            .flat_map(|i| skiff_sdk::deploy::ingress_urls(i, ingress))
            .collect();
        let urls = if urls.is_empty() {
            "-".into()
        } else {
            urls.join(" ")
        };
        rows.push([name, namespace, format!("{ready}/{want}"), urls]);
    }
    Ok(rows)
}

fn node_row(n: &Node, pods: Option<&[Pod]>) -> [String; 6] {
    let name = n.metadata.name.clone().unwrap_or_default();
    let status = n.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| match c.status.as_str() {
            "True" => "Ready",
            "False" => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    let mut ready = ready.to_string();
    if n.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        ready.push_str(",SchedulingDisabled");
    }
    let capacity = |key: &str| {
        status
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .and_then(|c| c.get(key))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "-".into())
    };
    let running = pods.map(|pods| {
        pods.iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name))
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .count()
    });
    let pods_col = match running {
        Some(n) => format!("{n}/{}", capacity("pods")),
        None => format!("?/{}", capacity("pods")),
    };
    let version = status
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.clone())
        .unwrap_or_else(|| "-".into());
    [
        name,
        ready,
        pods_col,
        capacity("cpu"),
        human_memory(&capacity("memory")),
        version,
    ]
}

/// A memory quantity in binary units a person reads at once (`24581384Ki` → `23.4Gi`); left
/// as it is when it does not parse.
fn human_memory(q: &str) -> String {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];
    let (digits, scale) = units
        .iter()
        .find_map(|(suffix, scale)| q.strip_suffix(suffix).map(|d| (d, *scale)))
        .unwrap_or((q, 1));
    let Ok(n) = digits.parse::<u64>() else {
        return q.to_string();
    };
    let bytes = n.saturating_mul(scale) as f64;
    match units.iter().rev().find(|(_, s)| bytes >= *s as f64) {
        Some((suffix, s)) => format!("{:.1}{suffix}", bytes / *s as f64),
        None => format!("{n}"),
    }
}

/// Prints rows under headers, columns padded to their widest cell, indented two spaces.
fn table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::from(" ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            out.push(' ');
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The registry's repositories (`GET /v2/_catalog`), with the push token when there is one.
async fn catalog(registry: &str, token: Option<&str>) -> anyhow::Result<Vec<String>> {
    use base64::Engine as _;
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::get(format!("http://{registry}/v2/_catalog?n=1000"));
    if let Some(t) = token {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("skiff:{t}"));
        req = req.header(http::header::AUTHORIZATION, format!("Basic {basic}"));
    }
    let req = req.body(Empty::new()).context("building the request")?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| anyhow!("http://{registry} did not answer in 10s"))?
        .with_context(|| format!("asking http://{registry} (is the registry running?)"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the catalog")?
        .to_bytes();
    if !status.is_success() {
        bail!(
            "http://{registry}/v2/_catalog answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&body).context("parsing the catalog")?;
    Ok(v["repositories"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::human_memory;

    #[test]
    fn memory_in_binary_units() {
        assert_eq!(human_memory("24581384Ki"), "23.4Gi");
        assert_eq!(human_memory("512Mi"), "512.0Mi");
        assert_eq!(human_memory("100"), "100");
        assert_eq!(human_memory("1G"), "1G");
        assert_eq!(human_memory("-"), "-");
    }
}
