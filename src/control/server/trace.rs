//! `vswitchctl trace` on the control actor: the request checked against the topology, then
//! a worker asked what it would do with the frame (it changes nothing).

use super::{parse_station_mac, to_json, ControlError, Server};
use crate::control::api::TraceRequest;
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

impl Server {
    /// `vswitchctl trace`: checks the request against the topology and asks a worker to
    /// decide about the frame without doing anything.
    pub(super) fn trace(&self, t: &TraceRequest) -> Result<serde_json::Value, ControlError> {
        use crate::dataplane::worker::{TraceFrame, TraceInput};
        use crate::switch::trace::Proto;
        let net = self.topology.network_by_name(&t.network).ok_or_else(|| {
            format!(
                "no network named {:?} (see `vswitchctl show networks`)",
                t.network
            )
        })?;
        let ingress =
            match (&t.in_port, &t.from_vtep) {
                (Some(p), None) => {
                    let found = self.topology.ports().find(|(id, port)| {
                        port.name == *p || p.parse::<u32>().is_ok_and(|n| n == id.0)
                    });
                    let (id, port) = found.ok_or_else(|| {
                        format!("no port {p:?} (see `vswitchctl show ports`: an id or a name)")
                    })?;
                    if port.vni != net.vni() {
                        return Err(format!("port {p:?} is not on network {:?}", t.network).into());
                    }
                    Ok(*id)
                }
                (None, Some(v)) => Err(crate::switch::VtepAddr(v.parse().map_err(|_| {
                    format!("invalid --from-vtep {v:?}: expected an IPv4 address")
                })?)),
                _ => return Err("give exactly one of --in-port and --from-vtep".into()),
            };
        let ip = |what: &str, v: &Option<String>| -> Result<Ipv4Addr, String> {
            let v = v.as_deref().ok_or_else(|| {
                format!("give --frame HEX, or --src-ip and --dst-ip ({what} missing)")
            })?;
            v.parse()
                .map_err(|_| format!("invalid {what} {v:?}: expected an IPv4 address"))
        };
        let mac = |v: &Option<String>| v.as_deref().map(parse_station_mac).transpose();
        let frame = match &t.frame {
            Some(hex) => TraceFrame::Bytes(parse_hex(hex)?),
            None => TraceFrame::Made {
                src_ip: ip("--src-ip", &t.src_ip)?,
                dst_ip: ip("--dst-ip", &t.dst_ip)?,
                proto: match t.proto.as_deref().unwrap_or("icmp") {
                    "icmp" => Proto::Icmp,
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    other => {
                        return Err(format!("invalid --proto {other:?}: icmp, tcp or udp").into())
                    }
                },
                dport: t.dport.unwrap_or(80),
                src_mac: mac(&t.src_mac)?,
                dst_mac: t
                    .dst_mac
                    .as_deref()
                    .map(|m| m.parse::<MacAddr>().map_err(|e| e.to_string()))
                    .transpose()?,
            },
        };
        let trace = self
            .workers
            .trace(TraceInput {
                network: net.vni(),
                ingress,
                frame,
            })
            .map_err(ControlError::DataPlane)?;
        to_json(trace)
    }
}

/// Hex bytes, with or without spaces or colons between them.
fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if digits.len() % 2 != 0 || digits.is_empty() {
        return Err("invalid --frame: expected an even number of hex digits".to_string());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| "invalid --frame: expected hex digits".to_string())
}
