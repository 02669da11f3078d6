//! Gratuitous ARP for a newly attached endpoint, so peers and their containers learn it at once.

use crate::wire::ethernet::{EtherType, Frame, HEADER_LEN};
use crate::wire::{arp, MacAddr};
use std::net::Ipv4Addr;

/// Length of the frame `build` writes: Ethernet + ARP, padded to the 60-byte minimum.
pub const FRAME_LEN: usize = 60;

/// Writes a broadcast ARP request announcing `ip` at `mac` (RFC 5227 §3 "ARP Announcement")
/// into `buf[..FRAME_LEN]`.
pub fn build(buf: &mut [u8], mac: MacAddr, ip: Ipv4Addr) -> usize {
    request(buf, mac, ip, ip)
}

/// Writes a broadcast ARP request from `mac`/`sender_ip` for `target_ip` into
/// `buf[..FRAME_LEN]` (an announcement when the two addresses are the same).
pub fn request(buf: &mut [u8], mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> usize {
    buf[..FRAME_LEN].fill(0);
    let mut eth = Frame::new_unchecked(&mut buf[..]);
    eth.set_dst(MacAddr::BROADCAST);
    eth.set_src(mac);
    eth.set_ethertype(EtherType::Arp);
    arp::Repr {
        operation: arp::Operation::Request,
        sender_mac: mac,
        sender_ip,
        target_mac: MacAddr::ZERO,
        target_ip,
    }
    .emit(&mut buf[HEADER_LEN..]);
    FRAME_LEN
}
