//! The DNS forwarder: names the switch does not own (crate::switch::dns), asked of the host's
//! resolvers on a container's behalf.
//!
//! Overview. A worker hands the forwarder a query frame by value through a bounded channel
//! (`channel`); the forwarder's sender thread gives the query an ID of its own and sends it,
//! from one UDP socket in the daemon's namespace, to the first upstream (`[dns] upstreams`, or
//! the nameservers of the host's /etc/resolv.conf). Its receiver thread takes the answer, checks
//! that it comes from the upstream asked with that ID and the same question, restores the
//! container's ID, truncates it (TC) to what the container can take, and hands the answer
//! frame to worker 0, which writes it to the container's port (`Command::SendToPort`).
//!
//! Over TCP. A query that came over TCP (crate::switch::dns_tcp) is asked the same way, and
//! its answer, whatever its size, goes back as the segments of the container's connection; an
//! upstream answer truncated over UDP is asked again of that upstream over TCP, from a thread
//! of its own (at most `MAX_TCP_IN_FLIGHT` at once; past that the truncated answer is
//! relayed, as over UDP).
//!
//! Bounds. At most `MAX_IN_FLIGHT` queries wait for upstreams; one more is answered SERVFAIL
//! at once. A query unanswered for `TRY_TIMEOUT` is asked of the next upstream, at most
//! `MAX_TRIES` times in all, then answered SERVFAIL. One client query makes at most
//! `MAX_TRIES` upstream queries and one answer no larger than it asked for (512 bytes, or its
//! EDNS size up to the network's MTU): no amplification either way.
//!
//! Thread-safety: two control threads share the table of waiting queries under a mutex; the
//! workers only ever `try_send` into the channel.

use crate::dataplane::worker::Upstream;
use crate::dataplane::Workers;
use crate::switch::dns::{self, UpstreamQuery};
use crate::switch::dns_tcp;
use crate::switch::topology::NetworkTopo;
use crate::switch::{PortId, Published, Vni};
use crate::wire::ethernet::{self, Frame};
use crate::wire::{ipv4, tcp, udp, MacAddr};
use crossbeam_channel::Receiver;
use domain::base::iana::Rcode;
use domain::base::{Message, MessageBuilder};
use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Queries waiting for an upstream at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// How long one upstream has to answer before the next is asked.
pub const TRY_TIMEOUT: Duration = Duration::from_millis(1500);
/// Upstream queries per container query, at most.
pub const MAX_TRIES: u32 = 2;
/// Queries asked of upstreams over TCP at once.
pub const MAX_TCP_IN_FLIGHT: usize = 16;
/// Slots of the channel from the workers.
const CHANNEL_SLOTS: usize = 1024;

/// What the forwarder did, for `show stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ForwarderStats {
    /// The resolvers asked, in order.
    pub upstreams: Vec<String>,
    /// Queries taken from the workers.
    pub queries: u64,
    /// Answers from upstreams relayed to containers.
    pub relayed: u64,
    /// Relayed answers cut to what the container takes (TC set).
    pub truncated: u64,
    /// Queries answered SERVFAIL: no upstream answered in time, or too many in flight.
    pub failed: u64,
    /// Queries the workers could not hand over (channel full): the container asks again.
    pub refused: u64,
    /// Datagrams on the forwarder's socket that answer nothing it asked.
    pub stray: u64,
    /// Queries that came over TCP.
    #[serde(default)]
    pub tcp_queries: u64,
    /// Queries asked of an upstream again over TCP, its UDP answer being truncated.
    #[serde(default)]
    pub tcp_upstream: u64,
}

#[derive(Default)]
struct Counters {
    queries: AtomicU64,
    relayed: AtomicU64,
    truncated: AtomicU64,
    failed: AtomicU64,
    stray: AtomicU64,
    tcp_queries: AtomicU64,
    tcp_upstream: AtomicU64,
}

/// The forwarder's handle for `show stats`.
#[derive(Clone)]
pub struct Forwarder {
    upstreams: Arc<Vec<SocketAddr>>,
    counters: Arc<Counters>,
    refused: Arc<AtomicU64>,
}

impl Forwarder {
    pub fn stats(&self) -> ForwarderStats {
        let c = &self.counters;
        ForwarderStats {
            upstreams: self.upstreams.iter().map(|a| a.to_string()).collect(),
            queries: c.queries.load(Ordering::Relaxed),
            relayed: c.relayed.load(Ordering::Relaxed),
            truncated: c.truncated.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            stray: c.stray.load(Ordering::Relaxed),
            tcp_queries: c.tcp_queries.load(Ordering::Relaxed),
            tcp_upstream: c.tcp_upstream.load(Ordering::Relaxed),
        }
    }
}

/// The workers' end (give each a clone) and the forwarder's.
pub fn channel() -> (Upstream, Receiver<UpstreamQuery>) {
    let (tx, rx) = crossbeam_channel::bounded(CHANNEL_SLOTS);
    (
        Upstream {
            queries: tx,
            refused: Arc::new(AtomicU64::new(0)),
        },
        rx,
    )
}

/// The nameservers of a resolv.conf text, port 53, in order.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                // A scoped IPv6 address (fe80::1%eth0) is not one std parses; skip it.
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The container that asked, and how to answer it.
#[derive(Clone)]
struct Waiting {
    port: PortId,
    network: Vni,
    mac: MacAddr,
    ip: Ipv4Addr,
    /// The container's UDP or TCP port.
    from_port: u16,
    /// Over TCP: where the answer's bytes go in the container's connection.
    tcp: Option<TcpPlace>,
    id: u16,
    /// The query as the container sent it (its DNS message).
    query: Vec<u8>,
    /// The largest answer the container takes.
    limit: usize,
    asked: Instant,
    tries: u32,
    upstream: usize,
}

/// The sequence number the answer starts at (what the container acknowledged) and the one it
/// acknowledges (past the query answered).
#[derive(Debug, Clone, Copy)]
struct TcpPlace {
    seq: u32,
    ack: u32,
}

struct Shared {
    tcp_in_flight: AtomicUsize,
    socket: UdpSocket,
    upstreams: Arc<Vec<SocketAddr>>,
    waiting: Mutex<HashMap<u16, Waiting>>,
    published: Published,
    workers: Workers,
    counters: Arc<Counters>,
}

/// Starts the forwarder's two threads on `queries` (the workers' end is `channel`'s first).
pub fn start(
    queries: Receiver<UpstreamQuery>,
    upstream: &Upstream,
    upstreams: Vec<SocketAddr>,
    published: Published,
    workers: Workers,
) -> std::io::Result<Forwarder> {
    let any: SocketAddr = if upstreams.iter().any(|a| a.is_ipv6()) {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(any)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let upstreams = Arc::new(upstreams);
    let counters = Arc::new(Counters::default());
    let shared = Arc::new(Shared {
        tcp_in_flight: AtomicUsize::new(0),
        socket,
        upstreams: Arc::clone(&upstreams),
        waiting: Mutex::new(HashMap::default()),
        published,
        workers,
        counters: Arc::clone(&counters),
    });
    let s = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("vswitch-dns-tx".into())
        .spawn(move || {
            for q in queries {
                s.ask(&q);
            }
        })?;
    let s = shared;
    std::thread::Builder::new()
        .name("vswitch-dns-rx".into())
        .spawn(move || s.receive_loop())?;
    Ok(Forwarder {
        upstreams,
        counters,
        refused: Arc::clone(&upstream.refused),
    })
}

/// The parts of a query frame the forwarder needs: who asked, from which port, where a TCP
/// answer goes, and the DNS message.
struct Asked<'a> {
    mac: MacAddr,
    ip: Ipv4Addr,
    port: u16,
    tcp: Option<TcpPlace>,
    msg: &'a [u8],
}

fn parse_query(frame: &[u8]) -> Option<Asked<'_>> {
    let eth = Frame::new_checked(frame).ok()?;
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    let l4_at = ethernet::HEADER_LEN + ip.header_len();
    let l4 = frame.get(l4_at..ethernet::HEADER_LEN + usize::from(ip.total_len()))?;
    if ip.protocol() == ipv4::PROTO_TCP {
        let t = tcp::Packet::new_checked(l4).ok()?;
        let (msg, used) = dns_tcp::first_query(&l4[t.header_len()..])?;
        let tcp = TcpPlace {
            seq: t.ack(),
            ack: t.seq().wrapping_add(used as u32),
        };
        return Some(Asked {
            mac: eth.src(),
            ip: ip.src(),
            port: t.src_port(),
            tcp: Some(tcp),
            msg,
        });
    }
    let u = udp::Packet::new_checked(l4).ok()?;
    Some(Asked {
        mac: eth.src(),
        ip: ip.src(),
        port: u.src_port(),
        tcp: None,
        msg: &l4[udp::HEADER_LEN..u.len()],
    })
}

impl Shared {
    /// Sends the container's query upstream under an ID of the forwarder's.
    fn ask(&self, q: &UpstreamQuery) {
        self.counters.queries.fetch_add(1, Ordering::Relaxed);
        let Some(asked) = parse_query(q.bytes()) else {
            return;
        };
        let Ok(parsed) = Message::from_octets(asked.msg) else {
            return;
        };
        if asked.tcp.is_some() {
            self.counters.tcp_queries.fetch_add(1, Ordering::Relaxed);
        }
        let mtu = self
            .published
            .load()
            .network(q.network)
            .map_or(1500, |n| n.spec.mtu as usize);
        // RFC 6891 §6.2.5: the requestor's UDP payload size, not less than 512.
        let limit = match asked.tcp {
            // RFC 7766 §8: a TCP answer is as long as it is.
            Some(_) => usize::from(u16::MAX),
            None => parsed
                .opt()
                .map_or(dns::UDP_MAX, |o| usize::from(o.udp_payload_size()))
                .clamp(dns::UDP_MAX, mtu.saturating_sub(udp::Repr::HEADERS_LEN)),
        };
        let w = Waiting {
            port: q.port,
            network: q.network,
            mac: asked.mac,
            ip: asked.ip,
            from_port: asked.port,
            tcp: asked.tcp,
            id: parsed.header().id(),
            query: asked.msg.to_vec(),
            limit,
            asked: Instant::now(),
            tries: 0,
            upstream: 0,
        };
        let mut waiting = self.waiting.lock().expect("forwarder lock");
        if waiting.len() >= MAX_IN_FLIGHT || self.upstreams.is_empty() {
            drop(waiting);
            return self.fail(&w);
        }
        let Some(id) = free_id(&waiting, w.id) else {
            drop(waiting);
            return self.fail(&w);
        };
        self.send(id, &w);
        waiting.insert(id, w);
    }

    /// Sends `w`'s query as `id` to its current upstream.
    fn send(&self, id: u16, w: &Waiting) {
        let mut m = w.query.clone();
        m[..2].copy_from_slice(&id.to_be_bytes());
        if let Err(e) = self.socket.send_to(&m, self.upstreams[w.upstream]) {
            tracing::debug!(upstream = %self.upstreams[w.upstream], "dns: cannot send: {e}");
        }
    }

    fn receive_loop(self: Arc<Self>) {
        let mut buf = vec![0u8; 65536];
        loop {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => self.answer(&buf[..n], from),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => tracing::warn!("dns: forwarder socket: {e}"),
            }
            self.expire(Instant::now());
        }
    }

    /// An upstream's answer: relayed when it answers what was asked, of whom it was asked.
    fn answer(self: &Arc<Self>, msg: &[u8], from: SocketAddr) {
        let Some(id) = msg.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            return self.stray();
        };
        let mut waiting = self.waiting.lock().expect("forwarder lock");
        let Some(w) = waiting.get(&id) else {
            return self.stray();
        };
        if self.upstreams[w.upstream] != from || !same_question(&w.query, msg) {
            return self.stray();
        }
        let w = waiting.remove(&id).expect("found above");
        drop(waiting);
        if w.tcp.is_some() && is_truncated(msg) && self.try_over_tcp(&w, from) {
            return;
        }
        let mut m = msg.to_vec();
        m[..2].copy_from_slice(&w.id.to_be_bytes());
        if m.len() > w.limit {
            m = truncated(&w.query, &m);
            self.counters.truncated.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.relayed.fetch_add(1, Ordering::Relaxed);
        self.relay(&w, &m);
    }

    /// Asks `upstream` for `w`'s query again over TCP, from a thread of its own, and relays its
    /// answer (or SERVFAIL); false when too many such queries are under way already.
    fn try_over_tcp(self: &Arc<Self>, w: &Waiting, upstream: SocketAddr) -> bool {
        if self.tcp_in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_TCP_IN_FLIGHT {
            self.tcp_in_flight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.counters.tcp_upstream.fetch_add(1, Ordering::Relaxed);
        let (me, w) = (Arc::clone(self), w.clone());
        let spawned = std::thread::Builder::new()
            .name("vswitch-dns-tcp".into())
            .spawn(move || {
                match ask_over_tcp(upstream, &w.query) {
                    Ok(m) if same_question(&w.query, &m) => {
                        me.counters.relayed.fetch_add(1, Ordering::Relaxed);
                        me.relay(&w, &m);
                    }
                    Ok(_) => {
                        me.stray();
                        me.fail(&w);
                    }
                    Err(e) => {
                        tracing::debug!(%upstream, "dns: asking over TCP: {e}");
                        me.fail(&w);
                    }
                }
                me.tcp_in_flight.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            self.tcp_in_flight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn stray(&self) {
        self.counters.stray.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks the next upstream for what waited too long, or gives up with SERVFAIL.
    fn expire(&self, now: Instant) {
        let mut failed = Vec::new();
        {
            let mut waiting = self.waiting.lock().expect("forwarder lock");
            let late: Vec<u16> = waiting
                .iter()
                .filter(|(_, w)| now.duration_since(w.asked) >= TRY_TIMEOUT)
                .map(|(id, _)| *id)
                .collect();
            for id in late {
                let w = waiting.get_mut(&id).expect("listed above");
                w.tries += 1;
                if w.tries >= MAX_TRIES {
                    failed.push(waiting.remove(&id).expect("listed above"));
                    continue;
                }
                w.upstream = (w.upstream + 1) % self.upstreams.len();
                w.asked = now;
                let w = &waiting[&id];
                self.send(id, w);
            }
        }
        for w in failed {
            tracing::debug!(upstreams = ?self.upstreams, "dns: no upstream answered in time");
            self.fail(&w);
        }
    }

    /// Answers SERVFAIL to the container.
    fn fail(&self, w: &Waiting) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = servfail(&w.query) {
            self.relay(w, &m);
        }
    }

    /// Writes the DNS message `m` to the container from its network's address: a datagram, or
    /// the segments of its TCP connection.
    fn relay(&self, w: &Waiting, m: &[u8]) {
        let topo = self.published.load();
        let Some(net) = topo.network(w.network) else {
            return;
        };
        if let Some(place) = w.tcp {
            return self.relay_tcp(net, w, place, m);
        }
        let mut frame = vec![0u8; dns::ANSWER_OFFSET + m.len()];
        frame[dns::ANSWER_OFFSET..].copy_from_slice(m);
        let n = dns::udp_reply_headers(net, w.mac, w.ip, w.from_port, m.len(), &mut frame);
        if n == 0 {
            return;
        }
        frame.truncate(n);
        self.workers.send_to_port(w.port, frame);
    }

    /// The answer `m` with its length prefix, in segments of the network's MSS from where the
    /// container's connection stands.
    fn relay_tcp(&self, net: &NetworkTopo, w: &Waiting, place: TcpPlace, m: &[u8]) {
        let mut data = Vec::with_capacity(2 + m.len());
        data.extend_from_slice(&(m.len() as u16).to_be_bytes());
        data.extend_from_slice(m);
        let chunks = data.chunks(dns_tcp::mss(net));
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.enumerate() {
            let mut frame = vec![0u8; dns_tcp::HEADERS + chunk.len()];
            frame[dns_tcp::HEADERS..].copy_from_slice(chunk);
            let seq = place.seq.wrapping_add((i * dns_tcp::mss(net)) as u32);
            let flags = match i == last {
                true => tcp::Flags::ACK | tcp::Flags::PSH,
                false => tcp::Flags::ACK,
            };
            let to = (w.mac, w.ip, w.from_port);
            let n = dns_tcp::segment_headers(
                net,
                to,
                seq,
                place.ack,
                flags,
                None,
                chunk.len(),
                &mut frame,
            );
            if n == 0 {
                return;
            }
            frame.truncate(n);
            self.workers.send_to_port(w.port, frame);
        }
    }
}

/// Whether the DNS message `m` says it was truncated (TC).
fn is_truncated(m: &[u8]) -> bool {
    Message::from_octets(m).is_ok_and(|m| m.header().tc())
}

/// Asks `upstream` for `query` over TCP (RFC 7766): one connection, one query, its answer.
fn ask_over_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&upstream, TRY_TIMEOUT)?;
    s.set_read_timeout(Some(TRY_TIMEOUT))?;
    s.set_write_timeout(Some(TRY_TIMEOUT))?;
    let mut out = Vec::with_capacity(2 + query.len());
    out.extend_from_slice(&(query.len() as u16).to_be_bytes());
    out.extend_from_slice(query);
    s.write_all(&out)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut m)?;
    Ok(m)
}

/// An ID no waiting query uses, starting from a hash of the container's so that IDs are not
/// sequential (RFC 5452 §4.3 asks for unpredictable IDs; the source port of the forwarder's
/// socket is random too).
fn free_id(waiting: &HashMap<u16, Waiting>, seed: u16) -> Option<u16> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    let start = (u32::from(seed).wrapping_mul(40503) ^ nanos) as u16;
    (0..=u16::MAX)
        .map(|k| start.wrapping_add(k.wrapping_mul(7919)))
        .find(|id| !waiting.contains_key(id))
}

/// Whether `answer` answers the question of `query` (name compared without case, RFC 4343).
fn same_question(query: &[u8], answer: &[u8]) -> bool {
    let (Ok(q), Ok(a)) = (Message::from_octets(query), Message::from_octets(answer)) else {
        return false;
    };
    if !a.header().qr() {
        return false;
    }
    match (q.first_question(), a.first_question()) {
        (Some(q), Some(a)) => q == a,
        _ => false,
    }
}

/// The answer to `query` as a header with TC set and the question alone (RFC 2181 §9): the
/// container asks again over TCP if it wants the rest.
fn truncated(query: &[u8], answer: &[u8]) -> Vec<u8> {
    let rcode = Message::from_octets(answer)
        .map(|a| a.header().rcode())
        .unwrap_or(Rcode::SERVFAIL);
    let Ok(q) = Message::from_octets(query) else {
        return Vec::new();
    };
    match MessageBuilder::new_vec().start_answer(&q, rcode) {
        Ok(mut b) => {
            b.header_mut().set_tc(true);
            b.header_mut().set_ra(true);
            b.finish()
        }
        Err(_) => Vec::new(),
    }
}

fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_octets(query).ok()?;
    let mut b = MessageBuilder::new_vec()
        .start_answer(&q, Rcode::SERVFAIL)
        .ok()?;
    b.header_mut().set_ra(true);
    Some(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, id: u16) -> Vec<u8> {
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_id(id);
        b.header_mut().set_rd(true);
        let mut q = b.question();
        let n: domain::base::Name<Vec<u8>> = name.parse().unwrap();
        q.push((n, domain::base::iana::Rtype::A)).unwrap();
        q.finish()
    }

    #[test]
    fn nameservers_come_from_resolv_conf_in_order() {
        let text = "# generated\nnameserver 192.0.2.53\nsearch example\nnameserver  ::1\n\
                    nameserver fe80::1%eth0\nnameserverx 1.1.1.1\n";
        let got = resolv_conf_nameservers(text);
        assert_eq!(
            got,
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn an_answer_must_carry_the_question_asked() {
        let q = query("example.org", 7);
        let mut a = MessageBuilder::new_vec()
            .start_answer(&Message::from_octets(&q[..]).unwrap(), Rcode::NOERROR)
            .unwrap()
            .finish();
        assert!(same_question(&q, &a));
        assert!(!same_question(&q, &q), "a query is no answer");
        let other = query("example.com", 7);
        assert!(!same_question(&other, &a));
        // Case does not matter (RFC 4343).
        let upper = query("EXAMPLE.org", 7);
        assert!(same_question(&upper, &a));
        a.truncate(12);
        assert!(!same_question(&q, &a));
    }

    #[test]
    fn truncation_keeps_the_question_and_sets_tc() {
        let q = query("example.org", 9);
        let t = truncated(&q, &servfail(&q).unwrap());
        let m = Message::from_octets(&t[..]).unwrap();
        assert!(m.header().tc() && m.header().qr());
        assert_eq!(m.header().id(), 9);
        assert_eq!(m.header_counts().ancount(), 0);
        assert!(same_question(&q, &t));
    }
}
