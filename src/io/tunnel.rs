//! The host's tunnel device: a TAP in vswitchd's own namespace through which workers hand the
//! kernel whole VXLAN super-frames (crate::offload::tunnel), which it routes out of the
//! underlay as it routes any packet, cutting them into datagrams only where it must (a NIC
//! without tunnel offloads; never on a veth).
//!
//! The kernel takes such a packet as received on this device, with the host's own underlay
//! address as its source, and forwards it. It would drop it (a "martian") unless the device
//! may forward (`forwarding`) and may receive the host's own addresses (`accept_local`), and
//! its reverse-path check passes: `rp_filter` is 0 on the device, and where the host's
//! `all.rp_filter` is loose (2) the device needs an address of its own for the check to find
//! a route, so it gets a link-local /32 ([`RP_FILTER_ADDR`]). A strict host
//! (`all.rp_filter = 1`) cannot forward these packets: no tunnel device then. These are
//! settings of this device alone; nothing host-wide changes (not `ip_forward`, no firewall
//! rule). A FORWARD chain that drops what it does not know (Docker sets its policy to DROP)
//! drops these packets too. So the workers use the device only once the prober, which sends
//! its probes to peers through this device as well as from its socket, has seen a peer
//! answer through it; and when peers answer the socket's probes and not the device's, the
//! workers go back to segmenting for good (crate::control::probe). A kernel VXLAN peer never
//! answers probes: with only such peers the device stays unused.
//!
//! Linux 6.17 or later (UDP-tunnel GSO for TUN/TAP); on older kernels [`open`] fails and the
//! workers segment as before.

use super::netlink::Netlink;
use super::tap::{TapDevice, TapOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The device's name in the daemon's namespace.
pub const NAME: &str = "vswgso0";
/// Its address when the host's reverse-path filter is loose (see the module documentation).
pub const RP_FILTER_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 76, 83);
/// The source MAC of the frames we write (the kernel looks only at the destination, the
/// device's own).
const SRC_MAC: [u8; 6] = [0x02, 0x76, 0x73, 0x77, 0x00, 0x01];

/// One worker's queue of the tunnel device, and the device's MAC to address frames to.
#[derive(Debug)]
pub struct TunnelQueue {
    pub tap: TapDevice,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

impl TunnelQueue {
    /// Hands the container's TCP super-frame `frame` (read with the TAP header `inner`) to the
    /// kernel as one VXLAN tunnel GSO packet from `src` to `dst` (crate::offload::tunnel): one
    /// `writev` of the headers and the frame where it lies. `Ok(Err(_))` when the frame is not
    /// one the kernel can take so (it is then segmented by the worker); `Err` when the device
    /// refused it.
    pub fn send_super_frame(
        &self,
        inner: &crate::offload::vnet::Header,
        frame: &[u8],
        src: SocketAddrV4,
        dst: SocketAddrV4,
        vni: u32,
    ) -> io::Result<Result<(), crate::offload::tunnel::NotTunnelable>> {
        use crate::offload::tunnel;
        let mut head = [0u8; tunnel::HEADER_LEN];
        if let Err(e) = tunnel::header(&mut head, inner, frame, &self.outer(src, dst, vni)) {
            return Ok(Err(e));
        }
        self.tap.write_behind(&head, frame)?;
        Ok(Ok(()))
    }

    /// Writes one plain UDP datagram of `payload` from `src` to `dst` through the device: the
    /// path the workers' super-frames take, which the prober checks (crate::control::probe).
    pub fn send_datagram(
        &self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> io::Result<()> {
        let b = crate::offload::tunnel::datagram(&self.outer(src, dst, 0), payload);
        let hdr = crate::offload::tunnel::VNET_HDR_LEN;
        self.tap.write_behind(&b[..hdr], &b[hdr..]).map(|_| ())
    }

    /// The outer headers from `src` to `dst`, addressed to the device itself, TTL 65 (the
    /// forwarding takes one off).
    fn outer(
        &self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        vni: u32,
    ) -> crate::offload::tunnel::Outer {
        crate::offload::tunnel::Outer {
            dst_mac: self.dst_mac,
            src_mac: self.src_mac,
            src: *src.ip(),
            dst: *dst.ip(),
            src_port: src.port(),
            dst_port: dst.port(),
            vni,
            ttl: 65,
        }
    }
}

/// Creates the tunnel device with `queues` queues (one per worker) in the calling thread's
/// namespace and sets it up; the reason, for the log, when this host cannot have one.
pub fn open(queues: usize) -> Result<Vec<TunnelQueue>, String> {
    let all_rp = read_ipv4_conf("all", "rp_filter").unwrap_or(0);
    if all_rp == 1 {
        return Err(
            "net.ipv4.conf.all.rp_filter is 1 (strict): the kernel would drop what \
                    the tunnel device hands it"
                .into(),
        );
    }
    let options = TapOptions {
        multi_queue: true,
        vnet_hdr: true,
        offload: true,
        uso: true,
        napi: false,
        udp_tunnel: true,
    };
    let first = TapDevice::create_with(NAME, options).map_err(|e| e.to_string())?;
    let mut taps = vec![first];
    for _ in 1..queues {
        taps.push(taps[0].open_queue().map_err(|e| e.to_string())?);
    }
    for (key, value) in [
        ("forwarding", "1"),
        ("accept_local", "1"),
        ("rp_filter", "0"),
    ] {
        write_ipv4_conf(NAME, key, value)?;
    }
    super::set_ipv6_conf(NAME, "disable_ipv6", "1").map_err(|e| e.to_string())?;
    let mut nl = Netlink::open().map_err(|e| e.to_string())?;
    let link = nl
        .link_by_name(NAME)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{NAME} vanished after it was made"))?;
    if all_rp == 2 {
        nl.add_ipv4_addr(link.index, RP_FILTER_ADDR, 32)
            .map_err(|e| e.to_string())?;
    }
    nl.set_link_up(link.index, true)
        .map_err(|e| e.to_string())?;
    let dst_mac = *link
        .mac
        .ok_or_else(|| format!("{NAME} has no MAC"))?
        .as_bytes();
    Ok(taps
        .into_iter()
        .map(|tap| TunnelQueue {
            tap,
            dst_mac,
            src_mac: SRC_MAC,
        })
        .collect())
}

fn ipv4_conf_path(ifname: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{ifname}/{key}")
}

fn read_ipv4_conf(ifname: &str, key: &str) -> Option<u32> {
    std::fs::read_to_string(ipv4_conf_path(ifname, key))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn write_ipv4_conf(ifname: &str, key: &str, value: &str) -> Result<(), String> {
    let path = ipv4_conf_path(ifname, key);
    std::fs::write(&path, value).map_err(|e| format!("writing {value} to {path}: {e}"))
}
