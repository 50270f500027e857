//! `skiff token create`: a bootstrap token for joining nodes, as `kubeadm token create` — a
//! `bootstrap.kubernetes.io/token` Secret `kube-system/bootstrap-token-ID` written with the
//! caller's kubeconfig, and `ID.SECRET` printed.

use std::path::PathBuf;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use rand::Rng;

/// The group a node's bootstrap token puts it in, besides `system:bootstrappers` (kubeadm's is
/// `system:bootstrappers:kubeadm:default-node-token`).
pub(crate) const DEFAULT_NODE_GROUP: &str = "system:bootstrappers:skiff:default-node-token";

#[derive(clap::Args, Debug)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TokenCommand {
    /// Create a bootstrap token and print it (`ID.SECRET`).
    ///
    /// Example: skiff token create --ttl 2h --description "node-7"
    Create(CreateArgs),
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// How long the token is valid (`24h`, `90m`, `1h30m`); `0` never expires.
    #[arg(long, default_value = "24h")]
    ttl: String,
    /// What the token is for, kept in the Secret.
    #[arg(long)]
    description: Option<String>,
    /// Extra groups the token authenticates as (each `system:bootstrappers:...`).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_NODE_GROUP)]
    groups: Vec<String>,
    /// Kubeconfig to write the Secret with (default: KUBECONFIG, ~/.kube/config, then
    /// `skiff up`'s admin kubeconfig).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

pub(crate) async fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create(args) => create(args).await,
    }
}

/// A random string of `n` characters from `[a-z0-9]`.
fn random_chars(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// `--ttl`: `0` is none; otherwise a positive duration (`24h`, `1h30m`, `90s`).
fn parse_ttl(ttl: &str) -> anyhow::Result<Option<jiff::SignedDuration>> {
    let ttl = ttl.trim();
    if ttl == "0" {
        return Ok(None);
    }
    let d: jiff::SignedDuration = ttl
        .parse()
        .with_context(|| format!("--ttl {ttl:?} is not a duration such as 24h or 90m"))?;
    if d.is_zero() {
        return Ok(None);
    }
    if d.is_negative() {
        bail!("--ttl {ttl:?} is negative");
    }
    Ok(Some(d))
}

/// The bootstrap token Secret for `id.secret`, as kubeadm writes it.
fn secret(
    id: &str,
    secret: &str,
    expiration: Option<jiff::Timestamp>,
    description: Option<&str>,
    groups: &[String],
) -> serde_json::Value {
    let mut data = serde_json::json!({
        "token-id": id,
        "token-secret": secret,
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": groups.join(","),
    });
    if let Some(at) = expiration {
        data["expiration"] = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string().into();
    }
    if let Some(d) = description {
        data["description"] = d.into();
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": data,
    })
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let ttl = parse_ttl(&args.ttl)?;
    for g in &args.groups {
        if !g.starts_with("system:bootstrappers:") {
            bail!(
                "--groups {g:?}: a bootstrap token's groups must start with system:bootstrappers:"
            );
        }
    }
    let config = crate::deploy::kube_config(args.kubeconfig.as_deref()).await?;
    let client = kube::Client::try_from(config).context("creating the API client")?;
    let secrets: Api<Secret> = Api::namespaced(client, "kube-system");
    let id = random_chars(6);
    let token_secret = random_chars(16);
    let expiration = match ttl {
        Some(d) => Some(
            jiff::Timestamp::now()
                .checked_add(d)
                .context("--ttl is too long")?,
        ),
        None => None,
    };
    let object: Secret = serde_json::from_value(secret(
        &id,
        &token_secret,
        expiration,
        args.description.as_deref(),
        &args.groups,
    ))?;
    secrets
        .create(&PostParams::default(), &object)
        .await
        .context("creating the bootstrap token Secret in kube-system")?;
    println!("{id}.{token_secret}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_as_kubeadm_takes_them() {
        assert_eq!(parse_ttl("0").unwrap(), None);
        assert_eq!(
            parse_ttl("24h").unwrap(),
            Some(jiff::SignedDuration::from_hours(24))
        );
        assert_eq!(
            parse_ttl("1h30m").unwrap(),
            Some(jiff::SignedDuration::from_mins(90))
        );
        assert!(parse_ttl("soon").is_err());
    }

    #[test]
    fn the_secret_has_kubeadm_fields() {
        let at: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let s = secret(
            "abcdef",
            "0123456789abcdef",
            Some(at),
            Some("n1"),
            &[DEFAULT_NODE_GROUP.to_string()],
        );
        assert_eq!(s["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(s["type"], "bootstrap.kubernetes.io/token");
        assert_eq!(s["stringData"]["expiration"], "2030-01-01T00:00:00Z");
        assert_eq!(s["stringData"]["auth-extra-groups"], DEFAULT_NODE_GROUP);
        assert_eq!(s["stringData"]["usage-bootstrap-authentication"], "true");
        let id = random_chars(6);
        assert!(
            id.len() == 6
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }
}
