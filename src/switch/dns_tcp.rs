//! DNS over TCP (RFC 7766) at a network's own address, answered without keeping connections.
//!
//! Contract. A resolver opens a connection to the network's address, port 53, when a UDP
//! answer came back truncated or when told to (`options use-vc`); it sends each query with a
//! two-byte length in front, reads the answers the same way, and closes. The switch answers
//! every segment from the segment alone, as a SYN cookie server would, so no connection state
//! lives in the switch and a worker answers on the path it forwards on:
//! - a SYN: a SYN-ACK whose sequence number is a hash of the connection and the client's own
//!   initial sequence number, with an MSS that fits the network's MTU (`Step::Open`);
//! - data holding complete queries: one segment with the answers to the leading queries the
//!   switch owns (crate::switch::dns), in order, its sequence number the one the client
//!   acknowledges, acknowledging the queries answered (`Step::Answer`); a first query the
//!   switch does not own goes to the forwarder (crate::control::dns), which answers it
//!   the same way;
//! - a FIN: a FIN-ACK (`Step::Close`);
//! - an ACK, a reset, or a query not yet whole: nothing (`Verdict::TcpQuiet`).
//!
//! What is lost is TCP's own recovery on the switch's side: an answer segment that is lost is
//! not sent again unless the client sends its query again. Between a container and its TAP
//! nothing is lost but to a full queue; a resolver that gets nothing asks again.
//!
//! Thread-safety: pure functions; called on the worker (and by `trace`) and by the forwarder.

use super::dns::{self, Verdict};
use super::topology::NetworkTopo;
use crate::wire::ethernet::{self, EtherType, Frame};
use crate::wire::tcp::{self, Flags};
use crate::wire::{ipv4, MacAddr};
use domain::base::Message;
use std::net::Ipv4Addr;

/// What the switch sends for a segment it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// SYN-ACK to a SYN.
    Open,
    /// The answers to the segment's leading queries; `Reply` is the first one's, for counting.
    Answer(dns::Reply),
    /// FIN-ACK to a FIN.
    Close,
}

/// The window the switch advertises: one query at a time is all it reads.
const WINDOW: u16 = 65535;

/// The parts of a segment to the network's address, port 53, that an answer needs.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub from_mac: MacAddr,
    pub from_ip: Ipv4Addr,
    pub from_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: Flags,
    pub payload: &'a [u8],
}

/// The TCP segment to `net`'s own address, port 53, in `eth`; `None` when the frame is
/// something else.
pub fn segment<'a>(net: &NetworkTopo, eth: &'a Frame<&'a [u8]>) -> Option<Segment<'a>> {
    let (own_ip, own_mac) = net.service()?;
    if eth.dst() != own_mac || eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let bytes: &'a [u8] = eth.payload();
    let ip = ipv4::Packet::new_checked(bytes).ok()?;
    if ip.dst() != own_ip || ip.protocol() != ipv4::PROTO_TCP || ip.is_fragment() {
        return None;
    }
    let (hl, total) = (ip.header_len(), usize::from(ip.total_len()));
    let t = tcp::Packet::new_checked(bytes.get(hl..total)?).ok()?;
    if t.dst_port() != dns::PORT {
        return None;
    }
    let start = hl + t.header_len();
    Some(Segment {
        from_mac: eth.src(),
        from_ip: ip.src(),
        from_port: t.src_port(),
        seq: t.seq(),
        ack: t.ack(),
        flags: t.flags(),
        payload: &bytes[start..total],
    })
}

/// The first complete query of a segment's payload: the message and the bytes it takes with
/// its length prefix.
pub fn first_query(payload: &[u8]) -> Option<(&[u8], usize)> {
    let len = usize::from(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]));
    Some((payload.get(2..2 + len)?, 2 + len))
}

/// What the switch does with `seg`.
pub fn classify(net: &NetworkTopo, seg: &Segment) -> Verdict {
    let f = seg.flags;
    if f.has(Flags::RST) {
        return Verdict::TcpQuiet;
    }
    if f.has(Flags::SYN) {
        return match f.has(Flags::ACK) {
            false => Verdict::Tcp(Step::Open),
            true => Verdict::TcpQuiet,
        };
    }
    if !f.has(Flags::ACK) {
        return Verdict::TcpQuiet;
    }
    if f.has(Flags::FIN) {
        return Verdict::Tcp(Step::Close);
    }
    match first_query(seg.payload) {
        None => Verdict::TcpQuiet,
        Some((msg, _)) => match dns::decide_query(net, msg) {
            Verdict::Answer(r) => Verdict::Tcp(Step::Answer(r)),
            other => other,
        },
    }
}

/// The switch's initial sequence number for the connection `seg` opens: the same for a SYN
/// sent again, different for every connection (RFC 9293 §3.4.1 asks for unpredictable ones;
/// here only the containers of the network, which cannot forge each other's addresses, talk
/// to it).
fn initial_seq(seg: &Segment) -> u32 {
    let mut h = u64::from(u32::from(seg.from_ip)) << 32
        | u64::from(seg.from_port) << 16
        | u64::from(seg.seq >> 16);
    h ^= u64::from(seg.seq).rotate_left(29);
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    (h ^ (h >> 33)) as u32
}

/// The most payload one of the switch's segments carries on `net`: its MTU less the IPv4 and
/// TCP headers, within a 1514-byte frame.
pub fn mss(net: &NetworkTopo) -> usize {
    (net.spec.mtu as usize).min(1500) - ipv4::MIN_HEADER_LEN - tcp::HEADER_LEN
}

/// Bytes in front of the payload of a segment without options.
pub const HEADERS: usize = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + tcp::HEADER_LEN;

/// Writes the Ethernet, IPv4 and TCP headers of a segment from `net`'s address, port 53, to
/// the client of `seg`, in front of the `payload_len` bytes already at `out[HEADERS..]`
/// (`out[HEADERS + 4..]` when `mss` is given); returns the frame's length (0 when the network
/// has no address).
#[allow(clippy::too_many_arguments)]
pub fn segment_headers(
    net: &NetworkTopo,
    to: (MacAddr, Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: Flags,
    mss: Option<u16>,
    payload_len: usize,
    out: &mut [u8],
) -> usize {
    let Some((own_ip, own_mac)) = net.service() else {
        return 0;
    };
    let mut eth = Frame::new_unchecked(&mut out[..ethernet::HEADER_LEN]);
    eth.set_dst(to.0);
    eth.set_src(own_mac);
    eth.set_ethertype(EtherType::Ipv4);
    let n = tcp::Repr {
        src: own_ip,
        dst: to.1,
        src_port: dns::PORT,
        dst_port: to.2,
        seq,
        ack,
        flags,
        window: WINDOW,
        mss,
    }
    .emit(&mut out[ethernet::HEADER_LEN..], payload_len);
    ethernet::HEADER_LEN + n
}

/// Writes the segment `step` answers `request` with (the frame `classify` saw) into `out`, at
/// least 1514 bytes, and returns its length (0 if the request no longer parses).
pub fn emit(net: &NetworkTopo, step: Step, request: &[u8], out: &mut [u8]) -> usize {
    let Ok(eth) = Frame::new_checked(request) else {
        return 0;
    };
    let Some(seg) = segment(net, &eth) else {
        return 0;
    };
    let to = (seg.from_mac, seg.from_ip, seg.from_port);
    match step {
        Step::Open => {
            let mss = mss(net) as u16;
            let isn = initial_seq(&seg);
            let flags = Flags::SYN | Flags::ACK;
            let ack = seg.seq.wrapping_add(1);
            segment_headers(net, to, isn, ack, flags, Some(mss), 0, out)
        }
        Step::Close => {
            let ack = seg.seq.wrapping_add(seg.payload.len() as u32 + 1);
            let flags = Flags::FIN | Flags::ACK;
            segment_headers(net, to, seg.ack, ack, flags, None, 0, out)
        }
        Step::Answer(_) => {
            let (written, consumed) = answers(net, seg.payload, &mut out[HEADERS..]);
            if consumed == 0 {
                return 0;
            }
            let ack = seg.seq.wrapping_add(consumed as u32);
            let flags = Flags::ACK | Flags::PSH;
            segment_headers(net, to, seg.ack, ack, flags, None, written, out)
        }
    }
}

/// Writes the answers to the leading queries of `payload` that the switch owns, each with its
/// length prefix, into `out` while they fit one segment; returns the bytes written and the
/// bytes of `payload` answered.
fn answers(net: &NetworkTopo, payload: &[u8], out: &mut [u8]) -> (usize, usize) {
    let room = mss(net).min(out.len());
    let (mut written, mut consumed) = (0, 0);
    while let Some((q, used)) = first_query(&payload[consumed..]) {
        let Verdict::Answer(reply) = dns::decide_query(net, q) else {
            break;
        };
        let Ok(msg) = Message::from_octets(q) else {
            break;
        };
        if room < written + 2 {
            break;
        }
        let max = room - written - 2;
        let Some(len) = dns::answer_message(net, reply, &msg, max, &mut out[written + 2..]) else {
            break;
        };
        if len > max {
            break;
        }
        out[written..written + 2].copy_from_slice(&(len as u16).to_be_bytes());
        written += 2 + len;
        consumed += used;
    }
    (written, consumed)
}
