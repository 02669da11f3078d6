//! TCP receive coalescing (what the kernel's GRO does): consecutive, in-order TCP segments of
//! one flow, decapsulated for the same TAP port, are merged into one super-frame that is
//! written once with a virtio_net_hdr asking for TCPv4 segmentation offload. The container's
//! stack then runs once per super-frame instead of once per segment, which is where the
//! receive side spends its time (a perf profile shows tun_get_user -> tcp_rcv_established).
//!
//! The rules follow Linux's tcp_gro_receive: IPv4 without options, not fragmented, DF set, TTL,
//! TOS and addresses equal; TCP ports, ACK number, data offset, flags and window equal (PSH may
//! end a run), options equal byte for byte, sequence numbers contiguous, every segment but the
//! last exactly the size of the first. Anything else ends the run. Only ACK (and PSH) segments
//! with data join: SYN, FIN, RST, URG, ECE and CWR pass alone.
//!
//! UDP runs too, for ports that take them (TAP with USO): consecutive datagrams of one UDP flow
//! (IPv4 without options, DF set and not fragmented, TOS, TTL, addresses and ports equal, a
//! checksum present and correct), every one but the last exactly the size of the first, at
//! most `MAX_UDP_SEGMENTS`, are merged into one frame written with
//! VIRTIO_NET_HDR_GSO_UDP_L4; the container's stack runs its IP layer once for the run and its
//! UDP layer cuts it back into the same datagrams (udp_rcv_segment), numbering IPv4 IDs from the
//! first, which DF datagrams may carry any of (RFC 6864 §4.1).
//!
//! Every segment's and datagram's checksum is verified before it joins, as Linux's GRO does:
//! the merged frame's NEEDS_CSUM tells the container's kernel to trust it, so a segment
//! damaged on the way must not join; it goes on alone, and the container's kernel drops it.
//!
//! The merged frame carries the pseudo-header sum in the TCP checksum field and
//! VIRTIO_NET_HDR_F_NEEDS_CSUM, as a TSO frame from a guest does; the kernel computes the real
//! checksums when (if ever) it segments it. Off with the other offloads (VSWITCH_OFFLOADS=off).

use super::vnet::{self, Header};
use crate::wire::checksum;
use std::net::Ipv4Addr;

const ETH: usize = 14;
const IP: usize = 20;
/// Largest IPv4 packet: the merged frame's IP total length must fit in 16 bits.
const MAX_IP_LEN: usize = 65535;

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const UDP: usize = 8;
/// Most datagrams in one UDP run (the kernel's UDP_MAX_SEGMENTS for a GSO send).
const MAX_UDP_SEGMENTS: usize = 64;

/// A run being built.
pub struct Coalescer {
    buf: Vec<u8>,
    len: usize,
    /// Segments in the run (0: empty).
    count: usize,
    /// Payload size of the first segment: the MSS the run is cut back into.
    mss: usize,
    hdr_len: usize,
    next_seq: u32,
    /// The run ended with a short or PSH segment: nothing more may join.
    closed: bool,
    /// A run of UDP datagrams, not TCP segments.
    udp: bool,
    /// Opaque to the coalescer: whom the run is for (the switch port).
    owner: u32,
}

/// Where the parts of a TCP segment or UDP datagram are, when it can join a run at all.
struct Packet {
    /// Ethernet, IP and TCP or UDP headers.
    hdr_len: usize,
    payload: usize,
    /// TCP sequence number and flags (0 for UDP).
    seq: u32,
    flags: u8,
    udp: bool,
}

/// The IPv4 total length of `frame` when it is one whole IPv4 packet of protocol `proto` that
/// may join a run: no options (IHL 5), DF set and not fragmented, at least `l4_min` bytes of
/// L4, and nothing after the packet (Ethernet padding or a trailer would be lost in the run).
fn ipv4_packet(frame: &[u8], proto: u8, l4_min: usize) -> Option<usize> {
    if frame.len() < ETH + IP + l4_min || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH..];
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if ip[0] != 0x45 || ip[9] != proto || frag != 0x4000 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    (total >= IP + l4_min && ETH + total == frame.len()).then_some(total)
}

/// Whether the TCP or UDP checksum of the IPv4 packet in `frame` (`l4_len` bytes after a
/// 20-byte header) is right, pseudo-header included.
fn l4_checksum_ok(frame: &[u8], proto: u8, l4_len: usize) -> bool {
    let ip = &frame[ETH..];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let sum = checksum::add(
        checksum::pseudo_v4(src, dst, proto, l4_len),
        &ip[IP..IP + l4_len],
    );
    checksum::finish(sum) == 0
}

/// A TCP segment with data and only ACK (and PSH) set, or (when `udp`) a UDP datagram with a
/// checksum, either with a correct checksum.
fn parse(frame: &[u8], udp: bool) -> Option<Packet> {
    if let Some(total) = ipv4_packet(frame, 6, 20) {
        let tcp = &frame[ETH + IP..];
        let doff = usize::from(tcp[12] >> 4) * 4;
        let hdr_len = ETH + IP + doff;
        let flags = tcp[13];
        if doff < 20 || hdr_len >= ETH + total || flags & !PSH != ACK {
            return None;
        }
        return l4_checksum_ok(frame, 6, total - IP).then(|| Packet {
            hdr_len,
            payload: ETH + total - hdr_len,
            seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            flags,
            udp: false,
        });
    }
    let total = ipv4_packet(frame, 17, UDP + 1).filter(|_| udp)?;
    let dgram = &frame[ETH + IP..];
    let udp_len = usize::from(u16::from_be_bytes([dgram[4], dgram[5]]));
    // A zero checksum has nothing to vouch for the datagram.
    if udp_len != total - IP || dgram[6..8] == [0, 0] || !l4_checksum_ok(frame, 17, udp_len) {
        return None;
    }
    Some(Packet {
        hdr_len: ETH + IP + UDP,
        payload: udp_len - UDP,
        seq: 0,
        flags: 0,
        udp: true,
    })
}

impl Default for Coalescer {
    fn default() -> Coalescer {
        Coalescer::new()
    }
}

impl Coalescer {
    pub fn new() -> Coalescer {
        Coalescer {
            buf: vec![0u8; MAX_IP_LEN + ETH],
            len: 0,
            count: 0,
            mss: 0,
            hdr_len: 0,
            next_seq: 0,
            closed: false,
            udp: false,
            owner: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Segments in the run in progress.
    pub fn segments(&self) -> usize {
        self.count
    }

    pub fn owner(&self) -> Option<u32> {
        (self.count > 0).then_some(self.owner)
    }

    /// Adds `frame` (for `owner`) to the run; UDP datagrams only when `udp` (the owner takes
    /// UDP runs). False when it cannot join the run in progress or cannot be coalesced at all:
    /// the caller then flushes the run and sends `frame` itself, or pushes it again to start a
    /// new run with it.
    pub fn push(&mut self, owner: u32, frame: &[u8], udp: bool) -> bool {
        let Some(p) = parse(frame, udp) else {
            return false;
        };
        if self.count == 0 {
            self.buf[..p.hdr_len + p.payload].copy_from_slice(&frame[..p.hdr_len + p.payload]);
            self.len = p.hdr_len + p.payload;
            self.count = 1;
            self.mss = p.payload;
            self.hdr_len = p.hdr_len;
            self.next_seq = p.seq.wrapping_add(p.payload as u32);
            self.closed = p.flags & PSH != 0;
            self.udp = p.udp;
            self.owner = owner;
            return true;
        }
        let h = self.hdr_len;
        let first = &self.buf[..h];
        let l4 = ETH + IP;
        let joins = owner == self.owner
            && !self.closed
            && p.udp == self.udp
            && p.hdr_len == h
            && p.payload <= self.mss
            && self.len + p.payload <= MAX_IP_LEN + ETH
            // MACs and EtherType; IP TOS, TTL, protocol, addresses; ports.
            && frame[..ETH] == first[..ETH]
            && frame[ETH + 1] == first[ETH + 1]
            && frame[ETH + 8..ETH + 10] == first[ETH + 8..ETH + 10]
            && frame[ETH + 12..l4 + 4] == first[ETH + 12..l4 + 4]
            && if p.udp {
                self.count < MAX_UDP_SEGMENTS
            } else {
                // In sequence; ACK number, data offset, window; flags but PSH; options.
                p.seq == self.next_seq
                    && frame[l4 + 8..l4 + 13] == first[l4 + 8..l4 + 13]
                    && (frame[l4 + 13] & !PSH) == (first[l4 + 13] & !PSH)
                    && frame[l4 + 14..l4 + 16] == first[l4 + 14..l4 + 16]
                    && frame[l4 + 20..h] == first[l4 + 20..h]
            };
        if !joins {
            return false;
        }
        self.buf[self.len..self.len + p.payload].copy_from_slice(&frame[h..h + p.payload]);
        self.len += p.payload;
        self.count += 1;
        self.next_seq = self.next_seq.wrapping_add(p.payload as u32);
        if p.flags & PSH != 0 {
            // PSH ends the run; carry it on the merged frame.
            self.buf[l4 + 13] |= PSH;
            self.closed = true;
        }
        if p.payload < self.mss {
            self.closed = true;
        }
        true
    }

    /// Ends the run: returns the frame to write and, for a run of several segments, the
    /// virtio_net_hdr that asks the kernel to treat it as TSO. Empty after.
    pub fn take(&mut self) -> Option<(Option<Header>, &[u8])> {
        if self.count == 0 {
            return None;
        }
        let count = std::mem::take(&mut self.count);
        let len = self.len;
        if count == 1 {
            return Some((None, &self.buf[..len]));
        }
        let (gso_type, proto, csum_offset) = if self.udp {
            (vnet::GSO_UDP_L4, 17, 6)
        } else {
            (vnet::GSO_TCPV4, 6, 16)
        };
        let hdr = Header {
            flags: vnet::F_NEEDS_CSUM,
            gso_type,
            hdr_len: self.hdr_len as u16,
            gso_size: self.mss as u16,
            csum_start: (ETH + IP) as u16,
            csum_offset,
        };
        let f = &mut self.buf[..len];
        let total = (len - ETH) as u16;
        f[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        if self.udp {
            f[ETH + IP + 4..ETH + IP + 6].copy_from_slice(&(total - IP as u16).to_be_bytes());
        }
        f[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
        let c = checksum::ipv4_header(&f[ETH..ETH + IP]);
        f[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
        // CHECKSUM_PARTIAL convention: the field holds the folded pseudo-header sum.
        let src = Ipv4Addr::new(f[ETH + 12], f[ETH + 13], f[ETH + 14], f[ETH + 15]);
        let dst = Ipv4Addr::new(f[ETH + 16], f[ETH + 17], f[ETH + 18], f[ETH + 19]);
        let pseudo = !checksum::finish(checksum::pseudo_v4(src, dst, proto, len - ETH - IP));
        let at = ETH + IP + usize::from(csum_offset);
        f[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
        Some((Some(hdr), &self.buf[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::test_frames::eth_ipv4;
    use crate::offload::tso;

    /// A TCP/IPv4 segment of `len` payload bytes at `seq` (pattern by absolute offset), with a
    /// 12-byte timestamp option, valid checksums.
    fn segment(seq: u32, len: usize, flags: u8) -> Vec<u8> {
        let mut f = eth_ipv4(6, seq as u16, 32 + len);
        let tcp = &mut f[ETH + IP..];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&77u32.to_be_bytes());
        tcp[12] = 8 << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&500u16.to_be_bytes());
        tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
        for i in 0..len {
            tcp[32 + i] = ((seq as usize + i) % 251) as u8;
        }
        let p = checksum::pseudo_v4(
            Ipv4Addr::new(10, 0, 9, 2),
            Ipv4Addr::new(10, 0, 9, 3),
            6,
            32 + len,
        );
        let c = checksum::finish(checksum::add(p, tcp));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn merges_a_run_and_segments_back_to_the_same_bytes() {
        let mut c = Coalescer::new();
        let segs: Vec<Vec<u8>> = (0..5)
            .map(|k| segment(1000 + k * 1400, if k < 4 { 1400 } else { 300 }, ACK))
            .collect();
        for s in &segs {
            assert!(c.push(7, s, false));
        }
        assert_eq!(c.owner(), Some(7));
        let (hdr, merged) = c.take().unwrap();
        let hdr = hdr.expect("a run of 5 is TSO");
        assert_eq!(
            (hdr.gso_type, hdr.gso_size, hdr.csum_start),
            (vnet::GSO_TCPV4, 1400, 34)
        );
        assert_eq!(merged.len(), 66 + 4 * 1400 + 300);
        // What the kernel would do with it: cut it back. Each piece equals the original
        // segment except the IP ID (TSO numbers them from the first) and must checksum.
        let mut out = vec![0u8; 8 * 2048];
        let mut lens = [0usize; 8];
        let n = tso::segment(&hdr, merged, &mut out, 2048, 0, &mut lens).unwrap();
        assert_eq!(n, 5);
        for k in 0..5 {
            let got = &out[k * 2048..k * 2048 + lens[k]];
            assert_eq!(got.len(), segs[k].len());
            assert_eq!(
                got[ETH + IP..],
                segs[k][ETH + IP..],
                "TCP header and payload of segment {k}"
            );
        }
        assert!(c.is_empty());
    }

    #[test]
    fn runs_end_where_linux_gro_would_end_them() {
        let mut c = Coalescer::new();
        assert!(c.push(1, &segment(0, 1400, ACK), false));
        assert!(!c.push(2, &segment(1400, 1400, ACK), false), "another port");
        assert!(
            !c.push(1, &segment(2800, 1400, ACK), false),
            "a gap in sequence"
        );
        assert!(
            c.push(1, &segment(1400, 1400, ACK | PSH), false),
            "PSH joins and ends the run"
        );
        assert!(!c.push(1, &segment(2800, 1400, ACK), false), "after PSH");
        let (hdr, f) = c.take().unwrap();
        assert!(hdr.is_some() && f[ETH + IP + 13] & PSH != 0);

        assert!(c.push(1, &segment(0, 1000, ACK), false));
        assert!(
            !c.push(1, &segment(1000, 1400, ACK), false),
            "larger than the first"
        );
        assert!(c.push(1, &segment(1000, 500, ACK), false), "a shorter last");
        assert!(
            !c.push(1, &segment(1500, 500, ACK), false),
            "after a short one"
        );
        let _ = c.take();

        let mut damaged = segment(1400, 1400, ACK);
        damaged[ETH + IP + 40] ^= 0x10;
        assert!(c.push(1, &segment(0, 1400, ACK), false));
        assert!(!c.push(1, &damaged, false), "a wrong checksum never joins");
        let _ = c.take();
        assert!(!c.push(1, &damaged, false), "nor starts a run");
        assert!(
            !c.push(1, &segment(0, 1400, ACK | 0x01), false),
            "FIN never joins"
        );
        assert!(
            !c.push(1, &segment(0, 0, ACK), false),
            "a pure ACK never joins"
        );
        let mut other_window = segment(1400, 1400, ACK);
        assert!(c.push(1, &segment(0, 1400, ACK), false));
        other_window[ETH + IP + 15] ^= 1;
        assert!(!c.push(1, &other_window, false), "window changed");
        let (hdr, f) = c.take().unwrap();
        assert!(hdr.is_none(), "a run of one is written as it came");
        assert_eq!(f, &segment(0, 1400, ACK)[..]);
    }

    /// A UDP/IPv4 datagram 10.0.9.2:4000 -> 10.0.9.3:5000 with `len` payload bytes (pattern
    /// from `seq`), DF set, IP ID `seq`, a correct checksum.
    fn datagram(seq: u16, len: usize) -> Vec<u8> {
        let mut f = eth_ipv4(17, seq, UDP + len);
        let udp = &mut f[ETH + IP..];
        udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&5000u16.to_be_bytes());
        udp[4..6].copy_from_slice(&((UDP + len) as u16).to_be_bytes());
        for i in 0..len {
            udp[UDP + i] = (usize::from(seq) * 7 + i) as u8;
        }
        let p = checksum::pseudo_v4(
            Ipv4Addr::new(10, 0, 9, 2),
            Ipv4Addr::new(10, 0, 9, 3),
            17,
            UDP + len,
        );
        let c = checksum::finish(checksum::add(p, udp));
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn merges_udp_datagrams_and_segments_back_to_the_same_bytes() {
        let mut c = Coalescer::new();
        let dgrams: Vec<Vec<u8>> = (0..6)
            .map(|k| datagram(100 + k, if k < 5 { 64 } else { 20 }))
            .collect();
        assert!(!c.push(3, &dgrams[0], false), "UDP only when asked");
        for d in &dgrams {
            assert!(c.push(3, d, true));
        }
        let (hdr, merged) = c.take().unwrap();
        let hdr = hdr.expect("a run of 6 is USO");
        assert_eq!(
            (
                hdr.gso_type,
                hdr.gso_size,
                hdr.hdr_len,
                hdr.csum_start,
                hdr.csum_offset
            ),
            (vnet::GSO_UDP_L4, 64, 42, 34, 6)
        );
        assert_eq!(merged.len(), 42 + 5 * 64 + 20);
        let mut out = vec![0u8; 8 * 2048];
        let mut lens = [0usize; 8];
        let n = tso::segment(&hdr, merged, &mut out, 2048, 0, &mut lens).unwrap();
        assert_eq!(n, 6);
        for k in 0..6 {
            let got = &out[k * 2048..k * 2048 + lens[k]];
            // Every byte as sent, but the IP ID and header checksum (numbered from the first).
            assert_eq!(got[..ETH + 4], dgrams[k][..ETH + 4]);
            assert_eq!(got[ETH + 6..ETH + 10], dgrams[k][ETH + 6..ETH + 10]);
            assert_eq!(got[ETH + 12..], dgrams[k][ETH + 12..], "datagram {k}");
        }
    }

    #[test]
    fn udp_runs_end_where_they_must() {
        let mut c = Coalescer::new();
        assert!(c.push(1, &datagram(0, 100), true));
        assert!(!c.push(1, &segment(0, 100, ACK), true), "TCP after UDP");
        assert!(!c.push(1, &datagram(1, 200), true), "larger than the first");
        let mut other_port = datagram(1, 100);
        other_port[ETH + IP + 1] ^= 1;
        assert!(
            !c.push(1, &other_port, true),
            "another flow (and a bad checksum)"
        );
        let mut bad_sum = datagram(1, 100);
        bad_sum[ETH + IP + UDP] ^= 0xff;
        assert!(!c.push(1, &bad_sum, true), "a checksum that fails");
        let _ = c.take();
        assert!(!c.push(1, &bad_sum, true), "never starts a run either");
        let mut no_sum = datagram(1, 100);
        no_sum[ETH + IP + 6..ETH + IP + 8].copy_from_slice(&[0, 0]);
        assert!(!c.push(1, &no_sum, true), "no checksum");
        let mut no_df = datagram(1, 100);
        no_df[ETH + 6] = 0;
        assert!(!c.push(1, &no_df, true), "DF clear");
        let mut padded = datagram(1, 10);
        padded.extend_from_slice(&[0; 6]);
        assert!(!c.push(1, &padded, true), "bytes after the datagram");
        for k in 0..MAX_UDP_SEGMENTS as u16 {
            assert!(c.push(1, &datagram(k, 10), true), "{k}");
        }
        assert!(
            !c.push(1, &datagram(99, 10), true),
            "at most MAX_UDP_SEGMENTS"
        );
        let (hdr, f) = c.take().unwrap();
        assert_eq!(hdr.unwrap().gso_type, vnet::GSO_UDP_L4);
        assert_eq!(f.len(), 42 + MAX_UDP_SEGMENTS * 10);
        assert!(
            c.push(1, &segment(0, 1400, ACK), true),
            "TCP after a UDP run ended"
        );
    }

    #[test]
    fn odd_frames_never_panic() {
        let mut c = Coalescer::new();
        let base = segment(0, 100, ACK);
        for len in 0..base.len() {
            let _ = c.push(1, &base[..len], false);
        }
        let mut bad = base.clone();
        bad[ETH + 3] = 0xff; // total length beyond the frame
        assert!(!c.push(2, &bad, false));
    }
}
