//! Ethernet II frames (IEEE 802.3), with an optional single 802.1Q tag seen through for the
//! EtherType: `ethertype` is the field as sent (`Vlan` for a tagged frame); `tag_len`,
//! `vlan_id`, `inner_ethertype` and `inner_payload` look behind one tag. This is the one place
//! that knows the tag's layout (IEEE 802.1Q §9: TPID 0x8100, then TCI, then the EtherType).

use super::MacAddr;
use std::fmt;

use super::Field;

mod field {
    use super::Field;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
    /// Behind the TPID of an 802.1Q tag: PCP, DEI and VLAN id, then the payload's EtherType.
    pub const TCI: Field = 14..16;
    pub const INNER_ETHERTYPE: Field = 16..18;
}

pub const HEADER_LEN: usize = field::PAYLOAD;
/// An 802.1Q tag: TPID (where the EtherType would be) plus TCI and the inner EtherType, 4 bytes
/// more than an untagged header.
pub const VLAN_TAG_LEN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherType {
    Ipv4,
    Arp,
    Ipv6,
    Vlan,
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> EtherType {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            0x8100 => EtherType::Vlan,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> u16 {
        match v {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Vlan => 0x8100,
            EtherType::Unknown(other) => other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

/// A view of an Ethernet frame. After `new_checked`, no getter panics.
#[derive(Debug)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Frame<T>, Truncated> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Truncated);
        }
        Ok(Frame { buffer })
    }

    pub fn dst(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DST])
    }

    pub fn src(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SRC])
    }

    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// The length of the 802.1Q tag the frame says it carries (4), or 0 untagged.
    pub fn tag_len(&self) -> usize {
        if self.ethertype() == EtherType::Vlan {
            VLAN_TAG_LEN
        } else {
            0
        }
    }

    /// The VLAN id of a frame with a whole 802.1Q tag.
    pub fn vlan_id(&self) -> Option<u16> {
        let b = self.buffer.as_ref();
        (self.tag_len() > 0 && b.len() >= HEADER_LEN + VLAN_TAG_LEN).then(|| {
            let t = &b[field::TCI];
            u16::from_be_bytes([t[0], t[1]]) & 0x0fff
        })
    }

    /// The payload's EtherType, seen through one 802.1Q tag; `None` when the tag is cut short.
    pub fn inner_ethertype(&self) -> Option<EtherType> {
        if self.tag_len() == 0 {
            return Some(self.ethertype());
        }
        let b = self.buffer.as_ref().get(field::INNER_ETHERTYPE)?;
        Some(EtherType::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// What follows the header and the tag, if any (empty when the tag is cut short).
    pub fn inner_payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(HEADER_LEN + self.tag_len()..).unwrap_or(&[])
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Arp => f.write_str("ARP"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::Vlan => f.write_str("802.1Q"),
            EtherType::Unknown(t) => write!(f, "ethertype 0x{t:04x}"),
        }
    }
}

/// One line, as tcpdump would: `src > dst, [vlan N,] length L`, then what the payload is
/// (`IPv4 a > b proto p`, `ARP ...`) when it parses, else its EtherType.
impl<T: AsRef<[u8]>> fmt::Display for Frame<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} > {}, ", self.src(), self.dst())?;
        if let Some(v) = self.vlan_id() {
            write!(f, "vlan {v}, ")?;
        }
        write!(f, "length {}, ", self.buffer.as_ref().len())?;
        let payload = self.inner_payload();
        match self.inner_ethertype() {
            Some(EtherType::Ipv4) => match super::ipv4::Packet::new_checked(payload) {
                Ok(ip) => write!(f, "{ip}"),
                Err(_) => f.write_str("IPv4 (malformed)"),
            },
            Some(EtherType::Arp) => match super::arp::Packet::new_checked(payload) {
                Ok(arp) => write!(f, "{arp}"),
                Err(_) => f.write_str("ARP (malformed)"),
            },
            Some(t) => write!(f, "{t}"),
            None => f.write_str("802.1Q tag cut short"),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    pub fn set_ethertype(&mut self, t: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(t).to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request as the kernel sends it (captured with tcpdump -xx), 42 bytes.
    static ARP_FRAME: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0x0a, 0x00, 0x09, 0x02, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x42, 0x0a, 0x00, 0x09, 0x02, 0x0a, 0x00,
        0x09, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x09, 0x03,
    ];

    #[test]
    fn deconstruct() {
        let f = Frame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!(f.dst(), MacAddr::BROADCAST);
        assert_eq!(f.src(), MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, 0x02]));
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.payload().len(), 28);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 42];
        buf[14..].copy_from_slice(&ARP_FRAME[14..]);
        let mut f = Frame::new_checked(&mut buf[..]).unwrap();
        f.set_dst(MacAddr::BROADCAST);
        f.set_src(MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, 0x02]));
        f.set_ethertype(EtherType::Arp);
        assert_eq!(buf, ARP_FRAME);
    }

    // The same request behind an 802.1Q tag, VLAN 100.
    fn tagged() -> Vec<u8> {
        let mut v = ARP_FRAME[..12].to_vec();
        v.extend_from_slice(&[0x81, 0x00, 0x20, 0x64]);
        v.extend_from_slice(&ARP_FRAME[12..]);
        v
    }

    #[test]
    fn deconstruct_tagged() {
        let buf = tagged();
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::Vlan);
        assert_eq!(f.tag_len(), VLAN_TAG_LEN);
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.inner_ethertype(), Some(EtherType::Arp));
        assert_eq!(f.inner_payload(), &ARP_FRAME[14..]);
        let untagged = Frame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!((untagged.tag_len(), untagged.vlan_id()), (0, None));
        assert_eq!(untagged.inner_payload(), untagged.payload());
        // A tag cut short: no VLAN, no inner EtherType, nothing behind it.
        let short = Frame::new_checked(&buf[..16]).unwrap();
        assert_eq!(short.tag_len(), VLAN_TAG_LEN);
        assert_eq!((short.vlan_id(), short.inner_ethertype()), (None, None));
        assert!(short.inner_payload().is_empty());
    }

    #[test]
    fn displays_as_one_line() {
        let f = Frame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!(
            f.to_string(),
            "02:42:0a:00:09:02 > ff:ff:ff:ff:ff:ff, length 42, ARP who-has 10.0.9.3 tell 10.0.9.2"
        );
        let buf = tagged();
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert!(
            f.to_string().contains(", vlan 100, length 46, ARP who-has"),
            "{f}"
        );
        let mut other = ARP_FRAME;
        other[12..14].copy_from_slice(&[0x88, 0xb5]);
        let f = Frame::new_checked(&other[..]).unwrap();
        assert!(
            f.to_string().ends_with("length 42, ethertype 0x88b5"),
            "{f}"
        );
    }

    #[test]
    fn truncated() {
        assert!(Frame::new_checked(&ARP_FRAME[..13]).is_err());
        assert_eq!(EtherType::from(0x1234), EtherType::Unknown(0x1234));
    }
}
