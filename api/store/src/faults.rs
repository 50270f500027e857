//! A fault-injecting redb storage backend for tests: I/O errors, short (torn) writes, failed
//! fsyncs, a full disk (ENOSPC), and power cuts that lose every write not yet synced.
//!
//! The disk keeps two images, as redb's own crash tests do: `live` (what reads see) and `durable`
//! (what survives a power cut: the bytes as of the last successful `sync_data`). A crash stops
//! every later call; [`FaultDisk::image_after_crash`] gives what a restart finds — the durable
//! bytes plus, optionally, a random part of the unsynced writes (a page cache flushed halfway).
//! Faults come from a plan (the `n`-th call from now) or at random with a seeded generator, so
//! that a failing run can be replayed from its seed.

use std::io;
use std::ops::Bound;
use std::sync::Mutex;

use redb::{BackendError, StorageBackend};

/// `ENOSPC`: what a full disk answers a write that would grow a file.
pub const ENOSPC: i32 = 28;

/// A fault to inject into one backend call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with an I/O error and changes nothing.
    IoError,
    /// A write stores only the first half of its bytes, then fails (a torn write).
    ShortWrite,
    /// `sync_data` fails and persists nothing (the writes stay pending).
    SyncFailure,
    /// The call fails with `ENOSPC` and changes nothing.
    NoSpace,
    /// The power goes at this call: it and every later call fail.
    Crash,
}

/// Which backend call a planned fault waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Any of `read`, `write`, `set_len`, `sync_data`.
    Any,
    Read,
    Write,
    SetLen,
    Sync,
}

/// Counts of what the disk did, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub calls: u64,
    pub syncs: u64,
    pub faults: u64,
    pub crashed: bool,
}

#[derive(Debug, Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug)]
struct Disk {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Writes and resizes since the last successful sync, in order.
    pending: Vec<Pending>,
    /// Planned faults: (calls of the kind still to let pass, kind, fault).
    plan: Vec<(u64, Call, Fault)>,
    /// Random faults: per-mille chance per call, and the generator state.
    random: Option<(u32, u64)>,
    /// Bytes past which a write or resize fails with ENOSPC.
    capacity: Option<u64>,
    /// Whether `sync_data` succeeds without persisting anything (a lying disk).
    lying: bool,
    stats: FaultStats,
}

/// A redb backend on memory that fails when and how a test says.
#[derive(Debug)]
pub struct FaultDisk {
    disk: Mutex<Disk>,
}

fn apply(bytes: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::SetLen(len) => bytes.resize(*len as usize, 0),
        Pending::Write(offset, data) => {
            let end = *offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[*offset as usize..end].copy_from_slice(data);
        }
    }
}

/// xorshift64: enough randomness for choosing faults, reproducible from a seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn power_lost() -> io::Error {
    io::Error::other("injected fault: power lost")
}

impl Default for FaultDisk {
    fn default() -> Self {
        Self::from_image(Vec::new())
    }
}

impl FaultDisk {
    /// An empty disk with no faults planned.
    pub fn new() -> Self {
        Self::default()
    }

    /// A disk holding `image` (e.g. what [`FaultDisk::image_after_crash`] returned).
    pub fn from_image(image: Vec<u8>) -> Self {
        FaultDisk {
            disk: Mutex::new(Disk {
                live: image.clone(),
                durable: image,
                pending: Vec::new(),
                plan: Vec::new(),
                random: None,
                capacity: None,
                lying: false,
                stats: FaultStats::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Injects `fault` into the `n`-th call of kind `call` from now (1-based).
    pub fn inject(&self, n: u64, call: Call, fault: Fault) {
        self.lock().plan.push((n.max(1) - 1, call, fault));
    }

    /// Injects a random fault (I/O error, short write, failed sync, ENOSPC) into about
    /// `per_mille` of every thousand calls, chosen from `seed`; 0 turns it off.
    pub fn random_faults(&self, per_mille: u32, seed: u64) {
        self.lock().random = (per_mille > 0).then_some((per_mille, seed | 1));
    }

    /// Limits the disk to `bytes` (a full disk past them); `None` gives the space back.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// Makes `sync_data` succeed without persisting anything, as a disk that lies about its
    /// cache: a durability check must catch the writes such a disk loses.
    pub fn set_lying(&self, lying: bool) {
        self.lock().lying = lying;
    }

    /// The bytes in use now (the length of the live image).
    pub fn used(&self) -> u64 {
        self.lock().live.len() as u64
    }

    /// The power goes now: every later call fails.
    pub fn crash(&self) {
        self.lock().stats.crashed = true;
    }

    pub fn stats(&self) -> FaultStats {
        self.lock().stats
    }

    /// What a restart finds: the durable bytes plus each unsynced write or resize with
    /// probability `keep_unsynced` (0.0 to 1.0), chosen from `seed`.
    pub fn image_after_crash(&self, keep_unsynced: f64, seed: u64) -> Vec<u8> {
        let disk = self.lock();
        let mut image = disk.durable.clone();
        let mut state = seed | 1;
        for op in &disk.pending {
            if (next(&mut state) % 1000) as f64 >= keep_unsynced * 1000.0 {
                continue;
            }
            apply(&mut image, op);
        }
        image
    }

    /// Takes the fault for this call, if any: a planned one first, else a random one.
    fn fault_for(disk: &mut Disk, call: Call) -> Option<Fault> {
        disk.stats.calls += 1;
        if disk.stats.crashed {
            return Some(Fault::Crash);
        }
        let mut hit = None;
        for (i, (left, kind, _)) in disk.plan.iter_mut().enumerate() {
            if *kind == Call::Any || *kind == call {
                if *left == 0 {
                    hit = Some(i);
                    break;
                }
                *left -= 1;
            }
        }
        let fault = match hit {
            Some(i) => Some(disk.plan.remove(i).2),
            None => disk.random.as_mut().and_then(|(per_mille, state)| {
                if next(state) % 1000 >= u64::from(*per_mille) {
                    return None;
                }
                let choices: &[Fault] = match call {
                    Call::Write => &[Fault::IoError, Fault::ShortWrite, Fault::NoSpace],
                    Call::Sync => &[Fault::SyncFailure, Fault::IoError],
                    Call::SetLen => &[Fault::IoError, Fault::NoSpace],
                    _ => &[Fault::IoError],
                };
                Some(choices[(next(state) % choices.len() as u64) as usize])
            }),
        };
        if let Some(fault) = fault {
            disk.stats.faults += 1;
            if fault == Fault::Crash {
                disk.stats.crashed = true;
            }
        }
        fault
    }

    fn error(fault: Fault) -> io::Error {
        match fault {
            Fault::NoSpace => io::Error::from_raw_os_error(ENOSPC),
            Fault::Crash => power_lost(),
            Fault::IoError => io::Error::other("injected fault: I/O error"),
            Fault::ShortWrite => io::Error::other("injected fault: short write"),
            Fault::SyncFailure => io::Error::other("injected fault: fsync failed"),
        }
    }

    fn check_space(disk: &Disk, end: u64) -> io::Result<()> {
        match disk.capacity {
            Some(capacity) if end > capacity && end > disk.live.len() as u64 => {
                Err(io::Error::from_raw_os_error(ENOSPC))
            }
            _ => Ok(()),
        }
    }
}

impl StorageBackend for FaultDisk {
    fn len(&self) -> io::Result<u64> {
        let disk = self.lock();
        if disk.stats.crashed {
            return Err(power_lost());
        }
        Ok(disk.live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let mut disk = self.lock();
        if let Some(fault) = Self::fault_for(&mut disk, Call::Read) {
            return Err(Self::error(fault));
        }
        let start = offset as usize;
        let bytes = disk
            .live
            .get(start..start + out.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut disk = self.lock();
        if let Some(fault) = Self::fault_for(&mut disk, Call::SetLen) {
            return Err(Self::error(fault));
        }
        Self::check_space(&disk, len)?;
        let op = Pending::SetLen(len);
        apply(&mut disk.live, &op);
        disk.pending.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut disk = self.lock();
        disk.stats.syncs += 1;
        if let Some(fault) = Self::fault_for(&mut disk, Call::Sync) {
            return Err(Self::error(fault));
        }
        if !disk.lying {
            disk.durable = disk.live.clone();
            disk.pending.clear();
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut disk = self.lock();
        let fault = Self::fault_for(&mut disk, Call::Write);
        if fault == Some(Fault::ShortWrite) {
            let op = Pending::Write(offset, data[..data.len() / 2].to_vec());
            apply(&mut disk.live, &op);
            disk.pending.push(op);
        }
        if let Some(fault) = fault {
            return Err(Self::error(fault));
        }
        Self::check_space(&disk, offset + data.len() as u64)?;
        let op = Pending::Write(offset, data.to_vec());
        apply(&mut disk.live, &op);
        disk.pending.push(op);
        Ok(())
    }

    // One process owns this disk: locks always succeed.
    fn try_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }
    fn try_lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }
    fn lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }
    fn lock_shared_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }
    fn unlock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }
    fn query_lock_range(&self, _: Bound<u64>, _: Bound<u64>) -> Result<bool, BackendError> {
        Ok(false)
    }
}
