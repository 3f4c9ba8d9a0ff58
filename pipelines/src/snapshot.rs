//! The immutable configuration snapshot the workers run on, and the graph of stages it drives.
//!
//! The control thread compiles a config into a `Snapshot` and publishes it with `arc-swap`; a worker loads it
//! once per burst. Each table sits behind its own `Arc` so a small change can publish a new snapshot that
//! shares every unchanged table; learned state (MAC tables) is shared by every snapshot that has the domain.

use crate::bridge::BridgeDomain;
use crate::l2::{self, L2Ingress, L2Tables};
use crate::macvlan::MacvlanNet;
use crate::xconnect::{self, XconnectTable};
use dataplane::worker::{BurstCtx, Processor, TxBatches};
use dataplane::{Burst, DropReason};
use std::sync::Arc;

/// What an input port feeds.
#[derive(Clone, Debug, Default)]
pub enum PortRole {
    /// Nothing: frames are dropped as `no_route`.
    #[default]
    Unused,
    /// The cross-connect table.
    Xconnect,
    /// L2 domains (bridges, macvlan networks), by VLAN.
    L2(Box<L2Ingress>),
}

/// Everything a worker needs to process a burst, frozen.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Publication counter, increasing.
    pub generation: u64,
    /// Port names, by port index (for tracing and counters).
    pub port_names: Arc<Vec<String>>,
    /// What each input port feeds, by port index.
    pub roles: Arc<Vec<PortRole>>,
    /// Cross-connect table.
    pub xconnect: Arc<XconnectTable>,
    /// Bridge domains.
    pub bridges: Arc<Vec<BridgeDomain>>,
    /// Macvlan networks.
    pub macvlans: Arc<Vec<MacvlanNet>>,
}

/// Per-worker state that survives snapshot changes (learned tables arrive with the L3/NAT stages).
#[derive(Debug, Default)]
pub struct WorkerState {
    /// Bursts this worker processed.
    pub bursts: u64,
}

impl Processor for Snapshot {
    type State = WorkerState;

    fn generation(&self) -> u64 {
        self.generation
    }

    fn new_state(&self, _worker: usize) -> WorkerState {
        WorkerState::default()
    }

    #[inline]
    fn process(
        &self,
        state: &mut WorkerState,
        ctx: &BurstCtx,
        burst: &mut Burst,
        out: &mut TxBatches,
    ) {
        state.bursts += 1;
        match self.roles.get(ctx.in_port as usize) {
            Some(PortRole::Xconnect) => xconnect::process(&self.xconnect, ctx, burst, out),
            Some(PortRole::L2(ing)) => {
                let t = L2Tables {
                    bridges: &self.bridges,
                    macvlans: &self.macvlans,
                };
                l2::process(&t, ing, ctx, burst, out)
            }
            Some(PortRole::Unused) | None => {
                out.count_drops(DropReason::NoRoute, burst.len() as u64);
                burst.clear();
            }
        }
    }
}
