//! Validation of CertificateSigningRequests (`certificates.k8s.io/v1`) with Kubernetes' field
//! paths and messages: the PEM request, the signer name, the usages, the requested duration, the
//! conditions' exclusivity and what an update may not undo (approval, an issued certificate).

use base64::Engine as _;
use serde_json::Value;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use super::{Errs, arr, go_str, s};

/// Every key usage Kubernetes accepts in `spec.usages`.
pub const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The shortest `spec.expirationSeconds` a request may ask for (10 minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

const SIGNER_FORM: &str =
    "must be a fully qualified domain and path of the form 'example.com/signer-name'";

/// Parses `spec.request` (base64 of PEM) as Kubernetes' `ParseCSR` does: one PEM block of type
/// `CERTIFICATE REQUEST` holding a PKCS#10 request whose signature verifies.
pub fn parse_request(base64_pem: &str) -> Result<(), String> {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(base64_pem)
        .map_err(|e| format!("illegal base64 data: {e}"))?;
    let wrong_type = || "PEM block type must be CERTIFICATE REQUEST".to_string();
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).map_err(|_| wrong_type())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(wrong_type());
    }
    let (_, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("asn1: structure error: {e}"))?;
    csr.verify_signature()
        .map_err(|e| format!("x509: signature verification failure: {e}"))
}

/// `spec.signerName`: `DOMAIN/PATH` with a fully qualified DNS subdomain.
fn signer_name(name: &str, errs: &mut Errs) {
    let field = "spec.signerName";
    if name.is_empty() {
        errs.required(field, "");
        return;
    }
    let Some((domain, path)) = name.split_once('/') else {
        errs.invalid(field, &go_str(name), SIGNER_FORM);
        return;
    };
    if !domain.contains('.') || path.is_empty() {
        errs.invalid(field, &go_str(name), SIGNER_FORM);
        return;
    }
    for msg in super::names::dns1123_subdomain(domain) {
        errs.invalid(field, &go_str(name), &msg);
    }
    if name.len() > 571 {
        errs.too_long(field, 571);
    }
}

fn condition_types(obj: &Value) -> Vec<&str> {
    arr(obj, "/status/conditions")
        .iter()
        .map(|c| s(c, "/type"))
        .collect()
}

/// Validates a CertificateSigningRequest; `old` is the stored object on updates.
pub(super) fn csr(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    match obj.pointer("/spec/request").and_then(Value::as_str) {
        None | Some("") => errs.required("spec.request", ""),
        Some(req) => {
            if let Err(msg) = parse_request(req) {
                errs.invalid("spec.request", "[]byte{...}", &msg);
            }
        }
    }
    signer_name(s(obj, "/spec/signerName"), errs);
    let usages = arr(obj, "/spec/usages");
    if usages.is_empty() {
        errs.required("spec.usages", "");
    }
    let mut seen = Vec::new();
    for (i, u) in usages.iter().enumerate() {
        let usage = u.as_str().unwrap_or_default();
        let field = format!("spec.usages[{i}]");
        if !KNOWN_USAGES.contains(&usage) {
            errs.not_supported(&field, usage, KNOWN_USAGES);
        } else if seen.contains(&usage) {
            errs.duplicate(&field, &go_str(usage));
        }
        seen.push(usage);
    }
    if let Some(secs) = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        && secs < MIN_EXPIRATION_SECONDS
    {
        errs.invalid(
            "spec.expirationSeconds",
            &secs.to_string(),
            "may not specify a duration less than 600 seconds (10 minutes)",
        );
    }
    conditions(obj, errs);
    certificate(obj, old, errs);
    if let Some(old) = old {
        for kept in ["Approved", "Denied"] {
            if condition_types(old).contains(&kept) && !condition_types(obj).contains(&kept) {
                errs.forbidden(
                    "status.conditions",
                    &format!(
                        "updates may not remove a condition of type {}",
                        go_str(kept)
                    ),
                );
            }
        }
    }
}

fn conditions(obj: &Value, errs: &mut Errs) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in arr(obj, "/status/conditions").iter().enumerate() {
        let field = format!("status.conditions[{i}]");
        let ty = s(c, "/type");
        let status = s(c, "/status");
        if ty.is_empty() {
            errs.required(&format!("{field}.type"), "");
        }
        if status.is_empty() {
            errs.required(&format!("{field}.status"), "");
        } else if !matches!(status, "True" | "False" | "Unknown") {
            errs.not_supported(
                &format!("{field}.status"),
                status,
                &["False", "True", "Unknown"],
            );
        }
        if matches!(ty, "Approved" | "Denied" | "Failed") {
            if matches!(ty, "Approved" | "Denied") && !status.is_empty() && status != "True" {
                errs.not_supported(&format!("{field}.status"), status, &["True"]);
            }
            if seen.contains(&ty) {
                errs.duplicate(&format!("{field}.type"), &go_str(ty));
            }
            seen.push(ty);
        }
    }
    if seen.contains(&"Approved") && seen.contains(&"Denied") {
        errs.invalid(
            "status.conditions",
            "[Approved Denied]",
            "Approved and Denied conditions are mutually exclusive",
        );
    }
}

/// `status.certificate`: PEM `CERTIFICATE` blocks, only on an approved request, and never changed
/// once issued.
fn certificate(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let field = "status.certificate";
    let cert = s(obj, "/status/certificate");
    let old_cert = old.map(|o| s(o, "/status/certificate")).unwrap_or_default();
    if !old_cert.is_empty() && cert != old_cert {
        errs.forbidden(field, "updates may not modify existing certificate content");
        return;
    }
    if cert.is_empty() || cert == old_cert {
        return;
    }
    let types = condition_types(obj);
    if !types.contains(&"Approved") {
        errs.forbidden(
            field,
            "a certificate may only be issued for an approved request",
        );
    } else if types.contains(&"Failed") {
        errs.forbidden(
            field,
            "a certificate may not be issued for a failed request",
        );
    }
    let Ok(pem) = base64::engine::general_purpose::STANDARD.decode(cert) else {
        errs.invalid(field, "<certificate data>", "illegal base64 data");
        return;
    };
    let mut rest: &[u8] = &pem;
    let mut blocks = 0;
    while !rest.iter().all(u8::is_ascii_whitespace) {
        match x509_parser::pem::parse_x509_pem(rest) {
            Ok((tail, block)) => {
                if block.label != "CERTIFICATE" {
                    errs.invalid(
                        field,
                        "<certificate data>",
                        &format!(
                            "only CERTIFICATE PEM blocks are allowed, found {}",
                            go_str(&block.label)
                        ),
                    );
                    return;
                }
                if block.parse_x509().is_err() {
                    errs.invalid(field, "<certificate data>", "failed to parse certificate");
                    return;
                }
                blocks += 1;
                rest = tail;
            }
            Err(_) => break,
        }
    }
    if blocks == 0 {
        errs.invalid(
            field,
            "<certificate data>",
            "must contain at least one CERTIFICATE PEM block",
        );
    }
}
