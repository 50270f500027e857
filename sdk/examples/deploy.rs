//! Deploys an app described in Rust code — a routed frontend that may call only its internal
//! backend — to the cluster of the current kubeconfig, and prints its URLs.
//!
//! ```sh
//! cargo run -p skiff-sdk --example deploy -- DIR   # DIR holds frontend.wasm and backend.wasm
//! ```

use std::path::Path;

use skiff_sdk::deploy::{Deployed, Deployer, Event};
use skiff_sdk::{App, Component, Source};

/// The app: `frontend` at `/hello` on the ingress, `backend` reached by it at `http://backend`.
pub(crate) fn app(dir: &Path) -> App {
    App::new("example")
        .version("1.0.0")
        .base_dir(dir)
        .component(
            Component::new("frontend", Source::File("frontend.wasm".into()))
                .route("/hello")
                .env("GREETING", "hi")
                .allowed_outbound(["backend"]),
        )
        .component(Component::new("backend", Source::File("backend.wasm".into())).replicas(2))
}

/// Pushes the app's components to the cluster's registry, applies its objects and waits for
/// them to roll out, printing progress on stderr.
pub(crate) async fn deploy(client: kube::Client, dir: &Path) -> skiff_sdk::Result<Deployed> {
    let deployer = Deployer::discover(client).await?;
    deployer
        .deploy(&app(dir), &mut |e: &Event| eprintln!("{e}"))
        .await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let client = kube::Client::try_default().await?;
    let deployed = deploy(client, Path::new(&dir)).await?;
    for url in deployed.urls {
        println!("{url}");
    }
    Ok(())
}
