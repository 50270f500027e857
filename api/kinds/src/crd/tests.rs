//! Tests of CRD parsing and validation and of custom resource schemas.

use serde_json::{Value, json};

use super::*;

fn crontab_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "properties": {
                         "cronSpec": {"type": "string"},
                         "image": {"type": "string"},
                         "replicas": {"type": "integer", "minimum": 1, "default": 1}}},
                     "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}}}}}},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                 "additionalPrinterColumns": [
                     {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                     {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                     {"name": "Image", "type": "string", "priority": 1, "jsonPath": ".spec.image"}]},
                {"name": "v1beta1", "served": true, "storage": false, "deprecated": true,
                 "deprecationWarning": "use v1",
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v0", "served": false, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}}
            ]
        }
    })
}

#[test]
fn from_crd_gives_one_kind_per_served_version() {
    let kinds = CustomKind::from_crd(&crontab_crd());
    assert_eq!(kinds.len(), 2);
    let v1 = &kinds[0];
    assert_eq!(v1.crd_name, "crontabs.stable.example.com");
    assert_eq!(v1.version, "v1");
    assert_eq!(v1.storage_version, "v1");
    assert_eq!(v1.served_versions, ["v1", "v1beta1"]);
    assert_eq!(v1.names.list_kind, "CronTabList");
    assert!(v1.namespaced);
    assert!(v1.subresources.status);
    assert_eq!(
        v1.subresources
            .scale
            .as_ref()
            .and_then(|s| s.label_selector_path.as_deref()),
        Some(".status.selector")
    );
    assert_eq!(v1.printer_columns.len(), 3);
    assert_eq!(v1.printer_columns[2].priority, 1);
    assert_eq!(v1.openapi_type(), "com.example.stable.v1.CronTab");
    let beta = &kinds[1];
    assert!(beta.deprecated);
    assert_eq!(beta.deprecation_warning.as_deref(), Some("use v1"));
    assert!(
        beta.schema
            .as_ref()
            .is_some_and(|s| s.preserve_unknown_fields)
    );
}

#[test]
fn leaked_kind_carries_the_custom_kind() {
    let kind = CustomKind::from_crd(&crontab_crd()).remove(0).leak();
    assert_eq!(kind.api_version(), "stable.example.com/v1");
    assert_eq!(kind.subresources, ["scale", "status"]);
    assert_eq!(kind.short_names, ["ct"]);
    assert!(kind.is_custom());
    assert_eq!(kind.storage_version(), "v1");
    assert_eq!(kind.qualified_resource(), "crontabs.stable.example.com");
}

#[test]
fn crd_name_must_be_plural_dot_group() {
    let mut crd = crontab_crd();
    assert_eq!(validate_crd(&crd, None), vec![]);
    crd["metadata"]["name"] = json!("crontab.stable.example.com");
    let causes = validate_crd(&crd, None);
    assert_eq!(
        causes[0].full(),
        "metadata.name: Invalid value: \"crontab.stable.example.com\": must be spec.names.plural+\".\"+spec.group"
    );
}
