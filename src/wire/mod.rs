//! Zero-copy views and builders for the protocols vswitch reads and writes.
//!
//! Each file is one protocol, in the smoltcp style: a `Packet<T: AsRef<[u8]>>` view whose
//! `new_checked` validates the length once, after which no getter panics; setters when
//! `T: AsMut<[u8]>`. Byte offsets live in a `field` module. Nothing here allocates, and nothing
//! here knows about switching: that is `crate::switch`.

pub mod arp;
pub mod checksum;
pub mod esp;
pub mod ethernet;
pub mod flow;
pub mod ipv4;
pub mod mac;
pub mod probe;
pub mod tcp;
pub mod udp;
pub mod vxlan;

pub use mac::MacAddr;

/// A span of bytes in a header, for the `field` modules of every protocol file.
pub type Field = core::ops::Range<usize>;
