//! Tests of `skiff.toml` parsing: the issue's example, and errors naming file, line and field.

use std::path::Path;

use super::parse;
use crate::model::{ConfigValue, Route, Source};

const ISSUE_EXAMPLE: &str = r#"[app]
name = "shop"

[[component]]
name = "frontend"
source = "frontend.wasm"
route = "/"
env = { GREETING = "hi" }

[[component]]
name = "backend"
source = "backend.wasm"
replicas = 2
"#;

fn err(text: &str) -> String {
    parse(text, Path::new("skiff.toml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn the_issue_example_parses() {
    let app = parse(ISSUE_EXAMPLE, Path::new("skiff.toml")).unwrap();
    assert_eq!(app.name(), "shop");
    assert_eq!(app.namespace_name(), "shop");
    assert_eq!(app.version_name(), "latest");
    let [f, b] = &app.components[..] else {
        panic!("two components: {app:?}")
    };
    assert_eq!(f.source, Source::File("frontend.wasm".into()));
    assert_eq!(f.route, Some(Route::Path("/".into())));
    assert_eq!(f.env["GREETING"], "hi");
    assert_eq!(b.replicas, Some(2));
    assert_eq!(b.route, None);
}

#[test]
fn every_field_parses() {
    let text = r#"
[app]
name = "shop"
namespace = "team-a"
version = "1.2.0"
keyvalue_size = "2Gi"

[[component]]
name = "frontend"
source = "registry.example/shop/frontend:1.2.0"
route = { host = "shop.localhost", path = "/app" }
scale_to_zero = { idle = "5m" }
allowed_outbound = ["backend", "10.0.0.0/8"]
[component.build]
command = "make"
watch = ["src/*.c"]
[component.config]
greeting = "hello"
password = { secret = "db", key = "password" }
theme = { config_map = "site", key = "theme" }
[component.resources]
requests = { cpu = "100m", memory = "32Mi" }
limits = { memory = "64Mi" }

[[component]]
name = "backend"
source = "backend.wasm"
keyvalue = true
capabilities = ["wasi:config"]
resources = { requests = { cpu = "50m" } }
autoscale = { min = 1, max = 4, cpu = 70 }
"#;
    let app = parse(text, Path::new("skiff.toml")).unwrap();
    let f = &app.components[0];
    assert!(matches!(f.source, Source::Image(_)));
    assert_eq!(f.route.as_ref().unwrap().host(), Some("shop.localhost"));
    assert_eq!(f.route.as_ref().unwrap().path(), "/app");
    assert_eq!(f.scale_to_zero.as_ref().unwrap().idle(), Some("5m"));
    assert_eq!(
        f.config["password"],
        ConfigValue::Secret {
            secret: "db".into(),
            key: "password".into()
        }
    );
    assert_eq!(f.declared_capabilities(), ["wasi:config"]);
    let b = &app.components[1];
    assert_eq!(b.declared_capabilities(), ["wasi:keyvalue", "wasi:config"]);
    assert_eq!(b.autoscale.as_ref().unwrap().max, 4);
}

#[test]
fn a_wrong_type_names_file_line_component_and_field() {
    let text = ISSUE_EXAMPLE.replace("replicas = 2", "replicas = \"two\"");
    assert_eq!(
        err(&text),
        "skiff.toml:13: component \"backend\": replicas: invalid type: string \"two\", expected an integer"
    );
}

#[test]
fn an_unknown_field_is_refused_with_its_line() {
    let text = ISSUE_EXAMPLE.replace("route = \"/\"", "rout = \"/\"");
    let e = err(&text);
    assert!(
        e.starts_with("skiff.toml:7: component \"frontend\": rout: unknown field `rout`"),
        "{e}"
    );
    let e = err("[app]\nname = \"x\"\ncolour = 1\n");
    assert!(
        e.starts_with("skiff.toml:3: app: colour: unknown field"),
        "{e}"
    );
}

#[test]
fn a_missing_field_names_its_table() {
    let e = err("[app]\nname = \"shop\"\n\n[[component]]\nname = \"web\"\nroute = \"/\"\n");
    assert!(e.contains("missing field `source`"), "{e}");
    assert!(e.starts_with("skiff.toml:"), "{e}");
}

#[test]
fn a_syntax_error_has_its_line() {
    let e = err("[app]\nname = \"shop\n");
    assert!(e.starts_with("skiff.toml:2"), "{e}");
}

#[test]
fn rule_violations_name_line_and_field() {
    let text = ISSUE_EXAMPLE.replace("route = \"/\"", "route = \"api\"");
    assert_eq!(
        err(&text),
        "skiff.toml:7: component \"frontend\": route: the path \"api\" must start with '/'"
    );
    let text = ISSUE_EXAMPLE.replace("name = \"backend\"", "name = \"frontend\"");
    assert_eq!(
        err(&text),
        "skiff.toml:11: component \"frontend\": name: a component named \"frontend\" is already declared"
    );
    let text = ISSUE_EXAMPLE.replace("replicas = 2", "replicas = 2\nscale_to_zero = true");
    assert!(
        err(&text).starts_with("skiff.toml:14: component \"backend\": scale_to_zero: give either"),
        "{}",
        err(&text)
    );
    let text = ISSUE_EXAMPLE.replace("name = \"shop\"", "name = \"Shop\"");
    assert!(err(&text).starts_with("skiff.toml:2: app: name: \"Shop\" is not a valid name"));
    let text = ISSUE_EXAMPLE.replace("replicas = 2", "allowed_outbound = [\"payments\"]");
    assert!(
        err(&text).starts_with("skiff.toml:13: component \"backend\": allowed_outbound:"),
        "{}",
        err(&text)
    );
    let text = ISSUE_EXAMPLE.replace(
        "replicas = 2",
        "[component.config]\ngreeting = { secret = \"Bad_Name\", key = \"k\" }",
    );
    assert!(
        err(&text).starts_with("skiff.toml:14: component \"backend\": config.greeting:"),
        "{}",
        err(&text)
    );
}

#[test]
fn sources_are_files_or_references() {
    let e = err(&ISSUE_EXAMPLE.replace("\"backend.wasm\"", "\"backend\""));
    assert!(
        e.starts_with("skiff.toml:12: component \"backend\": source: \"backend\" is neither"),
        "{e}"
    );
}
