//! The reachability probe `vswitchctl doctor` and `show peers` rely on: a UDP payload sent to a
//! peer's VXLAN port (and ESP port) that the peer's vswitchd answers.
//!
//! ```text
//!  0       4       8   9   10      12              16              24
//! |0 0 0 0|V S W P|ver|kind|  idx  |  received len |     token     | ...
//! ```
//!
//! - Bytes 0..4 are zero. On the VXLAN port byte 0 is VXLAN's flags with the I flag clear, which
//!   RFC 7348 §5 receivers refuse: the Linux kernel's vxlan device drops it (`invalid vxlan
//!   flags`) and never takes it for a frame, so a kernel VXLAN peer is not confused by a probe
//!   (it just does not answer). On the ESP-in-UDP port they are RFC 3948 §2.2's non-ESP marker
//!   (SPI 0 is reserved, RFC 4303 §2.1): no IPsec stack takes it for ESP.
//! - `VSWP`, version 1, kind 1 (request) or 2 (reply).
//! - Request: `idx` is the first of the responder's networks the reply should list (a peer with
//!   more networks than fit one reply is read in pages); the rest of the payload up to the size
//!   the prober chose is zero padding — sent with don't-fragment, it measures the path MTU.
//! - Reply: `idx` is how many networks the responder has, `received len` the request's UDP
//!   payload length as it arrived, `token` the request's. Then the responder's wall clock (ns
//!   since the Unix epoch, 8 bytes), the number of network entries (2), its node name (length,
//!   1 byte, then UTF-8), and per network: flags (1 byte, bit 0 encrypted) and VNI (3), MTU (2),
//!   name (length, 1 byte, then UTF-8). A reply is at most `MAX_REPLY_LEN` bytes, whatever
//!   the request's size, so it crosses any path the underlay can carry at all.
//!
//! Nothing here allocates but `Reply::parse`, which the control side calls.

use std::net::Ipv4Addr;

mod field {
    use crate::wire::Field;
    pub const MARKER: Field = 0..4;
    pub const MAGIC: Field = 4..8;
    pub const VERSION: usize = 8;
    pub const KIND: usize = 9;
    pub const INDEX: Field = 10..12;
    pub const RECEIVED: Field = 12..16;
    pub const TOKEN: Field = 16..24;
    pub const WALL: Field = 24..32;
    pub const ENTRIES: Field = 32..34;
    pub const NODE_LEN: usize = 34;
}

pub const MAGIC: [u8; 4] = *b"VSWP";
pub const VERSION: u8 = 1;
pub const KIND_REQUEST: u8 = 1;
pub const KIND_REPLY: u8 = 2;
/// The smallest request: header and token.
pub const REQUEST_LEN: usize = field::TOKEN.end;
/// A reply never exceeds this (576-byte IPv4 minus IP and UDP headers).
pub const MAX_REPLY_LEN: usize = 548;
/// Longest node or network name a reply carries (longer ones are cut).
pub const MAX_NAME_LEN: usize = 64;

/// Whether a UDP payload is a probe (request or reply) rather than VXLAN or ESP.
pub fn is_probe(payload: &[u8]) -> bool {
    payload.len() >= REQUEST_LEN
        && payload[field::MARKER] == [0, 0, 0, 0]
        && payload[field::MAGIC] == MAGIC
}

/// A probe request, as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub token: u64,
    /// The first network the reply should list.
    pub first_network: u16,
    /// The request's UDP payload length as it arrived.
    pub len: u32,
}

impl Request {
    /// The request in `payload`, if it is one this version answers.
    pub fn parse(payload: &[u8]) -> Option<Request> {
        if !is_probe(payload)
            || payload[field::VERSION] != VERSION
            || payload[field::KIND] != KIND_REQUEST
        {
            return None;
        }
        Some(Request {
            token: u64::from_be_bytes(payload[field::TOKEN].try_into().ok()?),
            first_network: u16::from_be_bytes([payload[10], payload[11]]),
            len: payload.len() as u32,
        })
    }
}

/// Writes a request of `size` bytes (at least `REQUEST_LEN`) into `out` and returns its length.
pub fn emit_request(out: &mut [u8], token: u64, first_network: u16, size: usize) -> usize {
    let len = size.max(REQUEST_LEN).min(out.len());
    out[..len].fill(0);
    out[field::MAGIC].copy_from_slice(&MAGIC);
    out[field::VERSION] = VERSION;
    out[field::KIND] = KIND_REQUEST;
    out[field::INDEX].copy_from_slice(&first_network.to_be_bytes());
    out[field::TOKEN].copy_from_slice(&token.to_be_bytes());
    len
}

/// One of the responder's networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEntry {
    pub name: String,
    pub vni: u32,
    pub encrypted: bool,
    pub mtu: u16,
}

/// Writes a reply to `req` into `out` (at least `MAX_REPLY_LEN` bytes) and returns its length:
/// `node` is the responder's name, `wall_ns` its clock, `networks` all of its networks as
/// (name, VNI, encrypted, MTU), of which those from `req.first_network` on are listed while
/// they fit. Allocates nothing.
pub fn emit_reply<'a>(
    out: &mut [u8],
    req: &Request,
    wall_ns: u64,
    node: &str,
    networks: impl Iterator<Item = (&'a str, u32, bool, u32)>,
) -> usize {
    let out = &mut out[..MAX_REPLY_LEN];
    out[..field::NODE_LEN].fill(0);
    out[field::MAGIC].copy_from_slice(&MAGIC);
    out[field::VERSION] = VERSION;
    out[field::KIND] = KIND_REPLY;
    out[field::RECEIVED].copy_from_slice(&req.len.to_be_bytes());
    out[field::TOKEN].copy_from_slice(&req.token.to_be_bytes());
    out[field::WALL].copy_from_slice(&wall_ns.to_be_bytes());
    let node = cut(node);
    out[field::NODE_LEN] = node.len() as u8;
    let mut at = field::NODE_LEN + 1;
    out[at..at + node.len()].copy_from_slice(node);
    at += node.len();
    let (mut total, mut listed) = (0u16, 0u16);
    let mut full = false;
    for (name, vni, encrypted, mtu) in networks {
        let k = total;
        total = total.saturating_add(1);
        if k < req.first_network || full {
            continue;
        }
        let name = cut(name);
        let need = 4 + 2 + 1 + name.len();
        if at + need > out.len() {
            full = true;
            continue;
        }
        let v = vni.to_be_bytes();
        out[at] = u8::from(encrypted);
        out[at + 1..at + 4].copy_from_slice(&v[1..]);
        out[at + 4..at + 6].copy_from_slice(&(mtu.min(u32::from(u16::MAX)) as u16).to_be_bytes());
        out[at + 6] = name.len() as u8;
        out[at + 7..at + 7 + name.len()].copy_from_slice(name);
        at += need;
        listed += 1;
    }
    out[field::INDEX].copy_from_slice(&total.to_be_bytes());
    out[field::ENTRIES].copy_from_slice(&listed.to_be_bytes());
    at
}

/// A name cut to `MAX_NAME_LEN` bytes at a character boundary.
fn cut(s: &str) -> &[u8] {
    let mut end = s.len().min(MAX_NAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

/// A reply, as the prober reads it (control side; allocates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub token: u64,
    /// The request's UDP payload length as the responder received it.
    pub received_len: u32,
    /// The responder's wall clock, ns since the Unix epoch.
    pub wall_ns: u64,
    pub node: String,
    /// How many networks the responder has in all.
    pub total_networks: u16,
    /// Those of them listed in this reply, from the request's `first_network` on.
    pub networks: Vec<NetworkEntry>,
}

impl Reply {
    pub fn parse(payload: &[u8]) -> Option<Reply> {
        if !is_probe(payload)
            || payload.len() <= field::NODE_LEN
            || payload[field::VERSION] != VERSION
            || payload[field::KIND] != KIND_REPLY
        {
            return None;
        }
        let be64 = |f: std::ops::Range<usize>| u64::from_be_bytes(payload[f].try_into().unwrap());
        let n = usize::from(u16::from_be_bytes([payload[32], payload[33]]));
        let mut at = field::NODE_LEN + 1;
        let node_len = usize::from(payload[field::NODE_LEN]);
        let node = String::from_utf8_lossy(payload.get(at..at + node_len)?).into_owned();
        at += node_len;
        let mut networks = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let h = payload.get(at..at + 7)?;
            let name_len = usize::from(h[6]);
            let name = payload.get(at + 7..at + 7 + name_len)?;
            networks.push(NetworkEntry {
                name: String::from_utf8_lossy(name).into_owned(),
                vni: u32::from_be_bytes([0, h[1], h[2], h[3]]),
                encrypted: h[0] & 1 != 0,
                mtu: u16::from_be_bytes([h[4], h[5]]),
            });
            at += 7 + name_len;
        }
        Some(Reply {
            token: be64(field::TOKEN),
            received_len: u32::from_be_bytes(payload[field::RECEIVED].try_into().unwrap()),
            wall_ns: be64(field::WALL),
            node,
            total_networks: u16::from_be_bytes([payload[10], payload[11]]),
            networks,
        })
    }
}

/// IPv4 and UDP headers in front of a probe: a probe of `n` bytes is an IP packet of `n + 28`.
pub const IP_UDP_OVERHEAD: usize = 28;

/// Where a probe went: the peer's address and the UDP port.
pub type Target = (Ipv4Addr, u16);

#[cfg(test)]
mod tests {
    use super::*;

    /// A 24-byte request, token 0x0102030405060708, networks from index 0.
    static REQUEST: [u8; 24] = [
        0x00, 0x00, 0x00, 0x00, b'V', b'S', b'W', b'P', 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    ];

    /// The reply of node "b" (wall clock 1 s) to `REQUEST` with one network "blue", VNI 42,
    /// encrypted, MTU 1408.
    static REPLY: [u8; 47] = [
        0x00, 0x00, 0x00, 0x00, b'V', b'S', b'W', b'P', 0x01, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x18, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3b, 0x9a,
        0xca, 0x00, 0x00, 0x01, 0x01, b'b', 0x01, 0x00, 0x00, 0x2a, 0x05, 0x80, 0x04, b'b', b'l',
        b'u', b'e',
    ];

    #[test]
    fn request_round_trip() {
        let mut out = [0xffu8; 64];
        assert_eq!(emit_request(&mut out, 0x0102030405060708, 0, 24), 24);
        assert_eq!(out[..24], REQUEST);
        let r = Request::parse(&REQUEST).unwrap();
        assert_eq!(
            r,
            Request {
                token: 0x0102030405060708,
                first_network: 0,
                len: 24
            }
        );
        // Padded to a size: the padding is zero and the length is what arrived.
        let n = emit_request(&mut out, 7, 3, 64);
        assert_eq!(n, 64);
        assert!(out[24..64].iter().all(|b| *b == 0));
        let r = Request::parse(&out[..n]).unwrap();
        assert_eq!((r.token, r.first_network, r.len), (7, 3, 64));
    }

    #[test]
    fn reply_round_trip() {
        let req = Request::parse(&REQUEST).unwrap();
        let mut out = [0u8; MAX_REPLY_LEN];
        let nets = [("blue", 42u32, true, 1408u32)];
        let n = emit_reply(
            &mut out,
            &req,
            1_000_000_000,
            "b",
            nets.iter().map(|&(a, b, c, d)| (a, b, c, d)),
        );
        assert_eq!(out[..n], REPLY);
        let r = Reply::parse(&REPLY).unwrap();
        assert_eq!(r.token, 0x0102030405060708);
        assert_eq!(r.received_len, 24);
        assert_eq!(r.wall_ns, 1_000_000_000);
        assert_eq!(r.node, "b");
        assert_eq!(r.total_networks, 1);
        assert_eq!(
            r.networks,
            vec![NetworkEntry {
                name: "blue".into(),
                vni: 42,
                encrypted: true,
                mtu: 1408
            }]
        );
    }

    #[test]
    fn a_probe_is_not_vxlan_nor_esp() {
        // VXLAN's I flag is clear: RFC 7348 receivers refuse it.
        assert_eq!(
            crate::wire::vxlan::Packet::new_checked(&REQUEST[..]).err(),
            Some(crate::wire::vxlan::Error::NoVniFlag)
        );
        // And VXLAN is not a probe.
        let mut vx = [0u8; 24];
        crate::wire::vxlan::emit(&mut vx, 42);
        assert!(!is_probe(&vx));
        assert!(Request::parse(&vx).is_none());
    }

    #[test]
    fn refuses_what_is_not_a_request() {
        assert!(Request::parse(&REQUEST[..23]).is_none());
        assert!(Request::parse(&REPLY).is_none(), "a reply is not answered");
        let mut v2 = REQUEST;
        v2[8] = 2;
        assert!(Request::parse(&v2).is_none(), "another version");
        let mut bad = REQUEST;
        bad[5] = b'X';
        assert!(Request::parse(&bad).is_none());
        // A reply cut short never panics.
        for k in 0..REPLY.len() {
            let _ = Reply::parse(&REPLY[..k]);
        }
        assert!(Reply::parse(&REPLY[..REPLY.len() - 1]).is_none());
    }

    #[test]
    fn a_reply_lists_networks_from_the_index_asked_while_they_fit() {
        let long = "n".repeat(200);
        let names: Vec<String> = (0..100).map(|k| format!("{long}{k}")).collect();
        let nets: Vec<(&str, u32, bool, u32)> = names
            .iter()
            .enumerate()
            .map(|(k, n)| (n.as_str(), k as u32 + 1, false, 1450))
            .collect();
        let mut out = [0u8; MAX_REPLY_LEN];
        let mut req = Request::parse(&REQUEST).unwrap();
        let n = emit_reply(&mut out, &req, 0, "node", nets.iter().copied());
        assert!(n <= MAX_REPLY_LEN);
        let r = Reply::parse(&out[..n]).unwrap();
        assert_eq!(r.total_networks, 100);
        let first = r.networks.len();
        assert!(first > 1 && first < 100);
        assert_eq!(r.networks[0].name.len(), MAX_NAME_LEN, "names are cut");
        req.first_network = first as u16;
        let n = emit_reply(&mut out, &req, 0, "node", nets.iter().copied());
        let r = Reply::parse(&out[..n]).unwrap();
        assert_eq!(r.networks[0].vni, first as u32 + 1);
    }
}
