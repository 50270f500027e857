//! CertificateSigningRequests (requestor, validation, approval and status rules, columns),
//! PodTemplates, deletecollection with selectors, and the verbs discovery lists per resource.

use axum::http::Method;
use base64::Engine as _;
use serde_json::{Value, json};

use super::{Api, cm, pod};

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A PEM PKCS#10 request for CN=jane, O=dev.
fn request_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "jane");
    dn.push(rcgen::DnType::OrganizationName, "dev");
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn certificate_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec!["jane".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem()
}

fn csr(name: &str) -> Value {
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": b64(&request_pem()), "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"], "expirationSeconds": 86400,
            "username": "mallory", "uid": "0", "groups": ["system:nodes"]}})
}

fn causes(body: &Value) -> Vec<(String, String)> {
    body["details"]["causes"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["field"].as_str().unwrap_or_default().to_string(),
                        c["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has_cause(body: &Value, field: &str, message_part: &str) -> bool {
    causes(body)
        .iter()
        .any(|(f, m)| f == field && m.contains(message_part))
}

#[tokio::test]
async fn a_csr_records_its_requestor_from_the_request_and_is_validated() {
    let api = Api::new().await;
    let (code, body) = api.call(Method::POST, CSRS, Some(csr("jane"))).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["username"], "admin");
    assert_eq!(
        body["spec"]["groups"],
        json!(["system:masters", "system:authenticated"])
    );
    assert!(body["spec"].get("uid").is_none(), "{body}");

    let mut bad = csr("bad");
    bad["spec"]["request"] = json!(b64(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    ));
    bad["spec"]["signerName"] = json!("no-domain");
    bad["spec"]["usages"] = json!(["client auth", "flying"]);
    bad["spec"]["expirationSeconds"] = json!(60);
    let (code, body) = api.call(Method::POST, CSRS, Some(bad)).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    assert!(
        has_cause(
            &body,
            "spec.request",
            "PEM block type must be CERTIFICATE REQUEST"
        ),
        "{body}"
    );
    assert!(
        has_cause(&body, "spec.signerName", "fully qualified domain"),
        "{body}"
    );
    assert!(
        has_cause(&body, "spec.usages[1]", "Unsupported value: \"flying\""),
        "{body}"
    );
    assert!(
        has_cause(&body, "spec.expirationSeconds", "600 seconds"),
        "{body}"
    );

    let mut unnamed = csr("unnamed");
    unnamed["spec"]
        .as_object_mut()
        .unwrap()
        .remove("signerName");
    let (code, body) = api.call(Method::POST, CSRS, Some(unnamed)).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        has_cause(&body, "spec.signerName", "Required value"),
        "{body}"
    );

    let (code, table) = api
        .call_with(Method::GET, CSRS, "application/json", TABLE, None)
        .await;
    assert_eq!(code, 200, "{table}");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Age",
            "SignerName",
            "Requestor",
            "RequestedDuration",
            "Condition"
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[2], "kubernetes.io/kube-apiserver-client");
    assert_eq!(cells[3], "admin");
    assert_eq!(cells[4], "24h");
    assert_eq!(cells[5], "Pending");
}

#[tokio::test]
async fn approval_writes_only_approval_and_status_only_an_approved_certificate() {
    let api = Api::new().await;
    let (code, created) = api.call(Method::POST, CSRS, Some(csr("jane"))).await;
    assert_eq!(code, 201, "{created}");
    let url = format!("{CSRS}/jane");
    let cert = b64(&certificate_pem());

    // No certificate before approval.
    let mut issued = created.clone();
    issued["status"] = json!({"certificate": cert});
    let (code, body) = api
        .call(Method::PUT, &format!("{url}/status"), Some(issued.clone()))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(has_cause(&body, "status.certificate", "approved"), "{body}");

    // The status subresource cannot approve.
    let mut self_approved = created.clone();
    self_approved["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
    let (code, body) = api
        .call(Method::PUT, &format!("{url}/status"), Some(self_approved))
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["status"].get("conditions").is_none(), "{body}");

    // Approval (as `kubectl certificate approve` sends it) keeps only the condition.
    let (_, current) = api.call(Method::GET, &url, None).await;
    let mut approve = current.clone();
    approve["spec"]["usages"] = json!(["server auth"]);
    approve["status"] = json!({"certificate": cert, "conditions": [{"type": "Approved",
        "status": "True", "reason": "KubectlApprove", "message": "approved by test"}]});
    let (code, approved) = api
        .call(Method::PUT, &format!("{url}/approval"), Some(approve))
        .await;
    assert_eq!(code, 200, "{approved}");
    assert_eq!(approved["status"]["conditions"][0]["type"], "Approved");
    assert!(
        approved["status"].get("certificate").is_none(),
        "{approved}"
    );
    assert_eq!(approved["spec"]["usages"], json!(["client auth"]));

    // Approved and Denied never both; approval cannot be taken back.
    let mut both = approved.clone();
    both["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Denied", "status": "True"}));
    let (code, body) = api
        .call(Method::PUT, &format!("{url}/approval"), Some(both))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        has_cause(&body, "status.conditions", "mutually exclusive"),
        "{body}"
    );
    let mut withdrawn = approved.clone();
    withdrawn["status"] = json!({});
    let (code, body) = api
        .call(Method::PUT, &format!("{url}/approval"), Some(withdrawn))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        has_cause(&body, "status.conditions", "may not remove"),
        "{body}"
    );

    // Once approved, status takes the certificate, and only once.
    let mut issue = approved.clone();
    issue["status"] = json!({"certificate": cert});
    let (code, body) = api
        .call(Method::PUT, &format!("{url}/status"), Some(issue))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["certificate"], cert);
    assert_eq!(body["status"]["conditions"][0]["type"], "Approved");
    let mut reissue = body.clone();
    reissue["status"]["certificate"] = json!(b64(&certificate_pem()));
    let (code, body) = api
        .call(Method::PUT, &format!("{url}/status"), Some(reissue))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        has_cause(&body, "status.certificate", "may not modify"),
        "{body}"
    );

    // The spec never changes after create; kubectl's condition column says it is issued.
    let (_, current) = api.call(Method::GET, &url, None).await;
    let mut edited = current.clone();
    edited["spec"]["signerName"] = json!("example.com/other");
    edited["metadata"]["labels"] = json!({"a": "b"});
    let (code, body) = api.call(Method::PUT, &url, Some(edited)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client"
    );
    assert_eq!(body["metadata"]["labels"]["a"], "b");
    let (_, table) = api
        .call_with(Method::GET, &url, "application/json", TABLE, None)
        .await;
    assert_eq!(table["rows"][0]["cells"][5], "Approved,Issued");
}

fn pod_template(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name, "labels": labels},
        "template": {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "example/app:1"}]}}})
}

#[tokio::test]
async fn pod_templates_are_validated_defaulted_and_printed() {
    let api = Api::new().await;
    let url = "/api/v1/namespaces/default/podtemplates";
    let (code, body) = api
        .call(
            Method::POST,
            url,
            Some(
                json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "empty"},
                "template": {"spec": {"containers": []}}}),
            ),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        has_cause(&body, "template.spec.containers", "Required value"),
        "{body}"
    );
    let (code, body) = api
        .call(Method::POST, url, Some(pod_template("web", json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["template"]["spec"]["restartPolicy"], "Always",
        "the pod spec defaults apply: {body}"
    );
    let (_, table) = api
        .call_with(Method::GET, url, "application/json", TABLE, None)
        .await;
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Containers", "Images", "Pod Labels"]);
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["web", "c", "example/app:1", "app=web"])
    );
}

async fn names(api: &Api, url: &str) -> Vec<String> {
    let (code, list) = api.call(Method::GET, url, None).await;
    assert_eq!(code, 200, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn deletecollection_honours_label_and_field_selectors_on_several_kinds() {
    let api = Api::new().await;
    let templates = "/api/v1/namespaces/default/podtemplates";
    for (name, app) in [("a", "x"), ("b", "y"), ("c", "x")] {
        let (code, body) = api
            .call(
                Method::POST,
                templates,
                Some(pod_template(name, json!({"app": app}))),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, body) = api
        .call(
            Method::DELETE,
            &format!("{templates}?labelSelector=app%3Dx"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "PodTemplateList");
    assert_eq!(names(&api, templates).await, ["b"]);

    let cms = "/api/v1/namespaces/default/configmaps";
    for (name, tier) in [("one", "front"), ("two", "back")] {
        api.call(Method::POST, cms, Some(cm(name, json!({"tier": tier}))))
            .await;
    }
    let (code, _) = api
        .call(
            Method::DELETE,
            &format!("{cms}?fieldSelector=metadata.name%3Done"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(names(&api, cms).await, ["two"]);

    // Pods: a finalizer keeps a selected pod, marked for deletion; the other is left alone.
    let pods = "/api/v1/namespaces/default/pods";
    let mut kept = pod("kept");
    kept["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.call(Method::POST, pods, Some(kept)).await;
    let mut other = pod("other");
    other["metadata"]["labels"] = json!({"app": "db"});
    api.call(Method::POST, pods, Some(other)).await;
    let (code, body) = api
        .call(
            Method::DELETE,
            &format!("{pods}?labelSelector=app%3Dweb"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (_, held) = api.call(Method::GET, &format!("{pods}/kept"), None).await;
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    assert_eq!(names(&api, pods).await, ["kept", "other"]);

    // CSRs are cluster-scoped.
    api.call(Method::POST, CSRS, Some(csr("gone"))).await;
    let (code, _) = api.call(Method::DELETE, CSRS, None).await;
    assert_eq!(code, 200);
    assert!(names(&api, CSRS).await.is_empty());

    // Namespaces have no deletecollection in Kubernetes.
    let (code, body) = api.call(Method::DELETE, "/api/v1/namespaces", None).await;
    assert_eq!(code, 405, "{body}");
    assert_eq!(body["reason"], "MethodNotAllowed");
}

fn resource<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}"))
}

#[tokio::test]
async fn discovery_lists_the_verbs_kubernetes_lists() {
    let api = Api::new().await;
    let all = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let (_, core) = api.call(Method::GET, "/api/v1", None).await;
    for name in [
        "pods",
        "events",
        "configmaps",
        "secrets",
        "podtemplates",
        "services",
    ] {
        assert_eq!(resource(&core, name)["verbs"], all, "{name}");
    }
    assert_eq!(
        resource(&core, "namespaces")["verbs"],
        json!([
            "create", "delete", "get", "list", "patch", "update", "watch"
        ])
    );
    let (_, certs) = api
        .call(Method::GET, "/apis/certificates.k8s.io/v1", None)
        .await;
    let csrs = resource(&certs, "certificatesigningrequests");
    assert_eq!(csrs["verbs"], all);
    assert_eq!(csrs["shortNames"], json!(["csr"]));
    assert_eq!(csrs["namespaced"], false);
    assert_eq!(
        resource(&certs, "certificatesigningrequests/approval")["verbs"],
        json!(["get", "patch", "update"])
    );
    let (_, authz) = api
        .call(Method::GET, "/apis/authorization.k8s.io/v1", None)
        .await;
    for name in [
        "localsubjectaccessreviews",
        "selfsubjectaccessreviews",
        "selfsubjectrulesreviews",
        "subjectaccessreviews",
    ] {
        assert_eq!(resource(&authz, name)["verbs"], json!(["create"]), "{name}");
    }
    assert_eq!(
        resource(&authz, "localsubjectaccessreviews")["namespaced"],
        true
    );
    let (_, authn) = api
        .call(Method::GET, "/apis/authentication.k8s.io/v1", None)
        .await;
    for name in ["selfsubjectreviews", "tokenreviews"] {
        assert_eq!(resource(&authn, name)["verbs"], json!(["create"]), "{name}");
    }
}

/// Lets everything but approving for signers other than `example.com/*`.
struct ApproveOnlyExampleSigners;

impl skiff_api::Authorizer for ApproveOnlyExampleSigners {
    fn authorize(&self, a: &skiff_api::Attributes<'_>) -> skiff_api::Decision {
        if a.verb == "approve" && a.name != Some("example.com/*") {
            skiff_api::Decision::Deny("not an approver".into())
        } else {
            skiff_api::Decision::Allow
        }
    }
}

#[tokio::test]
async fn approving_needs_the_approve_verb_on_the_signer() {
    let api = Api::with_authorizer(std::sync::Arc::new(ApproveOnlyExampleSigners)).await;
    let approve = |mut obj: Value| {
        obj["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        obj
    };
    let (_, client) = api.call(Method::POST, CSRS, Some(csr("client"))).await;
    let (code, body) = api
        .call(
            Method::PUT,
            &format!("{CSRS}/client/approval"),
            Some(approve(client)),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "certificatesigningrequests.certificates.k8s.io \"client\" is forbidden: user not permitted to approve requests with signerName \"kubernetes.io/kube-apiserver-client\""
    );
    let mut example = csr("example");
    example["spec"]["signerName"] = json!("example.com/issuer");
    let (_, example) = api.call(Method::POST, CSRS, Some(example)).await;
    let (code, body) = api
        .call(
            Method::PUT,
            &format!("{CSRS}/example/approval"),
            Some(approve(example)),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["conditions"][0]["type"], "Approved");
}

/// Lets everything but signing.
struct NoSigning;

impl skiff_api::Authorizer for NoSigning {
    fn authorize(&self, a: &skiff_api::Attributes<'_>) -> skiff_api::Decision {
        if a.verb == "sign" {
            skiff_api::Decision::Deny("not a signer".into())
        } else {
            skiff_api::Decision::Allow
        }
    }
}

#[tokio::test]
async fn issuing_a_certificate_needs_the_sign_verb_on_the_signer() {
    let api = Api::with_authorizer(std::sync::Arc::new(NoSigning)).await;
    let (_, created) = api.call(Method::POST, CSRS, Some(csr("jane"))).await;
    let mut approve = created;
    approve["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
    let (code, approved) = api
        .call(Method::PUT, &format!("{CSRS}/jane/approval"), Some(approve))
        .await;
    assert_eq!(code, 200, "{approved}");
    let mut issue = approved.clone();
    issue["status"]["certificate"] = json!(b64(&certificate_pem()));
    let (code, body) = api
        .call(Method::PUT, &format!("{CSRS}/jane/status"), Some(issue))
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with("user not permitted to sign requests with signerName \"kubernetes.io/kube-apiserver-client\""),
        "{body}"
    );
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{CSRS}/jane/status"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"status": {"certificate": b64(&certificate_pem())}})),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    // A status write that leaves the certificate alone needs no signer rights.
    let mut failed = approved;
    failed["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Failed", "status": "True", "reason": "Test"}));
    let (code, body) = api
        .call(Method::PUT, &format!("{CSRS}/jane/status"), Some(failed))
        .await;
    assert_eq!(code, 200, "{body}");
}
