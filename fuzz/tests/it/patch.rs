//! Patch targets: JSON patch, merge patch, strategic merge patch and server-side apply on
//! arbitrary objects. None may panic; each checks a property of its semantics.

use serde_json::{Value, json};
use skiff_patch::{apply, json_patch, merge_patch, strategic_merge_patch};

use crate::input::{Bytes, two_documents};

const TYPES: &[&str] = &[
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.core.v1.Pod",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.ConfigMap",
    "com.example.v1.Widget",
];

fn type_for(input: &[u8]) -> &'static str {
    TYPES[input.len() % TYPES.len()]
}

/// RFC 6902: no panic; an empty patch is the identity; a `test` of the whole document against
/// itself passes.
#[test]
fn json_patch_target() {
    bolero::check!(name = "json_patch").for_each(|input: &[u8]| {
        let Some((doc, patch)) = two_documents(input) else {
            return;
        };
        let patch = match patch {
            Value::Array(_) => patch,
            other => Value::Array(vec![other]),
        };
        let _ = json_patch(&doc, &patch);
        assert_eq!(json_patch(&doc, &json!([])).unwrap(), doc);
        let test_self = json!([{"op": "test", "path": "", "value": doc}]);
        assert_eq!(json_patch(&doc, &test_self).unwrap(), doc);
    });
}

/// RFC 7386: no panic; merging a patch twice is the same as merging it once; `{}` is the
/// identity on an object (on anything else it gives `{}`: an object patch replaces a target that
/// is not an object).
#[test]
fn merge_patch_target() {
    bolero::check!(name = "merge_patch").for_each(|input: &[u8]| {
        let Some((doc, patch)) = two_documents(input) else {
            return;
        };
        let empty = merge_patch(&doc, &json!({})).unwrap();
        if doc.is_object() {
            assert_eq!(empty, doc, "an empty merge patch changes nothing");
        } else {
            assert_eq!(
                empty,
                json!({}),
                "an object patch replaces a target that is not one"
            );
        }
        if let Ok(once) = merge_patch(&doc, &patch) {
            let twice =
                merge_patch(&once, &patch).expect("a patch that applied once applies again");
            assert_eq!(twice, once, "merge patch is idempotent");
        }
    });
}

/// Strategic merge patch: no panic on any document, patch and schema; `{}` is the identity.
#[test]
fn strategic_merge_patch_target() {
    bolero::check!(name = "strategic_merge_patch").for_each(|input: &[u8]| {
        let Some((doc, patch)) = two_documents(input) else {
            return;
        };
        let type_name = type_for(input);
        if doc.is_object() {
            assert_eq!(
                strategic_merge_patch(&doc, &json!({}), type_name).unwrap(),
                doc,
                "an empty strategic merge patch changes nothing"
            );
        }
        let _ = strategic_merge_patch(&doc, &patch, type_name);
    });
}

/// Server-side apply: no panic; applying the same configuration again by the same manager
/// changes nothing (the second apply is a no-op, managedFields included).
#[test]
fn server_side_apply_target() {
    bolero::check!(name = "server_side_apply").for_each(|input: &[u8]| {
        let Some((live, config)) = two_documents(input) else {
            return;
        };
        let type_name = type_for(input);
        let now = "2026-01-01T00:00:00Z";
        let force = Bytes::new(input).byte() & 1 == 1;
        let live = live.is_object().then_some(live);
        let Ok(once) = apply::apply(live.as_ref(), &config, "fuzz", force, type_name, now) else {
            return;
        };
        // The API server refuses an applied object without apiVersion and kind (the managed
        // fields entry records the applied apiVersion): the property holds for the rest.
        let typed = |v: &Value| {
            v.get("apiVersion").is_some_and(Value::is_string)
                && v.get("kind").is_some_and(Value::is_string)
        };
        if !typed(&config)
            || live
                .as_ref()
                .is_some_and(|l| l.get("apiVersion") != config.get("apiVersion"))
        {
            let _ = apply::apply(Some(&once), &config, "fuzz", false, type_name, now);
            return;
        }
        let twice = apply::apply(Some(&once), &config, "fuzz", false, type_name, now)
            .expect("a configuration that applied once applies again");
        assert_eq!(
            twice, once,
            "applying the same configuration twice is a no-op"
        );
        let _ = apply::apply(Some(&once), &config, "other", false, type_name, now);
    });
}
