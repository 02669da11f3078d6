//! Commands from the control side, between batches: ports handed over and taken back,
//! `show` views, `trace`.

use super::*;
use crate::dataplane::view::{SaRow, StatsView, UnderlayView, ViewKind, WorkerRow};

impl Worker {
    /// Returns false on Stop.
    pub(super) fn handle_commands(&mut self, now: Timestamp) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Stop => return false,
                Command::StartTunnel => self.underlay.start_tunnel(),
                Command::StopTunnel => self.underlay.stop_tunnel(),
                Command::AddPort {
                    id,
                    device,
                    meta,
                    endpoint,
                    announce,
                    read,
                    reply,
                } => {
                    let r = self.add_port(now, id, device, meta, endpoint, (announce, read));
                    let _ = reply.send(r);
                }
                Command::RemovePort { select, reply } => {
                    let found = self
                        .ports
                        .iter()
                        .find(|(id, p)| select(**id, &p.meta))
                        .map(|(id, _)| *id);
                    let r = match found {
                        Some(id) => self
                            .remove_port(id)
                            .ok_or_else(|| "port vanished".to_string()),
                        None => Err("no such port".to_string()),
                    };
                    let _ = reply.send(r);
                }
                Command::SendToPort { port, frame } => {
                    if let Some(p) = self.ports.get_mut(&port) {
                        match p.device.send(&frame) {
                            Ok(()) => self.switch.note_port_tx(port, frame.len()),
                            Err(_) => self.switch.note_port_tx_failed(port),
                        }
                    }
                }
                Command::Trace { input, reply } => {
                    let _ = reply.send(self.trace(now, input));
                }
                Command::Show {
                    what,
                    secrets,
                    reply,
                } => {
                    let _ = reply.send(self.show(what, secrets, now));
                }
            }
        }
        true
    }

    /// Takes the device of a port the control side has just published in the topology.
    pub(super) fn add_port(
        &mut self,
        now: Timestamp,
        id: PortId,
        device: Box<dyn PortDevice>,
        meta: PortMeta,
        endpoint: Option<(MacAddr, Ipv4Addr)>,
        // Send the endpoint's gratuitous ARP; read (poll) the device (Command::AddPort).
        (announce, read): (bool, bool),
    ) -> Result<PortRow, String> {
        self.refresh_topology();
        if self.switch.topology().port(id).is_none() {
            return Err(format!("port {id} is not in the published topology"));
        }
        let token = Token(id.0 as usize + PORT_TOKEN_BASE);
        if read {
            if let Err(e) = self.poll.registry().register(
                &mut SourceFd(&device.fd()),
                token,
                Interest::READABLE,
            ) {
                return Err(format!("cannot poll the port: {e}"));
            }
        }
        self.ports.insert(id, Port { device, meta, read });
        if read {
            // Frames may already wait (edge-triggered poll): look once.
            self.pending.push(token);
        }
        if let (Some((mac, ip)), true) = (endpoint, announce) {
            // Announce the endpoint as if it had sent a gratuitous ARP itself, so the peers'
            // tables (and their containers' ARP caches) learn it at once.
            let len = garp::build(&mut self.buf[HEADROOM..], mac, ip);
            self.forward_local_frame(now, id, 0, len);
        }
        Ok(self.port_row(id).expect("port was just added"))
    }

    pub(super) fn remove_port(&mut self, id: PortId) -> Option<PortRow> {
        let info = self.port_row(id);
        let port = self.ports.remove(&id)?;
        crate::switch::shrink_sparse(&mut self.ports);
        if port.read {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&port.device.fd()));
        }
        tracing::info!(port = %port.meta.name, ifname = %port.meta.ifname, "port removed");
        crate::dataplane::reaper::reap(id, port.device);
        info
    }

    /// What would happen to the frame of `input`: the same `decide` as forwarding, then
    /// nothing applied and nothing sent.
    pub(super) fn trace(&self, now: Timestamp, input: TraceInput) -> crate::switch::trace::Trace {
        use crate::switch::trace::{self, Step};
        let mut before = Vec::new();
        let frame = match input.frame {
            TraceFrame::Bytes(b) => b,
            TraceFrame::Made {
                src_ip,
                dst_ip,
                proto,
                dport,
                src_mac,
                dst_mac,
            } => {
                let src_mac = src_mac
                    .or_else(|| {
                        let p = self.switch.topology().port(*input.ingress.as_ref().ok()?)?;
                        p.endpoint.map(|(m, _)| m)
                    })
                    .or_else(|| self.switch.resolve(input.network, src_ip))
                    .unwrap_or(MacAddr([0x02, 0, 0, 0, 0, 0x01]));
                let mut buf = vec![0u8; 128];
                match dst_mac.or_else(|| self.switch.resolve(input.network, dst_ip)) {
                    Some(dst_mac) => {
                        let n = trace::synthesize(
                            &mut buf,
                            (src_mac, dst_mac),
                            (src_ip, dst_ip),
                            proto,
                            dport,
                        );
                        buf.truncate(n);
                    }
                    None => {
                        // What the container does first: ask for the MAC.
                        before.push(Step {
                            step: "resolve",
                            detail: format!(
                                "no MAC known for {dst_ip}: the sender first broadcasts an ARP request for it, traced here"
                            ),
                        });
                        let n = garp::request(&mut buf, src_mac, src_ip, dst_ip);
                        buf.truncate(n);
                    }
                }
                buf
            }
        };
        let encrypted = self.switch.is_encrypted(input.network);
        let mut t = match input.ingress {
            Ok(port) => self
                .switch
                .trace(now, crate::switch::Ingress::Port(port), &frame),
            Err(from) => {
                let mut d = vec![0u8; vxlan::HEADER_LEN + frame.len()];
                vxlan::emit(&mut d, input.network.get());
                d[vxlan::HEADER_LEN..].copy_from_slice(&frame);
                let ingress = if encrypted {
                    crate::switch::Ingress::Decrypted {
                        from,
                        sa_vni: input.network,
                    }
                } else {
                    crate::switch::Ingress::Underlay(from)
                };
                self.switch.trace(now, ingress, &d)
            }
        };
        if encrypted && matches!(t.verdict, "encapsulate" | "flood") {
            for r in self.sa_rows(false) {
                let to = format!("vtep {} ", r.sa.dst);
                if r.sa.vni == input.network.get()
                    && r.sa.direction == "out"
                    && t.outputs.iter().any(|o| o.starts_with(&to))
                {
                    t.steps.push(Step {
                        step: "esp",
                        detail: format!(
                            "sealed for {} with SA spi 0x{:08x}, ESP-in-UDP",
                            r.peer, r.sa.spi
                        ),
                    });
                }
            }
        }
        before.append(&mut t.steps);
        t.steps = before;
        t
    }

    pub(super) fn port_row(&self, id: PortId) -> Option<PortRow> {
        let p = self.ports.get(&id)?;
        Some(PortRow {
            id,
            meta: p.meta.clone(),
            counters: self.switch.port_counters(id).cloned().unwrap_or_default(),
            queues: 1,
        })
    }

    pub(super) fn port_rows(&self) -> Vec<PortRow> {
        let mut ids: Vec<PortId> = self.ports.keys().copied().collect();
        ids.sort();
        ids.into_iter().filter_map(|id| self.port_row(id)).collect()
    }

    pub(super) fn sa_rows(&self, secrets: bool) -> Vec<SaRow> {
        let Some(esp) = &self.esp else {
            return Vec::new();
        };
        let topo = self.switch.topology();
        esp.table
            .sa_list(self.unix)
            .into_iter()
            .map(|sa| SaRow {
                network: Vni::new(sa.vni)
                    .and_then(|v| topo.network(v))
                    .map_or_else(|| "?".to_string(), |n| n.spec.name.clone()),
                peer: topo
                    .peer(VtepAddr(sa.peer))
                    .map_or_else(|| sa.peer.to_string(), |p| p.name.clone()),
                key: secrets.then(|| sa.key_hex.clone()),
                sa,
            })
            .collect()
    }

    pub(super) fn show(&self, what: ViewKind, secrets: bool, now: Timestamp) -> View {
        match what {
            ViewKind::Networks => View::Networks(self.switch.network_rows()),
            ViewKind::Ports => View::Ports(self.port_rows()),
            ViewKind::Fdb => View::Fdb(self.switch.fdb_rows(now)),
            ViewKind::Neigh => View::Neigh(self.switch.neigh_rows(now)),
            ViewKind::Peers => View::Peers(self.switch.peer_rows(now)),
            ViewKind::Sa => View::Sa(self.sa_rows(secrets)),
            ViewKind::Stats => View::Stats(Box::new(StatsView {
                uptime_secs: now.0 / 1000,
                ports: self.port_rows(),
                networks: self.switch.network_stats_rows(),
                underlay: UnderlayView {
                    traffic: self.switch.underlay.clone(),
                    esp_drops: self.esp.as_ref().map(|e| e.drops).unwrap_or_default(),
                    tx_errors: self.tx_errors,
                },
                latency: vec![self.latency.stats(self.index)],
                offload: self.offload,
                workers: vec![WorkerRow {
                    worker: self.index,
                    cpu: self.cpu,
                    counters: WorkerCounters {
                        updates_lost: self.load.updates_lost + self.switch.updates_lost(),
                        busy_poll_windows: self.busy_poll.windows,
                        busy_poll_given_up: self.busy_poll.given_up,
                        busy_poll_gated: self.busy_poll.gated_count(),
                        ..self.load
                    },
                }],
            })),
        }
    }
}
