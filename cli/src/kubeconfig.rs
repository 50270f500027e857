//! `skiff kubeconfig`: mints a client-certificate kubeconfig for a user — through a
//! CertificateSigningRequest the admin approves and the csrsigning controller signs, or offline
//! with the cluster CA of a data directory (as `kubeadm kubeconfig user`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams};

/// The signer of client certificates the API server accepts.
const SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// The reason of the approval condition `skiff kubeconfig` sets.
const APPROVAL_REASON: &str = "SkiffKubeconfig";
/// How long a certificate is valid without `--expiration` in `--data-dir` mode (the signer's own
/// default applies otherwise).
const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long to wait for the csrsigning controller to issue the certificate.
const SIGNING_DEADLINE: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub(crate) struct KubeconfigArgs {
    /// The user the certificate authenticates (its common name).
    #[arg(long)]
    user: String,
    /// A group of the user (an organization of the certificate); repeat for more.
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// The namespace of the kubeconfig's context.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Where to write the kubeconfig (mode 0600); default: standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// How long the certificate is valid, as `24h`, `90m`, `30d` or `8760h0m0s` (the signer may
    /// give less; default: the signer's duration, one year with `--data-dir`).
    #[arg(long, value_parser = parse_duration)]
    expiration: Option<Duration>,
    /// The admin kubeconfig the request is made with (default: $KUBECONFIG, ~/.kube/config or
    /// the one of `skiff up`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Sign offline with DIR/pki/ca.{crt,key}, the server URL from DIR/admin.kubeconfig — no
    /// request to the API server, no controller needed.
    #[arg(long, conflicts_with = "kubeconfig")]
    data_dir: Option<PathBuf>,
}

pub(crate) async fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    if args.user.is_empty() {
        bail!("--user must not be empty");
    }
    let text = match &args.data_dir {
        Some(dir) => offline(&args, dir)?,
        None => through_the_api(&args).await?,
    };
    match &args.output {
        Some(path) => {
            skiff_api::pki::write_private(path, text.as_bytes(), 0o600)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "kubeconfig for user {:?} written to {}",
                args.user,
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Signs with the data directory's CA.
fn offline(args: &KubeconfigArgs, dir: &Path) -> anyhow::Result<String> {
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let ca = read(dir.join("pki/ca.crt"))?;
    let ca_key = read(dir.join("pki/ca.key"))?;
    let admin = dir.join("admin.kubeconfig");
    let config = kube::config::Kubeconfig::read_from(&admin)
        .with_context(|| format!("reading {}", admin.display()))?;
    let server = current_server(&config)
        .ok_or_else(|| anyhow!("{}: no server in its current cluster", admin.display()))?;
    let (cert, key) = skiff_api::pki::client_certificate(
        &ca,
        &ca_key,
        &args.user,
        &args.groups,
        args.expiration.unwrap_or(DEFAULT_VALIDITY),
    )
    .context("signing the client certificate")?;
    Ok(skiff_api::pki::client_kubeconfig(
        &server,
        &ca,
        &args.user,
        &cert,
        &key,
        args.namespace.as_deref(),
    ))
}

/// The server URL of a kubeconfig's current context's cluster.
fn current_server(config: &kube::config::Kubeconfig) -> Option<String> {
    let context = config.current_context.as_deref()?;
    let cluster = config
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .cluster
        .clone();
    config
        .clusters
        .iter()
        .find(|c| c.name == cluster)?
        .cluster
        .as_ref()?
        .server
        .clone()
}

/// Creates, approves and awaits a CertificateSigningRequest with the admin's credentials, then
/// deletes it.
async fn through_the_api(args: &KubeconfigArgs) -> anyhow::Result<String> {
    let config = crate::deploy::kube_config(args.kubeconfig.as_deref()).await?;
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let ca = match &config.root_cert {
        Some(certs) if !certs.is_empty() => certs
            .iter()
            .map(|der| skiff_api::pki::pem_encode("CERTIFICATE", der))
            .collect::<String>(),
        _ => bail!("the admin kubeconfig has no certificate authority for {server}"),
    };
    let client = kube::Client::try_from(config).context("building the API client")?;
    let api: Api<CertificateSigningRequest> = Api::all(client);

    let (request, key) = skiff_api::pki::client_certificate_request(&args.user, &args.groups)
        .context("making the certificate request")?;
    let name = request_name(&args.user);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            expiration_seconds: args
                .expiration
                .map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX)),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .with_context(|| format!("creating the CertificateSigningRequest {name}"))?;
    let issued = approve_and_wait(&api, created, &args.user).await;
    if let Err(err) = api.delete(&name, &DeleteParams::default()).await {
        tracing::warn!(csr = %name, error = %err, "cannot delete the CertificateSigningRequest");
    }
    let cert = issued?;
    // The signer must keep the subject asked for: a certificate naming other groups would
    // silently give the user other rights.
    let (user, groups) = skiff_api::pki::certificate_subject(&cert)
        .ok_or_else(|| anyhow!("the issued certificate does not parse"))?;
    if user != args.user || groups != args.groups {
        bail!(
            "the signer issued a certificate for user {user:?} in groups {groups:?}, not the \
             {:?} in {:?} asked for; `skiff kubeconfig --data-dir DIR` signs with the cluster \
             CA directly",
            args.user,
            args.groups
        );
    }
    Ok(skiff_api::pki::client_kubeconfig(
        &server,
        &ca,
        &args.user,
        &cert,
        &key,
        args.namespace.as_deref(),
    ))
}

/// Approves the request through its `approval` subresource and waits on a watch until it is
/// signed (the certificate), denied or failed.
async fn approve_and_wait(
    api: &Api<CertificateSigningRequest>,
    mut csr: CertificateSigningRequest,
    user: &str,
) -> anyhow::Result<String> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    csr.status
        .get_or_insert_with(CertificateSigningRequestStatus::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some(APPROVAL_REASON.into()),
            message: Some(format!("skiff kubeconfig for user {user}")),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    api.replace_subresource("approval", &name, &PostParams::default(), &csr)
        .await
        .with_context(|| format!("approving the CertificateSigningRequest {name}"))?;
    let done = |csr: Option<&CertificateSigningRequest>| match csr {
        None => true,
        Some(csr) => certificate(csr).is_some() || refusal(csr).is_some(),
    };
    let outcome = tokio::time::timeout(
        SIGNING_DEADLINE,
        kube::runtime::wait::await_condition(api.clone(), &name, done),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "the CertificateSigningRequest {name} was approved but not signed within {}s: is the \
             csrsigning controller running with the cluster CA (`skiff server` runs it unless \
             --no-controllers or --controllers leaves it out)? `skiff kubeconfig --data-dir DIR` \
             signs without it",
            SIGNING_DEADLINE.as_secs()
        )
    })?
    .with_context(|| format!("watching the CertificateSigningRequest {name}"))?;
    let Some(csr) = outcome else {
        bail!("the CertificateSigningRequest {name} was deleted before it was signed");
    };
    if let Some(reason) = refusal(&csr) {
        bail!("the CertificateSigningRequest {name} was not signed: {reason}");
    }
    certificate(&csr)
        .ok_or_else(|| anyhow!("the CertificateSigningRequest {name} has no certificate"))
}

/// The issued certificate (PEM), once there.
fn certificate(csr: &CertificateSigningRequest) -> Option<String> {
    let cert = csr.status.as_ref()?.certificate.as_ref()?;
    (!cert.0.is_empty()).then(|| String::from_utf8_lossy(&cert.0).into_owned())
}

/// A Denied or Failed condition, as `Type (reason): message`.
fn refusal(csr: &CertificateSigningRequest) -> Option<String> {
    let conditions = csr.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            format!(
                "{} ({}): {}",
                c.type_,
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or("")
            )
        })
}

/// `skiff-kubeconfig-<user as a DNS label>-<5 random characters>`.
fn request_name(user: &str) -> String {
    let mut label: String = user
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    label.truncate(40);
    let label = label.trim_matches('-');
    let label = if label.is_empty() { "user" } else { label };
    let suffix: String = skiff_api::pki::random_token()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(5)
        .collect();
    format!("skiff-kubeconfig-{label}-{suffix}")
}

/// A duration as Go writes them (`8760h0m0s`, `90m`, `45s`), with `d` for days too.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (examples: 24h, 90m, 30d, 8760h0m0s)");
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let n: u64 = number.parse().map_err(|_| invalid())?;
        total += Duration::from_secs(n.checked_mul(unit).ok_or_else(invalid)?);
        number.clear();
        any = true;
    }
    if !number.is_empty() || !any || total.is_zero() {
        return Err(invalid());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_writes_them() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            parse_duration("8760h0m0s"),
            Ok(Duration::from_secs(8760 * 3600))
        );
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        for bad in ["", "10", "h", "5x", "0s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_names_are_dns_labels() {
        let name = request_name("Alice@Example.com");
        assert!(
            name.starts_with("skiff-kubeconfig-alice-example-com-"),
            "{name}"
        );
        assert_eq!(name.len(), "skiff-kubeconfig-alice-example-com-".len() + 5);
        assert!(request_name("system:node:n1").starts_with("skiff-kubeconfig-system-node-n1-"));
        assert!(request_name("::").starts_with("skiff-kubeconfig-user-"));
    }
}
