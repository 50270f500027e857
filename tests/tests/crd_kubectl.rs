//! Custom resources through kubectl 1.37, 1.32 and 1.27 (which reads `/openapi/v2`) against a
//! real `skiff server`: a CustomResourceDefinition with two served versions, a structural
//! schema (defaults, enum, minimum, pattern, required), status and scale subresources, printer
//! columns, a short name and the `all` category; the everyday verbs on its objects, defaults on
//! create and on read, pruning, 422s naming the schema path, server-side apply, selectors, a
//! watch, clear refusals of what is not supported, and the CRD's deletion removing its objects.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use skiff_tests::{Server, ok, tools, wait_for};

/// The CRD; `COLOR_DEFAULT` is replaced by a `default:` line or by nothing.
const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    listKind: WidgetList
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: &schema
        type: object
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size:
                type: string
                description: How big the widget is.
                enum: [small, medium, large]
              color:
                type: string
                description: The widget's color.
COLOR_DEFAULT
              replicas:
                type: integer
                minimum: 0
                default: 1
              code:
                type: string
                pattern: '^[a-z]+-[0-9]+$'
          status:
            type: object
            properties:
              replicas:
                type: integer
              selector:
                type: string
    subresources: &subresources
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns: &columns
    - name: Size
      type: string
      jsonPath: .spec.size
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Code
      type: string
      jsonPath: .spec.code
      priority: 1
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema: *schema
    subresources: *subresources
    additionalPrinterColumns: *columns
"#;

/// The CRD, with or without the default of `.spec.color`.
fn crd(with_default: bool) -> String {
    let line = if with_default {
        "                default: blue"
    } else {
        ""
    };
    // YAML anchors are resolved here: kubectl would send them as they are, and so the
    // manifest stays one readable block.
    let value: serde_yaml::Value =
        serde_yaml::from_str(&CRD.replace("COLOR_DEFAULT\n", &format!("{line}\n")))
            .expect("the CRD is YAML");
    serde_json::to_string(&value).expect("the CRD as JSON")
}

/// A Widget `name` of version `version` with `spec` (a YAML flow map's entries).
fn widget(version: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: example.com/{version}\nkind: Widget\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec: {{{spec}}}\n"
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The words of the header line and of the line starting with `name` in a table.
fn table_row(out: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let header = words(out.lines().next().unwrap_or_default());
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(words)
        .unwrap_or_else(|| panic!("no row {name} in:\n{out}"));
    (header, row)
}

async fn scenario(kubectl: &Path) {
    let server = Server::start().expect("server starts");
    let try_k = |args: &[&str]| server.kubectl(kubectl, args).expect("kubectl runs");
    let k = |args: &[&str]| ok(&try_k(args));
    let try_k_in = |args: &[&str], input: &str| {
        server
            .kubectl_stdin(kubectl, args, Some(input))
            .expect("kubectl runs")
    };
    let k_in = |args: &[&str], input: &str| ok(&try_k_in(args, input));
    let get =
        |name: &str, path: &str| k(&["get", "widget", name, "-o", &format!("jsonpath={{{path}}}")]);

    // The CRD without the color default, established.
    let out = k_in(&["apply", "-f", "-"], &crd(false));
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"),
        "{out}"
    );
    let out = k(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/widgets.example.com",
    ]);
    assert!(out.contains("condition met"), "{out}");
    let names_accepted = k(&[
        "get",
        "crd",
        "widgets.example.com",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="NamesAccepted")].status}"#,
    ]);
    assert_eq!(names_accepted, "True");
    let out = k(&["api-resources", "--api-group=example.com"]);
    let (header, row) = table_row(&out, "widgets");
    assert_eq!(
        header,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
        "{out}"
    );
    assert_eq!(row, ["widgets", "wd", "example.com/v1", "true", "Widget"]);

    // An object stored before the default existed.
    let out = k_in(&["apply", "-f", "-"], &widget("v1", "old", "size: small"));
    assert!(out.contains("widget.example.com/old created"), "{out}");
    assert_eq!(get("old", ".spec.color"), "");
    assert_eq!(get("old", ".spec.replicas"), "1", "defaulted on create");

    // With the default, it appears on reading the old object and on creating a new one.
    let out = k_in(&["apply", "-f", "-"], &crd(true));
    assert!(out.contains("configured"), "{out}");
    wait_for(
        "the old widget to read with the new default",
        Duration::from_secs(20),
        || async { (get("old", ".spec.color") == "blue").then_some(()) },
    )
    .await
    .expect("the default is applied on read");
    let out = k_in(
        &["apply", "-f", "-"],
        &widget("v1", "w1", "size: small, code: abc-1"),
    );
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    assert_eq!(get("w1", ".spec.color"), "blue");
    let stored = k(&["get", "widget", "w1", "-o", "json"]);
    let stored: serde_json::Value = serde_json::from_str(&stored).expect("JSON");
    assert_eq!(stored["spec"]["color"], "blue", "{stored}");
    assert_eq!(stored["apiVersion"], "example.com/v1", "{stored}");
    assert!(
        stored["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36),
        "{stored}"
    );

    // The other served version: created as v1beta1, read as either.
    let out = k_in(
        &["apply", "-f", "-"],
        &widget("v1beta1", "beta", "size: medium"),
    );
    assert!(out.contains("widget.example.com/beta created"), "{out}");
    assert_eq!(
        k(&[
            "get",
            "widgets.v1.example.com",
            "beta",
            "-o",
            "jsonpath={.apiVersion}"
        ]),
        "example.com/v1"
    );
    assert_eq!(
        k(&[
            "get",
            "widgets.v1beta1.example.com",
            "w1",
            "-o",
            "jsonpath={.apiVersion} {.spec.color}"
        ]),
        "example.com/v1beta1 blue"
    );

    // Printer columns, exactly; the priority-1 column only in wide; the short name.
    let out = k(&["get", "widgets"]);
    let (header, row) = table_row(&out, "w1");
    assert_eq!(
        header,
        ["NAME", "SIZE", "COLOR", "REPLICAS", "AGE"],
        "{out}"
    );
    assert_eq!(&row[..4], ["w1", "small", "blue", "1"], "{out}");
    let (_, row) = table_row(&out, "beta");
    assert_eq!(&row[..4], ["beta", "medium", "blue", "1"], "{out}");
    let out = k(&["get", "wd", "-o", "wide"]);
    let (header, row) = table_row(&out, "w1");
    assert_eq!(
        header,
        ["NAME", "SIZE", "COLOR", "REPLICAS", "CODE", "AGE"],
        "{out}"
    );
    assert_eq!(&row[..5], ["w1", "small", "blue", "1", "abc-1"], "{out}");
    let out = k(&["get", "widgets", "-A"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("default") && l.contains("w1")),
        "{out}"
    );

    // The `all` category.
    let out = k(&["get", "all"]);
    assert!(out.contains("widget.example.com/w1"), "{out}");
    assert!(out.contains("service/kubernetes"), "{out}");

    // describe.
    let out = k(&["describe", "widget", "w1"]);
    for field in [
        "Name:",
        "w1",
        "Namespace:",
        "API Version:  example.com/v1",
        "Kind:         Widget",
        "Spec:",
        "Size:",
        "small",
        "Events:",
    ] {
        assert!(out.contains(field), "{field} missing from describe:\n{out}");
    }

    // Merge patch; a strategic merge patch is refused as Kubernetes refuses it (415).
    let out = k(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":"large"}}"#,
    ]);
    assert!(out.contains("widget.example.com/w1 patched"), "{out}");
    assert_eq!(get("w1", ".spec.size"), "large");
    let out = try_k(&[
        "patch",
        "widget",
        "w1",
        "-p",
        r#"{"spec":{"size":"medium"}}"#,
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    // kubectl words it so when the Status's reason is UnsupportedMediaType.
    assert!(
        text(&out).contains(
            "application/strategic-merge-patch+json is not supported by example.com/v1, \
             Kind=Widget: the body of the request was in an unknown format"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(get("w1", ".spec.size"), "large");
    let out = k(&[
        "patch",
        "widget",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/color","value":"red"}]"#,
    ]);
    assert!(out.contains("patched"), "{out}");
    assert_eq!(get("w1", ".spec.color"), "red");

    // The status subresource: the main resource ignores status, status ignores spec.
    let out = k(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":1,"selector":"app=w1"},"spec":{"size":"small"}}"#,
    ]);
    assert!(out.contains("patched"), "{out}");
    assert_eq!(get("w1", ".status.replicas"), "1");
    assert_eq!(
        get("w1", ".spec.size"),
        "large",
        "status writes keep the spec"
    );
    k(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":9}}"#,
    ]);
    assert_eq!(
        get("w1", ".status.replicas"),
        "1",
        "spec writes keep the status"
    );

    // The scale subresource.
    let out = k(&["scale", "widget/w1", "--replicas=3"]);
    assert!(out.contains("widget.example.com/w1 scaled"), "{out}");
    assert_eq!(get("w1", ".spec.replicas"), "3");
    let scale = k(&["get", "widget", "w1", "--subresource=scale", "-o", "json"]);
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("JSON");
    assert_eq!(scale["kind"], "Scale", "{scale}");
    assert_eq!(scale["apiVersion"], "autoscaling/v1", "{scale}");
    assert_eq!(scale["spec"]["replicas"], 3, "{scale}");
    assert_eq!(scale["status"]["replicas"], 1, "{scale}");
    assert_eq!(scale["status"]["selector"], "app=w1", "{scale}");

    // explain reads the published schema.
    let out = k(&["explain", "widget.spec"]);
    for want in [
        "KIND:",
        "Widget",
        "FIELDS:",
        "size",
        "-required-",
        "color",
        "How big the widget is.",
    ] {
        assert!(out.contains(want), "{want} missing from explain:\n{out}");
    }

    // An unknown field is pruned; strict validation refuses it, naming it.
    let pruned = widget("v1", "pruned", "size: small, extra: surprise");
    let out = k_in(&["create", "--validate=false", "-f", "-"], &pruned);
    assert!(out.contains("widget.example.com/pruned created"), "{out}");
    let stored = k(&["get", "widget", "pruned", "-o", "json"]);
    let stored: serde_json::Value = serde_json::from_str(&stored).expect("JSON");
    assert!(stored["spec"].get("extra").is_none(), "{stored}");
    assert_eq!(stored["spec"]["size"], "small", "{stored}");
    let strict = widget("v1", "strict", "size: small, extra: surprise");
    let out = try_k_in(&["apply", "--validate=strict", "-f", "-"], &strict);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(r#"unknown field "spec.extra""#),
        "{}",
        text(&out)
    );
    let missing = try_k(&["get", "widget", "strict"]);
    assert!(text(&missing).contains("NotFound"), "{}", text(&missing));

    // An invalid object: 422 naming every schema path, in Kubernetes' words.
    let bad = widget("v1", "bad", "size: huge, replicas: -1, code: NOT_A_CODE");
    let out = try_k_in(&["create", "-f", "-"], &bad);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    for want in [
        r#"The Widget "bad" is invalid"#,
        r#"spec.size: Unsupported value: "huge": supported values: "small", "medium", "large""#,
        "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
        r#"spec.code: Invalid value: "NOT_A_CODE": spec.code in body should match '^[a-z]+-[0-9]+$'"#,
    ] {
        assert!(said.contains(want), "{want} missing from:\n{said}");
    }
    let out = try_k_in(&["create", "-f", "-"], &widget("v1", "bad", "color: green"));
    assert!(
        text(&out).contains("spec.size: Required value"),
        "{}",
        text(&out)
    );
    let out = try_k_in(
        &["create", "-f", "-"],
        &widget("v1", "bad", "size: small, replicas: many"),
    );
    assert!(
        text(&out).contains(r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#),
        "{}",
        text(&out)
    );
    let raw = try_k(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets/bad",
    ]);
    assert!(text(&raw).contains("NotFound"), "{}", text(&raw));

    // A watch sees the add, the update and the delete.
    let mut watch = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .arg("--cache-dir")
        .arg(server.dir.join("kube-cache"))
        .args([
            "get",
            "widgets",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl get -w starts");
    let mut stdout = watch.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(seen.clone());
        }
    });
    output_until(&rx, "the watch to list w1", |seen| seen.contains(r#""w1""#));
    k_in(
        &["apply", "-f", "-"],
        &widget("v1", "watched", "size: small"),
    );
    k(&[
        "patch",
        "widget",
        "watched",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":"medium"}}"#,
    ]);
    k(&["delete", "widget", "watched"]);
    let seen = output_until(&rx, "ADDED, MODIFIED and DELETED of watched", |seen| {
        let events = watch_events(seen);
        ["ADDED", "MODIFIED", "DELETED"]
            .iter()
            .all(|t| events.iter().any(|(ty, name)| ty == t && name == "watched"))
    });
    let events: Vec<_> = watch_events(&seen)
        .into_iter()
        .filter(|(_, name)| name == "watched")
        .map(|(ty, _)| ty)
        .collect();
    assert_eq!(events, ["ADDED", "MODIFIED", "DELETED"], "{seen}");
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();

    // Server-side apply: created, merged per field manager, a conflict refused unless forced.
    let out = k_in(
        &["apply", "--server-side", "-f", "-"],
        &widget("v1", "ssa", "size: small, code: ssa-1"),
    );
    assert!(
        out.contains("widget.example.com/ssa serverside-applied"),
        "{out}"
    );
    let out = try_k_in(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        &widget("v1", "ssa", "size: large"),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(r#"conflict with "kubectl": .spec.size"#),
        "{}",
        text(&out)
    );
    k_in(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &widget("v1", "ssa", "size: large"),
    );
    assert_eq!(
        get("ssa", ".spec.size")
            + " "
            + &get("ssa", ".spec.code")
            + " "
            + &get("ssa", ".spec.color"),
        "large ssa-1 blue"
    );

    // Label and field selectors; delete by label.
    let out = k(&["get", "widgets", "-l", "app=ssa", "-o", "name"]);
    assert_eq!(out.trim(), "widget.example.com/ssa");
    let out = k(&[
        "get",
        "widgets",
        "--field-selector",
        "metadata.name=w1",
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "widget.example.com/w1");
    let out = k(&["delete", "widgets", "-l", "app=ssa"]);
    assert!(out.contains(r#"widget.example.com "ssa" deleted"#), "{out}");

    // What this server does not do is refused clearly: conversion webhooks, CEL rules.
    let webhook = crd(true)
        .replace("widgets", "gizmos")
        .replace("\"widget\"", "\"gizmo\"")
        .replace("\"Widget", "\"Gizmo")
        .replace("\"wd\"", "\"gz\"")
        .replace(
            "\"scope\":",
            r#""conversion":{"strategy":"Webhook","webhook":{"conversionReviewVersions":["v1"],"clientConfig":{"url":"https://127.0.0.1:1/convert"}}},"scope":"#,
        );
    let out = try_k_in(&["apply", "-f", "-"], &webhook);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("spec.conversion.strategy: Forbidden"),
        "{}",
        text(&out)
    );
    let cel = crd(true).replace("widgets", "gizmos").replace(
        "\"required\":[\"size\"]",
        r#""required":["size"],"x-kubernetes-validations":[{"rule":"self.replicas >= 0"}]"#,
    );
    let out = try_k_in(&["apply", "-f", "-"], &cel);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("x-kubernetes-validations: Forbidden"),
        "{}",
        text(&out)
    );

    // delete.
    let out = k(&["delete", "widget", "beta"]);
    assert!(
        out.contains(r#"widget.example.com "beta" deleted"#),
        "{out}"
    );
    let out = try_k(&["get", "widget", "beta"]);
    assert!(
        text(&out).contains(r#"widgets.example.com "beta" not found"#),
        "{}",
        text(&out)
    );

    // Deleting the CRD removes its objects: once re-created, it has none.
    let out = k(&["delete", "crd", "widgets.example.com", "--timeout=60s"]);
    assert!(out.contains("deleted"), "{out}");
    let out = try_k(&["get", "widgets"]);
    assert!(!out.status.success(), "{}", text(&out));
    let raw = try_k(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets",
    ]);
    assert!(!raw.status.success(), "{}", text(&raw));
    k_in(&["apply", "-f", "-"], &crd(true));
    k(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/widgets.example.com",
    ]);
    let raw = k(&["get", "--raw", "/apis/example.com/v1/widgets"]);
    let list: serde_json::Value = serde_json::from_str(&raw).expect("JSON");
    assert_eq!(list["kind"], "WidgetList", "{list}");
    assert_eq!(list["items"], serde_json::json!([]), "{list}");
}

/// The (type, name) of each watch event in `kubectl get -w --output-watch-events -o json`
/// output (a stream of pretty-printed JSON objects).
fn watch_events(out: &str) -> Vec<(String, String)> {
    serde_json::Deserializer::from_str(out)
        .into_iter::<serde_json::Value>()
        .map_while(Result::ok)
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Reads what a running command printed so far (each message on `rx` is the whole output)
/// until `done` holds for it, and returns it; fails after 30 s.
fn output_until(rx: &Receiver<String>, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) if done(&s) => return s,
            Ok(s) => seen = s,
            Err(e) => panic!("{e}: no {what}; the output so far:\n{seen}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crd_widgets_kubectl_1_37() {
    let Some(kubectl) = tools::kubectl_137() else {
        return;
    };
    scenario(&kubectl).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crd_widgets_kubectl_1_32() {
    let Some(kubectl) = tools::kubectl_132() else {
        return;
    };
    scenario(&kubectl).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crd_widgets_kubectl_1_27() {
    let Some(kubectl) = tools::kubectl_127() else {
        return;
    };
    scenario(&kubectl).await;
}
