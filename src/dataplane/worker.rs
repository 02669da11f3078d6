//! The worker: one thread running an event loop (mio, edge-triggered, a budget of frames per
//! source per turn) over the underlay sockets and every local port. It owns the `Switch` and
//! carries out the `Action`s the core returns. Commands from the control thread (attach,
//! detach, show, stop) arrive on a channel with a waker.
//!
//! Buffer: one preallocated buffer, a read slot (up to a 64 KB TSO super-frame) followed by
//! segment slots. Every frame sits `HEADROOM` bytes into its slot, so encapsulation — UDP and
//! VXLAN, or UDP, ESP, inner UDP and VXLAN — is written in front of it, never copied.
//!
//! Offloads (crate::offload): a super-frame from a container is cut into segments, and the
//! datagrams that one batch of port reads makes for a peer (segments, or small frames, each
//! copied into a segment slot) go to it as UDP GSO runs, one sendmsg per run; datagrams from
//! the underlay (a UDP GRO run or one at a time) are coalesced per TCP (or, for TAPs with USO,
//! UDP) flow and written to a TAP port once per run.
//!
//! Per packet there is no allocation, no lock and no log (tests/no_alloc.rs). `now` and the
//! wall clock are read once per loop turn; two monotonic clock reads per frame feed the latency
//! histogram.

use super::busy_poll::BusyPoll;
use super::port::{PortDevice, PortMeta};
use super::sync::SyncLinks;
use super::view::{self, SwitchViews, View};
use crate::control::api;
use crate::crypto::{EspDrop, EspTable};
use crate::io::underlay::{self, Underlay, UDP_HEADER_LEN, VXLAN_HEADERS_LEN};
use crate::offload::gro::Coalescer;
use crate::offload::{tso, vnet};
use crate::switch::topology::Output;
use crate::switch::DropReason;
use crate::switch::{garp, Action, Answer, PortId, Published, Switch, Timestamp, Vni, VtepAddr};
use crate::wire::esp;
use crate::wire::{flow, vxlan, MacAddr};
use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const WAKER: Token = Token(0);
const UNDERLAY: Token = Token(1);
const UNDERLAY_ESP: Token = Token(2);
const PORT_TOKEN_BASE: usize = 3;
/// Where a frame from a local port is read into the buffer: room in front for the outer UDP
/// header, ESP header and IV, inner UDP header and VXLAN header, so encapsulation (plain or
/// encrypted) writes in front of the frame and never moves it.
pub const HEADROOM: usize = 40;
/// Plain VXLAN starts here: UDP + VXLAN headers right before the frame. When encrypted, the
/// same bytes are the inner UDP and VXLAN headers that ESP protects.
const VXLAN_START: usize = HEADROOM - VXLAN_HEADERS_LEN;
/// ESP header and IV go right before the protected datagram; the outer UDP header before that.
const ESP_START: usize = VXLAN_START - esp::PREFIX_LEN;
const OUTER_UDP_START: usize = ESP_START - UDP_HEADER_LEN;
/// Room kept after the largest frame we read, for the ESP trailer and ICV.
const TAILROOM: usize = 64;
/// Frames taken from one source before the others get a turn. At most `SEG_SLOTS`: each read
/// of a batch may leave one datagram waiting in a segment slot for the GSO run.
const BUDGET: usize = 64;
/// The read slot: large enough for any frame a TAP or AF_PACKET socket hands over, a 64 KB TSO
/// super-frame included, with headroom and tailroom.
const READ_SLOT: usize = HEADROOM + 65536 + TAILROOM;
/// Segment slots follow the read slot: a super-frame is cut into them (crate::offload::tso),
/// each segment with the same headroom, so it is forwarded in place like a frame as read.
const SEG_SLOT: usize = 2048;
const SEG_SLOTS: usize = 64;
const BUF_LEN: usize = READ_SLOT + SEG_SLOT * SEG_SLOTS;
const _: () = assert!(BUDGET <= SEG_SLOTS);

/// Picks a port by its id and description (detach by namespace and name, or by id).
pub type PortSelector = std::sync::Arc<dyn Fn(PortId, &PortMeta) -> bool + Send + Sync>;

pub enum Command {
    AddPort {
        id: PortId,
        device: Box<dyn PortDevice>,
        meta: PortMeta,
        /// The station behind the port (its gratuitous ARP is sent on attach).
        endpoint: Option<(MacAddr, Ipv4Addr)>,
        /// Send the endpoint's gratuitous ARP (one worker of several does).
        announce: bool,
        reply: Sender<Result<api::PortInfo, String>>,
    },
    RemovePort {
        /// Picks the port by its id and description.
        select: PortSelector,
        reply: Sender<Result<api::PortInfo, String>>,
    },
    /// Tell what would happen to a frame, changing nothing (crate::switch::trace).
    Trace {
        input: TraceInput,
        reply: Sender<crate::switch::trace::Trace>,
    },
    Show {
        what: api::ShowWhat,
        /// Include key material (show sa --wireshark).
        secrets: bool,
        reply: Sender<View>,
    },
    Stop,
}

/// A frame to trace: given whole, or to be made from addresses by the worker, which knows
/// the MACs it learned.
pub struct TraceInput {
    pub network: Vni,
    /// A local port, or the peer the frame comes from.
    pub ingress: Result<PortId, VtepAddr>,
    pub frame: TraceFrame,
}

pub enum TraceFrame {
    Bytes(Vec<u8>),
    Made {
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        proto: crate::switch::trace::Proto,
        dport: u16,
        src_mac: Option<MacAddr>,
        dst_mac: Option<MacAddr>,
    },
}

/// Handle the control thread uses to talk to a worker.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: Sender<Command>,
    waker: std::sync::Arc<Waker>,
}

impl WorkerHandle {
    pub fn send(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Datagrams on their way to one peer, sent together with UDP GSO: the segments of a
/// super-frame, or the datagrams of the frames one batch of port reads made for that peer.
struct GsoBatch {
    /// Set while a batch of port reads is being forwarded.
    collecting: bool,
    /// Peer, network, destination port and source port of the run.
    dest: Option<(VtepAddr, Vni, u16, u16)>,
    /// Where each UDP payload of the run is in the buffer (start, end).
    items: [(usize, usize); SEG_SLOTS],
    n: usize,
    /// Items taken in so far, ever: tells whether a read left something in the run.
    added: u64,
    /// When each read whose datagrams wait in the run was read: its latency is recorded
    /// when the run is sent.
    reads: [Instant; SEG_SLOTS],
    n_reads: usize,
}

/// Encryption state: the SAs, and the counters of ESP packets refused before they reached the
/// switch core.
pub struct Esp {
    table: EspTable,
    port: u16,
    drops: [u64; EspDrop::ALL.len()],
    /// A flood to several peers seals one copy per peer here, keeping the plaintext intact.
    scratch: Vec<u8>,
}

impl Esp {
    pub fn new(table: EspTable, port: u16) -> Esp {
        Esp {
            table,
            port,
            drops: [0; EspDrop::ALL.len()],
            scratch: vec![0u8; BUF_LEN],
        }
    }
}

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

/// Seconds since the Unix epoch: SA epochs are wall-clock based so that hosts agree on them.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Port {
    device: Box<dyn PortDevice>,
    meta: PortMeta,
}

/// Kernel refusals on the underlay, by errno, without allocating on the packet path.
#[derive(Default)]
struct TxErrors {
    msgsize: u64,
    nobufs: u64,
    unreachable: u64,
    other: u64,
}

impl TxErrors {
    fn count(&mut self, e: &io::Error) {
        match e.raw_os_error() {
            Some(libc::EMSGSIZE) => self.msgsize += 1,
            Some(libc::ENOBUFS) | Some(libc::EAGAIN) => self.nobufs += 1,
            Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) | Some(libc::EHOSTDOWN) => {
                self.unreachable += 1
            }
            _ => self.other += 1,
        }
    }

    fn to_map(&self) -> std::collections::BTreeMap<String, u64> {
        [
            ("message_too_long", self.msgsize),
            ("no_buffer_space", self.nobufs),
            ("unreachable", self.unreachable),
            ("other", self.other),
        ]
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

pub struct Worker {
    poll: Poll,
    switch: Switch,
    underlay: Underlay,
    ports: HashMap<PortId, Port>,
    commands: Receiver<Command>,
    started: Instant,
    buf: Vec<u8>,
    /// Where answers the switch writes itself (proxy-ARP) are built: room for any answer.
    answer: Vec<u8>,
    /// The topology the control side publishes, loaded once per loop turn.
    published: Option<Published>,
    seg_lens: [usize; SEG_SLOTS],
    gso_batch: GsoBatch,
    coalescer: Coalescer,
    tx_errors: TxErrors,
    /// Sources that still had frames when their budget ran out.
    pending: Vec<Token>,
    esp: Option<Esp>,
    /// Wall-clock seconds, read once per loop iteration like `now`.
    unix: u64,
    latency: Latency,
    /// Polling without sleeping for a while after traffic, unless the core is wanted.
    busy_poll: BusyPoll,
    offload: api::OffloadStats,
    /// Links to the other workers' copies of the tables (none when working alone).
    sync: Option<SyncLinks>,
    /// This worker's index and load, for `show stats`.
    load: api::WorkerStats,
    handle: WorkerHandle,
}

/// Nanoseconds a frame spends in the worker, read to sent: two clock reads per frame (vDSO,
/// no syscall) and a counter increment in a histogram whose buckets exist from the start.
struct Latency {
    hist: hdrhistogram::Histogram<u64>,
}

impl Latency {
    /// 1 ns to 10 s at 3 significant digits: every bucket is allocated here, so `record` never
    /// allocates (values above the range are clamped to it).
    fn new() -> Latency {
        Latency {
            hist: hdrhistogram::Histogram::new_with_bounds(1, 10_000_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    fn record(&mut self, since: Instant) {
        let ns = since.elapsed().as_nanos() as u64;
        self.hist.saturating_record(ns.max(1));
    }

    fn stats(&self, worker: u32) -> api::LatencyStats {
        let us = |q: f64| self.hist.value_at_quantile(q) as f64 / 1000.0;
        api::LatencyStats {
            worker,
            samples: self.hist.len(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: self.hist.max() as f64 / 1000.0,
        }
    }
}

impl Worker {
    pub fn new(
        switch: Switch,
        underlay: Underlay,
        esp: Option<Esp>,
    ) -> io::Result<(Worker, WorkerHandle)> {
        let poll = Poll::new()?;
        let waker = std::sync::Arc::new(Waker::new(poll.registry(), WAKER)?);
        poll.registry().register(
            &mut SourceFd(&underlay.recv_fd()),
            UNDERLAY,
            Interest::READABLE,
        )?;
        if let Some(fd) = underlay.esp_recv_fd() {
            poll.registry()
                .register(&mut SourceFd(&fd), UNDERLAY_ESP, Interest::READABLE)?;
        }
        let (tx, commands) = crossbeam_channel::unbounded();
        let worker = Worker {
            poll,
            switch,
            underlay,
            ports: HashMap::new(),
            commands,
            started: Instant::now(),
            buf: vec![0u8; BUF_LEN],
            answer: vec![0u8; Answer::MAX_LEN],
            published: None,
            seg_lens: [0; SEG_SLOTS],
            coalescer: Coalescer::new(),
            gso_batch: GsoBatch {
                collecting: false,
                dest: None,
                items: [(0, 0); SEG_SLOTS],
                n: 0,
                added: 0,
                reads: [Instant::now(); SEG_SLOTS],
                n_reads: 0,
            },
            tx_errors: TxErrors::default(),
            pending: Vec::with_capacity(256),
            esp,
            unix: unix_now(),
            latency: Latency::new(),
            busy_poll: BusyPoll::new(Duration::ZERO),
            offload: api::OffloadStats::default(),
            sync: None,
            load: api::WorkerStats::default(),
            handle: WorkerHandle { tx, waker },
        };
        let handle = worker.handle.clone();
        Ok((worker, handle))
    }

    /// Makes the worker follow the topology the control side publishes: it moves to each new
    /// snapshot between batches (crate::switch::topology).
    pub fn follow(&mut self, published: Published) {
        self.published = Some(published);
        self.refresh_topology();
    }

    /// Moves to the published topology if it changed: one atomic load when it did not.
    fn refresh_topology(&mut self) {
        if let Some(t) = self
            .published
            .as_ref()
            .and_then(|p| p.newer(self.switch.topology()))
        {
            self.switch.set_topology(t);
        }
    }

    /// Sets the busy-poll window (see `run`).
    pub fn set_busy_poll(&mut self, window: Duration) {
        self.busy_poll = BusyPoll::new(window);
    }

    /// Makes this worker number `index` of several that share the clock `started` (so table
    /// ages agree) and keep their tables in step over `links`.
    pub fn join_group(&mut self, index: u32, started: Instant, links: Option<SyncLinks>) {
        self.load.worker = index;
        self.started = started;
        if links.is_some() {
            self.switch.enable_sync();
        }
        self.sync = links;
    }

    /// A handle for the control thread.
    pub fn handle(&self) -> WorkerHandle {
        self.handle.clone()
    }

    /// Records the core this worker's thread is pinned to, for `show stats`.
    pub fn set_cpu(&mut self, cpu: Option<u32>) {
        self.load.cpu = cpu;
    }

    /// Applies what the other workers learned since the last turn.
    fn apply_updates(&mut self, now: Timestamp) {
        let Some(links) = &self.sync else { return };
        while let Some(u) = links.next() {
            self.switch.apply_update(now, &u);
            self.load.updates_applied += 1;
        }
    }

    /// Tells the other workers what this one learned in the batch just done.
    fn publish_updates(&mut self) {
        let Some(links) = &self.sync else { return };
        let (mut sent, mut lost) = (0, 0);
        self.switch.take_updates(|u| {
            sent += 1;
            lost += links.announce(u);
        });
        self.load.updates_sent += sent;
        self.load.updates_lost += lost;
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.started.elapsed().as_millis() as u64)
    }

    /// Runs until `Command::Stop`. Dropping the worker afterwards closes every port, which
    /// removes the TAP devices it made.
    pub fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut last_expire = self.now();
        let mut ready: Vec<Token> = Vec::with_capacity(256);
        loop {
            // Sources left with frames are polled again at once; after traffic the worker
            // busy-polls for a while unless the core is wanted (super::busy_poll); else it sleeps
            // until something arrives.
            let timeout = if !self.pending.is_empty() || self.busy_poll.spinning() {
                Duration::ZERO
            } else {
                Duration::from_millis(1000)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("poll failed: {e}");
                    return;
                }
            }
            let now = self.now();
            self.unix = unix_now();
            self.refresh_topology();
            self.apply_updates(now);
            ready.clear();
            ready.append(&mut self.pending);
            ready.extend(events.iter().map(|e| e.token()));
            if !ready.is_empty() {
                self.busy_poll.activity();
            } else if timeout.is_zero() {
                // Spinning: let whatever else is runnable on this core (the container's stack,
                // the other host's worker on a small machine) go first, or stop spinning.
                self.busy_poll.idle_turn();
            }
            for &token in &ready {
                match token {
                    WAKER => {
                        if !self.handle_commands(now) {
                            return;
                        }
                    }
                    UNDERLAY => self.drain_underlay(now),
                    UNDERLAY_ESP => self.drain_esp(now),
                    Token(t) => self.drain_port(now, PortId((t - PORT_TOKEN_BASE) as u32)),
                }
                self.publish_updates();
            }
            if now.millis_since(last_expire) >= 1000 {
                self.switch.expire(now);
                if let Some(esp) = &mut self.esp {
                    esp.table.expire(self.unix);
                }
                last_expire = now;
            }
        }
    }

    fn drain_underlay(&mut self, now: Timestamp) {
        self.drain_underlay_batch(now);
        self.flush_coalescer();
    }

    fn drain_underlay_batch(&mut self, now: Timestamp) {
        for _ in 0..BUDGET {
            let got = match self.underlay.recv(&mut self.buf) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("underlay receive failed: {e}");
                    return;
                }
            };
            // With UDP GRO one read may hold a run of datagrams of `seg` bytes each.
            // An empty datagram is still one datagram (and a drop to count).
            let seg = got.seg.max(1);
            if seg < got.len {
                self.offload.gro_runs += 1;
            }
            let mut off = 0;
            loop {
                self.load.underlay_datagrams += 1;
                let end = (off + seg).min(got.len);
                let start = Instant::now();
                self.forward_datagram(now, VtepAddr(got.src), off..end);
                self.latency.record(start);
                off = end;
                if off >= got.len {
                    break;
                }
            }
        }
        self.pending.push(UNDERLAY);
    }

    /// Carries out the core's decision for the plaintext VXLAN datagram at `buf[datagram]`.
    fn forward_datagram(
        &mut self,
        now: Timestamp,
        src: VtepAddr,
        datagram: std::ops::Range<usize>,
    ) {
        let action = self
            .switch
            .process_from_underlay(now, src, &self.buf[datagram.clone()]);
        self.deliver_decapsulated(action, datagram);
    }

    /// Carries out the core's decision for a frame that came from the underlay (plain or
    /// decrypted); the frame follows the VXLAN header of `buf[datagram]`.
    fn deliver_decapsulated(&mut self, action: Action, datagram: std::ops::Range<usize>) {
        let frame = datagram.start + vxlan::HEADER_LEN..datagram.end;
        match action {
            Action::ToPort(p) => self.deliver_coalesced(p, frame),
            Action::Reply { port, answer } => self.send_answer(port, answer),
            // Split horizon: the core never asks to send decapsulated frames to peers.
            Action::Flood {
                network, except, ..
            } => self.flood(network, except, false, 0, frame),
            Action::Drop(_) | Action::ToVtep { .. } => {}
        }
    }

    /// ESP-in-UDP from peers: verify, decrypt and replay-check in place, then hand the VXLAN
    /// datagram inside to the core, which checks it names the SA's network.
    fn drain_esp(&mut self, now: Timestamp) {
        self.drain_esp_batch(now);
        self.flush_coalescer();
    }

    fn drain_esp_batch(&mut self, now: Timestamp) {
        for _ in 0..BUDGET {
            let (n, src) = match self.underlay.recv_esp(&mut self.buf) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("ESP receive failed: {e}");
                    return;
                }
            };
            let Some(esp) = &mut self.esp else { return };
            let start = Instant::now();
            self.load.underlay_datagrams += 1;
            self.switch.note_underlay_rx(n);
            let opened = esp.table.open(self.unix, now.0, src, &mut self.buf[..n]);
            let (vni, plain) = match opened {
                Ok(r) => r,
                Err(d) => {
                    esp.drops[d as usize] += 1;
                    continue;
                }
            };
            // plain = inner UDP header, VXLAN header, frame.
            let datagram = plain.start + UDP_HEADER_LEN..plain.end;
            let Some(vni) = Vni::new(vni) else { continue };
            let action =
                self.switch
                    .process_decrypted(now, VtepAddr(src), &self.buf[datagram.clone()], vni);
            self.deliver_decapsulated(action, datagram);
            self.latency.record(start);
        }
        self.pending.push(UNDERLAY_ESP);
    }

    /// Reads a batch of frames from port `id` and forwards them. The datagrams they make for
    /// one peer (and one source port) leave together as a UDP GSO run when the batch ends —
    /// one sendmsg for the batch rather than one per frame — or sooner when a datagram for
    /// another peer, or one sent on its own, must go out after them.
    fn drain_port(&mut self, now: Timestamp, id: PortId) {
        self.gso_batch.collecting = self.underlay.segmentation();
        self.drain_port_batch(now, id);
        self.flush_gso_batch();
        self.gso_batch.collecting = false;
    }

    fn drain_port_batch(&mut self, now: Timestamp, id: PortId) {
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
        self.pending.push(Token(id.0 as usize + PORT_TOKEN_BASE));
    }

    /// Cuts a TSO super-frame (in the read slot) into MSS-sized segments in the segment slots
    /// and forwards each one as if the container had sent it.
    fn forward_super_frame(&mut self, now: Timestamp, id: PortId, hdr: &vnet::Header, len: usize) {
        // The segments are cut into the slots where earlier frames' datagrams may wait.
        self.flush_gso_batch();
        let (read, segs) = self.buf.split_at_mut(READ_SLOT);
        let frame = &read[HEADROOM..HEADROOM + len];
        match tso::segment(hdr, frame, segs, SEG_SLOT, HEADROOM, &mut self.seg_lens) {
            Ok(n) => {
                self.offload.tso_frames += 1;
                self.offload.tso_segments += n as u64;
                // Datagrams to one peer are collected (drain_port) and sent as one UDP GSO run.
                for k in 0..n {
                    self.forward_local_frame(now, id, READ_SLOT + k * SEG_SLOT, self.seg_lens[k]);
                }
            }
            Err(_) => self.switch.note_port_drop(id, DropReason::BadOffload),
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
    fn batch_for_gso(
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
    fn flush_gso_batch(&mut self) {
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

    fn send_gso_run(&mut self, vtep: VtepAddr, vni: Vni, dst_port: u16, src_port: u16) {
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
    fn forward_local_frame(&mut self, now: Timestamp, id: PortId, base: usize, len: usize) {
        let frame = base + HEADROOM..base + HEADROOM + len;
        match self
            .switch
            .process_from_port(now, id, &mut self.buf[frame.clone()])
        {
            Action::Drop(_) => {}
            Action::ToPort(p) => self.send_to_port(p, frame),
            Action::Reply { port, answer } => self.send_answer(port, answer),
            Action::ToVtep { vtep, vni } => {
                let src_port = self.encap_headers(base, len, vni);
                if self.switch.is_encrypted(vni) {
                    self.seal_to_vtep(base, vtep, vni, len, src_port, false);
                } else {
                    let vxlan = base + HEADROOM - vxlan::HEADER_LEN..base + HEADROOM + len;
                    let port = self.underlay.vxlan_port();
                    if !self.batch_for_gso(vtep, vni, port, src_port, vxlan) {
                        self.send_to_vtep(base, vtep, vni, len);
                    }
                }
            }
            Action::Flood {
                network,
                except,
                to_peers,
            } => self.flood(network, except, to_peers, base, frame),
        }
    }

    /// Sends a flooded frame, `buf[frame]`, to every destination of `Topology::flood_set`:
    /// local ports as it is, peers encapsulated (and sealed, for an encrypted network) in
    /// front of it, the frame then being at `base + HEADROOM` (only frames from a port go to
    /// peers: what came from the underlay never goes back to it, split horizon).
    fn flood(
        &mut self,
        network: Vni,
        except: Option<PortId>,
        to_peers: bool,
        base: usize,
        frame: std::ops::Range<usize>,
    ) {
        // The snapshot this frame was decided by, held across the sends (no allocation).
        let topo = std::sync::Arc::clone(self.switch.topology());
        let len = frame.len();
        let mut headers: Option<u16> = None;
        let encrypted = self.switch.is_encrypted(network);
        for out in topo.flood_set(network, except, to_peers) {
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
    fn encap_headers(&mut self, base: usize, len: usize, vni: Vni) -> u16 {
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

    fn send_to_vtep(&mut self, base: usize, vtep: VtepAddr, vni: Vni, len: usize) {
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
    fn seal_to_vtep(
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
        let sealed = if keep_plaintext {
            let (t, p) = (self.unix, &self.buf[plain]);
            esp.table
                .seal_from(t, vni.get(), vtep.0, p, &mut esp.scratch, ESP_START)
        } else {
            let n = plain.len();
            esp.table.seal(
                self.unix,
                vni.get(),
                vtep.0,
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
    fn deliver_coalesced(&mut self, id: PortId, frame: std::ops::Range<usize>) {
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
    fn flush_coalescer(&mut self) {
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

    fn send_to_port(&mut self, id: PortId, frame: std::ops::Range<usize>) {
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

    /// Writes an answer the switch made (proxy-ARP) to port `id`, from the answer buffer.
    fn send_answer(&mut self, id: PortId, answer: Answer) {
        if self.coalescer.owner() == Some(id.0) {
            self.flush_coalescer();
        }
        let len = answer.emit(&mut self.answer);
        let Some(port) = self.ports.get_mut(&id) else {
            return;
        };
        match port.device.send(&self.answer[..len]) {
            Ok(()) => self.switch.note_port_tx(id, len),
            Err(_) => self.switch.note_port_tx_failed(id),
        }
    }

    // ----- control commands -----

    /// Returns false on Stop.
    fn handle_commands(&mut self, now: Timestamp) -> bool {
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
    fn add_port(
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

    fn remove_port(&mut self, id: PortId) -> Option<api::PortInfo> {
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
    fn trace(&self, now: Timestamp, input: TraceInput) -> crate::switch::trace::Trace {
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
                        use crate::wire::{arp, ethernet};
                        buf.truncate(ethernet::HEADER_LEN + arp::PACKET_LEN);
                        let mut eth = ethernet::Frame::new_unchecked(&mut buf[..]);
                        eth.set_dst(MacAddr::BROADCAST);
                        eth.set_src(src_mac);
                        eth.set_ethertype(ethernet::EtherType::Arp);
                        arp::Repr {
                            operation: arp::Operation::Request,
                            sender_mac: src_mac,
                            sender_ip: src_ip,
                            target_mac: MacAddr::ZERO,
                            target_ip: dst_ip,
                        }
                        .emit(&mut buf[ethernet::HEADER_LEN..]);
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

    fn port_info(&self, id: PortId) -> Option<api::PortInfo> {
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
        })
    }

    fn ports_info(&self) -> Vec<api::PortInfo> {
        let mut ids: Vec<PortId> = self.ports.keys().copied().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| self.port_info(id))
            .collect()
    }

    fn sa_info(&self, secrets: bool) -> Vec<api::SaInfo> {
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
    fn underlay_drops(&self) -> std::collections::BTreeMap<String, u64> {
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

    fn show(&self, what: api::ShowWhat, secrets: bool, now: Timestamp) -> View {
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
