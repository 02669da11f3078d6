//! Cluster coordination: how switches on different hosts share state.
//!
//! - `etcd`: a small blocking client for etcd v3's JSON gateway (key-value reads and writes,
//!   transactions, leases, prefix watches).

pub mod etcd;
