//! vswitch: a userspace VXLAN virtual switch for container overlay networks.
//!
//! Where a packet goes, by module:
//! - `wire`: bytes → typed views and back (Ethernet, ARP, IPv4, VXLAN). No decisions.
//! - `switch`: the sans-IO forwarding core. `Switch::process` takes a frame and returns what to
//!   do with it; FDB (MAC learning), neighbour table (proxy-ARP), networks, drop reasons.
//! - `io`: the only place with syscalls: TAP devices, AF_PACKET sockets, the underlay UDP socket,
//!   netlink and network namespaces.
//! - `dataplane`: the worker event loop that moves frames between `io` and `switch`.
//! - `control`: config file, Unix-socket API, attach/detach.
//! - `cluster`: shared state between hosts (an etcd client).

pub mod cluster;
pub mod control;
pub mod crypto;
pub mod dataplane;
pub mod docker;
pub mod io;
pub mod offload;
pub mod switch;
pub mod wire;
