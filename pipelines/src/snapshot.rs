//! The immutable configuration snapshot the workers run on, and the graph of stages it drives.
//!
//! The control thread compiles a config into a `Snapshot` and publishes it with `arc-swap`; a worker loads it
//! once per burst. Each table sits behind its own `Arc` so a small change can publish a new snapshot that
//! shares every unchanged table.

use crate::xconnect::{self, XconnectTable};
use dataplane::worker::{BurstCtx, Processor, TxBatches};
use dataplane::Burst;
use std::sync::Arc;

/// Everything a worker needs to process a burst, frozen.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Publication counter, increasing.
    pub generation: u64,
    /// Port names, by port index (for tracing and counters).
    pub port_names: Arc<Vec<String>>,
    /// Cross-connect table.
    pub xconnect: Arc<XconnectTable>,
}

/// Per-worker state that survives snapshot changes (learned tables arrive with the L2/L3/NAT stages).
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
        xconnect::process(&self.xconnect, ctx, burst, out);
    }
}
