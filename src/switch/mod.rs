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

/// Gives back a map's room once it holds less than a quarter of what it could: after thousands
/// of ports went, their tables keep the size of the peak otherwise. Control-side and
/// per-change only (never per packet: it reallocates); growing again doubles as usual, so a
/// map that shrinks and grows around one size does not reallocate each time.
pub(crate) fn shrink_sparse<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher>(
    map: &mut std::collections::HashMap<K, V, S>,
) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}
