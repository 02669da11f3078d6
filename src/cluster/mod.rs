//! Cluster coordination: how switches on different hosts share state, through etcd.
//!
//! - `etcd`: a small blocking client for etcd v3's JSON gateway (key-value reads and writes,
//!   transactions, leases, prefix watches).
//! - `records`: the key layout and the JSON records under it.
//! - `view`: what this node knows of the cluster, kept current from watch events (pure).
//! - `reconcile`: the topology made to say what the view says (pure).
//! - `agent`: registration, leases, the watch, and the writes the control actor asks for.

pub mod agent;
pub mod etcd;
pub mod reconcile;
pub mod records;
pub mod view;
