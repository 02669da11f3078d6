//! IPv4 headers (RFC 791): only what the switch reads — addresses for neighbour snooping and the
//! 5-tuple for the VXLAN source-port hash. The switch never rewrites IPv4.

use std::net::Ipv4Addr;

use super::Field;

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Field = 2..4;
    pub const FLAGS_FRAG: Field = 6..8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
}

pub const MIN_HEADER_LEN: usize = 20;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Truncated,
    NotIpv4,
}

#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks version 4 and that the header (IHL) fits in the buffer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(Error::NotIpv4);
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if hl < MIN_HEADER_LEN || b.len() < hl {
            return Err(Error::Truncated);
        }
        // The datagram must fit the buffer and hold its own header; bytes after it (Ethernet
        // padding) are allowed.
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if total < hl || total > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn total_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::TOTAL_LEN];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn src(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn dst(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Part of a fragmented datagram (more fragments follow, or the offset is non-zero): its
    /// L4 checksum covers bytes this packet does not hold.
    pub fn is_fragment(&self) -> bool {
        let b = &self.buffer.as_ref()[field::FLAGS_FRAG];
        u16::from_be_bytes([b[0], b[1]]) & 0x3fff != 0
    }

    /// Fragment offset is non-zero: no L4 header in this packet.
    pub fn is_later_fragment(&self) -> bool {
        let b = &self.buffer.as_ref()[field::FLAGS_FRAG];
        u16::from_be_bytes([b[0], b[1]]) & 0x1fff != 0
    }

    /// The bytes after the header, up to the total length (not the Ethernet padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// TCP/UDP source and destination ports when this packet carries them.
    pub fn l4_ports(&self) -> Option<(u16, u16)> {
        let p = self.protocol();
        if (p != PROTO_TCP && p != PROTO_UDP) || self.is_later_fragment() {
            return None;
        }
        let l4 = self
            .buffer
            .as_ref()
            .get(self.header_len()..self.header_len() + 4)?;
        Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ))
    }
}

/// `IPv4 S > D proto P`.
impl<T: AsRef<[u8]>> std::fmt::Display for Packet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IPv4 {} > {} proto {}",
            self.src(),
            self.dst(),
            self.protocol()
        )
    }
}

/// A header without options, as the switch writes for its own answers: DF set, never a
/// fragment, id 0 (RFC 6864 §4.1: an atomic datagram's id has no meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub ttl: u8,
}

impl Repr {
    /// Writes the 20-byte header, checksum included, into `out[..MIN_HEADER_LEN]`.
    pub fn emit(&self, out: &mut [u8]) {
        let h = &mut out[..MIN_HEADER_LEN];
        h[field::VER_IHL] = 0x45;
        h[1] = 0;
        let total = (MIN_HEADER_LEN + self.payload_len) as u16;
        h[field::TOTAL_LEN].copy_from_slice(&total.to_be_bytes());
        h[4..6].fill(0);
        h[field::FLAGS_FRAG].copy_from_slice(&0x4000u16.to_be_bytes());
        h[8] = self.ttl;
        h[field::PROTOCOL] = self.protocol;
        h[10..12].fill(0);
        h[field::SRC].copy_from_slice(&self.src.octets());
        h[field::DST].copy_from_slice(&self.dst.octets());
        let c = super::checksum::ipv4_header(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // IPv4 + TCP SYN header start: 10.0.9.2:40000 -> 10.0.9.3:5201
    static TCP: [u8; 24] = [
        0x45, 0x00, 0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 0x0a, 0x00, 0x09,
        0x02, 0x0a, 0x00, 0x09, 0x03, 0x9c, 0x40, 0x14, 0x51,
    ];

    /// The SYN whole: its header start, then zeros up to its total length (60).
    fn syn() -> [u8; 60] {
        let mut p = [0u8; 60];
        p[..24].copy_from_slice(&TCP);
        p
    }

    #[test]
    fn deconstruct() {
        let syn = syn();
        let p = Packet::new_checked(&syn[..]).unwrap();
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 9, 2));
        assert_eq!(p.dst(), Ipv4Addr::new(10, 0, 9, 3));
        assert_eq!(p.protocol(), PROTO_TCP);
        assert_eq!(p.total_len(), 60);
        assert_eq!(p.l4_ports(), Some((40000, 5201)));
        // Ethernet padding after the datagram is fine.
        let mut padded = [0u8; 64];
        padded[..60].copy_from_slice(&syn);
        assert!(Packet::new_checked(&padded[..]).is_ok());
    }

    #[test]
    fn rejects_bad() {
        let syn = syn();
        assert_eq!(
            Packet::new_checked(&syn[..19]).unwrap_err(),
            Error::Truncated
        );
        // total_len says 60: a buffer of 24 holds only part of the datagram.
        assert_eq!(Packet::new_checked(&TCP[..]).unwrap_err(), Error::Truncated);
        let mut short = syn;
        short[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&short[..]).unwrap_err(),
            Error::Truncated,
            "a total length shorter than the header"
        );
        let mut v6 = syn;
        v6[0] = 0x65;
        assert_eq!(Packet::new_checked(&v6[..]).unwrap_err(), Error::NotIpv4);
        let mut long_ihl = syn;
        long_ihl[0] = 0x4f;
        assert!(Packet::new_checked(&long_ihl[..20]).is_err());
    }

    #[test]
    fn ports_absent_for_fragments_and_short_l4() {
        let mut short = TCP;
        short[2..4].copy_from_slice(&22u16.to_be_bytes());
        let p = Packet::new_checked(&short[..22]).unwrap();
        assert_eq!(p.l4_ports(), None);
        let mut frag = syn();
        frag[7] = 0x10;
        assert_eq!(Packet::new_checked(&frag[..]).unwrap().l4_ports(), None);
    }
}
