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
//! The merged frame carries the pseudo-header sum in the TCP checksum field and
//! VIRTIO_NET_HDR_F_NEEDS_CSUM, as a TSO frame from a guest does; the kernel computes the real
//! checksums when (if ever) it segments it. The segments' own checksums were not verified here:
//! the container's kernel trusts NEEDS_CSUM frames, as it trusts its local TCP. Off with the other
//! offloads (VSWITCH_OFFLOADS=off).

use super::vnet::{self, Header};
use crate::wire::checksum;
use std::net::Ipv4Addr;

const ETH: usize = 14;
const IP: usize = 20;
/// Largest IPv4 packet: the merged frame's IP total length must fit in 16 bits.
const MAX_IP_LEN: usize = 65535;

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

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
    /// Opaque to the coalescer: whom the run is for (the switch port).
    owner: u32,
}

/// Where a TCP/IPv4 frame's parts are, when it can join a run at all.
struct Tcp4 {
    hdr_len: usize,
    payload: usize,
    seq: u32,
    flags: u8,
}

fn parse(frame: &[u8]) -> Option<Tcp4> {
    if frame.len() < ETH + IP + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH..];
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    // IHL 5, TCP, DF set and no fragment offset or MF.
    if ip[0] != 0x45 || ip[9] != 6 || frag != 0x4000 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total < IP + 20 || ETH + total > frame.len() {
        return None;
    }
    let tcp = &frame[ETH + IP..];
    let doff = usize::from(tcp[12] >> 4) * 4;
    let hdr_len = ETH + IP + doff;
    if doff < 20 || hdr_len > ETH + total {
        return None;
    }
    let flags = tcp[13];
    if flags & !PSH != ACK {
        return None;
    }
    let payload = ETH + total - hdr_len;
    if payload == 0 {
        return None;
    }
    Some(Tcp4 {
        hdr_len,
        payload,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags,
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

    /// Adds `frame` (for `owner`) to the run. False when it cannot join the run in progress or
    /// cannot be coalesced at all: the caller then flushes the run and sends `frame` itself,
    /// or, if `can_start` says so, starts a new run with it.
    pub fn push(&mut self, owner: u32, frame: &[u8]) -> bool {
        let Some(t) = parse(frame) else { return false };
        if self.count == 0 {
            self.buf[..t.hdr_len + t.payload].copy_from_slice(&frame[..t.hdr_len + t.payload]);
            self.len = t.hdr_len + t.payload;
            self.count = 1;
            self.mss = t.payload;
            self.hdr_len = t.hdr_len;
            self.next_seq = t.seq.wrapping_add(t.payload as u32);
            self.closed = t.flags & PSH != 0;
            self.owner = owner;
            return true;
        }
        let h = self.hdr_len;
        let first = &self.buf[..h];
        let joins = owner == self.owner
            && !self.closed
            && t.hdr_len == h
            && t.seq == self.next_seq
            && t.payload <= self.mss
            && self.len + t.payload <= MAX_IP_LEN + ETH
            // MACs and EtherType; IP TOS, TTL, protocol, addresses.
            && frame[..ETH] == first[..ETH]
            && frame[ETH + 1] == first[ETH + 1]
            && frame[ETH + 8..ETH + 10] == first[ETH + 8..ETH + 10]
            && frame[ETH + 12..ETH + 20] == first[ETH + 12..ETH + 20]
            // TCP ports, ACK number, data offset, window; flags but PSH; options.
            && frame[ETH + IP..ETH + IP + 4] == first[ETH + IP..ETH + IP + 4]
            && frame[ETH + IP + 8..ETH + IP + 13] == first[ETH + IP + 8..ETH + IP + 13]
            && (frame[ETH + IP + 13] & !PSH) == (first[ETH + IP + 13] & !PSH)
            && frame[ETH + IP + 14..ETH + IP + 16] == first[ETH + IP + 14..ETH + IP + 16]
            && frame[ETH + IP + 20..h] == first[ETH + IP + 20..h];
        if !joins {
            return false;
        }
        self.buf[self.len..self.len + t.payload].copy_from_slice(&frame[h..h + t.payload]);
        self.len += t.payload;
        self.count += 1;
        self.next_seq = self.next_seq.wrapping_add(t.payload as u32);
        if t.flags & PSH != 0 {
            // PSH ends the run; carry it on the merged frame.
            self.buf[ETH + IP + 13] |= PSH;
            self.closed = true;
        }
        if t.payload < self.mss {
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
        let hdr = Header {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4,
            hdr_len: self.hdr_len as u16,
            gso_size: self.mss as u16,
            csum_start: (ETH + IP) as u16,
            csum_offset: 16,
        };
        let f = &mut self.buf[..len];
        let total = (len - ETH) as u16;
        f[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        f[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
        let c = checksum::ipv4_header(&f[ETH..ETH + IP]);
        f[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
        // CHECKSUM_PARTIAL convention: the field holds the folded pseudo-header sum.
        let src = Ipv4Addr::new(f[ETH + 12], f[ETH + 13], f[ETH + 14], f[ETH + 15]);
        let dst = Ipv4Addr::new(f[ETH + 16], f[ETH + 17], f[ETH + 18], f[ETH + 19]);
        let pseudo = !checksum::finish(checksum::pseudo_v4(src, dst, 6, len - ETH - IP));
        f[ETH + IP + 16..ETH + IP + 18].copy_from_slice(&pseudo.to_be_bytes());
        Some((Some(hdr), &self.buf[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::tso;

    /// A TCP/IPv4 segment of `len` payload bytes at `seq` (pattern by absolute offset), with a
    /// 12-byte timestamp option, valid checksums.
    fn segment(seq: u32, len: usize, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; ETH + IP + 32 + len];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 3]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (IP + 32 + len) as u16;
        let ip = &mut f[ETH..ETH + IP];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 0, 9, 2]);
        ip[16..20].copy_from_slice(&[10, 0, 9, 3]);
        let c = checksum::ipv4_header(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
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
            assert!(c.push(7, s));
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
        assert!(c.push(1, &segment(0, 1400, ACK)));
        assert!(!c.push(2, &segment(1400, 1400, ACK)), "another port");
        assert!(!c.push(1, &segment(2800, 1400, ACK)), "a gap in sequence");
        assert!(
            c.push(1, &segment(1400, 1400, ACK | PSH)),
            "PSH joins and ends the run"
        );
        assert!(!c.push(1, &segment(2800, 1400, ACK)), "after PSH");
        let (hdr, f) = c.take().unwrap();
        assert!(hdr.is_some() && f[ETH + IP + 13] & PSH != 0);

        assert!(c.push(1, &segment(0, 1000, ACK)));
        assert!(
            !c.push(1, &segment(1000, 1400, ACK)),
            "larger than the first"
        );
        assert!(c.push(1, &segment(1000, 500, ACK)), "a shorter last");
        assert!(!c.push(1, &segment(1500, 500, ACK)), "after a short one");
        let _ = c.take();

        assert!(!c.push(1, &segment(0, 1400, ACK | 0x01)), "FIN never joins");
        assert!(!c.push(1, &segment(0, 0, ACK)), "a pure ACK never joins");
        let mut other_window = segment(1400, 1400, ACK);
        assert!(c.push(1, &segment(0, 1400, ACK)));
        other_window[ETH + IP + 15] ^= 1;
        assert!(!c.push(1, &other_window), "window changed");
        let (hdr, f) = c.take().unwrap();
        assert!(hdr.is_none(), "a run of one is written as it came");
        assert_eq!(f, &segment(0, 1400, ACK)[..]);
    }

    #[test]
    fn odd_frames_never_panic() {
        let mut c = Coalescer::new();
        let base = segment(0, 100, ACK);
        for len in 0..base.len() {
            let _ = c.push(1, &base[..len]);
        }
        let mut bad = base.clone();
        bad[ETH + 3] = 0xff; // total length beyond the frame
        assert!(!c.push(2, &bad));
    }
}
