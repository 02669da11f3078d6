//! Watching what leaves the host: an AF_PACKET socket that sees the IPv4 UDP datagrams the
//! host sends from one address and port to one port, on any device. The prober uses it to
//! check that a datagram it wrote to the tunnel device (crate::io::tunnel) was forwarded out
//! of the host, where no peer answers its probes (kernel VXLAN peers): a firewall's FORWARD
//! chain that drops it would otherwise drop every super-frame unseen.
//!
//! Thread-safety: one control thread (the prober's); opened for one check and closed after.

use super::bpf::{self, ins};
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ETH_P_IP: u32 = 0x0800;
const IPPROTO_UDP: u32 = 17;

/// The classic BPF program that keeps only datagrams the host sends (`PACKET_OUTGOING`) that
/// are IPv4 UDP, unfragmented, from `src` to port `dst_port`. On a `SOCK_DGRAM` packet socket
/// the offsets count from the IP header.
fn program(src: SocketAddrV4, dst_port: u16) -> [libc::sock_filter; 17] {
    use libc::{BPF_ABS, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD};
    use libc::{BPF_LDX, BPF_MSH, BPF_RET, BPF_W};
    const LD_W: u32 = BPF_LD | BPF_W | BPF_ABS;
    const LD_H: u32 = BPF_LD | BPF_H | BPF_ABS;
    const LD_B: u32 = BPF_LD | BPF_B | BPF_ABS;
    const JEQ: u32 = BPF_JMP | BPF_JEQ | BPF_K;
    // Jumps count the instructions skipped: `to_drop(i)` from instruction i to the last.
    const fn to_drop(i: u8) -> u8 {
        16 - i - 1
    }
    [
        ins(LD_W, 0, 0, bpf::AD_PKTTYPE),
        ins(JEQ, 0, to_drop(1), bpf::PACKET_OUTGOING),
        ins(LD_W, 0, 0, bpf::AD_PROTOCOL),
        ins(JEQ, 0, to_drop(3), ETH_P_IP),
        ins(LD_B, 0, 0, 9),
        ins(JEQ, 0, to_drop(5), IPPROTO_UDP),
        ins(LD_W, 0, 0, 12),
        ins(JEQ, 0, to_drop(7), u32::from_be_bytes(src.ip().octets())),
        // Not a fragment: no more-fragments flag, offset 0.
        ins(LD_H, 0, 0, 6),
        ins(BPF_JMP | BPF_JSET | BPF_K, to_drop(9), 0, 0x3fff),
        // X = the IP header's length; then the UDP ports.
        ins(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0),
        ins(BPF_LD | BPF_H | BPF_IND, 0, 0, 0),
        ins(JEQ, 0, to_drop(12), u32::from(src.port())),
        ins(BPF_LD | BPF_H | BPF_IND, 0, 0, 2),
        ins(JEQ, 0, to_drop(14), u32::from(dst_port)),
        ins(BPF_RET | BPF_K, 0, 0, 0xffff),
        ins(BPF_RET | BPF_K, 0, 0, 0),
    ]
}

/// Sees the host's outgoing IPv4 UDP datagrams from one address and port to one port.
pub struct EgressWatch {
    fd: OwnedFd,
}

impl EgressWatch {
    /// Watches datagrams the host sends from `src` to `dst_port`, on every device (root, or
    /// CAP_NET_RAW). The filter is in place before the socket takes any packet.
    pub fn open(src: SocketAddrV4, dst_port: u16) -> io::Result<EgressWatch> {
        // Protocol 0: no packet reaches the socket until bind names one, after the filter.
        // Bind names ETH_P_ALL, since only taps of every protocol see what the host sends.
        // SAFETY: plain socket(2); the descriptor is owned below.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        bpf::attach(
            fd.as_raw_fd(),
            libc::SO_ATTACH_FILTER,
            &program(src, dst_port),
        )?;
        // SAFETY: sockaddr_ll is plain data; all zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: bind with a sockaddr_ll of the size given; ifindex 0 is every device.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EgressWatch { fd })
    }

    /// Whether a datagram to `dst` carrying exactly `payload` left the host within `wait`.
    pub fn seen(&self, dst: SocketAddrV4, payload: &[u8], wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: poll on one pollfd that lives across the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return false;
            }
            if rc <= 0 {
                continue;
            }
            // SAFETY: recv into a buffer of the length given.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 && carries(&buf[..n as usize], dst, payload) {
                return true;
            }
        }
    }
}

/// Whether the IPv4 packet `ip` is a UDP datagram to `dst` whose payload is `payload`.
fn carries(ip: &[u8], dst: SocketAddrV4, payload: &[u8]) -> bool {
    let Some(&first) = ip.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    if ip.len() < ihl + 8 || ihl < 20 {
        return false;
    }
    let udp = &ip[ihl..];
    ip[16..20] == dst.ip().octets() && udp[2..4] == dst.port().to_be_bytes() && &udp[8..] == payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn every_jump_of_the_program_lands_inside_it_on_the_drop() {
        let p = program(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 40000), 4789);
        let last = p.len() - 1;
        assert_eq!((p[last].code, p[last].k), (0x06, 0), "ends by dropping");
        assert_eq!((p[last - 1].code, p[last - 1].k), (0x06, 0xffff));
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                for off in [ins.jt, ins.jf].into_iter().filter(|&o| o != 0) {
                    assert_eq!(i + 1 + usize::from(off), last, "instruction {i}");
                }
            }
        }
        assert_eq!(
            p[7].k, 0xc000_0201,
            "the source address, as the packet holds it"
        );
        assert_eq!((p[12].k, p[14].k), (40000, 4789));
    }

    #[test]
    fn a_datagram_is_the_probe_only_to_its_peer_with_its_bytes() {
        let dst = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 4789);
        let mut ip = vec![0u8; 28 + 3];
        ip[0] = 0x45;
        ip[16..20].copy_from_slice(&[192, 0, 2, 2]);
        ip[22..24].copy_from_slice(&4789u16.to_be_bytes());
        ip[28..].copy_from_slice(b"abc");
        assert!(carries(&ip, dst, b"abc"));
        assert!(!carries(&ip, dst, b"abd"));
        assert!(!carries(
            &ip,
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 3), 4789),
            b"abc"
        ));
        assert!(!carries(&ip[..20], dst, b""));
    }
}
