//! The sans-IO forwarding core: `Switch::process_from_port` / `process_from_underlay` decide,
//! the drivers in `crate::io` and `crate::dataplane` carry out. See `core.rs`.

pub mod core;
pub mod counters;
pub mod drop_reason;
pub mod fdb;
pub mod garp;
pub mod ids;
pub mod neigh;
pub mod sync;

pub use self::core::{Action, NetIdx, NetworkSpec, Switch, SwitchError, SwitchSpec};
pub use drop_reason::DropReason;
pub use ids::{PortId, Timestamp, Vni, VtepAddr};
pub use sync::TableUpdate;
