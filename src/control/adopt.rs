//! Re-adopting a container's interface after a restart: the system side. The TAP made by
//! `attach-namespace` is persistent (crate::control::attach), so it outlived the previous
//! daemon with its name, MAC, address and routes; this finds it again inside the container's
//! namespace, checks it is the one the record describes, and opens its queues.
//!
//! A record that no longer matches is dropped, and what is left of it removed: a TAP of ours
//! whose MAC or address changed is deleted (its address is released by the caller, so keeping
//! it would leave a second holder). Something that is not ours — a namespace that is now
//! another one under the same name, an interface of that name that is not a TAP — is never
//! touched. Runs on the control side (it blocks on netlink and setns); never on a worker.

use crate::control::state::PortRecord;
use crate::io::netlink::Netlink;
use crate::io::netns::identity;
use crate::io::{open_netns, run_in_netns, IoError, TapDevice, TapOptions};
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// Why a record was not adopted, as the log says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub reason: String,
    /// The stale interface was found and deleted.
    pub removed_interface: bool,
}

impl Dropped {
    fn gone(reason: impl Into<String>) -> Dropped {
        Dropped {
            reason: reason.into(),
            removed_interface: false,
        }
    }
}

/// Finds the TAP of `rec` in its namespace and opens `queues` queues of it, with `options`
/// (its `multi_queue` is taken from the record). Err says why the record must be dropped.
pub fn reopen_namespace_port(
    rec: &PortRecord,
    options: TapOptions,
    queues: usize,
) -> Result<Vec<TapDevice>, Dropped> {
    let netns = rec.netns.as_deref().unwrap_or_default();
    let ifname = rec.ifname.as_str();
    let ns = open_netns(netns).map_err(|e| {
        Dropped::gone(match e {
            IoError::NetnsNotFound { path, .. } => {
                format!(
                    "its network namespace is gone ({} no longer exists)",
                    path.display()
                )
            }
            e => format!("its network namespace cannot be opened ({e})"),
        })
    })?;
    if let (Some(want), Some(got)) = (rec.netns_id, identity(&ns)) {
        if want != got {
            return Err(Dropped::gone(format!(
                "{netns} is another network namespace now (inode {} was {})",
                got.1, want.1
            )));
        }
    }
    let options = TapOptions {
        multi_queue: rec.multi_queue,
        ..options
    };
    if queues > 1 && !rec.multi_queue {
        // Cannot be carried by this many workers; it would otherwise stay with nobody reading it.
        let removed = remove_stale(&ns, ifname, options);
        return Err(Dropped {
            reason: format!(
                "it was made with one queue and this daemon runs {queues} workers \
                 (set [node] workers = 1 to keep such ports across a restart)"
            ),
            removed_interface: removed,
        });
    }
    let opened = run_in_netns(&ns, || -> Result<_, Dropped> {
        let mut nl = Netlink::open().map_err(|e| Dropped::gone(e.to_string()))?;
        let Some(link) = nl
            .link_by_name(ifname)
            .map_err(|e| Dropped::gone(e.to_string()))?
        else {
            return Err(Dropped::gone(format!(
                "interface {ifname} is gone from netns {netns}"
            )));
        };
        let first = TapDevice::open_existing(ifname, options).map_err(|e| {
            Dropped::gone(format!(
                "{ifname} in netns {netns} is not our TAP device any more ({e}); left alone"
            ))
        })?;
        // From here on, dropping `taps` deletes the device: it is ours.
        let mut taps = vec![first];
        let mismatch = |what: String| Dropped {
            reason: what,
            removed_interface: true,
        };
        let want_mac: Option<MacAddr> = rec.mac.as_deref().and_then(|m| m.parse().ok());
        if want_mac.is_some() && link.mac != want_mac {
            return Err(mismatch(format!(
                "{ifname} in netns {netns} has MAC {} instead of {}",
                link.mac.map_or("none".to_string(), |m| m.to_string()),
                rec.mac.as_deref().unwrap_or_default()
            )));
        }
        let want_ip: Option<Ipv4Addr> = rec
            .ip
            .as_deref()
            .and_then(|s| s.split('/').next())
            .and_then(|a| a.parse().ok());
        if let Some(ip) = want_ip {
            let found = nl
                .find_ipv4_addr(ip)
                .map_err(|e| Dropped::gone(e.to_string()))?;
            if found.as_ref().map(|f| f.0) != Some(link.index) {
                return Err(mismatch(format!(
                    "{ifname} in netns {netns} no longer has address {ip}"
                )));
            }
        }
        for q in 1..queues {
            let more = taps[0].open_queue().map_err(|e| {
                mismatch(format!(
                    "cannot open queue {q} of {ifname} in netns {netns}: {e}"
                ))
            })?;
            taps.push(more);
        }
        if let (Some(mac), Some(ip)) = (want_mac, want_ip) {
            ask_for_unresolved(&mut nl, link.index, ifname, mac, ip);
        }
        Ok(taps)
    });
    match opened {
        Ok(r) => r,
        Err(e) => Err(Dropped::gone(format!("cannot enter netns {netns}: {e}"))),
    }
}

/// While no switch ran, the container's interface had no carrier: the kernel forgot its
/// neighbours then, and every address it has tried to reach since waits in INCOMPLETE, asking
/// again only once a second (FAILED after three tries). Sends those ARP requests now, from the
/// container's interface as its own kernel would, so the answers resolve them at once and the
/// packets queued behind them leave; without this the first packet after a restart could wait
/// up to a second. Call in the container's namespace once the TAP's queues are open (the
/// frames wait on them until the workers read them). Best effort: a failure only costs that
/// second, and is logged.
fn ask_for_unresolved(nl: &mut Netlink, index: u32, ifname: &str, mac: MacAddr, ip: Ipv4Addr) {
    let waiting = match nl.unresolved_ipv4_neighbours(index) {
        Ok(w) if w.is_empty() => return,
        Ok(w) => w,
        Err(e) => {
            tracing::debug!(%ifname, "cannot list the container's neighbours: {e}");
            return;
        }
    };
    let opts = crate::io::PacketOptions {
        rx: crate::io::RxMode::Recvmsg,
        ..Default::default()
    };
    let sock = match crate::io::PacketSocket::open_with(ifname, &opts) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%ifname, "cannot send ARP for the container: {e}");
            return;
        }
    };
    let mut frame = [0u8; crate::switch::garp::FRAME_LEN];
    for target in &waiting {
        let len = crate::switch::garp::request(&mut frame, mac, ip, *target);
        if let Err(e) = sock.send(&frame[..len]) {
            tracing::debug!(%ifname, %target, "cannot send ARP for the container: {e}");
        }
    }
    tracing::info!(%ifname, neighbours = ?waiting, "sent ARP for the neighbours the container was still waiting for");
}

/// Deletes our stale TAP `ifname` in `ns`, if it is one: true when it was there and is gone.
fn remove_stale(ns: &impl std::os::fd::AsFd, ifname: &str, options: TapOptions) -> bool {
    run_in_netns(ns, || -> Result<bool, IoError> {
        // Opening it proves it is a TAP; dropping the only fd after clearing
        // persistence (TapDevice's Drop) deletes it.
        drop(TapDevice::open_existing(ifname, options)?);
        Ok(crate::io::ifindex_of(ifname)?.is_none())
    })
    .ok()
    .and_then(Result::ok)
    .unwrap_or(false)
}
