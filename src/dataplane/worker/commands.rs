//! Commands from the control side, between batches: ports handed over and taken back,
//! `show` views, `trace`.

use super::*;

impl Worker {
    /// Returns false on Stop.
    pub(super) fn handle_commands(&mut self, now: Timestamp) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Stop => return false,
                Command::AddPort {
                    id,
                    device,
                    meta,
                    endpoint,
                    announce,
                    reply,
                } => {
                    let r = self.add_port(now, id, device, meta, endpoint, announce);
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
        announce: bool,
    ) -> Result<api::PortInfo, String> {
        self.refresh_topology();
        if self.switch.topology().port(id).is_none() {
            return Err(format!("port {id} is not in the published topology"));
        }
        let token = Token(id.0 as usize + PORT_TOKEN_BASE);
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&device.fd()), token, Interest::READABLE)
        {
            return Err(format!("cannot poll the port: {e}"));
        }
        self.ports.insert(id, Port { device, meta });
        // Frames may already wait (edge-triggered poll): look once.
        self.pending.push(token);
        if let (Some((mac, ip)), true) = (endpoint, announce) {
            // Announce the endpoint as if it had sent a gratuitous ARP itself, so the peers'
            // tables (and their containers' ARP caches) learn it at once.
            let len = garp::build(&mut self.buf[HEADROOM..], mac, ip);
            self.forward_local_frame(now, id, 0, len);
        }
        Ok(self.port_info(id).expect("port was just added"))
    }

    pub(super) fn remove_port(&mut self, id: PortId) -> Option<api::PortInfo> {
        let info = self.port_info(id);
        let port = self.ports.remove(&id)?;
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&port.device.fd()));
        tracing::info!(port = %port.meta.name, ifname = %port.meta.ifname, "port removed");
        drop(port);
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
            for sa in self.sa_info(false) {
                let to = format!("vtep {} ", sa.dst);
                if sa.vni == input.network.get()
                    && sa.direction == "out"
                    && t.outputs.iter().any(|o| o.starts_with(&to))
                {
                    t.steps.push(Step {
                        step: "esp",
                        detail: format!(
                            "sealed for {} with SA spi 0x{:08x}, ESP-in-UDP",
                            sa.peer, sa.spi
                        ),
                    });
                }
            }
        }
        before.append(&mut t.steps);
        t.steps = before;
        t
    }

    pub(super) fn port_info(&self, id: PortId) -> Option<api::PortInfo> {
        let p = self.ports.get(&id)?;
        let counters = self
            .switch
            .port_counters(id)
            .map(view::counters)
            .unwrap_or_default();
        Some(api::PortInfo {
            id: id.0,
            name: p.meta.name.clone(),
            kind: p.meta.kind.to_string(),
            network: p.meta.network.clone(),
            vni: p.meta.vni,
            ifname: p.meta.ifname.clone(),
            netns: p.meta.netns.clone(),
            mac: p.meta.mac.map(|m| m.to_string()),
            ip: p.meta.ip.map(|n| n.to_string()),
            mtu: p.meta.mtu,
            counters,
            queues: 1,
            attachment: p.meta.attachment.clone(),
            dns: None,
        })
    }

    pub(super) fn ports_info(&self) -> Vec<api::PortInfo> {
        let mut ids: Vec<PortId> = self.ports.keys().copied().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| self.port_info(id))
            .collect()
    }

    pub(super) fn sa_info(&self, secrets: bool) -> Vec<api::SaInfo> {
        let Some(esp) = &self.esp else {
            return Vec::new();
        };
        esp.table
            .sa_list(self.unix)
            .into_iter()
            .map(|sa| api::SaInfo {
                network: Vni::new(sa.vni)
                    .and_then(|v| self.switch.topology().network(v))
                    .map_or_else(|| "?".to_string(), |n| n.spec.name.clone()),
                vni: sa.vni,
                peer: self
                    .switch
                    .topology()
                    .peer(VtepAddr(sa.peer))
                    .map(|p| p.name.as_str())
                    .map_or_else(|| sa.peer.to_string(), str::to_string),
                direction: sa.direction.to_string(),
                src: sa.src.to_string(),
                dst: sa.dst.to_string(),
                spi: sa.spi,
                seq: sa.seq,
                age_secs: sa.age_secs,
                packets: sa.packets,
                bytes: sa.bytes,
                drops: sa.drops,
                key: secrets.then(|| sa.key_hex.clone()),
            })
            .collect()
    }

    /// Underlay drops by reason: the core's, and ESP packets refused before the core.
    pub(super) fn underlay_drops(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m = self.switch.underlay_drops().to_map();
        if let Some(esp) = &self.esp {
            for d in EspDrop::ALL {
                let n = esp.drops[*d as usize];
                if n > 0 {
                    m.insert(d.name().to_string(), n);
                }
            }
        }
        m
    }

    pub(super) fn show(&self, what: api::ShowWhat, secrets: bool, now: Timestamp) -> View {
        use api::ShowWhat::*;
        match what {
            Networks => View::Networks(self.switch.networks_info()),
            Ports => View::Ports(self.ports_info()),
            Fdb => View::Fdb(self.switch.fdb_info(now)),
            Neigh => View::Neigh(self.switch.neigh_info(now)),
            Peers => View::Peers(self.switch.peers_info(now)),
            Sa => View::Sa(self.sa_info(secrets)),
            Stats => View::Stats(Box::new(api::Stats {
                uptime_secs: now.0 / 1000,
                ports: self.ports_info(),
                networks: self.switch.network_stats(),
                underlay: api::UnderlayStats {
                    rx_packets: self.switch.underlay.rx_packets,
                    rx_bytes: self.switch.underlay.rx_bytes,
                    tx_packets: self.switch.underlay.tx_packets,
                    tx_bytes: self.switch.underlay.tx_bytes,
                    drops: self.underlay_drops(),
                    tx_errors: self.tx_errors.to_map(),
                },
                latency: vec![self.latency.stats(self.load.worker)],
                offload: self.offload.clone(),
                dns: None,
                workers: vec![api::WorkerStats {
                    updates_lost: self.load.updates_lost + self.switch.updates_lost(),
                    busy_poll_windows: self.busy_poll.windows,
                    busy_poll_given_up: self.busy_poll.given_up,
                    ..self.load.clone()
                }],
            })),
        }
    }
}
