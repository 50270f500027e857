//! An [`App`] as Kubernetes objects: per component a Deployment and a Service named after it, an
//! Ingress when it has a route, a ConfigMap of its config values, a NetworkPolicy when its
//! outbound calls are limited and an HPA when it autoscales; per app a PersistentVolumeClaim for
//! keyvalue and (when the namespace is the app's own) the Namespace. Every object carries the
//! `app.kubernetes.io/*` labels; pruning finds them by `part-of` and `managed-by`.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, Container, ContainerPort, EnvVar, EnvVarSource, KeyToPath,
    Namespace, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, ProjectedVolumeSource,
    ResourceRequirements, SecretProjection, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer,
    NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{ApiResource, DynamicObject};

use crate::model::{App, Component, ConfigValue, DEFAULT_KEYVALUE_SIZE, Quantities};
use crate::{
    CAPABILITIES_ANNOTATION_PREFIX, COMPONENT_PORT, CONFIG_MOUNT, CONTAINER, Error, KEYVALUE_MOUNT,
    LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF, LABEL_VERSION, SERVICE_PORT,
};

/// The kinds of object an app becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The app's own namespace.
    Namespace,
    /// Config values of a component.
    ConfigMap,
    /// The keyvalue volume of the app.
    PersistentVolumeClaim,
    /// A component's pods.
    Deployment,
    /// A component's stable name and address.
    Service,
    /// A component's route on the cluster's ingress.
    Ingress,
    /// A component's allowed outbound calls.
    NetworkPolicy,
    /// A component's autoscaler.
    HorizontalPodAutoscaler,
}

impl Kind {
    /// Every kind pruning looks at (all but [`Kind::Namespace`]), in apply order.
    pub const PRUNED: [Kind; 7] = [
        Kind::ConfigMap,
        Kind::PersistentVolumeClaim,
        Kind::Deployment,
        Kind::Service,
        Kind::Ingress,
        Kind::NetworkPolicy,
        Kind::HorizontalPodAutoscaler,
    ];

    /// The API resource, for dynamic requests.
    pub fn api_resource(self) -> ApiResource {
        match self {
            Kind::Namespace => ApiResource::erase::<Namespace>(&()),
            Kind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            Kind::PersistentVolumeClaim => ApiResource::erase::<PersistentVolumeClaim>(&()),
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::Service => ApiResource::erase::<Service>(&()),
            Kind::Ingress => ApiResource::erase::<Ingress>(&()),
            Kind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
            Kind::HorizontalPodAutoscaler => ApiResource::erase::<HorizontalPodAutoscaler>(&()),
        }
    }

    /// kubectl's name of the kind: `deployment.apps`, `service`, …
    pub fn kubectl_name(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::ConfigMap => "configmap",
            Kind::PersistentVolumeClaim => "persistentvolumeclaim",
            Kind::Deployment => "deployment.apps",
            Kind::Service => "service",
            Kind::Ingress => "ingress.networking.k8s.io",
            Kind::NetworkPolicy => "networkpolicy.networking.k8s.io",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscaler.autoscaling",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kubectl_name())
    }
}

/// One rendered object: its kind, name, namespace and full JSON (`apiVersion`, `kind` included).
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The kind.
    pub kind: Kind,
    /// The name.
    pub name: String,
    /// The namespace (none for the Namespace itself).
    pub namespace: Option<String>,
    /// The object as applied.
    pub value: serde_json::Value,
}

impl Object {
    fn of<K>(kind: Kind, obj: &K) -> Result<Object, Error>
    where
        K: kube::Resource<DynamicType = ()> + serde::Serialize,
    {
        let meta = obj.meta();
        let name = meta.name.clone().unwrap_or_default();
        let mut value = serde_json::to_value(obj).map_err(|e| Error::Encode {
            what: format!("{kind}/{name}"),
            message: e.to_string(),
        })?;
        value["apiVersion"] = K::api_version(&()).into();
        value["kind"] = K::kind(&()).into();
        Ok(Object {
            kind,
            name,
            namespace: meta.namespace.clone(),
            value,
        })
    }

    /// The object as a [`DynamicObject`].
    pub fn dynamic(&self) -> Result<DynamicObject, Error> {
        serde_json::from_value(self.value.clone()).map_err(|e| Error::Encode {
            what: format!("{}/{}", self.kind, self.name),
            message: e.to_string(),
        })
    }
}

/// The objects of `app`, in apply order. `images` maps each component to the image its pods run
/// (the pushed, digest-pinned reference); a component missing from it is an error.
pub fn render(app: &App, images: &BTreeMap<String, String>) -> Result<Vec<Object>, Error> {
    app.validate()?;
    let r = Renderer { app };
    let mut out = Vec::new();
    if app.app.namespace.is_none() {
        out.push(Object::of(Kind::Namespace, &r.namespace())?);
    }
    for c in &app.components {
        if let Some(cm) = r.config_map(c) {
            out.push(Object::of(Kind::ConfigMap, &cm)?);
        }
    }
    if app.components.iter().any(|c| c.keyvalue) {
        out.push(Object::of(
            Kind::PersistentVolumeClaim,
            &r.keyvalue_claim(),
        )?);
    }
    for c in &app.components {
        let image = images.get(&c.name).ok_or_else(|| Error::Source {
            component: c.name.clone(),
            message: "no image for it".into(),
        })?;
        out.push(Object::of(Kind::Deployment, &r.deployment(c, image))?);
        out.push(Object::of(Kind::Service, &r.service(c))?);
        if c.route.is_some() {
            out.push(Object::of(Kind::Ingress, &r.ingress(c))?);
        }
        if c.allowed_outbound.is_some() {
            out.push(Object::of(Kind::NetworkPolicy, &r.network_policy(c))?);
        }
        if c.autoscale.is_some() {
            out.push(Object::of(Kind::HorizontalPodAutoscaler, &r.hpa(c))?);
        }
    }
    Ok(out)
}

/// The objects as a multi-document YAML stream that `kubectl apply -f -` takes.
pub fn to_yaml(objects: &[Object]) -> Result<String, Error> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&o.value).map_err(|e| Error::Encode {
            what: format!("{}/{}", o.kind, o.name),
            message: e.to_string(),
        })?);
    }
    Ok(out)
}

/// The name of a component's ConfigMap of plain config values.
pub fn config_map_name(app: &App, component: &Component) -> String {
    format!("{}-{}-config", app.name(), component.name)
}

/// The name of the app's keyvalue claim.
pub fn keyvalue_claim_name(app: &App) -> String {
    format!("{}-keyvalue", app.name())
}

struct Renderer<'a> {
    app: &'a App,
}

impl Renderer<'_> {
    fn labels(&self, component: Option<&Component>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            (LABEL_NAME.to_string(), self.app.name().to_string()),
            (LABEL_PART_OF.to_string(), self.app.name().to_string()),
            (
                LABEL_VERSION.to_string(),
                self.app.version_name().to_string(),
            ),
            (
                LABEL_MANAGED_BY.to_string(),
                crate::FIELD_MANAGER.to_string(),
            ),
        ]);
        if let Some(c) = component {
            l.insert(LABEL_COMPONENT.to_string(), c.name.clone());
        }
        l
    }

    /// What a component's pods are selected by (fixed: a selector cannot change).
    fn selector(&self, c: &Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_PART_OF.to_string(), self.app.name().to_string()),
            (LABEL_COMPONENT.to_string(), c.name.clone()),
        ])
    }

    fn meta(&self, name: String, component: Option<&Component>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.app.namespace_name().to_string()),
            labels: Some(self.labels(component)),
            ..Default::default()
        }
    }

    fn namespace(&self) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(self.app.namespace_name().to_string()),
                labels: Some(self.labels(None)),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn config_map(&self, c: &Component) -> Option<ConfigMap> {
        if c.config.is_empty() {
            return None;
        }
        let data: BTreeMap<String, String> = c
            .config
            .iter()
            .filter_map(|(k, v)| match v {
                ConfigValue::Value(v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect();
        Some(ConfigMap {
            metadata: self.meta(config_map_name(self.app, c), Some(c)),
            data: Some(data),
            ..Default::default()
        })
    }

    fn keyvalue_claim(&self) -> PersistentVolumeClaim {
        let size = self
            .app
            .app
            .keyvalue_size
            .clone()
            .unwrap_or_else(|| DEFAULT_KEYVALUE_SIZE.to_string());
        PersistentVolumeClaim {
            metadata: self.meta(keyvalue_claim_name(self.app), None),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: Some(skiff_meta::names::LOCAL_PATH_CLASS.into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn deployment(&self, c: &Component, image: &str) -> Deployment {
        let mut env: Vec<EnvVar> = c
            .env
            .iter()
            .map(|(k, v)| EnvVar {
                name: k.clone(),
                value: Some(v.clone()),
                ..Default::default()
            })
            .collect();
        if !c.env.contains_key("POD_NAME") {
            env.push(EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let mut volumes = Vec::new();
        let mut mounts = Vec::new();
        if !c.config.is_empty() {
            volumes.push(self.config_volume(c));
            mounts.push(VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_MOUNT.into(),
                read_only: Some(true),
                ..Default::default()
            });
        }
        if c.keyvalue {
            volumes.push(Volume {
                name: "keyvalue".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: keyvalue_claim_name(self.app),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: "keyvalue".into(),
                mount_path: KEYVALUE_MOUNT.into(),
                ..Default::default()
            });
        }
        let container = Container {
            name: CONTAINER.into(),
            image: Some(image.to_string()),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: COMPONENT_PORT,
                ..Default::default()
            }]),
            env: Some(env),
            resources: c.resources.as_ref().map(|r| ResourceRequirements {
                requests: r.requests.as_ref().map(quantities),
                limits: r.limits.as_ref().map(quantities),
                ..Default::default()
            }),
            volume_mounts: (!mounts.is_empty()).then_some(mounts),
            ..Default::default()
        };
        let caps = c.declared_capabilities();
        let template_annotations = (!caps.is_empty()).then(|| {
            BTreeMap::from([(
                format!("{CAPABILITIES_ANNOTATION_PREFIX}{CONTAINER}"),
                caps.join(","),
            )])
        });
        let mut annotations = BTreeMap::new();
        if let Some(stz) = c.scale_to_zero.as_ref().filter(|s| s.enabled()) {
            annotations.insert(skiff_meta::names::SCALE_TO_ZERO.to_string(), "true".into());
            if let Some(idle) = stz.idle() {
                annotations.insert(
                    skiff_meta::names::SCALE_TO_ZERO_IDLE.to_string(),
                    idle.to_string(),
                );
            }
        }
        let mut meta = self.meta(c.name.clone(), Some(c));
        meta.annotations = (!annotations.is_empty()).then_some(annotations);
        let mut pod_labels = self.labels(Some(c));
        pod_labels.extend(self.selector(c));
        Deployment {
            metadata: meta,
            spec: Some(DeploymentSpec {
                replicas: c.replicas,
                selector: LabelSelector {
                    match_labels: Some(self.selector(c)),
                    ..Default::default()
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_unavailable: Some(IntOrString::Int(0)),
                        max_surge: Some(IntOrString::Int(1)),
                    }),
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        annotations: template_annotations,
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        volumes: (!volumes.is_empty()).then_some(volumes),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Plain values from the component's ConfigMap, references from their Secrets and
    /// ConfigMaps, all as files of one projected volume.
    fn config_volume(&self, c: &Component) -> Volume {
        let mut sources = Vec::new();
        if c.config
            .values()
            .any(|v| matches!(v, ConfigValue::Value(_)))
        {
            sources.push(VolumeProjection {
                config_map: Some(ConfigMapProjection {
                    name: config_map_name(self.app, c),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        for (k, v) in &c.config {
            let item = |key: &str| {
                Some(vec![KeyToPath {
                    key: key.to_string(),
                    path: k.clone(),
                    ..Default::default()
                }])
            };
            match v {
                ConfigValue::Value(_) => {}
                ConfigValue::Secret { secret, key } => sources.push(VolumeProjection {
                    secret: Some(SecretProjection {
                        name: secret.clone(),
                        items: item(key),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ConfigValue::ConfigMap { config_map, key } => sources.push(VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: config_map.clone(),
                        items: item(key),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }
        }
        Volume {
            name: "config".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(sources),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service(&self, c: &Component) -> Service {
        Service {
            metadata: self.meta(c.name.clone(), Some(c)),
            spec: Some(ServiceSpec {
                selector: Some(self.selector(c)),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: SERVICE_PORT,
                    target_port: Some(IntOrString::Int(COMPONENT_PORT)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ingress(&self, c: &Component) -> Ingress {
        let route = c.route.as_ref();
        let path = route.map(|r| r.path()).unwrap_or("/");
        Ingress {
            metadata: self.meta(c.name.clone(), Some(c)),
            spec: Some(IngressSpec {
                ingress_class_name: Some(skiff_meta::names::INGRESS_CLASS.into()),
                rules: Some(vec![IngressRule {
                    host: route.and_then(|r| r.host()).map(str::to_string),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath {
                            path: Some(path.to_string()),
                            path_type: "Prefix".into(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: c.name.clone(),
                                    port: Some(ServiceBackendPort {
                                        number: Some(SERVICE_PORT),
                                        ..Default::default()
                                    }),
                                }),
                                ..Default::default()
                            },
                        }],
                    }),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn network_policy(&self, c: &Component) -> NetworkPolicy {
        let to: Vec<NetworkPolicyPeer> = c
            .allowed_outbound
            .iter()
            .flatten()
            .map(|target| {
                if self.app.components.iter().any(|o| &o.name == target) {
                    NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([
                                (LABEL_PART_OF.to_string(), self.app.name().to_string()),
                                (LABEL_COMPONENT.to_string(), target.clone()),
                            ])),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                } else {
                    NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: target.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                }
            })
            .collect();
        let egress = if to.is_empty() {
            vec![]
        } else {
            vec![NetworkPolicyEgressRule {
                to: Some(to),
                ..Default::default()
            }]
        };
        NetworkPolicy {
            metadata: self.meta(c.name.clone(), Some(c)),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(self.selector(c)),
                    ..Default::default()
                }),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(egress),
                ..Default::default()
            }),
        }
    }

    fn hpa(&self, c: &Component) -> HorizontalPodAutoscaler {
        let a = c.autoscale.clone().unwrap_or(crate::model::Autoscale {
            min: None,
            max: 1,
            cpu: None,
        });
        HorizontalPodAutoscaler {
            metadata: self.meta(c.name.clone(), Some(c)),
            spec: Some(HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name: c.name.clone(),
                },
                min_replicas: Some(a.min.unwrap_or(1)),
                max_replicas: a.max,
                metrics: Some(vec![MetricSpec {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".into(),
                        target: MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(a.cpu.unwrap_or(80)),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

fn quantities(q: &Quantities) -> BTreeMap<String, Quantity> {
    let mut m = BTreeMap::new();
    if let Some(cpu) = &q.cpu {
        m.insert("cpu".to_string(), Quantity(cpu.clone()));
    }
    if let Some(mem) = &q.memory {
        m.insert("memory".to_string(), Quantity(mem.clone()));
    }
    m
}

#[cfg(test)]
mod tests;
