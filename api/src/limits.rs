//! Bounds on the API server's connections and request heads: how many connections at once (in
//! all and per client IP), how long a client may take to start and send a request's head
//! (slowloris) or sit idle between requests, the largest head (431) and the longest URL (414).
//!
//! Kubernetes' choices are the reference (kube-apiserver's `http.Server`): `ReadHeaderTimeout`
//! 32 s also bounding the TLS handshake, and a bound on the request head. Where Skiff differs
//! it is stricter, so that memory stays bounded by `connections × head size`:
//!
//! | limit | default | over it |
//! |---|---|---|
//! | open connections ([`ConnectionLimits::max_connections`]) | 4096 | accepted and closed at once |
//! | connections of one client IP ([`ConnectionLimits::max_connections_per_client_ip`]) | 512 | accepted and closed at once |
//! | TLS handshake, first byte, each HTTP/1.1 request head, idle keep-alive ([`ConnectionLimits::request_header_timeout`]) | 32 s | connection closed |
//! | request head (HTTP/1.1 start line + headers; HTTP/2 header list) ([`MAX_HEADER_BYTES`]) | 64 KiB | 431, connection closed |
//! | HTTP/1.1 header count | 100 (hyper's) | 431 |
//! | URL (path + query, label and field selectors included) ([`MAX_URL_BYTES`]) | 32 KiB | 414 `Status` |
//! | body | 3 MiB (`crate::body::MAX_BODY_BYTES`) | 413 `Status` |
//! | JSON/YAML nesting | 128 levels (serde_json's and serde_yaml's recursion limit) | 400 `Status` |
//! | requests in flight, watches per user | `crate::fairness` | 429 `Status` + `Retry-After` |

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, StatusReason};

/// The largest request head: an HTTP/1.1 start line and headers, or an HTTP/2 header list.
/// Past it hyper (HTTP/1.1) or h2 (HTTP/2) answers 431 Request Header Fields Too Large, without
/// a `Status` body, as Go's server does for kube-apiserver. kube-apiserver allows 1 MiB; 64 KiB
/// holds any real client's headers (a bearer token is a few KiB) and bounds a connection's
/// buffered head.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The longest URL (path and query) a request may have; past it the answer is 414 with a
/// `Status`. Label and field selectors travel in the query, so this bounds them too. (hyper
/// itself refuses a request target over 65534 bytes with a bare 414.)
pub const MAX_URL_BYTES: usize = 32 * 1024;

/// The server's flags for its connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once (0: unbounded). Past it a new connection is closed as soon as
    /// it is accepted.
    pub max_connections: usize,
    /// Connections open at once from one client IP address (0: unbounded), so that one client
    /// cannot take every connection. Clients behind one NAT or proxy share it.
    pub max_connections_per_client_ip: usize,
    /// How long a client may take for the TLS handshake, to send its first byte, and to send
    /// each HTTP/1.1 request head — which is also how long an HTTP/1.1 keep-alive connection may
    /// sit idle between requests (kube-apiserver's `ReadHeaderTimeout`, 32 s).
    pub request_header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            max_connections_per_client_ip: 512,
            request_header_timeout: Duration::from_secs(32),
        }
    }
}

/// Counts open connections, in all and per client IP, against [`ConnectionLimits`].
pub struct ConnectionGate {
    limits: ConnectionLimits,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_client_ip` are open from this address.
    ClientIp,
}

/// One admitted connection; dropping it frees its place.
pub struct ConnectionPermit {
    gate: Arc<ConnectionGate>,
    ip: IpAddr,
}

impl ConnectionGate {
    pub fn new(limits: ConnectionLimits) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate {
            limits,
            open: Mutex::new(Open::default()),
        })
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Admits a connection from `ip`, or says which bound it would break.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let max = self.limits.max_connections;
        if max > 0 && open.total >= max {
            return Err(Refused::Total);
        }
        let per_ip = self.limits.max_connections_per_client_ip;
        let mine = open.by_ip.entry(ip).or_default();
        if per_ip > 0 && *mine >= per_ip {
            return Err(Refused::ClientIp);
        }
        *mine += 1;
        open.total += 1;
        Ok(ConnectionPermit {
            gate: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Answers 414 with a `Status` for a URL longer than [`MAX_URL_BYTES`].
pub(crate) async fn url_length(request: Request, next: Next) -> Response {
    let len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if len > MAX_URL_BYTES {
        return ApiError::new(
            414,
            StatusReason::UriTooLong,
            format!("the request URL is {len} bytes, longer than the limit of {MAX_URL_BYTES}"),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_bounds_connections_in_all_and_per_ip() {
        let gate = ConnectionGate::new(ConnectionLimits {
            max_connections: 3,
            max_connections_per_client_ip: 2,
            request_header_timeout: Duration::from_secs(1),
        });
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "::1".parse().unwrap());
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Refused::ClientIp));
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _a3 = gate.admit(a).unwrap();
        assert_eq!(gate.open(), 3);
    }

    #[test]
    fn zero_means_unbounded() {
        let gate = ConnectionGate::new(ConnectionLimits {
            max_connections: 0,
            max_connections_per_client_ip: 0,
            request_header_timeout: Duration::from_secs(1),
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..10_000).map(|_| gate.admit(ip).unwrap()).collect();
        assert_eq!(gate.open(), held.len());
    }
}
