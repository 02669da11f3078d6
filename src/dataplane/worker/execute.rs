//! The executor: carries out the core's decisions — to ports (with receive coalescing), to
//! peers (VXLAN, sealed in ESP for an encrypted network, batched into UDP GSO runs), floods to
//! `Topology::flood_set`, and answers the switch writes itself. No allocation, lock or log per
//! packet.

use super::*;
use crate::switch::multicast::Scope;

/// Sends one UDP datagram (its header written) through the raw socket and counts what happened:
/// bytes to the peer and network, or the kernel's refusal by errno and a `tx_failed` drop.
fn send_counted(
    underlay: &Underlay,
    switch: &mut Switch,
    tx_errors: &mut TxErrors,
    datagram: &[u8],
    vtep: VtepAddr,
    vni: Vni,
) {
    match underlay.send(datagram, vtep.0) {
        Ok(()) => switch.note_vtep_tx(vni, vtep, datagram.len()),
        Err(e) => {
            tx_errors.count(&e);
            switch.note_tx_failed(vni);
        }
    }
}

impl Worker {
    /// Carries out the core's decision for a frame that came from the underlay (plain or
    /// decrypted); the frame follows the VXLAN header of `buf[datagram]`.
    pub(super) fn deliver_decapsulated(
        &mut self,
        action: Action,
        datagram: std::ops::Range<usize>,
    ) {
        let frame = datagram.start + vxlan::HEADER_LEN..datagram.end;
        if let Action::ToPort(p) = action {
            let mtu = self.ports.get(&p).map_or(u32::MAX, |port| port.meta.mtu);
            if let Some(hdr) = superframe::peer_super_frame(&self.buf[frame.clone()], mtu) {
                return self.deliver_super_frame(p, &hdr, frame);
            }
        }
        if matches!(
            action,
            Action::ToPort(_) | Action::Flood { .. } | Action::FloodScoped { .. }
        ) && crate::offload::csum::complete_partial(&mut self.buf[frame.clone()])
        {
            self.offload.partial_checksums += 1;
        }
        match action {
            Action::ToPort(p) => self.deliver_coalesced(p, frame),
            Action::Reply { port, answer } => self.send_answer(port, answer, frame),
            // Split horizon: the core never asks to send decapsulated frames to peers; DNS is
            // asked only from ports.
            Action::Flood {
                network, except, ..
            } => self.flood(network, except, false, Scope::All, 0, frame),
            Action::FloodScoped {
                network,
                except,
                scope,
                ..
            } => self.flood(network, except, false, scope, 0, frame),
            // Probes are answered by the caller, which knows the port they came from.
            Action::Drop(_)
            | Action::ToVtep { .. }
            | Action::Upstream { .. }
            | Action::Probe { .. } => {}
        }
    }

    /// Writes a peer's TCP super-frame (crate::offload::superframe) to port `id`: whole, with a
    /// virtio_net_hdr, where the port takes one; else cut into segments in the worker's
    /// scratch slots (never the slots where other datagrams of this read may wait).
    fn deliver_super_frame(
        &mut self,
        id: PortId,
        hdr: &vnet::Header,
        frame: std::ops::Range<usize>,
    ) {
        if self.coalescer.owner() == Some(id.0) {
            self.flush_coalescer();
        }
        superframe::prepare(&mut self.buf[frame.clone()]);
        let len = frame.len();
        let Some(port) = self.ports.get_mut(&id) else {
            return;
        };
        self.offload.peer_super_frames += 1;
        if port.device.accepts_gso() {
            match port.device.send_gso(hdr, &self.buf[frame]) {
                Ok(()) => self.switch.note_port_tx(id, len),
                Err(_) => self.switch.note_port_tx_failed(id),
            }
            return;
        }
        let scratch = &mut self.super_scratch;
        match tso::segment(
            hdr,
            &self.buf[frame],
            scratch,
            SEG_SLOT,
            0,
            &mut self.super_lens,
        ) {
            Ok(n) => {
                for k in 0..n {
                    let seg = &scratch[k * SEG_SLOT..k * SEG_SLOT + self.super_lens[k]];
                    match port.device.send(seg) {
                        Ok(()) => self.switch.note_port_tx(id, seg.len()),
                        Err(_) => self.switch.note_port_tx_failed(id),
                    }
                }
            }
            Err(_) => self.switch.note_port_drop(id, DropReason::BadOffload),
        }
    }

    /// Forwards a TSO super-frame (in the read slot). A TCP super-frame the core sends to one
    /// peer is decided once, on its headers (which every segment repeats), admitted by its
    /// longest segment: it goes through the host's tunnel device whole where it can, else is
    /// cut into MSS-sized segments in the segment slots that go to the peer together. Anything
    /// else is cut and each segment forwarded as if the container had sent it.
    pub(super) fn forward_super_frame(
        &mut self,
        now: Timestamp,
        id: PortId,
        hdr: &vnet::Header,
        len: usize,
    ) {
        // The segments are cut into the slots where earlier frames' datagrams may wait; and
        // what waits in the run was made before this frame.
        self.flush_gso_batch();
        let frame = HEADROOM..HEADROOM + len;
        let to_peer = self.decided_for_one_peer(now, id, hdr, frame.clone());
        if let Some((d, vtep, vni)) = &to_peer {
            if self.forward_through_tunnel(hdr, len, *vtep, *vni) {
                return self.switch.commit(now, d);
            }
        }
        let (read, segs) = self.buf.split_at_mut(READ_SLOT);
        let n = match tso::segment(
            hdr,
            &read[frame.clone()],
            segs,
            SEG_SLOT,
            HEADROOM,
            &mut self.seg_lens,
        ) {
            Ok(n) => n,
            Err(_) => return self.switch.note_port_drop(id, DropReason::BadOffload),
        };
        self.offload.tso_frames += 1;
        self.offload.tso_segments += n as u64;
        if let Some((d, vtep, vni)) = to_peer {
            self.switch.commit(now, &d);
            let flow = flow::source_port(&self.buf[frame]);
            return self.segments_to_vtep(n, vtep, vni, self.underlay.outer_source_port(flow));
        }
        // Datagrams to one peer are collected (drain_port) and sent as one UDP GSO run.
        for k in 0..n {
            self.forward_local_frame(now, id, READ_SLOT + k * SEG_SLOT, self.seg_lens[k]);
        }
    }

    /// The core's decision for the TCP super-frame at `buf[frame]`, made on its headers and
    /// admitted by its longest segment, when it sends the frame to one peer: with that peer
    /// and network. `None` for anything else (UDP super-frames, floods, local ports, drops).
    fn decided_for_one_peer(
        &self,
        now: Timestamp,
        id: PortId,
        hdr: &vnet::Header,
        frame: std::ops::Range<usize>,
    ) -> Option<(crate::switch::Decision, VtepAddr, Vni)> {
        if !matches!(hdr.gso_kind(), vnet::GSO_TCPV4 | vnet::GSO_TCPV6) {
            return None;
        }
        let longest = tso::longest_segment(hdr, &self.buf[frame.clone()])?;
        let d = self
            .switch
            .decide_super_frame(now, id, &self.buf[frame], longest);
        match d.action {
            Action::ToVtep { vtep, vni } => Some((d, vtep, vni)),
            _ => None,
        }
    }

    /// Sends the `n` segments in the segment slots, decided together, to `vtep`: each behind
    /// its VXLAN header (one flow, so one outer source port), sealed for an encrypted network,
    /// into the GSO run.
    fn segments_to_vtep(&mut self, n: usize, vtep: VtepAddr, vni: Vni, src_port: u16) {
        for k in 0..n {
            let (base, len) = (READ_SLOT + k * SEG_SLOT, self.seg_lens[k]);
            self.underlay.write_vxlan_headers(
                &mut self.buf[base + VXLAN_START..base + HEADROOM],
                len,
                vni.get(),
                src_port,
            );
            self.send_encapsulated(base, vtep, vni, len, src_port);
        }
    }

    /// Sends the frame at `buf[base + HEADROOM..][..len]`, its VXLAN headers written in front,
    /// to `vtep`: sealed for an encrypted network, into the GSO run where it can join one.
    fn send_encapsulated(
        &mut self,
        base: usize,
        vtep: VtepAddr,
        vni: Vni,
        len: usize,
        src_port: u16,
    ) {
        if self.switch.is_encrypted(vni) {
            return self.seal_to_vtep(base, vtep, vni, len, src_port, false);
        }
        let vxlan = base + HEADROOM - vxlan::HEADER_LEN..base + HEADROOM + len;
        let port = self.underlay.vxlan_port();
        if !self.batch_for_gso(vtep, vni, port, src_port, vxlan) {
            self.send_to_vtep(base, vtep, vni, len);
        }
    }

    /// Sends the container's TCP super-frame (in the read slot), decided for `vtep` on network
    /// `vni`, whole through the host's tunnel device (crate::io::tunnel), when the workers use
    /// it and the network is plaintext: whether the kernel took it. False when it is to be
    /// segmented here instead: no device, ESP, IPv6 inner TCP, a frame the kernel cannot take
    /// whole, or the device refusing it.
    fn forward_through_tunnel(
        &mut self,
        hdr: &vnet::Header,
        len: usize,
        vtep: VtepAddr,
        vni: Vni,
    ) -> bool {
        if !self.underlay.tunnel()
            || hdr.gso_kind() != vnet::GSO_TCPV4
            || self.switch.is_encrypted(vni)
        {
            return false;
        }
        let frame = HEADROOM..HEADROOM + len;
        let src_port = self
            .underlay
            .outer_source_port(flow::source_port(&self.buf[frame.clone()]));
        match self
            .underlay
            .send_tunnel(hdr, &self.buf[frame], vtep.0, vni.get(), src_port)
        {
            Ok(Ok(())) => {
                self.switch
                    .note_vtep_tx(vni, vtep, UDP_HEADER_LEN + vxlan::HEADER_LEN + len);
                self.offload.tunnel_frames += 1;
                true
            }
            Ok(Err(_)) => false,
            Err(e) => {
                self.tx_errors.count(&e);
                self.offload.tunnel_refused += 1;
                false
            }
        }
    }

    /// Takes the UDP payload `buf[payload]` (VXLAN, or ESP for an encrypted network) for
    /// `dst_port` at `vtep` into the GSO batch; false when no batch is being collected, or the
    /// payload is too large for a segment slot, and it must be sent on its own. A payload that
    /// cannot continue the run (another peer or source port, or after a shorter one) first
    /// sends the run, so datagrams leave in the order they were made. `src_port` (already
    /// chosen by flow hash) picks the GSO socket.
    ///
    /// A payload in the read slot would be overwritten by the next read, so it joins as a copy
    /// in the next free segment slot, at the same offsets (UDP header room in front): a frame
    /// no larger than a slot, whose copy costs less than the sendmsg it saves.
    pub(super) fn batch_for_gso(
        &mut self,
        vtep: VtepAddr,
        vni: Vni,
        dst_port: u16,
        src_port: u16,
        payload: std::ops::Range<usize>,
    ) -> bool {
        if !self.gso_batch.collecting {
            return false;
        }
        let in_read_slot = payload.end <= READ_SLOT;
        if in_read_slot && payload.end > SEG_SLOT {
            return false;
        }
        let b = &self.gso_batch;
        if let Some((v, n, port, sport)) = b.dest {
            // One destination, network and ports; equal sizes, a shorter last; room left.
            let first = b.items[0].1 - b.items[0].0;
            let prev = b.items[b.n - 1].1 - b.items[b.n - 1].0;
            if v != vtep
                || n != vni
                || port != dst_port
                || sport != src_port
                || payload.len() > first
                || prev != first
                || b.n == SEG_SLOTS
            {
                self.flush_gso_batch();
            }
        }
        let payload = if in_read_slot {
            let slot = READ_SLOT + self.gso_batch.n * SEG_SLOT;
            let from = payload.start - UDP_HEADER_LEN..payload.end;
            self.buf
                .copy_within(from, slot + payload.start - UDP_HEADER_LEN);
            slot + payload.start..slot + payload.end
        } else {
            payload
        };
        let b = &mut self.gso_batch;
        if b.dest.is_none() {
            b.dest = Some((vtep, vni, dst_port, src_port));
        }
        b.items[b.n] = (payload.start, payload.end);
        b.n += 1;
        b.added += 1;
        true
    }

    /// Sends the GSO batch: one sendmsg per run of at most 64 KB, or one datagram at a time
    /// (through the raw socket, UDP header written in front) if the kernel refuses the run.
    pub(super) fn flush_gso_batch(&mut self) {
        let Some((vtep, vni, dst_port, src_port)) = self.gso_batch.dest.take() else {
            return;
        };
        self.send_gso_run(vtep, vni, dst_port, src_port);
        let b = &mut self.gso_batch;
        for &read_at in &b.reads[..b.n_reads] {
            self.latency.record(read_at);
        }
        b.n_reads = 0;
    }

    pub(super) fn send_gso_run(&mut self, vtep: VtepAddr, vni: Vni, dst_port: u16, src_port: u16) {
        let n = std::mem::take(&mut self.gso_batch.n);
        let items = self.gso_batch.items;
        let seg_size = items[0].1 - items[0].0;
        // A GSO send is one UDP datagram to the kernel: at most 65,507 bytes of payload.
        let per_send = (65_507 / seg_size.max(1)).clamp(1, SEG_SLOTS);
        for chunk in items[..n].chunks(per_send) {
            let sent = {
                let mut parts = [std::io::IoSlice::new(&[]); SEG_SLOTS];
                for (k, &(start, end)) in chunk.iter().enumerate() {
                    parts[k] = std::io::IoSlice::new(&self.buf[start..end]);
                }
                self.underlay.send_segmented(
                    src_port,
                    &parts[..chunk.len()],
                    seg_size as u16,
                    vtep.0,
                    dst_port,
                )
            };
            match sent {
                Ok(()) => {
                    self.offload.gso_sends += 1;
                    self.offload.gso_datagrams += chunk.len() as u64;
                    for &(start, end) in chunk {
                        self.switch
                            .note_vtep_tx(vni, vtep, UDP_HEADER_LEN + end - start);
                    }
                }
                Err(e) => {
                    self.tx_errors.count(&e);
                    self.offload.gso_fallbacks += 1;
                    for &(start, end) in chunk {
                        let hdr = start - UDP_HEADER_LEN;
                        underlay::write_udp_header(
                            &mut self.buf[hdr..start],
                            src_port,
                            dst_port,
                            end - start,
                        );
                        let datagram = &self.buf[hdr..end];
                        send_counted(
                            &self.underlay,
                            &mut self.switch,
                            &mut self.tx_errors,
                            datagram,
                            vtep,
                            vni,
                        );
                    }
                }
            }
        }
    }

    /// Carries out the core's decision for the frame at `buf[base + HEADROOM..][..len]` that
    /// came from local port `id`. `base` is 0 for a frame as read, or a segment slot's start.
    pub(super) fn forward_local_frame(
        &mut self,
        now: Timestamp,
        id: PortId,
        base: usize,
        len: usize,
    ) {
        let frame = base + HEADROOM..base + HEADROOM + len;
        // Decide and commit, not `process_from_port`: that also writes a proxy-ARP answer
        // over the request, which `send_answer` writes again into the answer buffer.
        let d = self.switch.decide(
            now,
            crate::switch::Ingress::Port(id),
            &self.buf[frame.clone()],
        );
        self.switch.commit(now, &d);
        match d.action {
            Action::Drop(DropReason::BumRateLimited | DropReason::PortMacLimit) => {
                self.limited_in_batch += 1
            }
            Action::Drop(_) => {}
            Action::ToPort(p) => self.send_to_port(p, frame),
            Action::Reply { port, answer } => self.send_answer(port, answer, frame),
            Action::Upstream { port, network } => self.ask_upstream(port, network, frame),
            // Only from the underlay.
            Action::Probe { .. } => {}
            Action::ToVtep { vtep, vni } => {
                let src_port = self.encap_headers(base, len, vni);
                self.send_encapsulated(base, vtep, vni, len, src_port);
            }
            Action::Flood {
                network,
                except,
                to_peers,
            } => self.flood(network, except, to_peers, Scope::All, base, frame),
            Action::FloodScoped {
                network,
                except,
                to_peers,
                scope,
            } => self.flood(network, except, to_peers, scope, base, frame),
        }
    }

    /// Sends a flooded frame, `buf[frame]`, to every destination of `Topology::flood_set`:
    /// local ports as it is, peers encapsulated (and sealed, for an encrypted network) in
    /// front of it, the frame then being at `base + HEADROOM` (only frames from a port go to
    /// peers: what came from the underlay never goes back to it, split horizon).
    pub(super) fn flood(
        &mut self,
        network: Vni,
        except: Option<PortId>,
        to_peers: bool,
        scope: Scope,
        base: usize,
        frame: std::ops::Range<usize>,
    ) {
        // The snapshot this frame was decided by, held across the sends (no allocation).
        let topo = std::sync::Arc::clone(self.switch.topology());
        let len = frame.len();
        let mut headers: Option<u16> = None;
        let encrypted = self.switch.is_encrypted(network);
        for out in topo.flood_set_scoped(network, except, to_peers, scope) {
            match out {
                Output::Port(p) => self.send_to_port(p, frame.clone()),
                Output::Vtep(vtep) => {
                    let src_port = match headers {
                        Some(p) => p,
                        None => *headers.insert(self.encap_headers(base, len, network)),
                    };
                    if encrypted {
                        self.seal_to_vtep(base, vtep, network, len, src_port, true);
                    } else {
                        self.send_to_vtep(base, vtep, network, len);
                    }
                }
            }
        }
    }

    /// Writes UDP and VXLAN headers in front of the frame; returns the UDP source port, chosen
    /// by flow hash (RFC 7348 §5), which an ESP packet or a GSO run reuses.
    pub(super) fn encap_headers(&mut self, base: usize, len: usize, vni: Vni) -> u16 {
        let hash_port = flow::source_port(&self.buf[base + HEADROOM..base + HEADROOM + len]);
        let src_port = self.underlay.outer_source_port(hash_port);
        self.underlay.write_vxlan_headers(
            &mut self.buf[base + VXLAN_START..base + HEADROOM],
            len,
            vni.get(),
            src_port,
        );
        src_port
    }

    pub(super) fn send_to_vtep(&mut self, base: usize, vtep: VtepAddr, vni: Vni, len: usize) {
        // What waits in the GSO run was made first.
        self.flush_gso_batch();
        let datagram = &self.buf[base + VXLAN_START..base + HEADROOM + len];
        send_counted(
            &self.underlay,
            &mut self.switch,
            &mut self.tx_errors,
            datagram,
            vtep,
            vni,
        );
    }

    /// Encrypts the VXLAN datagram at `buf[base + VXLAN_START..base + HEADROOM + len]` for
    /// `vtep` and sends it (or adds it to the GSO run): in place, or, when the plaintext must
    /// stay for the next peer of a flood, from a copy in the ESP scratch buffer. Whatever
    /// fails, nothing goes out in plaintext.
    pub(super) fn seal_to_vtep(
        &mut self,
        base: usize,
        vtep: VtepAddr,
        vni: Vni,
        len: usize,
        src_port: u16,
        keep_plaintext: bool,
    ) {
        let Some(esp) = &mut self.esp else {
            self.switch
                .note_network_drop(vni, DropReason::EspSealFailed);
            return;
        };
        let plain = base + VXLAN_START..base + HEADROOM + len;
        // The flow's lane, from the port it goes out with: one receiving worker per flow.
        let lane = crate::crypto::keys::lane_of_port(src_port);
        let sealed = if keep_plaintext {
            let (t, p) = (self.unix, &self.buf[plain]);
            esp.table
                .seal_from(t, vni.get(), vtep.0, lane, p, &mut esp.scratch, ESP_START)
        } else {
            let n = plain.len();
            esp.table.seal(
                self.unix,
                vni.get(),
                vtep.0,
                lane,
                &mut self.buf,
                base + ESP_START,
                n,
            )
        };
        let Ok(esp_len) = sealed else {
            self.switch
                .note_network_drop(vni, DropReason::EspSealFailed);
            return;
        };
        let esp_port = esp.port;
        let at = if keep_plaintext { 0 } else { base };
        let payload = at + ESP_START..at + ESP_START + esp_len;
        if !keep_plaintext && self.batch_for_gso(vtep, vni, esp_port, src_port, payload.clone()) {
            return;
        }
        self.flush_gso_batch();
        let buf = match &mut self.esp {
            Some(e) if keep_plaintext => &mut e.scratch[..],
            _ => &mut self.buf[..],
        };
        underlay::write_udp_header(
            &mut buf[at + OUTER_UDP_START..payload.start],
            src_port,
            esp_port,
            esp_len,
        );
        let datagram = &buf[at + OUTER_UDP_START..payload.end];
        send_counted(
            &self.underlay,
            &mut self.switch,
            &mut self.tx_errors,
            datagram,
            vtep,
            vni,
        );
    }

    /// Delivers a decapsulated frame to `id`, merging consecutive TCP segments (and, where the
    /// port takes them, UDP datagrams) of a flow into one super-frame (crate::offload::gro).
    pub(super) fn deliver_coalesced(&mut self, id: PortId, frame: std::ops::Range<usize>) {
        let (accepts, udp) = self.ports.get(&id).map_or((false, false), |p| {
            (p.device.accepts_gso(), p.device.accepts_udp_gso())
        });
        if accepts {
            if self.coalescer.push(id.0, &self.buf[frame.clone()], udp) {
                self.switch.note_port_tx(id, frame.len());
                return;
            }
            self.flush_coalescer();
            if self.coalescer.push(id.0, &self.buf[frame.clone()], udp) {
                self.switch.note_port_tx(id, frame.len());
                return;
            }
        }
        self.send_to_port(id, frame);
    }

    /// Writes the run in progress, if any, to its port.
    pub(super) fn flush_coalescer(&mut self) {
        let Some(owner) = self.coalescer.owner() else {
            return;
        };
        let id = PortId(owner);
        let segments = self.coalescer.segments() as u64;
        let Some((hdr, frame)) = self.coalescer.take() else {
            return;
        };
        if hdr.is_some() {
            self.offload.coalesced_frames += 1;
            self.offload.coalesced_segments += segments;
        }
        let Some(port) = self.ports.get_mut(&id) else {
            return;
        };
        let sent = match hdr {
            Some(h) => port.device.send_gso(&h, frame),
            None => port.device.send(frame),
        };
        if sent.is_err() {
            self.switch.note_port_tx_failed(id);
        }
    }

    pub(super) fn send_to_port(&mut self, id: PortId, frame: std::ops::Range<usize>) {
        // Keep a flow's order: what waits in the coalescer for this port goes first.
        if self.coalescer.owner() == Some(id.0) {
            self.flush_coalescer();
        }
        let Some(port) = self.ports.get_mut(&id) else {
            return;
        };
        let len = frame.len();
        match port.device.send(&self.buf[frame]) {
            Ok(()) => self.switch.note_port_tx(id, len),
            Err(_) => self.switch.note_port_tx_failed(id),
        }
    }

    /// Writes an answer the switch made (proxy-ARP, DNS) to the request in `buf[request]` to
    /// port `id`, from the answer buffer.
    pub(super) fn send_answer(
        &mut self,
        id: PortId,
        answer: Answer,
        request: std::ops::Range<usize>,
    ) {
        if self.coalescer.owner() == Some(id.0) {
            self.flush_coalescer();
        }
        let len = self
            .switch
            .write_answer(&answer, &self.buf[request], &mut self.answer);
        if len == 0 {
            return;
        }
        let Some(port) = self.ports.get_mut(&id) else {
            return;
        };
        match port.device.send(&self.answer[..len]) {
            Ok(()) => self.switch.note_port_tx(id, len),
            Err(_) => self.switch.note_port_tx_failed(id),
        }
    }

    /// Answers a peer's probe (crate::wire::probe, decided by the core) to `from:to_port`, from
    /// UDP port `from_port` (the port it arrived at), through the raw socket. The wall clock the
    /// reply carries is read here: one vDSO read per probe, and probes come every few seconds.
    pub(super) fn answer_probe(
        &mut self,
        from: VtepAddr,
        to_port: u16,
        from_port: u16,
        request: &crate::wire::probe::Request,
    ) {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let (hdr, body) = self.answer.split_at_mut(UDP_HEADER_LEN);
        let n = self
            .switch
            .write_probe_reply(request, wall, &self.node_name, body);
        underlay::write_udp_header(hdr, from_port, to_port, n);
        if let Err(e) = self
            .underlay
            .send(&self.answer[..UDP_HEADER_LEN + n], from.0)
        {
            self.tx_errors.count(&e);
        }
    }

    /// Hands the DNS query in `buf[frame]` to the forwarder, by value into a slot of its
    /// bounded channel; a query with no room (or no forwarder) is counted and left to the
    /// container's resolver to ask again.
    fn ask_upstream(&mut self, port: PortId, network: Vni, frame: std::ops::Range<usize>) {
        let Some(up) = &self.upstream else {
            return;
        };
        let sent = crate::switch::dns::UpstreamQuery::new(port, network, &self.buf[frame])
            .is_some_and(|q| up.queries.try_send(q).is_ok());
        if !sent {
            up.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
