//! The burst port API (DPDK's `rte_eth_rx_burst`/`rte_eth_tx_burst` shape) and its backends.
//!
//! A [`Port`] is shared by all workers; each of its queues is opened once with [`Port::open_queue`] and the
//! returned [`PortQueue`] is owned by one worker thread, so rx and tx on a queue need no lock. Calls are per
//! burst, never per packet: one dynamic dispatch per burst is the only indirection on the fast path.
//!
//! Backends: [`ring`] (in-process pairs), [`pcap`] (replay and capture files), [`afpacket`] (Linux AF_PACKET
//! with TPACKET_V3 rings), `dpdk` (DPDK poll-mode drivers, behind the `dpdk` feature).

pub mod afpacket;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod pcap;
pub mod ring;

use crate::burst::Burst;
use crate::counters::PortCounters;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a port tells about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Name from the config.
    pub name: String,
    /// Backend name (`ring`, `pcap`, `afpacket`, ...).
    pub backend: &'static str,
    /// Number of queues (one per worker).
    pub queues: u16,
    /// MAC address, when the port has one.
    pub mac: Option<[u8; 6]>,
    /// MTU in bytes (L3, as `ip link` reports it).
    pub mtu: u32,
    /// Carrier state.
    pub link_up: bool,
    /// How received frames spread over the queues, when it can be predicted.
    pub steering: crate::rss::Steering,
}

/// Errors opening or using a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A system call failed.
    #[error("port {port}: {op} failed: {err}")]
    Io {
        /// Port name.
        port: String,
        /// What we were doing.
        op: String,
        /// The OS error.
        err: std::io::Error,
    },
    /// The queue does not exist.
    #[error("port {port}: queue {queue} does not exist (the port has {queues})")]
    NoSuchQueue {
        /// Port name.
        port: String,
        /// Asked queue.
        queue: u16,
        /// Queue count.
        queues: u16,
    },
    /// The queue is already owned by someone.
    #[error("port {port}: queue {queue} is already open")]
    QueueTaken {
        /// Port name.
        port: String,
        /// Asked queue.
        queue: u16,
    },
    /// Anything else, said in words.
    #[error("port {port}: {msg}")]
    Other {
        /// Port name.
        port: String,
        /// What is wrong.
        msg: String,
    },
}

/// A network port with one or more queues.
pub trait Port: Send + Sync {
    /// Name, backend, queues, MAC, MTU, link.
    fn info(&self) -> PortInfo;
    /// Counters summed over the queues.
    fn counters(&self) -> PortCounters;
    /// Takes ownership of queue `queue` for rx and tx. Each queue can be open once at a time.
    fn open_queue(&self, queue: u16) -> Result<Box<dyn PortQueue>, PortError>;
}

/// One queue of a port, owned by one thread.
pub trait PortQueue: Send {
    /// Receives up to `burst.room()` frames, appended to `burst`. Returns how many.
    fn rx_burst(&mut self, burst: &mut Burst) -> usize;
    /// Transmits frames from the front of `burst`, removing those it took (sent, or dropped and counted by
    /// the backend). Frames it could not take now stay in `burst`, in order. Returns how many it took.
    fn tx_burst(&mut self, burst: &mut Burst) -> usize;
    /// Asks the queue to set [`crate::pkt::Meta::in_port`] to `port` on every packet it receives, as part of the
    /// metadata it writes anyway; true if it will. The worker otherwise sets it in a pass of its own over each
    /// burst.
    fn stamp_in_port(&mut self, _port: u16) -> bool {
        false
    }
}

/// Bookkeeping that enforces "each queue open once": one flag per queue, released by [`QueueClaim`]'s drop.
#[derive(Debug)]
pub struct QueueClaims {
    port: String,
    taken: Vec<std::sync::Arc<AtomicBool>>,
}

impl QueueClaims {
    /// Claims for `queues` queues of port `port`.
    pub fn new(port: &str, queues: u16) -> QueueClaims {
        QueueClaims {
            port: port.to_string(),
            taken: (0..queues).map(|_| Default::default()).collect(),
        }
    }

    /// Claims queue `q`, or says why not.
    pub fn claim(&self, q: u16) -> Result<QueueClaim, PortError> {
        let flag = self
            .taken
            .get(q as usize)
            .ok_or_else(|| PortError::NoSuchQueue {
                port: self.port.clone(),
                queue: q,
                queues: self.taken.len() as u16,
            })?;
        if flag.swap(true, Ordering::AcqRel) {
            return Err(PortError::QueueTaken {
                port: self.port.clone(),
                queue: q,
            });
        }
        Ok(QueueClaim(flag.clone()))
    }
}

/// Ownership of one queue; releases it when dropped.
#[derive(Debug)]
pub struct QueueClaim(std::sync::Arc<AtomicBool>);

impl Drop for QueueClaim {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
