//! Tunnel GSO: a container's TCP super-frame handed to the kernel whole, VXLAN headers in
//! front, for the kernel to cut into VXLAN datagrams where it must (Linux 6.17's UDP-tunnel
//! GSO for TUN/TAP, `TUN_F_UDP_TUNNEL_GSO`). What the kernel's own VXLAN device does: one
//! packet crosses the stack (and a veth underlay, whole) instead of one per MSS, and no
//! payload is copied or checksummed in user space.
//!
//! The packet is written to a TAP device of the host (crate::io::tunnel), which the kernel
//! forwards out of the underlay like any routed packet. Its header is the 24-byte
//! `virtio_net_hdr_v1_hash_tunnel` (include/uapi/linux/virtio_net.h): the basic header with
//! `gso_type` TCPV4 | UDP_TUNNEL_IPV4 and the inner checksum still partial, the hash fields
//! unused, then the offsets of the outer UDP header and of the inner IP header. The kernel
//! (virtio_net_hdr_tnl_to_skb) counts every offset from the start of the Ethernet frame.
//!
//! Sans-IO: the container's header and frame length in, the bytes to write in front of the
//! frame out.

use super::vnet::{self, Header};
use crate::wire::{checksum, vxlan};
use std::net::Ipv4Addr;

/// `sizeof(struct virtio_net_hdr_v1_hash_tunnel)`: what TUNSETVNETHDRSZ must be set to.
pub const VNET_HDR_LEN: usize = 24;
/// Outer Ethernet, IPv4, UDP and VXLAN headers.
pub const OUTER_LEN: usize = 14 + 20 + 8 + vxlan::HEADER_LEN;
/// Everything written in front of the container's frame.
pub const HEADER_LEN: usize = VNET_HDR_LEN + OUTER_LEN;

/// gso_type bit: the GSO packet is carried in UDP over IPv4.
pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
/// Where `outer_th_offset` and `inner_nh_offset` sit in the header.
const TUNNEL_FIELDS: usize = 20;

/// The outer headers of one tunnel packet.
#[derive(Debug, Clone, Copy)]
pub struct Outer {
    /// The TAP device's own address, so the kernel takes the frame as its own to route.
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub vni: u32,
    /// Forwarding takes one off: 65 leaves the host as 64, like the kernel's VXLAN device.
    pub ttl: u8,
}

/// Why a super-frame cannot go as one tunnel packet (it is then cut here, as before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotTunnelable {
    /// Not IPv4 TCP segmentation with a partial checksum: what a peer's receiver takes whole
    /// (crate::offload::superframe) is IPv4 TCP only.
    NotTcpV4,
    /// The outer IPv4 packet would exceed 65,535 bytes.
    TooLong,
}

/// Writes into `out` what goes in front of the container's super-frame `frame` whose TAP
/// header was `inner`, to send it to `o.dst` as one tunnel GSO packet.
pub fn header(
    out: &mut [u8; HEADER_LEN],
    inner: &Header,
    frame: &[u8],
    o: &Outer,
) -> Result<(), NotTunnelable> {
    if !is_tcp_v4_super_frame(inner, frame) {
        return Err(NotTunnelable::NotTcpV4);
    }
    let frame_len = frame.len();
    if 20 + 8 + vxlan::HEADER_LEN + frame_len > usize::from(u16::MAX) {
        return Err(NotTunnelable::TooLong);
    }
    let shift = OUTER_LEN as u16;
    let (hdr, outer) = out.split_at_mut(VNET_HDR_LEN);
    hdr.fill(0);
    Header {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: (inner.gso_type & vnet::GSO_ECN) | vnet::GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4,
        hdr_len: inner.hdr_len.saturating_add(shift),
        gso_size: inner.gso_size,
        csum_start: inner.csum_start + shift,
        csum_offset: inner.csum_offset,
    }
    .emit(hdr);
    let outer_th: u16 = 14 + 20;
    let inner_nh: u16 = shift + 14;
    hdr[TUNNEL_FIELDS..TUNNEL_FIELDS + 2].copy_from_slice(&outer_th.to_ne_bytes());
    hdr[TUNNEL_FIELDS + 2..TUNNEL_FIELDS + 4].copy_from_slice(&inner_nh.to_ne_bytes());

    write_eth_ip_udp(&mut outer[..42], o, vxlan::HEADER_LEN + frame_len);
    vxlan::emit(&mut outer[42..OUTER_LEN], o.vni);
    Ok(())
}

/// Whether `frame` is what a peer takes whole (crate::offload::superframe::is_whole_ipv4_tcp)
/// and the offsets of the header describe: TCP segmentation with a partial checksum, the TCP
/// header where the checksum starts.
fn is_tcp_v4_super_frame(inner: &Header, frame: &[u8]) -> bool {
    inner.gso_kind() == vnet::GSO_TCPV4
        && inner.flags & vnet::F_NEEDS_CSUM != 0
        && inner.gso_size != 0
        && inner.csum_start == 34
        && super::superframe::is_whole_ipv4_tcp(frame)
}

/// Ethernet, IPv4 (DF; ID 0, which the kernel numbers per segment) and UDP headers (no UDP
/// checksum, as RFC 7348 allows) for `udp_payload` bytes, into `out` (42 bytes).
fn write_eth_ip_udp(out: &mut [u8], o: &Outer, udp_payload: usize) {
    out[..6].copy_from_slice(&o.dst_mac);
    out[6..12].copy_from_slice(&o.src_mac);
    out[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut out[14..34];
    ip.fill(0);
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 8 + udp_payload) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = o.ttl;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&o.src.octets());
    ip[16..20].copy_from_slice(&o.dst.octets());
    let c = checksum::ipv4_header(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    crate::io::underlay::write_udp_header(&mut out[34..42], o.src_port, o.dst_port, udp_payload);
}

/// One plain UDP datagram of `payload` (`o.vni` unused) as the tunnel device takes it: an
/// empty header (no GSO, no checksum to finish), then the packet. What the prober sends to
/// check that the kernel forwards what the workers hand it (crate::control::probe).
pub fn datagram(o: &Outer, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; VNET_HDR_LEN + 42 + payload.len()];
    write_eth_ip_udp(&mut b[VNET_HDR_LEN..VNET_HDR_LEN + 42], o, payload.len());
    b[VNET_HDR_LEN + 42..].copy_from_slice(payload);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::test_frames::eth_ipv4;

    fn outer() -> Outer {
        Outer {
            dst_mac: [2, 0, 0, 0, 0, 0x10],
            src_mac: [2, 0, 0, 0, 0, 0x11],
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 40000,
            dst_port: 4789,
            vni: 42,
            ttl: 65,
        }
    }

    fn tso_v4() -> Header {
        Header {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1398,
            csum_start: 34,
            csum_offset: 16,
        }
    }

    #[test]
    fn header_describes_outer_and_inner_offsets() {
        let frame = eth_ipv4(6, 1, 20 + 1398 * 40);
        let mut out = [0u8; HEADER_LEN];
        header(&mut out, &tso_v4(), &frame, &outer()).unwrap();
        let h = Header::parse(&out).unwrap();
        assert_eq!(h.flags, vnet::F_NEEDS_CSUM);
        assert_eq!(h.gso_type, vnet::GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4);
        assert_eq!(h.gso_size, 1398);
        // Inner TCP at 50 + 34, its checksum 16 bytes in; all headers 50 + 66 bytes.
        assert_eq!(h.csum_start, 84);
        assert_eq!(h.csum_offset, 16);
        assert_eq!(h.hdr_len, 116);
        assert_eq!(&out[10..20], &[0; 10], "num_buffers and hash fields unused");
        assert_eq!(u16::from_ne_bytes([out[20], out[21]]), 34, "outer UDP");
        assert_eq!(u16::from_ne_bytes([out[22], out[23]]), 64, "inner IPv4");
        let o = &out[VNET_HDR_LEN..];
        assert_eq!(&o[..6], &[2, 0, 0, 0, 0, 0x10]);
        assert_eq!(&o[12..14], &[0x08, 0x00]);
        let ip = &o[14..34];
        let total = 20 + 8 + 8 + frame.len();
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, total);
        assert_eq!((ip[6], ip[8], ip[9]), (0x40, 65, 17));
        assert_eq!(&ip[12..20], &[10, 0, 0, 1, 10, 0, 0, 2]);
        assert_eq!(
            checksum::finish(checksum::add(0, ip)),
            0,
            "IPv4 header sums to 0"
        );
        let udp = &o[34..42];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 40000);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, total - 20);
        assert_eq!(&udp[6..8], &[0, 0], "no outer UDP checksum (RFC 7348)");
        assert_eq!(&o[42..50], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
    }

    #[test]
    fn a_plain_datagram_has_an_empty_header() {
        let b = datagram(&outer(), b"probe");
        assert_eq!(b.len(), 24 + 42 + 5);
        assert_eq!(&b[..24], &[0; 24], "no GSO, no partial checksum");
        let ip = &b[24 + 14..24 + 34];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 20 + 8 + 5);
        assert_eq!(checksum::finish(checksum::add(0, ip)), 0);
        assert_eq!(
            u16::from_be_bytes([b[24 + 38], b[24 + 39]]),
            8 + 5,
            "UDP length"
        );
        assert_eq!(&b[24 + 42..], b"probe");
    }

    #[test]
    fn ecn_is_kept() {
        let mut h = tso_v4();
        h.gso_type |= vnet::GSO_ECN;
        let mut out = [0u8; HEADER_LEN];
        header(&mut out, &h, &eth_ipv4(6, 1, 5000), &outer()).unwrap();
        assert_eq!(
            out[1],
            vnet::GSO_ECN | vnet::GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4
        );
    }

    #[test]
    fn only_ipv4_tcp_segmentation_that_fits_one_packet() {
        let mut out = [0u8; HEADER_LEN];
        let frame = eth_ipv4(6, 1, 5000);
        let refused = |h: &Header, f: &[u8]| {
            let mut out = [0u8; HEADER_LEN];
            header(&mut out, h, f, &outer()) == Err(NotTunnelable::NotTcpV4)
        };
        let mut v6 = tso_v4();
        v6.gso_type = vnet::GSO_TCPV6;
        assert!(refused(&v6, &frame));
        let mut full = tso_v4();
        full.flags = 0;
        assert!(refused(&full, &frame), "no partial checksum");
        let mut udp = tso_v4();
        udp.gso_type = vnet::GSO_UDP_L4;
        assert!(refused(&udp, &eth_ipv4(17, 1, 5000)));
        assert!(refused(&tso_v4(), &eth_ipv4(17, 1, 5000)), "not TCP");
        let mut vlan = frame.clone();
        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        assert!(
            refused(&tso_v4(), &vlan),
            "a VLAN tag moves the inner headers"
        );
        let mut no_df = frame.clone();
        no_df[14 + 6] = 0;
        assert!(
            refused(&tso_v4(), &no_df),
            "what a peer would not take whole"
        );
        let mut options = frame.clone();
        options[14] = 0x46;
        assert!(refused(&tso_v4(), &options));
        assert!(
            refused(&tso_v4(), &frame[..frame.len() - 1]),
            "IPv4 length is not the frame's"
        );
        // 65,535 - 36 bytes of outer IPv4, UDP and VXLAN headers is the most a frame may be.
        let largest = eth_ipv4(6, 1, 65_535 - 36 - 34);
        assert!(header(&mut out, &tso_v4(), &largest, &outer()).is_ok());
        let too_long = eth_ipv4(6, 1, 65_535 - 35 - 34);
        assert_eq!(
            header(&mut out, &tso_v4(), &too_long, &outer()),
            Err(NotTunnelable::TooLong)
        );
    }
}
