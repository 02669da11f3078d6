//! The sans-IO forwarding core: `Switch::decide` says what happens to a frame (decide.rs),
//! `commit` applies its learning and counters (core.rs), by a published `Topology`
//! (topology.rs); the drivers in `crate::io` and `crate::dataplane` carry out.

pub mod core;
pub mod counters;
pub mod decide;
pub mod dns;
pub mod dns_tcp;
pub mod drop_reason;
pub mod fdb;
pub mod garp;
pub mod ids;
pub mod limits;
pub mod multicast;
pub mod neigh;
pub mod service;
pub mod sync;
pub mod topology;
pub mod trace;

pub use self::core::{NetState, Switch};
pub use decide::{Action, Answer, Decision, Ingress, Lookup};
pub use drop_reason::DropReason;
pub use ids::{PortId, Timestamp, Vni, VtepAddr};
pub use limits::{LimitSettings, PortLimits, Rate};
pub use sync::TableUpdate;
pub use topology::{NetSecret, NetworkSpec, Published, SwitchSpec, Topology, TopologyError};
