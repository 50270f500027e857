//! Unit tests: the schema table's invariants, the JSON mapping of every special type, and
//! malformed input.

use serde_json::{Value, json};

use crate::schema::{MapVal, Ty};
use crate::table::{KINDS, MSGS};
use crate::{Error, decode, supports};

// --- a tiny protobuf encoder -------------------------------------------------------------------

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn key(num: u32, wt: u8) -> Vec<u8> {
    varint((u64::from(num) << 3) | u64::from(wt))
}

/// A varint field.
fn vf(num: u32, v: u64) -> Vec<u8> {
    [key(num, 0), varint(v)].concat()
}

/// A length-delimited field.
fn lf(num: u32, bytes: &[u8]) -> Vec<u8> {
    [key(num, 2), varint(bytes.len() as u64), bytes.to_vec()].concat()
}

fn sf(num: u32, s: &str) -> Vec<u8> {
    lf(num, s.as_bytes())
}

fn entry(k: &str, v: &[u8]) -> Vec<u8> {
    [sf(1, k), lf(2, v)].concat()
}

fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [sf(1, api_version), sf(2, kind)].concat();
    [
        b"k8s\0".to_vec(),
        lf(1, &type_meta),
        lf(2, raw),
        sf(3, ""),
        sf(4, ""),
    ]
    .concat()
}

fn meta(name: &str) -> Vec<u8> {
    // As Go writes it: every value field, even empty, and an empty creationTimestamp.
    [
        sf(1, name),
        sf(2, ""),
        sf(3, ""),
        sf(4, ""),
        sf(5, ""),
        sf(6, ""),
        vf(7, 0),
        lf(8, &[]),
    ]
    .concat()
}

fn msg_index(name: &str) -> u16 {
    MSGS.iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("no message {name}")) as u16
}

// --- the table ---------------------------------------------------------------------------------

#[test]
fn table_is_consistent() {
    let n = MSGS.len();
    for m in MSGS {
        for pair in m.fields.windows(2) {
            assert!(pair[0].num < pair[1].num, "{}: fields not sorted", m.name);
        }
        for f in m.fields {
            match f.ty {
                Ty::Msg(i) | Ty::Map(MapVal::Msg(i)) => {
                    assert!(usize::from(i) < n, "{}.{}", m.name, f.json)
                }
                _ => {}
            }
            assert!(!f.json.is_empty() || f.inline(), "{}.{}", m.name, f.num);
        }
    }
    for pair in KINDS.windows(2) {
        assert!((pair[0].0, pair[0].1) < (pair[1].0, pair[1].1), "{pair:?}");
    }
    for (_, _, i) in KINDS {
        assert!(usize::from(*i) < n);
    }
}

#[test]
fn supports_the_kinds_kubectl_sends() {
    for (v, k) in [
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Namespace"),
        ("v1", "Pod"),
        ("v1", "Service"),
        ("v1", "DeleteOptions"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("policy/v1", "Eviction"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("autoscaling/v1", "Scale"),
        ("networking.k8s.io/v1", "Ingress"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("coordination.k8s.io/v1", "Lease"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("events.k8s.io/v1", "Event"),
        ("node.k8s.io/v1", "RuntimeClass"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
        ("storage.k8s.io/v1", "StorageClass"),
        ("certificates.k8s.io/v1", "CertificateSigningRequest"),
        ("meta.k8s.io/v1", "DeleteOptions"),
    ] {
        assert!(supports(v, k), "{v} {k}");
    }
    for (v, k, _) in KINDS {
        let got = decode(&body(v, k, &[])).unwrap_or_else(|e| panic!("{v} {k}: {e}"));
        assert_eq!(got, json!({"kind": k, "apiVersion": v}));
    }
    assert!(!supports("v1", "Nope"));
    assert!(!supports("apps/v1", "ConfigMap"));
    assert!(!supports(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition"
    ));
}

// --- mapping -----------------------------------------------------------------------------------

#[test]
fn configmap_as_go_writes_it() {
    let raw = [
        lf(1, &meta("x")),
        lf(2, &entry("a", b"b")),
        lf(2, &entry("b", b"c")),
    ]
    .concat();
    let got = decode(&body("v1", "ConfigMap", &raw)).unwrap();
    assert_eq!(
        got,
        json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"},
               "data": {"a": "b", "b": "c"}})
    );
    // kind and apiVersion come first, like kubectl's JSON.
    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(keys[..2], ["kind", "apiVersion"]);
}

#[test]
fn secret_bytes_become_base64() {
    let raw = [
        lf(1, &meta("s")),
        lf(2, &entry("k", &[0, 1, 2, 255])),
        lf(2, &entry("e", b"")),
        sf(3, "Opaque"),
    ]
    .concat();
    assert_eq!(
        decode(&body("v1", "Secret", &raw)).unwrap(),
        json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"},
               "data": {"k": "AAEC/w==", "e": ""}, "type": "Opaque"})
    );
    // A bytes field outside a map too: CertificateSigningRequest.spec.request.
    let spec = [lf(1, b"pem"), sf(7, "kubernetes.io/kube-apiserver-client")].concat();
    let raw = [lf(1, &meta("csr")), lf(2, &spec)].concat();
    let got = decode(&body(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &raw,
    ))
    .unwrap();
    assert_eq!(got["spec"]["request"], "cGVt");
    assert_eq!(
        got["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client"
    );
}

#[test]
fn times_and_micro_times() {
    // events.k8s.io/v1 Event: eventTime (MicroTime, 2), deprecatedFirstTimestamp (Time, 13),
    // series {count 1, lastObservedTime MicroTime 2} (3).
    let micro = [vf(1, 1_767_323_045), vf(2, 123_456_789)].concat();
    let time = [vf(1, 1_767_323_045), vf(2, 999)].concat();
    let series = [vf(1, 2), lf(2, &micro)].concat();
    let raw = [
        lf(1, &meta("e")),
        lf(2, &micro),
        lf(3, &series),
        lf(13, &time),
        lf(14, &[]),
    ]
    .concat();
    let got = decode(&body("events.k8s.io/v1", "Event", &raw)).unwrap();
    assert_eq!(got["eventTime"], "2026-01-02T03:04:05.123456Z");
    assert_eq!(
        got["series"],
        json!({"count": 2, "lastObservedTime": "2026-01-02T03:04:05.123456Z"})
    );
    // Time keeps only whole seconds; an empty Time (the zero time) is left out.
    assert_eq!(got["deprecatedFirstTimestamp"], "2026-01-02T03:04:05Z");
    assert!(got.get("deprecatedLastTimestamp").is_none());
    // A Time that is explicitly the Unix epoch is not the zero time.
    let raw = [lf(1, &meta("e")), lf(13, &vf(1, 0))].concat();
    let got = decode(&body("events.k8s.io/v1", "Event", &raw)).unwrap();
    assert_eq!(got["deprecatedFirstTimestamp"], "1970-01-01T00:00:00Z");
    // Far outside RFC 3339: an error, not a panic.
    let raw = [lf(1, &meta("e")), lf(13, &vf(1, u64::MAX >> 1))].concat();
    assert!(matches!(
        decode(&body("events.k8s.io/v1", "Event", &raw)),
        Err(Error::TimeOutOfRange { .. })
    ));
}

#[test]
fn durations() {
    let idx = msg_index("k8s.io.apimachinery.pkg.apis.meta.v1.Duration");
    let got = crate::decode::message(&vf(1, 90_000_000_000), idx, 0).unwrap();
    assert_eq!(got, "1m30s");
    assert_eq!(crate::decode::message(&[], idx, 0).unwrap(), "0s");
}

#[test]
fn quantities_and_int_or_strings() {
    // ResourceQuota spec.hard: map<string, Quantity>.
    let hard = [
        lf(1, &entry("cpu", &sf(1, "500m"))),
        lf(1, &entry("pods", &[])),
    ]
    .concat();
    let raw = [lf(1, &meta("q")), lf(2, &hard)].concat();
    let got = decode(&body("v1", "ResourceQuota", &raw)).unwrap();
    assert_eq!(got["spec"]["hard"], json!({"cpu": "500m", "pods": "0"}));
    let hard = lf(1, &entry("cpu", &sf(1, "")));
    let raw = [lf(1, &meta("q")), lf(2, &hard)].concat();
    assert!(matches!(
        decode(&body("v1", "ResourceQuota", &raw)),
        Err(Error::EmptyQuantity)
    ));

    // Service ports: targetPort as a number and as a name.
    let int_port = [vf(1, 0), vf(2, 8080), sf(3, "")].concat();
    let str_port = [vf(1, 1), vf(2, 0), sf(3, "http")].concat();
    let port = |n: u64, target: &[u8]| {
        [sf(1, ""), sf(2, "TCP"), vf(3, n), lf(4, target), vf(5, 0)].concat()
    };
    let spec = [lf(1, &port(80, &int_port)), lf(1, &port(81, &str_port))].concat();
    let raw = [lf(1, &meta("s")), lf(2, &spec), lf(3, &[])].concat();
    let got = decode(&body("v1", "Service", &raw)).unwrap();
    assert_eq!(
        got["spec"]["ports"],
        json!([
            {"protocol": "TCP", "port": 80, "targetPort": 8080},
            {"protocol": "TCP", "port": 81, "targetPort": "http"}
        ])
    );
    assert_eq!(got["status"], json!({}));
    let bad = [vf(1, 7)].concat();
    let spec = lf(1, &port(80, &bad));
    let raw = [lf(1, &meta("s")), lf(2, &spec)].concat();
    assert!(matches!(
        decode(&body("v1", "Service", &raw)),
        Err(Error::InvalidIntOrString(7))
    ));
}

#[test]
fn raw_extensions_and_fields_v1() {
    // ControllerRevision.data is a RawExtension holding JSON.
    let raw = [
        lf(1, &meta("cr")),
        lf(2, &lf(1, br#"{"spec":{"a":[1,2]}}"#)),
        vf(3, 4),
    ]
    .concat();
    let got = decode(&body("apps/v1", "ControllerRevision", &raw)).unwrap();
    assert_eq!(got["data"], json!({"spec": {"a": [1, 2]}}));
    assert_eq!(got["revision"], 4);

    // ... or an embedded Kubernetes protobuf object.
    let inner = body(
        "v1",
        "ConfigMap",
        &[lf(1, &meta("x")), lf(2, &entry("a", b"b"))].concat(),
    );
    let raw = [lf(1, &meta("cr")), lf(2, &lf(1, &inner))].concat();
    let got = decode(&body("apps/v1", "ControllerRevision", &raw)).unwrap();
    assert_eq!(
        got["data"],
        json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}, "data": {"a": "b"}})
    );

    let raw = [lf(1, &meta("cr")), lf(2, &lf(1, b"{nope"))].concat();
    assert!(matches!(
        decode(&body("apps/v1", "ControllerRevision", &raw)),
        Err(Error::InvalidEmbeddedJson { .. })
    ));

    // ObjectMeta.managedFields[].fieldsV1 (7) is FieldsV1 {Raw}.
    let mf = [
        sf(1, "kubectl"),
        sf(2, "Update"),
        sf(3, "v1"),
        sf(6, "FieldsV1"),
        lf(7, &lf(1, br#"{"f:data":{"f:a":{}}}"#)),
    ]
    .concat();
    let m = [sf(1, "x"), lf(17, &mf)].concat();
    let got = decode(&body("v1", "ConfigMap", &lf(1, &m))).unwrap();
    assert_eq!(
        got["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}])
    );
}

#[test]
fn inline_structs_merge_into_their_parent() {
    // Volume {name, VolumeSource (inline) {configMap (19) {LocalObjectReference (inline) {name}}}}
    let cm_source = lf(1, &sf(1, "cfg"));
    let volume = [sf(1, "v"), lf(2, &lf(19, &cm_source))].concat();
    let container = [sf(1, "c"), sf(2, "img")].concat();
    let pod_spec = [lf(1, &volume), lf(2, &container)].concat();
    let raw = [lf(1, &meta("p")), lf(2, &pod_spec)].concat();
    let got = decode(&body("v1", "Pod", &raw)).unwrap();
    assert_eq!(
        got["spec"],
        json!({"volumes": [{"name": "v", "configMap": {"name": "cfg"}}],
               "containers": [{"name": "c", "image": "img"}]})
    );
}

#[test]
fn zero_values_follow_go_json() {
    // Deployment: replicas (pointer) 0 is kept; status counters (value fields) are dropped;
    // spec.paused false is dropped; metadata.generation 0 is dropped.
    let status = [vf(1, 0), vf(2, 0), vf(3, 0), vf(4, 0), vf(5, 0), vf(7, 0)].concat();
    let spec = [vf(1, 0), vf(7, 0), lf(4, &[])].concat();
    let raw = [lf(1, &meta("d")), lf(2, &spec), lf(3, &status)].concat();
    let got = decode(&body("apps/v1", "Deployment", &raw)).unwrap();
    assert_eq!(
        got,
        json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "d"},
               "spec": {"replicas": 0, "strategy": {}}, "status": {}})
    );
    // Required fields keep their zero value: ContainerPort.containerPort, Container.name.
    let port = [vf(3, 0)].concat();
    let container = [sf(1, ""), lf(6, &port)].concat();
    let raw = [lf(1, &meta("p")), lf(2, &lf(2, &container))].concat();
    let got = decode(&body("v1", "Pod", &raw)).unwrap();
    assert_eq!(
        got["spec"]["containers"],
        json!([{"name": "", "ports": [{"containerPort": 0}]}])
    );
}

#[test]
fn repeated_scalars_packed_and_unpacked() {
    // PodSecurityContext.supplementalGroups (4): repeated int64.
    let packed = lf(4, &[varint(1), varint(2), varint(300)].concat());
    let unpacked = [vf(4, 1), vf(4, 2), vf(4, 300)].concat();
    let mixed = [vf(4, 1), lf(4, &[varint(2), varint(300)].concat())].concat();
    for sc in [packed, unpacked, mixed] {
        let pod_spec = lf(14, &sc);
        let raw = [lf(1, &meta("p")), lf(2, &pod_spec)].concat();
        let got = decode(&body("v1", "Pod", &raw)).unwrap();
        assert_eq!(
            got["spec"]["securityContext"]["supplementalGroups"],
            json!([1, 2, 300])
        );
    }
    // Negative int32 (10-byte varint) and an empty packed list (absent).
    let rule = [sf(2, "In"), vf(3, (-1i64) as u64), lf(3, &[])].concat();
    let idx = msg_index("k8s.io.api.batch.v1.PodFailurePolicyOnExitCodesRequirement");
    assert_eq!(
        crate::decode::message(&rule, idx, 0).unwrap(),
        json!({"operator": "In", "values": [-1]})
    );
    let idx = msg_index("k8s.io.api.core.v1.ContainerRestartRuleOnExitCodes");
    assert_eq!(
        crate::decode::message(&[sf(1, "In"), lf(2, &[])].concat(), idx, 0).unwrap(),
        json!({"operator": "In"})
    );
}

#[test]
fn unknown_fields_are_skipped_and_repeats_merge() {
    let unknown = [
        vf(900, 5),
        [key(901, 1), vec![0; 8]].concat(),
        lf(902, b"zzz"),
        [key(903, 5), vec![0; 4]].concat(),
    ]
    .concat();
    // metadata twice: protobuf merges the two messages; data entry key repeated: last wins.
    let raw = [
        unknown.clone(),
        lf(1, &[sf(1, "first"), sf(3, "ns")].concat()),
        lf(2, &entry("a", b"1")),
        lf(1, &[sf(1, "x"), lf(11, &entry("l", b"v"))].concat()),
        lf(2, &entry("a", b"2")),
        vf(4, 1),
        vf(4, 0),
    ]
    .concat();
    let got = decode(&body("v1", "ConfigMap", &raw)).unwrap();
    assert_eq!(
        got,
        json!({"kind": "ConfigMap", "apiVersion": "v1",
               "metadata": {"name": "x", "namespace": "ns", "labels": {"l": "v"}},
               "data": {"a": "2"}, "immutable": false})
    );
    // Unknown fields in the envelope too.
    let mut b = body("v1", "ConfigMap", &lf(1, &meta("x")));
    b.extend(vf(20, 1));
    assert!(decode(&b).is_ok());
}

#[test]
fn eviction_and_delete_options() {
    // What the eviction subresource receives: metadata and deleteOptions {gracePeriodSeconds 1,
    // preconditions 2 {uid}, propagationPolicy 4, dryRun 5}.
    let opts = [vf(1, 0), lf(2, &sf(1, "u1")), sf(4, "Background")].concat();
    let raw = [lf(1, &meta("p1")), lf(2, &opts)].concat();
    let mut m = meta("p1");
    m.extend(sf(3, "default"));
    let raw2 = [lf(1, &m), lf(2, &opts)].concat();
    for (r, ns) in [(raw, None), (raw2, Some("default"))] {
        let got = decode(&body("policy/v1", "Eviction", &r)).unwrap();
        let mut want = json!({"kind": "Eviction", "apiVersion": "policy/v1",
            "metadata": {"name": "p1"},
            "deleteOptions": {"gracePeriodSeconds": 0, "preconditions": {"uid": "u1"},
                              "propagationPolicy": "Background"}});
        if let Some(ns) = ns {
            want["metadata"]["namespace"] = Value::from(ns);
        }
        assert_eq!(got, want);
    }
}

#[test]
fn envelope_variants() {
    // JSON inside the envelope.
    let type_meta = [sf(1, "v1"), sf(2, "ConfigMap")].concat();
    let b = [
        b"k8s\0".to_vec(),
        lf(1, &type_meta),
        lf(2, br#"{"metadata":{"name":"x"}}"#),
        sf(4, "application/json"),
    ]
    .concat();
    assert_eq!(
        decode(&b).unwrap(),
        json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}})
    );
    let gz = [b"k8s\0".to_vec(), lf(1, &type_meta), sf(3, "gzip")].concat();
    assert!(matches!(
        decode(&gz),
        Err(Error::UnsupportedContentEncoding(_))
    ));
    let yaml = [
        b"k8s\0".to_vec(),
        lf(1, &type_meta),
        sf(4, "application/yaml"),
    ]
    .concat();
    assert!(matches!(
        decode(&yaml),
        Err(Error::UnsupportedContentType(_))
    ));
    // An empty object.
    assert_eq!(
        decode(&body("v1", "Namespace", &[])).unwrap(),
        json!({"kind": "Namespace", "apiVersion": "v1"})
    );
}

// --- malformed input ---------------------------------------------------------------------------

#[test]
fn malformed_bodies_are_errors() {
    let ok = body("v1", "ConfigMap", &lf(1, &meta("x")));
    assert!(decode(&ok).is_ok());

    assert!(matches!(decode(b""), Err(Error::BadMagic)));
    assert!(matches!(decode(b"k8s"), Err(Error::BadMagic)));
    assert!(matches!(
        decode(b"{\"kind\":\"ConfigMap\"}"),
        Err(Error::BadMagic)
    ));
    assert!(matches!(decode(b"k8s\0"), Err(Error::MissingKind)));
    assert!(matches!(
        decode(&body("v1", "Widget", &[])),
        Err(Error::UnsupportedKind { .. })
    ));
    assert!(matches!(
        decode(&ok[..ok.len() - 3]),
        Err(Error::Truncated | Error::LengthOutOfRange { .. })
    ));

    let cm = |raw: &[u8]| decode(&body("v1", "ConfigMap", raw));
    // Wrong wire type: metadata as a varint, data as fixed32, immutable as a string.
    assert!(matches!(cm(&vf(1, 3)), Err(Error::WrongWireType { .. })));
    assert!(matches!(
        cm(&[key(2, 5), vec![0; 4]].concat()),
        Err(Error::WrongWireType { .. })
    ));
    assert!(matches!(
        cm(&sf(4, "yes")),
        Err(Error::WrongWireType { .. })
    ));
    // A huge length prefix.
    let huge = [key(1, 2), varint(u64::MAX)].concat();
    assert!(matches!(cm(&huge), Err(Error::LengthOutOfRange { .. })));
    let big = [key(1, 2), varint(1 << 40), vec![0; 10]].concat();
    assert!(matches!(cm(&big), Err(Error::LengthOutOfRange { .. })));
    // A varint that never ends, or is longer than 64 bits.
    assert!(matches!(cm(&[0x20, 0xff, 0xff]), Err(Error::Truncated)));
    assert!(matches!(
        cm(&[vec![0x20], vec![0xff; 10], vec![0x01]].concat()),
        Err(Error::VarintOverflow)
    ));
    // Field number 0, groups (wire types 3/4), wire types 6/7.
    assert!(matches!(
        cm(&[0x02, 0x00]),
        Err(Error::InvalidFieldNumber(0))
    ));
    for wt in [3u8, 4, 6, 7] {
        assert!(
            matches!(cm(&key(99, wt)), Err(Error::UnsupportedWireType(w)) if w == wt),
            "{wt}"
        );
    }
    // Invalid UTF-8 in a string and in a map key.
    assert!(matches!(
        cm(&lf(1, &lf(1, &[0xff, 0xfe]))),
        Err(Error::InvalidUtf8 { .. })
    ));
    assert!(matches!(
        cm(&lf(2, &[lf(1, &[0xc3]), lf(2, b"v")].concat())),
        Err(Error::InvalidUtf8 { .. })
    ));
    // Truncated fixed-width values in unknown fields.
    assert!(matches!(
        cm(&[key(50, 1), vec![0; 7]].concat()),
        Err(Error::Truncated)
    ));
    assert!(matches!(
        cm(&[key(50, 5), vec![0; 3]].concat()),
        Err(Error::Truncated)
    ));
    // Envelope typeMeta with the wrong wire type.
    let bad_env = [b"k8s\0".to_vec(), vf(1, 1)].concat();
    assert!(matches!(decode(&bad_env), Err(Error::WrongWireType { .. })));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // RawExtensions holding Kubernetes protobuf, nested far deeper than any object.
    let mut inner = body("v1", "ConfigMap", &[]);
    for _ in 0..200 {
        let raw = [lf(1, &meta("cr")), lf(2, &lf(1, &inner))].concat();
        inner = body("apps/v1", "ControllerRevision", &raw);
    }
    assert!(matches!(decode(&inner), Err(Error::TooDeep(_))));
}
