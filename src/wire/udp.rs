//! UDP (RFC 768): a view of a datagram, and the header the switch writes for its own answers.
//!
//! The checksum is written on emit (over the IPv4 pseudo-header, RFC 768 "Fields") and not
//! checked on receipt: a container's datagrams may carry a partial checksum its TAP left for
//! the "hardware" (offload), and the switch only ever reads the payload of datagrams addressed
//! to itself.

use super::checksum;
use super::ipv4;
use super::Field;
use std::net::Ipv4Addr;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

pub const HEADER_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header, or than the length the header gives.
    Truncated,
}

#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the header fits and that its length field covers the header and fits the
    /// buffer (bytes after it, padding, are allowed).
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if len < HEADER_LEN || len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    fn get16(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn src_port(&self) -> u16 {
        self.get16(field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.get16(field::DST_PORT)
    }

    /// Header and payload, as the length field says.
    pub fn len(&self) -> usize {
        usize::from(self.get16(field::LENGTH))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len()]
    }
}

/// An IPv4 UDP datagram's addressing, for writing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

impl Repr {
    /// Bytes of the IPv4 and UDP headers `emit` writes before a payload.
    pub const HEADERS_LEN: usize = ipv4::MIN_HEADER_LEN + HEADER_LEN;

    /// Writes the IPv4 header and the UDP header (with its checksum) in front of the
    /// `payload_len` bytes that already stand at `out[HEADERS_LEN..]`, and returns the whole
    /// datagram's length. `out` must hold them all.
    pub fn emit(&self, out: &mut [u8], payload_len: usize) -> usize {
        let udp_len = HEADER_LEN + payload_len;
        let total = ipv4::MIN_HEADER_LEN + udp_len;
        ipv4::Repr {
            src: self.src,
            dst: self.dst,
            protocol: ipv4::PROTO_UDP,
            payload_len: udp_len,
            ttl: 64,
        }
        .emit(&mut out[..ipv4::MIN_HEADER_LEN]);
        let u = &mut out[ipv4::MIN_HEADER_LEN..total];
        u[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        u[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        u[field::LENGTH].copy_from_slice(&(udp_len as u16).to_be_bytes());
        u[field::CHECKSUM].fill(0);
        let sum = checksum::add(
            checksum::pseudo_v4(self.src, self.dst, ipv4::PROTO_UDP, udp_len),
            u,
        );
        // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
        let c = match checksum::finish(sum) {
            0 => 0xffff,
            c => c,
        };
        u[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram from 10.0.9.2:40000 to 10.0.9.1:53 (IPv4 + UDP, payload "abcd", DF, TTL
    /// 64, id 0), checksums computed independently with RFC 1071's reference sum in Python.
    const DATAGRAM: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x14, 0xcb, 0x0a, 0x00, 0x09,
        0x02, 0x0a, 0x00, 0x09, 0x01, 0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x78, 0x97, b'a', b'b',
        b'c', b'd',
    ];

    #[test]
    fn deconstruct() {
        let ip = ipv4::Packet::new_checked(&DATAGRAM[..]).unwrap();
        let u = Packet::new_checked(&DATAGRAM[ip.header_len()..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (40000, 53));
        assert_eq!(u.len(), 12);
        assert_eq!(u.payload(), b"abcd");
    }

    #[test]
    fn construct_matches_the_kernels_bytes() {
        let mut out = [0u8; 32];
        out[Repr::HEADERS_LEN..].copy_from_slice(b"abcd");
        let n = Repr {
            src: Ipv4Addr::new(10, 0, 9, 2),
            dst: Ipv4Addr::new(10, 0, 9, 1),
            src_port: 40000,
            dst_port: 53,
        }
        .emit(&mut out, 4);
        assert_eq!(n, 32);
        assert_eq!(out, DATAGRAM);
    }

    #[test]
    fn lengths_that_do_not_fit_are_refused() {
        let ip = &DATAGRAM[20..];
        assert_eq!(Packet::new_checked(&ip[..7]).unwrap_err(), Error::Truncated);
        let mut short = ip.to_vec();
        short[5] = 13; // says 13 bytes, holds 12
        assert_eq!(
            Packet::new_checked(&short[..]).unwrap_err(),
            Error::Truncated
        );
        short[5] = 7; // shorter than its own header
        assert_eq!(
            Packet::new_checked(&short[..]).unwrap_err(),
            Error::Truncated
        );
    }
}
