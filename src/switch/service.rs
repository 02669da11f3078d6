//! A network's own address: where the switch itself answers (DNS), and what Docker is given as
//! the network's gateway.
//!
//! Contract: in a subnet with room for it (a prefix of /30 or shorter), the first host address
//! (10.0.9.1 in 10.0.9.0/24) belongs to the switch on every host. It is never handed out to a
//! container (local or cluster IPAM) and an attach with it is refused. Every host answers ARP
//! for it with the same MAC (`station_mac` of the address), so a container that moves host
//! keeps a valid neighbour entry.
//!
//! Thread-safety: pure functions.

use crate::wire::MacAddr;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The switch's own address in `subnet`, if the subnet has room for it besides stations.
pub fn service_addr(subnet: Ipv4Net) -> Option<Ipv4Addr> {
    if subnet.prefix_len() > 30 {
        return None;
    }
    Some(Ipv4Addr::from(u32::from(subnet.network()) + 1))
}

/// The addresses of `subnet` a container may be given, lowest first: its hosts but the
/// switch's own address.
pub fn station_addrs(subnet: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    let own = service_addr(subnet);
    subnet.hosts().filter(move |ip| Some(*ip) != own)
}

/// A stable, locally administered unicast MAC for a station of network `vni` at `ip`: 02 + 5
/// bytes of a hash of the VNI and address, so the same container gets the same MAC after a
/// re-attach, and every host gives the switch's own address the same MAC.
///
/// The hash is FNV-1a finished with splitmix64's mixer: FNV alone barely changes its middle
/// bytes between neighbouring addresses (4096 addresses of a /18 gave 40 distinct low 24 bits),
/// and the low 24 bits of the MAC name the station's IPv6 solicited-node group, by which the
/// switch sends a neighbour solicitation to the few ports that can want it
/// (crate::switch::multicast).
pub fn station_mac(vni: u32, ip: Ipv4Addr) -> MacAddr {
    use crate::wire::flow::{fnv1a, FNV_OFFSET};
    let mut h = fnv1a(fnv1a(FNV_OFFSET, &vni.to_be_bytes()), &ip.octets());
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let b = h.to_be_bytes();
    MacAddr([0x02, b[1], b[2], b[3], b[4], b[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_host_address_is_the_switchs_and_never_a_stations() {
        assert_eq!(
            service_addr(net("10.0.9.0/24")),
            Some(Ipv4Addr::new(10, 0, 9, 1))
        );
        assert_eq!(
            station_addrs(net("10.0.9.0/24")).next(),
            Some(Ipv4Addr::new(10, 0, 9, 2))
        );
        let all: Vec<_> = station_addrs(net("10.0.9.0/30")).collect();
        assert_eq!(all, vec![Ipv4Addr::new(10, 0, 9, 2)]);
    }

    #[test]
    fn tiny_subnets_have_no_service_address() {
        assert_eq!(service_addr(net("10.0.9.0/31")), None);
        assert_eq!(station_addrs(net("10.0.9.0/31")).count(), 2);
    }

    #[test]
    fn station_macs_are_local_unicast_and_stable() {
        let a = station_mac(42, Ipv4Addr::new(10, 0, 9, 2));
        assert_eq!(a, station_mac(42, Ipv4Addr::new(10, 0, 9, 2)));
        assert_ne!(a, station_mac(43, Ipv4Addr::new(10, 0, 9, 2)));
        // Neighbouring addresses differ in the low 24 bits (their solicited-node groups).
        let low: std::collections::HashSet<[u8; 3]> = (0..4096u32)
            .map(|i| {
                let m = station_mac(
                    42,
                    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 16, 0, 2)) + i),
                );
                [m.0[3], m.0[4], m.0[5]]
            })
            .collect();
        assert!(low.len() > 4000, "{} distinct", low.len());
        assert!(a.is_unicast_source());
        assert_eq!(a.0[0] & 0x03, 0x02, "locally administered unicast");
    }
}
