//! DNS by endpoint name, answered by the switch itself at the network's own address
//! (crate::switch::service), as proxy-ARP answers ARP.
//!
//! Contract. `classify` looks at a frame from a local port; when it is a UDP datagram to the
//! network's own address, port 53, it says what becomes of it:
//! - `NAME` and `NAME.NETWORK` (any case, with or without the root dot) of an endpoint of the
//!   network: its address (A; NOERROR with no records for other types such as AAAA);
//! - `d.c.b.a.in-addr.arpa` (PTR) for an endpoint's address: `NAME.NETWORK.`;
//! - any other name under `NETWORK.`, or an address of the subnet no endpoint holds:
//!   NXDOMAIN at once (RFC 8020: nothing exists below a name that does not);
//! - a message that is not a standard query with one question: NOTIMP / FORMERR;
//! - every other name: the control side's forwarder asks the host's resolvers
//!   (crate::control::dns), so a container resolves the outside world through its network's
//!   address alone;
//! - bytes that do not parse as a DNS message: dropped and counted (`dns_malformed`).
//!
//! The same queries over TCP (RFC 7766), for resolvers that retry there after a truncated
//! answer or are told to (`options use-vc`), are answered segment by segment without keeping
//! connections: crate::switch::dns_tcp.
//!
//! `emit` then writes the answer frame (Ethernet, IPv4, UDP, DNS) for the decision, from the
//! request and the topology it was decided by. Both parse the request in place (NLnet Labs'
//! `domain`), build the answer into a fixed array, and allocate nothing, so a worker answers
//! as it forwards.
//!
//! Thread-safety: pure functions; called on the worker (and by `trace`).

use super::topology::NetworkTopo;
use crate::wire::ethernet::{self, EtherType, Frame};
use crate::wire::{ipv4, udp, MacAddr};
use domain::base::iana::{Class, Opcode, Rcode, Rtype};
use domain::base::name::{NameBuilder, ToLabelIter};
use domain::base::{Message, MessageBuilder, Ttl};
use domain::rdata::{Ptr, A};
use std::net::Ipv4Addr;

/// The DNS port (RFC 1035 §4.2.1).
pub const PORT: u16 = 53;

/// Seconds a resolver may keep an answer: short, as containers come and go.
pub const TTL_SECS: u32 = 5;

/// The largest DNS message the switch answers with over UDP without EDNS (RFC 1035 §2.3.4);
/// its own answers are far smaller.
pub const UDP_MAX: usize = 512;

/// The longest query frame handed to the forwarder: Ethernet, IPv4, a TCP header with every
/// option (or UDP's), the two bytes of TCP's length prefix and a DNS message of up to 512
/// bytes (RFC 1035 §2.3.4); longer ones are counted as refused, never answered.
pub const QUERY_FRAME_MAX: usize = 14 + 20 + 60 + 2 + UDP_MAX;

/// A query frame a worker hands the forwarder (crate::control::dns), by value: the channel's
/// slots are made once, so the worker does not allocate.
#[derive(Clone, Copy)]
pub struct UpstreamQuery {
    pub port: super::PortId,
    pub network: super::Vni,
    pub len: usize,
    pub frame: [u8; QUERY_FRAME_MAX],
}

impl UpstreamQuery {
    /// The query `frame` from `port`, if it fits.
    pub fn new(port: super::PortId, network: super::Vni, frame: &[u8]) -> Option<UpstreamQuery> {
        let mut q = UpstreamQuery {
            port,
            network,
            len: frame.len(),
            frame: [0; QUERY_FRAME_MAX],
        };
        q.frame.get_mut(..frame.len())?.copy_from_slice(frame);
        Some(q)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.frame[..self.len]
    }
}

/// What the switch answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The endpoint's address (A).
    Address(Ipv4Addr),
    /// The name of the endpoint at this address (PTR).
    Name(Ipv4Addr),
    /// The name exists, with no record of the type asked (e.g. AAAA).
    NoData,
    NxDomain,
    /// Not a standard query (NOTIMP).
    NotImplemented,
    /// No question, or several (FORMERR).
    FormErr,
}

/// What becomes of a datagram to the network's DNS address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The frame is not a DNS query to the switch: forward it as any other.
    NotDns,
    Answer(Reply),
    /// A name the switch does not own: the forwarder asks the host's resolvers.
    Forward,
    /// Addressed to the switch's DNS, but not a DNS message.
    Malformed,
    /// A TCP segment the switch answers with one of its own.
    Tcp(super::dns_tcp::Step),
    /// A TCP segment that needs no answer: an ACK, a reset, part of a query.
    TcpQuiet,
}

impl Reply {
    pub fn rcode(self) -> Rcode {
        match self {
            Reply::Address(_) | Reply::Name(_) | Reply::NoData => Rcode::NOERROR,
            Reply::NxDomain => Rcode::NXDOMAIN,
            Reply::NotImplemented => Rcode::NOTIMP,
            Reply::FormErr => Rcode::FORMERR,
        }
    }
}

/// The DNS message of a UDP datagram to `net`'s own address, port 53, in `eth`; `None` when the
/// frame is something else.
pub fn query_payload<'a>(net: &NetworkTopo, eth: &'a Frame<&'a [u8]>) -> Option<&'a [u8]> {
    let (own_ip, own_mac) = net.service()?;
    if eth.dst() != own_mac || eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let bytes: &'a [u8] = eth.payload();
    let ip = ipv4::Packet::new_checked(bytes).ok()?;
    if ip.dst() != own_ip || ip.protocol() != ipv4::PROTO_UDP || ip.is_fragment() {
        return None;
    }
    let (hl, total) = (ip.header_len(), usize::from(ip.total_len()));
    let u = udp::Packet::new_checked(&bytes[hl..total]).ok()?;
    if u.dst_port() != PORT {
        return None;
    }
    let len = u.len();
    Some(&bytes[hl + udp::HEADER_LEN..hl + len])
}

/// What the switch does with the frame `eth`, which came from a port of `net`.
pub fn classify(net: &NetworkTopo, eth: &Frame<&[u8]>) -> Verdict {
    if let Some(payload) = query_payload(net, eth) {
        return decide_query(net, payload);
    }
    match super::dns_tcp::segment(net, eth) {
        Some(seg) => super::dns_tcp::classify(net, &seg),
        None => Verdict::NotDns,
    }
}

/// Case-insensitive label comparison (RFC 4343).
fn label_is(label: &[u8], name: &str) -> bool {
    label.eq_ignore_ascii_case(name.as_bytes())
}

/// The most labels of a name the switch owns (`d.c.b.a.in-addr.arpa`).
const MAX_LABELS: usize = 6;

/// What the DNS message `payload` asks of the switch (any transport).
pub(super) fn decide_query(net: &NetworkTopo, payload: &[u8]) -> Verdict {
    let Ok(msg) = Message::from_octets(payload) else {
        return Verdict::Malformed;
    };
    let h = msg.header();
    if h.qr() {
        // A response sent to the switch: nobody asked for it.
        return Verdict::Malformed;
    }
    if h.opcode() != Opcode::QUERY {
        return Verdict::Answer(Reply::NotImplemented);
    }
    let q = match msg.sole_question() {
        Ok(q) => q,
        Err(_) if msg.header_counts().qdcount() != 1 => {
            return Verdict::Answer(Reply::FormErr);
        }
        Err(_) => return Verdict::Malformed,
    };
    if q.qclass() != Class::IN {
        return Verdict::Forward;
    }
    // The labels, root dropped; names longer than the switch's own are someone else's.
    let mut labels: [&[u8]; MAX_LABELS] = [&[]; MAX_LABELS];
    let mut n = 0;
    for l in q.qname().iter_labels() {
        if l.is_root() {
            break;
        }
        if n == MAX_LABELS {
            return Verdict::Forward;
        }
        labels[n] = l.as_slice();
        n += 1;
    }
    let labels = &labels[..n];
    let network = net.spec.name.as_str();
    let found = |label: &[u8]| net.endpoint_by_name(label).and_then(|e| e.ip);
    let for_address = |ip: Ipv4Addr| match q.qtype() {
        Rtype::A | Rtype::ANY => Verdict::Answer(Reply::Address(ip)),
        _ => Verdict::Answer(Reply::NoData),
    };
    match labels {
        [one] => match found(one) {
            Some(ip) => for_address(ip),
            None => Verdict::Forward,
        },
        [one, domain] if label_is(domain, network) => match found(one) {
            Some(ip) => for_address(ip),
            None => Verdict::Answer(Reply::NxDomain),
        },
        [.., domain] if label_is(domain, network) => Verdict::Answer(Reply::NxDomain),
        [d, c, b, a, inaddr, arpa] if label_is(inaddr, "in-addr") && label_is(arpa, "arpa") => {
            match reverse_address([a, b, c, d]) {
                Some(ip) if net.spec.subnet.contains(&ip) => {
                    match net.endpoint_by_ip(ip).filter(|e| net.dns_name(e).is_some()) {
                        Some(_) if q.qtype() == Rtype::PTR || q.qtype() == Rtype::ANY => {
                            Verdict::Answer(Reply::Name(ip))
                        }
                        Some(_) => Verdict::Answer(Reply::NoData),
                        None => Verdict::Answer(Reply::NxDomain),
                    }
                }
                _ => Verdict::Forward,
            }
        }
        _ => Verdict::Forward,
    }
}

/// The address of a reverse name's four labels, most significant first.
fn reverse_address(octets: [&[u8]; 4]) -> Option<Ipv4Addr> {
    let mut out = [0u8; 4];
    for (o, l) in out.iter_mut().zip(octets) {
        let s = std::str::from_utf8(l).ok()?;
        if s.is_empty() || s.len() > 3 || (s.len() > 1 && s.starts_with('0')) {
            return None;
        }
        *o = s.parse().ok()?;
    }
    Some(Ipv4Addr::from(out))
}

/// Bytes of Ethernet, IPv4 and UDP headers in front of an answer.
const HEADERS: usize = ethernet::HEADER_LEN + udp::Repr::HEADERS_LEN;

/// The room an answer's DNS message has in a 1514-byte frame.
type AnswerBuf = domain::dep::octseq::array::Array<{ 1514 - HEADERS }>;

/// Writes the answer `reply` to the query in `request` (the frame `classify` saw) into `out`,
/// which holds at least 1514 bytes, and returns the frame's length (0 if the request no longer
/// parses, which `classify` rules out).
pub fn emit(net: &NetworkTopo, reply: Reply, request: &[u8], out: &mut [u8]) -> usize {
    let Ok(eth) = Frame::new_checked(request) else {
        return 0;
    };
    let Some(payload) = query_payload(net, &eth) else {
        return 0;
    };
    let Ok(msg) = Message::from_octets(payload) else {
        return 0;
    };
    let Some(len) = answer_message(net, reply, &msg, UDP_MAX, &mut out[HEADERS..]) else {
        return 0;
    };
    let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) else {
        return 0;
    };
    let Ok(u) = udp::Packet::new_checked(ip.payload()) else {
        return 0;
    };
    udp_reply_headers(net, eth.src(), ip.src(), u.src_port(), len, out)
}

/// Writes the Ethernet, IPv4 and UDP headers of a datagram from the network's DNS address to a
/// container, in front of the `dns_len` bytes of DNS message at `out[HEADERS..]`; returns the
/// frame's length. Also used by the forwarder for the answers it relays.
pub fn udp_reply_headers(
    net: &NetworkTopo,
    to_mac: MacAddr,
    to_ip: Ipv4Addr,
    to_port: u16,
    dns_len: usize,
    out: &mut [u8],
) -> usize {
    let Some((own_ip, own_mac)) = net.service() else {
        return 0;
    };
    let mut eth = Frame::new_unchecked(&mut out[..ethernet::HEADER_LEN]);
    eth.set_dst(to_mac);
    eth.set_src(own_mac);
    eth.set_ethertype(EtherType::Ipv4);
    let n = udp::Repr {
        src: own_ip,
        dst: to_ip,
        src_port: PORT,
        dst_port: to_port,
    }
    .emit(&mut out[ethernet::HEADER_LEN..], dns_len);
    ethernet::HEADER_LEN + n
}

/// Where a relayed answer's DNS message goes in the buffer given to `udp_reply_headers`.
pub const ANSWER_OFFSET: usize = HEADERS;

/// Writes the answer `reply` to `msg` into `out`, at most `max` bytes of it (a longer answer is
/// cut to its question, with TC); returns its length.
pub(super) fn answer_message(
    net: &NetworkTopo,
    reply: Reply,
    msg: &Message<&[u8]>,
    max: usize,
    out: &mut [u8],
) -> Option<usize> {
    // FORMERR and NOTIMP answer a message the switch did not take apart: its header alone
    // (copying questions that need not parse could make the answer longer than the query).
    if matches!(reply, Reply::FormErr | Reply::NotImplemented) {
        return header_only(msg, reply.rcode(), false, out);
    }
    let mut b = MessageBuilder::from_target(AnswerBuf::new())
        .ok()?
        .start_answer(msg, reply.rcode())
        .ok()?;
    b.header_mut().set_aa(true);
    b.header_mut().set_ra(true);
    let ttl = Ttl::from_secs(TTL_SECS);
    match reply {
        Reply::Address(ip) => {
            let q = msg.sole_question().ok()?;
            b.push((q.qname(), Class::IN, ttl, A::new(ip))).ok()?;
        }
        Reply::Name(ip) => {
            let q = msg.sole_question().ok()?;
            let e = net.endpoint_by_ip(ip)?;
            let mut name = NameBuilder::<domain::dep::octseq::array::Array<255>>::new();
            name.append_label(net.dns_name(e)?.as_bytes()).ok()?;
            name.append_label(net.spec.name.as_bytes()).ok()?;
            let name = name.into_name().ok()?;
            b.push((q.qname(), Class::IN, ttl, Ptr::new(name))).ok()?;
        }
        Reply::NoData | Reply::NxDomain | Reply::NotImplemented | Reply::FormErr => {}
    }
    let bytes = b.finish();
    if bytes.as_ref().len() <= max {
        return copy_out(bytes.as_ref(), out);
    }
    // Only a name near 255 bytes, compressed in the query, makes an answer this long: say so
    // (TC) with the question alone rather than send more than 512 bytes (RFC 1035 §4.2.1).
    let mut t = MessageBuilder::from_target(AnswerBuf::new())
        .ok()?
        .start_answer(msg, reply.rcode())
        .ok()?;
    t.header_mut().set_tc(true);
    t.header_mut().set_aa(true);
    t.header_mut().set_ra(true);
    let t = t.finish();
    if t.as_ref().len() <= max {
        return copy_out(t.as_ref(), out);
    }
    header_only(msg, reply.rcode(), true, out)
}

/// An answer that is the header alone: the query's ID, opcode and RD, `rcode`, and TC when
/// `tc`.
fn header_only(msg: &Message<&[u8]>, rcode: Rcode, tc: bool, out: &mut [u8]) -> Option<usize> {
    let mut t = MessageBuilder::from_target(AnswerBuf::new()).ok()?;
    let h = t.header_mut();
    h.set_id(msg.header().id());
    h.set_qr(true);
    h.set_opcode(msg.header().opcode());
    h.set_rd(msg.header().rd());
    h.set_ra(true);
    h.set_tc(tc);
    h.set_rcode(rcode);
    copy_out(t.finish().as_ref(), out)
}

fn copy_out(bytes: &[u8], out: &mut [u8]) -> Option<usize> {
    out.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_labels_give_an_address_only_when_each_is_a_plain_octet() {
        assert_eq!(
            reverse_address([b"10", b"0", b"9", b"3"]),
            Some(Ipv4Addr::new(10, 0, 9, 3))
        );
        assert_eq!(reverse_address([b"10", b"0", b"9", b"256"]), None);
        assert_eq!(reverse_address([b"10", b"0", b"09", b"3"]), None);
        assert_eq!(reverse_address([b"10", b"", b"9", b"3"]), None);
        assert_eq!(reverse_address([b"10", b"x", b"9", b"3"]), None);
    }
}
