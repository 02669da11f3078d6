//! `vswitchctl doctor`: the overlay's usual failures, checked, each finding saying what is wrong
//! and what to do.
//!
//! Checks, in order:
//! - **reachability**: every peer's vswitchd answers a probe (crate::control::probe) on the
//!   ports its traffic uses: VXLAN for plaintext networks (or none), ESP for encrypted ones;
//! - **mtu**: a don't-fragment probe as large as the largest packet the networks carried to
//!   the peer make (their MTU plus VXLAN's 50 bytes, or ESP's 92) arrives; if not, the largest
//!   that does;
//! - **name**: the peer answers under the name this host knows it by, not under this host's
//!   name, and no two peers answer under one name (nor, in a cluster, share one address);
//! - **network**: each network carried to the peer exists there under the same name with the
//!   same VNI, encryption and MTU (the probe's answer lists the peer's networks);
//! - **clock**: peers sharing an encrypted network keep clocks within `CLOCK_SKEW_MAX` of ours
//!   (keys change by the wall clock);
//! - **cluster**: the cluster store answers (with `[cluster]`);
//! - **offloads**: TAP offloads and underlay GSO/GRO are on, and so are the underlay
//!   interface's offloads that vswitchd's traffic needs (offloads.rs).
//!
//! `run` does the probing (seconds) on the calling thread; the control actor hands it what it
//! knows (`DoctorInput`) and runs it on a thread of its own, so other requests are not held up.

mod offloads;

use crate::control::api::{ClusterStatusInfo, DoctorPath, DoctorPeer, DoctorReport, Finding};
use crate::control::probe::{self, Outcome, Probe, ProbeConfig};
use crate::switch::Topology;
use crate::wire::{esp, probe as wire};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Clocks further apart than this are a finding on encrypted networks.
pub const CLOCK_SKEW_MAX: Duration = Duration::from_secs(5);
/// How long a peer may take to answer by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(3);
/// Probes are sent again this often while unanswered.
const RESEND: Duration = Duration::from_millis(500);
/// IPv4 packet sizes tried when the full size does not arrive (common underlay MTUs).
const LADDER: [u32; 16] = [
    9000, 8950, 4000, 1500, 1492, 1480, 1472, 1460, 1450, 1420, 1400, 1380, 1350, 1280, 1000, 576,
];

/// What the control actor knows that doctor needs.
pub struct DoctorInput {
    pub cfg: ProbeConfig,
    pub topology: Arc<Topology>,
    pub wait: Duration,
    /// With `[cluster]`: the store's state and the registered nodes (name, underlay address).
    pub cluster: Option<(ClusterStatusInfo, Vec<(String, Ipv4Addr)>)>,
}

/// The UDP payload a plain VXLAN packet of a network with MTU `mtu` needs.
pub fn vxlan_payload(mtu: u32) -> usize {
    mtu as usize + 14 + 8
}

/// The UDP payload an ESP packet of an encrypted network with MTU `mtu` needs.
pub fn esp_payload(mtu: u32) -> usize {
    esp::packet_len(8 + 8 + 14 + mtu as usize)
}

struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, check: &str, subject: &str, problem: String, fix: String) {
        self.0.push(Finding {
            check: check.into(),
            subject: subject.into(),
            problem,
            fix,
        });
    }
}

fn path(o: &Outcome, port: u16) -> DoctorPath {
    DoctorPath {
        port,
        reachable: o.answered(),
        rtt_ms: match o {
            Outcome::Answered { rtt, .. } => Some((rtt.as_secs_f64() * 1e6).round() / 1e3),
            _ => None,
        },
    }
}

/// Runs every check. Takes a few seconds when peers answer, `wait` and a little more when some
/// do not.
pub fn run(input: DoctorInput) -> DoctorReport {
    let DoctorInput {
        cfg,
        topology: topo,
        wait,
        cluster,
    } = input;
    let mut f = Findings(Vec::new());
    let mut passed = Vec::new();
    let mut peers_out = Vec::new();
    let wait_s = wait.as_secs_f64();
    let sock = match probe::socket(cfg.local) {
        Ok(s) => Some(s),
        Err(e) => {
            f.add(
                "reachability",
                "this host",
                format!("cannot open a probe socket on {}: {e}", cfg.local),
                "run doctor as root on the host of this vswitchd".into(),
            );
            None
        }
    };
    let targets = probe::targets(&topo, &cfg);
    let basic: Vec<Probe> = targets
        .iter()
        .map(|&(ip, port, _)| Probe {
            to: SocketAddrV4::new(ip, port),
            size: wire::REQUEST_LEN,
            first_network: 0,
        })
        .collect();
    let outcomes = match &sock {
        Some(s) => probe::round(s, &basic, wait, RESEND),
        None => vec![Outcome::NoAnswer; basic.len()],
    };
    let by_target: HashMap<(Ipv4Addr, bool), (u16, Outcome)> = targets
        .iter()
        .zip(outcomes)
        .map(|(&(ip, port, esp), o)| ((ip, esp), (port, o)))
        .collect();

    // MTU: one round of full-size probes to every peer that answered, then a ladder for those
    // whose full size did not arrive.
    let mut mtu_probe: Vec<(usize, Probe, u32)> = Vec::new();
    for (k, p) in topo.peers().iter().enumerate() {
        let answered = [false, true].into_iter().find_map(|esp| {
            by_target
                .get(&(p.addr.0, esp))
                .filter(|(_, o)| o.answered())
                .map(|(port, _)| *port)
        });
        let need = topo
            .networks()
            .filter(|n| n.vteps().contains(&p.addr))
            .map(|n| {
                if n.spec.encrypted {
                    esp_payload(n.spec.mtu)
                } else {
                    vxlan_payload(n.spec.mtu)
                }
            })
            .max();
        if let (Some(port), Some(need)) = (answered, need) {
            let probe = Probe {
                to: SocketAddrV4::new(p.addr.0, port),
                size: need,
                first_network: 0,
            };
            mtu_probe.push((k, probe, (need + wire::IP_UDP_OVERHEAD) as u32));
        }
    }
    let full: Vec<Probe> = mtu_probe.iter().map(|(_, p, _)| *p).collect();
    let mtu_wait = wait.min(Duration::from_secs(2));
    let full_out = match &sock {
        Some(s) if !full.is_empty() => probe::round(s, &full, mtu_wait, RESEND),
        _ => Vec::new(),
    };
    let mut ladder: Vec<(usize, Probe, u32)> = Vec::new();
    for ((k, p, need_ip), o) in mtu_probe.iter().zip(&full_out) {
        if !o.answered() {
            for size in LADDER.iter().filter(|s| **s < *need_ip) {
                let mut q = *p;
                q.size = *size as usize - wire::IP_UDP_OVERHEAD;
                ladder.push((*k, q, *size));
            }
        }
    }
    let ladder_out = match &sock {
        Some(s) if !ladder.is_empty() => probe::round(
            s,
            &ladder.iter().map(|(_, p, _)| *p).collect::<Vec<_>>(),
            mtu_wait,
            RESEND,
        ),
        _ => Vec::new(),
    };

    let mut answered_names: HashMap<String, Vec<String>> = HashMap::new();
    for (k, p) in topo.peers().iter().enumerate() {
        let subject = format!("peer {} ({})", p.name, p.addr);
        let vx = by_target.get(&(p.addr.0, false));
        let es = by_target.get(&(p.addr.0, true));
        let mut reply = None;
        let mut midpoint = None;
        for (label, t) in [("UDP", vx), ("ESP-in-UDP", es)] {
            let Some((port, o)) = t else { continue };
            match o {
                Outcome::Answered {
                    rtt,
                    midpoint: m,
                    reply: r,
                } => {
                    passed.push(format!(
                        "{subject} answers on {label} {port} in {:.2} ms",
                        rtt.as_secs_f64() * 1e3
                    ));
                    if reply.is_none() {
                        reply = Some(r.clone());
                        midpoint = Some(*m);
                    }
                }
                Outcome::NotSent(_, errno) => f.add(
                    "reachability",
                    &subject,
                    format!(
                        "cannot send to {label} {port}: {}",
                        std::io::Error::from_raw_os_error(errno.unwrap_or(0))
                    ),
                    format!(
                        "check the route to {} on this host (`ip route get {}`)",
                        p.addr, p.addr
                    ),
                ),
                Outcome::NoAnswer => f.add(
                    if label == "UDP" {
                        "reachability"
                    } else {
                        "esp-reachability"
                    },
                    &subject,
                    format!("no answer on {label} {port} for {wait_s:.0} s"),
                    format!(
                        "check that {label} {port} is open on that host for {} (firewall, \
                         security group) and that vswitchd runs there with this host as a peer \
                         (a kernel VXLAN peer never answers probes)",
                        cfg.local
                    ),
                ),
            }
        }
        let mut out = DoctorPeer {
            name: p.name.clone(),
            underlay_ip: p.addr.to_string(),
            answers_as: reply.as_ref().map(|r| r.node.clone()),
            vxlan: vx.map(|(port, o)| path(o, *port)),
            esp: es.map(|(port, o)| path(o, *port)),
            mtu_needed: None,
            mtu_passed: None,
            clock_offset_ms: None,
        };
        // Path MTU.
        if let Some(j) = mtu_probe.iter().position(|(i, _, _)| *i == k) {
            let need = mtu_probe[j].2;
            out.mtu_needed = Some(need);
            let carried: Vec<String> = topo
                .networks()
                .filter(|n| n.vteps().contains(&p.addr))
                .map(|n| format!("{} (mtu {})", n.spec.name, n.spec.mtu))
                .collect();
            match full_out.get(j) {
                Some(o) if o.answered() => {
                    out.mtu_passed = Some(need);
                    passed.push(format!(
                        "{subject}: {need}-byte packets with don't-fragment arrive, as the \
                         networks need"
                    ));
                }
                other => {
                    let best = ladder
                        .iter()
                        .zip(&ladder_out)
                        .filter(|((i, _, _), o)| *i == k && o.answered())
                        .map(|((_, _, size), _)| *size)
                        .max();
                    out.mtu_passed = best;
                    let local = matches!(other, Some(Outcome::NotSent(..)));
                    f.add(
                        "mtu",
                        &subject,
                        format!(
                            "{need}-byte packets with don't-fragment {} ({} need them); {}",
                            if local {
                                "cannot leave this host: the route's MTU is smaller"
                            } else {
                                "do not arrive"
                            },
                            carried.join(", "),
                            match best {
                                Some(b) => format!("{b}-byte packets do"),
                                None => "no smaller size tried arrived either".to_string(),
                            }
                        ),
                        match best {
                            Some(b) => format!(
                                "lower those networks' mtu by {} (or set [node] underlay_mtu = \
                                 {b}), or raise the underlay's MTU to {need} on every hop",
                                need - b
                            ),
                            None => format!(
                                "raise the underlay's MTU to {need} on every hop, or lower \
                                 the networks' mtu"
                            ),
                        },
                    );
                }
            }
        }
        if let Some(r) = &reply {
            // Names.
            answered_names
                .entry(r.node.clone())
                .or_default()
                .push(subject.clone());
            if r.node == cfg.node {
                f.add(
                    "name",
                    &subject,
                    format!("answers as {:?}, this host's own name", r.node),
                    "give every host its own [node] name (and restart that vswitchd)".into(),
                );
            } else if r.node != p.name {
                f.add(
                    "name",
                    &subject,
                    format!("answers as {:?}, not {:?}", r.node, p.name),
                    format!(
                        "use one name for that host: its [node] name, and the [[peer]] name \
                         (or the cluster's record) for {}",
                        p.addr
                    ),
                );
            }
            // Networks.
            let theirs = match &sock {
                Some(s) => all_networks(s, r, vx.or(es).map(|(port, _)| *port), p.addr.0, wait),
                None => r.networks.clone(),
            };
            let mut agree = 0;
            for n in topo.networks().filter(|n| n.vteps().contains(&p.addr)) {
                let ns = format!("network {} (vni {})", n.spec.name, n.vni());
                let by_name = theirs.iter().find(|t| t.name == n.spec.name);
                let by_vni = theirs.iter().find(|t| t.vni == n.vni().get());
                let Some(t) = by_name.or(by_vni) else {
                    f.add(
                        "network",
                        &ns,
                        format!("carried to {}, which has no such network", p.name),
                        format!(
                            "add it on {} with the same vni, or leave {} out of the network's \
                             peers",
                            p.name, p.name
                        ),
                    );
                    continue;
                };
                let mut same = true;
                if t.vni != n.vni().get() {
                    same = false;
                    f.add(
                        "network",
                        &ns,
                        format!("has vni {} on {}", t.vni, p.name),
                        "use the same vni for the network on every host".into(),
                    );
                }
                if t.encrypted != n.spec.encrypted {
                    same = false;
                    let (here, there) = if n.spec.encrypted {
                        ("encrypted", "not")
                    } else {
                        ("not encrypted", "encrypted")
                    };
                    f.add(
                        "network",
                        &ns,
                        format!("{here} here, {there} on {}", p.name),
                        "set the same `encrypted` (and key file) on every host: an encrypted \
                         network drops plaintext and the other side cannot read ESP"
                            .into(),
                    );
                }
                if u32::from(t.mtu) != n.spec.mtu && t.vni == n.vni().get() {
                    same = false;
                    f.add(
                        "network",
                        &ns,
                        format!("mtu {} here, {} on {}", n.spec.mtu, t.mtu, p.name),
                        "use one mtu for the network on every host: frames larger than the \
                         smaller one are dropped (frame_too_big)"
                            .into(),
                    );
                }
                if by_name.is_none() {
                    same = false;
                    f.add(
                        "network",
                        &ns,
                        format!("is called {:?} on {}", t.name, p.name),
                        "use one name for the network on every host".into(),
                    );
                }
                if same {
                    agree += 1;
                }
            }
            if agree > 0 {
                passed.push(format!(
                    "{subject}: {agree} network(s) with the same name, vni, encryption and mtu"
                ));
            }
            // Clocks, where keys depend on them.
            let encrypted = topo
                .networks()
                .any(|n| n.spec.encrypted && n.vteps().contains(&p.addr));
            if let Some(m) = midpoint {
                let ours = m
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i128);
                let offset_ms = ((r.wall_ns as i128 - ours) / 1_000_000) as i64;
                out.clock_offset_ms = Some(offset_ms);
                if encrypted {
                    if offset_ms.unsigned_abs() > CLOCK_SKEW_MAX.as_millis() as u64 {
                        f.add(
                            "clock",
                            &subject,
                            format!(
                                "its clock is {:.1} s {} ours",
                                offset_ms.abs() as f64 / 1e3,
                                if offset_ms > 0 { "ahead of" } else { "behind" }
                            ),
                            "run NTP (chrony, systemd-timesyncd) on both hosts: encrypted \
                             networks change keys by the wall clock and stop when clocks \
                             differ by more than rekey_interval"
                                .into(),
                        );
                    } else {
                        passed.push(format!(
                            "{subject}: clocks agree within {} ms",
                            offset_ms.abs()
                        ));
                    }
                }
            }
        }
        peers_out.push(out);
    }
    for (name, who) in &answered_names {
        if who.len() > 1 {
            f.add(
                "name",
                &format!("node name {name:?}"),
                format!("{} all answer under it", who.join(", ")),
                "give every host its own [node] name".into(),
            );
        }
    }

    // The cluster store.
    if let Some((status, nodes)) = &cluster {
        if status.reachable {
            passed.push(format!(
                "cluster store reachable ({})",
                status.endpoints.join(",")
            ));
        } else {
            f.add(
                "cluster",
                "cluster store",
                format!(
                    "{} unreachable for {} s{}",
                    status.endpoints.join(","),
                    status.unreachable_for_secs.unwrap_or(0),
                    status
                        .last_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
                "check that etcd runs and that this host reaches it (the [cluster] \
                 etcd_endpoints, TLS files); forwarding continues on what is known"
                    .into(),
            );
        }
        let mut at: HashMap<Ipv4Addr, Vec<&str>> = HashMap::new();
        for (name, ip) in nodes {
            at.entry(*ip).or_default().push(name);
        }
        for (ip, names) in at {
            if names.len() > 1 {
                f.add(
                    "name",
                    &format!("underlay {ip}"),
                    format!("registered by several nodes: {}", names.join(", ")),
                    "one host, one node name: stop the daemon that runs under the wrong name, \
                     or give each host its own underlay_ip"
                        .into(),
                );
            }
        }
    }

    // Offloads: vswitchd's own and the underlay interface's.
    offloads::check(&cfg, &mut f, &mut passed);
    if topo.peers().is_empty() {
        passed.push("no peers to probe".into());
    }
    DoctorReport {
        ok: f.0.is_empty(),
        node: cfg.node,
        findings: f.0,
        passed,
        peers: peers_out,
    }
}

/// Every network of a peer: the first reply's, then pages asked for while more remain.
fn all_networks(
    sock: &std::net::UdpSocket,
    first: &wire::Reply,
    port: Option<u16>,
    ip: Ipv4Addr,
    wait: Duration,
) -> Vec<wire::NetworkEntry> {
    let mut nets = first.networks.clone();
    let Some(port) = port else { return nets };
    while nets.len() < usize::from(first.total_networks) && nets.len() < 4096 {
        let p = Probe {
            to: SocketAddrV4::new(ip, port),
            size: wire::REQUEST_LEN,
            first_network: nets.len() as u16,
        };
        match probe::round(sock, &[p], wait, RESEND).pop() {
            Some(Outcome::Answered { reply, .. }) if !reply.networks.is_empty() => {
                nets.extend(reply.networks)
            }
            _ => break,
        }
    }
    nets
}

/// `vswitchctl doctor` as text: one line per finding (what is wrong — what to do), or one
/// all-good line.
pub fn render(r: &DoctorReport) -> String {
    let mut out = String::new();
    for f in &r.findings {
        out.push_str(&format!("{}: {} — {}\n", f.subject, f.problem, f.fix));
    }
    if r.ok {
        out.push_str(&format!(
            "all good on {}: {}\n",
            r.node,
            r.passed.join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_configured_overheads() {
        use crate::control::config::{ESP_OVERHEAD, VXLAN_OVERHEAD};
        // 1450 on a 1500 underlay, 1408 with ESP: both exactly fill 1500-byte packets.
        assert_eq!(
            vxlan_payload(1450) + wire::IP_UDP_OVERHEAD,
            (1450 + VXLAN_OVERHEAD) as usize
        );
        assert_eq!(
            esp_payload(1408) + wire::IP_UDP_OVERHEAD,
            (1408 + ESP_OVERHEAD) as usize
        );
    }

    #[test]
    fn renders_a_line_per_finding_or_all_good() {
        let mut r = DoctorReport {
            ok: true,
            node: "node-a".into(),
            findings: vec![],
            passed: vec!["peer node-b (192.0.2.2) answers on UDP 4789 in 0.20 ms".into()],
            peers: vec![],
        };
        assert_eq!(
            render(&r),
            "all good on node-a: peer node-b (192.0.2.2) answers on UDP 4789 in 0.20 ms\n"
        );
        r.ok = false;
        r.findings.push(Finding {
            check: "reachability".into(),
            subject: "peer node-b (192.0.2.2)".into(),
            problem: "no answer on UDP 4789 for 3 s".into(),
            fix: "check the firewall".into(),
        });
        assert_eq!(
            render(&r),
            "peer node-b (192.0.2.2): no answer on UDP 4789 for 3 s — check the firewall\n"
        );
    }
}
