//! Values of node.toml that mean the same outside the file: addresses, durations, subnets,
//! VNIs. Each parser returns the value or a message saying what is wrong and what was expected,
//! without naming a key, so `vswitchctl network create` and the cluster plane check their input
//! with the same words the file's validation uses.

use super::{MAX_UNDERLAY_MTU, MIN_MTU, VXLAN_OVERHEAD};
use crate::switch::Vni;
use ipnet::Ipv4Net;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// A unicast IPv4 address usable as a VTEP.
pub fn parse_vtep_ip(s: &str) -> Result<Ipv4Addr, String> {
    let ip: IpAddr = s.trim().parse().map_err(|_| {
        format!("{s:?} is not an IPv4 address (expected dotted quad such as \"192.0.2.1\")")
    })?;
    let ip = match ip {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => {
            return Err(format!(
                "{s:?} is an IPv6 address; the underlay is IPv4 only for now"
            ))
        }
    };
    if ip.is_unspecified() {
        Err(format!(
            "{ip} is the unspecified address; give this host's own underlay address"
        ))
    } else if ip.is_broadcast() {
        Err(format!(
            "{ip} is the broadcast address; a VTEP needs a unicast address"
        ))
    } else if ip.is_multicast() {
        Err(format!(
            "{ip} is a multicast address; a VTEP needs a unicast address"
        ))
    } else {
        Ok(ip)
    }
}

/// `"300s"`, `"5m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let hint = "expected a whole number followed by s, m or h, such as \"300s\", \"5m\" or \"1h\"";
    if num.is_empty() {
        return Err(format!("{s:?}: {hint}"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: number too large"))?;
    let mult = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "" => return Err(format!("{s:?} has no unit: {hint}")),
        other => return Err(format!("{s:?}: unknown unit {other:?}: {hint}")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?}: number too large"))
}

pub fn parse_subnet(s: &str) -> Result<Ipv4Net, String> {
    let t = s.trim();
    if !t.contains('/') {
        return Err(format!(
            "{s:?} has no prefix length: expected ADDR/PREFIX such as \"10.0.9.0/24\""
        ));
    }
    let net: Ipv4Net = t.parse().map_err(|_| {
        format!("{s:?} is not an IPv4 CIDR: expected ADDR/PREFIX with PREFIX at most 32, such as \"10.0.9.0/24\"")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean \"{}\"?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// A network's name: what `--network` and `docker network create` take. Printable, no spaces,
/// no `/` (it is part of keys in the cluster store), at most 64 bytes.
pub fn check_network_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 64 {
        return Err(format!("{name:?} is longer than 64 bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{name:?} contains {c:?}: use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// A VXLAN network identifier, 1..=16777215.
pub fn vni_from(v: i64) -> Result<Vni, String> {
    if v == 0 {
        Err(format!(
            "0 is reserved: VNI 0 means \"no VNI\" by convention and the Linux vxlan driver \
             does not use it; pick one in 1..={}",
            Vni::MAX
        ))
    } else if v < 0 {
        Err(format!("{v} is negative: a VNI is 1..={}", Vni::MAX))
    } else {
        u32::try_from(v)
            .ok()
            .and_then(Vni::new)
            .ok_or_else(|| format!("{v} does not fit in 24 bits (max {})", Vni::MAX))
    }
}

/// A container MTU as configured (before the underlay is known): 576..=65485.
pub fn check_mtu(v: i64) -> Result<u32, String> {
    let (lo, hi) = (MIN_MTU as i64, (MAX_UNDERLAY_MTU - VXLAN_OVERHEAD) as i64);
    if v < lo || v > hi {
        return Err(format!(
            "{v} is out of range: the container MTU must be {lo}..={hi}"
        ));
    }
    Ok(v as u32)
}
