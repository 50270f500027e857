//! Pod -> runtime spec: volumes (emptyDir, configMap, secret, hostPath, downwardAPI, projected),
//! env (`value` with `$(VAR)` expansion, `valueFrom`, `envFrom`, the downward API), mounts,
//! ports and resources. Failures are messages for the `CreateContainerConfigError` reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, Pod, ResourceRequirements, Secret, Volume,
};
use kube::Api;
use skiff_runtime::{ContainerSpec, FileContent, Mount, Resources, VolumeSource, VolumeSpec};

use skiff_meta::quantity::Quantity;

/// The ConfigMaps and Secrets a pod refers to, as read from the API (`None`: not found).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Refs {
    pub(crate) config_maps: HashMap<String, Option<ConfigMap>>,
    pub(crate) secrets: HashMap<String, Option<Secret>>,
}

/// Names of the ConfigMaps and Secrets a pod refers to (env, envFrom, volumes).
pub(crate) fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return (cms, secrets);
    };
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in all {
        for e in c.env.iter().flatten() {
            if let Some(vf) = &e.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    cms.insert(r.name.clone());
                }
                if let Some(r) = &vf.secret_key_ref {
                    secrets.insert(r.name.clone());
                }
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &e.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            cms.insert(cm.name.clone());
        }
        if let Some(s) = &v.secret
            && let Some(n) = &s.secret_name
        {
            secrets.insert(n.clone());
        }
        if let Some(p) = &v.projected {
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    cms.insert(cm.name.clone());
                }
                if let Some(s) = &src.secret {
                    secrets.insert(s.name.clone());
                }
            }
        }
    }
    (cms, secrets)
}

/// Reads the ConfigMaps and Secrets a pod refers to.
pub(crate) async fn fetch(client: &kube::Client, pod: &Pod) -> Result<Refs, kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (cms, secrets) = referenced(pod);
    let mut refs = Refs::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in cms {
        let v = cm_api.get_opt(&name).await?;
        refs.config_maps.insert(name, v);
    }
    let s_api: Api<Secret> = Api::namespaced(client.clone(), ns);
    for name in secrets {
        let v = s_api.get_opt(&name).await?;
        refs.secrets.insert(name, v);
    }
    Ok(refs)
}

/// The pod's addresses, for the downward API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addrs {
    pub(crate) pod_ip: Option<IpAddr>,
    pub(crate) host_ip: IpAddr,
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// Applies `items` (key -> path) to a data map, as kubelet does for configMap/secret volumes.
fn project(
    what: &str,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<BTreeMap<String, FileContent>, String> {
    let mode = |m: Option<i32>| m.or(default_mode).map(|m| (m & 0o777) as u32);
    let mut out = BTreeMap::new();
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        out.insert(
                            item.path.clone(),
                            FileContent {
                                data: v.clone().into(),
                                mode: mode(item.mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(format!("couldn't find key {} in {what}", item.key)),
                }
            }
        }
        _ => {
            for (k, v) in data {
                out.insert(
                    k,
                    FileContent {
                        data: v.into(),
                        mode: mode(None),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Where a volume's files come from.
#[derive(Clone, Copy)]
enum Source {
    ConfigMap,
    Secret,
}

/// The files of a ConfigMap or Secret volume (or projected source).
fn source_files(
    source: Source,
    ns: &str,
    name: &str,
    refs: &Refs,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<BTreeMap<String, FileContent>, String> {
    let (data, kind, lower) = match source {
        Source::ConfigMap => (
            refs.config_maps
                .get(name)
                .and_then(Option::as_ref)
                .map(config_map_data),
            "ConfigMap",
            "configmap",
        ),
        Source::Secret => (
            refs.secrets
                .get(name)
                .and_then(Option::as_ref)
                .map(secret_data),
            "Secret",
            "secret",
        ),
    };
    match data {
        Some(data) => project(
            &format!("{kind} {ns}/{name}"),
            data,
            items,
            default_mode,
            optional,
        ),
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("{lower} \"{name}\" not found")),
    }
}

fn downward_files(
    pod: &Pod,
    items: Option<&Vec<k8s_openapi::api::core::v1::DownwardAPIVolumeFile>>,
    default_mode: Option<i32>,
    addrs: Addrs,
) -> Result<BTreeMap<String, FileContent>, String> {
    let mut out = BTreeMap::new();
    for item in items.into_iter().flatten() {
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path, addrs)?
        } else if let Some(r) = &item.resource_field_ref {
            let c = find_container(pod, r.container_name.as_deref().unwrap_or(""))
                .ok_or_else(|| format!("downwardAPI {}: unknown container", item.path))?;
            resource_value(c, &r.resource, r.divisor.as_ref().map(|d| d.0.as_str()))?
        } else {
            continue;
        };
        out.insert(
            item.path.clone(),
            FileContent {
                data: value.into_bytes().into(),
                mode: item.mode.or(default_mode).map(|m| (m & 0o777) as u32),
            },
        );
    }
    Ok(out)
}

/// Files of a volume and whether they are secret.
pub(crate) type VolumeFiles = (BTreeMap<String, FileContent>, bool);

/// The files of a file-set volume (configMap, secret, downwardAPI, projected); `None` for the
/// other kinds.
pub(crate) fn volume_files(
    pod: &Pod,
    v: &Volume,
    refs: &Refs,
    addrs: Addrs,
) -> Option<Result<VolumeFiles, String>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(cm) = &v.config_map {
        let optional = cm.optional.unwrap_or(false);
        return Some(
            source_files(
                Source::ConfigMap,
                ns,
                &cm.name,
                refs,
                cm.items.as_ref(),
                cm.default_mode,
                optional,
            )
            .map(|f| (f, false)),
        );
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let optional = s.optional.unwrap_or(false);
        return Some(
            source_files(
                Source::Secret,
                ns,
                &name,
                refs,
                s.items.as_ref(),
                s.default_mode,
                optional,
            )
            .map(|f| (f, true)),
        );
    }
    if let Some(d) = &v.downward_api {
        return Some(
            downward_files(pod, d.items.as_ref(), d.default_mode, addrs).map(|f| (f, false)),
        );
    }
    if let Some(p) = &v.projected {
        let mut files = BTreeMap::new();
        let mut sensitive = false;
        for src in p.sources.iter().flatten() {
            let part = if let Some(cm) = &src.config_map {
                source_files(
                    Source::ConfigMap,
                    ns,
                    &cm.name,
                    refs,
                    cm.items.as_ref(),
                    p.default_mode,
                    cm.optional.unwrap_or(false),
                )
            } else if let Some(s) = &src.secret {
                sensitive = true;
                source_files(
                    Source::Secret,
                    ns,
                    &s.name,
                    refs,
                    s.items.as_ref(),
                    p.default_mode,
                    s.optional.unwrap_or(false),
                )
            } else if let Some(d) = &src.downward_api {
                downward_files(pod, d.items.as_ref(), p.default_mode, addrs)
            } else {
                // serviceAccountToken and clusterTrustBundle sources: not provided to wasm pods.
                Ok(BTreeMap::new())
            };
            match part {
                Ok(part) => files.extend(part),
                Err(e) => return Some(Err(e)),
            }
        }
        return Some(Ok((files, sensitive)));
    }
    None
}

/// The runtime volumes of a pod.
pub(crate) fn volumes(pod: &Pod, refs: &Refs, addrs: Addrs) -> Result<Vec<VolumeSpec>, String> {
    let mut out = Vec::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let source = if let Some(e) = &v.empty_dir {
            VolumeSource::EmptyDir {
                memory: e.medium.as_deref() == Some("Memory"),
            }
        } else if let Some(h) = &v.host_path {
            VolumeSource::HostPath {
                path: PathBuf::from(&h.path),
            }
        } else if let Some(files) = volume_files(pod, v, refs, addrs) {
            let (files, sensitive) = files.map_err(|e| format!("volume {}: {e}", v.name))?;
            VolumeSource::Files { files, sensitive }
        } else {
            return Err(format!(
                "volume {}: this kind of volume is not supported by the wasm runtime",
                v.name
            ));
        };
        out.push(VolumeSpec {
            name: v.name.clone(),
            source,
        });
    }
    Ok(out)
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    let mut all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    if name.is_empty() {
        return spec.containers.first();
    }
    all.find(|c| c.name == name)
}

fn label_value(map: Option<&BTreeMap<String, String>>, key: &str) -> String {
    map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
}

fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A downward API field of the pod.
pub(crate) fn field_value(pod: &Pod, path: &str, addrs: Addrs) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let key_of = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?;
        let rest = rest.strip_prefix("['")?.strip_suffix("']")?;
        Some(rest.to_string())
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => addrs.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => {
            addrs.pod_ip.map(|ip| ip.to_string()).unwrap_or_default()
        }
        _ => {
            if let Some(k) = key_of("metadata.labels") {
                label_value(meta.labels.as_ref(), &k)
            } else if let Some(k) = key_of("metadata.annotations") {
                label_value(meta.annotations.as_ref(), &k)
            } else {
                return Err(format!("unsupported fieldRef path {path:?}"));
            }
        }
    })
}

fn quantity_of(r: Option<&ResourceRequirements>, which: &str, res: &str) -> Option<String> {
    let r = r?;
    let map = if which == "limits" {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    };
    map?.get(res).map(|q| q.0.clone())
}

/// A `resourceFieldRef` value (`limits.cpu`, `requests.memory`, …) divided by `divisor`.
fn resource_value(c: &Container, resource: &str, divisor: Option<&str>) -> Result<String, String> {
    let (which, res) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    if !matches!(which, "limits" | "requests") {
        return Err(format!("unsupported resource {resource:?}"));
    }
    let q = quantity_of(c.resources.as_ref(), which, res).or_else(|| {
        // Requests default to limits; an unset limit is the node's capacity, which kubelet
        // reports; "0" is close enough for a wasm pod without a limit.
        (which == "requests")
            .then(|| quantity_of(c.resources.as_ref(), "limits", res))
            .flatten()
    });
    let value = q
        .as_deref()
        .and_then(parse_quantity)
        .unwrap_or(Quantity::ZERO);
    let div = divisor
        .and_then(parse_quantity)
        .filter(|d| d.milli() > 0)
        .unwrap_or(Quantity::from_value(1));
    // Rounded up, as kubelet's ExtractContainerResourceValue.
    let ratio = value.milli().div_euclid(div.milli())
        + i128::from(value.milli().rem_euclid(div.milli()) != 0);
    Ok(ratio.to_string())
}

fn parse_quantity(q: &str) -> Option<Quantity> {
    Quantity::parse(q.trim()).ok()
}

/// Whole units (bytes) of a non-negative quantity, rounded up.
fn bytes(q: &str) -> Option<u64> {
    parse_quantity(q)
        .filter(|q| q.milli() >= 0)
        .map(|q| u64::try_from(q.value()).unwrap_or(u64::MAX))
}

/// Millicores of a non-negative quantity, rounded up.
fn millis(q: &str) -> Option<u64> {
    parse_quantity(q)
        .filter(|q| q.milli() >= 0)
        .map(|q| u64::try_from(q.milli()).unwrap_or(u64::MAX))
}

/// Expands `$(NAME)` from the variables defined so far; `$$(NAME)` stays literal.
pub(crate) fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < s.len() {
        if bytes[i] == b'$' && i + 1 < s.len() {
            if bytes[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if bytes[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&s[i..i + 3 + end]),
                }
                i += 3 + end;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// The environment of a container, in order.
pub(crate) fn env(
    pod: &Pod,
    c: &Container,
    refs: &Refs,
    addrs: Addrs,
) -> Result<Vec<(String, String)>, String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut map: HashMap<String, String> = HashMap::new();
    let set = |vars: &mut Vec<(String, String)>,
               map: &mut HashMap<String, String>,
               k: String,
               v: String| {
        if let Some(slot) = vars.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v.clone();
        } else {
            vars.push((k.clone(), v.clone()));
        }
        map.insert(k, v);
    };
    for ef in c.env_from.iter().flatten() {
        let prefix = ef.prefix.clone().unwrap_or_default();
        if let Some(r) = &ef.config_map_ref {
            match refs.config_maps.get(&r.name).and_then(Option::as_ref) {
                Some(cm) => {
                    for (k, v) in config_map_data(cm) {
                        set(
                            &mut vars,
                            &mut map,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &ef.secret_ref {
            match refs.secrets.get(&r.name).and_then(Option::as_ref) {
                Some(s) => {
                    for (k, v) in secret_data(s) {
                        set(
                            &mut vars,
                            &mut map,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                match refs.config_maps.get(&r.name).and_then(Option::as_ref) {
                    Some(cm) => match config_map_data(cm).remove(&r.key) {
                        Some(v) => String::from_utf8_lossy(&v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key,
                                pod.metadata.namespace.as_deref().unwrap_or("default"),
                                r.name
                            ));
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            } else if let Some(r) = &vf.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                match refs.secrets.get(&r.name).and_then(Option::as_ref) {
                    Some(s) => match secret_data(s).remove(&r.key) {
                        Some(v) => String::from_utf8_lossy(&v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key,
                                pod.metadata.namespace.as_deref().unwrap_or("default"),
                                r.name
                            ));
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            } else if let Some(f) = &vf.field_ref {
                field_value(pod, &f.field_path, addrs)?
            } else if let Some(r) = &vf.resource_field_ref {
                let target = match r.container_name.as_deref() {
                    Some(n) if !n.is_empty() => find_container(pod, n)
                        .ok_or_else(|| format!("env {}: unknown container {n}", e.name))?,
                    _ => c,
                };
                resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?
            } else {
                return Err(format!("env {}: unsupported valueFrom", e.name));
            }
        } else {
            expand(e.value.as_deref().unwrap_or(""), &map)
        };
        set(&mut vars, &mut map, e.name.clone(), value);
    }
    Ok(vars)
}

/// Resource requests and limits of a container.
pub(crate) fn resources(c: &Container) -> Resources {
    let r = c.resources.as_ref();
    let get = |which: &str, res: &str| quantity_of(r, which, res);
    let memory_limit = get("limits", "memory").and_then(|q| bytes(&q));
    let cpu_limit_millis = get("limits", "cpu").and_then(|q| millis(&q));
    Resources {
        memory_limit,
        memory_request: get("requests", "memory")
            .and_then(|q| bytes(&q))
            .or(memory_limit),
        cpu_limit_millis,
        cpu_request_millis: get("requests", "cpu")
            .and_then(|q| millis(&q))
            .or(cpu_limit_millis),
    }
}

/// A container's runtime spec (without its image).
pub(crate) fn container_spec(
    pod: &Pod,
    c: &Container,
    refs: &Refs,
    addrs: Addrs,
) -> Result<ContainerSpec, String> {
    let env = env(pod, c, refs, addrs)?;
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let mut args: Vec<String> = Vec::new();
    // A wasm container has no separate entrypoint: `command` beyond argv[0] and `args` both
    // become arguments.
    if let Some(cmd) = &c.command {
        args.extend(cmd.iter().skip(1).map(|a| expand(a, &vars)));
    }
    args.extend(c.args.iter().flatten().map(|a| expand(a, &vars)));
    let mounts = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| Mount {
            volume: m.name.clone(),
            mount_path: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false),
            sub_path: m.sub_path.clone().filter(|s| !s.is_empty()),
        })
        .collect();
    let ports = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    Ok(ContainerSpec {
        name: c.name.clone(),
        args,
        env,
        working_dir: c.working_dir.clone(),
        mounts,
        ports,
        resources: resources(c),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
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
            serde_yaml::from_str("metadata: {name: cm}\ndata: {color: blue, other: x}")
                .expect("cm");
        let s: Secret =
            serde_yaml::from_str("metadata: {name: s}\ndata: {pw: czNjcjN0}").expect("secret");
        refs.config_maps.insert("cm".into(), Some(cm));
        refs.secrets.insert("s".into(), Some(s));
        let vols = volumes(&p, &refs, ADDRS).expect("volumes");
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
}
