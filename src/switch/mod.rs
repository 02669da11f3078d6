//! The sans-IO forwarding core.
pub mod ids;
pub use ids::{PortId, Timestamp, Vni, VtepAddr};
