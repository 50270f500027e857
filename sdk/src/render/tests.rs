//! Tests of rendering: names, labels, capabilities, config volume, routes, policies.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};

use super::{Kind, render, to_yaml};
use crate::model::{App, Component, ConfigValue, Source};

fn images(app: &App) -> BTreeMap<String, String> {
    app.components
        .iter()
        .map(|c| (c.name.clone(), format!("reg/{}@sha256:00", c.name)))
        .collect()
}

fn shop() -> App {
    App::new("shop")
        .version("1.0")
        .component(
            Component::new("frontend", Source::File("frontend.wasm".into()))
                .route("/")
                .env("GREETING", "hi")
                .config("greeting", ConfigValue::Value("hello".into()))
                .config(
                    "password",
                    ConfigValue::Secret {
                        secret: "db".into(),
                        key: "pw".into(),
                    },
                )
                .allowed_outbound(["backend"]),
        )
        .component(
            Component::new("backend", Source::File("backend.wasm".into()))
                .replicas(2)
                .keyvalue(),
        )
}

#[test]
fn the_objects_are_named_and_labelled() {
    let app = shop();
    let objects = render(&app, &images(&app)).unwrap();
    let names: Vec<(Kind, &str)> = objects.iter().map(|o| (o.kind, o.name.as_str())).collect();
    assert_eq!(
        names,
        [
            (Kind::Namespace, "shop"),
            (Kind::ConfigMap, "shop-frontend-config"),
            (Kind::PersistentVolumeClaim, "shop-keyvalue"),
            (Kind::Deployment, "frontend"),
            (Kind::Service, "frontend"),
            (Kind::Ingress, "frontend"),
            (Kind::NetworkPolicy, "frontend"),
            (Kind::Deployment, "backend"),
            (Kind::Service, "backend"),
        ]
    );
    for o in &objects {
        let labels = &o.value["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/part-of"], "shop", "{o:?}");
        assert_eq!(labels["app.kubernetes.io/name"], "shop");
        assert_eq!(labels["app.kubernetes.io/version"], "1.0");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "skiff");
        assert!(o.value["apiVersion"].is_string() && o.value["kind"].is_string());
        if o.kind != Kind::Namespace {
            assert_eq!(o.namespace.as_deref(), Some("shop"));
        }
    }
}

#[test]
fn the_deployment_declares_capabilities_and_mounts() {
    let app = shop();
    let objects = render(&app, &images(&app)).unwrap();
    let get = |kind, name: &str| {
        objects
            .iter()
            .find(|o| o.kind == kind && o.name == name)
            .unwrap()
            .value
            .clone()
    };
    let d: Deployment = serde_json::from_value(get(Kind::Deployment, "frontend")).unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, None);
    let template = spec.template;
    let ann = template.metadata.unwrap().annotations.unwrap();
    assert_eq!(ann["capabilities.skiff.dev/app"], "wasi:config");
    let pod = template.spec.unwrap();
    let projected = pod.volumes.unwrap()[0].projected.clone().unwrap();
    let sources = projected.sources.unwrap();
    assert_eq!(
        sources[0].config_map.as_ref().unwrap().name,
        "shop-frontend-config"
    );
    let secret = sources[1].secret.as_ref().unwrap();
    assert_eq!(secret.name, "db");
    assert_eq!(secret.items.as_ref().unwrap()[0].path, "password");
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("reg/frontend@sha256:00"));
    assert_eq!(
        c.volume_mounts.as_ref().unwrap()[0].mount_path,
        "/etc/skiff/config"
    );

    let b: Deployment = serde_json::from_value(get(Kind::Deployment, "backend")).unwrap();
    let bspec = b.spec.unwrap();
    assert_eq!(bspec.replicas, Some(2));
    let t = bspec.template;
    assert_eq!(
        t.metadata.unwrap().annotations.unwrap()["capabilities.skiff.dev/app"],
        "wasi:keyvalue"
    );
    let vol = &t.spec.unwrap().volumes.unwrap()[0];
    assert_eq!(
        vol.persistent_volume_claim.as_ref().unwrap().claim_name,
        "shop-keyvalue"
    );

    let i: Ingress = serde_json::from_value(get(Kind::Ingress, "frontend")).unwrap();
    let rule = &i.spec.unwrap().rules.unwrap()[0];
    assert_eq!(rule.host, None);
    assert_eq!(
        rule.http.as_ref().unwrap().paths[0].path.as_deref(),
        Some("/")
    );

    let np: NetworkPolicy = serde_json::from_value(get(Kind::NetworkPolicy, "frontend")).unwrap();
    let egress = np.spec.unwrap().egress.unwrap();
    let peer = &egress[0].to.as_ref().unwrap()[0];
    assert_eq!(
        peer.pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app.kubernetes.io/component"],
        "backend"
    );
}

#[test]
fn scale_to_zero_and_autoscale() {
    let app = App::new("a").namespace("team").component(
        Component::new("web", Source::File("w.wasm".into()))
            .route_host("a.localhost", "/x")
            .scale_to_zero(Some("90s")),
    );
    let objects = render(&app, &images(&app)).unwrap();
    assert!(objects.iter().all(|o| o.kind != Kind::Namespace));
    let d = &objects[0].value;
    assert_eq!(
        d["metadata"]["annotations"]["skiff.dev/scale-to-zero"],
        "true"
    );
    assert_eq!(
        d["metadata"]["annotations"]["skiff.dev/scale-to-zero-idle"],
        "90s"
    );
    assert!(d["spec"].get("replicas").is_none());

    let app = App::new("a")
        .component(Component::new("web", Source::File("w.wasm".into())).autoscale(1, 3, 50));
    let err = render(&app, &images(&app)).unwrap_err().to_string();
    assert!(err.contains("resources.requests.cpu"), "{err}");
}

#[test]
fn yaml_is_a_multi_document_stream() {
    let app = shop();
    let yaml = to_yaml(&render(&app, &images(&app)).unwrap()).unwrap();
    assert_eq!(yaml.matches("---\n").count(), 9);
    assert!(yaml.contains("kind: Deployment"));
}
