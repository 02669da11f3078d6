//! What vswitch keeps in etcd: the key layout and the JSON records under it.
//!
//! Every key starts with the `[cluster] prefix` (default `/vswitch`):
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `nodes/{node}` | [`NodeRecord`] | the node's lease (`lease_ttl`) |
//! | `networks/{network}` | [`NetworkRecord`] | until `network rm` |
//! | `vnis/{vni}` | the network's name | until `network rm` |
//! | `endpoints/{network}/{ip}` | [`EndpointRecord`] | the node's lease |
//! | `addresses/{network}/{ip}` | [`Claim`] | the node's address lease (`address_grace`) |
//! | `names/{network}/{name}` | [`Claim`] | the node's address lease |
//! | `secrets/{network}` | an encrypted network's secret, 64 hex characters | until `network rm` |
//!
//! Endpoints die with their host's lease, so a dead host's containers disappear from every
//! other host within `lease_ttl`; their addresses and names are held longer, under a second
//! lease, so that a restarted host finds them still its own and nobody is handed an address a
//! host cut off from etcd may still be using. Secrets are written and read only over TLS with
//! client certificates (see crate::cluster::agent).
//!
//! Thread-safety: plain data.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// A registered vswitchd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
    pub vxlan_port: u16,
    pub version: String,
    /// Random per start: tells one run of a node from the next.
    pub boot_id: String,
    /// Seconds since the Unix epoch when this run started.
    pub started: u64,
    /// The lease the record and the node's endpoints live under.
    pub lease: i64,
    /// The lease of its address and name claims.
    #[serde(default)]
    pub address_lease: i64,
}

/// A cluster-wide network (`vswitchctl network create`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    pub vni: u32,
    pub subnet: Ipv4Net,
    /// `None`: each host derives it from its underlay MTU (1450 on 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub encrypted: bool,
}

/// A container attached somewhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub network: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// The node it is attached on.
    pub host: String,
}

/// Who holds an address or a name of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub host: String,
    /// The endpoint's name.
    pub name: String,
    pub ip: Ipv4Addr,
}

/// A key of the layout, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Node(String),
    Network(String),
    Vni(u32),
    Endpoint(String, Ipv4Addr),
    Address(String, Ipv4Addr),
    Name(String, String),
    /// The secret of an encrypted network (64 hex characters).
    Secret(String),
}

/// Builds and parses the keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    /// With a trailing '/'.
    root: String,
}

impl Keys {
    /// `prefix` as validated by the config: starts with '/', no trailing '/'.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            root: format!("{}/", prefix.trim_end_matches('/')),
        }
    }

    /// Everything vswitch keeps.
    pub fn all(&self) -> String {
        self.root.clone()
    }
    pub fn node(&self, name: &str) -> String {
        format!("{}nodes/{name}", self.root)
    }
    pub fn network(&self, name: &str) -> String {
        format!("{}networks/{name}", self.root)
    }
    pub fn networks(&self) -> String {
        format!("{}networks/", self.root)
    }
    pub fn vni(&self, vni: u32) -> String {
        format!("{}vnis/{vni}", self.root)
    }
    pub fn vnis(&self) -> String {
        format!("{}vnis/", self.root)
    }
    pub fn endpoint(&self, network: &str, ip: Ipv4Addr) -> String {
        format!("{}endpoints/{network}/{ip}", self.root)
    }
    pub fn endpoints_of(&self, network: &str) -> String {
        format!("{}endpoints/{network}/", self.root)
    }
    pub fn endpoints(&self) -> String {
        format!("{}endpoints/", self.root)
    }
    pub fn address(&self, network: &str, ip: Ipv4Addr) -> String {
        format!("{}addresses/{network}/{ip}", self.root)
    }
    pub fn addresses_of(&self, network: &str) -> String {
        format!("{}addresses/{network}/", self.root)
    }
    pub fn addresses(&self) -> String {
        format!("{}addresses/", self.root)
    }
    pub fn name(&self, network: &str, name: &str) -> String {
        format!("{}names/{network}/{name}", self.root)
    }
    pub fn names_of(&self, network: &str) -> String {
        format!("{}names/{network}/", self.root)
    }
    pub fn secret(&self, network: &str) -> String {
        format!("{}secrets/{network}", self.root)
    }
    pub fn names(&self) -> String {
        format!("{}names/", self.root)
    }

    /// `None` for keys outside the layout (another tool's, or a newer vswitch's).
    pub fn parse(&self, key: &[u8]) -> Option<Key> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(&self.root)?;
        let (kind, rest) = rest.split_once('/')?;
        let two = || rest.split_once('/');
        match kind {
            "nodes" if !rest.is_empty() && !rest.contains('/') => Some(Key::Node(rest.into())),
            "networks" if !rest.is_empty() && !rest.contains('/') => {
                Some(Key::Network(rest.into()))
            }
            "vnis" => rest.parse().ok().map(Key::Vni),
            "endpoints" => {
                let (n, ip) = two()?;
                Some(Key::Endpoint(n.into(), ip.parse().ok()?))
            }
            "addresses" => {
                let (n, ip) = two()?;
                Some(Key::Address(n.into(), ip.parse().ok()?))
            }
            "names" => {
                let (n, name) = two()?;
                Some(Key::Name(n.into(), name.into()))
            }
            "secrets" if !rest.is_empty() && !rest.contains('/') => Some(Key::Secret(rest.into())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = Keys::new("/vswitch");
        let ip = Ipv4Addr::new(10, 0, 9, 2);
        assert_eq!(k.node("a"), "/vswitch/nodes/a");
        assert_eq!(k.endpoint("blue", ip), "/vswitch/endpoints/blue/10.0.9.2");
        assert_eq!(k.parse(k.node("a").as_bytes()), Some(Key::Node("a".into())));
        assert_eq!(k.parse(k.vni(42).as_bytes()), Some(Key::Vni(42)));
        assert_eq!(
            k.parse(k.endpoint("blue", ip).as_bytes()),
            Some(Key::Endpoint("blue".into(), ip))
        );
        assert_eq!(
            k.parse(k.address("blue", ip).as_bytes()),
            Some(Key::Address("blue".into(), ip))
        );
        assert_eq!(
            k.parse(k.name("blue", "web/eth0").as_bytes()),
            Some(Key::Name("blue".into(), "web/eth0".into()))
        );
        assert_eq!(k.parse(b"/vswitch2/nodes/a"), None);
        assert_eq!(k.parse(b"/vswitch/endpoints/blue/notanip"), None);
        assert_eq!(k.parse(b"/vswitch/other/x"), None);
    }
}
