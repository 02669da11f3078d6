//! Doctor's `offloads` check: what makes the overlay slow without breaking it.
//!
//! - vswitchd's own: the TAP offloads (checksum and TSO from containers, TUNSETOFFLOAD) and
//!   UDP GSO/GRO on the underlay sockets, as the daemon found them at start;
//! - the underlay interface's (the one holding `underlay_ip`), and when that is a bridge or a
//!   bond, each of its ports' (where the datagrams really leave and arrive: a bridge's or
//!   bond's own features follow its ports', and `ethtool -K` on it does not change theirs),
//!   read as `ethtool -k` does (crate::io::ethtool). Only what changes vswitchd's traffic is
//!   checked, and only what the operator can turn on (a `[fixed]` feature is not reported):
//!   - `tx-checksumming`: off, the kernel computes every outer checksum in software and, as
//!     `tx-udp-segmentation` needs it, cuts each UDP GSO packet into datagrams before the
//!     interface;
//!   - `scatter-gather`: off, every datagram is copied into one linear buffer;
//!   - `tx-udp-segmentation`: off, the kernel segments UDP GSO packets in software; over a
//!     veth the peer then reads every datagram on its own;
//!   - `generic-receive-offload`: off, the peers' datagrams are never coalesced for vswitchd's
//!     UDP GRO socket. Not on a veth: GRO is off there by default and a peer's GSO packets
//!     cross a veth whole.
//!
//!   TCP segmentation (TSO) and `generic-segmentation-offload` are not checked: the underlay
//!   carries UDP only, and the kernel segments UDP GSO packets whatever they say;
//!   `rx-udp-gro-forwarding` only matters to a host that routes UDP, which vswitchd does not
//!   (its socket asks for GRO itself).

use super::Findings;
use crate::control::probe::{ProbeConfig, TunnelStatus};
use crate::io::ethtool::Features;

/// One offload as `ethtool -k` names it, and the kernel features that make it.
struct Offload {
    label: &'static str,
    features: &'static [&'static str],
    /// The `ethtool -K` keyword that turns it on.
    keyword: &'static str,
    /// The offload it needs (off with it).
    needs: Option<&'static str>,
    /// Drivers where it does not matter.
    not_on: &'static [&'static str],
    why: &'static str,
}

const OFFLOADS: [Offload; 4] = [
    Offload {
        label: "tx-checksumming",
        features: &["tx-checksum-ipv4", "tx-checksum-ip-generic"],
        keyword: "tx",
        needs: None,
        not_on: &[],
        why: "the kernel computes every outer UDP checksum in software and cuts vswitchd's \
              UDP GSO packets into single datagrams before the interface",
    },
    Offload {
        label: "scatter-gather",
        features: &["tx-scatter-gather"],
        keyword: "sg",
        needs: None,
        not_on: &[],
        why: "every datagram is copied into one linear buffer before it is sent",
    },
    Offload {
        label: "tx-udp-segmentation",
        features: &["tx-udp-segmentation"],
        keyword: "tx-udp-segmentation",
        needs: Some("tx-checksumming"),
        not_on: &[],
        why: "the kernel cuts vswitchd's UDP GSO packets into single datagrams in software \
              (over a veth the peer then reads them one by one)",
    },
    Offload {
        label: "generic-receive-offload",
        features: &["rx-gro"],
        keyword: "gro",
        needs: None,
        not_on: &["veth"],
        why: "the peers' datagrams are never coalesced: vswitchd reads each with a system \
              call of its own",
    },
];

/// An offload's state on one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    On,
    /// Off, and the operator turned it off (or it was never on).
    Off,
    /// Off although asked for: something it needs is off.
    OffWithAnother,
    /// Not there, `[fixed]`, or not relevant to this driver.
    NotChecked,
}

fn state(o: &Offload, f: &Features) -> State {
    if f.driver.as_deref().is_some_and(|d| o.not_on.contains(&d)) {
        return State::NotChecked;
    }
    let parts: Vec<_> = o.features.iter().filter_map(|n| f.get(n)).collect();
    if parts.iter().any(|p| p.active) {
        return State::On;
    }
    let changeable: Vec<_> = parts.iter().filter(|p| !p.fixed).collect();
    if changeable.is_empty() {
        State::NotChecked
    } else if changeable.iter().any(|p| p.requested) {
        State::OffWithAnother
    } else {
        State::Off
    }
}

/// Adds a finding per offload of `f` that is off and could be on, about `subject` (the
/// interface as doctor names it); returns the labels of those that are on. A bridge or bond
/// with ports (`has_ports`) is not told about an offload it asks for but lacks: that follows
/// its ports', which get lines of their own.
fn underlay(
    f: &Features,
    subject: &str,
    has_ports: bool,
    findings: &mut Findings,
) -> Vec<&'static str> {
    let states: Vec<(&Offload, State)> = OFFLOADS.iter().map(|o| (o, state(o, f))).collect();
    let off = |label: &str| {
        states
            .iter()
            .any(|(o, s)| o.label == label && *s == State::Off)
    };
    let mut on = Vec::new();
    for (o, s) in &states {
        match s {
            State::On => on.push(o.label),
            State::NotChecked => {}
            State::Off => {
                let with: Vec<&str> = states
                    .iter()
                    .filter(|(d, s)| *s == State::OffWithAnother && d.needs == Some(o.label))
                    .map(|(d, _)| d.label)
                    .collect();
                let also = match with.as_slice() {
                    [] => String::new(),
                    w => format!(" ({} off with it)", w.join(", ")),
                };
                findings.add(
                    "offloads",
                    subject,
                    format!("{} is off{also}: {}", o.label, o.why),
                    format!(
                        "turn it on: `ethtool -K {} {} on` (and in the interface's \
                         configuration, so that it stays on after a reboot)",
                        f.ifname, o.keyword
                    ),
                );
            }
            State::OffWithAnother if has_ports || o.needs.is_some_and(off) => {}
            State::OffWithAnother => findings.add(
                "offloads",
                subject,
                format!(
                    "{} is off although asked for, because an offload it needs is off: {}",
                    o.label, o.why
                ),
                format!(
                    "`ethtool -k {}` shows what is off; turn that on with `ethtool -K`",
                    f.ifname
                ),
            ),
        }
    }
    on
}

/// The whole check: vswitchd's own offloads, then the underlay interface's.
pub(super) fn check(cfg: &ProbeConfig, findings: &mut Findings, passed: &mut Vec<String>) {
    let mut own_on = true;
    if !cfg.tap_offloads {
        own_on = false;
        findings.add(
            "offloads",
            "this host",
            "TAP offloads (checksum, TSO) are off: VSWITCH_OFFLOADS=off in vswitchd's \
             environment, or the kernel refused them at start (vswitchd's log says which)"
                .into(),
            "unset VSWITCH_OFFLOADS in vswitchd's environment and restart it: without them \
             every TCP segment crosses vswitchd on its own, at several times the CPU per byte"
                .into(),
        );
    } else if !cfg.underlay_offloads {
        own_on = false;
        findings.add(
            "offloads",
            "this host",
            "UDP GSO/GRO are unavailable on the underlay sockets: one datagram per system call"
                .into(),
            "run a kernel with UDP_SEGMENT and UDP_GRO (Linux 5.0 or later)".into(),
        );
    }
    if own_on {
        passed.push("offloads on (TAP TSO/USO, underlay UDP GSO/GRO)".into());
    }
    tunnel(cfg, findings, passed);
    let mut nl = match crate::io::Netlink::open() {
        Ok(nl) => nl,
        Err(e) => {
            passed.push(format!("underlay offloads not checked: {e}"));
            return;
        }
    };
    let (index, ifname) = match nl.find_ipv4_addr(cfg.local) {
        Ok(Some((index, name, _))) => (index, name),
        Ok(None) => {
            passed.push(format!(
                "underlay offloads not checked: no interface here holds {}",
                cfg.local
            ));
            return;
        }
        Err(e) => {
            passed.push(format!("underlay offloads not checked: {e}"));
            return;
        }
    };
    let mut subjects = vec![(ifname.clone(), format!("underlay {ifname}"))];
    match nl.ports_of(index) {
        Ok(ports) => subjects.extend(ports.into_iter().map(|p| {
            (
                p.name.clone(),
                format!("underlay {} (port of {ifname})", p.name),
            )
        })),
        Err(e) => passed.push(format!("ports of {ifname} not checked: {e}")),
    }
    let has_ports = subjects.len() > 1;
    for (k, (name, subject)) in subjects.iter().enumerate() {
        match crate::io::ethtool::features(name) {
            Ok(f) => {
                let on = underlay(&f, subject, k == 0 && has_ports, findings);
                if !on.is_empty() {
                    passed.push(format!("{subject}: {} on", on.join(", ")));
                }
            }
            Err(e) => passed.push(format!("{subject}: offloads not checked: {e}")),
        }
    }
}

/// Tunnel GSO (crate::io::tunnel): a finding when the prober turned it off, a line saying
/// why it is off otherwise.
fn tunnel(cfg: &ProbeConfig, findings: &mut Findings, passed: &mut Vec<String>) {
    let status = cfg.tunnel.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let dev = crate::io::tunnel::NAME;
    match status {
        TunnelStatus::On => passed.push(format!(
            "tunnel GSO on: TCP super-frames to peers leave whole through {dev}"
        )),
        TunnelStatus::Unavailable(why) => passed.push(format!("tunnel GSO off: {why}")),
        TunnelStatus::Unverified => passed.push(format!(
            "tunnel GSO not yet on: no peer has answered a probe sent through {dev}, nor was \
             one seen leaving the host (the prober checks every 2 s); TCP super-frames are \
             segmented here until then"
        )),
        TunnelStatus::NotForwarded => findings.add(
            "offloads",
            "this host",
            format!(
                "tunnel GSO was turned off: the host does not forward what vswitchd hands the \
                 kernel on its tunnel device {dev} (peers answered probes from vswitchd's \
                 socket but not through the device, or, where peers do not answer probes, \
                 those sent through it never left the host: a firewall FORWARD chain that \
                 drops them?); TCP super-frames are segmented here, at about 1.5 times the CPU \
                 per byte"
            ),
            format!(
                "accept what comes in on {dev} (`iptables -I FORWARD -i {dev} -j ACCEPT`) and \
                 restart vswitchd"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::ethtool::Feature;

    fn feature(name: &str, active: bool, requested: bool, fixed: bool) -> Feature {
        Feature {
            name: name.into(),
            active,
            requested,
            fixed,
        }
    }

    /// A veth as it comes: everything that matters on, GRO off.
    fn veth() -> Features {
        Features {
            ifname: "ul0".into(),
            driver: Some("veth".into()),
            list: vec![
                feature("tx-checksum-ipv4", false, false, true),
                feature("tx-checksum-ip-generic", true, true, false),
                feature("tx-scatter-gather", true, true, false),
                feature("tx-udp-segmentation", true, true, false),
                feature("rx-gro", false, false, false),
                feature("tx-tcp-segmentation", true, true, false),
            ],
        }
    }

    fn set(f: &mut Features, name: &str, active: bool, requested: bool) {
        let x = f.list.iter_mut().find(|x| x.name == name).unwrap();
        x.active = active;
        x.requested = requested;
    }

    fn lines(f: &Features) -> (Vec<String>, Vec<&'static str>) {
        let mut found = Findings(Vec::new());
        let on = underlay(f, &format!("underlay {}", f.ifname), false, &mut found);
        let text = found
            .0
            .iter()
            .map(|x| format!("{}: {} — {}", x.subject, x.problem, x.fix))
            .collect();
        (text, on)
    }

    #[test]
    fn a_veth_as_it_comes_is_fine_and_its_gro_not_checked() {
        let (found, on) = lines(&veth());
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(
            on,
            ["tx-checksumming", "scatter-gather", "tx-udp-segmentation"]
        );
    }

    #[test]
    fn tx_off_is_one_line_naming_what_goes_with_it() {
        let mut f = veth();
        // `ethtool -K ul0 tx off`: USO goes off with it, still requested.
        set(&mut f, "tx-checksum-ip-generic", false, false);
        set(&mut f, "tx-udp-segmentation", false, true);
        let (found, on) = lines(&f);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "underlay ul0: tx-checksumming is off (tx-udp-segmentation off with it): "
            ),
            "{}",
            found[0]
        );
        assert!(found[0].contains("`ethtool -K ul0 tx on`"), "{}", found[0]);
        assert_eq!(on, ["scatter-gather"]);
    }

    #[test]
    fn each_offload_turned_off_is_a_line_with_its_keyword() {
        let mut f = veth();
        set(&mut f, "tx-udp-segmentation", false, false);
        set(&mut f, "tx-scatter-gather", false, false);
        let (found, _) = lines(&f);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("scatter-gather is off") && found[0].contains("-K ul0 sg on"));
        assert!(found[1].contains("tx-udp-segmentation is off"));
        assert!(found[1].contains("-K ul0 tx-udp-segmentation on"));
    }

    #[test]
    fn gro_off_matters_on_a_nic_and_fixed_features_are_never_reported() {
        let mut f = veth();
        f.driver = Some("virtio_net".into());
        // USO a NIC cannot do: `[fixed]` off.
        let uso = f
            .list
            .iter_mut()
            .find(|x| x.name == "tx-udp-segmentation")
            .unwrap();
        *uso = feature("tx-udp-segmentation", false, false, true);
        let (found, on) = lines(&f);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("underlay ul0: generic-receive-offload is off: "),
            "{}",
            found[0]
        );
        assert!(found[0].contains("`ethtool -K ul0 gro on`"));
        assert_eq!(on, ["tx-checksumming", "scatter-gather"]);
    }

    #[test]
    fn off_because_of_something_unchecked_says_so() {
        let mut f = veth();
        set(&mut f, "tx-udp-segmentation", false, true);
        let (found, _) = lines(&f);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("tx-udp-segmentation is off although asked for"),
            "{}",
            found[0]
        );
    }
}
