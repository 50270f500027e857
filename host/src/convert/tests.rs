//! Pod -> runtime spec conversion: env, volumes, resources.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use skiff_runtime::VolumeSource;

use super::resources::{bytes, millis, resource_value};
use super::*;

fn pod(yaml: &str) -> Pod {
    serde_yaml::from_str(yaml).expect("valid pod yaml")
}

const ADDRS: Addrs = Addrs {
    pod_ip: Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 88, 0, 2))),
    host_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
};

#[test]
fn env_resolves_refs_downward_api_and_expansion() {
    let p = pod(r#"
metadata: {name: p, namespace: ns, uid: u1, labels: {app: web}}
spec:
  nodeName: n1
  containers:
  - name: c
    image: x
    envFrom: [{configMapRef: {name: cm}, prefix: CM_}]
    env:
    - {name: A, value: one}
    - {name: B, value: "$(A)-two $$(A) $(MISSING)"}
    - {name: COLOR, valueFrom: {configMapKeyRef: {name: cm, key: color}}}
    - {name: USER, valueFrom: {secretKeyRef: {name: s, key: user}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    resources: {limits: {memory: 32Mi}}
"#);
    let mut refs = Refs::default();
    let cm: ConfigMap =
        serde_yaml::from_str("metadata: {name: cm}\ndata: {color: blue}").expect("cm");
    let s: Secret =
        serde_yaml::from_str("metadata: {name: s}\ndata: {user: c2tpZmY=}").expect("secret");
    refs.config_maps.insert("cm".into(), Some(cm));
    refs.secrets.insert("s".into(), Some(s));
    let c = &p.spec.as_ref().expect("spec").containers[0];
    let env: BTreeMap<_, _> = env(&p, c, &refs, ADDRS).expect("env").into_iter().collect();
    assert_eq!(env["CM_color"], "blue");
    assert_eq!(env["B"], "one-two $(A) $(MISSING)");
    assert_eq!(env["COLOR"], "blue");
    assert_eq!(env["USER"], "skiff");
    assert_eq!(env["POD"], "p");
    assert_eq!(env["IP"], "10.88.0.2");
    assert_eq!(env["APP"], "web");
    assert_eq!(env["MEM"], "32");
    assert_eq!(
        env["HOSTNAME"], "p",
        "HOSTNAME is the pod name, as under kubelet"
    );
}

#[test]
fn hostname_is_spec_hostname_when_set_and_env_overrides_it() {
    let p = pod(r#"
metadata: {name: p, namespace: ns}
spec:
  hostname: web-0
  containers:
  - {name: a, image: x}
  - name: b
    image: x
    env: [{name: HOSTNAME, value: mine}]
"#);
    let spec = p.spec.as_ref().expect("spec");
    let a: BTreeMap<_, _> = env(&p, &spec.containers[0], &Refs::default(), ADDRS)
        .expect("env")
        .into_iter()
        .collect();
    assert_eq!(a["HOSTNAME"], "web-0");
    let b = env(&p, &spec.containers[1], &Refs::default(), ADDRS).expect("env");
    let hostnames: Vec<_> = b.iter().filter(|(k, _)| k == "HOSTNAME").collect();
    assert_eq!(hostnames, [&("HOSTNAME".to_string(), "mine".to_string())]);
}

#[test]
fn missing_config_map_is_an_error_unless_optional() {
    let p = pod(r#"
metadata: {name: p, namespace: ns}
spec:
  containers:
  - name: c
    image: x
    env:
    - {name: COLOR, valueFrom: {configMapKeyRef: {name: gone, key: color}}}
"#);
    let c = &p.spec.as_ref().expect("spec").containers[0];
    let err = env(&p, c, &Refs::default(), ADDRS).expect_err("missing configmap");
    assert!(err.contains("configmap \"gone\" not found"), "{err}");
}

#[test]
fn volumes_map_to_runtime_sources() {
    let p = pod(r#"
metadata: {name: p, namespace: ns}
spec:
  containers: [{name: c, image: x}]
  volumes:
  - {name: data, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory}}
  - {name: cfg, configMap: {name: cm, items: [{key: color, path: c/color.txt}]}}
  - {name: sec, secret: {secretName: s, defaultMode: 256}}
  - {name: host, hostPath: {path: /tmp}}
  - {name: info, downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}}
"#);
    let mut refs = Refs::default();
    let cm: ConfigMap =
        serde_yaml::from_str("metadata: {name: cm}\ndata: {color: blue, other: x}").expect("cm");
    let s: Secret =
        serde_yaml::from_str("metadata: {name: s}\ndata: {pw: czNjcjN0}").expect("secret");
    refs.config_maps.insert("cm".into(), Some(cm));
    refs.secrets.insert("s".into(), Some(s));
    let vols = volumes(&p, &refs, &Default::default(), ADDRS).expect("volumes");
    assert_eq!(vols.len(), 6);
    assert!(matches!(
        vols[0].source,
        VolumeSource::EmptyDir { memory: false }
    ));
    assert!(matches!(
        vols[1].source,
        VolumeSource::EmptyDir { memory: true }
    ));
    match &vols[2].source {
        VolumeSource::Files { files, sensitive } => {
            assert!(!sensitive);
            assert_eq!(files.keys().collect::<Vec<_>>(), ["c/color.txt"]);
            assert_eq!(&*files["c/color.txt"].data, b"blue");
        }
        other => panic!("unexpected {other:?}"),
    }
    match &vols[3].source {
        VolumeSource::Files { files, sensitive } => {
            assert!(sensitive);
            assert_eq!(&*files["pw"].data, b"s3cr3t");
            assert_eq!(files["pw"].mode, Some(0o400));
        }
        other => panic!("unexpected {other:?}"),
    }
    match &vols[5].source {
        VolumeSource::Files { files, .. } => assert_eq!(&*files["name"].data, b"p"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn resources_and_resource_field_refs_are_exact() {
    let c: Container = serde_yaml::from_str(
        "{name: c, resources: {limits: {cpu: 1500m, memory: 1Gi}, requests: {cpu: '0.1'}}}",
    )
    .expect("a container");
    let r = resources(&c);
    assert_eq!(r.memory_limit, Some(1 << 30));
    assert_eq!(r.memory_request, Some(1 << 30));
    assert_eq!(r.cpu_limit_millis, Some(1500));
    assert_eq!(r.cpu_request_millis, Some(100));
    assert_eq!(resource_value(&c, "limits.cpu", None).as_deref(), Ok("2"));
    assert_eq!(
        resource_value(&c, "limits.cpu", Some("1m")).as_deref(),
        Ok("1500")
    );
    assert_eq!(
        resource_value(&c, "limits.memory", Some("1Mi")).as_deref(),
        Ok("1024")
    );
    assert_eq!(
        resource_value(&c, "requests.memory", Some("1Gi")).as_deref(),
        Ok("1")
    );
    assert_eq!(bytes("junk"), None);
    assert_eq!(millis("-1"), None);
}

#[test]
fn a_claim_volume_is_its_resolved_directory_and_read_only_and_subpath_are_honoured() {
    let p = pod(r#"
metadata: {name: p, namespace: ns}
spec:
  containers:
  - name: c
    image: x
    volumeMounts:
    - {name: data, mountPath: /data, subPath: app}
    - {name: ro, mountPath: /ro}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: data-0}}
  - {name: ro, persistentVolumeClaim: {claimName: shared, readOnly: true}}
"#);
    let claims: crate::storage::ClaimPaths = [
        ("data-0".to_string(), std::path::PathBuf::from("/v/pvc-1")),
        ("shared".to_string(), std::path::PathBuf::from("/v/pvc-2")),
    ]
    .into();
    let vols = volumes(&p, &Refs::default(), &claims, ADDRS).expect("volumes");
    match &vols[0].source {
        VolumeSource::HostPath { path } => assert_eq!(path, std::path::Path::new("/v/pvc-1")),
        other => panic!("unexpected {other:?}"),
    }
    let err = volumes(&p, &Refs::default(), &Default::default(), ADDRS).expect_err("unresolved");
    assert!(err.contains("data-0"), "{err}");

    let c = &p.spec.as_ref().unwrap().containers[0];
    let spec = super::container_spec(&p, c, &Refs::default(), ADDRS).expect("spec");
    assert_eq!(spec.mounts[0].sub_path.as_deref(), Some("app"));
    assert!(!spec.mounts[0].read_only);
    assert!(
        spec.mounts[1].read_only,
        "a readOnly claim mounts read-only"
    );

    for (sub, want) in [
        ("/etc", "error SubPath `/etc` must not be an absolute path"),
        (
            "a/../..",
            "unable to provision SubPath `a/../..`: must not contain '..'",
        ),
    ] {
        let mut bad = c.clone();
        bad.volume_mounts.as_mut().unwrap()[0].sub_path = Some(sub.into());
        let err = super::container_spec(&p, &bad, &Refs::default(), ADDRS).expect_err(sub);
        assert_eq!(err, want);
    }
}

/// The volume the ServiceAccount admission plugin adds to every pod.
const KUBE_API_ACCESS: &str = r#"
metadata: {name: p, namespace: team-a, uid: u-1}
spec:
  serviceAccountName: builder
  containers:
  - name: c
    image: x
    volumeMounts: [{name: kube-api-access-x7k2p, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}]
  volumes:
  - name: kube-api-access-x7k2p
    projected:
      defaultMode: 420
      sources:
      - serviceAccountToken: {expirationSeconds: 3607, path: token}
      - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
      - downwardAPI: {items: [{path: namespace, fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}]}
  - name: vault
    projected:
      sources:
      - serviceAccountToken: {audience: vault, path: vault-token}
"#;

#[test]
fn projected_token_sources_hold_the_issued_tokens_beside_the_other_sources() {
    use super::refs::{TokenData, TokenSource, service_account, token_sources};
    let p = pod(KUBE_API_ACCESS);
    assert_eq!(service_account(&p), "builder");
    let sources = token_sources(&p);
    let default_audience = TokenSource {
        audience: String::new(),
        expiration_seconds: 3607,
    };
    let vault = TokenSource {
        audience: "vault".into(),
        expiration_seconds: 3600,
    };
    assert_eq!(
        sources,
        [
            (
                "kube-api-access-x7k2p".to_string(),
                default_audience.clone()
            ),
            ("vault".to_string(), vault.clone()),
        ],
        "an unset expiration is kubelet's hour; an unset audience is the server's"
    );

    let mut refs = Refs::default();
    let cm: ConfigMap = serde_yaml::from_str(
        "metadata: {name: kube-root-ca.crt}\ndata: {ca.crt: \"-----BEGIN CERTIFICATE-----\"}",
    )
    .expect("cm");
    refs.config_maps.insert("kube-root-ca.crt".into(), Some(cm));
    refs.tokens
        .insert(default_audience, TokenData("header.claims.sig".into()));
    refs.tokens
        .insert(vault, TokenData("vault.claims.sig".into()));
    let vols = volumes(&p, &refs, &Default::default(), ADDRS).expect("volumes");
    let VolumeSource::Files { files, sensitive } = &vols[0].source else {
        panic!("a file set: {:?}", vols[0].source);
    };
    assert!(*sensitive, "a token is kept off disk like a secret");
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["ca.crt", "namespace", "token"]);
    assert_eq!(&files["token"].data[..], b"header.claims.sig");
    assert_eq!(files["token"].mode, Some(0o644));
    assert_eq!(&files["namespace"].data[..], b"team-a");
    assert_eq!(&files["ca.crt"].data[..], b"-----BEGIN CERTIFICATE-----");
    let VolumeSource::Files { files, .. } = &vols[1].source else {
        panic!("a file set");
    };
    assert_eq!(&files["vault-token"].data[..], b"vault.claims.sig");
    assert_eq!(files["vault-token"].mode, None, "the runtime's 0644");

    // A token that was never fetched is an error, never a missing file.
    refs.tokens.clear();
    let err = volumes(&p, &refs, &Default::default(), ADDRS).expect_err("no token");
    assert!(
        err.contains("volume kube-api-access-x7k2p: failed to fetch token"),
        "{err}"
    );
}

#[test]
fn projected_volumes_without_secrets_or_tokens_stay_ordinary_and_trust_bundles_are_refused() {
    let p = pod(r#"
metadata: {name: p, namespace: ns}
spec:
  containers: [{name: c, image: x}]
  volumes:
  - name: info
    projected:
      sources:
      - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
"#);
    let vols = volumes(&p, &Refs::default(), &Default::default(), ADDRS).expect("volumes");
    assert!(matches!(
        vols[0].source,
        VolumeSource::Files {
            sensitive: false,
            ..
        }
    ));
    let p = pod(r#"
metadata: {name: p, namespace: ns}
spec:
  containers: [{name: c, image: x}]
  volumes:
  - name: ca
    projected:
      sources:
      - clusterTrustBundle: {signerName: example.com/ca, path: ca.pem}
"#);
    let err = volumes(&p, &Refs::default(), &Default::default(), ADDRS).expect_err("refused");
    assert!(
        err.contains("clusterTrustBundle projections are not supported"),
        "{err}"
    );
}
