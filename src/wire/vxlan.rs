//! VXLAN header (RFC 7348 §5):
//!
//! ```text
//!  0                   1                   2                   3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```
//!
//! Receivers check only the I flag; the reserved bits "MUST be ... ignored on receipt" (§5).

use super::Field;

mod field {
    use super::Field;
    pub const FLAGS: usize = 0;
    pub const VNI: Field = 4..7;
    pub const PAYLOAD: usize = 8;
}

pub const HEADER_LEN: usize = field::PAYLOAD;
/// The I flag: the VNI field is valid.
pub const FLAG_I: u8 = 0x08;
/// IANA-assigned destination port (RFC 7348 §5).
pub const DEFAULT_PORT: u16 = 4789;
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14): what a container's MTU gives up.
pub const IPV4_OVERHEAD: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Truncated,
    /// The I flag is clear: the VNI is not valid.
    NoVniFlag,
}

#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::FLAGS] & FLAG_I == 0 {
            return Err(Error::NoVniFlag);
        }
        Ok(Packet { buffer })
    }

    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

/// `VXLAN vni N`.
impl<T: AsRef<[u8]>> std::fmt::Display for Packet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VXLAN vni {}", self.vni())
    }
}

/// Writes a VXLAN header with the I flag and `vni` (low 24 bits) into `buf[..8]`.
pub fn emit(buf: &mut [u8], vni: u32) {
    let v = vni.to_be_bytes();
    buf[..HEADER_LEN].copy_from_slice(&[FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    static HEADER_VNI_42: [u8; 8] = [0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&HEADER_VNI_42[..]).unwrap();
        assert_eq!(p.vni(), 42);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 8];
        emit(&mut buf, 42);
        assert_eq!(buf, HEADER_VNI_42);
        emit(&mut buf, 0xabcdef);
        assert_eq!(Packet::new_checked(&buf[..]).unwrap().vni(), 0xabcdef);
    }

    #[test]
    fn rejects() {
        assert_eq!(
            Packet::new_checked(&HEADER_VNI_42[..7]).unwrap_err(),
            Error::Truncated
        );
        let mut no_i = HEADER_VNI_42;
        no_i[0] = 0;
        assert_eq!(
            Packet::new_checked(&no_i[..]).unwrap_err(),
            Error::NoVniFlag
        );
        // Reserved bits are ignored on receipt (RFC 7348 §5).
        let mut reserved = HEADER_VNI_42;
        reserved[0] = 0xff;
        reserved[7] = 0xff;
        assert_eq!(Packet::new_checked(&reserved[..]).unwrap().vni(), 42);
    }
}
