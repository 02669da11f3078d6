//! ESP (RFC 4303 §2) with AES-GCM's 8-byte explicit IV (RFC 4106 §3), as vswitch sends it:
//! transport mode over the VXLAN UDP datagram, inside UDP port 4500 (RFC 3948 §2.2).
//!
//! ```text
//!  0                   1                   2                   3
//! |               Security Parameters Index (SPI)                 |
//! |                  Sequence Number (low 32 bits)                |
//! |                  IV (8 bytes; vswitch: the 64-bit sequence)   |
//! |  encrypted: inner UDP | VXLAN | frame | Padding | PadLen | NH |
//! |                  ICV (16 bytes)                               |
//! ```
//!
//! This file only knows the layout: where the fields are, how long the trailer is, and how to
//! read the trailer once it is decrypted. Sealing and opening are `crate::crypto::sa`.

use super::Field;

mod field {
    use super::Field;
    pub const SPI: Field = 0..4;
    pub const SEQ: Field = 4..8;
    pub const IV: Field = 8..16;
    pub const PAYLOAD: usize = 16;
}

/// SPI + sequence number.
pub const HEADER_LEN: usize = 8;
/// AES-GCM explicit IV (RFC 4106 §3.1).
pub const IV_LEN: usize = 8;
/// AES-GCM with a 16-octet ICV (RFC 4106 §6), the only size vswitch uses.
pub const ICV_LEN: usize = 16;
/// ESP header + IV: what sits in front of the encrypted payload.
pub const PREFIX_LEN: usize = field::PAYLOAD;
/// Pad Length + Next Header.
pub const TRAILER_MIN: usize = 2;
/// Padding needs at most 3 bytes: only 4-byte alignment is required (RFC 4303 §2.4; AES-GCM has
/// no block size of its own, RFC 4106 §3.2).
pub const PAD_MAX: usize = 3;
/// The most ESP adds to a plaintext: header, IV, padding, trailer, ICV. The RFC 3948 UDP header
/// (8 bytes) the driver writes in front of it is not included.
pub const OVERHEAD_MAX: usize = PREFIX_LEN + PAD_MAX + TRAILER_MIN + ICV_LEN;
/// Shortest well-formed ESP packet: empty plaintext padded to 2 bytes, then the trailer.
pub const MIN_LEN: usize = PREFIX_LEN + 4 + ICV_LEN;
/// Next Header for the UDP datagram vswitch carries (IANA protocol number 17).
pub const NEXT_HEADER_UDP: u8 = 17;
/// RFC 3948 §2.2: IKE/ESP-in-UDP port.
pub const UDP_ENCAP_PORT: u16 = 4500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Truncated,
    /// Pad Length larger than the decrypted payload, or padding not 1, 2, 3, ...
    BadPadding,
}

/// Padding plus Pad Length and Next Header for a plaintext of `plain_len` bytes: the smallest
/// that makes `plain_len + trailer` a multiple of 4 (RFC 4303 §2.4).
pub fn trailer_len(plain_len: usize) -> usize {
    TRAILER_MIN + (4 - (plain_len + TRAILER_MIN) % 4) % 4
}

/// The whole ESP packet (from SPI to ICV) for a plaintext of `plain_len` bytes.
pub fn packet_len(plain_len: usize) -> usize {
    PREFIX_LEN + plain_len + trailer_len(plain_len) + ICV_LEN
}

#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view of a whole ESP packet, SPI to ICV. Fails when it cannot hold the header, IV, the
    /// shortest encrypted trailer and the ICV.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        if buffer.as_ref().len() < MIN_LEN {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    pub fn spi(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SPI])
    }

    /// The low 32 bits of the sequence number; the high half is never sent (RFC 4303 §2.2.1).
    pub fn seq_low(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQ])
    }

    pub fn iv(&self) -> &[u8] {
        &self.buffer.as_ref()[field::IV]
    }

    /// The encrypted payload and trailer, without the ICV.
    pub fn ciphertext(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[field::PAYLOAD..b.len() - ICV_LEN]
    }

    pub fn icv(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[b.len() - ICV_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_spi(&mut self, spi: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&spi.to_be_bytes());
    }

    pub fn set_seq_low(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    pub fn set_iv(&mut self, iv: [u8; IV_LEN]) {
        self.buffer.as_mut()[field::IV].copy_from_slice(&iv);
    }
}

/// Writes SPI, the low half of `seq` and the IV (`seq` as 8 big-endian bytes: unique per key,
/// which is all RFC 4106 §3.1 asks of it) into `buf[..PREFIX_LEN]`.
pub fn emit_prefix(buf: &mut [u8], spi: u32, seq: u64) {
    buf[field::SPI].copy_from_slice(&spi.to_be_bytes());
    buf[field::SEQ].copy_from_slice(&(seq as u32).to_be_bytes());
    buf[field::IV].copy_from_slice(&seq.to_be_bytes());
}

/// Writes padding 1, 2, 3, ... (RFC 4303 §2.4), Pad Length and `next_header` into
/// `buf[..trailer_len(plain_len)]`; returns that length.
pub fn emit_trailer(buf: &mut [u8], plain_len: usize, next_header: u8) -> usize {
    let len = trailer_len(plain_len);
    let pad = len - TRAILER_MIN;
    for (i, b) in buf[..pad].iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    buf[pad] = pad as u8;
    buf[pad + 1] = next_header;
    len
}

/// Reads the trailer at the end of a decrypted payload: returns the length of the data before
/// the padding, and the Next Header.
pub fn parse_trailer(decrypted: &[u8]) -> Result<(usize, u8), Error> {
    let n = decrypted.len();
    if n < TRAILER_MIN {
        return Err(Error::Truncated);
    }
    let pad = decrypted[n - 2] as usize;
    let next_header = decrypted[n - 1];
    let data_len = (n - TRAILER_MIN)
        .checked_sub(pad)
        .ok_or(Error::BadPadding)?;
    // The receiver checks the default padding (RFC 4303 §2.4): after a good ICV a mismatch
    // means a broken sender, not an attacker.
    let padding = &decrypted[data_len..n - TRAILER_MIN];
    if padding
        .iter()
        .enumerate()
        .any(|(i, &b)| b as usize != i + 1)
    {
        return Err(Error::BadPadding);
    }
    Ok((data_len, next_header))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPI 0x00001001, seq 1, IV 1, 4 bytes of ciphertext, ICV of 0xee.
    static PACKET: [u8; 36] = [
        0x00, 0x00, 0x10, 0x01, // SPI
        0x00, 0x00, 0x00, 0x01, // seq
        0, 0, 0, 0, 0, 0, 0, 1, // IV
        0xaa, 0xbb, 0xcc, 0xdd, // ciphertext
        0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, // ICV
        0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.spi(), 0x1001);
        assert_eq!(p.seq_low(), 1);
        assert_eq!(p.iv(), &[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(p.ciphertext(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(p.icv(), &[0xee; 16]);
    }

    #[test]
    fn construct() {
        let mut buf = PACKET;
        buf[..PREFIX_LEN].fill(0xff);
        emit_prefix(&mut buf, 0x1001, 1);
        assert_eq!(buf, PACKET);
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_spi(7);
        p.set_seq_low(9);
        p.set_iv([1; 8]);
        assert_eq!((p.spi(), p.seq_low(), p.iv()), (7, 9, &[1u8; 8][..]));
        // The IV carries all 64 bits, the header only the low 32.
        emit_prefix(&mut buf, 1, 0x1_0000_0002);
        assert_eq!(&buf[4..16], &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    }

    #[test]
    fn rejects_short() {
        assert_eq!(
            Packet::new_checked(&PACKET[..MIN_LEN - 1]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn trailer_aligns_to_four() {
        for plain in 0..64 {
            let t = trailer_len(plain);
            assert!((2..=5).contains(&t));
            assert_eq!((plain + t) % 4, 0, "plain {plain}");
        }
        assert_eq!(trailer_len(2), 2);
        assert_eq!(trailer_len(3), 5);
        assert_eq!(OVERHEAD_MAX, 37);
        assert!(packet_len(100) - 100 <= OVERHEAD_MAX);
    }

    #[test]
    fn trailer_round_trip() {
        let mut buf = [0u8; 16];
        buf[..7].fill(0x55);
        let t = emit_trailer(&mut buf[7..], 7, NEXT_HEADER_UDP);
        assert_eq!(&buf[7..7 + t], &[1, 2, 3, 3, 17]);
        assert_eq!(parse_trailer(&buf[..7 + t]), Ok((7, 17)));
    }

    #[test]
    fn trailer_rejects() {
        assert_eq!(parse_trailer(&[0]), Err(Error::Truncated));
        assert_eq!(parse_trailer(&[1, 17]), Err(Error::BadPadding));
        assert_eq!(parse_trailer(&[0, 2, 2, 17]), Err(Error::BadPadding));
        assert_eq!(parse_trailer(&[1, 2, 2, 17]), Ok((0, 17)));
    }
}
