//! TCP super-frames from a peer. A Linux VXLAN sender whose underlay is a veth (or virtio on
//! the same hypervisor) with tx offloads on hands the underlay whole tunnel-GSO packets: one
//! UDP datagram carrying an inner TCP segment of up to 64 KB, which no NIC ever cut into
//! MSS-sized pieces. The kernel's own VXLAN device takes them; so does vswitchd, as a
//! super-frame to be written to the container's port with a virtio_net_hdr asking for TCP
//! segmentation (what the kernel's GRO would have made of the segments), or cut into
//! segments here for a port that takes no such header.
//!
//! The inner MSS is not on the wire; it is the one the network's MTU gives (MTU less the IPv4
//! and TCP headers), which is what the sender's TCP used. Only what Linux's GRO would have
//! merged is taken: IPv4 without options, DF set, not fragmented, TCP with data, the IPv4
//! total length equal to the frame's.
//!
//! Sans-IO: bytes in, a header (and the checksum field rewritten) out.

use super::vnet::{self, Header};
use crate::wire::checksum;
use std::net::Ipv4Addr;

const ETH: usize = 14;
const IP: usize = 20;

/// Whether `frame` is what Linux's GRO would have merged and so what a receiver takes whole:
/// Ethernet without a VLAN tag, IPv4 without options, DF set, not a fragment, its total length
/// the frame's, TCP. Also what a sender hands the kernel whole (crate::offload::tunnel), so
/// that the peer's receiver takes it.
pub fn is_whole_ipv4_tcp(frame: &[u8]) -> bool {
    let Some(ip) = frame.get(ETH..ETH + IP) else {
        return false;
    };
    frame[12..14] == [0x08, 0x00]
        && ip[0] == 0x45
        && ip[9] == 6
        && ip[6] & 0x40 != 0 // DF
        && u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff == 0 // no MF, offset 0
        && usize::from(u16::from_be_bytes([ip[2], ip[3]])) == frame.len() - ETH
}

/// The virtio_net_hdr to write `frame` with, if it is a peer's TCP super-frame for a network
/// of `mtu` (see the module documentation); `None` for anything else.
pub fn peer_super_frame(frame: &[u8], mtu: u32) -> Option<Header> {
    if frame.len() <= ETH + mtu as usize || frame.len() < ETH + IP + 20 {
        return None;
    }
    if !is_whole_ipv4_tcp(frame) {
        return None;
    }
    let tcp_hl = usize::from(frame[ETH + IP + 12] >> 4) * 4;
    let hdr_len = ETH + IP + tcp_hl;
    let mss = (mtu as usize).checked_sub(IP + tcp_hl)?;
    if tcp_hl < 20 || hdr_len >= frame.len() || mss == 0 || mss > usize::from(u16::MAX) {
        return None;
    }
    Some(Header {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: hdr_len as u16,
        gso_size: mss as u16,
        csum_start: (ETH + IP) as u16,
        csum_offset: 16,
    })
}

/// Puts the CHECKSUM_PARTIAL convention into the TCP checksum field (the folded
/// pseudo-header sum), as the header from `peer_super_frame` promises.
pub fn prepare(frame: &mut [u8]) {
    let ip = &frame[ETH..ETH + IP];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4_len = frame.len() - ETH - IP;
    let pseudo = !checksum::finish(checksum::pseudo_v4(src, dst, 6, l4_len));
    frame[ETH + IP + 16..ETH + IP + 18].copy_from_slice(&pseudo.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::test_frames::eth_ipv4;
    use crate::offload::tso;

    fn super_frame(payload: usize) -> Vec<u8> {
        let mut f = eth_ipv4(6, 9, 32 + payload);
        f[ETH + IP + 12] = 8 << 4; // 32-byte TCP header (timestamps)
        f[ETH + IP + 13] = 0x18; // ACK PSH
        f[ETH + IP + 4..ETH + IP + 8].copy_from_slice(&1000u32.to_be_bytes());
        for (i, b) in f[ETH + IP + 32..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        f
    }

    #[test]
    fn a_kernel_peers_tunnel_gso_segment_becomes_a_tso_frame_of_the_networks_mss() {
        let f = super_frame(6990);
        let h = peer_super_frame(&f, 1450).expect("taken");
        assert_eq!((h.gso_size, h.hdr_len, h.csum_start), (1398, 66, 34));
        // Cut back here (a port without offloads), it gives five full segments with correct
        // checksums and contiguous sequence numbers.
        let mut f = f;
        prepare(&mut f);
        let mut out = vec![0u8; 8 * 2048];
        let mut lens = [0usize; 8];
        let n = tso::segment(&h, &f, &mut out, 2048, 0, &mut lens).unwrap();
        assert_eq!(n, 5);
        for k in 0..n {
            let seg = &out[k * 2048..k * 2048 + lens[k]];
            assert_eq!(seg.len(), 66 + 1398);
            let seq = u32::from_be_bytes(seg[38..42].try_into().unwrap());
            assert_eq!(seq, 1000 + 1398 * k as u32);
            let l4 = &seg[34..];
            let src = Ipv4Addr::new(10, 0, 9, 2);
            let dst = Ipv4Addr::new(10, 0, 9, 3);
            let sum = checksum::finish(checksum::add(
                checksum::pseudo_v4(src, dst, 6, l4.len()),
                l4,
            ));
            assert_eq!(sum, 0, "segment {k} checksum");
        }
    }

    #[test]
    fn frames_that_fit_or_are_not_plain_tcp_are_not_super_frames() {
        assert!(
            peer_super_frame(&super_frame(1398), 1450).is_none(),
            "fits the MTU"
        );
        let mut udp = super_frame(6990);
        udp[ETH + 9] = 17;
        assert!(peer_super_frame(&udp, 1450).is_none());
        let mut no_df = super_frame(6990);
        no_df[ETH + 6] = 0;
        assert!(peer_super_frame(&no_df, 1450).is_none());
        let mut short = super_frame(6990);
        short.truncate(short.len() - 1); // IPv4 total length no longer matches
        assert!(peer_super_frame(&short, 1450).is_none());
    }
}
