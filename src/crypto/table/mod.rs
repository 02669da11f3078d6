//! `EspTable`: every ESP security association of this host, for the worker to seal what it sends
//! to a peer on an encrypted network and open what arrives on the ESP port.
//!
//! Outbound: one SA per (network, peer, lane), replaced by a new one (new SPI, new key) when
//! the epoch changes. The caller names the lane (`keys::lane_of_port` of the datagram's outer
//! source port), so a flow's packets always go out under one SA. The epoch used for sending never goes back, even if the clock does: recreating the
//! SA of an earlier epoch would restart its sequence numbers under the same key.
//!
//! Inbound: SAs keyed by (source address, SPI), created on the first packet of an unknown SPI
//! whose ICV verifies under the key the SPI implies (see `crate::crypto`), at most
//! `RATE_LIMIT_PER_SEC` such tries per peer, at most `MAX_INBOUND_PER_PEER_NET` SAs per (peer,
//! network, lane). A table opens only the lanes it owns (`set_receiver`): with several workers
//! each receives the lanes the kernel steers to its socket, and each SA, so its replay window,
//! lives in exactly one of them; a packet of another lane is refused (`esp_misrouted`), never
//! opened under a second window. An SA evicted to respect that cap is remembered until it expires, so replayed
//! packets cannot bring it back with a fresh replay window. SAs of epochs before e-1 expire.
//!
//! A decrypted packet must carry the VNI of the network whose key sealed it: a host that knows
//! one network's secret cannot inject into another network.
//!
//! Sans-IO: time comes in as `now_unix` (wall clock seconds, for epochs) and `mono_ms` (monotonic
//! milliseconds, for rate limits). No allocation per packet; creating an SA may allocate.
//!
//! Thread-safety: owned by one thread (see `crate::crypto`). Build exactly one table per boot
//! counter value and keep it for the life of the process; reconfigure with `set_networks`.
//! Other workers get copies from `replica`, which share the outbound sequence counters.

use super::keys::{self, SaKey};
use super::sa::{InboundSa, OpenError, OutboundSa, SealError, SeqCounter};
use super::wireshark;
use crate::wire::{esp, vxlan};
use rustc_hash::FxHashMap as HashMap;
use std::collections::hash_map::Entry;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Unknown-SPI key derivations allowed per peer per second (and as a burst).
pub const RATE_LIMIT_PER_SEC: u64 = 64;
/// Inbound SAs kept per (peer, network, lane): the current and neighbouring epochs, plus a
/// restart.
pub const MAX_INBOUND_PER_PEER_NET: usize = 4;
/// Bytes of inner UDP header in front of the VXLAN header in a plaintext.
const INNER_UDP_LEN: usize = 8;

#[derive(Debug, Clone)]
pub struct EspConfig {
    /// This host's underlay address (the source of what we send).
    pub local_ip: Ipv4Addr,
    /// How many times vswitchd has started on this host, counting this start (1, 2, ...).
    /// Persisted by the caller.
    pub boot: u32,
    pub rekey_interval_secs: u64,
    pub networks: Vec<EspNetwork>,
}

#[derive(Clone)]
pub struct EspNetwork {
    pub vni: u32,
    pub secret: [u8; 32],
    pub peers: Vec<Ipv4Addr>,
}

impl std::fmt::Debug for EspNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspNetwork")
            .field("vni", &self.vni)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EspConfigError {
    #[error("boot counter is 0: it starts at 1 and grows by one at every start")]
    ZeroBoot,
    #[error("rekey interval is 0 seconds")]
    ZeroInterval,
    #[error("encrypted networks with VNI {a} and {b} are equal modulo 4096, which the ESP SPI cannot tell apart: change one VNI")]
    NetIdCollision { a: u32, b: u32 },
}

/// Why `EspTable::seal` did not produce a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealDrop {
    /// No encrypted network with this VNI has this peer.
    NotEncrypted,
    SeqExhausted,
    BufferTooSmall,
}

impl From<SealError> for SealDrop {
    fn from(e: SealError) -> SealDrop {
        match e {
            SealError::SeqExhausted => SealDrop::SeqExhausted,
            SealError::BufferTooSmall => SealDrop::BufferTooSmall,
        }
    }
}

macro_rules! esp_drops {
    ($($variant:ident => $name:literal, $help:literal;)*) => {
        /// Why `EspTable::open` dropped a packet; names and help lines for `show stats`, in the
        /// style of `crate::switch::DropReason`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EspDrop { $($variant,)* }

        impl EspDrop {
            pub const ALL: &'static [EspDrop] = &[$(EspDrop::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(EspDrop::$variant => $name,)* }
            }

            pub fn help(self) -> &'static str {
                match self { $(EspDrop::$variant => $help,)* }
            }
        }
    };
}

esp_drops! {
    Truncated => "esp_truncated", "ESP datagram shorter than header, IV, trailer and ICV";
    UnknownSpi => "esp_unknown_spi", "ESP SPI with no SA that this peer may create: wrong network, epoch outside e-1..e+1 (clocks off by more than the rekey interval?) or SA expired";
    RateLimited => "esp_rate_limited", "new-SPI key derivations from this peer over the rate limit";
    BadIcv => "esp_bad_icv", "ESP ICV does not verify: tampered, or the hosts' key_file differ";
    Replay => "esp_replay", "ESP sequence number already received or behind the anti-replay window";
    BadPadding => "esp_bad_padding", "authentic ESP whose padding is malformed (RFC 4303 §2.4)";
    NotUdp => "esp_not_udp", "authentic ESP whose Next Header is not UDP";
    WrongVni => "esp_wrong_vni", "decrypted VXLAN whose VNI is not the network whose key sealed it";
    Misrouted => "esp_misrouted", "ESP of a lane another worker owns reached this one (its SA's replay window is there): the kernel's steering program is missing or a sender's SPI layout differs";
}

impl From<OpenError> for EspDrop {
    fn from(e: OpenError) -> EspDrop {
        match e {
            OpenError::Truncated => EspDrop::Truncated,
            OpenError::Replay => EspDrop::Replay,
            OpenError::BadIcv => EspDrop::BadIcv,
            OpenError::BadPadding => EspDrop::BadPadding,
            OpenError::NotUdp => EspDrop::NotUdp,
        }
    }
}

/// One SA as `vswitchctl show sa` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SaInfo {
    pub peer: Ipv4Addr,
    pub vni: u32,
    /// "in" or "out".
    pub direction: &'static str,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub spi: u32,
    pub epoch: u64,
    /// Out: last sequence number sent. In: highest received.
    pub seq: u64,
    pub age_secs: u64,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    /// AES key || salt in hex (72 characters), for decrypting captures.
    pub key_hex: String,
}

impl SaInfo {
    /// The Wireshark `esp_sa` record for this SA.
    pub fn wireshark_uat(&self) -> String {
        let km: [u8; 36] = super::from_hex(self.key_hex.as_bytes()).unwrap_or([0; 36]);
        let mut key = [0u8; 32];
        let mut salt = [0u8; 4];
        key.copy_from_slice(&km[..32]);
        salt.copy_from_slice(&km[32..]);
        wireshark::uat_line(self.src, self.dst, self.spi, &key, &salt)
    }
}

struct Net {
    vni: u32,
    secret: [u8; 32],
    peers: Vec<Ipv4Addr>,
}

impl Net {
    fn has_peer(&self, ip: Ipv4Addr) -> bool {
        self.peers.contains(&ip)
    }
}

struct InSlot {
    sa: InboundSa,
    /// Installation order, to evict the oldest of one epoch.
    order: u64,
}

/// Token bucket in thousandths of a token, refilled at `RATE_LIMIT_PER_SEC`.
#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    milli: u64,
    last_ms: u64,
}

impl TokenBucket {
    const FULL: u64 = RATE_LIMIT_PER_SEC * 1000;

    fn new() -> TokenBucket {
        TokenBucket {
            milli: TokenBucket::FULL,
            last_ms: 0,
        }
    }

    fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.milli = elapsed
            .saturating_mul(RATE_LIMIT_PER_SEC)
            .saturating_add(self.milli)
            .min(TokenBucket::FULL);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// The sequence counters of outbound SAs by (VNI, peer, SPI), shared by the copies of a table
/// (`EspTable::replica`). Locked only when a copy makes an SA (once per peer, network and
/// epoch), never per packet.
type SharedCounters = Arc<Mutex<HashMap<(u32, Ipv4Addr, u32), (u64, SeqCounter)>>>;

pub struct EspTable {
    config: EspConfig,
    counters: SharedCounters,
    local: Ipv4Addr,
    boot: u32,
    interval: u64,
    /// By net_id (VNI mod 4096), which is what an SPI carries.
    networks: HashMap<u16, Net>,
    /// Highest epoch used for sending; never decreases.
    out_epoch: u64,
    outbound: HashMap<(u32, Ipv4Addr, u8), OutboundSa>,
    inbound: HashMap<(Ipv4Addr, u32), InSlot>,
    /// SAs evicted before they expired, with their epoch: never re-created.
    retired: HashMap<(Ipv4Addr, u32), u64>,
    buckets: HashMap<Ipv4Addr, TokenBucket>,
    installs: u64,
    /// This table opens the lanes `l` with `l % receivers == receiver` (set_receiver).
    receiver: u8,
    receivers: u8,
}

impl EspTable {
    pub fn new(config: EspConfig) -> Result<EspTable, EspConfigError> {
        if config.boot == 0 {
            return Err(EspConfigError::ZeroBoot);
        }
        if config.rekey_interval_secs == 0 {
            return Err(EspConfigError::ZeroInterval);
        }
        let mut t = EspTable {
            config: config.clone(),
            counters: SharedCounters::default(),
            local: config.local_ip,
            boot: config.boot,
            interval: config.rekey_interval_secs,
            networks: HashMap::default(),
            out_epoch: 0,
            outbound: HashMap::default(),
            inbound: HashMap::default(),
            retired: HashMap::default(),
            buckets: HashMap::default(),
            installs: 0,
            receiver: 0,
            receivers: 1,
        };
        t.set_networks(config.networks)?;
        Ok(t)
    }

    /// Replaces the encrypted networks (config reload). Inbound SAs of networks that are gone,
    /// whose secret changed or whose peer left are dropped. Outbound SAs keep their sequence
    /// counter for the rest of the epoch whatever happens (a changed secret continues the count
    /// under the new key; a removed network's SA waits, unused, in case it comes back), so no
    /// (key, nonce) is ever used twice.
    pub fn set_networks(&mut self, networks: Vec<EspNetwork>) -> Result<(), EspConfigError> {
        let mut by_id: HashMap<u16, Net> = HashMap::default();
        for n in networks {
            let id = keys::net_id(n.vni);
            if let Some(other) = by_id.get(&id) {
                if other.vni != n.vni {
                    return Err(EspConfigError::NetIdCollision {
                        a: other.vni,
                        b: n.vni,
                    });
                }
            }
            by_id.insert(
                id,
                Net {
                    vni: n.vni,
                    secret: n.secret,
                    peers: n.peers,
                },
            );
        }
        let same = |old: Option<&Net>, new: Option<&Net>, peer: Ipv4Addr| match (old, new) {
            (Some(o), Some(n)) => o.vni == n.vni && o.secret == n.secret && n.has_peer(peer),
            _ => false,
        };
        let old = std::mem::replace(&mut self.networks, by_id);
        self.inbound.retain(|(peer, _), slot| {
            let vni = slot.sa.vni();
            same(net_of(&old, vni), net_of(&self.networks, vni), *peer)
        });
        self.retired.retain(|(peer, spi), _| {
            let id = keys::split_spi(*spi).net_id;
            same(old.get(&id), self.networks.get(&id), *peer)
        });
        for (&(vni, peer, _), sa) in self.outbound.iter_mut() {
            let Some(n) = net_of(&self.networks, vni).filter(|n| n.has_peer(peer)) else {
                continue;
            };
            let material = keys::derive(&n.secret, vni, self.local, peer, sa.spi(), sa.epoch());
            if *sa.material() != material {
                let fresh = OutboundSa::new(sa.spi(), material, sa.epoch(), sa.created_unix());
                *sa = fresh.with_counter(Arc::clone(sa.counter()));
            }
        }
        for n in self.networks.values() {
            for p in &n.peers {
                self.buckets.entry(*p).or_insert_with(TokenBucket::new);
            }
        }
        Ok(())
    }

    /// The encrypted networks as they are now (for a copy, or to add to them).
    pub fn networks(&self) -> Vec<EspNetwork> {
        let mut v: Vec<EspNetwork> = self
            .networks
            .values()
            .map(|n| EspNetwork {
                vni: n.vni,
                secret: n.secret,
                peers: n.peers.clone(),
            })
            .collect();
        v.sort_by_key(|n| n.vni);
        v
    }

    /// Another copy of this table for another worker: the same keys and networks, its own
    /// inbound SAs and counters, and the outbound sequence counters shared with this one, so
    /// no nonce is used twice whichever worker sends. Inbound, each copy opens the lanes given
    /// to it by `set_receiver` (all, until then): a replay window must see every packet of its
    /// SA, so no two copies may open the same lane.
    pub fn replica(&self) -> EspTable {
        let config = EspConfig {
            networks: self.networks(),
            ..self.config.clone()
        };
        let mut t = EspTable::new(config).expect("config was accepted before");
        t.counters = Arc::clone(&self.counters);
        t
    }

    /// Makes this table the `index`th of `receivers` that open ESP: it opens the lanes `l`
    /// with `l % receivers == index`, the ones the kernel steers to its socket
    /// (crate::io::underlay::Underlay::bind_esp_group). One receiver (the default) opens all.
    pub fn set_receiver(&mut self, index: usize, receivers: usize) {
        let n = receivers.clamp(1, usize::from(keys::LANES));
        self.receivers = n as u8;
        self.receiver = (index % n) as u8;
    }

    /// Whether this table opens lane `lane`.
    pub fn owns_lane(&self, lane: u8) -> bool {
        lane % self.receivers == self.receiver
    }

    pub fn local_ip(&self) -> Ipv4Addr {
        self.local
    }

    pub fn epoch(&self, now_unix: u64) -> u64 {
        keys::epoch(now_unix, self.interval)
    }

    /// Whether traffic on `vni` is encrypted (and so plaintext VXLAN on it must be dropped).
    pub fn is_encrypted(&self, vni: u32) -> bool {
        self.net(vni).is_some()
    }

    fn net(&self, vni: u32) -> Option<&Net> {
        net_of(&self.networks, vni)
    }

    /// Seals the plaintext at `buf[esp_start + 16 .. esp_start + 16 + plain_len]` (inner UDP,
    /// VXLAN, frame) for `peer` on network `vni` with the SA of `lane`, in place; the buffer needs
    /// `esp::OVERHEAD_MAX - 16` spare bytes after the plaintext. Returns the length of the ESP
    /// packet starting at `esp_start`. The caller writes the outer UDP header (port 4500) in
    /// front of it.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        &mut self,
        now_unix: u64,
        vni: u32,
        peer: Ipv4Addr,
        lane: u8,
        buf: &mut [u8],
        esp_start: usize,
        plain_len: usize,
    ) -> Result<usize, SealDrop> {
        let net = self
            .networks
            .get(&keys::net_id(vni))
            .filter(|n| n.vni == vni && n.has_peer(peer))
            .ok_or(SealDrop::NotEncrypted)?;
        self.out_epoch = self.out_epoch.max(keys::epoch(now_unix, self.interval));
        let epoch = self.out_epoch;
        let (boot, local, counters) = (self.boot, self.local, &self.counters);
        let lane = lane % keys::LANES;
        let new_sa = || {
            let spi = keys::spi(epoch, lane, boot, vni);
            let material = keys::derive(&net.secret, vni, local, peer, spi, epoch);
            let seq = {
                let mut shared = counters.lock().unwrap_or_else(|p| p.into_inner());
                let (_, c) = shared
                    .entry((vni, peer, spi))
                    .or_insert_with(|| (epoch, SeqCounter::default()));
                Arc::clone(c)
            };
            OutboundSa::new(spi, material, epoch, now_unix).with_counter(seq)
        };
        let sa = match self.outbound.entry((vni, peer, lane)) {
            Entry::Occupied(o) => {
                let sa = o.into_mut();
                if sa.epoch() != epoch {
                    *sa = new_sa();
                }
                sa
            }
            Entry::Vacant(v) => v.insert(new_sa()),
        };
        Ok(sa.seal_in_place(buf, esp_start, plain_len)?)
    }

    /// `seal` for a plaintext that must survive (a flood to several peers): copies `plain` into
    /// `out` after `esp_start + 16`, then seals there.
    #[allow(clippy::too_many_arguments)]
    pub fn seal_from(
        &mut self,
        now_unix: u64,
        vni: u32,
        peer: Ipv4Addr,
        lane: u8,
        plain: &[u8],
        out: &mut [u8],
        esp_start: usize,
    ) -> Result<usize, SealDrop> {
        let at = esp_start + esp::PREFIX_LEN;
        out.get_mut(at..at + plain.len())
            .ok_or(SealDrop::BufferTooSmall)?
            .copy_from_slice(plain);
        self.seal(now_unix, vni, peer, lane, out, esp_start, plain.len())
    }

    /// Verifies, decrypts and replay-checks the ESP packet `buf` (SPI to ICV, the RFC 3948 UDP
    /// header already removed) that arrived from `src`. Returns the network's VNI and where the
    /// plaintext (inner UDP header, VXLAN header, frame) is in `buf`.
    pub fn open(
        &mut self,
        now_unix: u64,
        mono_ms: u64,
        src: Ipv4Addr,
        buf: &mut [u8],
    ) -> Result<(u32, Range<usize>), EspDrop> {
        let spi = esp::Packet::new_checked(&buf[..])
            .map_err(|_| EspDrop::Truncated)?
            .spi();
        if !self.owns_lane(keys::lane_of_spi(spi)) {
            return Err(EspDrop::Misrouted);
        }
        let now_epoch = keys::epoch(now_unix, self.interval);
        match self.inbound.get_mut(&(src, spi)) {
            // Expired but not yet swept by `expire`.
            Some(slot) if slot.sa.epoch().saturating_add(1) < now_epoch => Err(EspDrop::UnknownSpi),
            Some(slot) => {
                let r = slot.sa.open_in_place(buf)?;
                check_vni(&mut slot.sa, &buf[r.clone()])?;
                Ok((slot.sa.vni(), r))
            }
            None => self.open_new(now_unix, now_epoch, mono_ms, src, spi, buf),
        }
    }

    /// First packet of an SPI: derive the key the SPI implies and install the SA only if the
    /// packet authenticates under it.
    fn open_new(
        &mut self,
        now_unix: u64,
        now_epoch: u64,
        mono_ms: u64,
        src: Ipv4Addr,
        spi: u32,
        buf: &mut [u8],
    ) -> Result<(u32, Range<usize>), EspDrop> {
        if self.retired.contains_key(&(src, spi)) {
            return Err(EspDrop::UnknownSpi);
        }
        let parts = keys::split_spi(spi);
        let net = self
            .networks
            .get(&parts.net_id)
            .filter(|n| n.has_peer(src) && parts.boot_field != 0)
            .ok_or(EspDrop::UnknownSpi)?;
        let epoch = keys::resolve_epoch(parts.epoch_low, now_epoch).ok_or(EspDrop::UnknownSpi)?;
        let bucket = self.buckets.get_mut(&src).ok_or(EspDrop::UnknownSpi)?;
        if !bucket.take(mono_ms) {
            return Err(EspDrop::RateLimited);
        }
        let material = keys::derive(&net.secret, net.vni, src, self.local, spi, epoch);
        let mut sa = InboundSa::new(spi, net.vni, material, epoch, now_unix);
        let result = sa.open_in_place(buf);
        match result {
            Ok(_) => {}
            Err(e) if e.authenticated() => {}
            Err(e) => return Err(e.into()),
        }
        let vni = sa.vni();
        let slot = self.install(src, sa);
        let r = result?;
        check_vni(&mut slot.sa, &buf[r.clone()])?;
        Ok((vni, r))
    }

    fn install(&mut self, src: Ipv4Addr, sa: InboundSa) -> &mut InSlot {
        let (vni, lane) = (sa.vni(), keys::lane_of_spi(sa.spi()));
        let same_pair = |k: &(Ipv4Addr, u32), s: &InSlot| {
            k.0 == src && s.sa.vni() == vni && keys::lane_of_spi(k.1) == lane
        };
        while self.inbound.iter().filter(|(k, s)| same_pair(k, s)).count()
            >= MAX_INBOUND_PER_PEER_NET
        {
            let oldest = self
                .inbound
                .iter()
                .filter(|(k, s)| same_pair(k, s))
                .min_by_key(|(_, s)| (s.sa.epoch(), s.order))
                .map(|(k, s)| (*k, s.sa.epoch()));
            match oldest {
                Some((k, epoch)) => {
                    self.inbound.remove(&k);
                    self.retired.insert(k, epoch);
                }
                None => break,
            }
        }
        self.installs += 1;
        let order = self.installs;
        let key = (src, sa.spi());
        self.retired.remove(&key);
        self.inbound.insert(key, InSlot { sa, order });
        // Just inserted.
        self.inbound.get_mut(&key).expect("inserted above")
    }

    /// Forgets SAs that can no longer be used: inbound ones of epochs before e-1, outbound ones
    /// of epochs before the current. Call it now and then (every few seconds).
    pub fn expire(&mut self, now_unix: u64) {
        let e = keys::epoch(now_unix, self.interval);
        self.inbound
            .retain(|_, s| s.sa.epoch().saturating_add(1) >= e);
        self.retired.retain(|_, epoch| epoch.saturating_add(1) >= e);
        self.out_epoch = self.out_epoch.max(e);
        let out_epoch = self.out_epoch;
        self.outbound.retain(|_, sa| sa.epoch() >= out_epoch);
        // A shared counter goes once no copy holds its SA and its epoch is over: a copy whose
        // clock lags (`now` is read once per loop turn) may still make an SA of the epoch just
        // ended, and must then continue its count.
        let mut shared = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        shared.retain(|_, (epoch, c)| epoch.saturating_add(1) >= e || Arc::strong_count(c) > 1);
    }

    /// Every SA, sorted by network, peer, direction and epoch, for `show sa`.
    pub fn sa_list(&self, now_unix: u64) -> Vec<SaInfo> {
        let key_hex = |m: &SaKey| {
            let mut s = super::to_hex(&m.key);
            s.push_str(&super::to_hex(&m.salt));
            s
        };
        let mut v: Vec<SaInfo> = self
            .outbound
            .iter()
            .map(|(&(vni, peer, _), sa)| SaInfo {
                peer,
                vni,
                direction: "out",
                src: self.local,
                dst: peer,
                spi: sa.spi(),
                epoch: sa.epoch(),
                seq: sa.seq(),
                age_secs: now_unix.saturating_sub(sa.created_unix()),
                packets: sa.packets,
                bytes: sa.bytes,
                drops: sa.drops,
                key_hex: key_hex(sa.material()),
            })
            .chain(self.inbound.iter().map(|(&(peer, spi), s)| SaInfo {
                peer,
                vni: s.sa.vni(),
                direction: "in",
                src: peer,
                dst: self.local,
                spi,
                epoch: s.sa.epoch(),
                seq: s.sa.seq(),
                age_secs: now_unix.saturating_sub(s.sa.created_unix()),
                packets: s.sa.packets,
                bytes: s.sa.bytes,
                drops: s.sa.drops,
                key_hex: key_hex(s.sa.material()),
            }))
            .collect();
        v.sort_by(|a, b| {
            (a.vni, a.peer, a.direction, a.epoch, a.spi).cmp(&(
                b.vni,
                b.peer,
                b.direction,
                b.epoch,
                b.spi,
            ))
        });
        v
    }
}

fn net_of(nets: &HashMap<u16, Net>, vni: u32) -> Option<&Net> {
    nets.get(&keys::net_id(vni)).filter(|n| n.vni == vni)
}

/// The plaintext's VXLAN header must name the SA's own network.
fn check_vni(sa: &mut InboundSa, plain: &[u8]) -> Result<(), EspDrop> {
    let ok = plain
        .get(INNER_UDP_LEN..)
        .and_then(|v| vxlan::Packet::new_checked(v).ok())
        .is_some_and(|v| v.vni() == sa.vni());
    if ok {
        Ok(())
    } else {
        sa.drops += 1;
        Err(EspDrop::WrongVni)
    }
}

#[cfg(test)]
mod tests;
