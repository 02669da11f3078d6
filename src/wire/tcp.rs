//! TCP (RFC 9293): a view of a segment, and the header the switch writes for the few segments
//! it sends itself (DNS over TCP at a network's own address, crate::switch::dns_tcp).
//!
//! As for UDP, the checksum is written on emit and not checked on receipt: a container's
//! segments may carry a partial checksum its TAP left for the "hardware" (offload).

use super::checksum;
use super::ipv4;
use super::Field;
use std::net::Ipv4Addr;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ: Field = 4..8;
    pub const ACK: Field = 8..12;
    pub const OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

pub const HEADER_LEN: usize = 20;

/// The flags of a segment (RFC 9293 §3.1), as the byte holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: Flags = Flags(0x01);
    pub const SYN: Flags = Flags(0x02);
    pub const RST: Flags = Flags(0x04);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(0x10);

    pub fn has(self, f: Flags) -> bool {
        self.0 & f.0 == f.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, o: Flags) -> Flags {
        Flags(self.0 | o.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header, or than the header length its data offset gives.
    Truncated,
}

#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the header, options included, fits the buffer; the payload is the rest of
    /// the buffer (the IPv4 total length bounds it).
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = usize::from(b[field::OFFSET] >> 4) * 4;
        if hl < HEADER_LEN || hl > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    fn get16(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn get32(&self, f: Field) -> u32 {
        let b = &self.buffer.as_ref()[f];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn src_port(&self) -> u16 {
        self.get16(field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.get16(field::DST_PORT)
    }

    pub fn seq(&self) -> u32 {
        self.get32(field::SEQ)
    }

    pub fn ack(&self) -> u32 {
        self.get32(field::ACK)
    }

    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS] & 0x3f)
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::OFFSET] >> 4) * 4
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// An IPv4 TCP segment's header, for writing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: Flags,
    pub window: u16,
    /// The maximum segment size option (RFC 9293 §3.7.1), sent on a SYN.
    pub mss: Option<u16>,
}

impl Repr {
    /// Bytes of the IPv4 and TCP headers `emit` writes before a payload.
    pub fn headers_len(&self) -> usize {
        ipv4::MIN_HEADER_LEN + self.tcp_header_len()
    }

    fn tcp_header_len(&self) -> usize {
        HEADER_LEN + if self.mss.is_some() { 4 } else { 0 }
    }

    /// Writes the IPv4 header and the TCP header (with its checksum) in front of the
    /// `payload_len` bytes that already stand at `out[self.headers_len()..]`, and returns the
    /// whole packet's length. `out` must hold them all.
    pub fn emit(&self, out: &mut [u8], payload_len: usize) -> usize {
        let hl = self.tcp_header_len();
        let tcp_len = hl + payload_len;
        let total = ipv4::MIN_HEADER_LEN + tcp_len;
        ipv4::Repr {
            src: self.src,
            dst: self.dst,
            protocol: ipv4::PROTO_TCP,
            payload_len: tcp_len,
            ttl: 64,
        }
        .emit(&mut out[..ipv4::MIN_HEADER_LEN]);
        let t = &mut out[ipv4::MIN_HEADER_LEN..total];
        t[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        t[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        t[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        t[field::ACK].copy_from_slice(&self.ack.to_be_bytes());
        t[field::OFFSET] = ((hl / 4) as u8) << 4;
        t[field::FLAGS] = self.flags.0;
        t[field::WINDOW].copy_from_slice(&self.window.to_be_bytes());
        t[field::CHECKSUM].fill(0);
        t[field::URGENT].fill(0);
        if let Some(mss) = self.mss {
            // Kind 2, length 4 (RFC 9293 §3.2).
            t[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&[2, 4]);
            t[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&mss.to_be_bytes());
        }
        let sum = checksum::add(
            checksum::pseudo_v4(self.src, self.dst, ipv4::PROTO_TCP, tcp_len),
            t,
        );
        t[field::CHECKSUM].copy_from_slice(&checksum::finish(sum).to_be_bytes());
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN-ACK from 10.0.9.1:53 to 10.0.9.2:40000 (seq 0x01020304, ack 0x0a0b0c0e, window
    /// 65535, MSS 1410, DF, TTL 64, id 0); the checksums were computed independently with
    /// RFC 1071's reference sum in Python.
    const SYN_ACK: [u8; 44] = [
        0x45, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x14, 0xca, 0x0a, 0x00, 0x09,
        0x01, 0x0a, 0x00, 0x09, 0x02, 0x00, 0x35, 0x9c, 0x40, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b,
        0x0c, 0x0e, 0x60, 0x12, 0xff, 0xff, 0xbb, 0xb1, 0x00, 0x00, 0x02, 0x04, 0x05, 0x82,
    ];

    fn syn_ack() -> Repr {
        Repr {
            src: Ipv4Addr::new(10, 0, 9, 1),
            dst: Ipv4Addr::new(10, 0, 9, 2),
            src_port: 53,
            dst_port: 40000,
            seq: 0x0102_0304,
            ack: 0x0a0b_0c0e,
            flags: Flags::SYN | Flags::ACK,
            window: 65535,
            mss: Some(1410),
        }
    }

    #[test]
    fn construct_matches_independently_computed_bytes() {
        let mut out = [0u8; 44];
        assert_eq!(syn_ack().headers_len(), 44);
        assert_eq!(syn_ack().emit(&mut out, 0), 44);
        assert_eq!(out, SYN_ACK);
    }

    #[test]
    fn deconstruct() {
        let t = Packet::new_checked(&SYN_ACK[20..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (53, 40000));
        assert_eq!((t.seq(), t.ack()), (0x0102_0304, 0x0a0b_0c0e));
        assert!(t.flags().has(Flags::SYN) && t.flags().has(Flags::ACK));
        assert!(!t.flags().has(Flags::FIN));
        assert_eq!(t.header_len(), 24);
        assert!(t.payload().is_empty());
    }

    #[test]
    fn a_data_offset_past_the_buffer_is_refused() {
        assert_eq!(
            Packet::new_checked(&SYN_ACK[20..39]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = SYN_ACK[20..].to_vec();
        bad[12] = 0x40; // 16 bytes: shorter than the header itself
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Truncated);
        bad[12] = 0xf0; // 60 bytes: longer than the buffer
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Truncated);
    }
}
