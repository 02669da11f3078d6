//! TCP segmentation (what a NIC's TSO or the kernel's GSO does): one super-frame of up to 64 KB
//! that a container's TCP handed to its TAP device, cut into frames of at most `gso_size`
//! bytes of payload, each a complete, correctly checksummed TCP/IP packet — so that the peer,
//! whether vswitchd or the kernel's vxlan device, receives ordinary frames no larger than the
//! network MTU.
//!
//! Per segment, as Linux's `tcp_gso_segment` / `inet_gso_segment` do: IPv4 total length and
//! header checksum, IPv4 ID incremented per segment; IPv6 payload length; TCP sequence number
//! advanced by the payload already sent; FIN and PSH only on the last segment, CWR only on the
//! first; the TCP checksum computed in full.
//!
//! UDP segmentation (USO, VIRTIO_NET_HDR_GSO_UDP_L4: a container's UDP socket with
//! UDP_SEGMENT, or one of our own coalesced runs coming back): the payload is cut into datagrams
//! of `gso_size` bytes (the last may be shorter), each with the UDP header copied, its length
//! set and its checksum computed in full; IPv4 total length, ID and header checksum as for TCP,
//! as Linux's `__udp_gso_segment` does.
//!
//! Also `complete_checksum` for a frame the kernel left with a partial checksum
//! (VIRTIO_NET_HDR_F_NEEDS_CSUM): the field holds the pseudo-header sum; the sum from
//! `csum_start` to the end, complemented, is the checksum.

use super::vnet::{self, Header};
use crate::wire::checksum;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsoError {
    /// Not Ethernet + IPv4/IPv6 + TCP as the header says, or offsets outside the frame.
    Malformed,
    /// A GSO kind we did not advertise (UDP fragmentation offload, UFO).
    Unsupported,
    /// More segments than the caller's slots.
    TooManySegments,
}

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Where the IP header starts: after Ethernet and at most one 802.1Q tag. Also its EtherType.
fn l3(frame: &[u8]) -> Option<(usize, u16)> {
    use crate::wire::ethernet::{Frame, HEADER_LEN};
    let eth = Frame::new_checked(frame).ok()?;
    Some((HEADER_LEN + eth.tag_len(), eth.inner_ethertype()?.into()))
}

/// The largest TSO super-frame a container's TAP should hand us on a network of `mtu` (its
/// `gso_max_size`): one whose segments all fit in one UDP GSO send, at most 65,507 bytes of
/// UDP payload (worker::execute::send_gso_run). The kernel's own limit, 64 KB, gives 45
/// segments at MTU 1450, one more than a send holds, so every super-frame took two sends, the
/// second with a single datagram. Counted with the largest per-datagram overhead (ESP: 66
/// bytes over the MTU) and segments of MTU - 40 bytes (IPv4 and TCP without options, the
/// most a segment carries), so that TCP, which sizes its super-frames below this less its
/// headers, never makes more segments than a send takes. `None` (the kernel's 64 KB) for an
/// MTU so large that a send holds fewer than two segments.
pub fn tap_gso_max_size(mtu: u32) -> Option<u32> {
    let per_send = 65_507 / mtu.saturating_add(66);
    (per_send >= 2).then(|| (per_send * mtu.saturating_sub(40)).min(65_536))
}

/// Completes the partial checksum the kernel left at `csum_start + csum_offset`.
pub fn complete_checksum(frame: &mut [u8], csum_start: usize, csum_offset: usize) {
    let field = csum_start.saturating_add(csum_offset);
    if csum_start >= frame.len() || field.saturating_add(2) > frame.len() {
        return;
    }
    let mut csum = checksum::finish(checksum::add(0, &frame[csum_start..]));
    // 0 means "no checksum" in UDP (RFC 768); the kernel sends 0xffff instead.
    if csum == 0 {
        csum = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&csum.to_be_bytes());
}

/// The length of the longest segment the TCP super-frame `frame` (TAP header `hdr`) is cut
/// into, here or by the kernel when it goes through the tunnel device whole: its headers and
/// one MSS (or the whole frame, if shorter). What the network must carry, so what the core
/// admits the frame by (Switch::decide_super_frame).
pub fn longest_segment(hdr: &Header, frame: &[u8]) -> Option<usize> {
    let tcp = usize::from(hdr.csum_start);
    let tcp_hl = usize::from(frame.get(tcp + 12)? >> 4) * 4;
    Some((tcp + tcp_hl + usize::from(hdr.gso_size)).min(frame.len()))
}

/// Splits the super-frame `frame` described by `hdr` into segments. Segment `k` is written to
/// `out[k * slot + headroom ..]` and its length to `lens[k]`; returns how many there are.
pub fn segment(
    hdr: &Header,
    frame: &[u8],
    out: &mut [u8],
    slot: usize,
    headroom: usize,
    lens: &mut [usize],
) -> Result<usize, TsoError> {
    let (v6, udp) = match hdr.gso_kind() {
        vnet::GSO_TCPV4 => (false, false),
        vnet::GSO_TCPV6 => (true, false),
        // The IP version of a UDP run is the frame's own.
        vnet::GSO_UDP_L4 => match l3(frame) {
            Some((_, 0x86dd)) => (true, true),
            _ => (false, true),
        },
        _ => return Err(TsoError::Unsupported),
    };
    let (l3, et) = l3(frame).ok_or(TsoError::Malformed)?;
    if et != if v6 { 0x86dd } else { 0x0800 } {
        return Err(TsoError::Malformed);
    }
    // The L4 header starts where the kernel said the checksum starts.
    let l4 = usize::from(hdr.csum_start);
    let min_l4 = l3 + if v6 { 40 } else { 20 };
    let min_l4_len = if udp { 8 } else { 20 };
    if l4 < min_l4 || l4 + min_l4_len > frame.len() {
        return Err(TsoError::Malformed);
    }
    let l4_hl = if udp {
        8
    } else {
        usize::from(frame[l4 + 12] >> 4) * 4
    };
    let hdr_end = l4 + l4_hl;
    let mss = usize::from(hdr.gso_size);
    if l4_hl < min_l4_len || hdr_end > frame.len() || mss == 0 {
        return Err(TsoError::Malformed);
    }
    let payload = &frame[hdr_end..];
    let count = payload.len().div_ceil(mss).max(1);
    if count > lens.len() || count * slot > out.len() || headroom + hdr_end + mss > slot {
        return Err(TsoError::TooManySegments);
    }
    let (src4, dst4, src6, dst6) = if v6 {
        let a: [u8; 16] = frame[l3 + 8..l3 + 24].try_into().expect("16 bytes");
        let b: [u8; 16] = frame[l3 + 24..l3 + 40].try_into().expect("16 bytes");
        (
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv6Addr::from(a),
            Ipv6Addr::from(b),
        )
    } else {
        let a: [u8; 4] = frame[l3 + 12..l3 + 16].try_into().expect("4 bytes");
        let b: [u8; 4] = frame[l3 + 16..l3 + 20].try_into().expect("4 bytes");
        (
            Ipv4Addr::from(a),
            Ipv4Addr::from(b),
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::UNSPECIFIED,
        )
    };
    let seq0 = u32::from_be_bytes(frame[l4 + 4..l4 + 8].try_into().expect("4 bytes"));
    let id0 = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]);

    for (k, chunk) in payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        let base = k * slot + headroom;
        let len = hdr_end + chunk.len();
        let seg = &mut out[base..base + len];
        seg[..hdr_end].copy_from_slice(&frame[..hdr_end]);
        seg[hdr_end..].copy_from_slice(chunk);
        let last = k + 1 == count;

        if v6 {
            let plen = (len - (l3 + 40)) as u16;
            seg[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        } else {
            let total = (len - l3) as u16;
            seg[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            seg[l3 + 4..l3 + 6].copy_from_slice(&id0.wrapping_add(k as u16).to_be_bytes());
            seg[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let c = checksum::ipv4_header(&seg[l3..l4]);
            seg[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }

        let l4_len = len - l4;
        let (proto, csum_at) = if udp {
            seg[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            (17, l4 + 6)
        } else {
            let seq = seq0.wrapping_add((k * mss) as u32);
            seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            if !last {
                seg[l4 + 13] &= !(TCP_FIN | TCP_PSH);
            }
            if k > 0 {
                seg[l4 + 13] &= !TCP_CWR;
            }
            (6, l4 + 16)
        };
        seg[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let pseudo = if v6 {
            checksum::pseudo_v6(src6, dst6, proto, l4_len)
        } else {
            checksum::pseudo_v4(src4, dst4, proto, l4_len)
        };
        let mut c = checksum::finish(checksum::add(pseudo, &seg[l4..]));
        if udp && c == 0 {
            // 0 means "no checksum" in UDP (RFC 768).
            c = 0xffff;
        }
        seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        lens[k] = len;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_super_frame_of_the_tap_gso_limit_fits_one_send() {
        // Plain and ESP networks on a 1500-byte underlay, and a jumbo one.
        for (mtu, segs) in [(1450u32, 43u32), (1408, 44), (8950, 7)] {
            let max = tap_gso_max_size(mtu).unwrap();
            assert_eq!(max, segs * (mtu - 40), "mtu {mtu}");
            // TCP with timestamps (MSS = MTU - 52), as it sizes a TSO frame under the limit.
            let mss = mtu - 52;
            let tcp_segments = (max - 1 - 320) / mss;
            let seg_udp_payload = mtu + 14 + 8;
            assert!(tcp_segments * seg_udp_payload <= 65_507, "mtu {mtu}");
        }
        // Past ~32 KB a send holds one segment: the kernel's own limit stays.
        assert_eq!(tap_gso_max_size(40_000), None);
        assert_eq!(tap_gso_max_size(70_000), None);
    }

    use crate::offload::test_frames::eth_ipv4;

    #[test]
    fn the_longest_segment_is_the_headers_and_one_mss() {
        let mut frame = super_frame_v4(1386 * 10 + 12);
        frame[34 + 12] = 8 << 4; // 32-byte TCP header (timestamps)
        let h = hdr_v4(1386);
        assert_eq!(longest_segment(&h, &frame), Some(14 + 20 + 32 + 1386));
        // A frame shorter than one MSS is its own segment.
        assert_eq!(longest_segment(&h, &frame[..500]), Some(500));
        assert_eq!(longest_segment(&h, &frame[..40]), None);
        // Every segment the cut makes is at most that long.
        let mut out = vec![0u8; 16 * 2048];
        let mut lens = [0usize; 16];
        let n = segment(&h, &frame, &mut out, 2048, 0, &mut lens).unwrap();
        assert_eq!(lens[..n].iter().max(), longest_segment(&h, &frame).as_ref());
    }

    /// An Ethernet + IPv4 + TCP super-frame with `payload` bytes (pattern i % 251), flags
    /// PSH|ACK|FIN, a partial checksum as the kernel leaves it.
    fn super_frame_v4(payload: usize) -> Vec<u8> {
        let mut f = eth_ipv4(6, 0xfffe, 20 + payload);
        let tcp = &mut f[34..54];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&0xffff_fff0u32.to_be_bytes()); // wraps within the frame
        tcp[12] = 5 << 4;
        tcp[13] = 0x80 | 0x10 | TCP_PSH | TCP_FIN;
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        f
    }

    fn hdr_v4(mss: u16) -> Header {
        Header {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 54,
            gso_size: mss,
            csum_start: 34,
            csum_offset: 16,
        }
    }

    /// A TCP/IPv4 frame is valid when its IP header and TCP (with pseudo-header) sum to zero.
    fn valid_v4(f: &[u8]) -> bool {
        let ip_ok = checksum::finish(checksum::add(0, &f[14..34])) == 0;
        let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
        let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
        let p = checksum::pseudo_v4(src, dst, 6, f.len() - 34);
        ip_ok && checksum::finish(checksum::add(p, &f[34..])) == 0
    }

    #[test]
    fn splits_into_mss_segments_with_fixed_headers() {
        let payload = 1400 * 3 + 100;
        let f = super_frame_v4(payload);
        let mut out = vec![0u8; 8 * 2048];
        let mut lens = [0usize; 8];
        let n = segment(&hdr_v4(1400), &f, &mut out, 2048, 40, &mut lens).unwrap();
        assert_eq!(n, 4);
        let mut rebuilt = Vec::new();
        for k in 0..n {
            let s = &out[k * 2048 + 40..k * 2048 + 40 + lens[k]];
            let chunk = if k < 3 { 1400 } else { 100 };
            assert_eq!(s.len(), 54 + chunk);
            assert!(valid_v4(s), "segment {k} checksums");
            assert_eq!(
                u16::from_be_bytes([s[16], s[17]]) as usize,
                40 + chunk,
                "IPv4 total length"
            );
            assert_eq!(
                u16::from_be_bytes([s[18], s[19]]),
                0xfffeu16.wrapping_add(k as u16),
                "IPv4 id"
            );
            let seq = u32::from_be_bytes(s[38..42].try_into().unwrap());
            assert_eq!(seq, 0xffff_fff0u32.wrapping_add((k * 1400) as u32));
            let flags = s[47];
            assert_eq!(
                flags & (TCP_FIN | TCP_PSH) != 0,
                k == 3,
                "FIN/PSH only on the last"
            );
            assert_eq!(flags & TCP_CWR != 0, k == 0, "CWR only on the first");
            rebuilt.extend_from_slice(&s[54..]);
        }
        assert_eq!(rebuilt, f[54..], "payload reassembles");
    }

    #[test]
    fn ipv6_segments_carry_payload_length_and_checksum() {
        let payload = 3000;
        let mut f = vec![0u8; 14 + 40 + 20 + payload];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[14 + 6] = 6;
        f[14 + 7] = 64;
        f[14 + 8..14 + 24].copy_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).octets());
        f[14 + 24..14 + 40].copy_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3).octets());
        f[54 + 12] = 5 << 4;
        f[54 + 13] = 0x10;
        let h = Header {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV6,
            hdr_len: 74,
            gso_size: 1000,
            csum_start: 54,
            csum_offset: 16,
        };
        let mut out = vec![0u8; 4 * 2048];
        let mut lens = [0usize; 4];
        assert_eq!(segment(&h, &f, &mut out, 2048, 0, &mut lens).unwrap(), 3);
        for k in 0..3 {
            let s = &out[k * 2048..k * 2048 + lens[k]];
            assert_eq!(
                u16::from_be_bytes([s[18], s[19]]),
                1020,
                "IPv6 payload length"
            );
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&s[22..38]).unwrap());
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&s[38..54]).unwrap());
            let p = checksum::pseudo_v6(src, dst, 6, s.len() - 54);
            assert_eq!(
                checksum::finish(checksum::add(p, &s[54..])),
                0,
                "TCP checksum"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_cut() {
        let f = super_frame_v4(5000);
        let mut out = vec![0u8; 2 * 2048];
        let mut lens = [0usize; 2];
        assert_eq!(
            segment(&hdr_v4(1400), &f, &mut out, 2048, 0, &mut lens),
            Err(TsoError::TooManySegments)
        );
        let mut ufo = hdr_v4(1400);
        ufo.gso_type = vnet::GSO_UDP;
        assert_eq!(
            segment(&ufo, &f, &mut out, 2048, 0, &mut lens),
            Err(TsoError::Unsupported)
        );
        let mut bad = hdr_v4(1400);
        bad.csum_start = 10;
        assert_eq!(
            segment(&bad, &f, &mut out, 2048, 0, &mut lens),
            Err(TsoError::Malformed)
        );
        for len in 0..60 {
            let _ = segment(&hdr_v4(1400), &f[..len], &mut out, 2048, 0, &mut lens);
        }
    }

    /// An Ethernet + IPv4 + UDP super-frame (USO) with `payload` bytes, as a container's
    /// UDP_SEGMENT socket hands it over: partial checksum, UDP length of the whole.
    fn udp_super_frame_v4(payload: usize) -> Vec<u8> {
        let mut f = eth_ipv4(17, 7, 8 + payload);
        f[34..36].copy_from_slice(&4433u16.to_be_bytes());
        f[36..38].copy_from_slice(&443u16.to_be_bytes());
        f[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        for (i, b) in f[42..].iter_mut().enumerate() {
            *b = (i % 253) as u8;
        }
        f
    }

    #[test]
    fn splits_a_udp_run_into_checksummed_datagrams() {
        let f = udp_super_frame_v4(1200 * 4 + 33);
        let h = Header {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_UDP_L4,
            hdr_len: 42,
            gso_size: 1200,
            csum_start: 34,
            csum_offset: 6,
        };
        let mut out = vec![0u8; 8 * 2048];
        let mut lens = [0usize; 8];
        let n = segment(&h, &f, &mut out, 2048, 40, &mut lens).unwrap();
        assert_eq!(n, 5);
        let mut rebuilt = Vec::new();
        for k in 0..n {
            let s = &out[k * 2048 + 40..k * 2048 + 40 + lens[k]];
            let chunk = if k < 4 { 1200 } else { 33 };
            assert_eq!(s.len(), 42 + chunk);
            assert_eq!(checksum::finish(checksum::add(0, &s[14..34])), 0, "IP {k}");
            assert_eq!(u16::from_be_bytes([s[16], s[17]]) as usize, 28 + chunk);
            assert_eq!(u16::from_be_bytes([s[18], s[19]]), 7 + k as u16, "IPv4 id");
            assert_eq!(u16::from_be_bytes([s[38], s[39]]) as usize, 8 + chunk);
            let p = checksum::pseudo_v4(
                Ipv4Addr::new(10, 0, 9, 2),
                Ipv4Addr::new(10, 0, 9, 3),
                17,
                8 + chunk,
            );
            assert_eq!(checksum::finish(checksum::add(p, &s[34..])), 0, "UDP {k}");
            assert_ne!(u16::from_be_bytes([s[40], s[41]]), 0, "a checksum is there");
            assert_eq!(s[34..38], f[34..38], "ports");
            rebuilt.extend_from_slice(&s[42..]);
        }
        assert_eq!(rebuilt, f[42..], "payload reassembles");
    }

    #[test]
    fn completes_a_partial_checksum() {
        let mut f = super_frame_v4(100);
        let src = Ipv4Addr::new(10, 0, 9, 2);
        let dst = Ipv4Addr::new(10, 0, 9, 3);
        // The kernel leaves the folded pseudo-header sum (not complemented) in the field.
        let p = checksum::pseudo_v4(src, dst, 6, 120);
        let partial = !checksum::finish(p);
        f[50..52].copy_from_slice(&partial.to_be_bytes());
        let mut ip = f[14..34].to_vec();
        ip[10..12].copy_from_slice(&[0, 0]);
        f[24..26].copy_from_slice(&checksum::ipv4_header(&ip).to_be_bytes());
        complete_checksum(&mut f, 34, 16);
        assert!(valid_v4(&f));
    }
}
