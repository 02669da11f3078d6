//! AF_PACKET sockets: send and receive whole Ethernet frames on an existing interface (packet(7)).
//!
//! A [`PacketSocket`] is bound to one interface of the network namespace it was opened in (open
//! it inside [`super::run_in_netns`] for another namespace; it keeps working from any thread).
//! It is promiscuous, does not see its own sends (`PACKET_IGNORE_OUTGOING`), and uses
//! `PACKET_VNET_HDR` so the kernel tells us about checksum and segmentation offloads of what it
//! hands up. `recv`/`send` are nonblocking, take `&self` and move one frame per call.

use super::{ifindex_of, IoError};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// From include/uapi/linux/if_packet.h.
mod sys {
    pub const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
    pub const PACKET_MR_PROMISC: libc::c_ushort = 1;
    pub const PACKET_VNET_HDR: libc::c_int = 15;
    pub const PACKET_IGNORE_OUTGOING: libc::c_int = 23; // Linux 4.20

    /// struct packet_mreq
    #[repr(C)]
    pub struct PacketMreq {
        pub mr_ifindex: libc::c_int,
        pub mr_type: libc::c_ushort,
        pub mr_alen: libc::c_ushort,
        pub mr_address: [u8; 8],
    }
}

/// `struct virtio_net_hdr` (include/uapi/linux/virtio_net.h), without `num_buffers`. Its fields
/// are in native byte order on AF_PACKET (the kernel uses the legacy, host-endian layout).
use crate::offload::vnet;

/// What [`PacketSocket::recv`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvInfo {
    /// Bytes of frame written to `buf`.
    pub len: usize,
    /// A GSO super-frame (TSO from a peer with offloads on), described by its header: larger
    /// than the MTU, to be cut into segments (crate::offload::tso) by the caller.
    pub gso: Option<vnet::Header>,
    /// The frame was longer than `buf` and was cut to `len`.
    pub truncated: bool,
}

#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl PacketSocket {
    /// Opens a socket on interface `ifname` of the calling thread's network namespace.
    pub fn open(ifname: &str) -> Result<PacketSocket, IoError> {
        let ifindex = ifindex_of(ifname)?.ok_or_else(|| {
            IoError::sys(
                format!("opening packet socket on {ifname}: no such interface"),
                io::Error::from_raw_os_error(libc::ENODEV),
            )
        })?;
        let op = |what: &str| format!("opening packet socket on {ifname}: {what}");
        // Protocol 0 receives nothing until bind, so no frame from another interface sneaks in.
        // SAFETY: plain socket(2); the fd is owned right after.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(IoError::last_os(op("socket")));
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        setsockopt(&fd, libc::SOL_PACKET, sys::PACKET_VNET_HDR, &one)
            .map_err(|e| IoError::sys(op("PACKET_VNET_HDR"), e))?;
        setsockopt(&fd, libc::SOL_PACKET, sys::PACKET_IGNORE_OUTGOING, &one)
            .map_err(|e| IoError::sys(op("PACKET_IGNORE_OUTGOING (needs Linux 4.20)"), e))?;

        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `sll` is a valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(IoError::last_os(op("bind")));
        }
        let mreq = sys::PacketMreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: sys::PACKET_MR_PROMISC,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(&fd, libc::SOL_PACKET, sys::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| IoError::sys(op("enabling promiscuous mode"), e))?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// Opens a socket like `open` that joins fanout group `group` (PACKET_FANOUT_HASH): the
    /// sockets of one group share the interface's frames by flow hash, each frame to one of
    /// them, a flow always to the same one. One per worker; sending works from any.
    pub fn open_fanout(ifname: &str, group: u16) -> Result<PacketSocket, IoError> {
        const PACKET_FANOUT: libc::c_int = 18;
        const PACKET_FANOUT_HASH: u32 = 0;
        let s = PacketSocket::open(ifname)?;
        let arg: u32 = u32::from(group) | (PACKET_FANOUT_HASH << 16);
        setsockopt(&s.fd, libc::SOL_PACKET, PACKET_FANOUT, &arg)
            .map_err(|e| IoError::sys(format!("joining fanout group {group} on {ifname}"), e))?;
        Ok(s)
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Receives one frame into `buf`, completing its L4 checksum if the kernel left it partial.
    /// `WouldBlock` when nothing is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<RecvInfo> {
        let mut hdr = [0u8; vnet::HDR_LEN];
        let mut iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            },
        ];
        // SAFETY: all-zero is a valid msghdr; the iovecs point at live buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        // SAFETY: `msg` describes valid, writable buffers.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < vnet::HDR_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "packet socket returned less than a virtio_net_hdr",
            ));
        }
        let len = n - vnet::HDR_LEN;
        let truncated = msg.msg_flags & libc::MSG_TRUNC != 0;
        let h = vnet::Header::parse(&hdr).unwrap_or_default();
        let gso = (h.gso_kind() != vnet::GSO_NONE).then_some(h);
        if h.flags & vnet::F_NEEDS_CSUM != 0 && gso.is_none() && !truncated {
            complete_checksum(
                &mut buf[..len],
                h.csum_start as usize,
                h.csum_offset as usize,
            );
        }
        Ok(RecvInfo {
            len,
            gso,
            truncated,
        })
    }

    /// Sends one frame as is (a zeroed vnet header asks for no offload).
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.send_with(&vnet::Header::default(), frame)
    }

    /// Sends one frame behind `hdr`: a TCP super-frame with a TSO header is segmented by the
    /// kernel only if and where it must be.
    pub fn send_with(&self, h: &vnet::Header, frame: &[u8]) -> io::Result<usize> {
        let mut hdr = [0u8; vnet::HDR_LEN];
        h.emit(&mut hdr);
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: the iovecs point at live buffers; writev only reads them.
        let n =
            unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize).saturating_sub(vnet::HDR_LEN))
    }
}

/// Finishes a checksum the sender offloaded (`CHECKSUM_PARTIAL`, VIRTIO_NET_HDR_F_NEEDS_CSUM).
///
/// The sending stack summed the pseudo-header and stored that sum, uncomplemented, in the
/// checksum field at `csum_start + csum_offset`; the hardware (here: nobody, since veth/tap only
/// pass the skb along) is expected to add the ones-complement sum of everything from
/// `csum_start` to the end and store its complement. Summing the field along with the data does
/// exactly that, as `skb_checksum_help` does in the kernel. Out-of-range offsets (from a
/// misbehaving peer) leave the frame untouched.
pub use crate::offload::tso::complete_checksum;

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ones-complement sum check over an IPv4/UDP frame, pseudo-header included.
    fn udp_checksum_ok(f: &[u8]) -> bool {
        let ihl = ((f[14] & 0x0f) as usize) * 4;
        let udp = &f[14 + ihl..];
        let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
        let mut sum: u64 = 0;
        let mut add = |b: &[u8]| {
            for c in b.chunks(2) {
                sum += (u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])) as u64;
            }
        };
        add(&f[26..34]);
        add(&[0, 17]);
        add(&(udp_len as u16).to_be_bytes());
        add(&udp[..udp_len]);
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    #[test]
    fn completes_partial_udp_checksum() {
        // Ethernet + IPv4 (10.0.0.1 -> 10.0.0.2) + UDP 1000 -> 2000 with 3 payload bytes.
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[
            0x45, 0, 0, 31, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 11, 0, 0, b'a', b'b', b'c']);
        // What the sending stack leaves: the folded pseudo-header sum, not complemented.
        let pseudo: u32 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 11;
        f[40..42].copy_from_slice(&(pseudo as u16).to_be_bytes());
        assert!(!udp_checksum_ok(&f));
        complete_checksum(&mut f, 34, 6);
        assert!(udp_checksum_ok(&f));
    }

    #[test]
    fn bad_offsets_are_ignored() {
        let mut f = vec![1u8; 20];
        complete_checksum(&mut f, 30, 6);
        complete_checksum(&mut f, 10, 9);
        complete_checksum(&mut f, usize::MAX, usize::MAX);
        assert_eq!(f, vec![1u8; 20]);
    }

    #[test]
    fn missing_interface() {
        let e = PacketSocket::open("vsw-nope0").unwrap_err();
        assert!(e.to_string().contains("vsw-nope0"), "{e}");
    }
}
