//! `skiff registry`, `skiff push` and `skiff pull`: the OCI registry and its client.

use std::path::PathBuf;

use anyhow::bail;

#[derive(clap::Args)]
pub(crate) struct RegistryArgs {
    /// Directory for blobs, manifests and the push token.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: String,
}

#[derive(clap::Args)]
pub(crate) struct PushArgs {
    /// The component to push.
    file: PathBuf,
    /// Where to push it: HOST[:PORT]/NAME[:TAG].
    reference: String,
}

#[derive(clap::Args)]
pub(crate) struct PullArgs {
    /// What to pull: HOST[:PORT]/NAME[:TAG|@DIGEST].
    reference: String,
    /// Where to write the component.
    #[arg(short = 'o', long)]
    output: PathBuf,
}

pub(crate) async fn run_registry(args: RegistryArgs) -> anyhow::Result<()> {
    let _ = (args.data_dir, args.listen);
    bail!("skiff registry is not supported in this build yet")
}

pub(crate) async fn run_push(args: PushArgs) -> anyhow::Result<()> {
    let _ = (args.file, args.reference);
    bail!("skiff push is not supported in this build yet")
}

pub(crate) async fn run_pull(args: PullArgs) -> anyhow::Result<()> {
    let _ = (args.reference, args.output);
    bail!("skiff pull is not supported in this build yet")
}
