//! `node.toml`: the daemon's configuration file (DESIGN.md §3 "node.toml"), parsed and validated.
//!
//! Contract: `Config::load` either returns a configuration in which every value is usable as is
//! (names unique and non-empty, VNIs in 1..=16777215, subnets in canonical form, every network's
//! peer list resolved to existing peers), or a `ConfigError` whose message names the file, the key
//! and what is wrong, one line per problem. All problems found are reported at once, so an
//! operator fixes the file in one go. Unknown keys are refused (`deny_unknown_fields`) so a typo
//! never silently falls back to a default.
//!
//! The underlay MTU is usually not in the file: the daemon detects it from the interface holding
//! `underlay_ip` and then calls `Config::validate_mtus`. When the file does set `underlay_mtu`,
//! `load` checks the network MTUs against it straight away.
//!
//! Thread-safety: plain data, no I/O but the one `read_to_string` in `load`. Called by the
//! control thread at start (and by `vswitchd --check`).

use crate::switch::{NetworkSpec, SwitchSpec, Vni, VtepAddr};
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_VXLAN_PORT: u16 = 4789;
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/vswitch/vswitchd.sock";
pub const DEFAULT_FDB_MAX_ENTRIES: usize = 8192;
pub const DEFAULT_FDB_AGING: Duration = Duration::from_secs(300);
/// Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8) headers: what a container frame loses
/// to the encapsulation on an IPv4 underlay (RFC 7348 §5).
pub const VXLAN_OVERHEAD: u32 = 50;
/// What an encrypted network's frame loses on an IPv4 underlay: outer IPv4 (20) + UDP (8) + ESP
/// header (8) + IV (8) + inner UDP (8) + VXLAN (8) + inner Ethernet (14) + ESP trailer (2) +
/// ICV (16), plus up to 3 bytes of padding that `effective_mtu` avoids by keeping the MTU a
/// multiple of 4 (RFC 4303 §2.4 aligns the trailer to 4 bytes).
pub const ESP_OVERHEAD: u32 = 92;
pub const DEFAULT_ESP_PORT: u16 = 4500;
pub const DEFAULT_REKEY_INTERVAL: Duration = Duration::from_secs(12 * 3600);
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vswitch";
/// The smallest MTU we let a network have: the IPv4 minimum datagram size every host must accept
/// (RFC 791).
pub const MIN_MTU: u32 = 576;
/// Largest IPv4 datagram; no underlay carries more.
pub const MAX_UNDERLAY_MTU: u32 = 65535;
pub const MAX_WORKERS: u32 = 1024;
/// Per-network cap on learned MACs; above this the table is more likely a typo than a plan.
pub const MAX_FDB_ENTRIES: usize = 1 << 24;

/// A validated `node.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, as given (used in later error messages).
    pub path: PathBuf,
    pub node: NodeConfig,
    pub peers: Vec<PeerConfig>,
    pub networks: Vec<NetworkConfig>,
}

/// `[node]`: this host.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub name: String,
    /// This host's VTEP address: the source of our VXLAN packets.
    pub underlay_ip: Ipv4Addr,
    pub vxlan_port: u16,
    pub control_socket: PathBuf,
    /// Number of forwarding workers; 0 means one per available core.
    pub workers: u32,
    /// `None`: detect from the interface holding `underlay_ip` at start.
    pub underlay_mtu: Option<u32>,
    /// Cap on learned MACs, per network.
    pub fdb_max_entries: usize,
    /// A learned MAC not seen for this long is forgotten.
    pub fdb_aging: Duration,
    /// Where the daemon keeps state that must survive restarts (the boot counter that keeps
    /// encryption nonces unique).
    pub state_dir: PathBuf,
}

/// `[[peer]]`: another VTEP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
}

/// `[[network]]`: one overlay network (one VNI).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub name: String,
    pub vni: Vni,
    /// In canonical form (no host bits set).
    pub subnet: Ipv4Net,
    /// `None`: derived from the underlay MTU, see `effective_mtu`.
    pub mtu: Option<u32>,
    /// Names of the peers that carry this network; every `[[peer]]` when the file says nothing.
    pub peers: Vec<String>,
    /// `Some` when `encrypted = true`.
    pub encryption: Option<EncryptionConfig>,
}

/// An encrypted network's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// The network secret (32 bytes, raw or hex), mode 0600.
    pub key_file: PathBuf,
    /// How often the keys of every SA are replaced.
    pub rekey_interval: Duration,
    /// UDP port of the ESP-in-UDP packets (RFC 3948).
    pub esp_port: u16,
}

impl NetworkConfig {
    /// Bytes of encapsulation this network's frames carry on the underlay.
    pub fn overhead(&self) -> u32 {
        if self.encryption.is_some() {
            ESP_OVERHEAD
        } else {
            VXLAN_OVERHEAD
        }
    }

    /// The largest MTU that fits in the underlay once encapsulated.
    pub fn max_mtu(&self, underlay_mtu: u32) -> u32 {
        let max = underlay_mtu.saturating_sub(self.overhead());
        if self.encryption.is_some() {
            max & !3
        } else {
            max
        }
    }

    /// The MTU containers on this network get: the configured one, or the largest that fits
    /// (1450 on a 1500 underlay; 1408 when encrypted).
    pub fn effective_mtu(&self, underlay_mtu: u32) -> u32 {
        self.mtu.unwrap_or_else(|| self.max_mtu(underlay_mtu))
    }
}

/// One thing wrong with the file: which key, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// e.g. `network "blue" (network[1]).vni`
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, a missing or unknown key, a value of the wrong type: toml's own message,
    /// which keeps the line and column.
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// The file parses but some values are not acceptable.
    #[error("{}", ProblemList(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a>(&'a Path, &'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.1.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}: {}", self.0.display(), p.key, p.message)?;
        }
        Ok(())
    }
}

// What serde sees. Numbers are taken as i64 (TOML's integer type) and addresses as strings so
// that range and format problems get our messages, which name the key, rather than serde's.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    node: RawNode,
    #[serde(default)]
    peer: Vec<RawPeer>,
    #[serde(default)]
    network: Vec<RawNetwork>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    underlay_ip: String,
    vxlan_port: Option<i64>,
    control_socket: Option<PathBuf>,
    workers: Option<i64>,
    underlay_mtu: Option<i64>,
    fdb_max_entries: Option<i64>,
    fdb_aging: Option<String>,
    state_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: String,
    underlay_ip: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    name: String,
    vni: i64,
    subnet: String,
    mtu: Option<i64>,
    peers: Option<Vec<String>>,
    encrypted: Option<bool>,
    key_file: Option<PathBuf>,
    rekey_interval: Option<String>,
    esp_port: Option<i64>,
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }
}

fn peer_key(i: usize, name: &str, field: &str) -> String {
    if name.trim().is_empty() {
        format!("peer[{i}].{field}")
    } else {
        format!("peer {name:?} (peer[{i}]).{field}")
    }
}

fn network_key(i: usize, name: &str, field: &str) -> String {
    if name.trim().is_empty() {
        format!("network[{i}].{field}")
    } else {
        format!("network {name:?} (network[{i}]).{field}")
    }
}

/// A unicast IPv4 address usable as a VTEP.
fn parse_vtep_ip(s: &str) -> Result<Ipv4Addr, String> {
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
fn parse_duration(s: &str) -> Result<Duration, String> {
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

fn parse_subnet(s: &str) -> Result<Ipv4Net, String> {
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

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_str(&text, path)
    }

    /// Parses and validates `text`; `path` is only used in messages and kept in `Config::path`.
    pub fn from_str(text: &str, path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref().to_path_buf();
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut p = Problems::default();

        let node = validate_node(raw.node, &mut p);
        let peers = validate_peers(raw.peer, &node, &mut p);
        let networks = validate_networks(raw.network, &peers, &mut p);

        let config = Config {
            path: path.clone(),
            node,
            peers,
            networks,
        };
        if let Some(mtu) = config.node.underlay_mtu {
            config.mtu_problems(mtu, "node.underlay_mtu", &mut p);
        }
        if p.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path,
                problems: p.0,
            })
        }
    }

    /// Checks every network's MTU against the underlay MTU (from the file or detected): a
    /// configured MTU must fit in the underlay once encapsulated, and neither a configured nor a
    /// derived MTU may be below 576.
    pub fn validate_mtus(&self, underlay_mtu: u32) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        let source = match self.node.underlay_mtu {
            Some(_) => "node.underlay_mtu",
            None => "detected on the underlay interface",
        };
        self.mtu_problems(underlay_mtu, source, &mut p);
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: self.path.clone(),
                problems: p.0,
            })
        }
    }

    fn mtu_problems(&self, underlay_mtu: u32, source: &str, p: &mut Problems) {
        for (i, n) in self.networks.iter().enumerate() {
            let max = n.max_mtu(underlay_mtu);
            let overhead = n.overhead();
            let what = if n.encryption.is_some() {
                "ESP+VXLAN"
            } else {
                "VXLAN"
            };
            let key = network_key(i, &n.name, "mtu");
            match n.mtu {
                Some(mtu) if mtu > max => p.add(
                    key,
                    format!(
                        "{mtu} does not fit in the underlay: underlay MTU {underlay_mtu} ({source}) \
                         minus {overhead} bytes of {what} overhead leaves at most {max}"
                    ),
                ),
                Some(mtu) if mtu < MIN_MTU => {
                    p.add(key, format!("{mtu} is below the minimum {MIN_MTU}"))
                }
                None if max < MIN_MTU => p.add(
                    key,
                    format!(
                        "the derived MTU {max} (underlay MTU {underlay_mtu} ({source}) minus \
                         {overhead}) is below the minimum {MIN_MTU}; the underlay is too small"
                    ),
                ),
                _ => {}
            }
        }
    }

    /// What the switch core needs from this file, with MTUs derived from `underlay_mtu`.
    pub fn switch_spec(&self, underlay_mtu: u32) -> SwitchSpec {
        let peer = |name: &String| {
            self.peer(name)
                .map(|p| (p.name.clone(), VtepAddr(p.underlay_ip)))
        };
        SwitchSpec {
            networks: self
                .networks
                .iter()
                .map(|n| NetworkSpec {
                    name: n.name.clone(),
                    vni: n.vni,
                    subnet: n.subnet,
                    mtu: n.effective_mtu(underlay_mtu),
                    peers: n.peers.iter().filter_map(peer).collect(),
                    encrypted: n.encryption.is_some(),
                })
                .collect(),
            peers: self
                .peers
                .iter()
                .map(|p| (p.name.clone(), VtepAddr(p.underlay_ip)))
                .collect(),
            fdb_max_entries: self.node.fdb_max_entries,
            aging_ms: self.node.fdb_aging.as_millis() as u64,
        }
    }

    pub fn network(&self, name: &str) -> Option<&NetworkConfig> {
        self.networks.iter().find(|n| n.name == name)
    }

    pub fn peer(&self, name: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|n| n.name == name)
    }
}

fn int_in<T: TryFrom<i64>>(
    v: i64,
    lo: i64,
    hi: i64,
    key: &str,
    what: &str,
    p: &mut Problems,
) -> Option<T> {
    if v < lo || v > hi {
        p.add(
            key,
            format!("{v} is out of range: {what} must be {lo}..={hi}"),
        );
        return None;
    }
    T::try_from(v).ok()
}

fn validate_node(raw: RawNode, p: &mut Problems) -> NodeConfig {
    if raw.name.trim().is_empty() {
        p.add(
            "node.name",
            "must not be empty: name this host, e.g. \"node-a\"",
        );
    }
    let underlay_ip = parse_vtep_ip(&raw.underlay_ip).unwrap_or_else(|e| {
        p.add("node.underlay_ip", e);
        Ipv4Addr::UNSPECIFIED
    });
    let vxlan_port = match raw.vxlan_port {
        None => DEFAULT_VXLAN_PORT,
        Some(0) => {
            p.add(
                "node.vxlan_port",
                "0 is not a usable port: must be 1..=65535 (VXLAN's IANA port is 4789)",
            );
            DEFAULT_VXLAN_PORT
        }
        Some(v) => {
            int_in(v, 1, 65535, "node.vxlan_port", "a UDP port", p).unwrap_or(DEFAULT_VXLAN_PORT)
        }
    };
    let control_socket = match raw.control_socket {
        None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
        Some(s) if s.as_os_str().is_empty() => {
            p.add("node.control_socket", "must not be empty");
            PathBuf::from(DEFAULT_CONTROL_SOCKET)
        }
        Some(s) => s,
    };
    let workers = raw
        .workers
        .map(|v| {
            int_in(
                v,
                0,
                MAX_WORKERS as i64,
                "node.workers",
                "the number of workers (0: one per core)",
                p,
            )
            .unwrap_or(0)
        })
        .unwrap_or(0);
    let underlay_mtu = raw.underlay_mtu.and_then(|v| {
        let lo = (MIN_MTU + VXLAN_OVERHEAD) as i64;
        if v < lo {
            p.add(
                "node.underlay_mtu",
                format!(
                    "{v} is too small: containers need at least {MIN_MTU} plus {VXLAN_OVERHEAD} \
                     bytes of VXLAN overhead, so at least {lo}"
                ),
            );
            return None;
        }
        int_in(
            v,
            lo,
            MAX_UNDERLAY_MTU as i64,
            "node.underlay_mtu",
            "an IPv4 MTU",
            p,
        )
    });
    let fdb_max_entries = raw
        .fdb_max_entries
        .map(|v| {
            int_in(
                v,
                1,
                MAX_FDB_ENTRIES as i64,
                "node.fdb_max_entries",
                "the per-network MAC table size",
                p,
            )
            .unwrap_or(DEFAULT_FDB_MAX_ENTRIES)
        })
        .unwrap_or(DEFAULT_FDB_MAX_ENTRIES);
    let fdb_aging = match raw.fdb_aging.as_deref().map(parse_duration) {
        None => DEFAULT_FDB_AGING,
        Some(Ok(d)) if d.is_zero() => {
            p.add(
                "node.fdb_aging",
                "must be at least 1s (0 would forget every MAC at once)",
            );
            DEFAULT_FDB_AGING
        }
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            p.add("node.fdb_aging", e);
            DEFAULT_FDB_AGING
        }
    };
    let state_dir = match raw.state_dir {
        Some(d) if d.as_os_str().is_empty() => {
            p.add("node.state_dir", "must not be empty");
            PathBuf::from(DEFAULT_STATE_DIR)
        }
        Some(d) => d,
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    NodeConfig {
        name: raw.name,
        underlay_ip,
        vxlan_port,
        control_socket,
        workers,
        underlay_mtu,
        fdb_max_entries,
        fdb_aging,
        state_dir,
    }
}

fn validate_peers(raw: Vec<RawPeer>, node: &NodeConfig, p: &mut Problems) -> Vec<PeerConfig> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut ips: HashMap<Ipv4Addr, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let name_key = peer_key(i, &r.name, "name");
        if r.name.trim().is_empty() {
            p.add(name_key, "must not be empty");
        } else if r.name == node.name {
            p.add(
                name_key,
                format!(
                    "{:?} is this node's own name (node.name); list only the other hosts",
                    r.name
                ),
            );
        } else if let Some(first) = names.get(&r.name) {
            p.add(
                name_key,
                format!("duplicate peer name {:?} (also peer[{first}])", r.name),
            );
        } else {
            names.insert(r.name.clone(), i);
        }
        let ip_key = peer_key(i, &r.name, "underlay_ip");
        let ip = match parse_vtep_ip(&r.underlay_ip) {
            Err(e) => {
                p.add(ip_key, e);
                Ipv4Addr::UNSPECIFIED
            }
            Ok(ip) if ip == node.underlay_ip => {
                p.add(
                    ip_key,
                    format!("{ip} is this node's own underlay_ip (node.underlay_ip); a peer must be another host"),
                );
                ip
            }
            Ok(ip) => {
                if let Some(first) = ips.get(&ip) {
                    p.add(
                        ip_key,
                        format!("duplicate underlay_ip {ip} (also peer[{first}])"),
                    );
                } else {
                    ips.insert(ip, i);
                }
                ip
            }
        };
        out.push(PeerConfig {
            name: r.name,
            underlay_ip: ip,
        });
    }
    out
}

fn validate_networks(
    raw: Vec<RawNetwork>,
    peers: &[PeerConfig],
    p: &mut Problems,
) -> Vec<NetworkConfig> {
    if raw.is_empty() {
        p.add(
            "network",
            "no [[network]] is defined; at least one is needed (see config/reference.toml)",
        );
    }
    let known_peers = if peers.is_empty() {
        "none (there is no [[peer]])".to_string()
    } else {
        peers
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut vnis: HashMap<i64, (usize, String)> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, mut r) in raw.into_iter().enumerate() {
        let name = r.name.clone();
        let key = |field: &str| network_key(i, &name, field);
        if r.name.trim().is_empty() {
            p.add(key("name"), "must not be empty");
        } else if let Some(first) = names.get(&r.name) {
            p.add(
                key("name"),
                format!(
                    "duplicate network name {:?} (also network[{first}])",
                    r.name
                ),
            );
        } else {
            names.insert(r.name.clone(), i);
        }

        let vni = if r.vni == 0 {
            p.add(
                key("vni"),
                format!(
                    "0 is reserved: VNI 0 means \"no VNI\" by convention and the Linux vxlan \
                     driver does not use it; pick one in 1..={}",
                    Vni::MAX
                ),
            );
            None
        } else if r.vni < 0 {
            p.add(
                key("vni"),
                format!("{} is negative: a VNI is 1..={}", r.vni, Vni::MAX),
            );
            None
        } else if r.vni > Vni::MAX as i64 {
            p.add(
                key("vni"),
                format!("{} does not fit in 24 bits (max {})", r.vni, Vni::MAX),
            );
            None
        } else {
            if let Some((first, first_name)) = vnis.get(&r.vni) {
                p.add(
                    key("vni"),
                    format!(
                        "VNI {} is already used by network {first_name:?} (network[{first}]); \
                         each network needs its own VNI",
                        r.vni
                    ),
                );
            } else {
                vnis.insert(r.vni, (i, r.name.clone()));
            }
            u32::try_from(r.vni).ok().and_then(Vni::new)
        };

        let subnet = parse_subnet(&r.subnet).unwrap_or_else(|e| {
            p.add(key("subnet"), e);
            Ipv4Net::default()
        });

        let mtu = r.mtu.and_then(|v| {
            int_in(
                v,
                MIN_MTU as i64,
                (MAX_UNDERLAY_MTU - VXLAN_OVERHEAD) as i64,
                &key("mtu"),
                "the container MTU",
                p,
            )
        });

        let peer_names = match r.peers.take() {
            None => peers.iter().map(|x| x.name.clone()).collect(),
            Some(list) => {
                let mut seen: Vec<String> = Vec::new();
                for name in list {
                    if !peers.iter().any(|x| x.name == name) {
                        p.add(
                            key("peers"),
                            format!("unknown peer {name:?}; known peers: {known_peers}"),
                        );
                    } else if seen.contains(&name) {
                        p.add(key("peers"), format!("peer {name:?} is listed twice"));
                    } else {
                        seen.push(name);
                    }
                }
                seen
            }
        };

        let encryption = validate_encryption(&r, &key, p);

        out.push(NetworkConfig {
            name: r.name,
            vni: vni.unwrap_or(Vni::new(1).expect("1 fits in 24 bits")),
            subnet,
            mtu,
            peers: peer_names,
            encryption,
        });
    }
    encryption_conflicts(&out, p);
    out
}

fn validate_encryption(
    r: &RawNetwork,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<EncryptionConfig> {
    if r.encrypted != Some(true) {
        // Settings that only mean something when encrypted are refused rather than ignored:
        // an operator who wrote a key_file believes the network is encrypted.
        for (field, set) in [
            ("key_file", r.key_file.is_some()),
            ("rekey_interval", r.rekey_interval.is_some()),
            ("esp_port", r.esp_port.is_some()),
        ] {
            if set {
                p.add(
                    key(field),
                    format!("is set but the network is not encrypted; add `encrypted = true` or remove {field}"),
                );
            }
        }
        return None;
    }
    let key_file = match &r.key_file {
        Some(f) if !f.as_os_str().is_empty() => f.clone(),
        _ => {
            p.add(
                key("key_file"),
                "an encrypted network needs key_file (make one with `vswitchctl gen-key --out FILE`)",
            );
            PathBuf::new()
        }
    };
    let rekey_interval = match r.rekey_interval.as_deref().map(parse_duration) {
        None => DEFAULT_REKEY_INTERVAL,
        Some(Ok(d)) if d.is_zero() => {
            p.add(key("rekey_interval"), "must be at least 1s");
            DEFAULT_REKEY_INTERVAL
        }
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            p.add(key("rekey_interval"), e);
            DEFAULT_REKEY_INTERVAL
        }
    };
    let esp_port = match r.esp_port {
        None => DEFAULT_ESP_PORT,
        Some(v) => {
            int_in(v, 1, 65535, &key("esp_port"), "a UDP port", p).unwrap_or(DEFAULT_ESP_PORT)
        }
    };
    Some(EncryptionConfig {
        key_file,
        rekey_interval,
        esp_port,
    })
}

/// Encrypted networks share one ESP socket, and the SPI carries `vni mod 4096` to tell them
/// apart (see crate::crypto): refuse what would make either ambiguous.
fn encryption_conflicts(networks: &[NetworkConfig], p: &mut Problems) {
    let mut port: Option<(u16, &str)> = None;
    let mut interval: Option<(Duration, &str)> = None;
    let mut ids: HashMap<u32, &str> = HashMap::new();
    for (i, n) in networks.iter().enumerate() {
        let Some(e) = &n.encryption else { continue };
        match interval {
            Some((d, other)) if d != e.rekey_interval => p.add(
                network_key(i, &n.name, "rekey_interval"),
                format!(
                    "{}s differs from network {other:?}'s {}s: encrypted networks share one rekey_interval",
                    e.rekey_interval.as_secs(),
                    d.as_secs()
                ),
            ),
            _ => interval = Some((e.rekey_interval, &n.name)),
        }
        match port {
            Some((q, other)) if q != e.esp_port => p.add(
                network_key(i, &n.name, "esp_port"),
                format!("{} differs from network {other:?}'s {q}: encrypted networks share one esp_port", e.esp_port),
            ),
            _ => port = Some((e.esp_port, &n.name)),
        }
        let id = n.vni.get() % 4096;
        if let Some(other) = ids.insert(id, &n.name) {
            p.add(
                network_key(i, &n.name, "vni"),
                format!(
                    "encrypted networks {other:?} and {:?} have VNIs equal modulo 4096, which the \
                     ESP SPI cannot tell apart; change one VNI",
                    n.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "node-a"
underlay_ip = "192.0.2.1"

[[peer]]
name = "node-b"
underlay_ip = "192.0.2.2"

[[network]]
name = "blue"
vni = 42
subnet = "10.0.9.0/24"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str(text, "node.toml")
    }

    /// Asserts `text` is refused and the message holds the file name and every fragment.
    fn refused(text: &str, fragments: &[&str]) -> String {
        let err = parse(text).expect_err("config should be refused");
        let msg = err.to_string();
        assert!(msg.starts_with("node.toml: "), "no file name in: {msg}");
        for f in fragments {
            assert!(msg.contains(f), "{f:?} not in: {msg}");
        }
        msg
    }

    /// GOOD with `old` replaced by `new`.
    fn good_with(old: &str, new: &str) -> String {
        assert!(GOOD.contains(old), "{old:?}");
        GOOD.replacen(old, new, 1)
    }

    /// GOOD plus a second network.
    fn with_network(extra: &str) -> String {
        format!("{GOOD}\n[[network]]\n{extra}\n")
    }

    #[test]
    fn defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.path, PathBuf::from("node.toml"));
        assert_eq!(c.node.name, "node-a");
        assert_eq!(c.node.underlay_ip, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(c.node.vxlan_port, 4789);
        assert_eq!(
            c.node.control_socket,
            PathBuf::from("/run/vswitch/vswitchd.sock")
        );
        assert_eq!(c.node.workers, 0);
        assert_eq!(c.node.underlay_mtu, None);
        assert_eq!(c.node.fdb_max_entries, 8192);
        assert_eq!(c.node.fdb_aging, Duration::from_secs(300));
        assert_eq!(
            c.peers,
            vec![PeerConfig {
                name: "node-b".into(),
                underlay_ip: Ipv4Addr::new(192, 0, 2, 2)
            }]
        );
        let n = &c.networks[0];
        assert_eq!(n.name, "blue");
        assert_eq!(n.vni.get(), 42);
        assert_eq!(n.subnet, "10.0.9.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(n.mtu, None);
        assert_eq!(n.peers, vec!["node-b".to_string()]);
        assert_eq!(n.effective_mtu(1500), 1450);
        assert_eq!(n.effective_mtu(9000), 8950);
        assert!(c.validate_mtus(1500).is_ok());
        assert!(c.network("blue").is_some());
        assert!(c.peer("node-b").is_some());
    }

    #[test]
    fn every_key_set() {
        let text = r#"
[node]
name = "node-a"
underlay_ip = "192.0.2.1"
vxlan_port = 8472
control_socket = "/tmp/v.sock"
workers = 4
underlay_mtu = 9000
fdb_max_entries = 100
fdb_aging = "5m"
state_dir = "/tmp/vs-state"

[[peer]]
name = "node-b"
underlay_ip = "192.0.2.2"

[[peer]]
name = "node-c"
underlay_ip = "192.0.2.3"

[[network]]
name = "blue"
vni = 42
subnet = "10.0.9.0/24"
mtu = 8900
peers = ["node-c"]
encrypted = true
key_file = "/etc/vswitch/blue.key"
rekey_interval = "1h"
esp_port = 4501
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.node.vxlan_port, 8472);
        assert_eq!(c.node.control_socket, PathBuf::from("/tmp/v.sock"));
        assert_eq!(c.node.workers, 4);
        assert_eq!(c.node.underlay_mtu, Some(9000));
        assert_eq!(c.node.fdb_max_entries, 100);
        assert_eq!(c.node.fdb_aging, Duration::from_secs(300));
        assert_eq!(c.networks[0].mtu, Some(8900));
        assert_eq!(c.node.state_dir, PathBuf::from("/tmp/vs-state"));
        let e = c.networks[0].encryption.as_ref().unwrap();
        assert_eq!(
            (e.rekey_interval, e.esp_port),
            (Duration::from_secs(3600), 4501)
        );
        assert_eq!(c.networks[0].effective_mtu(1500), 8900);
        assert_eq!(c.networks[0].peers, vec!["node-c".to_string()]);
    }

    #[test]
    fn explicit_empty_peer_list_means_no_peers() {
        let c = parse(&good_with(
            "subnet = \"10.0.9.0/24\"",
            "subnet = \"10.0.9.0/24\"\npeers = []",
        ))
        .unwrap();
        assert!(c.networks[0].peers.is_empty());
    }

    #[test]
    fn no_peers_at_all_is_fine() {
        let text = "[node]\nname = \"a\"\nunderlay_ip = \"192.0.2.1\"\n\
                    [[network]]\nname = \"blue\"\nvni = 1\nsubnet = \"10.0.0.0/8\"\n";
        let c = parse(text).unwrap();
        assert!(c.peers.is_empty());
        assert!(c.networks[0].peers.is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300s").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("300").unwrap_err().contains("no unit"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn toml_syntax_error_keeps_line_and_column() {
        let msg = refused(&good_with("vni = 42", "vni = = 42"), &["line 12", "column"]);
        assert!(msg.contains("vni"), "{msg}");
    }

    #[test]
    fn unknown_key_is_named() {
        refused(
            &good_with("vni = 42", "vnii = 42"),
            &["unknown field `vnii`", "line 12"],
        );
        refused(
            &good_with("name = \"node-a\"", "name = \"node-a\"\nworker = 2"),
            &["unknown field `worker`"],
        );
        refused(
            &GOOD.replace("[[peer]]", "[[peers]]"),
            &["unknown field `peers`"],
        );
    }

    #[test]
    fn wrong_type_is_reported() {
        refused(&good_with("vni = 42", "vni = \"42\""), &["vni", "line 12"]);
    }

    #[test]
    fn missing_required_key() {
        refused(&good_with("vni = 42\n", ""), &["missing field `vni`"]);
        refused(
            "[[network]]\nname = \"x\"\nvni = 1\nsubnet = \"10.0.0.0/8\"\n",
            &["missing field `node`"],
        );
    }

    #[test]
    fn missing_file() {
        let err = Config::load("/nonexistent/node.toml").unwrap_err();
        assert!(err
            .to_string()
            .contains("cannot read /nonexistent/node.toml"));
    }

    #[test]
    fn node_name_empty() {
        refused(
            &good_with("name = \"node-a\"", "name = \"\""),
            &["node.name", "must not be empty"],
        );
    }

    #[test]
    fn node_underlay_ip_bad() {
        for (ip, why) in [
            ("192.0.2", "not an IPv4 address"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("2001:db8::1", "IPv6"),
        ] {
            refused(
                &good_with("\"192.0.2.1\"", &format!("\"{ip}\"")),
                &["node.underlay_ip", why],
            );
        }
    }

    #[test]
    fn vxlan_port_zero_or_too_big() {
        let base = good_with(
            "underlay_ip = \"192.0.2.1\"",
            "underlay_ip = \"192.0.2.1\"\nvxlan_port = 0",
        );
        refused(&base, &["node.vxlan_port", "0 is not a usable port"]);
        let base = good_with(
            "underlay_ip = \"192.0.2.1\"",
            "underlay_ip = \"192.0.2.1\"\nvxlan_port = 70000",
        );
        refused(&base, &["node.vxlan_port", "70000 is out of range"]);
    }

    #[test]
    fn workers_limit() {
        let base = good_with(
            "underlay_ip = \"192.0.2.1\"",
            "underlay_ip = \"192.0.2.1\"\nworkers = 1025",
        );
        refused(&base, &["node.workers", "1025 is out of range", "0..=1024"]);
    }

    #[test]
    fn fdb_settings_bad() {
        let base = good_with(
            "underlay_ip = \"192.0.2.1\"",
            "underlay_ip = \"192.0.2.1\"\nfdb_aging = \"300\"",
        );
        refused(&base, &["node.fdb_aging", "no unit"]);
        let base = good_with(
            "underlay_ip = \"192.0.2.1\"",
            "underlay_ip = \"192.0.2.1\"\nfdb_aging = \"0s\"",
        );
        refused(&base, &["node.fdb_aging", "at least 1s"]);
        let base = good_with(
            "underlay_ip = \"192.0.2.1\"",
            "underlay_ip = \"192.0.2.1\"\nfdb_max_entries = 0",
        );
        refused(&base, &["node.fdb_max_entries", "out of range"]);
    }

    #[test]
    fn underlay_mtu_too_small() {
        let base = good_with(
            "underlay_ip = \"192.0.2.1\"",
            "underlay_ip = \"192.0.2.1\"\nunderlay_mtu = 600",
        );
        refused(&base, &["node.underlay_mtu", "600 is too small", "626"]);
    }

    #[test]
    fn peer_duplicates_and_self() {
        let text = format!("{GOOD}\n[[peer]]\nname = \"node-b\"\nunderlay_ip = \"192.0.2.3\"\n");
        refused(
            &text,
            &[
                "peer \"node-b\" (peer[1]).name",
                "duplicate peer name",
                "peer[0]",
            ],
        );
        let text = format!("{GOOD}\n[[peer]]\nname = \"node-c\"\nunderlay_ip = \"192.0.2.2\"\n");
        refused(
            &text,
            &[
                "peer \"node-c\" (peer[1]).underlay_ip",
                "duplicate underlay_ip 192.0.2.2",
            ],
        );
        refused(
            &good_with("\"192.0.2.2\"", "\"192.0.2.1\""),
            &[
                "peer \"node-b\" (peer[0]).underlay_ip",
                "this node's own underlay_ip",
            ],
        );
        refused(
            &good_with("name = \"node-b\"", "name = \"\""),
            &["peer[0].name", "must not be empty"],
        );
        refused(
            &good_with("name = \"node-b\"", "name = \"node-a\""),
            &["peer \"node-a\" (peer[0]).name", "this node's own name"],
        );
        refused(
            &good_with("\"192.0.2.2\"", "\"192.0.2.300\""),
            &[
                "peer \"node-b\" (peer[0]).underlay_ip",
                "not an IPv4 address",
            ],
        );
    }

    #[test]
    fn no_network() {
        let text = GOOD.split("[[network]]").next().unwrap();
        refused(text, &["node.toml: network: ", "at least one"]);
    }

    #[test]
    fn network_name_empty_and_duplicate() {
        refused(
            &good_with("name = \"blue\"", "name = \"\""),
            &["network[0].name", "must not be empty"],
        );
        refused(
            &with_network("name = \"blue\"\nvni = 43\nsubnet = \"10.0.9.0/24\""),
            &[
                "network \"blue\" (network[1]).name",
                "duplicate network name",
                "network[0]",
            ],
        );
    }

    #[test]
    fn vni_out_of_range() {
        let msg = refused(
            &with_network("name = \"blue2\"\nvni = 16777216\nsubnet = \"10.0.9.0/24\""),
            &[],
        );
        assert_eq!(
            msg,
            "node.toml: network \"blue2\" (network[1]).vni: 16777216 does not fit in 24 bits (max 16777215)"
        );
        refused(
            &good_with("vni = 42", "vni = 0"),
            &[
                "network \"blue\" (network[0]).vni",
                "0 is reserved",
                "convention",
            ],
        );
        refused(
            &good_with("vni = 42", "vni = -1"),
            &["network \"blue\" (network[0]).vni", "negative"],
        );
    }

    #[test]
    fn vni_duplicate() {
        refused(
            &with_network("name = \"red\"\nvni = 42\nsubnet = \"10.0.9.0/24\""),
            &[
                "network \"red\" (network[1]).vni",
                "already used by network \"blue\"",
            ],
        );
    }

    #[test]
    fn same_subnet_in_two_networks_is_fine() {
        let c = parse(&with_network(
            "name = \"red\"\nvni = 43\nsubnet = \"10.0.9.0/24\"",
        ))
        .unwrap();
        assert_eq!(c.networks[0].subnet, c.networks[1].subnet);
    }

    #[test]
    fn subnet_bad() {
        refused(
            &good_with("10.0.9.0/24", "10.0.9.1/24"),
            &[
                "network \"blue\" (network[0]).subnet",
                "host bits set",
                "did you mean \"10.0.9.0/24\"",
            ],
        );
        refused(
            &good_with("10.0.9.0/24", "10.0.9.0"),
            &["network \"blue\" (network[0]).subnet", "no prefix length"],
        );
        refused(
            &good_with("10.0.9.0/24", "10.0.9.0/33"),
            &["network \"blue\" (network[0]).subnet", "not an IPv4 CIDR"],
        );
        refused(
            &good_with("10.0.9.0/24", "banana"),
            &["network \"blue\" (network[0]).subnet"],
        );
    }

    #[test]
    fn network_unknown_peer() {
        let msg = refused(
            &good_with(
                "subnet = \"10.0.9.0/24\"",
                "subnet = \"10.0.9.0/24\"\npeers = [\"node-c\"]",
            ),
            &[],
        );
        assert_eq!(
            msg,
            "node.toml: network \"blue\" (network[0]).peers: unknown peer \"node-c\"; known peers: node-b"
        );
    }

    #[test]
    fn encrypted_network_settings_and_mtu() {
        let c = parse(&good_with(
            "subnet = \"10.0.9.0/24\"",
            "subnet = \"10.0.9.0/24\"\nencrypted = true\nkey_file = \"/k\"\nrekey_interval = \"5s\"",
        ))
        .unwrap();
        let e = c.networks[0].encryption.as_ref().unwrap();
        assert_eq!(e.key_file, PathBuf::from("/k"));
        assert_eq!(e.rekey_interval, Duration::from_secs(5));
        assert_eq!(e.esp_port, 4500);
        // 1500 - 92 = 1408, a multiple of 4, so no frame ever needs ESP padding past it.
        assert_eq!(c.networks[0].effective_mtu(1500), 1408);
        assert_eq!(c.networks[0].effective_mtu(1501), 1408);
        assert_eq!(parse(GOOD).unwrap().networks[0].effective_mtu(1500), 1450);
    }

    #[test]
    fn encryption_settings_are_checked() {
        let enc = |extra: &str| {
            good_with(
                "subnet = \"10.0.9.0/24\"",
                &format!("subnet = \"10.0.9.0/24\"\n{extra}"),
            )
        };
        refused(
            &enc("encrypted = true"),
            &["(network[0]).key_file", "needs key_file"],
        );
        refused(
            &enc("key_file = \"/k\""),
            &["(network[0]).key_file", "not encrypted"],
        );
        refused(
            &enc("encrypted = true\nkey_file = \"/k\"\nrekey_interval = \"0s\""),
            &["rekey_interval", "at least 1s"],
        );
        refused(
            &enc("encrypted = true\nkey_file = \"/k\"\nesp_port = 0"),
            &["esp_port"],
        );
        let big = parse(&enc("encrypted = true\nkey_file = \"/k\"\nmtu = 1450")).unwrap();
        let msg = big.validate_mtus(1500).unwrap_err().to_string();
        assert!(
            msg.contains("(network[0]).mtu") && msg.contains("ESP+VXLAN") && msg.contains("1408"),
            "{msg}"
        );
        let two = format!(
            "{}\n[[network]]\nname = \"red\"\nvni = {}\nsubnet = \"10.0.8.0/24\"\nencrypted = true\nkey_file = \"/k2\"\n",
            enc("encrypted = true\nkey_file = \"/k\"\nunderlay = 1").replace("\nunderlay = 1", ""),
            42 + 4096
        );
        refused(&two, &["modulo 4096"]);
    }

    #[test]
    fn all_problems_reported_at_once() {
        let text = GOOD
            .replace("vni = 42", "vni = 0")
            .replace("10.0.9.0/24", "10.0.9.1/24");
        let msg = refused(&text, &[".vni: ", ".subnet: "]);
        assert_eq!(msg.lines().count(), 2, "{msg}");
    }

    #[test]
    fn mtu_checks() {
        let text = good_with(
            "subnet = \"10.0.9.0/24\"",
            "subnet = \"10.0.9.0/24\"\nmtu = 1450",
        );
        let c = parse(&text).unwrap();
        assert!(c.validate_mtus(1500).is_ok());
        let msg = c.validate_mtus(1400).unwrap_err().to_string();
        assert!(
            msg.starts_with("node.toml: network \"blue\" (network[0]).mtu: 1450 does not fit"),
            "{msg}"
        );
        assert!(msg.contains("at most 1350"), "{msg}");

        refused(
            &good_with(
                "subnet = \"10.0.9.0/24\"",
                "subnet = \"10.0.9.0/24\"\nmtu = 500",
            ),
            &[
                "network \"blue\" (network[0]).mtu",
                "500 is out of range",
                "576",
            ],
        );

        // Derived MTU below the minimum: the detected underlay is too small.
        let c = parse(GOOD).unwrap();
        let msg = c.validate_mtus(600).unwrap_err().to_string();
        assert!(
            msg.contains("(network[0]).mtu: the derived MTU 550"),
            "{msg}"
        );

        // underlay_mtu in the file: checked at load.
        let text = good_with(
            "underlay_ip = \"192.0.2.1\"",
            "underlay_ip = \"192.0.2.1\"\nunderlay_mtu = 1400",
        )
        .replace(
            "subnet = \"10.0.9.0/24\"",
            "subnet = \"10.0.9.0/24\"\nmtu = 1450",
        );
        refused(
            &text,
            &["(network[0]).mtu: 1450 does not fit", "node.underlay_mtu"],
        );
    }

    #[test]
    fn example_files_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for f in ["node-a.toml", "node-b.toml", "reference.toml"] {
            let c = Config::load(dir.join(f)).unwrap_or_else(|e| panic!("{e}"));
            assert!(c.validate_mtus(1500).is_ok(), "{f}");
        }
        let a = Config::load(dir.join("node-a.toml")).unwrap();
        let b = Config::load(dir.join("node-b.toml")).unwrap();
        assert_eq!(a.node.underlay_ip, b.peers[0].underlay_ip);
        assert_eq!(b.node.underlay_ip, a.peers[0].underlay_ip);
        let shape = |c: &Config| -> Vec<(String, u32, Ipv4Net)> {
            c.networks
                .iter()
                .map(|n| (n.name.clone(), n.vni.get(), n.subnet))
                .collect()
        };
        assert_eq!(shape(&a), shape(&b));
        assert_eq!(a.networks.len(), 2);
    }
}
