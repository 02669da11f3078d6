//! Flow hash of an inner frame: the VXLAN UDP source port (RFC 7348 §5: "it is recommended that
//! the UDP source port number be calculated using a hash of fields from the inner packet") so
//! that ECMP and RSS in the underlay spread flows while keeping each flow on one path.

use super::ethernet::{EtherType, Frame};
use super::ipv4;

/// FNV-1a over the fields, so the same flow always gets the same port on every host and run.
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// FNV-1a's offset basis: the starting value for `fnv1a`.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Hash of the inner flow: MACs and EtherType, plus addresses, protocol and ports for IPv4.
/// Short or odd frames still hash (over what is there) rather than fail.
pub fn hash(frame: &[u8]) -> u64 {
    let Ok(eth) = Frame::new_checked(frame) else {
        return fnv1a(FNV_OFFSET, frame);
    };
    let mut h = fnv1a(FNV_OFFSET, &frame[..14]);
    if eth.ethertype() == EtherType::Ipv4 {
        if let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) {
            h = fnv1a(h, &ip.src().octets());
            h = fnv1a(h, &ip.dst().octets());
            h = fnv1a(h, &[ip.protocol()]);
            if let Some((s, d)) = ip.l4_ports() {
                h = fnv1a(h, &s.to_be_bytes());
                h = fnv1a(h, &d.to_be_bytes());
            }
        }
    }
    h
}

/// A UDP source port in the dynamic range 49152–65535 (RFC 7348 §5 recommends it).
pub fn source_port(frame: &[u8]) -> u16 {
    let h = hash(frame);
    let folded = (h ^ (h >> 32) ^ (h >> 16)) as u16;
    49152 + (folded % 16384)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_frame(sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 24];
        f[12] = 0x08;
        f[14] = 0x45;
        f[14 + 3] = 24; // total length: the whole datagram is here
        f[14 + 9] = 6;
        f[14 + 12..14 + 16].copy_from_slice(&[10, 0, 9, 2]);
        f[14 + 16..14 + 20].copy_from_slice(&[10, 0, 9, 3]);
        f[14 + 20..14 + 22].copy_from_slice(&sport.to_be_bytes());
        f[14 + 22..14 + 24].copy_from_slice(&5201u16.to_be_bytes());
        f
    }

    #[test]
    fn same_flow_same_port_and_flows_spread() {
        assert_eq!(
            source_port(&tcp_frame(40000)),
            source_port(&tcp_frame(40000))
        );
        let ports: std::collections::HashSet<u16> =
            (40000..40064).map(|p| source_port(&tcp_frame(p))).collect();
        assert!(
            ports.len() > 48,
            "64 flows got only {} distinct ports",
            ports.len()
        );
        assert!(ports.iter().all(|p| *p >= 49152));
    }

    #[test]
    fn odd_frames_still_get_a_port_in_the_dynamic_range() {
        for len in 0..40 {
            let p = source_port(&vec![0x45; len]);
            assert!(p >= 49152, "len {len}: port {p}");
        }
    }
}
