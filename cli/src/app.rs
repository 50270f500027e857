//! The app verbs over `skiff-sdk`: `skiff build`, `skiff deploy` without a file (reads
//! `skiff.toml`), `skiff apps` and `skiff delete APP`. Each is a thin shell: load the manifest,
//! call the SDK, print its progress events on stderr and results on stdout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use skiff_sdk::deploy::{ClusterInfo, Deployer, Event};
use skiff_sdk::{App, MANIFEST_FILE};

#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// The app manifest (default: ./skiff.toml).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    manifest: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct AppsArgs {
    /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, then the one `skiff up` writes).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Ingress address URLs are made from, HOST:PORT (default: from ConfigMap
    /// kube-public/skiff-info).
    #[arg(long)]
    ingress: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct DeleteArgs {
    /// The app to delete (its `[app] name`).
    app: String,
    /// Only in this namespace (default: wherever the app's objects are).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Kubeconfig (default: $KUBECONFIG, ~/.kube/config, then the one `skiff up` writes).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

/// What `skiff deploy` passes when it deploys a manifest rather than a file.
pub(crate) struct DeployOptions {
    pub(crate) manifest: Option<PathBuf>,
    pub(crate) dry_run: bool,
    pub(crate) output: Option<String>,
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) registry: Option<String>,
    pub(crate) registry_token: Option<String>,
    pub(crate) ingress: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) cache_dir: Option<PathBuf>,
}

/// Loads `file`, or `./skiff.toml`, saying how to make one when there is none.
fn load(file: Option<&Path>) -> anyhow::Result<App> {
    let path = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(MANIFEST_FILE));
    if file.is_none() && !path.exists() {
        bail!(
            "no {MANIFEST_FILE} in this directory: write one (see sdk/README.md), start from \
             `skiff new NAME`, pass -f FILE, or deploy a single component with \
             `skiff deploy FILE.wasm`"
        );
    }
    Ok(skiff_sdk::manifest::load(&path)?)
}

/// Prints an event as one line on stderr.
fn print_event(e: &Event) {
    eprintln!("{e}");
}

/// Shows a deploy's events: a line each, and on a terminal a spinner while a rollout is under
/// way (its message says how many replicas are ready of how many wanted).
struct DeployEvents {
    rollout: Option<crate::progress::Steps>,
}

impl DeployEvents {
    fn show(&mut self, e: &Event) {
        match e {
            Event::RollingOut { component, message } if crate::progress::on_terminal() => {
                let steps = self.rollout.get_or_insert_with(|| {
                    let mut s = crate::progress::Steps::new();
                    s.start("rollout");
                    s
                });
                steps.update(&format!("{component}: {message}"));
            }
            Event::RolledOut { .. } | Event::Deleted { .. } | Event::Pruned { .. } => {
                if let Some(mut s) = self.rollout.take() {
                    s.clear();
                }
                eprintln!("{e}");
            }
            _ => match &self.rollout {
                Some(s) => s.println(&e.to_string()),
                None => eprintln!("{e}"),
            },
        }
    }
}

/// Prints a build's events, each command numbered and timed: the commands write to this
/// terminal themselves, so there is no spinner to garble their output.
struct BuildEvents {
    total: usize,
    n: usize,
    started: Instant,
}

impl BuildEvents {
    fn show(&mut self, e: &Event) {
        match e {
            Event::Building { component, command } => {
                self.n += 1;
                self.started = Instant::now();
                eprintln!("[{}/{}] build {component}: {command}", self.n, self.total);
            }
            Event::Built { component } => eprintln!(
                "[{}/{}] build {component}: done in {:.1}s",
                self.n,
                self.total,
                self.started.elapsed().as_secs_f64()
            ),
            Event::BuildSkipped { .. } => {
                self.n += 1;
                eprintln!("[{}/{}] {e}", self.n, self.total);
            }
            _ => eprintln!("{e}"),
        }
    }
}

pub(crate) async fn run_build(args: BuildArgs) -> anyhow::Result<()> {
    let app = load(args.manifest.as_deref())?;
    let started = Instant::now();
    let mut events = BuildEvents {
        total: app.components.iter().filter(|c| c.build.is_some()).count(),
        n: 0,
        started,
    };
    skiff_sdk::build::build(&app, &mut |e: &Event| events.show(e)).await?;
    eprintln!(
        "built {} ({} components) in {:.1}s",
        app.name(),
        app.components.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = crate::deploy::kube_config(kubeconfig).await?;
    let api_url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("creating the API client")?;
    client.apiserver_version().await.map_err(|e| {
        anyhow!(
            "no cluster at {api_url}: {e} (start one with `skiff up`, or point --kubeconfig or \
             KUBECONFIG at a running one)"
        )
    })?;
    Ok(client)
}

pub(crate) async fn run_deploy(opts: DeployOptions) -> anyhow::Result<()> {
    match opts.output.as_deref() {
        None | Some("yaml") => {}
        Some(other) => bail!("-o {other:?} is not supported: use -o yaml"),
    }
    if opts.output.is_some() && !opts.dry_run {
        bail!("-o yaml prints the objects instead of applying them: give --dry-run with it");
    }
    let app = load(opts.manifest.as_deref())?;
    let client = client(opts.kubeconfig.as_deref()).await?;
    let mut info = ClusterInfo::discover(&client).await?;
    if let Some(r) = opts.registry {
        info.registry = Some(r);
    }
    if let Some(t) = opts.registry_token.filter(|t| !t.is_empty()) {
        info.token = Some(t);
    }
    if let Some(i) = opts.ingress {
        info.ingress = Some(i);
    }
    let mut deployer = Deployer::new(client, info)
        .timeout(opts.timeout)
        .push_progress(std::sync::Arc::new(crate::progress::PushBars::new(
            app.name(),
        )));
    if let Some(dir) = opts.cache_dir {
        deployer = deployer.cache_dir(dir);
    }
    if opts.dry_run {
        let objects = deployer.plan(&app, &mut print_event).await?;
        if opts.output.is_some() {
            print!("{}", skiff_sdk::render::to_yaml(&objects)?);
        } else {
            for o in &objects {
                println!("{}/{} (dry run)", o.kind, o.name);
            }
        }
        return Ok(());
    }
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let mut events = DeployEvents { rollout: None };
    let deployed = deployer.deploy(&app, &mut |e: &Event| events.show(e)).await;
    if let Some(mut s) = events.rollout.take() {
        s.clear();
    }
    let deployed = deployed?;
    let ingress = deployer.info().ingress.clone();
    for c in &app.components {
        let Some(route) = &c.route else { continue };
        let stz = c.scale_to_zero.as_ref().is_some_and(|s| s.enabled());
        if c.replicas == Some(0) && !stz {
            continue;
        }
        let Some(ingress) = &ingress else { continue };
        let host = route.host().unwrap_or(ingress.as_str());
        answers(ingress, host, route.path(), deadline)
            .await
            .with_context(|| format!("component {:?}", c.name))?;
    }
    if ingress.is_none() {
        eprintln!(
            "the cluster publishes no ingress address (ConfigMap kube-public/skiff-info); pass \
             --ingress HOST:PORT to have the URLs checked"
        );
    }
    eprintln!(
        "deployed {} {} to namespace {} in {:.1}s",
        app.name(),
        app.version_name(),
        app.namespace_name(),
        started.elapsed().as_secs_f64()
    );
    for url in &deployed.urls {
        println!("{url}");
    }
    Ok(())
}

/// Asks the ingress until the route answers with anything but a server error.
async fn answers(ingress: &str, host: &str, path: &str, deadline: Instant) -> anyhow::Result<()> {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut last = String::from("no answer yet");
    loop {
        let req = http::Request::get(format!("http://{ingress}{path}"))
            .header(http::header::HOST, host)
            .body(Empty::new())
            .context("building the request")?;
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.request(req)).await {
            Err(_) => break,
            Ok(Ok(resp)) if !resp.status().is_server_error() => return Ok(()),
            Ok(Ok(resp)) => last = resp.status().to_string(),
            Ok(Err(e)) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no answer through the ingress at {ingress}{path} in time (last: {last})")
}

pub(crate) async fn run_apps(args: AppsArgs) -> anyhow::Result<()> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let ingress = match args.ingress {
        Some(i) => Some(i),
        None => ClusterInfo::discover(&client).await?.ingress,
    };
    let apps = skiff_sdk::deploy::list(&client, ingress.as_deref()).await?;
    if apps.is_empty() {
        eprintln!("no apps (deploy one with `skiff deploy` beside a skiff.toml)");
        return Ok(());
    }
    println!(
        "{:<20} {:<16} {:<12} {:<30} URLS",
        "NAME", "NAMESPACE", "VERSION", "COMPONENTS"
    );
    for a in apps {
        let components: Vec<String> = a
            .components
            .iter()
            .map(|(name, ready, want)| format!("{name}({ready}/{want})"))
            .collect();
        let urls = if a.urls.is_empty() {
            "<none>".to_string()
        } else {
            a.urls.join(",")
        };
        println!(
            "{:<20} {:<16} {:<12} {:<30} {urls}",
            a.name,
            a.namespace,
            a.version,
            components.join(",")
        );
    }
    Ok(())
}

pub(crate) async fn run_delete(args: DeleteArgs) -> anyhow::Result<()> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let n = skiff_sdk::deploy::delete(
        &client,
        &args.app,
        args.namespace.as_deref(),
        &mut print_event,
    )
    .await?;
    if n == 0 {
        bail!("no app called {} (list them with `skiff apps`)", args.app);
    }
    println!("app {} deleted ({n} objects)", args.app);
    Ok(())
}
