//! The control API spoken over the Unix socket between `vswitchctl` and `vswitchd`.
//!
//! Framing: one JSON object per line in each direction; the client sends one `Request`, the
//! daemon answers with one `Response` and closes. The `result` payloads are the types below;
//! they are also what `vswitchctl show ... --json` prints, so fields are only ever added.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Counter families are defined once, where they are counted, and embedded here: their field
/// names are their JSON names (crate::switch::counters).
pub use crate::dataplane::counters::{
    LatencySummary as LatencyStats, OffloadCounters as OffloadStats, WorkerCounters,
};
pub use crate::switch::counters::{DnsCounters as DnsStats, NetworkEvents};

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    AttachNamespace {
        network: String,
        netns: String,
        /// ADDR/PREFIX, e.g. 10.0.9.2/24. On a cluster network it may be a bare ADDR (the
        /// prefix is the network's) or absent (the next free address is allocated).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        mac: Option<String>,
        ifname: Option<String>,
        name: Option<String>,
        /// Let the container send from any MAC and address (a router, a VPN endpoint). By
        /// default a container may send only as itself (port security).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        no_port_security: bool,
        /// Who made this port and for what, opaque to the daemon (the CNI plugin gives
        /// `cni:NETCONF:CONTAINERID:IFNAME`): shown in `show ports`, unique among the ports,
        /// and the key of `detach-attachment`, which needs no namespace (it may be gone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachment: Option<String>,
        /// The port's own limits, over its network's and the daemon's (crate::switch::limits).
        #[serde(default, skip_serializing_if = "is_default")]
        limits: crate::switch::LimitSettings,
    },
    /// Removes the port made with `attachment` (server/attachments.rs); answers the PortInfo
    /// of the removed port, or `null` when no port carries it (already gone: not an error, so
    /// that a runtime may ask twice).
    DetachAttachment {
        attachment: String,
    },
    /// Every port made with an `attachment`, as the control actor holds them
    /// (`AttachmentInfo`): also those whose namespace is gone, which `show ports` no longer
    /// lists but whose address stays taken until they are detached (what CNI GC is for).
    Attachments,
    DetachNamespace {
        network: String,
        netns: String,
        ifname: Option<String>,
    },
    AttachInterface {
        network: String,
        interface: String,
        /// ADDR or ADDR/PREFIX of the station behind the interface, for proxy-ARP.
        ip: Option<String>,
        mac: Option<String>,
        /// As for AttachNamespace.
        #[serde(default, skip_serializing_if = "is_default")]
        limits: crate::switch::LimitSettings,
    },
    DetachInterface {
        network: String,
        interface: String,
    },
    /// Re-read node.toml and apply what changed (crate::control::reload).
    Reload,
    /// Stop the daemon, as SIGTERM does; with `keep_ports`, every container's interface stays
    /// (with its MAC, addresses and routes) for the next vswitchd to re-adopt from state_dir.
    Shutdown {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        keep_ports: bool,
    },
    /// What the switch would do with a frame; changes nothing (see crate::switch::trace).
    Trace(TraceRequest),
    /// Make a network for the whole cluster (needs `[cluster]`).
    NetworkCreate {
        name: String,
        subnet: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vni: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        encrypted: bool,
    },
    /// The cluster's networks, with the store's state (`NetworkList`).
    NetworkLs,
    /// One cluster network with every endpoint on every host (`ClusterNetworkInfo`).
    NetworkInspect {
        name: String,
    },
    /// Remove a cluster network; refused while it has endpoints.
    NetworkRm {
        name: String,
    },
    /// This node's view of the cluster store (`ClusterStatusInfo`).
    ClusterStatus,
    /// A call of the Docker plugin (crate::docker); only vswitchd's own front-end sends these.
    Docker {
        call: crate::docker::calls::DockerCall,
    },
    /// Check what usually breaks an overlay and say what to do (`DoctorReport`): peers
    /// probed on the VXLAN and ESP ports, path MTU, networks, clocks, names, the cluster store,
    /// offloads (crate::control::doctor).
    Doctor {
        /// How long a peer may take to answer, in ms (default 3000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
    Show {
        what: ShowWhat,
        /// With `sa`: include key material (for `--wireshark`). Only ever sent over the
        /// root-only control socket; never logged.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        secrets: bool,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ShowWhat {
    Networks,
    Ports,
    Fdb,
    Neigh,
    Peers,
    Stats,
    /// Security associations of encrypted networks.
    Sa,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl Response {
    pub fn ok(result: impl Serialize) -> Response {
        Response {
            ok: true,
            error: None,
            result: Some(serde_json::to_value(result).unwrap_or(serde_json::Value::Null)),
        }
    }

    pub fn err(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            result: None,
        }
    }
}

/// What attach-namespace / attach-interface made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortInfo {
    pub id: u32,
    /// Endpoint name (`--name`), or a generated one.
    pub name: String,
    /// "tap" or "af_packet".
    pub kind: String,
    pub network: String,
    pub vni: u32,
    /// Interface name as the container (or host) sees it.
    pub ifname: String,
    /// Namespace the interface lives in (`--netns`), absent for attach-interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// ADDR/PREFIX
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub mtu: u32,
    pub counters: Counters,
    /// Queues of the device, one per worker (TAP: IFF_MULTI_QUEUE; AF_PACKET: a fanout group).
    #[serde(default)]
    pub queues: u32,
    /// The `attachment` given at attach (e.g. by the CNI plugin), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
    /// The container's resolver: set on attach-namespace (crate::switch::dns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<PortDns>,
}

/// How a container resolves names: its network's DNS address and search domain, and the
/// resolv.conf the attach wrote for it, if it wrote one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortDns {
    pub nameserver: String,
    pub search: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<String>,
}

/// One port made with an `attachment` (`Request::Attachments`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttachmentInfo {
    pub attachment: String,
    /// The port id (`show ports`).
    pub port: u32,
    /// Endpoint name.
    pub name: String,
    pub network: String,
    /// The endpoint's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames dropped, by reason (snake_case reason names, see `DropReason`).
    pub drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkInfo {
    pub name: String,
    pub vni: u32,
    pub subnet: String,
    pub mtu: u32,
    pub peers: Vec<String>,
    pub ports: u32,
    pub fdb_entries: u32,
    pub neigh_entries: u32,
    /// The switch's own address in the network: its DNS server (and Docker's gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FdbEntryInfo {
    pub network: String,
    pub vni: u32,
    pub mac: String,
    /// "port" (a local port) or "vtep" (a remote host).
    pub kind: String,
    /// Port name for "port", underlay IP for "vtep".
    pub location: String,
    pub age_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NeighEntryInfo {
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    pub ip: String,
    pub mac: String,
    /// Where the switch learned it: "attach", "arp", "decap".
    pub source: String,
    pub age_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerInfo {
    pub name: String,
    pub underlay_ip: String,
    pub networks: Vec<String>,
    pub counters: Counters,
    /// Seconds since the last valid VXLAN packet from this peer; absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_secs: Option<u64>,
    /// Cluster mode: "up" (registered in etcd), "down" (its registration expired) or
    /// "static" (from node.toml). Absent without `[cluster]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Down: seconds since this daemon saw its registration go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_for_secs: Option<u64>,
    /// Up: seconds since it last renewed its lease in etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_age_secs: Option<u64>,
    /// What the background prober found on the peer's VXLAN port (crate::control::probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeInfo>,
    /// The same on its ESP port, when it shares an encrypted network with this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esp_probe: Option<ProbeInfo>,
}

/// Whether a peer's vswitchd answers probes on one port, and how fast.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeInfo {
    /// The UDP port probed (VXLAN or ESP).
    pub port: u16,
    /// Answered within the last few seconds.
    pub reachable: bool,
    /// Round trip time of the last answered probe, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Seconds since the last answer; absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_answer_secs: Option<u64>,
    /// Seconds since probes went unanswered; absent while answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_for_secs: Option<u64>,
}

/// What `vswitchctl doctor` found. `ok` when there is no finding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DoctorReport {
    pub ok: bool,
    pub node: String,
    pub findings: Vec<Finding>,
    /// What was checked and found well, one line each.
    pub passed: Vec<String>,
    pub peers: Vec<DoctorPeer>,
}

/// One problem: what is wrong and what to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    /// reachability, esp-reachability, mtu, network, clock, name, cluster, offloads.
    pub check: String,
    /// What it is about: `peer node-b (192.0.2.2)`, `network blue`, `cluster store`, ...
    pub subject: String,
    pub problem: String,
    pub fix: String,
}

/// What doctor measured for one peer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DoctorPeer {
    pub name: String,
    pub underlay_ip: String,
    /// The name the peer's vswitchd gave in its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers_as: Option<String>,
    /// The VXLAN port, probed when a plaintext network (or no network) is carried to the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<DoctorPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esp: Option<DoctorPath>,
    /// The largest IPv4 packet the networks to this peer need, and the largest that arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu_needed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu_passed: Option<u32>,
    /// The peer's clock minus ours, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DoctorPath {
    pub port: u16,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

/// Whether this node reaches the cluster store (`cluster-status`, and under `show peers` and
/// `network ls`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterStatusInfo {
    /// This node's name in the cluster.
    pub node: String,
    /// The etcd client URLs in node.toml.
    pub endpoints: Vec<String>,
    pub reachable: bool,
    /// Seconds since it stopped answering (absent when reachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_for_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The store revision of this node's view.
    pub revision: i64,
    pub nodes_up: u32,
    pub nodes_down: u32,
}

/// One endpoint of a cluster network, wherever it runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterEndpointInfo {
    pub name: String,
    pub ip: String,
    pub mac: String,
    /// The node it is attached on.
    pub host: String,
}

/// A network made with `network create` (`network ls` / `network inspect`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterNetworkInfo {
    pub name: String,
    pub vni: u32,
    pub subnet: String,
    /// As created; absent: the largest the hosts' underlay allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    pub encrypted: bool,
    /// Whether this host carries it (see the daemon's log when not).
    pub carried_here: bool,
    pub endpoints: Vec<ClusterEndpointInfo>,
    /// The switch's own address in the network: its DNS server (and Docker's gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

/// `network ls`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkList {
    pub store: ClusterStatusInfo,
    pub networks: Vec<ClusterNetworkInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetworkStats {
    pub name: String,
    pub vni: u32,
    pub counters: Counters,
    /// flooded, proxy_arp_replies, fdb_learned, ... as fields of this object.
    #[serde(flatten)]
    pub events: NetworkEvents,
    /// DNS queries to the network's own address, by what became of them.
    #[serde(default)]
    pub dns: DnsStats,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UnderlayStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Datagrams dropped before they could be tied to a network (bad header, unknown VNI, not
    /// from a peer...), by reason.
    pub drops: BTreeMap<String, u64>,
    /// Send errors from the kernel (e.g. no route, message too long), by errno name.
    pub tx_errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub uptime_secs: u64,
    pub ports: Vec<PortInfo>,
    pub networks: Vec<NetworkStats>,
    pub underlay: UnderlayStats,
    /// Time frames spend inside vswitchd (read to sent), per worker.
    #[serde(default)]
    pub latency: Vec<LatencyStats>,
    /// What the offloads did: all zero when they are off or the kernel lacks them.
    #[serde(default)]
    pub offload: OffloadStats,
    /// One entry per worker thread.
    #[serde(default)]
    pub workers: Vec<WorkerStats>,
    /// The DNS forwarder (crate::control::dns), filled in by the control actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<crate::control::dns::ForwarderStats>,
}

/// What one worker thread did: how the load spreads, and how its table copy keeps in step.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerStats {
    pub worker: u32,
    /// The core it is pinned to, if pinning worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// port_frames, underlay_datagrams, updates_sent, ... as fields of this object.
    #[serde(flatten)]
    pub counters: WorkerCounters,
}

/// One ESP security association (`show sa`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SaInfo {
    pub network: String,
    pub vni: u32,
    /// The peer's name.
    pub peer: String,
    /// "out" (we encrypt with it) or "in" (we decrypt with it).
    pub direction: String,
    /// Outer source and destination of the packets it protects.
    pub src: String,
    pub dst: String,
    pub spi: u32,
    /// Out: the last sequence number used. In: the highest accepted.
    pub seq: u64,
    pub age_secs: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Packets refused under this SA (in: replay, bad ICV, ...; see `show stats` for reasons).
    pub drops: u64,
    /// AES key followed by the 4-byte salt, hex: only with `secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `vswitchctl trace`: a frame given as hex, or made from addresses, entering network
/// `network` at a local port or from a peer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TraceRequest {
    pub network: String,
    /// A port id or name (`show ports`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_port: Option<String>,
    /// The underlay address of the peer the frame comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_vtep: Option<String>,
    /// The whole Ethernet frame, as hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<String>,
    /// icmp (default), tcp or udp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<String>,
}
