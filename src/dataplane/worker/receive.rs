//! Reading a ready source in batches: the underlay's plain and ESP sockets (recvmmsg, GRO runs
//! split into datagrams, ESP opened in place) and a port's device (frames, or TSO/USO
//! super-frames cut into segments), each frame handed to the core and its decision carried
//! out (execute.rs). Nothing here allocates, locks or logs per packet.

use super::*;

impl Worker {
    /// VXLAN from peers, each datagram to the core.
    pub(super) fn drain_underlay(&mut self, now: Timestamp) {
        self.drain_socket(UNDERLAY, |w, got, at| {
            w.load.underlay_datagrams += 1;
            let start = Instant::now();
            w.forward_datagram(now, (VtepAddr(got.src), got.src_port), at);
            w.latency.record(start);
        });
        self.flush_coalescer();
    }

    /// Reads the underlay socket `source` (UNDERLAY or UNDERLAY_ESP) in batches, one recvmmsg
    /// for up to RECV_BATCH datagrams or GRO runs (slot k at k * RX_SLOT), and hands each
    /// datagram to `each` with the read it came in. After BUDGET datagrams it leaves the rest
    /// for the next turn (`pending`); a short batch means the queue is empty.
    fn drain_socket(
        &mut self,
        source: Token,
        mut each: impl FnMut(&mut Self, &underlay::DatagramRun, std::ops::Range<usize>),
    ) {
        let mut runs = [underlay::DatagramRun::EMPTY; underlay::RECV_BATCH];
        let mut taken = 0;
        while taken < BUDGET {
            let read = if source == UNDERLAY_ESP {
                self.underlay
                    .recv_esp_many(&mut self.buf, RX_SLOT, &mut runs)
            } else {
                self.underlay.recv_many(&mut self.buf, RX_SLOT, &mut runs)
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    let what = if source == UNDERLAY_ESP {
                        "ESP"
                    } else {
                        "underlay"
                    };
                    tracing::warn!("{what} receive failed: {e}");
                    return;
                }
            };
            taken += n;
            for (k, got) in runs[..n].iter().enumerate() {
                // With UDP GRO one read may hold a run of datagrams of `seg` bytes each (for
                // ESP, all of one sender's source port, so of one lane).
                if got.is_gro_run() {
                    self.offload.gro_runs += 1;
                }
                for at in got.datagrams(k * RX_SLOT) {
                    each(self, got, at);
                }
            }
            if n < runs.len() {
                // The queue was empty: the next datagram is a new edge for the poll.
                return;
            }
        }
        self.pending.push(source);
    }

    /// Carries out the core's decision for the plaintext VXLAN datagram at `buf[datagram]`.
    /// `src` is the sender's address and UDP port.
    pub(super) fn forward_datagram(
        &mut self,
        now: Timestamp,
        src: (VtepAddr, u16),
        datagram: std::ops::Range<usize>,
    ) {
        let action = self
            .switch
            .process_from_underlay(now, src.0, &self.buf[datagram.clone()]);
        if let Action::Probe { from, request } = action {
            return self.answer_probe(from, src.1, self.underlay.vxlan_port(), &request);
        }
        self.deliver_decapsulated(action, datagram);
    }

    /// ESP-in-UDP from peers: verify, decrypt and replay-check in place, then hand the VXLAN
    /// datagram inside to the core, which checks it names the SA's network.
    pub(super) fn drain_esp(&mut self, now: Timestamp) {
        self.drain_socket(UNDERLAY_ESP, |w, got, at| {
            if crate::wire::probe::is_probe(&w.buf[at.clone()]) {
                // A probe to the ESP port (RFC 3948's non-ESP marker first): answered from it.
                let action = w
                    .switch
                    .process_from_underlay(now, VtepAddr(got.src), &w.buf[at]);
                if let (Action::Probe { from, request }, Some(esp)) = (action, &w.esp) {
                    w.answer_probe(from, got.src_port, esp.port, &request);
                }
            } else {
                w.open_esp(now, got.src, at);
            }
        });
        self.flush_coalescer();
    }

    /// Verifies, decrypts and replay-checks the ESP datagram at `buf[at]` in place, then hands
    /// the VXLAN datagram inside to the core.
    fn open_esp(&mut self, now: Timestamp, src: Ipv4Addr, at: std::ops::Range<usize>) {
        let Some(esp) = &mut self.esp else { return };
        let start = Instant::now();
        self.load.underlay_datagrams += 1;
        self.switch.note_underlay_rx(at.len());
        let opened = esp
            .table
            .open(self.unix, now.0, src, &mut self.buf[at.clone()]);
        let (vni, plain) = match opened {
            Ok(r) => r,
            Err(d) => {
                esp.drops.count(d);
                self.load.esp_refused += 1;
                return;
            }
        };
        self.load.esp_opened += 1;
        // plain = inner UDP header, VXLAN header, frame; relative to the datagram.
        let datagram = at.start + plain.start + UDP_HEADER_LEN..at.start + plain.end;
        let Some(vni) = Vni::new(vni) else { return };
        let action =
            self.switch
                .process_decrypted(now, VtepAddr(src), &self.buf[datagram.clone()], vni);
        self.deliver_decapsulated(action, datagram);
        self.latency.record(start);
    }

    /// Reads a batch of frames from port `id` and forwards them. The datagrams they make for
    /// one peer (and one source port) leave together as a UDP GSO run when the batch ends —
    /// one sendmsg for the batch rather than one per frame — or sooner when a datagram for
    /// another peer, or one sent on its own, must go out after them.
    pub(super) fn drain_port(&mut self, now: Timestamp, id: PortId) {
        self.gso_batch.collecting = self.underlay.segmentation();
        self.drain_port_batch(now, id);
        self.flush_gso_batch();
        self.gso_batch.collecting = false;
    }

    pub(super) fn drain_port_batch(&mut self, now: Timestamp, id: PortId) {
        self.limited_in_batch = 0;
        for _ in 0..BUDGET {
            let Some(port) = self.ports.get_mut(&id) else {
                return;
            };
            let got = match port
                .device
                .recv(&mut self.buf[HEADROOM..READ_SLOT - TAILROOM])
            {
                Ok(Some(got)) => got,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(port = %port.meta.name, "port failed ({e}); detaching it (was its namespace deleted?)");
                    self.remove_port(id);
                    return;
                }
            };
            let start = Instant::now();
            self.load.port_frames += 1;
            let added = self.gso_batch.added;
            match got.gso {
                None => self.forward_local_frame(now, id, 0, got.len),
                Some(hdr) => self.forward_super_frame(now, id, &hdr, got.len),
            }
            let b = &mut self.gso_batch;
            if b.added != added && b.dest.is_some() && b.n_reads < SEG_SLOTS {
                // Not sent yet: counted when its run is.
                b.reads[b.n_reads] = start;
                b.n_reads += 1;
            } else {
                self.latency.record(start);
            }
        }
        // A full batch mostly over the limits (the bucket lets a few through as it refills).
        if self.limited_in_batch * 4 >= BUDGET * 3 && self.throttled.len() < THROTTLED_MAX {
            self.throttled.push((id, now));
            self.load.throttled_batches += 1;
        } else {
            self.pending.push(Token(id.0 as usize + PORT_TOKEN_BASE));
        }
    }
}
