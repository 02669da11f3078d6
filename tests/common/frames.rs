//! Frame builders shared by the sans-IO tests, the allocation test and the benchmarks
//! (included by path from benches/). Plain byte vectors, built with the crate's own wire code.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use vswitch::wire::ethernet::{self, EtherType, Frame};
use vswitch::wire::{arp, vxlan, MacAddr};

pub fn eth_frame(dst: MacAddr, src: MacAddr, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; ethernet::HEADER_LEN + payload.len()];
    let mut f = Frame::new_unchecked(&mut buf[..]);
    f.set_dst(dst);
    f.set_src(src);
    f.set_ethertype(ethertype);
    f.payload_mut().copy_from_slice(payload);
    buf
}

pub fn arp_request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut payload = [0u8; arp::PACKET_LEN];
    arp::Repr {
        operation: arp::Operation::Request,
        sender_mac,
        sender_ip,
        target_mac: MacAddr::ZERO,
        target_ip,
    }
    .emit(&mut payload);
    eth_frame(MacAddr::BROADCAST, sender_mac, EtherType::Arp, &payload)
}

pub fn udp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    payload_len: usize,
) -> Vec<u8> {
    let total = 28 + payload_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src_ip.octets());
    p[16..20].copy_from_slice(&dst_ip.octets());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    eth_frame(dst_mac, src_mac, EtherType::Ipv4, &p)
}

pub fn vxlan_datagram(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; vxlan::HEADER_LEN];
    vxlan::emit(&mut d, vni);
    d.extend_from_slice(frame);
    d
}

/// A UDP datagram from `src_ip:src_port` to `dst_ip:53` carrying `message`, in an Ethernet
/// frame: a container's DNS query, headers written by the crate's own builders.
pub fn dns_query_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    src_port: u16,
    message: &[u8],
) -> Vec<u8> {
    use vswitch::wire::udp;
    let mut p = vec![0u8; udp::Repr::HEADERS_LEN + message.len()];
    p[udp::Repr::HEADERS_LEN..].copy_from_slice(message);
    udp::Repr {
        src: src_ip,
        dst: dst_ip,
        src_port,
        dst_port: 53,
    }
    .emit(&mut p, message.len());
    eth_frame(dst_mac, src_mac, EtherType::Ipv4, &p)
}

/// A TCP segment from `src_ip:src_port` to `dst_ip`, port 53, in an Ethernet frame, as a
/// container's stack sends it (no options, window 64240).
#[allow(clippy::too_many_arguments)]
pub fn dns_tcp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    src_port: u16,
    seq: u32,
    ack: u32,
    flags: vswitch::wire::tcp::Flags,
    payload: &[u8],
) -> Vec<u8> {
    use vswitch::wire::tcp;
    let r = tcp::Repr {
        src: src_ip,
        dst: dst_ip,
        src_port,
        dst_port: 53,
        seq,
        ack,
        flags,
        window: 64240,
        mss: None,
    };
    let mut p = vec![0u8; r.headers_len() + payload.len()];
    p[r.headers_len()..].copy_from_slice(payload);
    r.emit(&mut p, payload.len());
    eth_frame(dst_mac, src_mac, EtherType::Ipv4, &p)
}

/// A standard query (RD set) for `name` of type `qtype`, with ID `id`.
pub fn dns_query(name: &str, qtype: domain::base::iana::Rtype, id: u16) -> Vec<u8> {
    let mut b = domain::base::MessageBuilder::new_vec();
    b.header_mut().set_id(id);
    b.header_mut().set_rd(true);
    let mut q = b.question();
    let n: domain::base::Name<Vec<u8>> = name.parse().expect("a DNS name");
    q.push((n, qtype)).expect("room for a question");
    q.finish()
}
