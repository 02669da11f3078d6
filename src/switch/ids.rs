//! Newtypes for the switch's domain: network identifiers, ports, tunnel endpoints, time.

use std::fmt;
use std::net::Ipv4Addr;

/// A 24-bit VXLAN Network Identifier (RFC 7348 §5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize)]
pub struct Vni(u32);

impl Vni {
    pub const MAX: u32 = (1 << 24) - 1;

    /// `None` when the value does not fit in 24 bits.
    pub const fn new(v: u32) -> Option<Vni> {
        if v <= Vni::MAX {
            Some(Vni(v))
        } else {
            None
        }
    }

    /// A VNI known to fit, for constants (fails to compile, or panics, when it does not).
    pub const fn of(v: u32) -> Vni {
        match Vni::new(v) {
            Some(vni) => vni,
            None => panic!("a VNI has 24 bits"),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A local port of the switch (a TAP device or an AF_PACKET socket). Never reused while the
/// daemon runs, so a stale FDB entry can never point at a different container.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize)]
pub struct PortId(pub u32);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The underlay address of a VXLAN tunnel endpoint (a host running vswitchd or a kernel vxlan
/// device).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize)]
pub struct VtepAddr(pub Ipv4Addr);

impl fmt::Display for VtepAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Milliseconds on a monotonic clock chosen by the caller. The core never reads a clock: the
/// driver reads one per batch and passes it in, and tests pass a fake one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_secs(s: u64) -> Timestamp {
        Timestamp(s * 1000)
    }

    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn plus_millis(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}
