//! Counting open connections, in all and per client IP, against [`ConnectionLimits`]; a
//! connection's stream carries its permit, upgraded or not.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::ConnectionLimits;

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

/// An admitted connection's TCP stream, holding its permit. The permit goes wherever the stream
/// goes: under TLS, and into hyper's `Upgraded` when the connection is upgraded (a websocket,
/// exec's and port-forward's streams), so an upgraded connection stays counted until it closes
/// rather than leaving the count when its HTTP part ends.
pub(crate) struct PermittedStream {
    tcp: TcpStream,
    _permit: ConnectionPermit,
}

impl PermittedStream {
    pub(crate) fn new(tcp: TcpStream, permit: ConnectionPermit) -> PermittedStream {
        PermittedStream {
            tcp,
            _permit: permit,
        }
    }

    /// [`TcpStream::peek`].
    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.peek(buf).await
    }
}

impl AsyncRead for PermittedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PermittedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl ConnectionGate {
    /// A gate with nothing open.
    pub fn new(limits: ConnectionLimits) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate {
            limits,
            open: Mutex::new(Open::default()),
        })
    }

    /// The bounds it enforces.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: total,
            max_connections_per_client_ip: per_ip,
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn the_gate_bounds_connections_in_all_and_per_ip() {
        let gate = ConnectionGate::new(limits(3, 2));
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
        let gate = ConnectionGate::new(limits(0, 0));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..10_000).map(|_| gate.admit(ip).unwrap()).collect();
        assert_eq!(gate.open(), held.len());
    }
}
