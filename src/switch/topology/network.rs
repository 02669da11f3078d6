//! A network as the topology holds it: its spec, the peer VTEPs it spans, its local ports and
//! the endpoints (stations the control side configured) with their indexes by address and by
//! DNS name. Built and changed only through `Topology` (mod.rs), on the control side.

use super::super::fdb::Location;
use super::super::{PortId, Vni, VtepAddr};
use super::NetworkSpec;
use crate::wire::MacAddr;
use rustc_hash::FxHashMap as HashMap;
use std::net::Ipv4Addr;

/// A station the control side knows: its MAC, address and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub mac: MacAddr,
    pub ip: Option<Ipv4Addr>,
    pub at: Location,
}

#[derive(Debug, Clone)]
pub struct NetworkTopo {
    pub spec: NetworkSpec,
    pub(super) vteps: Vec<VtepAddr>,
    pub(super) ports: Vec<PortId>,
    pub(super) endpoints: HashMap<MacAddr, Endpoint>,
    pub(super) by_ip: HashMap<Ipv4Addr, MacAddr>,
    /// Endpoints by name, lower case, for DNS (crate::switch::dns); only names that are a DNS
    /// label (`dns_label`).
    pub(super) by_name: HashMap<Box<str>, MacAddr>,
    /// The switch's own address and MAC in this network (crate::switch::service).
    pub(super) service: Option<(Ipv4Addr, MacAddr)>,
}

impl NetworkTopo {
    pub(super) fn new(spec: NetworkSpec) -> NetworkTopo {
        NetworkTopo {
            service: crate::switch::service::service_addr(spec.subnet)
                .map(|ip| (ip, crate::switch::service::station_mac(spec.vni.get(), ip))),
            vteps: spec.peers.iter().map(|(_, a)| *a).collect(),
            ports: Vec::new(),
            endpoints: HashMap::default(),
            by_ip: HashMap::default(),
            by_name: HashMap::default(),
            spec,
        }
    }

    pub fn vni(&self) -> Vni {
        self.spec.vni
    }

    /// The peer VTEPs a flood of this network goes to.
    pub fn vteps(&self) -> &[VtepAddr] {
        &self.vteps
    }

    /// The local ports on this network, in the order they were attached.
    pub fn ports(&self) -> &[PortId] {
        &self.ports
    }

    pub fn endpoint(&self, mac: MacAddr) -> Option<&Endpoint> {
        self.endpoints.get(&mac)
    }

    pub fn endpoint_by_ip(&self, ip: Ipv4Addr) -> Option<&Endpoint> {
        self.by_ip.get(&ip).and_then(|m| self.endpoints.get(m))
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    /// The endpoint named `label` (any case), if its name is a DNS label. No allocation.
    pub fn endpoint_by_name(&self, label: &[u8]) -> Option<&Endpoint> {
        let mut buf = [0u8; 63];
        let lower = buf.get_mut(..label.len())?;
        lower.copy_from_slice(label);
        lower.make_ascii_lowercase();
        let name = std::str::from_utf8(lower).ok()?;
        self.by_name.get(name).and_then(|m| self.endpoints.get(m))
    }

    /// The name `e` answers to in DNS (its name, lower case, when that is a DNS label).
    pub fn dns_name<'a>(&self, e: &'a Endpoint) -> Option<&'a str> {
        dns_label(&e.name).then_some(e.name.as_str())
    }

    /// The switch's own address in this network and the MAC it answers ARP for it with.
    pub fn service(&self) -> Option<(Ipv4Addr, MacAddr)> {
        self.service
    }

    /// An address a station of this network can own: inside the subnet, and neither its
    /// network nor its broadcast address (nor 0.0.0.0, which ARP probes use).
    pub fn is_station_address(&self, ip: Ipv4Addr) -> bool {
        let s = &self.spec.subnet;
        s.contains(&ip)
            && ip != s.network()
            && ip != s.broadcast()
            && !ip.is_unspecified()
            && self.service.map_or(true, |(own, _)| own != ip)
    }

    /// The largest frame this network carries: the MTU plus the Ethernet header, plus a VLAN
    /// tag when the frame has one (it rides inside the outer path's budget, as the kernel's).
    pub fn max_frame_len(&self, frame: &[u8]) -> usize {
        use crate::wire::ethernet::{Frame, HEADER_LEN};
        let tag = Frame::new_checked(frame).map_or(0, |f| f.tag_len());
        self.spec.mtu as usize + HEADER_LEN + tag
    }
}

/// Whether `name` can be asked for in DNS as one label (RFC 1123 §2.1 host name syntax, and
/// `_`): 1 to 63 letters, digits, `-` or `_`, not starting or ending with `-`.
pub fn dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl NetworkTopo {
    pub(super) fn insert_endpoint(&mut self, e: Endpoint) {
        if let Some(ip) = e.ip {
            self.by_ip.insert(ip, e.mac);
        }
        if dns_label(&e.name) {
            self.by_name
                .insert(e.name.to_ascii_lowercase().into_boxed_str(), e.mac);
        }
        self.endpoints.insert(e.mac, e);
    }

    /// Removes the remote endpoints at the VTEPs `gone` picks.
    pub(super) fn remove_endpoints_at(&mut self, gone: impl Fn(VtepAddr) -> bool) {
        let macs: Vec<MacAddr> = self
            .endpoints
            .values()
            .filter(|e| matches!(e.at, Location::Vtep(v) if gone(v)))
            .map(|e| e.mac)
            .collect();
        for mac in macs {
            self.remove_endpoint(mac);
        }
    }

    pub(super) fn remove_endpoint(&mut self, mac: MacAddr) {
        if let Some(e) = self.endpoints.remove(&mac) {
            if let Some(ip) = e.ip {
                if self.by_ip.get(&ip) == Some(&mac) {
                    self.by_ip.remove(&ip);
                }
            }
            let name = e.name.to_ascii_lowercase();
            if self.by_name.get(name.as_str()) == Some(&mac) {
                self.by_name.remove(name.as_str());
            }
            crate::switch::shrink_sparse(&mut self.endpoints);
            crate::switch::shrink_sparse(&mut self.by_ip);
            crate::switch::shrink_sparse(&mut self.by_name);
        }
    }
}
