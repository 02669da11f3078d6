//! Restart without touching containers: the control actor's side.
//!
//! Every port `attach-namespace` or `attach-interface` makes is recorded in `state_dir`
//! (crate::control::state) when it is attached and forgotten when it is detached. A daemon
//! that dies (kill -9, a crash) or is stopped with `vswitchctl shutdown --keep-ports` leaves
//! the containers' interfaces in place (persistent TAPs) and the records with them; the next
//! daemon, before it serves anything, re-adopts each record (`adopt_saved_ports`): it reopens
//! the TAP inside its namespace (crate::control::adopt) or the packet sockets of an attached
//! interface, checks it, and publishes it again under its old port id (and, on a cluster
//! network, claims its address and publishes its endpoint again once the first view of etcd
//! is in). A record that no longer holds — namespace gone, interface gone or changed, network
//! gone — is dropped with what is left of it (its address, its claim in etcd, a resolv.conf
//! written for it, a stale TAP of ours), and the log says why.
//!
//! Ports the Docker plugin made are recorded too, once dockerd has moved them into the
//! container (their namespace is then named by the container's pid: /proc/PID/ns/net, since
//! dockerd's sandbox files may live in a mount namespace of its own), and the plugin's
//! networks, addresses and endpoints are kept beside the records (server/docker.rs), so a
//! Leave or DeleteEndpoint from dockerd after the restart finds its port.
//!
//! Runs on the control actor (and on vswitchd's main thread before the actor starts).

use super::{ControlError, PortRules, Server};
use crate::control::adopt::{self, Dropped};
use crate::control::attach::ResolvFiles;
use crate::control::state::{PortRecord, PortState};
use crate::dataplane::{PortDevice, PortMeta};
use crate::switch::PortId;
use crate::wire::MacAddr;
use ipnet::Ipv4Net;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the actor keeps for restarts: where records go, and what the operator asked of the
/// coming stop.
pub(super) struct Restart {
    state: PortState,
    /// Set by `vswitchctl shutdown --keep-ports`; read by vswitchd's main thread when it stops.
    keep_ports: Arc<AtomicBool>,
    /// Records on networks the cluster has not shown yet: adopted (or dropped) when the first
    /// view of etcd is applied.
    pending: Vec<PortRecord>,
}

/// What became of the saved ports at start.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Adoption {
    pub adopted: usize,
    pub dropped: usize,
    /// Waiting for the cluster's networks.
    pub pending: usize,
}

impl Server {
    /// Records ports in `state` and lets `vswitchctl shutdown --keep-ports` set `keep_ports`.
    pub fn with_state(mut self, state: PortState, keep_ports: Arc<AtomicBool>) -> Server {
        self.restart = Some(Restart {
            state,
            keep_ports,
            pending: Vec::new(),
        });
        self
    }

    /// Where records go, when this daemon keeps them.
    pub(super) fn state_store(&self) -> Option<&PortState> {
        self.restart.as_ref().map(|r| &r.state)
    }

    /// Records a port just attached (after its resolv.conf was written, which it includes).
    pub(super) fn remember_port(
        &mut self,
        id: PortId,
        meta: &PortMeta,
        security: bool,
        limits: crate::switch::LimitSettings,
        multi_queue: bool,
    ) {
        let Some(r) = &self.restart else { return };
        let rec = PortRecord {
            id: id.0,
            kind: meta.kind.to_string(),
            name: meta.name.clone(),
            network: meta.network.clone(),
            ifname: meta.ifname.clone(),
            netns: meta.netns.clone(),
            netns_id: meta.netns_id,
            mac: meta.mac.map(|m| m.to_string()),
            ip: meta.ip.map(|a| a.to_string()),
            mtu: meta.mtu,
            security,
            multi_queue,
            attachment: meta.attachment.clone(),
            resolv_conf: self.resolv.get(id.0),
            limits,
        };
        if let Err(e) = r.state.save(&rec) {
            tracing::warn!(
                port = id.0, dir = %r.state.dir().display(),
                "cannot record the port in state_dir: {e}; it will not be re-adopted after a restart"
            );
        }
    }

    /// Forgets the record of a port that was detached.
    pub(super) fn forget_port(&mut self, id: PortId) {
        let Some(r) = &self.restart else { return };
        if let Err(e) = r.state.remove(id.0) {
            tracing::warn!(
                port = id.0,
                "cannot remove the port's record from state_dir: {e}"
            );
        }
    }

    /// `vswitchctl shutdown [--keep-ports]`: marks what the stop keeps and signals this process
    /// to stop as SIGTERM does (vswitchd's main thread does the rest).
    pub(super) fn shutdown(&mut self, keep_ports: bool) -> Result<serde_json::Value, ControlError> {
        let Some(r) = &self.restart else {
            return Err("this vswitchd keeps no state_dir: stop it with SIGTERM".into());
        };
        r.keep_ports.store(keep_ports, Ordering::SeqCst);
        let ports = self.topology.ports().count();
        tracing::info!(keep_ports, ports, "stop requested over the control socket");
        // The stop is vswitchd's main's SIGTERM path; main waits for this answer to be written
        // (socket::answered) before it stops anything.
        // SAFETY: kill(2) of our own pid; signal_hook's handler in vswitchd's main takes it.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        Ok(serde_json::json!({ "keep_ports": keep_ports, "ports": ports }))
    }

    /// Re-adopts every port recorded by the previous daemon (see the module's comment). Call
    /// once, before the control socket is served.
    pub fn adopt_saved_ports(&mut self) -> Adoption {
        let mut out = Adoption::default();
        // The Docker plugin's networks first: its ports' records need them.
        self.restore_docker();
        let Some(r) = &self.restart else {
            return out;
        };
        let (records, unreadable) = match r.state.load() {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(dir = %r.state.dir().display(), "cannot read the saved ports: {e}; none re-adopted");
                return out;
            }
        };
        for u in unreadable {
            tracing::error!(file = %u.path.display(), "a saved port cannot be read ({}): set aside as .bad, not re-adopted", u.reason);
        }
        if records.is_empty() {
            return out;
        }
        tracing::info!(
            ports = records.len(),
            "re-adopting the ports the previous vswitchd left"
        );
        // The old ids stay; new ports get ids after them.
        self.next_port = self
            .next_port
            .max(records.iter().map(|r| r.id + 1).max().unwrap_or(1));
        for rec in records {
            if self.topology.network_by_name(&rec.network).is_none() && self.cluster.is_some() {
                // A cluster network: known once the first view of etcd is applied.
                out.pending += 1;
                if let Some(r) = self.restart.as_mut() {
                    r.pending.push(rec);
                }
                continue;
            }
            if self.adopt_one(rec) {
                out.adopted += 1;
            } else {
                out.dropped += 1;
            }
        }
        tracing::info!(
            adopted = out.adopted,
            dropped = out.dropped,
            waiting_for_cluster = out.pending,
            "saved ports re-adopted"
        );
        out
    }

    /// Adopts the records that waited for the cluster's networks (after a view was applied).
    pub(super) fn adopt_pending(&mut self) {
        let pending = match self.restart.as_mut() {
            Some(r) if !r.pending.is_empty() => std::mem::take(&mut r.pending),
            _ => return,
        };
        let (mut adopted, mut dropped) = (0, 0);
        for rec in pending {
            if self.adopt_one(rec) {
                adopted += 1;
            } else {
                dropped += 1;
            }
        }
        tracing::info!(
            adopted,
            dropped,
            "saved ports on cluster networks re-adopted"
        );
    }

    /// Adopts one record, or drops it and what is left of it; true when adopted.
    fn adopt_one(&mut self, rec: PortRecord) -> bool {
        let id = PortId(rec.id);
        match self.try_adopt(&rec) {
            Ok(info) => {
                tracing::info!(
                    port = rec.id, name = %rec.name, network = %rec.network, kind = %rec.kind,
                    ifname = %rec.ifname, netns = rec.netns.as_deref().unwrap_or("-"),
                    mac = rec.mac.as_deref().unwrap_or("-"), ip = rec.ip.as_deref().unwrap_or("-"),
                    queues = info["queues"].as_u64().unwrap_or(0),
                    "re-adopted"
                );
                if let Some(key) = &rec.attachment {
                    self.attachments.insert(key.clone(), id);
                }
                true
            }
            Err(d) => {
                tracing::warn!(
                    port = rec.id, name = %rec.name, network = %rec.network, kind = %rec.kind,
                    ifname = %rec.ifname, netns = rec.netns.as_deref().unwrap_or("-"),
                    ip = rec.ip.as_deref().unwrap_or("-"),
                    removed_interface = d.removed_interface,
                    "dropped: {}; its address is free again", d.reason
                );
                if let Some((path, made_dir)) = &rec.resolv_conf {
                    self.resolv.remove(rec.id);
                    ResolvFiles::remove_stale(path, *made_dir);
                }
                self.release_dropped(&rec);
                self.forget_port(id);
                false
            }
        }
    }

    /// Reopens the record's devices and publishes the port again; on a cluster network the
    /// address is claimed and the endpoint published again, as at attach.
    fn try_adopt(&mut self, rec: &PortRecord) -> Result<serde_json::Value, Dropped> {
        let gone = |reason: String| Dropped {
            reason,
            removed_interface: false,
        };
        let addr: Option<Ipv4Net> = rec.ip.as_deref().and_then(|s| s.parse().ok());
        let mac: Option<MacAddr> = rec.mac.as_deref().and_then(|s| s.parse().ok());
        if self.topology.network_by_name(&rec.network).is_none() {
            return Err(gone(format!(
                "network {} is not carried by this host any more",
                rec.network
            )));
        }
        let (devices, multi_queue): (PortDevices, bool) = match rec.kind.as_str() {
            "tap" => {
                // A port made with one queue (the default, crate::control::attach::
                // queues_per_port) is reopened with one, whatever the worker count.
                let queues = if rec.multi_queue {
                    self.workers.len()
                } else {
                    1
                };
                let taps = adopt::reopen_namespace_port(rec, self.tap_options, queues)?;
                (self.tap_devices(PortId(rec.id), taps), rec.multi_queue)
            }
            "af_packet" => (
                (
                    self.open_packet_sockets(&rec.ifname).map_err(|e| {
                        gone(format!("interface {} cannot be opened: {e}", rec.ifname))
                    })?,
                    None,
                ),
                false,
            ),
            other => return Err(gone(format!("unknown kind of port {other:?}"))),
        };
        // From here on, failing drops `devices`, which deletes our stale TAP.
        let removed = |reason: String| Dropped {
            reason,
            removed_interface: rec.kind == "tap",
        };
        let (vni, mtu) = self
            .check_endpoint(&rec.network, addr.map(|a| a.addr()), mac)
            .map_err(|e| removed(e.to_string()))?;
        let meta = PortMeta {
            name: rec.name.clone(),
            kind: if rec.kind == "tap" {
                "tap"
            } else {
                "af_packet"
            },
            network: rec.network.clone(),
            vni: vni.get(),
            ifname: rec.ifname.clone(),
            netns: rec.netns.clone(),
            netns_id: rec.netns_id,
            mac,
            ip: addr,
            mtu,
            attachment: rec.attachment.clone(),
        };
        if let Some((path, made_dir)) = &rec.resolv_conf {
            self.resolv.adopt(rec.id, path.clone(), *made_dir);
        }
        let id = PortId(rec.id);
        let endpoint = mac.zip(addr.map(|a| a.addr()));
        let claimed = match addr {
            Some(a) => self
                .claim_for_attach(&rec.network, Some(&a.addr().to_string()), &rec.name)
                .map_err(|e| removed(format!("its address cannot be claimed again: {e}")))?,
            None => None,
        };
        let rules = PortRules {
            security: rec.security,
            limits: rec.limits,
        };
        let added = self.add_port(devices, meta.clone(), vni, endpoint, id, rules);
        let added = match claimed {
            Some(c) => self.finish_attach(c, added),
            None => added,
        };
        let info = added.map_err(|e| removed(e.to_string()))?;
        self.remember_port(id, &meta, rec.security, rec.limits, multi_queue);
        Ok(info)
    }

    /// Gives back what a dropped record held in the cluster store (its endpoint and claim).
    fn release_dropped(&mut self, rec: &PortRecord) {
        let Some(ip) = rec.ip.as_deref() else { return };
        self.finish_detach(&serde_json::json!({
            "network": rec.network,
            "ip": ip,
            "name": rec.name,
        }));
    }
}

/// A port's devices, one per worker, and the worker that reads them when they share one queue
/// (`Server::tap_devices`).
type PortDevices = (Vec<Box<dyn PortDevice>>, Option<usize>);
