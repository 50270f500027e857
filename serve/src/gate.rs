//! Counting open connections, in all and per client IP, against [`ConnectionLimits`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

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
