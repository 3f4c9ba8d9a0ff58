//! wharf control plane: the configuration model and its validation, compilation into immutable snapshots,
//! lock-free publication to the workers, the control thread and socket, the lab, and the `wharf` CLI.
#![warn(missing_docs)]

pub mod compile;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod hoststack;
pub mod ipam;
pub mod lab;
pub mod ports;
pub mod router;
