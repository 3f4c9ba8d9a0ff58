//! The control thread's loop: signals (SIGINT/SIGTERM stop, SIGHUP reloads) and the control socket.

use crate::ctl::Server;
use crate::router::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Flags set by signal handlers (async-signal-safe: the handler only stores a flag).
#[derive(Clone, Debug, Default)]
pub struct Signals {
    /// SIGINT or SIGTERM arrived (or someone asked to stop).
    pub stop: Arc<AtomicBool>,
    /// SIGHUP arrived and was not yet handled.
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// Registers SIGINT, SIGTERM and SIGHUP.
    pub fn install() -> std::io::Result<Signals> {
        let s = Signals::default();
        signal_hook::flag::register(signal_hook::consts::SIGINT, s.stop.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, s.stop.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGHUP, s.reload.clone())?;
        Ok(s)
    }
}

/// Runs the control duties until `signals.stop` is set.
pub fn control_loop(router: &mut Router, server: Option<&Server>, signals: &Signals) {
    while !signals.stop.load(Ordering::Relaxed) {
        if signals.reload.swap(false, Ordering::Relaxed) {
            // The router logs the outcome and counts it.
            tracing::info!("SIGHUP: reloading");
            let _ = router.reload();
        }
        if let Some(s) = server {
            s.poll(router);
        }
        router.tick();
        std::thread::sleep(Duration::from_millis(20));
    }
}
