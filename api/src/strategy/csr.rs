//! CertificateSigningRequest rules, as Kubernetes' certificates strategies: the requestor is
//! recorded from the authenticated user at create, the spec never changes after it, the
//! `approval` subresource writes only the Approved/Denied conditions and `status` everything else.

use serde_json::{Map, Value, json};

use super::{Strategy, reset_spec};
use crate::state::UserInfo;

pub(crate) struct CsrStrategy;

/// Whether a condition is one the `approval` subresource owns.
fn is_approval(condition: &Value) -> bool {
    matches!(
        condition.get("type").and_then(Value::as_str),
        Some("Approved" | "Denied")
    )
}

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn status_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let m = obj.as_object_mut()?;
    let status = m.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    status.as_object_mut()
}

fn set_conditions(obj: &mut Value, conditions: Vec<Value>) {
    if let Some(status) = status_mut(obj) {
        if conditions.is_empty() {
            status.remove("conditions");
        } else {
            status.insert("conditions".into(), Value::Array(conditions));
        }
    }
}

impl Strategy for CsrStrategy {
    /// As Kubernetes' `csrStrategy.PrepareForCreate`: who asked is the authenticated user,
    /// whatever the client wrote in `spec.username`, `uid`, `groups` and `extra`.
    fn prepare_for_create(&self, obj: &mut Value, user: &UserInfo) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        spec.insert("username".into(), json!(user.name));
        spec.remove("uid");
        spec.remove("extra");
        if user.groups.is_empty() {
            spec.remove("groups");
        } else {
            spec.insert("groups".into(), json!(user.groups));
        }
    }

    /// An update of the object itself changes only its metadata: the spec stays as created.
    fn prepare_for_update(&self, old: &Value, mut new: Value) -> Value {
        if let (Some(m), Some(spec)) = (new.as_object_mut(), old.get("spec")) {
            m.insert("spec".into(), spec.clone());
        }
        new
    }

    /// `status`: the spec and the Approved/Denied conditions stay as stored; the certificate and
    /// the other conditions come from the request.
    fn prepare_for_status_update(&self, old: &Value, new: Value) -> Value {
        let mut merged = reset_spec(old, new);
        let mut kept: Vec<Value> = conditions(old).into_iter().filter(is_approval).collect();
        kept.extend(conditions(&merged).into_iter().filter(|c| !is_approval(c)));
        set_conditions(&mut merged, kept);
        merged
    }

    /// `approval`: only the Approved/Denied conditions come from the request; the spec, the
    /// certificate and the other conditions stay as stored.
    fn prepare_for_approval_update(&self, old: &Value, new: Value) -> Value {
        let mut merged = reset_spec(old, new);
        let mut kept: Vec<Value> = conditions(&merged)
            .into_iter()
            .filter(is_approval)
            .collect();
        kept.extend(conditions(old).into_iter().filter(|c| !is_approval(c)));
        set_conditions(&mut merged, kept);
        if let Some(status) = status_mut(&mut merged) {
            match old.pointer("/status/certificate") {
                Some(cert) => {
                    status.insert("certificate".into(), cert.clone());
                }
                None => {
                    status.remove("certificate");
                }
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_records_the_requesting_user_not_the_clients_claim() {
        let mut csr = json!({"spec": {"username": "root", "uid": "0", "groups": ["system:masters"],
            "extra": {"a": ["b"]}, "request": "x"}});
        CsrStrategy.prepare_for_create(&mut csr, &UserInfo::new("jane", &["dev"]));
        assert_eq!(csr["spec"]["username"], "jane");
        assert_eq!(
            csr["spec"]["groups"],
            json!(["dev", "system:authenticated"])
        );
        assert!(csr["spec"].get("uid").is_none());
        assert!(csr["spec"].get("extra").is_none());
        assert_eq!(csr["spec"]["request"], "x");
    }

    #[test]
    fn approval_and_status_each_write_only_their_own_part() {
        let approved = json!({"type": "Approved", "status": "True"});
        let failed = json!({"type": "Failed", "status": "True"});
        let old = json!({"spec": {"request": "old"}, "status": {"conditions": [failed.clone()]}});
        let sent = json!({"spec": {"request": "new"}, "status": {"certificate": "Y2VydA==",
            "conditions": [approved.clone()]}});
        let via_approval = CsrStrategy.prepare_for_approval_update(&old, sent.clone());
        assert_eq!(via_approval["spec"]["request"], "old");
        assert_eq!(
            via_approval["status"]["conditions"],
            json!([approved, failed])
        );
        assert!(via_approval["status"].get("certificate").is_none());
        let via_status = CsrStrategy.prepare_for_status_update(&old, sent.clone());
        assert_eq!(via_status["spec"]["request"], "old");
        assert_eq!(via_status["status"]["certificate"], "Y2VydA==");
        // The request's Approved condition is not the status subresource's to write.
        assert!(via_status["status"].get("conditions").is_none());
        let main = CsrStrategy.prepare_for_update(&old, sent);
        assert_eq!(main["spec"]["request"], "old");
    }
}
