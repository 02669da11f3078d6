//! What the worker needs from a local port driver (TAP, AF_PACKET, or an in-memory port in
//! tests): non-blocking receive and send of whole Ethernet frames, and an fd to poll.

use std::io;
use std::os::fd::RawFd;

pub trait PortDevice: Send {
    /// Reads one frame into `buf`. `Ok(None)` when nothing waits.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// The descriptor that becomes readable when frames wait.
    fn fd(&self) -> RawFd;
}

/// Descriptive facts about a port for `show ports`, fixed at attach time.
#[derive(Debug, Clone)]
pub struct PortMeta {
    pub name: String,
    pub kind: &'static str,
    pub network: String,
    pub vni: u32,
    pub ifname: String,
    pub netns: Option<String>,
    /// Identity of the namespace file (device, inode), to match a later detach given by
    /// another path to the same namespace.
    pub netns_id: Option<(u64, u64)>,
    pub mac: Option<crate::wire::MacAddr>,
    pub ip: Option<ipnet::Ipv4Net>,
    pub mtu: u32,
}
