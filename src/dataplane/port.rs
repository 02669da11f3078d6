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

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted
}

impl PortDevice for crate::io::TapDevice {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if would_block(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.write(frame).map(|_| ())
    }

    fn fd(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self)
    }
}

impl PortDevice for crate::io::PacketSocket {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // A GSO super-frame (the peer has TSO on) is handed on whole; the core drops it as
        // larger than the MTU and counts it, which points the operator at the peer's offloads.
        match crate::io::PacketSocket::recv(self, buf) {
            Ok(info) => Ok(Some(info.len)),
            Err(e) if would_block(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        crate::io::PacketSocket::send(self, frame).map(|_| ())
    }

    fn fd(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self)
    }
}
