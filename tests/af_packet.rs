//! Namespace tests for `io::af_packet` (run as root): the TPACKET_V3 receive ring and fanout
//! groups. Every test works in network namespaces it creates (deleted on drop, also on failure);
//! frames are injected with a packet socket on one end of a veth and received on the other.

mod common;

use common::testbed::{run, Netns};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use vswitch::io::{open_netns, run_in_netns, PacketOptions, PacketSocket, RxMode};
use vswitch::offload::vnet;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ns_name(tag: &str) -> String {
    format!(
        "vswt-afp-{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One namespace holding a veth pair: `vp` (where the sockets under test listen) and `vc`
/// (where frames are injected). No addresses, IPv6 off: nothing but the test's frames crosses.
struct Veth {
    _ns: Netns,
    fd: OwnedFd,
}

impl Veth {
    fn new(tag: &str) -> Veth {
        let ns = Netns::new(&ns_name(tag)).unwrap();
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            .unwrap();
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            .unwrap();
        ns.exec(&[
            "ip", "link", "add", "vp", "type", "veth", "peer", "name", "vc",
        ])
        .unwrap();
        ns.exec(&["ip", "link", "set", "vp", "up"]).unwrap();
        ns.exec(&["ip", "link", "set", "vc", "up"]).unwrap();
        let fd = open_netns(&ns.name).unwrap();
        Veth { _ns: ns, fd }
    }

    fn open(&self, ifname: &'static str, opts: PacketOptions) -> PacketSocket {
        run_in_netns(&self.fd, move || PacketSocket::open_with(ifname, &opts))
            .unwrap()
            .unwrap()
    }
}

const MAGIC: &[u8; 6] = b"VSWAFP";
const DST_PORT: u16 = 4000;

/// Ethernet + IPv4 + UDP (10.0.8.1:`sport` -> 10.0.8.2:4000) carrying MAGIC, `flow`, `seq` and
/// `pad` filler bytes.
fn test_frame(flow: u16, seq: u32, pad: usize) -> Vec<u8> {
    let payload_len = MAGIC.len() + 2 + 4 + pad;
    let ip_len = 20 + 8 + payload_len;
    let mut f = vec![0x02, 0, 0, 0, 8, 2, 0x02, 0, 0, 0, 8, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f[16..18].copy_from_slice(&(ip_len as u16).to_be_bytes());
    f.extend_from_slice(&[10, 0, 8, 1, 10, 0, 8, 2]);
    let mut sum: u32 = f[14..34]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&(10_000 + flow).to_be_bytes());
    f.extend_from_slice(&DST_PORT.to_be_bytes());
    f.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum
    f.extend_from_slice(MAGIC);
    f.extend_from_slice(&flow.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((0..pad).map(|i| (i as u8).wrapping_mul(7)));
    f
}

/// (flow, seq) of a frame made by `test_frame`.
fn parse_test_frame(f: &[u8]) -> Option<(u16, u32)> {
    let p = f.get(42..54)?;
    if &p[..6] != MAGIC {
        return None;
    }
    Some((
        u16::from_be_bytes([p[6], p[7]]),
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
    ))
}

fn send_all(s: &PacketSocket, frames: &[Vec<u8>]) {
    for f in frames {
        loop {
            match s.send(f) {
                Ok(n) => {
                    assert_eq!(n, f.len());
                    break;
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    std::thread::sleep(Duration::from_micros(100))
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    }
}

/// What `drain` saw on one socket.
#[derive(Default)]
struct Seen {
    /// Test frames in arrival order: (flow, seq, bytes).
    frames: Vec<(u16, u32, Vec<u8>)>,
    /// Other frames.
    other: usize,
    /// Readiness events delivered for the socket.
    wakeups: usize,
}

/// The sender of `send_and_drain` sends in chunks of this many frames and keeps at most two
/// chunks in flight: about 730 KB of the largest test frames, six of the ring's 32 blocks when
/// sent back to back. Without this bound a
/// receiver descheduled for a few tens of milliseconds on a busy two-core machine (while the
/// sender runs on the other core) lets the kernel fill every block, each one handed over part
/// full on its 1 ms timeout, and drop: a fact about the machine, not about the ring.
const IN_FLIGHT: usize = 500;

/// Sends `frames` on `tx` from another thread, at most two chunks of `IN_FLIGHT` ahead of what
/// `drain` has received, while `drain` receives them.
fn send_and_drain(
    tx: &PacketSocket,
    frames: &[Vec<u8>],
    socks: &[&PacketSocket],
    linger: Duration,
) -> Vec<Seen> {
    let received = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for (k, chunk) in frames.chunks(IN_FLIGHT).enumerate() {
                // Wait until every chunk before the previous one arrived. A lost frame never does,
                // so stop waiting after a while and let the receiver's count tell.
                let want = k.saturating_sub(1) * IN_FLIGHT;
                let give_up = Instant::now() + Duration::from_secs(2);
                while received.load(Ordering::Acquire) < want && Instant::now() < give_up {
                    std::thread::sleep(Duration::from_micros(200));
                }
                send_all(tx, chunk);
            }
        });
        drain_counting(
            socks,
            frames.len(),
            linger,
            Duration::from_secs(10),
            Some(&received),
        )
    })
}

/// `epoll_wait` returns EINTR when the process is stopped and continued (a debugger, a frozen
/// cgroup, a CI machine under pressure) even with no signal handler installed; that is no test
/// failure, so poll again, as the worker does. The events of an interrupted poll are empty.
fn poll_retrying(poll: &mut Poll, events: &mut Events, timeout: Duration) {
    if let Err(e) = poll.poll(events, Some(timeout)) {
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll: {e}");
        events.clear();
    }
}

/// Receives from `socks` the way the worker does, with an edge-triggered mio poll and each
/// socket drained until `WouldBlock`, until `want` test frames arrived in all, then for `linger`
/// more so that duplicates would show; or until `timeout`.
fn drain(socks: &[&PacketSocket], want: usize, linger: Duration, timeout: Duration) -> Vec<Seen> {
    drain_counting(socks, want, linger, timeout, None)
}

/// `drain`, publishing the number of test frames received so far in `received`.
fn drain_counting(
    socks: &[&PacketSocket],
    want: usize,
    linger: Duration,
    timeout: Duration,
    received: Option<&AtomicUsize>,
) -> Vec<Seen> {
    let mut poll = Poll::new().unwrap();
    for (i, s) in socks.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(&s.as_raw_fd()), Token(i), Interest::READABLE)
            .unwrap();
    }
    let mut seen: Vec<Seen> = socks.iter().map(|_| Seen::default()).collect();
    let mut events = Events::with_capacity(8);
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    let mut done_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = match done_at {
            Some(t) => t + linger,
            None => start + timeout,
        };
        if now >= until {
            break;
        }
        poll_retrying(&mut poll, &mut events, until - now);
        for ev in events.iter() {
            let i = ev.token().0;
            seen[i].wakeups += 1;
            loop {
                match socks[i].recv(&mut buf) {
                    Ok(info) => {
                        let f = &buf[..info.len];
                        match parse_test_frame(f) {
                            Some((flow, seq)) => seen[i].frames.push((flow, seq, f.to_vec())),
                            None => seen[i].other += 1,
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("recv: {e}"),
                }
            }
        }
        let total: usize = seen.iter().map(|s| s.frames.len()).sum();
        if let Some(r) = received {
            r.store(total, Ordering::Release);
        }
        if done_at.is_none() && total >= want {
            done_at = Some(Instant::now());
        }
    }
    seen
}

#[test]
fn ring_receives_exact_bytes_of_a_burst_in_order() {
    let v = Veth::new("burst");
    let rx = v.open("vp", PacketOptions::default());
    assert_eq!(rx.rx_mode(), RxMode::Ring, "the kernel refused the ring");
    let tx = v.open(
        "vc",
        PacketOptions {
            rx: RxMode::Recvmsg,
            ..PacketOptions::default()
        },
    );

    // Sizes from minimal to full-size, so frames fill blocks unevenly; 6,000 of them, about
    // 5 MB, go round the 4 MiB ring at least once.
    const N: u32 = 6000;
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| test_frame(0, i, (i as usize * 37) % 1460))
        .collect();
    // Read while they are sent, as the worker would. (The ring would hold them all, but a
    // block is handed over when full or after 1 ms: a sender slowed down by a busy machine
    // could spread them over more blocks than the ring has.)
    let seen = send_and_drain(&tx, &frames, &[&rx], Duration::from_millis(50));
    let s = &seen[0];
    let stats = rx.take_stats().unwrap();
    assert_eq!(
        s.frames.len(),
        N as usize,
        "got {} of {N} frames ({} others, {} wakeups; kernel: {stats:?})",
        s.frames.len(),
        s.other,
        s.wakeups
    );
    for (i, (flow, seq, bytes)) in s.frames.iter().enumerate() {
        assert_eq!((*flow, *seq), (0, i as u32), "frame {i} out of order");
        assert_eq!(bytes, &frames[i], "frame {i} altered");
    }
    assert_eq!(stats.drops, 0, "{stats:?}");

    // A few frames after a pause: a block that is not full is handed over on its timeout, and
    // wakes the poller again.
    let more: Vec<Vec<u8>> = (N..N + 10).map(|i| test_frame(0, i, 100)).collect();
    send_all(&tx, &more);
    let seen = drain(
        &[&rx],
        10,
        Duration::from_millis(20),
        Duration::from_secs(5),
    );
    let seqs: Vec<u32> = seen[0].frames.iter().map(|f| f.1).collect();
    assert_eq!(seqs, (N..N + 10).collect::<Vec<_>>());
}

/// Ones-complement check of an IPv4 TCP or UDP checksum, pseudo-header included.
fn l4_checksum_ok(f: &[u8]) -> bool {
    let ihl = ((f[14] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([f[16], f[17]]) as usize;
    let l4 = &f[14 + ihl..14 + total];
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&f[26..34]);
    add(&[0, f[23]]);
    add(&(l4.len() as u16).to_be_bytes());
    add(l4);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

#[test]
fn ring_hands_up_tso_super_frames_with_their_vnet_header() {
    // Two namespaces so that TCP really crosses the veth: a (10.0.8.1, vc) -> b (10.0.8.2, vp).
    let a = Netns::new(&ns_name("tso-a")).unwrap();
    let b = Netns::new(&ns_name("tso-b")).unwrap();
    run(&[
        "ip", "link", "add", "vc", "netns", &a.name, "type", "veth", "peer", "name", "vp", "netns",
        &b.name,
    ])
    .unwrap();
    a.exec(&["ip", "addr", "add", "10.0.8.1/24", "dev", "vc"])
        .unwrap();
    b.exec(&["ip", "addr", "add", "10.0.8.2/24", "dev", "vp"])
        .unwrap();
    a.exec(&["ip", "link", "set", "vc", "up"]).unwrap();
    b.exec(&["ip", "link", "set", "vp", "up"]).unwrap();
    // The defaults, said out loud: what this test is about.
    a.exec(&["ethtool", "-K", "vc", "tso", "on", "tx", "on"])
        .unwrap();
    let (afd, bfd) = (open_netns(&a.name).unwrap(), open_netns(&b.name).unwrap());
    let (rx, listener) = run_in_netns(&bfd, || {
        (
            PacketSocket::open("vp").unwrap(),
            TcpListener::bind("10.0.8.2:5000").unwrap(),
        )
    })
    .unwrap();
    assert_eq!(rx.rx_mode(), RxMode::Ring);
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        got.len()
    });
    const BYTES: usize = 4 << 20;
    let mut client = run_in_netns(&afd, || TcpStream::connect("10.0.8.2:5000").unwrap()).unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![0x5au8; 64 << 10];
        for _ in 0..BYTES / chunk.len() {
            client.write_all(&chunk).unwrap();
        }
    });

    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut SourceFd(&rx.as_raw_fd()), Token(0), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    let mut buf = vec![0u8; 128 << 10];
    let (mut supers, mut plain_tcp, mut partial_fixed) = (Vec::new(), 0, 0);
    let until = Instant::now() + Duration::from_secs(10);
    while supers.len() < 3 && Instant::now() < until {
        poll_retrying(&mut poll, &mut events, Duration::from_millis(100));
        loop {
            let info = match rx.recv(&mut buf) {
                Ok(info) => info,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("recv: {e}"),
            };
            let f = &buf[..info.len];
            if info.len < 54
                || f[12..14] != [0x08, 0x00]
                || f[23] != 6
                || f[26..30] != [10, 0, 8, 1]
            {
                continue;
            }
            assert!(!info.truncated, "{info:?}");
            // The IP header's own length says the frame arrived whole.
            assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize + 14, info.len);
            match info.gso {
                Some(h) => supers.push((h, info.len)),
                None => {
                    plain_tcp += 1;
                    // The sender left the checksum partial (tx offload on); recv completed it.
                    assert!(
                        l4_checksum_ok(f),
                        "TCP checksum of a {}-byte frame",
                        info.len
                    );
                    partial_fixed += 1;
                }
            }
        }
    }
    writer.join().unwrap();
    assert_eq!(server.join().unwrap(), BYTES);
    assert!(
        !supers.is_empty(),
        "no super-frame among {plain_tcp} TCP frames: no vnet header in the ring?"
    );
    for (h, len) in &supers {
        assert_eq!(h.gso_kind(), vnet::GSO_TCPV4, "{h:?}");
        assert!(*len > 1514, "a super-frame of {len} bytes");
        assert!((500..=1460).contains(&h.gso_size), "{h:?}");
        assert!(
            h.hdr_len >= 54 && h.flags & vnet::F_NEEDS_CSUM != 0,
            "{h:?}"
        );
        assert_eq!((h.csum_start, h.csum_offset), (34, 16), "{h:?}");
    }
    assert!(partial_fixed > 0, "no ordinary TCP frame seen");
}

#[test]
fn fanout_splits_flows_between_sockets_each_frame_once_and_in_order() {
    let v = Veth::new("fanout");
    let group = run_in_netns(&v.fd, || PacketSocket::open_fanout_group("vp", 2))
        .unwrap()
        .unwrap();
    let (a, b) = (&group[0], &group[1]);
    let id = a.fanout_group().expect("in a group");
    assert_eq!(b.fanout_group(), Some(id));
    assert_eq!((a.rx_mode(), b.rx_mode()), (RxMode::Ring, RxMode::Ring));
    // A second group on the same interface gets an id of its own.
    let other = run_in_netns(&v.fd, || PacketSocket::open_fanout_group("vp", 1))
        .unwrap()
        .unwrap();
    assert_ne!(other[0].fanout_group(), Some(id));
    drop(other);
    // Joining by id works too (what a worker started later would do).
    let c = run_in_netns(&v.fd, move || PacketSocket::open_fanout("vp", id))
        .unwrap()
        .unwrap();
    assert_eq!(c.fanout_group(), Some(id));
    drop(c);

    let tx = v.open(
        "vc",
        PacketOptions {
            rx: RxMode::Recvmsg,
            ..PacketOptions::default()
        },
    );
    // 64 flows (UDP source ports), 30 frames each, interleaved.
    const FLOWS: u16 = 64;
    const PER_FLOW: u32 = 30;
    let frames: Vec<Vec<u8>> = (0..PER_FLOW)
        .flat_map(|seq| (0..FLOWS).map(move |flow| test_frame(flow, seq, 64)))
        .collect();
    let total = frames.len();
    let seen = send_and_drain(&tx, &frames, &[a, b], Duration::from_millis(100));

    let mut once = HashSet::new();
    let mut owner: HashMap<u16, usize> = HashMap::new();
    let mut next: HashMap<u16, u32> = HashMap::new();
    for (i, s) in seen.iter().enumerate() {
        for (flow, seq, _) in &s.frames {
            assert!(once.insert((*flow, *seq)), "flow {flow} frame {seq} twice");
            let o = *owner.entry(*flow).or_insert(i);
            assert_eq!(o, i, "flow {flow} went to both sockets");
            let n = next.entry(*flow).or_insert(0);
            assert_eq!(*seq, *n, "flow {flow} out of order on socket {i}");
            *n += 1;
        }
    }
    assert_eq!(once.len(), total, "frames lost");
    let per_socket: Vec<usize> = seen.iter().map(|s| s.frames.len()).collect();
    assert!(
        per_socket.iter().all(|&n| n > 0),
        "all flows on one socket: {per_socket:?}"
    );

    // Any member sends, and the peer gets it once. No member sees frames leaving vp: not the
    // group's own (the kernel never loops those back to the group) and not another sender's
    // (PACKET_IGNORE_OUTGOING does not reach into a group: the group's flag and the members'
    // filter do that).
    let outsider = v.open(
        "vp",
        PacketOptions {
            rx: RxMode::Recvmsg,
            ..PacketOptions::default()
        },
    );
    send_all(a, &[test_frame(1000, 0, 10)]);
    send_all(b, &[test_frame(1001, 0, 10)]);
    send_all(&outsider, &[test_frame(1002, 0, 10)]);
    let seen = drain(
        &[a, b],
        usize::MAX,
        Duration::ZERO,
        Duration::from_millis(300),
    );
    for (i, s) in seen.iter().enumerate() {
        let flows: Vec<u16> = s.frames.iter().map(|f| f.0).collect();
        assert!(
            flows.is_empty(),
            "socket {i} saw outgoing frames of flows {flows:?}"
        );
    }
    let at_peer = drain(
        &[&tx],
        3,
        Duration::from_millis(100),
        Duration::from_secs(3),
    );
    let got: Vec<(u16, u32)> = at_peer[0].frames.iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(got, vec![(1000, 0), (1001, 0), (1002, 0)]);
}

#[test]
fn recvmsg_mode_still_works() {
    let v = Veth::new("recvmsg");
    let rx = v.open(
        "vp",
        PacketOptions {
            rx: RxMode::Recvmsg,
            ..PacketOptions::default()
        },
    );
    assert_eq!(rx.rx_mode(), RxMode::Recvmsg);
    let tx = v.open("vc", PacketOptions::default());
    let frames: Vec<Vec<u8>> = (0..50).map(|i| test_frame(7, i, 200)).collect();
    let seen = send_and_drain(&tx, &frames, &[&rx], Duration::from_millis(20));
    let got: Vec<&Vec<u8>> = seen[0].frames.iter().map(|f| &f.2).collect();
    assert_eq!(got, frames.iter().collect::<Vec<_>>());
}

/// The worker detaches a port whose `recv` fails (its interface gone): the ring must report
/// what recvmsg reports, ENETDOWN once, rather than look empty forever.
#[test]
fn deleted_interface_is_reported_by_recv() {
    for rx in [RxMode::Ring, RxMode::Recvmsg] {
        let v = Veth::new("gone");
        let s = v.open(
            "vp",
            PacketOptions {
                rx,
                ..PacketOptions::default()
            },
        );
        let tx = v.open("vc", PacketOptions::default());
        // A working socket first.
        let frames: Vec<Vec<u8>> = (0..3).map(|i| test_frame(9, i, 50)).collect();
        let seen = send_and_drain(&tx, &frames, &[&s], Duration::ZERO);
        assert_eq!(seen[0].frames.len(), 3, "{rx:?}");
        v._ns.exec(&["ip", "link", "del", "vp"]).unwrap();
        let mut buf = vec![0u8; 2048];
        let e = s.recv(&mut buf).expect_err("recv after the interface went");
        assert_eq!(e.raw_os_error(), Some(libc::ENETDOWN), "{rx:?}: {e}");
    }
}
