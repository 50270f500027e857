//! The wasm part of a mixed pod: a wasm container in an `oci` pod runs on the node's wasm
//! runtime, in a wasm sandbox bound to the Linux pod (the same volumes; its outgoing requests
//! leave as the Linux pod, so its `localhost` is the pod's), and each of its ports is served
//! inside the pod's network namespace (a listener on `0.0.0.0:PORT` there), so that a Linux
//! sibling reaches it on `localhost:PORT` and other pods on `podIP:PORT`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::container::lock;
use super::pod::OciPod;
use crate::PodSandbox;
use crate::error::{Error, Result};
use crate::network::{HttpBody, box_body, full_body};
use crate::oci::net::bind_tcp_in_netns;
use crate::oci::spec::netns_path;
use crate::spec::{ContainerSpec, Mount, PodSpec, VolumeSource, VolumeSpec};
use crate::status::ContainerKind;

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The wasm containers of a Linux pod.
#[derive(Default)]
pub(crate) struct WasmPart {
    sandbox: Mutex<Option<Arc<dyn PodSandbox>>>,
    names: Mutex<BTreeSet<String>>,
    /// Port -> the wasm container serving it and the listener's task.
    ports: Mutex<BTreeMap<u16, (String, AbortOnDrop)>>,
}

impl WasmPart {
    /// The wasm sandbox, once a wasm container was created.
    pub(crate) fn sandbox(&self) -> Option<Arc<dyn PodSandbox>> {
        lock(&self.sandbox).clone()
    }

    /// True when `name` is a wasm container of the pod.
    pub(crate) fn has(&self, name: &str) -> bool {
        lock(&self.names).contains(name)
    }

    /// The wasm sandbox when one of its containers serves `port`.
    pub(crate) fn serving(&self, port: u16) -> Option<Arc<dyn PodSandbox>> {
        if lock(&self.ports).contains_key(&port) {
            self.sandbox()
        } else {
            None
        }
    }

    /// Forgets a removed wasm container and stops serving its ports.
    pub(crate) fn forget(&self, name: &str) {
        lock(&self.names).remove(name);
        lock(&self.ports).retain(|_, (c, _)| c != name);
    }

    /// Stops serving the wasm containers' ports in the pod's network namespace (the pod's
    /// network is being released).
    pub(crate) fn stop_serving(&self) {
        lock(&self.ports).clear();
    }

    /// Removes the wasm sandbox and stops serving its ports.
    pub(crate) async fn remove(&self, grace: Duration) -> Result<()> {
        lock(&self.ports).clear();
        let sandbox = lock(&self.sandbox).take();
        lock(&self.names).clear();
        match sandbox {
            Some(s) => s.remove(grace).await,
            None => Ok(()),
        }
    }
}

fn error_response(status: StatusCode, message: String) -> Response<HttpBody> {
    let mut resp = Response::new(full_body(message));
    *resp.status_mut() = status;
    resp
}

/// Serves HTTP/1.1 connections from `listener` with the wasm sandbox's container on `port`.
async fn serve(listener: tokio::net::TcpListener, sandbox: Weak<dyn PodSandbox>, port: u16) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(port, error = %e, "accepting a connection for a wasm container");
                // Out of descriptors, for example: give the node a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let sandbox = sandbox.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let sandbox = sandbox.upgrade();
                async move {
                    let resp = match sandbox {
                        Some(s) => match s.handle_http(port, req.map(box_body)).await {
                            Ok(resp) => resp,
                            Err(e) => error_response(StatusCode::BAD_GATEWAY, e.to_string()),
                        },
                        None => error_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the pod was removed".into(),
                        ),
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(port, error = %e, "connection to a wasm container ended");
            }
        });
    }
}

impl OciPod {
    /// Creates a wasm container of this pod on the node's wasm runtime.
    pub(crate) async fn create_wasm(&self, mut spec: ContainerSpec) -> Result<ContainerKind> {
        let Some(wasm) = self.rt.wasm.clone() else {
            return Err(Error::NotSupported(format!(
                "container {}: a wasm image in an oci pod needs the node's wasm runtime, which this node does not run",
                spec.name
            )));
        };
        let record = self.record();
        let sandbox = match self.wasm.sandbox() {
            Some(s) => s,
            None => {
                // The pod's volumes, as the Linux containers see them.
                let volumes = record
                    .volumes
                    .iter()
                    .map(|(name, v)| VolumeSpec {
                        name: name.clone(),
                        source: VolumeSource::HostPath {
                            path: v.host_path.clone(),
                        },
                    })
                    .collect();
                let inner = PodSpec {
                    id: format!("{}.wasm", self.id),
                    name: self.name.clone(),
                    volumes,
                    http: self.http.clone(),
                    ..PodSpec::default()
                };
                let s = wasm.create_pod_within(inner, self.this.clone()).await?;
                *lock(&self.wasm.sandbox) = Some(s.clone());
                s
            }
        };
        for m in &mut spec.mounts {
            let m: &mut Mount = m;
            if record.volumes.get(&m.volume).is_some_and(|v| v.read_only) {
                m.read_only = true;
            }
        }
        let name = spec.name.clone();
        let ports = spec.ports.clone();
        let kind = sandbox.create_container(spec).await?;
        lock(&self.wasm.names).insert(name.clone());
        if kind == ContainerKind::Http {
            let netns = record.netns.as_deref().map(netns_path);
            for port in ports {
                let served = match &netns {
                    Some(ns) => self.listen(ns, &sandbox, port),
                    None => Err(Error::InvalidSpec(format!(
                        "pod {}: no network namespace to serve port {port} in",
                        self.name
                    ))),
                };
                match served {
                    Ok(task) => {
                        lock(&self.wasm.ports).insert(port, (name.clone(), task));
                    }
                    Err(e) => {
                        self.wasm.forget(&name);
                        let _ = sandbox.remove_container(&name).await;
                        return Err(e);
                    }
                }
            }
        }
        Ok(kind)
    }

    fn listen(
        &self,
        netns: &std::path::Path,
        sandbox: &Arc<dyn PodSandbox>,
        port: u16,
    ) -> Result<AbortOnDrop> {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let listener = bind_tcp_in_netns(netns, addr)
            .and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            })
            .map_err(|e| {
                Error::InvalidSpec(format!(
                    "pod {}: cannot serve port {port} in the pod's network namespace: {e}",
                    self.name
                ))
            })?;
        Ok(AbortOnDrop(tokio::spawn(serve(
            listener,
            Arc::downgrade(sandbox),
            port,
        ))))
    }
}
