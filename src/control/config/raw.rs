//! What serde sees of node.toml. Numbers are taken as i64 (TOML's integer type) and addresses
//! as strings so that range and format problems get our messages, which name the key, rather
//! than serde's (see `validate`).

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub node: RawNode,
    #[serde(default)]
    pub peer: Vec<RawPeer>,
    #[serde(default)]
    pub network: Vec<RawNetwork>,
    pub cluster: Option<RawCluster>,
    pub docker: Option<RawDocker>,
    pub dns: Option<RawDns>,
    pub port_limits: Option<RawLimits>,
    pub metrics: Option<RawMetrics>,
}

/// `[port_limits]`, or a network's `port_limits` (crate::switch::limits).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_macs: Option<i64>,
    pub bum_rate: Option<i64>,
    pub bum_burst: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pub upstreams: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub name: String,
    pub underlay_ip: String,
    pub vxlan_port: Option<i64>,
    pub control_socket: Option<PathBuf>,
    pub workers: Option<i64>,
    pub underlay_mtu: Option<i64>,
    pub fdb_max_entries: Option<i64>,
    pub fdb_aging: Option<String>,
    pub state_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeer {
    pub name: String,
    pub underlay_ip: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub name: String,
    pub vni: i64,
    pub subnet: String,
    pub mtu: Option<i64>,
    pub peers: Option<Vec<String>>,
    pub encrypted: Option<bool>,
    pub key_file: Option<PathBuf>,
    pub rekey_interval: Option<String>,
    pub esp_port: Option<i64>,
    pub port_limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub etcd_endpoints: Vec<String>,
    pub lease_ttl: Option<String>,
    pub address_grace: Option<String>,
    pub prefix: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDocker {
    pub socket: Option<PathBuf>,
    pub docker_socket: Option<PathBuf>,
    pub name_timeout: Option<String>,
}
