//! Validation of the parsed file: every value checked, every problem collected with the key it
//! belongs to (`Problems`), defaults filled in.

use super::raw::{
    RawCluster, RawDns, RawDocker, RawLimits, RawMetrics, RawNetwork, RawNode, RawPeer,
};
use super::values::{
    check_mtu, check_network_name, parse_duration, parse_subnet, parse_vtep_ip, vni_from,
};
use super::*;
use std::collections::HashMap;

#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}

fn peer_key(i: usize, name: &str, field: &str) -> String {
    if name.trim().is_empty() {
        format!("peer[{i}].{field}")
    } else {
        format!("peer {name:?} (peer[{i}]).{field}")
    }
}

pub(super) fn network_key(i: usize, name: &str, field: &str) -> String {
    if name.trim().is_empty() {
        format!("network[{i}].{field}")
    } else {
        format!("network {name:?} (network[{i}]).{field}")
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

pub(super) fn validate_node(raw: RawNode, p: &mut Problems) -> NodeConfig {
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
                "the number of workers (0: half the cores)",
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

pub(super) fn validate_peers(
    raw: Vec<RawPeer>,
    node: &NodeConfig,
    p: &mut Problems,
) -> Vec<PeerConfig> {
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

pub(super) fn validate_networks(
    raw: Vec<RawNetwork>,
    peers: &[PeerConfig],
    cluster: bool,
    p: &mut Problems,
) -> Vec<NetworkConfig> {
    if raw.is_empty() && !cluster {
        p.add(
            "network",
            "no [[network]] is defined; at least one is needed, or a [cluster] to take them from \
             (see config/reference.toml)",
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
        if let Err(e) = check_network_name(&r.name) {
            p.add(key("name"), e);
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

        let vni = match vni_from(r.vni) {
            Err(e) => {
                p.add(key("vni"), e);
                None
            }
            Ok(vni) => {
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
                Some(vni)
            }
        };

        let subnet = parse_subnet(&r.subnet).unwrap_or_else(|e| {
            p.add(key("subnet"), e);
            Ipv4Net::default()
        });

        let mtu = r
            .mtu
            .and_then(|v| check_mtu(v).map_err(|e| p.add(key("mtu"), e)).ok());

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
        let port_limits = r
            .port_limits
            .take()
            .map(|l| validate_limits(l, &|f| key(&format!("port_limits.{f}")), p))
            .unwrap_or_default();

        out.push(NetworkConfig {
            name: r.name,
            vni: vni.unwrap_or(Vni::new(1).expect("1 fits in 24 bits")),
            subnet,
            mtu,
            peers: peer_names,
            encryption,
            port_limits,
        });
    }
    encryption_conflicts(&out, p);
    out
}

/// The largest per-port flood rate or burst accepted (frames a second): far above what a
/// worker forwards, so larger is more likely a typo than a plan.
pub const MAX_BUM_RATE: i64 = 100_000_000;

/// `[port_limits]` or a network's `port_limits`; `key(field)` names the field in messages.
pub(super) fn validate_limits(
    raw: RawLimits,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> LimitSettings {
    let field = |v: Option<i64>, name: &str, lo: i64, hi: i64, what: &str, p: &mut Problems| {
        v.and_then(|v| int_in(v, lo, hi, &key(name), what, p))
    };
    LimitSettings {
        max_macs: field(
            raw.max_macs,
            "max_macs",
            0,
            MAX_FDB_ENTRIES as i64,
            "the MACs one port may be learned with (0: no cap)",
            p,
        ),
        bum_rate: field(
            raw.bum_rate,
            "bum_rate",
            0,
            MAX_BUM_RATE,
            "broadcast/multicast/unknown-unicast frames a second one port may flood (0: no cap)",
            p,
        ),
        bum_burst: field(
            raw.bum_burst,
            "bum_burst",
            1,
            MAX_BUM_RATE,
            "the frames a quiet port may flood at once",
            p,
        ),
    }
}

pub(super) fn validate_encryption(
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

pub(super) fn validate_cluster(raw: RawCluster, p: &mut Problems) -> ClusterConfig {
    if raw.etcd_endpoints.is_empty() {
        p.add(
            "cluster.etcd_endpoints",
            "is empty; list at least one etcd member, e.g. [\"http://192.0.2.100:2379\"]",
        );
    }
    let mut https = false;
    for (i, e) in raw.etcd_endpoints.iter().enumerate() {
        let key = format!("cluster.etcd_endpoints[{i}]");
        match e.split_once("://") {
            Some(("https", rest)) if !rest.is_empty() => https = true,
            Some(("http", rest)) if !rest.is_empty() => {}
            _ => p.add(
                key,
                format!(
                    "{e:?} is not an etcd client URL; write http://HOST:PORT or https://HOST:PORT"
                ),
            ),
        }
    }
    let lease_ttl = match raw.lease_ttl {
        None => DEFAULT_LEASE_TTL,
        Some(s) => match parse_duration(&s) {
            Ok(d) if (MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&d) => d,
            Ok(_) => {
                p.add(
                    "cluster.lease_ttl",
                    format!(
                        "{s:?} is out of range; it must be between {}s and {}s",
                        MIN_LEASE_TTL.as_secs(),
                        MAX_LEASE_TTL.as_secs()
                    ),
                );
                DEFAULT_LEASE_TTL
            }
            Err(m) => {
                p.add("cluster.lease_ttl", m);
                DEFAULT_LEASE_TTL
            }
        },
    };
    let grace_floor = lease_ttl * 2;
    let address_grace = match raw.address_grace {
        None => DEFAULT_ADDRESS_GRACE.max(grace_floor),
        Some(s) => match parse_duration(&s) {
            Ok(d) if d >= grace_floor && d <= MAX_ADDRESS_GRACE => d,
            Ok(_) => {
                p.add(
                    "cluster.address_grace",
                    format!(
                        "{s:?} is out of range; it must be at least twice cluster.lease_ttl ({}s) \
                         and at most 7 days, so that an address is never reused while its holder \
                         could still be alive",
                        grace_floor.as_secs()
                    ),
                );
                DEFAULT_ADDRESS_GRACE.max(grace_floor)
            }
            Err(m) => {
                p.add("cluster.address_grace", m);
                DEFAULT_ADDRESS_GRACE.max(grace_floor)
            }
        },
    };
    let prefix = raw
        .prefix
        .unwrap_or_else(|| DEFAULT_CLUSTER_PREFIX.to_string());
    if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
        p.add(
            "cluster.prefix",
            format!("{prefix:?} must start with '/', name something, and not end with '/' (e.g. \"/vswitch\")"),
        );
    }
    let tls = match (raw.ca_file, raw.cert_file, raw.key_file) {
        (None, None, None) => {
            if https {
                p.add(
                    "cluster.ca_file",
                    "is needed for https:// endpoints: the CA that signed the etcd servers' certificates",
                );
            }
            None
        }
        (ca, cert, key) => {
            if !https {
                p.add(
                    "cluster.ca_file",
                    "TLS files are set but no endpoint is https://; write the endpoints as https://",
                );
            }
            let client = match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                (Some(_), None) => {
                    p.add("cluster.key_file", "is needed with cluster.cert_file");
                    None
                }
                (None, Some(_)) => {
                    p.add("cluster.cert_file", "is needed with cluster.key_file");
                    None
                }
            };
            match ca {
                Some(ca_file) => Some(ClusterTls { ca_file, client }),
                None => {
                    p.add(
                        "cluster.ca_file",
                        "is needed with TLS: the CA that signed the etcd servers' certificates",
                    );
                    None
                }
            }
        }
    };
    ClusterConfig {
        etcd_endpoints: raw.etcd_endpoints,
        lease_ttl,
        address_grace,
        prefix,
        tls,
    }
}

pub(super) fn validate_docker(raw: RawDocker, p: &mut Problems) -> DockerConfig {
    let mut path = |key: &str, v: Option<PathBuf>, default: &str| {
        let v = v.unwrap_or_else(|| PathBuf::from(default));
        if !v.is_absolute() || v.file_name().is_none() {
            p.add(
                format!("docker.{key}"),
                format!(
                    "{:?} must be an absolute path to a socket file",
                    v.display().to_string()
                ),
            );
        }
        v
    };
    let socket = path("socket", raw.socket, DEFAULT_DOCKER_PLUGIN_SOCKET);
    let docker_socket = path(
        "docker_socket",
        raw.docker_socket,
        DEFAULT_DOCKER_API_SOCKET,
    );
    if socket.extension().and_then(|e| e.to_str()) != Some("sock") {
        p.add(
            "docker.socket",
            format!(
                "{:?} must end in .sock: dockerd takes the file name less .sock as the driver name \
                 (vswitch.sock serves `docker network create -d vswitch`)",
                socket.display().to_string()
            ),
        );
    }
    let name_timeout = match raw.name_timeout {
        None => DEFAULT_DOCKER_NAME_TIMEOUT,
        Some(s) => match parse_duration(&s) {
            Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(300) => d,
            Ok(_) => {
                p.add(
                    "docker.name_timeout",
                    format!("{s:?} must be between 1s and 300s"),
                );
                DEFAULT_DOCKER_NAME_TIMEOUT
            }
            Err(m) => {
                p.add("docker.name_timeout", m);
                DEFAULT_DOCKER_NAME_TIMEOUT
            }
        },
    };
    DockerConfig {
        socket,
        docker_socket,
        name_timeout,
    }
}

/// `[dns]`: `upstreams` are addresses, `IP` (port 53) or `IP:PORT`.
pub(super) fn validate_dns(raw: RawDns, p: &mut Problems) -> DnsConfig {
    let upstreams = raw.upstreams.map(|list| {
        if list.is_empty() {
            p.add(
                "dns.upstreams",
                "is empty; leave it out to use the host's /etc/resolv.conf",
            );
        }
        list.iter()
            .enumerate()
            .filter_map(|(i, s)| match parse_upstream(s) {
                Some(a) => Some(a),
                None => {
                    p.add(
                        format!("dns.upstreams[{i}]"),
                        format!("{s:?} is not an address: give IP or IP:PORT, e.g. \"192.0.2.53\""),
                    );
                    None
                }
            })
            .collect()
    });
    DnsConfig { upstreams }
}

/// `IP` (port 53) or `IP:PORT`.
pub fn parse_upstream(s: &str) -> Option<std::net::SocketAddr> {
    s.parse::<std::net::SocketAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()))
}

/// `[metrics] listen`: `IP:PORT` (`[IPv6]:PORT`) with a port other than 0. Host names are
/// refused: the daemon binds this address at start and should not depend on a resolver.
pub(super) fn validate_metrics(raw: RawMetrics, p: &mut Problems) -> Option<MetricsConfig> {
    let hint = "give IP:PORT, e.g. \"127.0.0.1:9474\" (this host only) or \"0.0.0.0:9474\" \
                (every address)";
    let s = raw.listen.trim();
    match s.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            p.add(
                "metrics.listen",
                format!("{s:?} has port 0: Prometheus needs a fixed port to scrape; {hint}"),
            );
            None
        }
        Ok(listen) => Some(MetricsConfig { listen }),
        Err(_) => {
            let why = if s.is_empty() {
                "is empty".to_string()
            } else if s.parse::<std::net::IpAddr>().is_ok() {
                format!("{s:?} has no port")
            } else if s.starts_with(':') {
                format!("{s:?} has no address")
            } else {
                format!("{s:?} is not an IP address and port")
            };
            p.add("metrics.listen", format!("{why}: {hint}"));
            None
        }
    }
}
