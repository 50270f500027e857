//! ServiceAccount tokens with kubectl against a real `skiff server`: `kubectl create token`
//! (TokenRequest) with its duration refused under ten minutes, a token used with
//! `kubectl --token T auth whoami` is `system:serviceaccount:NS:NAME`, and a token bound to a
//! pod (`--bound-object-kind Pod`) is refused (401) once that pod is deleted, and a token past
//! its expiry is refused (401).

use std::path::Path;

use skiff_api::serviceaccount::jwt::{LEEWAY_SECONDS, Signer, verify};
use skiff_tests::{Server, ok, tools};

fn scenario(kubectl: &Path) {
    let server = Server::start().expect("server starts");
    let run = |args: &[&str]| server.kubectl(kubectl, args).expect("kubectl runs");
    let k = |args: &[&str]| ok(&run(args));
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // Every namespace has its default ServiceAccount and the cluster CA.
    k(&["get", "serviceaccount", "default"]);
    let ca = k(&[
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");

    let token = k(&["create", "token", "default", "--duration", "10m"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let who = k(&["--token", token, "auth", "whoami"]);
    assert!(
        who.contains("system:serviceaccount:default:default"),
        "{who}"
    );
    assert!(who.contains("system:serviceaccounts:default"), "{who}");

    // `kubectl create token` tokens expire: `exp` is the duration after `iat`, and the same
    // claims past their expiry (re-signed with the server's own key) are refused.
    let discovery: serde_json::Value =
        serde_json::from_str(&k(&["get", "--raw", "/.well-known/openid-configuration"]))
            .expect("OIDC discovery is JSON");
    let issuer = discovery["issuer"].as_str().expect("an issuer");
    let key = std::fs::read_to_string(server.dir.join("pki/sa.key")).expect("the signing key");
    let signer = Signer::from_pem(&key).expect("an ES256 key");
    let mut claims = verify(token, issuer, std::slice::from_ref(&signer.public))
        .expect("the server signed the token");
    assert_eq!(claims.exp - claims.iat, 600, "--duration 10m: {claims:?}");
    let now = jiff::Timestamp::now().as_second();
    let past = now - 2 * LEEWAY_SECONDS as i64;
    claims.iat = past - 600;
    claims.nbf = past - 600;
    claims.exp = past;
    let expired = signer.sign(&claims).expect("signs");
    let refused = run(&["--token", &expired, "auth", "whoami"]);
    assert!(!refused.status.success(), "an expired token still works");
    assert!(
        stderr(&refused).contains("Unauthorized") || stderr(&refused).contains("must be logged in"),
        "{}",
        stderr(&refused)
    );

    let short = run(&["create", "token", "default", "--duration", "5m"]);
    assert!(!short.status.success());
    assert!(
        stderr(&short).contains("may not specify a duration less than 10 minutes"),
        "{}",
        stderr(&short)
    );
    let missing = run(&["create", "token", "nobody"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("serviceaccounts \"nobody\" not found"),
        "{}",
        stderr(&missing)
    );

    // A token bound to a pod lives as long as the pod.
    k(&[
        "run",
        "holder",
        "--image",
        "example/app:1",
        "--restart",
        "Never",
    ]);
    let bound = k(&[
        "create",
        "token",
        "default",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "holder",
    ]);
    let bound = bound.trim();
    let who = k(&["--token", bound, "auth", "whoami"]);
    assert!(
        who.contains("system:serviceaccount:default:default"),
        "{who}"
    );
    assert!(
        who.contains("holder"),
        "the pod's name is in the extra: {who}"
    );
    k(&["delete", "pod", "holder", "--wait=false"]);
    let refused = run(&["--token", bound, "auth", "whoami"]);
    assert!(
        !refused.status.success(),
        "the deleted pod's token still works"
    );
    assert!(
        stderr(&refused).contains("Unauthorized") || stderr(&refused).contains("must be logged in"),
        "{}",
        stderr(&refused)
    );
    // The unbound token is unaffected.
    k(&["--token", token, "auth", "whoami"]);
}

#[test]
fn service_account_tokens_with_kubectl_1_37() {
    let Some(kubectl) = tools::kubectl_137() else {
        return;
    };
    scenario(&kubectl);
}

#[test]
fn service_account_tokens_with_kubectl_1_32() {
    let Some(kubectl) = tools::kubectl_132() else {
        return;
    };
    scenario(&kubectl);
}
