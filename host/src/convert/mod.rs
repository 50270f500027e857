//! Pod -> runtime spec: volumes (emptyDir, configMap, secret, hostPath, downwardAPI, projected,
//! persistentVolumeClaim),
//! env (`value` with `$(VAR)` expansion, `valueFrom`, `envFrom`, the downward API), mounts,
//! ports, resources and declared capabilities (`capabilities.skiff.dev/<container>`); for Linux containers command and args apart, the security context,
//! the hostname, the pod network and DNS (`linux.rs`). Failures are messages for the `CreateContainerConfigError` reason.
//!
//! `refs.rs` reads the referenced ConfigMaps and Secrets and the projected tokens, `volumes.rs` projects volumes,
//! `env.rs` builds the environment and the downward API, `resources.rs` turns quantities into
//! the runtime's resources; this file assembles a container's spec.

mod env;
mod linux;
mod refs;
mod resources;
#[cfg(test)]
mod tests;
mod volumes;

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_runtime::{Capabilities, ContainerSpec, Mount};

pub(crate) use env::{env, expand};
pub(crate) use linux::{
    dns_config, hostname, linux_container, parse_resolv_conf, pod_network, unsupported,
};
pub(crate) use refs::{FetchError, Refs, fetch};
pub(crate) use resources::resources;
pub(crate) use volumes::{volume_files, volumes};

/// The pod's addresses, for the downward API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addrs {
    pub(crate) pod_ip: Option<IpAddr>,
    pub(crate) host_ip: IpAddr,
}

/// Kubelet's checks of a `subPath`, with its messages: relative, and no `..` step.
fn check_sub_path(sub: &str) -> Result<(), String> {
    if sub.starts_with('/') {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if sub.split('/').any(|part| part == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// True if the pod's volume `name` is a claim mounted `readOnly`.
fn claim_read_only(pod: &Pod, name: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .find(|v| v.name == name)
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .is_some_and(|c| c.read_only == Some(true))
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
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let sub_path = m.sub_path.clone().filter(|s| !s.is_empty());
        if let Some(sub) = &sub_path {
            check_sub_path(sub)?;
        }
        mounts.push(Mount {
            volume: m.name.clone(),
            mount_path: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || claim_read_only(pod, &m.name),
            sub_path,
        });
    }
    let ports = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    let linux = linux_container(pod, c, &vars)?;
    let capabilities = capabilities(pod, &c.name)?;
    Ok(ContainerSpec {
        name: c.name.clone(),
        args,
        env,
        working_dir: c.working_dir.clone(),
        mounts,
        ports,
        resources: resources(c),
        linux,
        capabilities,
        ..Default::default()
    })
}

/// The guest capabilities declared for container `name` in the pod annotation
/// `capabilities.skiff.dev/<name>`.
fn capabilities(pod: &Pod, name: &str) -> Result<Capabilities, String> {
    let key = format!("{}{name}", skiff_meta::names::CAPABILITIES_PREFIX);
    let Some(value) = pod.metadata.annotations.as_ref().and_then(|a| a.get(&key)) else {
        return Ok(Capabilities::default());
    };
    Capabilities::parse(value).map_err(|e| format!("annotation {key}: {e}"))
}
