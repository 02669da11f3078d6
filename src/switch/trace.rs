//! `vswitchctl trace`: what the switch would do with a frame, told step by step.
//!
//! Contract: `Switch::trace` runs the very `decide` that forwarding runs (so it cannot drift
//! from it) and turns the `Decision` into steps a person reads: parse, checks, the learning
//! that would happen, the neighbour fact, a proxy answer, the FDB lookup and where the entry
//! came from, the flood set, the encapsulation (host, VNI), or the drop reason. It changes no
//! table, moves no counter and sends nothing. Also here: building a test frame from addresses
//! (`synthesize`), for traces given as `--src-ip/--dst-ip` rather than `--frame HEX`.
//!
//! Thread-safety: reads a `&Switch`; runs on the worker that owns it, between batches.

use super::decide::{Action, Answer, Decision, Ingress, Lookup};
use super::fdb::{Learned, Location};
use super::topology::{Output, Topology};
use super::{dns, dns_tcp};
use super::{PortId, Switch, Timestamp, Vni, VtepAddr};
use crate::wire::ethernet::{self, EtherType, Frame};
use crate::wire::{vxlan, MacAddr};
use std::net::Ipv4Addr;

/// One line of a trace: which stage, and what it found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub step: &'static str,
    pub detail: String,
}

/// A whole trace: the steps, and the verdict in one word ("deliver", "encapsulate",
/// "flood", "reply", "forward", "drop") with its detail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Trace {
    pub steps: Vec<Step>,
    pub verdict: &'static str,
    /// The drop reason's name when the verdict is "drop".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<&'static str>,
    /// Where copies go: "port NAME" or "vtep ADDR (NAME) vni N".
    pub outputs: Vec<String>,
}

/// The transport of a synthesized frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Icmp,
    Tcp,
    Udp,
}

/// Writes an Ethernet + IPv4 frame from `src` to `dst` (an ICMP echo request, a TCP SYN or a
/// UDP datagram to `dport`) into `out`; returns its length (at most 80 bytes).
pub fn synthesize(
    out: &mut [u8],
    (src_mac, dst_mac): (MacAddr, MacAddr),
    (src, dst): (Ipv4Addr, Ipv4Addr),
    proto: Proto,
    dport: u16,
) -> usize {
    let l4_len = match proto {
        Proto::Icmp => 8,
        Proto::Tcp => 20,
        Proto::Udp => 8,
    };
    let total = 20 + l4_len;
    let len = ethernet::HEADER_LEN + total;
    out[..len].fill(0);
    let mut eth = Frame::new_unchecked(&mut out[..len]);
    eth.set_dst(dst_mac);
    eth.set_src(src_mac);
    eth.set_ethertype(EtherType::Ipv4);
    let ip = &mut out[ethernet::HEADER_LEN..len];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = match proto {
        Proto::Icmp => 1,
        Proto::Tcp => 6,
        Proto::Udp => 17,
    };
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = crate::wire::checksum::ipv4_header(&ip[..20]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let l4 = &mut ip[20..];
    match proto {
        Proto::Icmp => l4[0] = 8,
        Proto::Tcp => {
            l4[0..2].copy_from_slice(&40000u16.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            l4[12] = 0x50;
            l4[13] = 0x02; // SYN
        }
        Proto::Udp => {
            l4[0..2].copy_from_slice(&40000u16.to_be_bytes());
            l4[2..4].copy_from_slice(&dport.to_be_bytes());
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
    }
    len
}

fn place(topo: &Topology, at: Location) -> String {
    match at {
        Location::Port(p) => port_name(topo, p),
        Location::Vtep(v) => vtep_name(topo, v),
    }
}

fn port_name(topo: &Topology, p: PortId) -> String {
    topo.port(p)
        .map_or_else(|| format!("port {p}"), |t| format!("port {} ({p})", t.name))
}

fn vtep_name(topo: &Topology, v: VtepAddr) -> String {
    topo.peer(v)
        .map_or_else(|| format!("vtep {v}"), |p| format!("vtep {v} ({})", p.name))
}

impl Switch {
    /// What would happen to `bytes` arriving at `ingress` (a frame from a port; a VXLAN
    /// datagram from the underlay). Changes nothing; see the module documentation.
    pub fn trace(&self, now: Timestamp, ingress: Ingress, bytes: &[u8]) -> Trace {
        let d = self.decide(now, ingress, bytes);
        self.explain(now, &d, bytes)
    }

    /// The steps of a decision made about `bytes`.
    pub fn explain(&self, now: Timestamp, d: &Decision, bytes: &[u8]) -> Trace {
        let topo = self.topology();
        let mut steps = Vec::new();
        let mut step = |step: &'static str, detail: String| steps.push(Step { step, detail });
        let frame = match d.ingress {
            Ingress::Port(p) => {
                step("ingress", port_name(topo, p));
                bytes
            }
            Ingress::Underlay(v) | Ingress::Decrypted { from: v, .. } => {
                step("ingress", format!("underlay from {}", vtep_name(topo, v)));
                match vxlan::Packet::new_checked(bytes) {
                    Ok(vx) => {
                        step("vxlan", vx.to_string());
                        &bytes[vxlan::HEADER_LEN..]
                    }
                    Err(_) => &[][..],
                }
            }
        };
        if let Some(n) = d.network.and_then(|v| topo.network(v)) {
            step(
                "network",
                format!(
                    "{} (vni {}, subnet {}, mtu {}{})",
                    n.spec.name,
                    n.vni(),
                    n.spec.subnet,
                    n.spec.mtu,
                    if n.spec.encrypted { ", encrypted" } else { "" }
                ),
            );
        }
        step(
            "parse",
            match Frame::new_checked(frame) {
                Ok(eth) => eth.to_string(),
                Err(_) => format!("{} bytes: shorter than an Ethernet header", frame.len()),
            },
        );
        if let Some(f) = d.learn {
            let what = match f.outcome {
                Learned::New => "would learn",
                Learned::Moved => "would move",
                Learned::Refreshed | Learned::RefreshDue => "would refresh",
                Learned::Full => "table full, would not learn",
            };
            step(
                "learn",
                format!("{what} {} at {}", f.mac, place(topo, f.at)),
            );
        } else if d.network.is_some() && !matches!(d.action, Action::Drop(_)) {
            step(
                "learn",
                "source is a configured endpoint: nothing learned".to_string(),
            );
        }
        if let Some(n) = d.neigh {
            step(
                "neighbour",
                format!(
                    "would record {} at {} (from {})",
                    n.ip,
                    n.mac,
                    n.source.name()
                ),
            );
        }
        let age = |t: Timestamp| now.millis_since(t) / 1000;
        match d.lookup {
            Lookup::None => {}
            Lookup::Multicast => step("lookup", "broadcast/multicast destination".to_string()),
            Lookup::Endpoint(at) => step(
                "lookup",
                format!("configured endpoint at {}", place(topo, at)),
            ),
            Lookup::Learned(at, t) => step(
                "lookup",
                format!("learned entry at {}, {}s old", place(topo, at), age(t)),
            ),
            Lookup::Miss => step("lookup", "unknown unicast: no FDB entry".to_string()),
        }
        let vni_of = d.network.unwrap_or(Vni::of(0));
        let out = |o: Output| match o {
            Output::Port(p) => port_name(topo, p),
            Output::Vtep(v) => format!("{} vni {}", vtep_name(topo, v), vni_of),
        };
        let (verdict, drop_reason, outputs) = match d.action {
            Action::Drop(r) => {
                step("drop", format!("{}: {}", r.name(), r.help()));
                ("drop", Some(r.name()), Vec::new())
            }
            Action::ToPort(p) => {
                step("output", port_name(topo, p));
                ("deliver", None, vec![port_name(topo, p)])
            }
            Action::ToVtep { vtep, vni } => {
                let o = out(Output::Vtep(vtep));
                step(
                    "encapsulate",
                    format!("VXLAN vni {vni} to {}", vtep_name(topo, vtep)),
                );
                ("encapsulate", None, vec![o])
            }
            Action::Flood {
                network,
                except,
                to_peers,
            }
            | Action::FloodScoped {
                network,
                except,
                to_peers,
                ..
            } => {
                let outs: Vec<String> = match d.action {
                    Action::FloodScoped { scope, .. } => {
                        step("scope", format!("{scope:?} (crate::switch::multicast)"));
                        topo.flood_set_scoped(network, except, to_peers, scope)
                            .map(out)
                            .collect()
                    }
                    _ => topo.flood_set(network, except, to_peers).map(out).collect(),
                };
                step(
                    "flood",
                    if outs.is_empty() {
                        "to nobody: no other port or peer in the network".to_string()
                    } else {
                        format!("to {}", outs.join(", "))
                    },
                );
                ("flood", None, outs)
            }
            Action::Reply { port, answer } => {
                match answer {
                    Answer::ArpReply { mac, ip, .. } => {
                        step("proxy-arp", format!("answer {ip} is-at {mac}"))
                    }
                    Answer::Dns { reply, .. } => step("dns", describe_dns(topo, vni_of, reply)),
                    Answer::DnsTcp { step: s, .. } => step(
                        "dns",
                        match s {
                            dns_tcp::Step::Open => "TCP: SYN-ACK, connection taken".to_string(),
                            dns_tcp::Step::Close => "TCP: FIN-ACK, connection closed".to_string(),
                            dns_tcp::Step::Answer(reply) => {
                                format!("over TCP: {}", describe_dns(topo, vni_of, reply))
                            }
                        },
                    ),
                }
                step("output", format!("reply to {}", port_name(topo, port)));
                ("reply", None, vec![port_name(topo, port)])
            }
            Action::Probe { from, .. } => {
                step(
                    "probe",
                    format!(
                        "a reachability probe from {}: answered to it with this host's name, clock and networks",
                        vtep_name(topo, from)
                    ),
                );
                ("probe reply", None, vec![vtep_name(topo, from)])
            }
            Action::Upstream { port, .. } => {
                step(
                    "dns",
                    "not an endpoint of the network: forwarded to the host's resolvers".to_string(),
                );
                step(
                    "output",
                    format!("their answer to {}", port_name(topo, port)),
                );
                ("forward", None, vec![port_name(topo, port)])
            }
        };
        Trace {
            steps,
            verdict,
            drop_reason,
            outputs,
        }
    }
}

/// What the switch's DNS answers, in words.
fn describe_dns(topo: &Topology, vni: Vni, reply: dns::Reply) -> String {
    let name_at = |ip| {
        topo.network(vni)
            .and_then(|n| {
                n.endpoint_by_ip(ip)
                    .map(|e| format!("{}.{}", e.name, n.spec.name))
            })
            .unwrap_or_else(|| ip.to_string())
    };
    match reply {
        dns::Reply::Address(ip) => format!("answer A {ip}"),
        dns::Reply::Name(ip) => format!("answer PTR {}", name_at(ip)),
        dns::Reply::NoData => "answer NOERROR, no record of that type".to_string(),
        dns::Reply::NxDomain => "answer NXDOMAIN: no such endpoint in the network".to_string(),
        dns::Reply::NotImplemented => "answer NOTIMP: not a standard query".to_string(),
        dns::Reply::FormErr => "answer FORMERR: not exactly one question".to_string(),
    }
}
