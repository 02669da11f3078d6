//! Probing peers: is each peer's vswitchd reachable on the VXLAN port (and the ESP port when
//! it shares an encrypted network with us), and how long does the round trip take?
//!
//! A probe (crate::wire::probe) is a UDP datagram from a socket of our own on the underlay
//! address to the peer's port; the peer's worker answers it (the core decides: `Action::Probe`)
//! to the socket's port. So a probe takes exactly the path VXLAN takes to the peer: a firewall
//! that drops UDP 4789 there drops the probe too. Probes carry don't-fragment and ignore the
//! kernel's cached path MTU (`IP_PMTUDISC_PROBE`), so a probe of N bytes that is answered
//! proves N-byte packets cross the path.
//!
//! `Prober::start` runs a thread that probes every peer every `INTERVAL` and keeps the last
//! result per path for `show peers`; `round` is the one-shot form `vswitchctl doctor` uses on
//! its own socket.
//!
//! Thread-safety: control threads only (the prober's own thread, the actor reading results).

use crate::switch::{Published, Topology};
use crate::wire::probe::{self, Reply};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the background prober probes every peer.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// A path is reachable while its last answer is younger than this.
pub const FRESH: Duration = Duration::from_secs(5);

/// Where this host probes from and which ports peers listen on.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub node: String,
    pub local: Ipv4Addr,
    pub vxlan_port: u16,
    /// The ESP-in-UDP port, when this host carries encrypted networks.
    pub esp_port: Option<u16>,
    /// TAP offloads (TSO/USO) on.
    pub tap_offloads: bool,
    /// UDP GSO/GRO on the underlay sockets.
    pub underlay_offloads: bool,
    /// Whether the workers hand TCP super-frames to the host's tunnel device (shared: the
    /// prober turns it off when the host does not forward what the device takes).
    pub tunnel: Arc<Mutex<TunnelStatus>>,
}

/// Tunnel GSO on this host (crate::io::tunnel), for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelStatus {
    /// Never on: why (the kernel, the host's rp_filter, VSWITCH_TUNNEL_GSO=off).
    Unavailable(String),
    /// The device is there, and not yet found to work: no peer has answered a probe sent
    /// through it, nor (where no peer answers probes: kernel VXLAN) was one seen leaving the
    /// host. Super-frames are segmented until then.
    Unverified,
    On,
    /// Turned off because peers answered the socket's probes and not the device's.
    NotForwarded,
}

/// One probe to send.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub to: SocketAddrV4,
    /// UDP payload bytes.
    pub size: usize,
    pub first_network: u16,
}

/// What became of one probe.
#[derive(Debug, Clone)]
pub enum Outcome {
    Answered {
        rtt: Duration,
        /// Our wall clock halfway through the round trip (to compare with the peer's).
        midpoint: SystemTime,
        reply: Reply,
    },
    /// The kernel refused to send it (EMSGSIZE: larger than the route's MTU here).
    NotSent(io::ErrorKind, Option<i32>),
    NoAnswer,
}

impl Outcome {
    pub fn answered(&self) -> bool {
        matches!(self, Outcome::Answered { .. })
    }
}

static TOKENS: AtomicU64 = AtomicU64::new(0);

fn next_token() -> u64 {
    if TOKENS.load(Ordering::Relaxed) == 0 {
        // Different per start, so a late answer to a previous daemon's probe never matches.
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        // Bits 31..24 fixed: the bytes where an ARP frame's EtherType sits in a VXLAN packet
        // (udp[28:2], a capture filter the tests use) never read 0x0806 in a probe.
        let seed = ((seed << 16) & !0xff00_0000) | 0x5600_0000;
        let _ = TOKENS.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    TOKENS.fetch_add(1, Ordering::Relaxed)
}

/// A UDP socket on `local` (any port) that sends with don't-fragment, ignoring the cached path
/// MTU, so that probes measure the path.
pub fn socket(local: Ipv4Addr) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddrV4::new(local, 0))?;
    let v: libc::c_int = libc::IP_PMTUDISC_PROBE;
    // SAFETY: setsockopt with a c_int that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s)
}

/// Sends `probes` from `sock`, each again every `resend` while unanswered, and collects
/// answers until all are answered or `wait` has passed. Results are in the order of `probes`.
pub fn round(sock: &UdpSocket, probes: &[Probe], wait: Duration, resend: Duration) -> Vec<Outcome> {
    round_via(sock, probes, wait, resend, |bytes, p| {
        sock.send_to(bytes, p.to).map(|_| ())
    })
}

/// `round`, each probe sent by `send` (the socket's own address and port as its source, so
/// that the answer comes back to `sock`).
fn round_via(
    sock: &UdpSocket,
    probes: &[Probe],
    wait: Duration,
    resend: Duration,
    send: impl Fn(&[u8], &Probe) -> io::Result<()>,
) -> Vec<Outcome> {
    let mut out: Vec<Outcome> = vec![Outcome::NoAnswer; probes.len()];
    let mut sent: HashMap<u64, (usize, Instant, SystemTime)> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    let mut next_send = start;
    loop {
        let now = Instant::now();
        if now >= next_send {
            for (k, p) in probes.iter().enumerate() {
                if out[k].answered() || matches!(out[k], Outcome::NotSent(..)) {
                    continue;
                }
                let token = next_token();
                let n = probe::emit_request(&mut buf, token, p.first_network, p.size);
                // Stamped before sending: on a busy host the answer may be in before
                // send_to returns.
                let (t0, w0) = (Instant::now(), SystemTime::now());
                match send(&buf[..n], p) {
                    Ok(()) => {
                        sent.insert(token, (k, t0, w0));
                    }
                    Err(e) => out[k] = Outcome::NotSent(e.kind(), e.raw_os_error()),
                }
            }
            next_send = now + resend;
        }
        let pending = out.iter().any(|o| matches!(o, Outcome::NoAnswer));
        let elapsed = now.duration_since(start);
        if !pending || elapsed >= wait {
            return out;
        }
        let until = (start + wait).min(next_send);
        let left = until.saturating_duration_since(Instant::now());
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => {
                let at = Instant::now();
                let Some(reply) = Reply::parse(&buf[..n]) else {
                    continue;
                };
                let Some(&(k, t0, w0)) = sent.get(&reply.token) else {
                    continue;
                };
                // Only the peer probed answers for it (the address, and the port probed).
                if from != probes[k].to || out[k].answered() {
                    continue;
                }
                let rtt = at.duration_since(t0);
                out[k] = Outcome::Answered {
                    rtt,
                    midpoint: w0 + rtt / 2,
                    reply,
                };
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The last result of the background prober for one path (peer and port).
#[derive(Debug, Clone, Default)]
pub struct PathStatus {
    pub last_answer: Option<Instant>,
    pub rtt: Option<Duration>,
    /// When the first probe went unanswered since the last answer (or since probing began).
    pub silent_since: Option<Instant>,
}

impl PathStatus {
    pub fn reachable(&self) -> bool {
        self.last_answer.is_some_and(|t| t.elapsed() < FRESH)
    }
}

/// The peers a host probes and the ports their traffic uses: (peer address, port, is ESP).
/// The VXLAN port when a plaintext network is carried to the peer (or none is), the ESP port
/// when an encrypted one is — so that nothing but ESP goes to a peer whose networks with
/// this host are all encrypted.
pub fn targets(topo: &Topology, cfg: &ProbeConfig) -> Vec<(Ipv4Addr, u16, bool)> {
    let mut t = Vec::new();
    for p in topo.peers() {
        let carried = |encrypted: bool| {
            topo.networks()
                .any(|n| n.spec.encrypted == encrypted && n.vteps().contains(&p.addr))
        };
        let esp = cfg.esp_port.filter(|_| carried(true));
        if carried(false) || esp.is_none() {
            t.push((p.addr.0, cfg.vxlan_port, false));
        }
        if let Some(port) = esp {
            t.push((p.addr.0, port, true));
        }
    }
    t
}

/// The background prober: its results by path, and what it was configured with.
#[derive(Clone)]
pub struct Prober {
    pub cfg: ProbeConfig,
    results: Arc<Mutex<HashMap<(Ipv4Addr, u16), PathStatus>>>,
}

/// The path through the host's tunnel device (crate::io::tunnel), which the workers hand
/// whole TCP super-frames to and the kernel forwards: checked by probing peers through it
/// too, or, when no peer answers probes (kernel VXLAN peers), by watching the probes written
/// to it leave the host (crate::io::egress). The workers use it once a check passed (so a
/// host that never forwards loses nothing), and stop for good after two rounds in a row in
/// which peers answer the socket's probes and not the device's, or the device's never leave
/// the host (a firewall that began to drop).
pub struct TunnelCheck {
    /// The prober's own queue of the device.
    pub queue: crate::io::tunnel::TunnelQueue,
    /// Turns the workers' use of the device on, or off for good
    /// (dataplane::group::Workers::tunnel).
    pub set: Box<dyn Fn(bool) + Send>,
}

/// Rounds in a row in which a peer answered the socket's probe and not the tunnel device's
/// before the device is given up.
const TUNNEL_MISSES: u32 = 2;
/// Silent peers (kernel VXLAN) whose probes are watched leaving the host, per round.
const EGRESS_PATHS: usize = 4;
/// How long a probe may take to leave the host (it is forwarded as it is written).
const EGRESS_WAIT: Duration = Duration::from_millis(300);

/// What one round of tunnel probes says, given the peers that answered the socket's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelVerdict {
    /// Nobody to compare with: no peer answered the socket.
    Unknown,
    /// Every peer that answered the socket answered through the device too.
    Forwarded,
    /// Some peer answered the socket and not the device.
    Missed,
}

/// The verdict of a round in which `via_socket` peers answered the socket's probes and
/// `via_tunnel` of them answered those sent through the device.
pub fn tunnel_verdict(via_socket: usize, via_tunnel: usize) -> TunnelVerdict {
    match (via_socket, via_tunnel) {
        (0, _) => TunnelVerdict::Unknown,
        (s, t) if t >= s => TunnelVerdict::Forwarded,
        _ => TunnelVerdict::Missed,
    }
}

/// How a round of tunnel checks found out whether the host forwards what the device takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evidence {
    /// Peers answered probes sent through the device (vswitchd peers answer probes).
    PeerAnswers,
    /// The probes sent through the device were seen leaving the host (crate::io::egress):
    /// where no peer answers probes, as kernel VXLAN peers never do.
    Egress,
}

impl Evidence {
    fn forwarded(self) -> &'static str {
        match self {
            Evidence::PeerAnswers => "peers answer probes sent through the tunnel device",
            Evidence::Egress => {
                "probes sent through the tunnel device leave the host toward peers that do \
                 not answer probes (kernel VXLAN)"
            }
        }
    }

    fn missed(self) -> &'static str {
        match self {
            Evidence::PeerAnswers => {
                "peers answer probes from vswitchd's socket but not through its tunnel device"
            }
            Evidence::Egress => {
                "probes vswitchd sends from its socket leave the host, those it sends through \
                 its tunnel device do not"
            }
        }
    }
}

impl Prober {
    /// Starts probing the peers of the topology `published` holds, every `INTERVAL`; and,
    /// with `tunnel`, the path through the tunnel device.
    pub fn start(
        cfg: ProbeConfig,
        published: Published,
        tunnel: Option<TunnelCheck>,
    ) -> io::Result<Prober> {
        let sock = socket(cfg.local)?;
        let prober = Prober {
            cfg,
            results: Arc::default(),
        };
        let p = prober.clone();
        let mut tunnel = tunnel.map(|t| (t, 0u32));
        std::thread::Builder::new()
            .name("vswitch-probe".into())
            .spawn(move || loop {
                let began = Instant::now();
                let (answered, silent) = p.probe_once(&sock, &published.load());
                if let Some((t, misses)) = &mut tunnel {
                    // Peers that answer the socket's probes are asked through the device too;
                    // where none does (kernel VXLAN peers), the host is watched sending the
                    // socket's probes and the device's.
                    let (evidence, asked, through) = if answered.is_empty() {
                        let (asked, through) = p.check_egress(&sock, t, &silent);
                        (Evidence::Egress, asked, through)
                    } else {
                        let through = p.check_tunnel(&sock, t, &answered);
                        (Evidence::PeerAnswers, answered.len(), through)
                    };
                    match tunnel_verdict(asked, through) {
                        TunnelVerdict::Unknown => {}
                        TunnelVerdict::Forwarded => {
                            *misses = 0;
                            if p.set_tunnel_status(TunnelStatus::On) {
                                tracing::info!(
                                    device = crate::io::tunnel::NAME,
                                    peers = asked,
                                    "tunnel GSO on: {}, so TCP super-frames to peers leave whole",
                                    evidence.forwarded()
                                );
                                (t.set)(true);
                            }
                        }
                        TunnelVerdict::Missed => *misses += 1,
                    }
                    if *misses >= TUNNEL_MISSES {
                        tracing::warn!(
                            device = crate::io::tunnel::NAME,
                            "{}: the host does not forward what vswitchd hands the kernel \
                             there (a firewall FORWARD chain that drops it?). TCP super-frames \
                             are segmented here from now on. To keep tunnel GSO, accept what \
                             comes in on {1}, e.g. `iptables -I FORWARD -i {1} -j ACCEPT`, and \
                             restart vswitchd",
                            evidence.missed(),
                            crate::io::tunnel::NAME
                        );
                        (t.set)(false);
                        tunnel = None;
                        p.set_tunnel_status(TunnelStatus::NotForwarded);
                    }
                }
                std::thread::sleep(INTERVAL.saturating_sub(began.elapsed()));
            })?;
        Ok(prober)
    }

    /// Records the tunnel device's status; whether it changed.
    fn set_tunnel_status(&self, status: TunnelStatus) -> bool {
        let mut s = self.cfg.tunnel.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *s != status;
        *s = status;
        changed
    }

    /// Probes the peers in `answered` (VXLAN paths that answered the socket's probe) through
    /// the tunnel device, from the socket's address and port; returns how many answered.
    fn check_tunnel(&self, sock: &UdpSocket, t: &TunnelCheck, answered: &[SocketAddrV4]) -> usize {
        let Ok(SocketAddr::V4(from)) = sock.local_addr() else {
            return 0;
        };
        if answered.is_empty() {
            return 0;
        }
        let probes: Vec<Probe> = answered
            .iter()
            .map(|&to| Probe {
                to,
                size: probe::REQUEST_LEN,
                first_network: 0,
            })
            .collect();
        let outcomes = round_via(
            sock,
            &probes,
            Duration::from_millis(1000),
            Duration::from_millis(300),
            |bytes, p| t.queue.send_datagram(from, p.to, bytes),
        );
        outcomes.iter().filter(|o| o.answered()).count()
    }

    /// For each of `paths` (VXLAN paths whose peer did not answer the socket; the first
    /// `EGRESS_PATHS`), sends a probe from the socket and one through the tunnel device from
    /// the socket's address and port, and watches the host send them on. Returns how many of
    /// the socket's left the host and, of those peers, how many of the device's did too (none,
    /// no verdict, when it cannot be watched here). The socket's are the reference: a peer whose address
    /// does not resolve on the underlay stops both, a firewall's FORWARD chain only the
    /// device's.
    fn check_egress(
        &self,
        sock: &UdpSocket,
        t: &TunnelCheck,
        paths: &[SocketAddrV4],
    ) -> (usize, usize) {
        let Ok(SocketAddr::V4(from)) = sock.local_addr() else {
            return (0, 0);
        };
        if paths.is_empty() {
            return (0, 0);
        }
        let watch = match crate::io::egress::EgressWatch::open(from, self.cfg.vxlan_port) {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!("cannot watch what leaves the host ({e}): tunnel not checked");
                return (0, 0);
            }
        };
        let mut buf = [0u8; probe::REQUEST_LEN];
        let mut leaves = |send: &dyn Fn(&[u8]) -> io::Result<()>, to: SocketAddrV4| {
            let n = probe::emit_request(&mut buf, next_token(), 0, probe::REQUEST_LEN);
            send(&buf[..n]).is_ok() && watch.seen(to, &buf[..n], EGRESS_WAIT)
        };
        let (mut via_socket, mut via_tunnel) = (0, 0);
        for &to in paths.iter().take(EGRESS_PATHS) {
            if leaves(&|b| sock.send_to(b, to).map(|_| ()), to) {
                via_socket += 1;
                if leaves(&|b| t.queue.send_datagram(from, to, b), to) {
                    via_tunnel += 1;
                }
            }
        }
        (via_socket, via_tunnel)
    }

    /// Probes every target once; returns the VXLAN paths that answered, and those that did not.
    fn probe_once(
        &self,
        sock: &UdpSocket,
        topo: &Topology,
    ) -> (Vec<SocketAddrV4>, Vec<SocketAddrV4>) {
        let targets = targets(topo, &self.cfg);
        let probes: Vec<Probe> = targets
            .iter()
            .map(|&(ip, port, _)| Probe {
                to: SocketAddrV4::new(ip, port),
                size: probe::REQUEST_LEN,
                first_network: 0,
            })
            .collect();
        let sent = Instant::now();
        let outcomes = round(sock, &probes, Duration::from_millis(1000), INTERVAL);
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        results.retain(|k, _| targets.iter().any(|&(ip, port, _)| (ip, port) == *k));
        let (mut answered, mut silent) = (Vec::new(), Vec::new());
        for (&(ip, port, esp), o) in targets.iter().zip(outcomes) {
            let st = results.entry((ip, port)).or_default();
            match o {
                Outcome::Answered { rtt, .. } => {
                    st.last_answer = Some(Instant::now());
                    st.rtt = Some(rtt);
                    st.silent_since = None;
                    if !esp {
                        answered.push(SocketAddrV4::new(ip, port));
                    }
                }
                o => {
                    st.silent_since.get_or_insert(sent);
                    if !esp && matches!(o, Outcome::NoAnswer) {
                        silent.push(SocketAddrV4::new(ip, port));
                    }
                }
            }
        }
        (answered, silent)
    }

    /// The last result for a path, if it was probed.
    pub fn status(&self, ip: Ipv4Addr, port: u16) -> Option<PathStatus> {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(ip, port))
            .cloned()
    }

    /// Fills in the probe columns of `show peers`.
    pub fn annotate(&self, peers: &mut [crate::control::api::PeerInfo]) {
        for p in peers {
            let Ok(ip) = p.underlay_ip.parse::<Ipv4Addr>() else {
                continue;
            };
            if let Some(st) = self.status(ip, self.cfg.vxlan_port) {
                p.probe = Some(path_info(&st, self.cfg.vxlan_port));
            }
            if let Some(st) = self.cfg.esp_port.and_then(|port| self.status(ip, port)) {
                p.esp_probe = Some(path_info(&st, self.cfg.esp_port.unwrap_or_default()));
            }
        }
    }
}

fn path_info(st: &PathStatus, port: u16) -> crate::control::api::ProbeInfo {
    crate::control::api::ProbeInfo {
        port,
        reachable: st.reachable(),
        rtt_ms: st.rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
        last_answer_secs: st.last_answer.map(|t| t.elapsed().as_secs()),
        silent_for_secs: st.silent_since.map(|t| t.elapsed().as_secs()),
    }
}

#[cfg(test)]
mod tunnel_tests {
    use super::*;

    #[test]
    fn the_tunnel_is_judged_only_against_peers_that_answer_the_socket() {
        assert_eq!(
            tunnel_verdict(0, 0),
            TunnelVerdict::Unknown,
            "kernel peers only"
        );
        assert_eq!(tunnel_verdict(2, 2), TunnelVerdict::Forwarded);
        assert_eq!(tunnel_verdict(2, 1), TunnelVerdict::Missed);
        assert_eq!(tunnel_verdict(1, 0), TunnelVerdict::Missed);
    }
}
