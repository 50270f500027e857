//! `skiff up`: a one-process cluster — API server, registry and a node —
//! on one data directory, seeded with the sample components so there is something to run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// The samples of `samples/`, pushed on start under the names their manifests use.
const SAMPLES: &[(&str, &[u8])] = &[
    (
        "samples/hello-http:1.0",
        include_bytes!("../../samples/hello-http/hello-http.wasm"),
    ),
    (
        "samples/hello-http:2.0",
        include_bytes!("../../samples/hello-http/hello-http-v2.wasm"),
    ),
    (
        "samples/env-reader:1.0",
        include_bytes!("../../samples/env-reader/env-reader.wasm"),
    ),
    (
        "samples/fileserver-puller:1.0",
        include_bytes!("../../samples/fileserver/puller.wasm"),
    ),
    (
        "samples/fileserver-server:1.0",
        include_bytes!("../../samples/fileserver/server.wasm"),
    ),
    (
        "samples/hello-c:1.0",
        include_bytes!("../../samples/hello-c/hello-c.wasm"),
    ),
    (
        "samples/hello-c-http:1.0",
        include_bytes!("../../samples/hello-c/hello-c-http.wasm"),
    ),
    (
        "samples/frontend:1.0",
        include_bytes!("../../samples/frontend/frontend.wasm"),
    ),
    (
        "samples/counter-frontend:1.0",
        include_bytes!("../../samples/counter/frontend.wasm"),
    ),
    (
        "samples/counter-backend:1.0",
        include_bytes!("../../samples/counter/backend.wasm"),
    ),
];

#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// Directory for everything the cluster keeps (default: ~/.local/share/skiff).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the Kubernetes API (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Address of the OCI registry (plain HTTP on loopback).
    #[arg(long, default_value = "127.0.0.1:5000")]
    registry_listen: SocketAddr,
    /// Name of the node this process runs.
    #[arg(long, default_value = "local")]
    node_name: String,
    /// Address of the node endpoint (logs, pod proxy, pod ports).
    #[arg(long, default_value = skiff_host::DEFAULT_LISTEN)]
    node_listen: SocketAddr,
    /// Address of the ingress: Ingress rules and NodePort Services (plain HTTP). Apps deployed
    /// with `skiff deploy` answer on `http://NAME.localhost:PORT/`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    ingress_listen: SocketAddr,
    /// Address of the ingress's HTTPS listener (certificates from `kubernetes.io/tls` Secrets
    /// chosen by SNI); off unless given.
    #[arg(long)]
    ingress_tls_listen: Option<SocketAddr>,
    /// IPv4 range of the node's pod IPs; it bounds how many pods the node holds (a /24: 253).
    /// Default: the first range of `--cluster-cidr` the API server gives the Node.
    #[arg(long)]
    pod_cidr: Option<String>,
    /// The most storage the local-path provisioner hands out on this node, all volumes
    /// together, as a quantity (for example 10Gi). Default: only the free space of the data
    /// directory's filesystem limits it.
    #[arg(long, value_parser = crate::node::parse_storage)]
    max_local_storage: Option<u64>,
    #[command(flatten)]
    runtimes: crate::node::RuntimeArgs,
    #[command(flatten)]
    eviction: crate::node::EvictionArgs,
    #[command(flatten)]
    guest_limits: crate::node::GuestLimitArgs,
    #[command(flatten)]
    network: crate::server::NetworkArgs,
    #[command(flatten)]
    service_accounts: crate::server::ServiceAccountArgs,
    #[command(flatten)]
    authorization: crate::server::AuthorizationArgs,
    #[command(flatten)]
    authentication: crate::server::AuthenticationArgs,
    #[command(flatten)]
    flow_control: crate::server::FlowControlArgs,
    #[command(flatten)]
    audit: crate::server::AuditArgs,
    #[command(flatten)]
    etcd: crate::server::EtcdArgs,
    #[command(flatten)]
    controllers: crate::controllers::ControllerArgs,
    #[command(flatten)]
    ready: crate::ready::ReadyArgs,
}

pub(crate) fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("skiff")
}

/// How long the node's own certificate is valid (kube-controller-manager's default
/// `--cluster-signing-duration`).
const NODE_CERTIFICATE_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 3600);

/// Writes `DATA/node-NAME.kubeconfig`, the node's own credential: a client certificate
/// `system:node:NAME` in `system:nodes` signed by the cluster CA (never the admin's token).
/// Made anew at every start.
fn mint_node_kubeconfig(dir: &std::path::Path, url: &str, node: &str) -> anyhow::Result<PathBuf> {
    let pki = dir.join("pki");
    let read = |name: &str| {
        std::fs::read_to_string(pki.join(name))
            .with_context(|| format!("reading {}", pki.join(name).display()))
    };
    let (ca, ca_key) = (read("ca.crt")?, read("ca.key")?);
    let user = format!("system:node:{node}");
    let (cert, key) = skiff_api::pki::client_certificate(
        &ca,
        &ca_key,
        &user,
        &["system:nodes".to_string()],
        NODE_CERTIFICATE_LIFETIME,
    )
    .context("minting the node's client certificate")?;
    let path = dir.join(format!("node-{node}.kubeconfig"));
    let text = skiff_api::pki::client_kubeconfig(url, &ca, &user, &cert, &key, None);
    skiff_api::pki::write_private(&path, text.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

pub(crate) async fn run(args: UpArgs) -> anyhow::Result<()> {
    // A signal while the cluster starts waits for it to be up, then stops it cleanly.
    crate::signals::install();
    let dir = args.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut steps = crate::progress::Steps::new();
    steps.start("starting the API server");
    steps.update(&args.listen.to_string());
    let mut server_opts = skiff_api::ServerOptions::new(&dir, args.listen);
    server_opts.network = args.network.config()?;
    args.authentication.apply(&mut server_opts);
    server_opts.service_accounts = args.service_accounts.options()?;
    server_opts.authorization_modes = args.authorization.modes();
    server_opts.encryption_provider_config = Some(encryption_config(&dir)?);
    args.flow_control.apply(&mut server_opts);
    args.audit.apply(&mut server_opts);
    args.etcd.apply(&mut server_opts)?;
    let server = skiff_api::start(server_opts)
        .await
        .with_context(|| {
            format!(
                "starting the API server on {} (another `skiff up` or server on that port? \
                 stop it, or pick another with --listen)",
                args.listen
            )
        })
        .inspect_err(|_| steps.fail())?;
    steps.done(&server.url);

    let registry_dir = dir.join("registry");
    let registry = skiff_registry::start(
        args.registry_listen,
        skiff_registry::RegistryConfig::new(&registry_dir),
    )
    .await
    .with_context(|| format!("starting the registry on {}", args.registry_listen))?;
    let token_path = dir.join("registry.token");
    skiff_api::pki::write_private(
        &token_path,
        format!("{}\n", registry.token()).as_bytes(),
        0o600,
    )
    .context("writing the registry token")?;
    let registry_addr = registry.local_addr();
    steps.start("pushing the samples");
    seed_samples(&dir, registry_addr, registry.token(), &steps)
        .await
        .inspect_err(|_| steps.fail())?;
    steps.done(&format!(
        "{} components in http://{registry_addr}/",
        SAMPLES.len()
    ));

    let node_kubeconfig = mint_node_kubeconfig(&dir, &server.url, &args.node_name)?;
    let mut node_config =
        skiff_host::NodeOptions::new(&node_kubeconfig, &args.node_name, dir.join("node"));
    node_config.listen = args.node_listen;
    node_config.pod_cidr = args.pod_cidr.clone();
    node_config.registry = Some(registry_addr.to_string());
    node_config.ingress_listen = Some(args.ingress_listen);
    node_config.ingress_tls_listen = args.ingress_tls_listen;
    node_config.max_local_storage = args.max_local_storage;
    args.runtimes.apply(&mut node_config);
    args.eviction.apply(&mut node_config)?;
    args.guest_limits.apply(&mut node_config);
    steps.start("starting the node");
    steps.update(&args.node_name);
    let node = node_config
        .start()
        .await
        .with_context(|| format!("starting node {}", args.node_name))
        .inspect_err(|_| steps.fail())?;
    steps.done(&args.node_name);

    let ingress_addr = node.ingress_addr().unwrap_or(args.ingress_listen);
    // From here on the node has made things on the host (its bridge, pods): a failing step
    // still stops it cleanly.
    let started = async {
        let info = crate::deploy::ClusterInfo {
            registry: Some(registry_addr.to_string()),
            ingress: Some(ingress_addr.to_string()),
        };
        let client =
            kube::Client::try_from(crate::deploy::kube_config(Some(&server.kubeconfig_path)).await?)
                .context("creating the API client")?;
        crate::deploy::publish_cluster_info(client, &info, registry.token())
            .await
            .context("publishing the registry and ingress addresses")?;

        let kubeconfig = std::path::absolute(&server.kubeconfig_path)
            .unwrap_or_else(|_| server.kubeconfig_path.clone());
        let console = format!("{}/ui/", server.url.trim_end_matches('/'));
        println!("Skiff is up.");
        println!("  API server:  {}", server.url);
        println!("  console:     {console}");
        println!("  kubeconfig:  {}", kubeconfig.display());
        println!(
            "  registry:    http://{registry_addr} (push token in {})",
            token_path.display()
        );
        println!(
            "  samples:     {registry_addr}/samples/ (hello-http 1.0 and 2.0, frontend, env-reader, fileserver, hello-c; see samples/README.md)"
        );
        println!(
            "  node:        {} (endpoint http://{}, for the API server only)",
            args.node_name,
            node.local_addr()
        );
        println!(
            "  ingress:     http://{ingress_addr} (an app deployed as NAME answers on http://NAME.localhost:{}/)",
            ingress_addr.port()
        );
        println!();
        println!(
            "Console: {console} (log in with a token: `skiff token create`, or the kubeconfig's certificate)"
        );
        println!();
        println!("Next:");
        println!(
            "  export KUBECONFIG={}",
            shell_quote(&kubeconfig.display().to_string())
        );
        println!("  skiff status");
        println!("  kubectl get namespaces");
        println!("  kubectl apply -f samples/hello-http/pod.yaml");
        println!("  kubectl get pods -o wide");
        println!("  skiff deploy samples/hello-http/hello-http.wasm --name hello");
        println!("Press Ctrl-C to stop; running `skiff up` again resumes where it left off.");

        let (controllers, mut ready) = args.controllers.start_beside(&server).await?;
        ready.insert("registry".into(), registry_addr.to_string().into());
        ready.insert(
            "registryUrl".into(),
            format!("http://{registry_addr}").into(),
        );
        ready.insert(
            "registryTokenFile".into(),
            token_path.display().to_string().into(),
        );
        ready.insert("node".into(), args.node_name.clone().into());
        ready.insert("nodeEndpoint".into(), node.local_addr().to_string().into());
        ready.insert("ingress".into(), ingress_addr.to_string().into());
        if let Some(tls) = node.ingress_tls_addr() {
            ready.insert("ingressTls".into(), tls.to_string().into());
        }
        args.ready.write(ready)?;
        anyhow::Ok(controllers)
    }
    .await;
    let controllers = match started {
        Ok(controllers) => controllers,
        Err(err) => {
            node.shutdown().await;
            server.shutdown().await;
            return Err(err);
        }
    };
    crate::signals::wait_for_shutdown().await;
    args.ready.remove();
    // Leadership first (released for a standby), then the pods, then the API they report to.
    if let Some(c) = controllers {
        c.shutdown().await;
    }
    node.shutdown().await;
    server.shutdown().await;
    registry
        .shutdown(Duration::from_secs(10))
        .await
        .context("stopping the registry")?;
    Ok(())
}

/// `DATA/encryption-config.yaml`, written on first start with a fresh 32-byte aesgcm key for
/// Secrets (identity second, so a store written before encryption still reads): `skiff up`
/// encrypts Secrets at rest by default. An existing file is used as it is.
fn encryption_config(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("encryption-config.yaml");
    if !path.exists() {
        let config = skiff_api::encryption::generate_aesgcm_config("key1");
        skiff_api::pki::write_private(&path, config.as_bytes(), 0o600)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// `s` as one word for a POSIX shell: as it is when it is plain, else in single quotes.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Pushes the bundled samples into the registry (a sample already there is not sent again).
async fn seed_samples(
    dir: &std::path::Path,
    registry: SocketAddr,
    token: &str,
    steps: &crate::progress::Steps,
) -> anyhow::Result<()> {
    let mut opts = skiff_registry::ClientOptions::new(dir.join("cache"));
    opts.token = Some(token.to_string());
    let client =
        skiff_registry::RegistryClient::new(opts).context("creating the registry client")?;
    for (i, (name, bytes)) in SAMPLES.iter().enumerate() {
        steps.update(&format!("{}/{} {name}", i + 1, SAMPLES.len()));
        let reference = format!("{registry}/{name}");
        client
            .push_wasm(&reference, bytes::Bytes::from_static(bytes))
            .await
            .with_context(|| format!("pushing the sample {reference}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            shell_quote("/home/a/.local/share/skiff/admin.kubeconfig"),
            "/home/a/.local/share/skiff/admin.kubeconfig"
        );
        assert_eq!(shell_quote("/tmp/my dir/x"), "'/tmp/my dir/x'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}
