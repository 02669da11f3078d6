//! vswitchctl's argument checks: names, interface names, addresses and MACs are refused with
//! what is wrong before anything is sent (exit 2, as clap does), and the port limits an attach
//! may carry.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use vswitch::wire::MacAddr;

pub(crate) fn parse_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

/// Linux's own rule (dev_valid_name): 1..=15 bytes, not "." or "..", no '/', ':' or whitespace.
pub(crate) fn parse_ifname(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 15 {
        return Err(format!(
            "{s:?} is {} bytes long; Linux interface names have at most 15",
            s.len()
        ));
    }
    if s == "." || s == ".." || s.contains(['/', ':']) || s.chars().any(char::is_whitespace) {
        return Err(format!(
            "{s:?} is not a valid interface name (no '/', ':', spaces, \".\" or \"..\")"
        ));
    }
    Ok(s.to_string())
}

pub(crate) fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address (expected e.g. 10.0.9.2)"))?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        return Err(format!(
            "{ip} is not a unicast address; give the container's own address"
        ));
    }
    Ok(ip)
}

/// ADDR/PREFIX of a host: the prefix is required and the address may not be the subnet's network
/// or broadcast address.
pub(crate) fn parse_host_cidr(s: &str) -> Result<String, String> {
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(format!(
            "{s:?} has no prefix length: give ADDR/PREFIX, e.g. {s}/24"
        ));
    };
    let ip = parse_ipv4(addr)?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("prefix length {prefix:?} is not a number from 0 to 32"))?;
    let net = Ipv4Net::new(ip, prefix).map_err(|e| e.to_string())?;
    if prefix <= 30 {
        if ip == net.network() {
            return Err(format!(
                "{ip} is the network address of {}; pick a host address such as {}/{prefix}",
                net.trunc(),
                Ipv4Addr::from(u32::from(ip) + 1)
            ));
        }
        if ip == net.broadcast() {
            return Err(format!(
                "{ip} is the broadcast address of {}; pick a host address",
                net.trunc()
            ));
        }
    }
    Ok(format!("{ip}/{prefix}"))
}

/// ADDR or ADDR/PREFIX.
pub(crate) fn parse_host_addr(s: &str) -> Result<String, String> {
    if s.contains('/') {
        parse_host_cidr(s)
    } else {
        parse_ipv4(s).map(|ip| ip.to_string())
    }
}

pub(crate) fn parse_mac(s: &str) -> Result<String, String> {
    let mac: MacAddr = s.parse().map_err(|e| format!("{e}"))?;
    if mac.is_multicast() {
        return Err(format!(
            "{mac} is a multicast address (lowest bit of the first octet set); an interface \
             needs a unicast MAC such as 02:42:0a:00:09:02"
        ));
    }
    if mac == MacAddr::ZERO {
        return Err("00:00:00:00:00:00 is not a usable MAC".into());
    }
    Ok(mac.to_string())
}

/// The port's own limits (crate::switch::limits), over its network's and the daemon's.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(
    next_help_heading = "Port limits (default: the network's port_limits, else [port_limits] in node.toml, else 64 MACs and 1000 frames/s)"
)]
pub(crate) struct LimitArgs {
    /// At most N MACs learned at this port: frames from further source MACs are dropped and
    /// counted (port_mac_limit); 0: no cap. A port with port security learns none (its
    /// station is known)
    #[arg(long, value_name = "N")]
    pub(crate) max_macs: Option<u32>,
    /// At most N broadcast, multicast and unknown-unicast frames a second flooded from this
    /// port; more are dropped and counted (bum_rate_limited); 0: no cap
    #[arg(long, value_name = "N")]
    pub(crate) bum_rate: Option<u32>,
    /// Frames a quiet port may flood at once [default: --bum-rate, one second's worth]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) bum_burst: Option<u32>,
}

impl From<LimitArgs> for vswitch::switch::LimitSettings {
    fn from(a: LimitArgs) -> Self {
        vswitch::switch::LimitSettings {
            max_macs: a.max_macs,
            bum_rate: a.bum_rate,
            bum_burst: a.bum_burst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cidr() {
        assert_eq!(parse_host_cidr("10.0.9.2/24").unwrap(), "10.0.9.2/24");
        assert_eq!(parse_host_cidr("10.0.9.0/31").unwrap(), "10.0.9.0/31");
        assert!(parse_host_cidr("10.0.9.2")
            .unwrap_err()
            .contains("no prefix length"));
        assert!(parse_host_cidr("10.0.9.2/33")
            .unwrap_err()
            .contains("0 to 32"));
        assert!(parse_host_cidr("10.0.9.300/24")
            .unwrap_err()
            .contains("not an IPv4 address"));
        assert!(parse_host_cidr("10.0.9.0/24")
            .unwrap_err()
            .contains("network address of 10.0.9.0/24; pick a host address such as 10.0.9.1/24"));
        assert!(parse_host_cidr("10.0.9.255/24")
            .unwrap_err()
            .contains("broadcast address"));
        assert_eq!(parse_host_addr("10.0.9.4").unwrap(), "10.0.9.4");
    }

    #[test]
    fn macs_and_names() {
        assert_eq!(parse_mac("02:42:0A:00:09:02").unwrap(), "02:42:0a:00:09:02");
        assert!(parse_mac("03:42:0a:00:09:02")
            .unwrap_err()
            .contains("multicast"));
        assert!(parse_mac("02:42").is_err());
        assert!(parse_ifname("eth0").is_ok());
        assert!(parse_ifname("a-very-long-name0").is_err());
        assert!(parse_ifname("a/b").is_err());
        assert!(parse_name(" ").is_err());
    }
}
