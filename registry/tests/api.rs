//! HTTP-level tests of the registry server and its client: the distribution API, bad input,
//! authentication, and the client's cache.

use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use skiff_registry::{
    ClientOptions, Digest, RegistryClient, RegistryConfig, RegistryHandle, manifest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(dir: &std::path::Path) -> RegistryHandle {
    skiff_registry::start("127.0.0.1:0".parse().unwrap(), RegistryConfig::new(dir))
        .await
        .unwrap()
}

fn basic(token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("me:{token}"))
    )
}

struct Api {
    base: String,
    auth: String,
    http: reqwest::Client,
}

impl Api {
    fn new(h: &RegistryHandle) -> Api {
        Api {
            base: format!("http://{}", h.local_addr()),
            auth: basic(h.token()),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .header("Authorization", &self.auth)
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        d
    }

    async fn put_manifest(&self, repo: &str, reference: &str, body: &str) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Authorization", &self.auth)
            .header("Content-Type", manifest::OCI_MANIFEST)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn error_code(r: reqwest::Response) -> String {
        let v: serde_json::Value = r.json().await.unwrap();
        v["errors"][0]["code"].as_str().unwrap().to_string()
    }

    /// The server still answers an authenticated probe.
    async fn assert_alive(&self) {
        let r = self
            .http
            .get(self.url("/v2/"))
            .header("Authorization", &self.auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

fn image_manifest(config: &Digest, config_size: usize, layers: &[(Digest, usize)]) -> String {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(d, s)| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": s})
        })
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
        "layers": layers,
    })
    .to_string()
}

fn component() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (import "wasi:cli/stdout@0.2.0" (instance $i))
            (export "wasi:cli/run@0.2.0" (instance $i)))"#,
    )
    .unwrap()
}

#[tokio::test]
async fn blobs_uploads_manifests_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let api = Api::new(&h);

    // Chunked upload: POST, two PATCHes, status, PUT.
    let r = api
        .http
        .post(api.url("/v2/demo/app/blobs/uploads/"))
        .header("Authorization", &api.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = api
        .http
        .patch(api.url(&loc))
        .header("Authorization", &api.auth)
        .header("Content-Range", "0-4")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-4");
    // Out of order chunk: 416 with the current range.
    let r = api
        .http
        .patch(api.url(&loc))
        .header("Authorization", &api.auth)
        .header("Content-Range", "0-1")
        .body("xx")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["range"], "0-4");
    let r = api
        .http
        .patch(api.url(&loc))
        .header("Authorization", &api.auth)
        .body(" world")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = api
        .http
        .get(api.url(&loc))
        .header("Authorization", &api.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-10");
    let layer = Digest::sha256_of(b"hello world");
    let r = api
        .http
        .put(api.url(&format!("{loc}?digest={layer}")))
        .header("Authorization", &api.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["docker-content-digest"],
        layer.to_string().as_str()
    );

    // Anonymous GET, HEAD and Range.
    let blob_url = api.url(&format!("/v2/demo/app/blobs/{layer}"));
    let r = api.http.get(&blob_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello world");
    let r = api.http.head(&blob_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "11");
    let r = api
        .http
        .get(&blob_url)
        .header("Range", "bytes=6-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 6-10/11");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"world");
    let r = api
        .http
        .get(&blob_url)
        .header("Range", "bytes=20-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // Cross-repository mount.
    let r = api
        .http
        .post(api.url(&format!(
            "/v2/other/blobs/uploads/?mount={layer}&from=demo/app"
        )))
        .header("Authorization", &api.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Manifest by tag, by digest, HEAD; tags and catalog with pagination.
    let config = api.push_blob("demo/app", b"{}").await;
    let m = image_manifest(&config, 2, &[(layer.clone(), 11)]);
    let md = Digest::sha256_of(m.as_bytes());
    for tag in ["v1", "v2", "v3"] {
        let r = api.put_manifest("demo/app", tag, &m).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(
            r.headers()["docker-content-digest"],
            md.to_string().as_str()
        );
    }
    let r = api
        .http
        .get(api.url("/v2/demo/app/manifests/v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], manifest::OCI_MANIFEST);
    assert_eq!(
        r.headers()["docker-content-digest"],
        md.to_string().as_str()
    );
    assert_eq!(r.text().await.unwrap(), m);
    let r = api
        .http
        .head(api.url(&format!("/v2/demo/app/manifests/{md}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], m.len().to_string().as_str());
    let r = api
        .http
        .get(api.url("/v2/demo/app/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["link"].to_str().unwrap().contains("last=v2"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1", "v2"]));
    let r = api
        .http
        .get(api.url("/v2/demo/app/tags/list?n=2&last=v2"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v3"]));
    let v: serde_json::Value = api
        .http
        .get(api.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["demo/app"]));

    // Referrers.
    let empty = api.push_blob("demo/app", b"{}").await;
    let sig = serde_json::json!({
        "schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST, "artifactType": "application/x-sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
        "layers": [],
        "subject": {"mediaType": manifest::OCI_MANIFEST, "digest": md.to_string(), "size": m.len()},
    })
    .to_string();
    let sd = Digest::sha256_of(sig.as_bytes());
    let r = api.put_manifest("demo/app", &sd.to_string(), &sig).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["oci-subject"], md.to_string().as_str());
    let v: serde_json::Value = api
        .http
        .get(api.url(&format!(
            "/v2/demo/app/referrers/{md}?artifactType=application/x-sig"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["manifests"][0]["digest"], sd.to_string());

    // Delete a tag, then the manifest.
    let r = api
        .http
        .delete(api.url("/v2/demo/app/manifests/v3"))
        .header("Authorization", &api.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = api
        .http
        .delete(api.url(&format!("/v2/demo/app/manifests/{md}")))
        .header("Authorization", &api.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = api
        .http
        .get(api.url("/v2/demo/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(Api::error_code(r).await, "MANIFEST_UNKNOWN");
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let api = Api::new(&h);

    // Bytes that do not match their digest: DIGEST_INVALID, nothing stored.
    let claimed = Digest::sha256_of(b"the real thing");
    let r = api
        .http
        .post(api.url(&format!("/v2/demo/blobs/uploads/?digest={claimed}")))
        .header("Authorization", &api.auth)
        .body("something else")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(Api::error_code(r).await, "DIGEST_INVALID");
    let r = api
        .http
        .head(api.url(&format!("/v2/demo/blobs/{claimed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let actual = Digest::sha256_of(b"something else");
    let r = api
        .http
        .head(api.url(&format!("/v2/demo/blobs/{actual}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    api.assert_alive().await;

    // A manifest naming a missing blob.
    let config = api.push_blob("demo", b"{}").await;
    let missing = Digest::sha256_of(b"never pushed");
    let m = image_manifest(&config, 2, &[(missing, 12)]);
    let r = api.put_manifest("demo", "latest", &m).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(Api::error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    // A manifest that is not JSON, and one whose digest does not match the reference.
    let r = api.put_manifest("demo", "latest", "{not json").await;
    assert_eq!(Api::error_code(r).await, "MANIFEST_INVALID");
    let good = image_manifest(&config, 2, &[]);
    let r = api.put_manifest("demo", &missing_digest(), &good).await;
    assert_eq!(Api::error_code(r).await, "DIGEST_INVALID");
    api.assert_alive().await;

    // Bad repository names, sent raw so that no client library normalises the path.
    for name in ["demo/../etc", "..", "Demo", "UPPER/case", "a//b"] {
        let (status, body) = raw(
            h.local_addr(),
            "POST",
            &format!("/v2/{name}/blobs/uploads/"),
            &api.auth,
        )
        .await;
        assert_eq!(status, 400, "{name}");
        assert!(body.contains("NAME_INVALID"), "{name}: {body}");
        let (status, body) = raw(
            h.local_addr(),
            "GET",
            &format!("/v2/{name}/manifests/latest"),
            &api.auth,
        )
        .await;
        assert_eq!(status, 400, "{name}");
        assert!(body.contains("NAME_INVALID"), "{name}: {body}");
    }
    api.assert_alive().await;

    // A push without a token, and with a wrong one: 401 with a challenge.
    for auth in [None, Some(basic("wrong")), Some("Bearer wrong".to_string())] {
        let mut req = api.http.post(api.url("/v2/demo/blobs/uploads/"));
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic realm=")
        );
        assert_eq!(Api::error_code(r).await, "UNAUTHORIZED");
    }
    // Bearer with the token works.
    let r = api
        .http
        .post(api.url("/v2/demo/blobs/uploads/"))
        .header("Authorization", format!("Bearer {}", h.token()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // A killed upload: the connection drops half-way through the body.
    let data = vec![42u8; 1 << 20];
    let d = Digest::sha256_of(&data);
    let mut sock = tokio::net::TcpStream::connect(h.local_addr())
        .await
        .unwrap();
    let head = format!(
        "POST /v2/demo/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        api.auth,
        data.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&data[..data.len() / 2]).await.unwrap();
    sock.flush().await.unwrap();
    drop(sock);
    // Also a chunked session abandoned after one PATCH.
    let r = api
        .http
        .post(api.url("/v2/demo/blobs/uploads/"))
        .header("Authorization", &api.auth)
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    api.http
        .patch(api.url(&loc))
        .header("Authorization", &api.auth)
        .body(data[..1000].to_vec())
        .send()
        .await
        .unwrap();
    api.assert_alive().await;
    let r = api
        .http
        .head(api.url(&format!("/v2/demo/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let partial = Digest::sha256_of(&data[..1000]);
    let r = api
        .http
        .head(api.url(&format!("/v2/demo/blobs/{partial}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Nothing partial under blobs/: every file there matches its name.
    assert_blobs_match_names(&dir.path().join("blobs"));

    // Anonymous probe gets a challenge; anonymous reads of unknown things get spec errors.
    let r = api.http.get(api.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = api
        .http
        .get(api.url("/v2/nothing/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(Api::error_code(r).await, "NAME_UNKNOWN");
    let r = api
        .http
        .get(api.url("/v2/demo/blobs/sha256:xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(Api::error_code(r).await, "DIGEST_INVALID");
    api.assert_alive().await;

    // Raw garbage on the socket does not take the server down.
    let mut sock = tokio::net::TcpStream::connect(h.local_addr())
        .await
        .unwrap();
    sock.write_all(b"\x00\x01garbage\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf).await;
    api.assert_alive().await;
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Sends one raw HTTP/1.1 request and returns the status and body.
async fn raw(addr: std::net::SocketAddr, method: &str, path: &str, auth: &str) -> (u16, String) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn missing_digest() -> String {
    Digest::sha256_of(b"not this manifest").to_string()
}

fn assert_blobs_match_names(dir: &std::path::Path) {
    for algo in std::fs::read_dir(dir).unwrap() {
        let algo = algo.unwrap();
        for prefix in std::fs::read_dir(algo.path()).unwrap() {
            for blob in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
                let blob = blob.unwrap();
                let name = format!(
                    "{}:{}",
                    algo.file_name().to_string_lossy(),
                    blob.file_name().to_string_lossy()
                );
                let d: Digest = name.parse().unwrap();
                let bytes = std::fs::read(blob.path()).unwrap();
                assert_eq!(d.of_same_kind(&bytes), d, "{name}");
            }
        }
    }
}

#[tokio::test]
async fn pulls_can_require_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RegistryConfig::new(dir.path());
    cfg.require_auth_for_pull = true;
    let h = skiff_registry::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let api = Api::new(&h);
    let d = api.push_blob("demo", b"data").await;
    let url = api.url(&format!("/v2/demo/blobs/{d}"));
    let r = api.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = api
        .http
        .get(&url)
        .header("Authorization", &api.auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The client without a token is refused; with it, it pulls.
    let wasm = component();
    let cache = tempfile::tempdir().unwrap();
    let mut opts = ClientOptions::new(cache.path());
    opts.token = Some(h.token().to_string());
    let client = RegistryClient::new(opts).unwrap();
    let reference = format!("{}/demo/app:1", h.local_addr());
    client.push_wasm(&reference, wasm.into()).await.unwrap();
    let anon = RegistryClient::new(ClientOptions::new(cache.path().join("anon"))).unwrap();
    assert!(anon.pull_wasm(&reference).await.is_err());
    client.pull_wasm(&reference).await.unwrap();
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn client_pushes_wasm_and_pulls_from_cache_offline() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let addr = h.local_addr();
    let wasm = component();
    let cache = tempfile::tempdir().unwrap();

    // Without a token the push is refused.
    let anon = RegistryClient::new(ClientOptions::new(cache.path())).unwrap();
    assert!(
        anon.push_wasm(&format!("{addr}/demo/app:1.0"), wasm.clone().into())
            .await
            .is_err()
    );

    let mut opts = ClientOptions::new(cache.path());
    opts.token = Some(h.token().to_string());
    let client = RegistryClient::new(opts).unwrap();
    let pushed = client
        .push_wasm(&format!("{addr}/demo/app:1.0"), wasm.clone().into())
        .await
        .unwrap();
    // Pushing the same component again gives the same digest.
    let again = client
        .push_wasm(&format!("{addr}/demo/app:1.0"), wasm.clone().into())
        .await
        .unwrap();
    assert_eq!(pushed.manifest_digest, again.manifest_digest);
    // So does pushing it with the same extra annotations, whatever their order in memory.
    let extra = |order: &[usize]| -> std::collections::BTreeMap<String, String> {
        order
            .iter()
            .map(|i| (format!("org.example.key{i}"), format!("value {i}")))
            .collect()
    };
    let mut digests = std::collections::BTreeSet::new();
    for order in [[0, 1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1, 0]] {
        for _ in 0..3 {
            let pushed = client
                .push_wasm_annotated(
                    &format!("{addr}/demo/app:annotated"),
                    wasm.clone().into(),
                    extra(&order),
                )
                .await
                .unwrap();
            digests.insert(pushed.manifest_digest.to_string());
        }
    }
    assert_eq!(digests.len(), 1, "{digests:?}");

    let reader = RegistryClient::new(ClientOptions::new(cache.path())).unwrap();
    let pulled = reader
        .pull_wasm(&format!("{addr}/demo/app:1.0"))
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
    assert_eq!(std::fs::read(&pulled.path).unwrap(), wasm);
    let cfg = pulled.config.unwrap();
    assert_eq!(cfg.os, "wasip2");
    assert_eq!(cfg.component.unwrap().exports, vec!["wasi:cli/run@0.2.0"]);

    // The server goes away; a pull by digest is served from the cache.
    h.shutdown(Duration::from_secs(5)).await.unwrap();
    let by_digest = format!("{addr}/demo/app@{}", pushed.manifest_digest);
    let offline = reader.pull_wasm(&by_digest).await.unwrap();
    assert_eq!(std::fs::read(&offline.path).unwrap(), wasm);
    // A pull by tag needs the registry, which is gone.
    assert!(
        reader
            .pull_wasm(&format!("{addr}/demo/app:1.0"))
            .await
            .is_err()
    );
    // And a digest that was never pulled is not invented.
    let unknown = format!("{addr}/demo/app@{}", Digest::sha256_of(b"x"));
    assert!(reader.pull_wasm(&unknown).await.is_err());
}

#[tokio::test]
async fn gc_keeps_referenced_blobs_and_uploads_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let api = Api::new(&h);
    let cache = tempfile::tempdir().unwrap();
    let mut opts = ClientOptions::new(cache.path());
    opts.token = Some(h.token().to_string());
    let client = RegistryClient::new(opts).unwrap();
    let reference = format!("{}/demo/app:1", h.local_addr());
    client
        .push_wasm(&reference, component().into())
        .await
        .unwrap();
    let orphan = api.push_blob("demo/app", b"orphan").await;
    // An upload in progress.
    let r = api
        .http
        .post(api.url("/v2/demo/app/blobs/uploads/"))
        .header("Authorization", &api.auth)
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    api.http
        .patch(api.url(&loc))
        .header("Authorization", &api.auth)
        .body("part one ")
        .send()
        .await
        .unwrap();

    // Young orphans survive a gc with a grace period; with none, only the orphan goes.
    let report = h.gc(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(report.removed, 0);
    let report = h.gc(Duration::ZERO).await.unwrap();
    assert_eq!(report.removed, 1);
    assert_eq!(report.live, 3);
    let r = api
        .http
        .head(api.url(&format!("/v2/demo/app/blobs/{orphan}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The upload survives gc and completes.
    let d = Digest::sha256_of(b"part one part two");
    let r = api
        .http
        .put(api.url(&format!("{loc}?digest={d}")))
        .header("Authorization", &api.auth)
        .body("part two")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let pulled = RegistryClient::new(ClientOptions::new(cache.path().join("fresh")))
        .unwrap()
        .pull_wasm(&reference)
        .await
        .unwrap();
    assert_eq!(std::fs::read(pulled.path).unwrap(), component());

    // Offline gc refuses while the server holds the directory, and works after.
    assert!(skiff_registry::gc_offline(dir.path(), Duration::ZERO).is_err());
    h.shutdown(Duration::from_secs(5)).await.unwrap();
    let report = skiff_registry::gc_offline(dir.path(), Duration::ZERO).unwrap();
    assert_eq!(report.removed, 1, "the completed upload is unreferenced");
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let mut cfg = RegistryConfig::new(dir.path().join("data"));
    cfg.tls = Some(skiff_registry::TlsFiles { cert, key });
    let h = skiff_registry::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    assert!(h.is_tls());
    let reference = format!("{}/demo/tls:1", h.local_addr());

    // Plain HTTP to a TLS port fails.
    let cache = tempfile::tempdir().unwrap();
    let mut plain = ClientOptions::new(cache.path());
    plain.token = Some(h.token().to_string());
    assert!(
        RegistryClient::new(plain)
            .unwrap()
            .push_wasm(&reference, component().into())
            .await
            .is_err()
    );

    let mut opts = ClientOptions::new(cache.path());
    opts.token = Some(h.token().to_string());
    opts.force_https = true;
    opts.extra_root_certificates = vec![ck.cert.pem().into_bytes()];
    let client = RegistryClient::new(opts).unwrap();
    let pushed = client
        .push_wasm(&reference, component().into())
        .await
        .unwrap();
    let pulled = client.pull_wasm(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
    assert_eq!(std::fs::read(pulled.path).unwrap(), component());
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn client_picks_the_platform_from_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let api = Api::new(&h);
    let host = skiff_registry::Platform::linux_host();
    let mut children = Vec::new();
    for arch in ["s390x", host.architecture.as_str()] {
        let config = api
            .push_blob("multi", format!("{{\"arch\":\"{arch}\"}}").as_bytes())
            .await;
        let config_len = format!("{{\"arch\":\"{arch}\"}}").len();
        let layer_bytes = format!("layer for {arch}");
        let layer = api.push_blob("multi", layer_bytes.as_bytes()).await;
        let m = image_manifest(&config, config_len, &[(layer, layer_bytes.len())]);
        let d = Digest::sha256_of(m.as_bytes());
        let r = api.put_manifest("multi", &d.to_string(), &m).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        children.push(serde_json::json!({
            "mediaType": manifest::OCI_MANIFEST, "digest": d.to_string(), "size": m.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": children})
        .to_string();
    // An index naming a manifest the repository lacks is refused.
    let bad = serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": [
        {"mediaType": manifest::OCI_MANIFEST, "digest": Digest::sha256_of(b"nope").to_string(), "size": 4}
    ]})
    .to_string();
    let r = api
        .http
        .put(api.url("/v2/multi/manifests/bad"))
        .header("Authorization", &api.auth)
        .header("Content-Type", manifest::OCI_INDEX)
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(Api::error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    let r = api
        .http
        .put(api.url("/v2/multi/manifests/latest"))
        .header("Authorization", &api.auth)
        .header("Content-Type", manifest::OCI_INDEX)
        .body(index.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let cache = tempfile::tempdir().unwrap();
    let client = RegistryClient::new(ClientOptions::new(cache.path())).unwrap();
    let image = client
        .pull_image(&format!("{}/multi:latest", h.local_addr()), &host)
        .await
        .unwrap();
    assert_eq!(
        image.index_digest,
        Some(Digest::sha256_of(index.as_bytes()))
    );
    assert_eq!(image.layers.len(), 1);
    let layer = std::fs::read(&image.layers[0].path).unwrap();
    assert_eq!(
        layer,
        format!("layer for {}", host.architecture).into_bytes()
    );
    let missing = skiff_registry::Platform {
        os: "plan9".into(),
        architecture: "mips".into(),
    };
    assert!(
        client
            .pull_image(&format!("{}/multi:latest", h.local_addr()), &missing)
            .await
            .is_err()
    );
    h.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn metrics_count_pushes_pulls_and_bytes_for_the_token_holder() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let api = Api::new(&h);
    let config = api.push_blob("team/app", b"{}").await;
    let layer = vec![7u8; 1000];
    let layer_digest = api.push_blob("team/app", &layer).await;
    let body = image_manifest(&config, 2, &[(layer_digest.clone(), layer.len())]);
    let r = api.put_manifest("team/app", "v1", &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = api
        .http
        .get(api.url("/v2/team/app/manifests/v1"))
        .header("Accept", manifest::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = api
        .http
        .get(api.url(&format!("/v2/team/app/blobs/{layer_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), 1000);

    let anonymous = api.http.get(api.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = api
        .http
        .get(api.url("/metrics"))
        .header("Authorization", basic("not-the-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let r = api
        .http
        .get(api.url("/metrics"))
        .header("Authorization", format!("Bearer {}", h.token()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().await.unwrap();
    use skiff_telemetry::metrics::sample;
    assert_eq!(
        sample(
            &text,
            "registry_http_requests_total",
            &[("handler", "manifest"), ("method", "PUT"), ("code", "201")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "registry_http_requests_total",
            &[("handler", "metrics"), ("code", "401")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "skiff_registry_manifest_pushes_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "skiff_registry_manifest_pulls_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "skiff_registry_blob_bytes_received_total", &[]),
        Some(1002.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "skiff_registry_blob_bytes_sent_total", &[]),
        Some(1000.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "registry_http_request_duration_seconds_count",
            &[("handler", "blob_upload"), ("method", "POST")]
        ),
        Some(2.0),
        "{text}"
    );
}
