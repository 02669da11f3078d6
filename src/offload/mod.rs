//! Offloads: what the kernel would do in hardware or in its GSO layer, done here so that a
//! container's TCP can hand us 64 KB at a time through its TAP device (IFF_VNET_HDR + TSO).
//! Sans-IO: frames in, frames out, in the caller's buffers.

pub mod gro;
pub mod tso;
pub mod vnet;
