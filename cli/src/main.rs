//! The `skiff` binary: one command for the API server, the registry, nodes and client verbs.

mod app;
#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "bench")]
mod bench_crash;
#[cfg(feature = "bench")]
mod bench_fairness;
#[cfg(feature = "bench")]
mod bench_oci;
#[cfg(feature = "bench")]
mod bench_pods;
#[cfg(feature = "bench")]
mod bench_scale;
#[cfg(feature = "bench")]
mod bench_scheduler;
#[cfg(feature = "bench")]
mod bench_services;
#[cfg(feature = "bench")]
mod bench_top;
mod controllers;
mod deploy;
mod kubeconfig;
mod new;
mod node;
mod progress;
mod ready;
mod registry;
mod server;
mod signals;
mod status;
mod token;
mod up;

use clap::{CommandFactory as _, Parser, Subcommand};

/// Skiff: a WebAssembly-first workload orchestrator with a Kubernetes-compatible API.
#[derive(Parser)]
#[command(name = "skiff", version, about, long_about = None)]
struct Cli {
    /// Log line format on stderr: `text`, or `json` (one object per line: timestamp, level,
    /// target, fields, span fields). Filter with SKIFF_LOG; spans go to OTLP/HTTP when
    /// OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long, global = true, default_value = "text", value_name = "json|text")]
    log_format: skiff_telemetry::trace::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a one-process cluster: API server, registry and node on one data directory.
    ///
    /// Example: skiff up --data-dir ~/.skiff
    Up(Box<up::UpArgs>),
    /// Run the API server.
    ///
    /// Example: skiff server --data-dir /var/lib/skiff --listen 127.0.0.1:6443
    Server(server::ServerArgs),
    /// Run a node: register it and run the wasm pods bound to it.
    ///
    /// Example: skiff node --kubeconfig DIR/admin.kubeconfig --name node-1 --data-dir /var/lib/skiff-node
    Node(node::NodeArgs),
    /// Run the OCI registry.
    ///
    /// Example: skiff registry --data-dir /var/lib/skiff-registry --listen 127.0.0.1:5000
    Registry(registry::RegistryArgs),
    /// Manage bootstrap tokens, with which nodes join (`skiff node --bootstrap-kubeconfig`).
    ///
    /// Example: skiff token create --ttl 2h
    Token(token::TokenArgs),
    /// Deploy the app of ./skiff.toml, or one HTTP component: push, apply, roll out, print URLs.
    ///
    /// Example: skiff deploy (reads ./skiff.toml); skiff deploy hello.wasm --name hello
    Deploy(deploy::DeployArgs),
    /// Write a starter app: a skiff.toml and one HTTP component's sources in Rust, C, JS or Python.
    ///
    /// Example: skiff new hello --template http-c && cd hello && skiff build && skiff deploy
    New(new::NewArgs),
    /// Build an app: run each component's build command from ./skiff.toml (or -f FILE).
    ///
    /// Example: skiff build
    Build(app::BuildArgs),
    /// List the apps deployed from a skiff.toml, with their components and URLs.
    ///
    /// Example: skiff apps
    Apps(app::AppsArgs),
    /// Delete an app deployed from a skiff.toml: every object labelled as part of it.
    ///
    /// Example: skiff delete shop
    Delete(app::DeleteArgs),
    /// The cluster at a glance: server, console, nodes, pods by phase, apps and their URLs.
    ///
    /// Example: skiff status (uses --kubeconfig, $KUBECONFIG or ~/.kube/config, as kubectl)
    Status(status::StatusArgs),
    /// Print a shell completion script for skiff (bash, zsh, fish, elvish or powershell).
    ///
    /// Example: skiff completions bash > ~/.local/share/bash-completion/completions/skiff
    Completions(CompletionsArgs),
    /// Push a wasm component to a registry as an OCI artifact.
    ///
    /// Example: skiff push hello.wasm 127.0.0.1:5000/demo/hello:1.0
    Push(registry::PushArgs),
    /// Pull a wasm component from a registry.
    ///
    /// Example: skiff pull 127.0.0.1:5000/demo/hello:1.0 -o hello.wasm
    Pull(registry::PullArgs),
    /// Mint a client-certificate kubeconfig for a user (CN = user, O = groups).
    ///
    /// Example: skiff kubeconfig --user alice --group dev --namespace team-a -o alice.kubeconfig
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Measure this machine: the API server, the scheduler, wasm pods.
    ///
    /// Example: skiff bench api --append BENCHMARKS.md
    #[cfg(feature = "bench")]
    Bench(bench::BenchArgs),
    /// Measure this machine (not in this build: build skiff with `--features bench`).
    #[cfg(not(feature = "bench"))]
    Bench(NoBench),
}

/// The arguments of `skiff completions`.
#[derive(clap::Args)]
struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// Writes the completion script for `args.shell` to stdout.
fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "skiff", &mut out);
    std::io::Write::write_all(&mut std::io::stdout().lock(), &out)
        .map_err(|e| anyhow::anyhow!("writing the completion script: {e}"))
}

/// The arguments of `skiff bench` in a build without benchmarks: taken and refused.
#[cfg(not(feature = "bench"))]
#[derive(clap::Args)]
struct NoBench {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Completions(args) = &cli.command {
        // No runtime, no log setup: just the script.
        return match completions(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let telemetry = match init_tracing(&cli) {
        Ok(t) => t,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(*args).await,
            Command::Server(args) => server::run(args).await,
            Command::Node(args) => node::run(args).await,
            Command::Registry(args) => registry::run_registry(args).await,
            Command::Token(args) => token::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::New(args) => new::run(args),
            Command::Build(args) => app::run_build(args).await,
            Command::Apps(args) => app::run_apps(args).await,
            Command::Delete(args) => app::run_delete(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Completions(args) => completions(&args),
            Command::Push(args) => registry::run_push(args).await,
            Command::Pull(args) => registry::run_pull(args).await,
            Command::Kubeconfig(args) => kubeconfig::run(args).await,
            #[cfg(feature = "bench")]
            Command::Bench(args) => bench::run(args).await,
            #[cfg(not(feature = "bench"))]
            Command::Bench(_) => Err(anyhow::anyhow!(
                "this skiff was built without its benchmarks; build it with \
                 `cargo build --release -p skiff --features bench` (or run `make bench`)"
            )),
        }
    });
    // The runtime first (its tasks end), then the span exporter flushes what they recorded.
    drop(runtime);
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs in the chosen format; spans exported over OTLP when an endpoint is configured, with
/// the command's default `service.name`.
fn init_tracing(
    cli: &Cli,
) -> Result<skiff_telemetry::trace::Telemetry, skiff_telemetry::trace::TraceError> {
    let (service, attributes) = match &cli.command {
        Command::Up(_) => ("skiff", vec![]),
        Command::Server(_) => ("skiff-apiserver", vec![]),
        Command::Node(args) => (
            "skiff-node",
            vec![
                ("k8s.node.name", args.name().to_string()),
                ("service.instance.id", args.name().to_string()),
            ],
        ),
        Command::Registry(_) => ("skiff-registry", vec![]),
        _ => ("skiff", vec![]),
    };
    skiff_telemetry::trace::init(service, &attributes, cli.log_format)
}
