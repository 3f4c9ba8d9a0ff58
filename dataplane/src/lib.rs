//! wharf dataplane: packet buffers and pools, bursts, the burst port API and its backends, poll-mode workers
//! pinned to cores, RSS-style flow dispatch and counters. It knows nothing of bridges or NAT: the packet work
//! is a [`worker::Processor`] handed in from outside (the `pipelines` crate).
#![warn(missing_docs)]

pub mod burst;
pub mod counters;
pub mod netns;
pub mod pkt;
pub mod pool;
pub mod port;
pub mod rss;
pub mod traffic;
pub mod worker;

pub use burst::{Burst, DEFAULT_BURST, MAX_BURST};
pub use counters::{DropReason, Event, PortCounters, WorkerCounters};
pub use pkt::{Meta, Pkt};
pub use pool::{Pool, PoolConfig};
pub use port::{Port, PortError, PortInfo, PortQueue};
