//! ARP for IPv4 over Ethernet (RFC 826). Other hardware/protocol combinations are not ours to
//! answer and are reported as `Unsupported` so the switch forwards them untouched.

use super::MacAddr;
use std::net::Ipv4Addr;

use super::Field;

mod field {
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

pub const PACKET_LEN: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Operation {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            o => Operation::Unknown(o),
        }
    }
}

impl From<Operation> for u16 {
    fn from(v: Operation) -> u16 {
        match v {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(o) => o,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Truncated,
    /// Not Ethernet/IPv4 ARP.
    Unsupported,
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if b[field::HTYPE] != [0, 1]
            || b[field::PTYPE] != [0x08, 0x00]
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(Error::Unsupported);
        }
        Ok(Packet { buffer })
    }

    pub fn operation(&self) -> Operation {
        let b = &self.buffer.as_ref()[field::OPER];
        Operation::from(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn sender_mac(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::SPA])
    }

    pub fn target_mac(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::TPA])
    }

    /// Gratuitous ARP: a station announcing its own address (sender IP == target IP).
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip() == self.target_ip()
    }
}

/// `ARP who-has T tell S`, `ARP S is-at M`, as tcpdump says them.
impl<T: AsRef<[u8]>> std::fmt::Display for Packet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.operation() {
            Operation::Request => write!(
                f,
                "ARP who-has {} tell {}",
                self.target_ip(),
                self.sender_ip()
            ),
            Operation::Reply => write!(f, "ARP {} is-at {}", self.sender_ip(), self.sender_mac()),
            Operation::Unknown(op) => write!(f, "ARP operation {op} from {}", self.sender_ip()),
        }
    }
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// The fields of an Ethernet/IPv4 ARP packet, for building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub operation: Operation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            operation: p.operation(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        }
    }

    /// Writes the 28-byte packet; `buf` must be at least `PACKET_LEN` long.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::HTYPE].copy_from_slice(&[0, 1]);
        buf[field::PTYPE].copy_from_slice(&[0x08, 0x00]);
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
        buf[field::OPER].copy_from_slice(&u16::from(self.operation).to_be_bytes());
        buf[field::SHA].copy_from_slice(&self.sender_mac.0);
        buf[field::SPA].copy_from_slice(&self.sender_ip.octets());
        buf[field::THA].copy_from_slice(&self.target_mac.0);
        buf[field::TPA].copy_from_slice(&self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ARP request "who-has 10.0.9.3 tell 10.0.9.2" as sent by Linux (payload of an Ethernet frame).
    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x42, 0x0a, 0x00, 0x09, 0x02, 0x0a,
        0x00, 0x09, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x09, 0x03,
    ];

    fn repr() -> Repr {
        Repr {
            operation: Operation::Request,
            sender_mac: MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, 0x02]),
            sender_ip: Ipv4Addr::new(10, 0, 9, 2),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 0, 9, 3),
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(Repr::parse(&p), repr());
        assert!(!p.is_gratuitous());
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 28];
        repr().emit(&mut buf);
        assert_eq!(buf, REQUEST);
    }

    #[test]
    fn rejects_truncated_and_foreign() {
        assert_eq!(
            Packet::new_checked(&REQUEST[..27]).unwrap_err(),
            Error::Truncated
        );
        let mut ipv6ish = REQUEST;
        ipv6ish[2] = 0x86;
        assert_eq!(
            Packet::new_checked(&ipv6ish[..]).unwrap_err(),
            Error::Unsupported
        );
    }
}
