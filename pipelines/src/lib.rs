//! wharf pipelines: zero-copy header views and the packet stages, pure functions of (burst, tables, state).
//!
//! The [`snapshot::Snapshot`] is what the control plane compiles and publishes; it implements
//! [`dataplane::worker::Processor`], so the workers run it without knowing what is inside.
#![warn(missing_docs)]

pub mod bridge;
pub mod ethernet;
pub mod fib;
pub mod ipvlan;
pub mod l2;
pub mod l3;
pub mod macvlan;
pub mod nat;
pub mod snapshot;
pub mod vlan;
pub mod vxlan;
pub mod wire;
pub mod xconnect;

pub use snapshot::Snapshot;
