//! What the worker needs from a local port driver (TAP, AF_PACKET, or an in-memory port in
//! tests): non-blocking receive and send of whole Ethernet frames, and an fd to poll.

use crate::offload::{tso, vnet};
use std::borrow::Borrow;
use std::io;
use std::os::fd::RawFd;

/// A frame a port read.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    /// A TSO super-frame to be cut into segments (crate::offload::tso), described by its
    /// virtio_net_hdr. `None` for an ordinary frame with valid checksums.
    pub gso: Option<vnet::Header>,
}

impl Received {
    pub fn frame(len: usize) -> Received {
        Received { len, gso: None }
    }
}

pub trait PortDevice: Send {
    /// Reads one frame into `buf`. `Ok(None)` when nothing waits.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>>;
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Whether `send_gso` works: the device takes TCP super-frames with a virtio_net_hdr.
    fn accepts_gso(&self) -> bool {
        false
    }
    /// Whether `send_gso` also takes UDP runs (VIRTIO_NET_HDR_GSO_UDP_L4).
    fn accepts_udp_gso(&self) -> bool {
        false
    }
    /// Sends a coalesced super-frame (crate::offload::gro) described by `hdr`.
    fn send_gso(&mut self, _hdr: &vnet::Header, _frame: &[u8]) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
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
    /// Who made the port for what (api::Request::AttachNamespace's `attachment`).
    pub attachment: Option<String>,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted
}

/// `PortDevice` for a TAP queue a worker owns (`TapDevice`), and for one TAP queue shared by
/// every worker (`Arc<TapDevice>`, crate::control::attach::queues_per_port: one worker reads
/// it, all of them write to it; a write(2) to a TAP fd is one whole frame, safe from several
/// threads at once, so sharing needs no lock; the fd closes with the last holder).
macro_rules! tap_port_device {
    ($t:ty) => {
        impl PortDevice for $t {
            fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
                tap_recv(tap_of(self), buf)
            }

            fn send(&mut self, frame: &[u8]) -> io::Result<()> {
                tap_send(tap_of(self), frame)
            }

            fn accepts_gso(&self) -> bool {
                tap_of(self).options().vnet_hdr
            }

            fn accepts_udp_gso(&self) -> bool {
                tap_of(self).options().uso
            }

            fn send_gso(&mut self, hdr: &vnet::Header, frame: &[u8]) -> io::Result<()> {
                tap_send_gso(tap_of(self), hdr, frame)
            }

            fn fd(&self) -> RawFd {
                std::os::fd::AsRawFd::as_raw_fd(tap_of(self))
            }
        }
    };
}

fn tap_of<T: Borrow<crate::io::TapDevice>>(t: &T) -> &crate::io::TapDevice {
    t.borrow()
}

tap_port_device!(crate::io::TapDevice);
tap_port_device!(std::sync::Arc<crate::io::TapDevice>);

fn tap_recv(tap: &crate::io::TapDevice, buf: &mut [u8]) -> io::Result<Option<Received>> {
    if !tap.options().vnet_hdr {
        return match tap.read(buf) {
            Ok(n) => Ok(Some(Received::frame(n))),
            Err(e) if would_block(&e) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let mut raw = [0u8; vnet::HDR_LEN];
    let n = match tap.read_vnet(&mut raw, buf) {
        Ok(n) => n,
        Err(e) if would_block(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let hdr = vnet::Header::parse(&raw).unwrap_or_default();
    if hdr.gso_kind() != vnet::GSO_NONE {
        return Ok(Some(Received {
            len: n,
            gso: Some(hdr),
        }));
    }
    if hdr.flags & vnet::F_NEEDS_CSUM != 0 {
        tso::complete_checksum(&mut buf[..n], hdr.csum_start.into(), hdr.csum_offset.into());
    }
    Ok(Some(Received::frame(n)))
}

fn tap_send(tap: &crate::io::TapDevice, frame: &[u8]) -> io::Result<()> {
    if tap.options().vnet_hdr {
        // No offload asked of the kernel: checksums are complete, the frame is one MTU.
        return tap.write_vnet(&[0; vnet::HDR_LEN], frame).map(|_| ());
    }
    tap.write(frame).map(|_| ())
}

fn tap_send_gso(tap: &crate::io::TapDevice, hdr: &vnet::Header, frame: &[u8]) -> io::Result<()> {
    let mut raw = [0u8; vnet::HDR_LEN];
    hdr.emit(&mut raw);
    tap.write_vnet(&raw, frame).map(|_| ())
}

impl PortDevice for crate::io::PacketSocket {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        // A TSO super-frame from a peer with offloads on (veths have them by default) comes
        // with its header, for the worker to segment.
        match crate::io::PacketSocket::recv(self, buf) {
            Ok(info) => Ok(Some(Received {
                len: info.len,
                gso: info.gso.filter(|_| !info.truncated),
            })),
            Err(e) if would_block(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        crate::io::PacketSocket::send(self, frame).map(|_| ())
    }

    fn accepts_gso(&self) -> bool {
        true
    }

    fn send_gso(&mut self, hdr: &vnet::Header, frame: &[u8]) -> io::Result<()> {
        self.send_with(hdr, frame).map(|_| ())
    }

    fn fd(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self)
    }
}
