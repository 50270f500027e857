//! A test-local TCP load balancer on loopback: each accepted connection goes to the first
//! backend that accepts one (dead backends are skipped), bytes copied both ways until either
//! side closes. Clients of several API servers (nodes, kubectl, kube-rs, Python) are given its
//! address, so killing one server sends their next connections to the next: TLS passes through
//! untouched (every server's certificate names `127.0.0.1`).
//!
//! Threads, not tasks: it serves synchronous and asynchronous tests alike, needs no runtime, and
//! carries a test's handful of connections.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a backend gets to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

struct Shared {
    backends: Mutex<Vec<SocketAddr>>,
    /// Every connection still open (both ends), shut down when the balancer stops.
    open: Mutex<std::collections::HashMap<usize, (TcpStream, TcpStream)>>,
    next_id: AtomicUsize,
    stopped: AtomicBool,
    /// Connections forwarded so far, per backend index at the time.
    forwarded: Mutex<Vec<(SocketAddr, usize)>>,
    refused: AtomicUsize,
}

/// A running balancer; dropping it stops accepting and closes every connection.
pub struct Balancer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Balancer {
    /// Listens on a free loopback port and forwards to `backends`, tried in order.
    pub fn start(backends: &[SocketAddr]) -> io::Result<Balancer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            backends: Mutex::new(backends.to_vec()),
            open: Mutex::new(std::collections::HashMap::new()),
            next_id: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            forwarded: Mutex::new(Vec::new()),
            refused: AtomicUsize::new(0),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("test-lb-accept".into())
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(Balancer {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`, the URL of the API servers behind it.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Replaces the backends (tried in this order) for new connections.
    pub fn set_backends(&self, backends: &[SocketAddr]) {
        *lock(&self.shared.backends) = backends.to_vec();
    }

    /// How many connections went to `backend` so far.
    pub fn forwarded_to(&self, backend: SocketAddr) -> usize {
        lock(&self.shared.forwarded)
            .iter()
            .find(|(a, _)| *a == backend)
            .map_or(0, |(_, n)| *n)
    }

    /// Connections closed at once because no backend accepted them.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stopped`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for (_, (a, b)) in lock(&self.shared.open).drain() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("test-lb-conn".into())
            .spawn(move || forward(client, shared));
    }
}

/// Connects `client` to the first backend that accepts, then copies both ways.
fn forward(client: TcpStream, shared: Arc<Shared>) {
    let backends = lock(&shared.backends).clone();
    let Some((addr, backend)) = backends.iter().find_map(|addr| {
        TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
            .ok()
            .map(|s| (*addr, s))
    }) else {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut forwarded = lock(&shared.forwarded);
        match forwarded.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, n)) => *n += 1,
            None => forwarded.push((addr, 1)),
        }
    }
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let (Ok(client2), Ok(backend2)) = (client.try_clone(), backend.try_clone()) else {
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    if let (Ok(a), Ok(b)) = (client.try_clone(), backend.try_clone()) {
        lock(&shared.open).insert(id, (a, b));
    }
    let up = std::thread::Builder::new()
        .name("test-lb-up".into())
        .spawn(move || copy(client2, backend2));
    copy(backend, client);
    if let Ok(up) = up {
        let _ = up.join();
    }
    lock(&shared.open).remove(&id);
}

/// Copies `from` to `to` until `from` ends; then ends `to`'s writing half, or both sockets
/// entirely on an error (a killed backend resets, and the client must see its connection end).
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server answering with its tag then echoing.
    fn echo(tag: u8) -> (SocketAddr, std::thread::JoinHandle<()>, Arc<AtomicBool>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            for s in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let mut s = s.unwrap();
                std::thread::spawn(move || {
                    let _ = s.write_all(&[tag]);
                    let mut buf = [0u8; 16];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, handle, stop)
    }

    fn first_byte(addr: SocketAddr) -> Option<u8> {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(1) => {
                s.write_all(b"hi").unwrap();
                let mut back = [0u8; 2];
                s.read_exact(&mut back).unwrap();
                assert_eq!(&back, b"hi");
                Some(b[0])
            }
            _ => None,
        }
    }

    #[test]
    fn forwards_to_the_first_live_backend() {
        let (a, a_thread, a_stop) = echo(b'a');
        let (b, _b_thread, _) = echo(b'b');
        let lb = Balancer::start(&[a, b]).unwrap();
        assert_eq!(first_byte(lb.addr()), Some(b'a'));
        // A stops listening: the next connection goes to B.
        a_stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(a);
        a_thread.join().unwrap();
        assert_eq!(first_byte(lb.addr()), Some(b'b'));
        assert_eq!((lb.forwarded_to(a), lb.forwarded_to(b)), (1, 1));
        // No backend at all: the connection is closed.
        lb.set_backends(&[a]);
        assert_eq!(first_byte(lb.addr()), None);
        assert_eq!(lb.refused(), 1);
    }
}
