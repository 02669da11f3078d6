//! Partial checksums from the underlay. A Linux sender whose path never fills in checksums —
//! a kernel VXLAN device over a veth, or a VM on the same hypervisor — leaves the inner TCP or
//! UDP checksum as the stack handed it to the "hardware": CHECKSUM_PARTIAL, the field holding
//! the folded pseudo-header sum, trusted by every kernel on the way because the skb says so.
//! The bytes that reach vswitchd's socket carry no such note, so it recognises the pattern and
//! completes the checksum, as the kernel's own VXLAN device would accept the frame. Frames
//! whose checksum is wrong in any other way are left alone: the container's kernel drops them.
//!
//! The test is one pseudo-header sum per TCP/UDP frame; only a frame that matches is summed
//! (and a correct checksum that happens to match is recomputed to the same value).
//!
//! Sans-IO: a frame in the caller's buffer, changed in place.

use crate::wire::{checksum, ipv4};

const ETH: usize = 14;

/// Completes the TCP or UDP checksum of an IPv4 Ethernet frame if it holds a partial one (the
/// pseudo-header sum). Returns whether it did.
pub fn complete_partial(frame: &mut [u8]) -> bool {
    if frame.len() < ETH + ipv4::MIN_HEADER_LEN || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let (hl, total, proto, src, dst) = match ipv4::Packet::new_checked(&frame[ETH..]) {
        Ok(p) if !p.is_fragment() => (
            p.header_len(),
            usize::from(p.total_len()),
            p.protocol(),
            p.src(),
            p.dst(),
        ),
        _ => return false,
    };
    let (field, min) = match proto {
        ipv4::PROTO_TCP => (16, 20),
        ipv4::PROTO_UDP => (6, 8),
        _ => return false,
    };
    let l4 = ETH + hl..ETH + total;
    if l4.len() < min {
        return false;
    }
    let at = l4.start + field;
    let stored = u16::from_be_bytes([frame[at], frame[at + 1]]);
    if proto == ipv4::PROTO_UDP && stored == 0 {
        return false; // no checksum: allowed for UDP over IPv4
    }
    let pseudo = checksum::pseudo_v4(src, dst, proto, l4.len());
    if stored != !checksum::finish(pseudo) {
        return false;
    }
    frame[at..at + 2].copy_from_slice(&[0, 0]);
    let mut c = checksum::finish(checksum::add(pseudo, &frame[l4]));
    if proto == ipv4::PROTO_UDP && c == 0 {
        c = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::test_frames::eth_ipv4;
    use std::net::Ipv4Addr;

    fn l4_sum(f: &[u8], proto: u8) -> u16 {
        let (src, dst) = (Ipv4Addr::new(10, 0, 9, 2), Ipv4Addr::new(10, 0, 9, 3));
        let l4 = &f[34..];
        checksum::finish(checksum::add(
            checksum::pseudo_v4(src, dst, proto, l4.len()),
            l4,
        ))
    }

    /// A TCP (6) or UDP (17) frame with payload bytes and the checksum as a kernel would leave
    /// it: partial (`partial`) or complete.
    fn frame(proto: u8, partial: bool) -> Vec<u8> {
        let l4_len = 20 + 33;
        let mut f = eth_ipv4(proto, 7, l4_len);
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
        if proto == 17 {
            f[38..40].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        let at = if proto == 6 { 34 + 16 } else { 34 + 6 };
        let (src, dst) = (Ipv4Addr::new(10, 0, 9, 2), Ipv4Addr::new(10, 0, 9, 3));
        let pseudo = !checksum::finish(checksum::pseudo_v4(src, dst, proto, l4_len));
        f[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
        if !partial {
            f[at..at + 2].copy_from_slice(&[0, 0]);
            let c = l4_sum(&f, proto);
            f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        f
    }

    #[test]
    fn partial_tcp_and_udp_checksums_are_completed() {
        for proto in [6u8, 17] {
            let mut f = frame(proto, true);
            assert_ne!(l4_sum(&f, proto), 0, "the partial checksum does not verify");
            assert!(complete_partial(&mut f));
            assert_eq!(
                l4_sum(&f, proto),
                0,
                "proto {proto}: completed checksum verifies"
            );
            assert_eq!(f, frame(proto, false));
        }
    }

    #[test]
    fn complete_corrupt_and_other_frames_are_left_alone() {
        for proto in [6u8, 17] {
            let good = frame(proto, false);
            let mut f = good.clone();
            assert!(!complete_partial(&mut f));
            assert_eq!(f, good);
            // Damaged in flight: the checksum is wrong, but not partial.
            let mut bad = good.clone();
            bad[60] ^= 0xff;
            let before = bad.clone();
            assert!(!complete_partial(&mut bad));
            assert_eq!(bad, before);
        }
        // UDP without a checksum, ICMP, ARP, a fragment: untouched.
        let mut udp0 = frame(17, false);
        udp0[40..42].copy_from_slice(&[0, 0]);
        assert!(!complete_partial(&mut udp0));
        let mut icmp = eth_ipv4(1, 1, 40);
        assert!(!complete_partial(&mut icmp));
        let mut arp = frame(6, true);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!complete_partial(&mut arp));
        let mut frag = frame(6, true);
        frag[20] = 0x20; // more fragments
        assert!(!complete_partial(&mut frag));
    }
}
