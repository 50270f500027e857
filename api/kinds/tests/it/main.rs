//! Real-client tests: `kubectl apply` against a small loopback server that serves this crate's
//! discovery and OpenAPI documents and runs its decoding, defaulting and validation on writes.
//! Skipped (with a message) when `kubectl` is not installed, and failed instead under
//! `SKIFF_REQUIRE_TOOLS` (see skiff-tools).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use skiff_kinds::validate::{self, FieldValidation};
use skiff_kinds::{defaults, discovery, openapi};

#[derive(Default)]
struct State {
    objects: HashMap<String, Value>,
    requests: Vec<(String, String, String, String)>,
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(Request {
        method,
        path: path.trim_end_matches('/').to_string(),
        query,
        headers,
        body,
    })
}

fn respond(stream: &mut TcpStream, code: u16, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn status(code: u16, reason: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code}),
    )
    .unwrap_or_default()
}

/// Splits `/apis/apps/v1/namespaces/default/deployments/web` into its kind, namespace and name.
fn resource(path: &str) -> Option<(&'static skiff_kinds::Kind, Option<String>, Option<String>)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let kind = skiff_kinds::find(group, version, rest.first()?)?;
    Some((kind, ns, rest.get(1).map(|s| s.to_string())))
}

fn handle(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let Some(req) = read_request(&mut stream) else {
        return;
    };
    let ct = req.headers.get("content-type").cloned().unwrap_or_default();
    if let Ok(mut s) = state.lock() {
        s.requests.push((
            req.method.clone(),
            format!("{}?{}", req.path, req.query),
            ct.clone(),
            String::from_utf8_lossy(&req.body).into_owned(),
        ));
    }
    let accept = req.headers.get("accept").cloned().unwrap_or_default();
    let json_ct = "application/json";
    let send = |stream: &mut TcpStream, v: &Value| {
        respond(
            stream,
            200,
            json_ct,
            &serde_json::to_vec(v).unwrap_or_default(),
        )
    };
    let path = req.path.as_str();
    if req.method == "GET" {
        let aggregated = accept
            .starts_with("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
        let doc = match path {
            "/version" => Some(json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0"})),
            "/api" if aggregated => {
                let body =
                    serde_json::to_vec(&discovery::aggregated(true, "v2")).unwrap_or_default();
                return respond(
                    &mut stream,
                    200,
                    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                    &body,
                );
            }
            "/apis" if aggregated => {
                let body =
                    serde_json::to_vec(&discovery::aggregated(false, "v2")).unwrap_or_default();
                return respond(
                    &mut stream,
                    200,
                    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                    &body,
                );
            }
            "/api" => Some(discovery::api_versions()),
            "/apis" => Some(discovery::api_group_list()),
            "/api/v1" => discovery::api_resource_list("", "v1"),
            "/openapi/v3" => Some(openapi::v3_index()),
            p if p.starts_with("/openapi/v3/") => {
                return match openapi::v3_document_json(&p["/openapi/v3/".len()..]) {
                    Some(bytes) => respond(&mut stream, 200, json_ct, bytes),
                    None => respond(
                        &mut stream,
                        404,
                        json_ct,
                        &status(404, "NotFound", "no such document"),
                    ),
                };
            }
            p => {
                let segs: Vec<&str> = p.trim_start_matches('/').split('/').collect();
                match segs.as_slice() {
                    ["apis", g] => discovery::api_group(g),
                    ["apis", g, v] => discovery::api_resource_list(g, v),
                    _ => match resource(p) {
                        Some((kind, _, None)) => {
                            let items: Vec<Value> = state
                                .lock()
                                .map(|s| {
                                    let prefix = format!("{p}/");
                                    s.objects
                                        .iter()
                                        .filter(|(k, _)| k.starts_with(&prefix))
                                        .map(|(_, v)| v.clone())
                                        .collect()
                                })
                                .unwrap_or_default();
                            if accept.contains("as=Table") {
                                let now = "2026-01-01T00:05:00Z".parse().expect("timestamp");
                                Some(skiff_kinds::table::table(kind, &items, "Metadata", now))
                            } else {
                                Some(
                                    json!({"apiVersion": kind.api_version(), "kind": kind.list_kind(),
                                    "metadata": {"resourceVersion": "1"}, "items": items}),
                                )
                            }
                        }
                        _ => state.lock().ok().and_then(|s| s.objects.get(p).cloned()),
                    },
                }
            }
        };
        return match doc {
            Some(d) => send(&mut stream, &d),
            None => respond(
                &mut stream,
                404,
                json_ct,
                &status(404, "NotFound", "not found"),
            ),
        };
    }
    let Some((kind, ns, name)) = resource(path) else {
        return respond(
            &mut stream,
            404,
            json_ct,
            &status(404, "NotFound", "no route"),
        );
    };
    let strict = if req.query.contains("fieldValidation=Strict") {
        FieldValidation::Strict
    } else {
        FieldValidation::Warn
    };
    let result = match (req.method.as_str(), name) {
        ("POST", None) => (|| {
            let (mut obj, _warnings) = validate::decode_bytes(kind, &req.body, strict)?;
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                if let Some(ns) = &ns {
                    m.insert("namespace".into(), json!(ns));
                }
                m.insert("uid".into(), json!(format!("uid-{name}")));
                m.insert("resourceVersion".into(), json!("1"));
                m.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
            }
            defaults::apply(kind, &mut obj);
            validate::validate(kind, &obj, None)?;
            Ok::<_, validate::Error>((201, format!("{path}/{name}"), obj))
        })(),
        ("PATCH", Some(_)) => (|| {
            let old = state
                .lock()
                .ok()
                .and_then(|s| s.objects.get(path).cloned())
                .ok_or_else(|| validate::Error::BadRequest("not found".into()))?;
            let patch: Value = serde_json::from_slice(&req.body)
                .map_err(|e| validate::Error::BadRequest(e.to_string()))?;
            let mut new = if ct.starts_with("application/strategic-merge-patch+json") {
                skiff_patch::strategic_merge_patch(&old, &patch, kind.openapi_type)
                    .map_err(|e| validate::Error::BadRequest(e.to_string()))?
            } else {
                skiff_patch::merge_patch(&old, &patch)
                    .map_err(|e| validate::Error::BadRequest(e.to_string()))?
            };
            validate::decode(kind, &new, strict)?;
            defaults::apply_update(kind, &mut new, &old);
            validate::validate(kind, &new, Some(&old))?;
            Ok((200, path.to_string(), new))
        })(),
        _ => {
            return respond(
                &mut stream,
                405,
                json_ct,
                &status(405, "MethodNotAllowed", "not allowed"),
            );
        }
    };
    match result {
        Ok((code, key, obj)) => {
            if let Ok(mut s) = state.lock() {
                s.objects.insert(key, obj.clone());
            }
            respond(
                &mut stream,
                code,
                json_ct,
                &serde_json::to_vec(&obj).unwrap_or_default(),
            );
        }
        Err(validate::Error::BadRequest(m)) => {
            respond(&mut stream, 400, json_ct, &status(400, "BadRequest", &m))
        }
        Err(validate::Error::Invalid(causes)) => {
            let msg = validate::invalid_message(kind, "", &causes);
            respond(&mut stream, 422, json_ct, &status(422, "Invalid", &msg));
        }
    }
}

fn serve() -> (String, Arc<Mutex<State>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(Mutex::new(State::default()));
    let st = state.clone();
    // The server thread ends with the test process; every connection is handled on its own thread.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let st = st.clone();
            std::thread::spawn(move || handle(stream, st));
        }
    });
    (format!("http://{addr}"), state)
}

/// The kubectl to run (tests/.venv's, or `$KUBECTL`), through the one tool policy.
fn kubectl_bin() -> std::path::PathBuf {
    skiff_tools::kubectl().expect("checked by kubectl_available")
}

/// Whether kubectl is there; prints SKIPPED, or fails under `SKIFF_REQUIRE_TOOLS`, if not.
fn kubectl_available() -> bool {
    skiff_tools::kubectl().is_some()
}

fn kubectl(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .output()
        .expect("kubectl runs")
}

/// A fresh directory with a kubeconfig pointing at `url`.
fn client_dir(url: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("skiff-kinds-it-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("kubeconfig"), format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {{server: \"{url}\"}}\n  name: c\ncontexts:\n- context: {{cluster: c, user: u, namespace: default}}\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: t}}\n"
    )).expect("kubeconfig");
    dir
}

#[test]
fn objects_kubectl_generates_pass_decoding_defaults_and_validation() {
    if !kubectl_available() {
        return;
    }
    let (url, state) = serve();
    let dir = client_dir(&url, "create");
    let commands: &[&[&str]] = &[
        &["create", "namespace", "team"],
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ],
        &[
            "run",
            "pod1",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sleep",
            "10",
        ],
        &["create", "configmap", "cfg", "--from-literal=a=1"],
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=password=x",
        ],
        &[
            "create",
            "secret",
            "tls",
            "t",
            "--cert=/dev/null",
            "--key=/dev/null",
        ],
        &["create", "serviceaccount", "robot"],
        &["create", "service", "clusterip", "svc1", "--tcp=80:8080"],
        &["create", "service", "nodeport", "svc2", "--tcp=80:8080"],
        &[
            "create",
            "service",
            "externalname",
            "svc3",
            "--external-name=example.com",
        ],
        &["create", "job", "j1", "--image=busybox", "--", "echo", "hi"],
        &[
            "create",
            "cronjob",
            "cj1",
            "--image=busybox",
            "--schedule=*/5 * * * *",
            "--",
            "echo",
            "hi",
        ],
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ],
        &[
            "create",
            "clusterrole",
            "creader",
            "--verb=get",
            "--resource=nodes",
        ],
        &[
            "create",
            "rolebinding",
            "rb",
            "--role=reader",
            "--user=alice",
            "--serviceaccount=default:robot",
        ],
        &[
            "create",
            "clusterrolebinding",
            "crb",
            "--clusterrole=creader",
            "--group=devs",
        ],
        &["create", "quota", "q", "--hard=pods=10,cpu=4"],
        &[
            "create",
            "poddisruptionbudget",
            "pdb",
            "--selector=app=web",
            "--min-available=1",
        ],
        &["create", "ingress", "ing", "--rule=a.example.com/=web:80"],
        &["create", "priorityclass", "unused", "--value=1"],
    ];
    // kubectl sends built-in kinds it creates itself as protobuf; have it print the object instead
    // and create that from a file, which goes over JSON with fieldValidation=Strict.
    for (i, args) in commands.iter().enumerate() {
        let mut generate: Vec<&str> = args.to_vec();
        let split = generate
            .iter()
            .position(|a| *a == "--")
            .unwrap_or(generate.len());
        generate.splice(split..split, ["--dry-run=client", "-o", "json"]);
        let out = kubectl(&dir, &generate);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if args[1] == "priorityclass" || args.get(2) == Some(&"tls") {
            // Not a kind Skiff serves / an empty certificate: kubectl refuses before any write.
            continue;
        }
        assert!(
            out.status.success(),
            "{args:?} failed to generate: {stderr}"
        );
        let file = dir.join(format!("obj-{i}.json"));
        std::fs::write(&file, &out.stdout).expect("object file");
        let out = kubectl(&dir, &["create", "-f", file.to_str().expect("utf-8 path")]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?} failed: {stderr}");
        assert!(!stderr.contains("Warning"), "{args:?} warned: {stderr}");
    }
    let s = state.lock().expect("state");
    let posts: Vec<_> = s.requests.iter().filter(|r| r.0 == "POST").collect();
    assert_eq!(posts.len(), commands.len() - 2);
    for (_, path, ct, _) in posts {
        assert_eq!(ct, "application/json", "{path}");
        assert!(path.contains("fieldValidation=Strict"), "{path}");
    }
    assert_eq!(
        s.objects["/apis/batch/v1/namespaces/default/jobs/j1"]["spec"]["backoffLimit"],
        6
    );
    assert_eq!(
        s.objects["/api/v1/namespaces/default/services/svc1"]["spec"]["sessionAffinity"],
        "None"
    );
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kubectl_apply_uses_openapi_for_strategic_merge_patches() {
    if !kubectl_available() {
        return;
    }
    let (url, state) = serve();
    let dir = client_dir(&url, "apply");
    let manifest = |image: &str, env: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: app\n        image: {image}\n        ports: [{{containerPort: 80}}]\n        env: [{{name: A, value: \"{env}\"}}]\n      - name: side\n        image: busybox\n"
        )
    };
    let file = dir.join("deploy.yaml");
    std::fs::write(&file, manifest("nginx:1.27", "1")).expect("manifest");
    let out = kubectl(&dir, &["apply", "-f", file.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "first apply failed: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/web created"
    );

    std::fs::write(&file, manifest("nginx:1.28", "2")).expect("manifest");
    let out = kubectl(&dir, &["apply", "-f", file.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "second apply failed: {stderr}");
    assert!(!stderr.contains("warning"), "kubectl warned: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/web configured"
    );

    let s = state.lock().expect("state");
    let (_, path, ct, body) = s
        .requests
        .iter()
        .find(|r| r.0 == "PATCH")
        .cloned()
        .expect("a PATCH was sent");
    assert!(path.contains("fieldValidation=Strict"), "{path}");
    assert_eq!(ct, "application/strategic-merge-patch+json");
    let mut patch: Value = serde_json::from_str(&body).expect("patch json");
    if let Some(m) = patch.get_mut("metadata") {
        *m = json!({});
    }
    assert_eq!(
        patch["spec"],
        json!({"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
            "containers": [{"$setElementOrder/env": [{"name": "A"}], "env": [{"name": "A", "value": "2"}], "image": "nginx:1.28", "name": "app"}]
        }}})
    );
    let stored = &s.objects["/apis/apps/v1/namespaces/default/deployments/web"];
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][1]["image"],
        "busybox"
    );
    assert_eq!(
        stored["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    drop(s);

    let out = kubectl(&dir, &["get", "deployments", "-o", "wide"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<String>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.split("   ")
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            vec![
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ],
            vec![
                "web",
                "0/1",
                "0",
                "0",
                "5m",
                "app,side",
                "nginx:1.28,busybox",
                "app=web"
            ],
        ]
    );

    // Strict field validation reaches the server and its error comes back to the user.
    std::fs::write(
        &file,
        manifest("nginx:1.28", "2").replace("  selector:", "  bogus: 1\n  selector:"),
    )
    .expect("manifest");
    let out = kubectl(&dir, &["apply", "-f", file.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.contains("unknown field \"spec.bogus\""), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
