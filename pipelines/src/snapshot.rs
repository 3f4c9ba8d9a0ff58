//! The immutable configuration snapshot the workers run on, and the graph of stages it drives.
//!
//! The control thread compiles a config into a `Snapshot` and publishes it with `arc-swap`; a worker loads it
//! once per burst. Each table sits behind its own `Arc` so a small change can publish a new snapshot that
//! shares every unchanged table; learned state (MAC tables) is shared by every snapshot that has the domain.

use crate::bridge::BridgeDomain;
use crate::ipvlan::IpvlanNet;
use crate::l2::{self, L2Ingress, L2Tables};
use crate::l3::{self, L3Ctx, L3State, L3Tables};
use crate::macvlan::MacvlanNet;
use crate::vxlan::encap::{self, EncapState};
use crate::vxlan::VxlanTables;
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
    /// A routed port: every frame goes to router interface `.0`.
    L3(u16),
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
    /// Ipvlan L2 networks.
    pub ipvlans: Arc<Vec<IpvlanNet>>,
    /// Router interfaces, FIBs, adjacencies and the neighbour cache.
    pub l3: Arc<L3Tables>,
    /// VNIs, local VTEP addresses and remote VTEPs of the overlay networks.
    pub vxlan: Arc<VxlanTables>,
}

/// Per-worker state that survives snapshot changes.
#[derive(Debug)]
pub struct WorkerState {
    /// Worker index.
    pub worker: usize,
    /// Bursts this worker processed.
    pub bursts: u64,
    /// Frames the L2 stage hands to the router (a bridge's gateway), reused every burst.
    pub to_l3: Burst,
    /// Packets waiting for a neighbour, the ICMP budget.
    pub l3: L3State,
    /// Frames staged for VXLAN encapsulation, being worked on.
    pub encap: EncapState,
}

impl WorkerState {
    /// State for worker `worker`.
    pub fn new(worker: usize) -> WorkerState {
        WorkerState {
            worker,
            bursts: 0,
            to_l3: Burst::new(dataplane::MAX_BURST),
            l3: L3State::default(),
            encap: EncapState::default(),
        }
    }
}

impl Snapshot {
    #[inline]
    fn l3_ctx(&self, now_ns: u64, worker: usize) -> L3Ctx<'_> {
        L3Ctx {
            worker: worker as u16,
            t: &self.l3,
            bridges: &self.bridges,
            generation: self.generation,
            now_ns,
            now_s: (now_ns / 1_000_000_000) as u32,
            vxlan: &self.vxlan,
        }
    }
}

impl Processor for Snapshot {
    type State = WorkerState;

    fn generation(&self) -> u64 {
        self.generation
    }

    fn new_state(&self, worker: usize) -> WorkerState {
        WorkerState::new(worker)
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
                    ipvlans: &self.ipvlans,
                };
                l2::process(&t, ing, ctx, burst, &mut state.to_l3, out);
                if !state.to_l3.is_empty() {
                    l3::process(
                        &self.l3_ctx(ctx.now_ns, ctx.worker),
                        &mut state.l3,
                        &mut state.to_l3,
                        out,
                    );
                }
            }
            Some(PortRole::L3(iface)) => {
                for p in burst.iter_mut() {
                    let m = p.meta_mut();
                    m.scratch[l3::SCRATCH_IFACE] = *iface as u32;
                    // Fresh from a port: not handed over by another worker, whatever a buffer that went
                    // round a ring cable carried.
                    m.scratch[crate::nat::stage::SCRATCH_NAT] = 0;
                }
                l3::process(
                    &self.l3_ctx(ctx.now_ns, ctx.worker),
                    &mut state.l3,
                    burst,
                    out,
                )
            }
            Some(PortRole::Unused) | None => {
                out.count_drops(DropReason::NoRoute, burst.len() as u64);
                burst.clear();
            }
        }
        if out.staged() > 0 {
            encap::run(
                &self.l3_ctx(ctx.now_ns, ctx.worker),
                &mut state.l3,
                &mut state.encap,
                out,
            );
        }
    }

    #[inline]
    fn has_deferred(&self, state: &WorkerState, now_ns: u64) -> bool {
        !self.l3.ifaces.is_empty()
            && l3::has_deferred(&self.l3_ctx(now_ns, state.worker), &state.l3, state.worker)
    }

    fn run_deferred(&self, state: &mut WorkerState, ctx: &BurstCtx, out: &mut TxBatches) {
        let c = self.l3_ctx(ctx.now_ns, ctx.worker);
        l3::run_deferred(&c, &mut state.l3, state.worker, out);
        if out.staged() > 0 {
            encap::run(&c, &mut state.l3, &mut state.encap, out);
        }
    }
}
