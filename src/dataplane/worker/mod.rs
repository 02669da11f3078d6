//! The worker (files: this one, the loop that moves to the published topology and picks the
//! ready sources; `receive.rs`, where a source's batch is read and each frame handed to the
//! core; `execute.rs`, which carries out the core's decisions; `commands.rs`, the control
//! side's commands): one thread running an event loop (mio, edge-triggered, a budget of frames per
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

mod commands;
mod execute;
mod receive;

use crate::crypto::EspTable;
use crate::dataplane::busy_poll::{self, BusyPoll};
use crate::dataplane::counters::{LatencySummary, OffloadCounters, TxErrors, WorkerCounters};
use crate::dataplane::port::{PortDevice, PortMeta};
use crate::dataplane::sync::SyncLinks;
use crate::dataplane::view::{EspDrops, PortRow, SwitchViews, View};
use crate::io::underlay::{self, Underlay, UDP_HEADER_LEN, VXLAN_HEADERS_LEN};
use crate::offload::gro::Coalescer;
use crate::offload::{superframe, tso, vnet};
use crate::switch::topology::Output;
use crate::switch::DropReason;
use crate::switch::{garp, Action, Answer, PortId, Published, Switch, Timestamp, Vni, VtepAddr};
use crate::wire::esp;
use crate::wire::{flow, vxlan, MacAddr};
use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use rustc_hash::FxHashMap as HashMap;
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
/// Underlay reads (crate::io::underlay::Underlay::recv_many) fill `RECV_BATCH` slots of this
/// size from the start of the buffer: each holds the largest UDP payload, a GRO run or a
/// kernel peer's tunnel-GSO datagram. Not a power of two, so the datagrams of a batch do not
/// all fall on the same cache sets.
const RX_SLOT: usize = 65536 + 2112;
const RX_LEN: usize = RX_SLOT * underlay::RECV_BATCH;
/// The worker's buffer: port reads (read slot and segment slots) or underlay reads.
const WORK_LEN: usize = if RX_LEN > BUF_LEN { RX_LEN } else { BUF_LEN };
const _: () = assert!(BUDGET <= SEG_SLOTS);
/// A port over one of its limits is named in the log at most this often (ms).
const LIMIT_REPORT_MS: u64 = 10_000;
/// Ports throttled at once at most (`Worker::throttled`); more storms are read as usual.
const THROTTLED_MAX: usize = 256;

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
        /// Read the device (poll it): false where several workers share one queue and
        /// another one reads it; this one then only writes to it.
        read: bool,
        reply: Sender<Result<PortRow, String>>,
    },
    RemovePort {
        /// Picks the port by its id and description.
        select: PortSelector,
        reply: Sender<Result<PortRow, String>>,
    },
    /// Tell what would happen to a frame, changing nothing (crate::switch::trace).
    Trace {
        input: TraceInput,
        reply: Sender<crate::switch::trace::Trace>,
    },
    /// Write this frame (a DNS answer the forwarder relays) to the port.
    SendToPort {
        port: PortId,
        frame: Vec<u8>,
    },
    Show {
        what: crate::dataplane::view::ViewKind,
        /// Include key material (show sa --wireshark).
        secrets: bool,
        reply: Sender<View>,
    },
    /// Hand TCP super-frames to the host's tunnel device (crate::io::tunnel) from now on: a
    /// peer answered probes sent through it.
    StartTunnel,
    /// Stop handing super-frames to the host's tunnel device: segment them here again, and
    /// close this worker's queue of the device.
    StopTunnel,
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

/// The forwarder's end for workers: a bounded channel of query frames, and a count of those it
/// had no room for (the only contended write, and only when it is full).
#[derive(Clone)]
pub struct Upstream {
    pub queries: crossbeam_channel::Sender<crate::switch::dns::UpstreamQuery>,
    pub refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
    /// node.toml's encrypted networks, as the table started with them; the cluster plane's
    /// (from the topology's secrets) are added to these.
    base: Vec<crate::crypto::EspNetwork>,
    drops: EspDrops,
    /// A flood to several peers seals one copy per peer here, keeping the plaintext intact.
    scratch: Vec<u8>,
}

impl Esp {
    pub fn new(table: EspTable, port: u16) -> Esp {
        Esp {
            base: table.networks(),
            table,
            port,
            drops: EspDrops::default(),
            scratch: vec![0u8; BUF_LEN],
        }
    }
}

impl Esp {
    /// Re-keys the table when the cluster plane's encrypted networks, or the hosts they span,
    /// changed between two topologies (between batches; may allocate).
    fn follow(&mut self, old: &crate::switch::Topology, new: &crate::switch::Topology) {
        let hosts =
            |t: &crate::switch::Topology, vni: &Vni| t.network(*vni).map(|n| n.vteps().to_vec());
        let changed = !std::sync::Arc::ptr_eq(old.secrets(), new.secrets())
            || new.secrets().keys().any(|v| hosts(old, v) != hosts(new, v));
        if !changed {
            return;
        }
        let mut nets = self.base.clone();
        for (vni, secret) in new.secrets().iter() {
            if let Some(n) = new.network(*vni) {
                nets.push(crate::crypto::EspNetwork {
                    vni: vni.get(),
                    secret: secret.0,
                    peers: n.vteps().iter().map(|v| v.0).collect(),
                });
            }
        }
        if let Err(e) = self.table.set_networks(nets) {
            // The control side checks for this before publishing; say so if it slipped by.
            tracing::error!("ESP networks not changed: {e}");
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
    /// This worker reads (polls) the device; else it only writes to it.
    read: bool,
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
    /// Where a peer's TCP super-frame is cut for a port that takes no virtio_net_hdr
    /// (execute.rs `deliver_super_frame`): SEG_SLOTS slots of SEG_SLOT bytes, made once.
    super_scratch: Vec<u8>,
    super_lens: [usize; SEG_SLOTS],
    gso_batch: GsoBatch,
    coalescer: Coalescer,
    tx_errors: TxErrors,
    /// Sources that still had frames when their budget ran out.
    pending: Vec<Token>,
    /// Ports whose last batch was full and mostly over their limits (a storm), and when: read again
    /// only a millisecond later, so the storm waits in its own queue (where the kernel drops
    /// what does not fit) instead of taking the worker from every other port.
    throttled: Vec<(PortId, Timestamp)>,
    /// Frames of the batch being read that were dropped over a port limit.
    limited_in_batch: usize,
    esp: Option<Esp>,
    /// Wall-clock seconds, read once per loop iteration like `now`.
    unix: u64,
    latency: Latency,
    /// Polling without sleeping for a while after traffic, unless the core is wanted.
    busy_poll: BusyPoll,
    /// The scheduler time slice the worker's thread asks for (crate::io::cpu).
    slice: Option<Duration>,
    /// The nice value the worker's thread takes (0: the process's).
    nice: i32,
    offload: OffloadCounters,
    /// Links to the other workers' copies of the tables (none when working alone).
    sync: Option<SyncLinks>,
    /// Where DNS queries for names the switch does not own go (crate::control::dns).
    upstream: Option<Upstream>,
    /// This worker's index, the core it is pinned to, and its load, for `show stats`.
    index: u32,
    cpu: Option<u32>,
    load: WorkerCounters,
    handle: WorkerHandle,
    /// This host's node name, told to peers that probe it (crate::wire::probe).
    node_name: String,
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

    /// Asked by `show` (and the metrics), never per frame: one walk over the recorded buckets.
    fn stats(&self, worker: u32) -> LatencySummary {
        let us = |q: f64| self.hist.value_at_quantile(q) as f64 / 1000.0;
        let mut s = LatencySummary {
            worker,
            samples: self.hist.len(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: self.hist.max() as f64 / 1000.0,
            ..Default::default()
        };
        s.fill_buckets(self.hist.iter_recorded().map(|v| {
            (
                self.hist.median_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            )
        }));
        s
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
            ports: HashMap::default(),
            commands,
            started: Instant::now(),
            buf: vec![0u8; WORK_LEN],
            answer: vec![0u8; Answer::MAX_LEN],
            published: None,
            seg_lens: [0; SEG_SLOTS],
            super_scratch: vec![0u8; SEG_SLOT * SEG_SLOTS],
            super_lens: [0; SEG_SLOTS],
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
            throttled: Vec::with_capacity(THROTTLED_MAX),
            limited_in_batch: 0,
            esp,
            unix: unix_now(),
            latency: Latency::new(),
            busy_poll: BusyPoll::new(Duration::ZERO),
            slice: None,
            nice: 0,
            offload: OffloadCounters::default(),
            sync: None,
            upstream: None,
            index: 0,
            cpu: None,
            load: WorkerCounters::default(),
            handle: WorkerHandle { tx, waker },
            node_name: String::new(),
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
    pub(super) fn refresh_topology(&mut self) {
        if let Some(t) = self
            .published
            .as_ref()
            .and_then(|p| p.newer(self.switch.topology()))
        {
            let old = std::sync::Arc::clone(self.switch.topology());
            self.switch.set_topology(std::sync::Arc::clone(&t));
            if let Some(esp) = &mut self.esp {
                esp.follow(&old, &t);
            }
        }
    }

    /// The node name this worker's probe replies carry (crate::wire::probe).
    pub fn set_node_name(&mut self, name: &str) {
        self.node_name = name.to_string();
    }

    /// Hands DNS queries for names the switch does not own to the forwarder.
    pub fn set_dns_upstream(&mut self, upstream: Upstream) {
        self.upstream = Some(upstream);
    }

    /// Sets how the worker waits after traffic, and for how long (see `run` and
    /// crate::dataplane::busy_poll).
    pub fn set_busy_poll(&mut self, window: Duration, mode: busy_poll::Mode) {
        use std::os::fd::AsRawFd;
        let mut sockets = vec![self.underlay.recv_fd()];
        sockets.extend(self.underlay.esp_recv_fd());
        self.busy_poll = BusyPoll::for_mode(window, mode, self.poll.as_raw_fd(), &sockets);
    }

    /// Has the worker's thread ask the scheduler for this time slice when it starts: shorter
    /// than a CPU-bound thread's, so a frame that wakes the worker gets it the core at once.
    pub fn set_slice(&mut self, slice: Option<Duration>) {
        self.slice = slice;
    }

    /// Has the worker's thread take this nice value when it starts: a worker woken by a frame
    /// then preempts a CPU-bound container at once, as the kernel's softirq would.
    pub fn set_nice(&mut self, nice: i32) {
        self.nice = nice;
    }

    /// Makes this worker number `index` of several that share the clock `started` (so table
    /// ages agree) and keep their tables in step over `links`.
    pub fn join_group(&mut self, index: u32, started: Instant, links: Option<SyncLinks>) {
        self.index = index;
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
        self.cpu = cpu;
    }

    /// Applies what the other workers learned since the last turn.
    pub(super) fn apply_updates(&mut self, now: Timestamp) {
        let Some(links) = &self.sync else { return };
        while let Some(u) = links.next() {
            self.switch.apply_update(now, &u);
            self.load.updates_applied += 1;
        }
    }

    /// Tells the other workers what this one learned in the batch just done.
    pub(super) fn publish_updates(&mut self) {
        let Some(links) = &self.sync else { return };
        let (mut sent, mut lost) = (0, 0);
        self.switch.take_updates(|u| {
            sent += 1;
            lost += links.announce(u);
        });
        self.load.updates_sent += sent;
        self.load.updates_lost += lost;
    }

    pub(super) fn now(&self) -> Timestamp {
        Timestamp(self.started.elapsed().as_millis() as u64)
    }

    /// Runs until `Command::Stop`, then hands every port's device to the reaper
    /// (crate::dataplane::reaper), which closes them all at once: that removes the TAP devices
    /// it made (vswitchd waits for it with `reaper::flush` before it exits).
    pub fn run(&mut self) {
        self.apply_scheduling();
        self.serve();
        for (id, port) in self.ports.drain() {
            crate::dataplane::reaper::reap(id, port.device);
        }
    }

    /// The scheduling the worker's thread asks for (set_slice, set_nice) when it starts.
    fn apply_scheduling(&self) {
        if let Some(slice) = self.slice {
            if let Err(e) = crate::io::cpu::set_current_thread_slice(slice) {
                tracing::warn!(worker = self.index, "cannot set the scheduler slice: {e}");
            }
        }
        if self.nice != 0 {
            if let Err(e) = crate::io::cpu::set_current_thread_nice(self.nice) {
                tracing::warn!(
                    worker = self.index,
                    nice = self.nice,
                    "cannot set the workers' nice value: {e}"
                );
            }
        }
    }

    fn serve(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut last_expire = self.now();
        let mut ready: Vec<Token> = Vec::with_capacity(256);
        loop {
            // Sources left with frames are polled again at once; after traffic the worker
            // busy-polls for a while unless the core is wanted (super::busy_poll); else it sleeps
            // until something arrives.
            let timeout = if !self.pending.is_empty() || self.busy_poll.spinning() {
                Duration::ZERO
            } else if !self.throttled.is_empty() {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(1000)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("poll failed: {e}");
                    return;
                }
            }
            if !timeout.is_zero() && !events.is_empty() {
                self.load.wakeups += 1;
            }
            let now = self.now();
            self.unix = unix_now();
            self.refresh_topology();
            self.apply_updates(now);
            ready.clear();
            ready.append(&mut self.pending);
            let throttled = &mut self.throttled;
            ready.extend(events.iter().map(|e| e.token()).filter(|t| {
                !throttled
                    .iter()
                    .any(|(p, _)| Token(p.0 as usize + PORT_TOKEN_BASE) == *t)
            }));
            if !ready.is_empty() {
                self.busy_poll.activity();
            } else if timeout.is_zero() {
                // Spinning: let whatever else is runnable on this core (the container's stack,
                // the other host's worker on a small machine) go first, or stop spinning.
                self.busy_poll.idle_turn();
            }
            // A storm is no reason to spin: throttled ports come back after their millisecond
            // without counting as activity.
            self.throttled.retain(|&(p, at)| {
                let due = now.millis_since(at) >= 1;
                if due {
                    ready.push(Token(p.0 as usize + PORT_TOKEN_BASE));
                }
                !due
            });
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
                self.report_limits(now);
                if let Some(esp) = &mut self.esp {
                    esp.table.expire(self.unix);
                }
                last_expire = now;
            }
        }
    }

    /// Says in the log which ports dropped frames over their limits (crate::switch::limits):
    /// at most one line per port every `LIMIT_REPORT_MS`, never one per packet.
    fn report_limits(&mut self, now: Timestamp) {
        let (ports, worker) = (&self.ports, self.index);
        self.switch
            .limit_reports(now, LIMIT_REPORT_MS, |id, macs, bum| {
                let port = ports.get(&id).map_or("?", |p| p.meta.name.as_str());
                if bum > 0 {
                    tracing::warn!(
                        port,
                        worker,
                        dropped = bum,
                        "port floods more broadcast/multicast/unknown-unicast than its bum_rate: \
                         dropped (counted as bum_rate_limited; raise with attach --bum-rate or \
                         port_limits in node.toml if this is expected)"
                    );
                }
                if macs > 0 {
                    tracing::warn!(
                        port,
                        worker,
                        dropped = macs,
                        "port sends from more source MACs than its max_macs: frames from the \
                         new ones dropped (counted as port_mac_limit; raise with attach \
                         --max-macs or port_limits in node.toml for a router or a bridge)"
                    );
                }
            });
    }
}
