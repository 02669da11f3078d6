//! `EspTable`: every ESP security association of this host, for the worker to seal what it sends
//! to a peer on an encrypted network and open what arrives on the ESP port.
//!
//! Outbound: one SA per (network, peer), replaced by a new one (new SPI, new key) when the epoch
//! changes. The epoch used for sending never goes back, even if the clock does: recreating the
//! SA of an earlier epoch would restart its sequence numbers under the same key.
//!
//! Inbound: SAs keyed by (source address, SPI), created on the first packet of an unknown SPI
//! whose ICV verifies under the key the SPI implies (see `crate::crypto`), at most
//! `RATE_LIMIT_PER_SEC` such tries per peer, at most `MAX_INBOUND_PER_PEER_NET` SAs per (peer,
//! network). An SA evicted to respect that cap is remembered until it expires, so replayed
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
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Unknown-SPI key derivations allowed per peer per second (and as a burst).
pub const RATE_LIMIT_PER_SEC: u64 = 64;
/// Inbound SAs kept per (peer, network): the current and neighbouring epochs, plus a restart.
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
    outbound: HashMap<(u32, Ipv4Addr), OutboundSa>,
    inbound: HashMap<(Ipv4Addr, u32), InSlot>,
    /// SAs evicted before they expired, with their epoch: never re-created.
    retired: HashMap<(Ipv4Addr, u32), u64>,
    buckets: HashMap<Ipv4Addr, TokenBucket>,
    installs: u64,
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
            networks: HashMap::new(),
            out_epoch: 0,
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            retired: HashMap::new(),
            buckets: HashMap::new(),
            installs: 0,
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
        let mut by_id: HashMap<u16, Net> = HashMap::new();
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
        for (&(vni, peer), sa) in self.outbound.iter_mut() {
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
    /// no nonce is used twice whichever worker sends. (Inbound ESP for one host is received by
    /// one worker only: a replay window must see every packet of its SA.)
    pub fn replica(&self) -> EspTable {
        let config = EspConfig {
            networks: self.networks(),
            ..self.config.clone()
        };
        let mut t = EspTable::new(config).expect("config was accepted before");
        t.counters = Arc::clone(&self.counters);
        t
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
    /// VXLAN, frame) for `peer` on network `vni`, in place; the buffer needs
    /// `esp::OVERHEAD_MAX - 16` spare bytes after the plaintext. Returns the length of the ESP
    /// packet starting at `esp_start`. The caller writes the outer UDP header (port 4500) in
    /// front of it.
    pub fn seal(
        &mut self,
        now_unix: u64,
        vni: u32,
        peer: Ipv4Addr,
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
        let new_sa = || {
            let spi = keys::spi(epoch, boot, vni);
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
        let sa = match self.outbound.entry((vni, peer)) {
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
    pub fn seal_from(
        &mut self,
        now_unix: u64,
        vni: u32,
        peer: Ipv4Addr,
        plain: &[u8],
        out: &mut [u8],
        esp_start: usize,
    ) -> Result<usize, SealDrop> {
        let at = esp_start + esp::PREFIX_LEN;
        out.get_mut(at..at + plain.len())
            .ok_or(SealDrop::BufferTooSmall)?
            .copy_from_slice(plain);
        self.seal(now_unix, vni, peer, out, esp_start, plain.len())
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
        let epoch = keys::resolve_epoch(parts.epoch_low8, now_epoch).ok_or(EspDrop::UnknownSpi)?;
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
        let vni = sa.vni();
        let same_pair = |k: &(Ipv4Addr, u32), s: &InSlot| k.0 == src && s.sa.vni() == vni;
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
            .map(|(&(vni, peer), sa)| SaInfo {
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
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
    const SECRET: [u8; 32] = [9; 32];
    const IVL: u64 = 3600;
    /// Start of an epoch whose low 8 bits are not 0.
    const T0: u64 = 486_111 * IVL;

    fn net(vni: u32, secret: [u8; 32], peers: &[Ipv4Addr]) -> EspNetwork {
        EspNetwork {
            vni,
            secret,
            peers: peers.to_vec(),
        }
    }

    fn table(local: Ipv4Addr, boot: u32, networks: Vec<EspNetwork>) -> EspTable {
        EspTable::new(EspConfig {
            local_ip: local,
            boot,
            rekey_interval_secs: IVL,
            networks,
        })
        .unwrap()
    }

    /// A and B on network 42; B's table.
    fn pair(boot_a: u32) -> (EspTable, EspTable) {
        (
            table(A, boot_a, vec![net(42, SECRET, &[B])]),
            table(B, 1, vec![net(42, SECRET, &[A])]),
        )
    }

    /// Inner UDP / VXLAN(vni) / a 20-byte frame.
    fn plain(vni: u32) -> Vec<u8> {
        let mut p = vec![0u8; 8 + 8 + 20];
        p[0..2].copy_from_slice(&49152u16.to_be_bytes());
        p[2..4].copy_from_slice(&4789u16.to_be_bytes());
        let len = p.len() as u16;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        vxlan::emit(&mut p[8..16], vni);
        for (i, b) in p[16..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn seal(t: &mut EspTable, now: u64, vni: u32, peer: Ipv4Addr) -> Result<Vec<u8>, SealDrop> {
        seal_plain(t, now, vni, peer, &plain(vni))
    }

    fn seal_plain(
        t: &mut EspTable,
        now: u64,
        vni: u32,
        peer: Ipv4Addr,
        p: &[u8],
    ) -> Result<Vec<u8>, SealDrop> {
        let mut buf = vec![0u8; 8 + esp::PREFIX_LEN + p.len() + esp::OVERHEAD_MAX];
        let n = t.seal_from(now, vni, peer, p, &mut buf, 8)?;
        Ok(buf[8..8 + n].to_vec())
    }

    fn open(t: &mut EspTable, now: u64, src: Ipv4Addr, pkt: &[u8]) -> Result<u32, EspDrop> {
        open_at(t, now, now * 1000, src, pkt)
    }

    fn open_at(
        t: &mut EspTable,
        now: u64,
        mono_ms: u64,
        src: Ipv4Addr,
        pkt: &[u8],
    ) -> Result<u32, EspDrop> {
        let mut buf = pkt.to_vec();
        let (vni, r) = t.open(now, mono_ms, src, &mut buf)?;
        assert_eq!(buf[r].to_vec(), plain(vni));
        Ok(vni)
    }

    fn spi_of(pkt: &[u8]) -> u32 {
        esp::Packet::new_checked(pkt).unwrap().spi()
    }

    fn inbound(t: &EspTable, now: u64) -> Vec<SaInfo> {
        t.sa_list(now)
            .into_iter()
            .filter(|s| s.direction == "in")
            .collect()
    }

    fn seq_of(pkt: &[u8]) -> u32 {
        u32::from_be_bytes(pkt[4..8].try_into().unwrap())
    }

    #[test]
    fn copies_on_two_workers_never_send_the_same_sequence_number() {
        let (mut a0, mut b) = pair(1);
        let mut a1 = a0.replica();
        let mut seen = std::collections::BTreeSet::new();
        // The two workers interleave; every packet carries a fresh number under one SPI, and
        // B (one replay window) takes every one.
        for i in 0..50 {
            let t = if i % 3 == 0 { &mut a1 } else { &mut a0 };
            let p = seal(t, T0, 42, B).unwrap();
            assert!(
                seen.insert(seq_of(&p)),
                "sequence number {} used twice",
                seq_of(&p)
            );
            assert_eq!(open(&mut b, T0, A, &p), Ok(42));
        }
        assert_eq!(seen.len(), 50);
        assert_eq!(*seen.iter().last().unwrap(), 50);
        let spis: std::collections::BTreeSet<u32> = [&a0, &a1]
            .iter()
            .flat_map(|t| t.sa_list(T0))
            .filter(|s| s.direction == "out")
            .map(|s| s.spi)
            .collect();
        assert_eq!(spis.len(), 1, "one SA, one SPI, whichever worker sends");
        // The next epoch: a new SA, and the copies again share its count.
        let next = T0 + IVL;
        let p0 = seal(&mut a0, next, 42, B).unwrap();
        let p1 = seal(&mut a1, next, 42, B).unwrap();
        assert_ne!(spi_of(&p0), *spis.iter().next().unwrap());
        assert_eq!(spi_of(&p0), spi_of(&p1));
        assert_eq!((seq_of(&p0), seq_of(&p1)), (1, 2));
    }

    #[test]
    fn round_trip_and_sa_list() {
        let (mut a, mut b) = pair(1);
        for _ in 0..3 {
            let pkt = seal(&mut a, T0, 42, B).unwrap();
            assert_eq!(open(&mut b, T0 + 1, A, &pkt), Ok(42));
        }
        let out = a.sa_list(T0 + 10);
        let inb = b.sa_list(T0 + 10);
        assert_eq!(out.len(), 1);
        assert_eq!(inb.len(), 1);
        let (o, i) = (&out[0], &inb[0]);
        assert_eq!((o.direction, o.src, o.dst, o.peer), ("out", A, B, B));
        assert_eq!((i.direction, i.src, i.dst, i.peer), ("in", A, B, A));
        assert_eq!(o.spi, keys::spi(486_111, 1, 42));
        assert_eq!((o.spi, o.seq, o.packets), (i.spi, 3, 3));
        assert_eq!((i.seq, i.packets, i.bytes), (3, 3, 3 * 36));
        assert_eq!((o.age_secs, i.age_secs), (10, 9));
        assert_eq!(o.key_hex.len(), 72);
        assert_eq!(o.key_hex, i.key_hex);
        assert_eq!(o.wireshark_uat(), i.wireshark_uat());
        assert!(o
            .wireshark_uat()
            .starts_with("\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0x"));
        assert!(serde_json::to_string(o)
            .unwrap()
            .contains("\"direction\":\"out\""));
    }

    #[test]
    fn replay_tamper_and_first_packet_forgery() {
        let (mut a, mut b) = pair(1);
        let first = seal(&mut a, T0, 42, B).unwrap();
        let mut forged = first.clone();
        forged[20] ^= 1;
        // A forged first packet of a new SPI installs nothing.
        assert_eq!(open(&mut b, T0, A, &forged), Err(EspDrop::BadIcv));
        assert!(inbound(&b, T0).is_empty());
        assert_eq!(open(&mut b, T0, A, &first), Ok(42));
        assert_eq!(open(&mut b, T0, A, &first), Err(EspDrop::Replay));
        let second = seal(&mut a, T0, 42, B).unwrap();
        let mut bad = second.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x80;
        assert_eq!(open(&mut b, T0, A, &bad), Err(EspDrop::BadIcv));
        assert_eq!(open(&mut b, T0, A, &second), Ok(42));
        assert_eq!(inbound(&b, T0)[0].drops, 2);
        assert_eq!(open(&mut b, T0, A, &second[..20]), Err(EspDrop::Truncated));
    }

    #[test]
    fn key_of_one_network_cannot_inject_into_another() {
        let mut a = table(A, 1, vec![net(42, SECRET, &[B]), net(43, [5; 32], &[B])]);
        let mut b = table(B, 1, vec![net(42, SECRET, &[A]), net(43, [5; 32], &[A])]);
        let pkt = seal_plain(&mut a, T0, 42, B, &plain(43)).unwrap();
        let mut buf = pkt.clone();
        assert_eq!(b.open(T0, 0, A, &mut buf).unwrap_err(), EspDrop::WrongVni);
        // Authentic, so the SA was installed and counts the drop.
        assert_eq!(inbound(&b, T0)[0].drops, 1);
        let ok = seal(&mut a, T0, 43, B).unwrap();
        assert_eq!(open(&mut b, T0, A, &ok), Ok(43));
    }

    #[test]
    fn seal_only_for_encrypted_peers() {
        let (mut a, _) = pair(1);
        assert_eq!(seal(&mut a, T0, 7, B), Err(SealDrop::NotEncrypted));
        assert_eq!(seal(&mut a, T0, 42, C), Err(SealDrop::NotEncrypted));
        assert_eq!(seal(&mut a, T0, 42 + 4096, B), Err(SealDrop::NotEncrypted));
        assert!(a.is_encrypted(42));
        assert!(!a.is_encrypted(7));
        let mut small = [0u8; 40];
        assert_eq!(
            a.seal(T0, 42, B, &mut small, 0, 30),
            Err(SealDrop::BufferTooSmall)
        );
    }

    #[test]
    fn rotation_with_overlap() {
        let (mut a, mut b) = pair(1);
        let old1 = seal(&mut a, T0, 42, B).unwrap();
        let old2 = seal(&mut a, T0 + IVL - 1, 42, B).unwrap();
        let new1 = seal(&mut a, T0 + IVL, 42, B).unwrap();
        let (s_old, s_new) = (spi_of(&old1), spi_of(&new1));
        assert_eq!(spi_of(&old2), s_old);
        assert_ne!(s_old, s_new);
        assert_eq!(keys::split_spi(s_new).epoch_low8, (486_111 + 1) as u8);
        // The new SA starts at 1.
        assert_eq!(esp::Packet::new_checked(&new1[..]).unwrap().seq_low(), 1);
        // B is already in the next epoch and still takes the old SA's stragglers.
        let t = T0 + IVL + 5;
        assert_eq!(open(&mut b, t, A, &new1), Ok(42));
        assert_eq!(open(&mut b, t, A, &old1), Ok(42));
        assert_eq!(open(&mut b, t, A, &old2), Ok(42));
        assert_eq!(inbound(&b, t).len(), 2);
        // Two epochs later the old SA is dead, swept or not.
        let late = seal(&mut a, T0 + IVL - 1, 42, B).unwrap();
        assert_eq!(spi_of(&late), s_new, "sending never goes back an epoch");
        let t2 = T0 + 2 * IVL;
        let old3 = {
            let mut fresh_a = table(A, 1, vec![net(42, SECRET, &[B])]);
            seal(&mut fresh_a, T0, 42, B).unwrap();
            seal(&mut fresh_a, T0, 42, B).unwrap();
            seal(&mut fresh_a, T0, 42, B).unwrap()
        };
        assert_eq!(spi_of(&old3), s_old);
        assert_eq!(open(&mut b, t2, A, &old3), Err(EspDrop::UnknownSpi));
        b.expire(t2);
        assert_eq!(
            inbound(&b, t2).iter().map(|s| s.spi).collect::<Vec<_>>(),
            vec![s_new]
        );
        assert_eq!(open(&mut b, t2, A, &old3), Err(EspDrop::UnknownSpi));
        // e-1 (as seen from t2) still works.
        let n2 = seal(&mut a, T0 + IVL, 42, B).unwrap();
        assert_eq!(open(&mut b, t2, A, &n2), Ok(42));
    }

    #[test]
    fn clocks_may_differ_by_one_interval() {
        let (mut a, mut b) = pair(1);
        let ahead = seal(&mut a, T0 + IVL, 42, B).unwrap();
        assert_eq!(open(&mut b, T0, A, &ahead), Ok(42));
        let (mut a, mut b) = pair(1);
        let far = seal(&mut a, T0 + 2 * IVL, 42, B).unwrap();
        assert_eq!(open(&mut b, T0, A, &far), Err(EspDrop::UnknownSpi));
        let behind = seal(&mut a, T0, 42, B).unwrap();
        let (mut a2, _) = pair(1);
        let old = seal(&mut a2, T0 - 2 * IVL, 42, B).unwrap();
        assert_eq!(open(&mut b, T0, A, &old), Err(EspDrop::UnknownSpi));
        // `a` already sent in T0 + 2 intervals: its "T0" packet uses that SA.
        assert_eq!(spi_of(&behind), spi_of(&far));
    }

    #[test]
    fn restart_uses_new_spi_and_key() {
        let (mut a1, mut b) = pair(1);
        let mut a2 = table(A, 2, vec![net(42, SECRET, &[B])]);
        let p1 = seal(&mut a1, T0, 42, B).unwrap();
        let p2 = seal(&mut a2, T0, 42, B).unwrap();
        assert_ne!(spi_of(&p1), spi_of(&p2));
        let (k1, k2) = (&a1.sa_list(T0)[0].key_hex, &a2.sa_list(T0)[0].key_hex);
        assert_ne!(k1, k2);
        // Same sequence number 1, different key: no nonce reuse.
        assert_eq!(&p1[4..16], &p2[4..16]);
        assert_ne!(&p1[16..], &p2[16..]);
        assert_eq!(open(&mut b, T0, A, &p1), Ok(42));
        assert_eq!(open(&mut b, T0, A, &p2), Ok(42));
        // Boot counters 4095 apart share the SPI field (documented limit), neighbours never do.
        for boot in 1..5000 {
            assert_ne!(keys::spi(9, boot, 42), keys::spi(9, boot + 1, 42));
        }
    }

    /// xorshift, so the garbage is the same on every run.
    fn garbage(state: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                *state as u8
            })
            .collect()
    }

    #[test]
    fn garbage_installs_nothing() {
        let (_, mut b) = pair(1);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let valid_spi = keys::spi(486_111, 7, 42);
        for i in 0..2000u64 {
            let mut pkt = garbage(&mut rng, (i % 120) as usize);
            if i % 2 == 0 && pkt.len() >= 4 {
                pkt[..4].copy_from_slice(&valid_spi.to_be_bytes());
            }
            let src = if i % 3 == 0 { C } else { A };
            let r = open_at(&mut b, T0, i * 100, src, &pkt);
            assert!(
                matches!(
                    r,
                    Err(EspDrop::Truncated
                        | EspDrop::UnknownSpi
                        | EspDrop::BadIcv
                        | EspDrop::RateLimited
                        | EspDrop::Replay)
                ),
                "{r:?}"
            );
            if src == C {
                assert!(r != Err(EspDrop::BadIcv), "no derivation for non-peers");
            }
        }
        assert!(b.sa_list(T0).is_empty());
    }

    #[test]
    fn unknown_spi_derivations_are_rate_limited() {
        let (_, mut b) = pair(1);
        let mut rng = 1u64;
        let spi = keys::spi(486_111, 7, 42);
        let forged = |rng: &mut u64| {
            let mut p = garbage(rng, 80);
            p[..4].copy_from_slice(&spi.to_be_bytes());
            p[4..8].copy_from_slice(&1u32.to_be_bytes());
            p
        };
        let mono = 5_000_000;
        for _ in 0..RATE_LIMIT_PER_SEC {
            let p = forged(&mut rng);
            assert_eq!(open_at(&mut b, T0, mono, A, &p), Err(EspDrop::BadIcv));
        }
        let p = forged(&mut rng);
        assert_eq!(open_at(&mut b, T0, mono, A, &p), Err(EspDrop::RateLimited));
        // Half a second refills half the bucket.
        for _ in 0..RATE_LIMIT_PER_SEC / 2 {
            let p = forged(&mut rng);
            assert_eq!(open_at(&mut b, T0, mono + 500, A, &p), Err(EspDrop::BadIcv));
        }
        let p = forged(&mut rng);
        assert_eq!(
            open_at(&mut b, T0, mono + 500, A, &p),
            Err(EspDrop::RateLimited)
        );
        // The limit is per peer, and genuine traffic of a known SA is never limited.
        let mut a = table(A, 1, vec![net(42, SECRET, &[B])]);
        let genuine = seal(&mut a, T0, 42, B).unwrap();
        assert_eq!(open_at(&mut b, T0, mono + 10_000, A, &genuine), Ok(42));
        for _ in 0..1000 {
            let p = seal(&mut a, T0, 42, B).unwrap();
            assert_eq!(open_at(&mut b, T0, mono + 10_000, A, &p), Ok(42));
        }
    }

    #[test]
    fn at_most_four_sas_per_peer_and_network_and_evicted_stay_dead() {
        let (_, mut b) = pair(1);
        let mut firsts = Vec::new();
        let mut senders = Vec::new();
        for boot in 1..=5 {
            let mut a = table(A, boot, vec![net(42, SECRET, &[B])]);
            let p = seal(&mut a, T0, 42, B).unwrap();
            assert_eq!(open(&mut b, T0, A, &p), Ok(42), "boot {boot}");
            firsts.push(p);
            senders.push(a);
        }
        let spis: Vec<u32> = inbound(&b, T0).iter().map(|s| s.spi).collect();
        assert_eq!(spis.len(), MAX_INBOUND_PER_PEER_NET);
        let evicted = spi_of(&firsts[0]);
        assert!(!spis.contains(&evicted), "the oldest went");
        // Replaying the evicted SA's packets cannot bring it back with a fresh window.
        assert_eq!(open(&mut b, T0, A, &firsts[0]), Err(EspDrop::UnknownSpi));
        let newer = seal(&mut senders[0], T0, 42, B).unwrap();
        assert_eq!(open(&mut b, T0, A, &newer), Err(EspDrop::UnknownSpi));
        assert_eq!(inbound(&b, T0).len(), MAX_INBOUND_PER_PEER_NET);
        // The tombstone goes when the epoch does.
        b.expire(T0 + 2 * IVL);
        assert!(b.retired.is_empty());
        assert!(inbound(&b, T0 + 2 * IVL).is_empty());
    }

    #[test]
    fn clock_going_back_never_reuses_a_nonce() {
        let (mut a, mut b) = pair(1);
        let p1 = seal(&mut a, T0 + IVL, 42, B).unwrap();
        let p2 = seal(&mut a, T0, 42, B).unwrap();
        assert_eq!(spi_of(&p1), spi_of(&p2));
        assert_eq!(&p2[4..8], &2u32.to_be_bytes());
        a.expire(T0);
        let p3 = seal(&mut a, T0, 42, B).unwrap();
        assert_eq!(
            (spi_of(&p3), &p3[4..8]),
            (spi_of(&p1), &3u32.to_be_bytes()[..])
        );
        for p in [&p1, &p2, &p3] {
            assert_eq!(open(&mut b, T0 + IVL, A, p), Ok(42));
        }
    }

    #[test]
    fn reconfiguration_keeps_counters() {
        let (mut a, mut b) = pair(1);
        for _ in 0..3 {
            let p = seal(&mut a, T0, 42, B).unwrap();
            assert_eq!(open(&mut b, T0, A, &p), Ok(42));
        }
        let key_before = a.sa_list(T0)[0].key_hex.clone();
        // New secret on both ends: same SPI, new key, the counter goes on.
        a.set_networks(vec![net(42, [1; 32], &[B])]).unwrap();
        b.set_networks(vec![net(42, [1; 32], &[A])]).unwrap();
        assert!(inbound(&b, T0).is_empty(), "old-key SAs dropped");
        let p = seal(&mut a, T0, 42, B).unwrap();
        assert_eq!(&p[4..8], &4u32.to_be_bytes());
        assert_ne!(a.sa_list(T0)[0].key_hex, key_before);
        assert_eq!(open(&mut b, T0, A, &p), Ok(42));
        // Network removed and re-added within the epoch: still no restart at 1.
        a.set_networks(vec![]).unwrap();
        assert_eq!(seal(&mut a, T0, 42, B), Err(SealDrop::NotEncrypted));
        a.set_networks(vec![net(42, [1; 32], &[B])]).unwrap();
        let p = seal(&mut a, T0, 42, B).unwrap();
        assert_eq!(&p[4..8], &5u32.to_be_bytes());
        assert_eq!(open(&mut b, T0, A, &p), Ok(42));
        // Peer removed from B's network: its SAs go, and it cannot create new ones.
        b.set_networks(vec![net(42, [1; 32], &[C])]).unwrap();
        assert!(inbound(&b, T0).is_empty());
        let p = seal(&mut a, T0, 42, B).unwrap();
        assert_eq!(open(&mut b, T0, A, &p), Err(EspDrop::UnknownSpi));
    }

    #[test]
    fn expire_drops_outbound_of_past_epochs() {
        let (mut a, _) = pair(1);
        seal(&mut a, T0, 42, B).unwrap();
        a.expire(T0 + IVL - 1);
        assert_eq!(a.sa_list(T0).len(), 1);
        a.expire(T0 + IVL);
        assert!(a.sa_list(T0).is_empty());
    }

    #[test]
    fn config_errors() {
        let cfg = |boot, interval, networks| EspConfig {
            local_ip: A,
            boot,
            rekey_interval_secs: interval,
            networks,
        };
        assert_eq!(
            EspTable::new(cfg(0, IVL, vec![])).err(),
            Some(EspConfigError::ZeroBoot)
        );
        assert_eq!(
            EspTable::new(cfg(1, 0, vec![])).err(),
            Some(EspConfigError::ZeroInterval)
        );
        let e = EspTable::new(cfg(
            1,
            IVL,
            vec![net(42, SECRET, &[B]), net(42 + 4096, SECRET, &[B])],
        ))
        .err()
        .unwrap();
        assert_eq!(e, EspConfigError::NetIdCollision { a: 42, b: 4138 });
        assert!(e.to_string().contains("4138"));
    }

    #[test]
    fn drop_names() {
        let mut names: Vec<&str> = EspDrop::ALL.iter().map(|d| d.name()).collect();
        assert!(names.iter().all(|n| n.starts_with("esp_")));
        assert!(EspDrop::ALL.iter().all(|d| !d.help().is_empty()));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EspDrop::ALL.len());
    }
}
