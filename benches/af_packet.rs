//! Receive cost of an AF_PACKET port: the TPACKET_V3 ring against one recvmsg per frame, in the
//! same build (`RxMode::Ring` / `RxMode::Recvmsg`), alternating runs.
//!
//! `sudo cargo bench --bench af_packet [-- ROUNDS] [ring|recvmsg]` (default 5 rounds of both,
//! about 30 s; naming one path runs only that one, e.g. the built binary under
//! `strace -f -c BINARY --bench 1 ring` to check the syscall counts). Needs root:
//! it makes a network namespace `vswb-afp-PID` with a veth pair, `vc` (frames are injected
//! there with a packet socket) and `vp` (the socket under test), and deletes it at the end,
//! also on failure. Nothing is configured in, or sent from, the root namespace.
//!
//! Three measurements, each alternating ring and recvmsg runs; every figure is the median over
//! the rounds, and the ratio ring / recvmsg is what to read (TESTING.md):
//!
//! - **drain**: N frames are queued on the socket first (the ring holds them; the recvmsg socket
//!   gets an SO_RCVBUFFORCE large enough), then `recv` is timed until `WouldBlock`: the pure
//!   per-frame receive cost, without the kernel's delivery. Small frames (60-byte UDP payload)
//!   and full-size ones (1472).
//! - **stream**: a sender thread injects M small frames as fast as it can (sendmmsg) while the receiver
//!   drains the way the worker does (edge-triggered mio poll, `recv` until `WouldBlock`). Frames
//!   received per second of wall time, the receiving thread's CPU time per frame
//!   (CLOCK_THREAD_CPUTIME_ID), frames the kernel dropped for lack of room (default receive
//!   buffer for recvmsg, as vswitchd has), and syscalls per frame on the receive side (each
//!   recvmsg and each epoll_wait is one; the ring's `recv` makes one, a getsockopt for a pending
//!   error, only when it finds the ring empty).
//! - **latency**: one frame every 2 ms; time from `send` returning to the frame in hand (the
//!   receiver blocks in epoll_wait). The ring's block timeout shows here.

#[path = "../tests/common/frames.rs"]
mod frames;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::io::{open_netns, run_in_netns, PacketOptions, PacketSocket, RxMode};
use vswitch::wire::MacAddr;

const DRAIN_SMALL: usize = 8_000;
const DRAIN_LARGE: usize = 2_000;
const STREAM: usize = 300_000;
const LATENCY_SAMPLES: usize = 200;

struct Netns {
    name: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?} failed");
}

fn frame(payload: usize, seq: u32) -> Vec<u8> {
    let mut f = frames::udp_frame(
        MacAddr([0x02, 0, 0, 0, 8, 1]),
        MacAddr([0x02, 0, 0, 0, 8, 2]),
        "10.0.8.1".parse().unwrap(),
        "10.0.8.2".parse().unwrap(),
        payload,
    );
    f[42..46].copy_from_slice(&seq.to_be_bytes());
    f
}

fn open(fd: &OwnedFd, ifname: &'static str, rx: RxMode) -> PacketSocket {
    let s = run_in_netns(fd, move || {
        PacketSocket::open_with(
            ifname,
            &PacketOptions {
                rx,
                ..PacketOptions::default()
            },
        )
    })
    .unwrap()
    .unwrap();
    assert_eq!(s.rx_mode(), rx, "the kernel refused the ring");
    s
}

fn send(s: &PacketSocket, f: &[u8]) {
    loop {
        match s.send(f) {
            Ok(_) => return,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOBUFS) =>
            {
                std::thread::yield_now()
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// Sends `frames` with sendmmsg, 256 per syscall, so that injecting a burst takes little time
/// (the ring hands a block over after 1 ms however full it is: a slow sender spreads a burst
/// over more blocks). Each message is a zeroed vnet header (no offload) and a frame.
fn send_burst(s: &PacketSocket, frames: &[Vec<u8>]) {
    const BATCH: usize = 256;
    let hdr = [0u8; 10];
    let mut iovs: Vec<[libc::iovec; 2]> = Vec::with_capacity(BATCH);
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(BATCH);
    for chunk in frames.chunks(BATCH) {
        iovs.clear();
        msgs.clear();
        for f in chunk {
            iovs.push([
                libc::iovec {
                    iov_base: hdr.as_ptr() as *mut libc::c_void,
                    iov_len: hdr.len(),
                },
                libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                },
            ]);
        }
        for iov in iovs.iter_mut() {
            // SAFETY: all-zero is a valid mmsghdr.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov.as_mut_ptr();
            m.msg_hdr.msg_iovlen = 2;
            msgs.push(m);
        }
        let mut done = 0;
        while done < msgs.len() {
            // SAFETY: the messages point at live iovecs over live buffers.
            let n = unsafe {
                libc::sendmmsg(
                    s.as_raw_fd(),
                    msgs[done..].as_mut_ptr(),
                    (msgs.len() - done) as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOBUFS)
                {
                    std::thread::yield_now();
                    continue;
                }
                panic!("sendmmsg: {e}");
            }
            done += n as usize;
        }
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Queues `n` frames on a fresh socket, then times draining them: frames per second.
fn drain(fd: &OwnedFd, tx: &PacketSocket, rx: RxMode, n: usize, payload: usize) -> f64 {
    let s = open(fd, "vp", rx);
    if rx == RxMode::Recvmsg {
        let bytes: libc::c_int = 256 << 20;
        // SAFETY: setsockopt with a live int.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &bytes as *const _ as *const libc::c_void,
                4,
            )
        };
        assert_eq!(rc, 0);
    }
    let frames: Vec<Vec<u8>> = (0..n).map(|i| frame(payload, i as u32)).collect();
    send_burst(tx, &frames);
    // Let the ring's last block time out and be handed over.
    std::thread::sleep(Duration::from_millis(30));
    let mut buf = vec![0u8; 65536];
    let (mut got, mut calls) = (0usize, 0usize);
    let start = Instant::now();
    loop {
        calls += 1;
        match s.recv(&mut buf) {
            Ok(_) => got += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("recv: {e}"),
        }
    }
    let t = start.elapsed();
    let st = s.take_stats().unwrap();
    assert!(
        got == n && st.drops == 0,
        "{rx:?}: drained {got} of {n} ({calls} calls), kernel {st:?}"
    );
    n as f64 / t.as_secs_f64()
}

struct Stream {
    fps: f64,
    cpu_ns_per_frame: f64,
    drops: u32,
    syscalls_per_frame: f64,
    wakeups: usize,
}

/// A sender thread injects `n` small frames as fast as it can (sendmmsg, 256 a call); the
/// receiver drains with an edge-triggered poll until the sender is done and nothing more comes.
fn stream(fd: &OwnedFd, tx: &Arc<PacketSocket>, rx: RxMode, n: usize) -> Stream {
    let s = open(fd, "vp", rx);
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut SourceFd(&s.as_raw_fd()), Token(0), Interest::READABLE)
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (tx, done) = (tx.clone(), done.clone());
        std::thread::spawn(move || {
            let batch: Vec<Vec<u8>> = (0..256).map(|i| frame(60, i)).collect();
            for _ in 0..n / batch.len() {
                send_burst(&tx, &batch);
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut events = Events::with_capacity(4);
    let mut buf = vec![0u8; 65536];
    let (mut got, mut recv_syscalls, mut polls, mut wakeups) = (0usize, 0usize, 0usize, 0usize);
    let cpu0 = thread_cpu();
    let start = Instant::now();
    let mut last_frame = Instant::now();
    loop {
        polls += 1;
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        wakeups += events.iter().count();
        loop {
            if rx == RxMode::Recvmsg {
                recv_syscalls += 1;
            }
            match s.recv(&mut buf) {
                Ok(_) => {
                    got += 1;
                    last_frame = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The ring's recv checks SO_ERROR once it finds itself empty.
                    if rx == RxMode::Ring {
                        recv_syscalls += 1;
                    }
                    break;
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        // Done when the sender is and 20 ms passed without a frame (the ring's last block
        // times out within that).
        if done.load(Ordering::Acquire) && last_frame.elapsed() > Duration::from_millis(20) {
            break;
        }
    }
    let wall = last_frame - start;
    let cpu = thread_cpu() - cpu0;
    sender.join().unwrap();
    let st = s.take_stats().unwrap();
    Stream {
        fps: got as f64 / wall.as_secs_f64(),
        cpu_ns_per_frame: cpu.as_nanos() as f64 / got as f64,
        drops: st.drops,
        syscalls_per_frame: (recv_syscalls + polls) as f64 / got as f64,
        wakeups,
    }
}

/// Microseconds from `send` to the frame in hand, one frame every 2 ms.
fn latency(fd: &OwnedFd, tx: &PacketSocket, rx: RxMode, n: usize) -> Vec<f64> {
    let s = open(fd, "vp", rx);
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut SourceFd(&s.as_raw_fd()), Token(0), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let f = frame(60, i as u32);
        let t0 = Instant::now();
        send(tx, &f);
        'wait: loop {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            loop {
                match s.recv(&mut buf) {
                    Ok(info) if buf[42..46] == f[42..46] && info.len == f.len() => break 'wait,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("recv: {e}"),
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(1), "frame {i} lost");
        }
        out.push(t0.elapsed().as_secs_f64() * 1e6);
        std::thread::sleep(Duration::from_millis(2));
    }
    out
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` (or --all-targets) does not: then
    // there is nothing to check here, and a 30 s run would only slow the tests down.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/af_packet.rs: a benchmark; run it with `cargo bench --bench af_packet`");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("benches/af_packet.rs needs root (it makes a network namespace); skipped");
        return;
    }
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let only = std::env::args().skip(1).find_map(|a| match a.as_str() {
        "ring" => Some(0),
        "recvmsg" => Some(1),
        _ => None,
    });
    let ns = Netns {
        name: format!("vswb-afp-{}", std::process::id()),
    };
    sh(&["ip", "netns", "add", &ns.name]);
    let x = |args: &[&str]| {
        let mut full = vec!["ip", "netns", "exec", ns.name.as_str()];
        full.extend_from_slice(args);
        sh(&full);
    };
    x(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    x(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    x(&[
        "ip", "link", "add", "vp", "type", "veth", "peer", "name", "vc",
    ]);
    x(&["ip", "link", "set", "vp", "up"]);
    x(&["ip", "link", "set", "vc", "up"]);
    let fd = open_netns(&ns.name).unwrap();
    let tx = Arc::new(open(&fd, "vc", RxMode::Recvmsg));

    let modes = [RxMode::Ring, RxMode::Recvmsg];
    let mut small = [Vec::new(), Vec::new()];
    let mut large = [Vec::new(), Vec::new()];
    let mut streams: [Vec<Stream>; 2] = [Vec::new(), Vec::new()];
    let mut lat = [Vec::new(), Vec::new()];
    for r in 0..rounds {
        // Flip the order each round, so whatever else the machine does falls on both.
        let order: Vec<usize> = match only {
            Some(m) => vec![m],
            None if r % 2 == 0 => vec![0, 1],
            None => vec![1, 0],
        };
        for &m in &order {
            small[m].push(drain(&fd, &tx, modes[m], DRAIN_SMALL, 60));
            large[m].push(drain(&fd, &tx, modes[m], DRAIN_LARGE, 1472));
            streams[m].push(stream(&fd, &tx, modes[m], STREAM));
            lat[m].extend(latency(&fd, &tx, modes[m], LATENCY_SAMPLES / rounds.max(1)));
        }
        eprintln!("round {} of {rounds} done", r + 1);
    }

    let med = |v: &mut Vec<f64>| median(v);
    let pick = |m: usize, f: &dyn Fn(&Stream) -> f64| -> f64 {
        let mut v: Vec<f64> = streams[m].iter().map(f).collect();
        median(&mut v)
    };
    let rows: Vec<(&str, f64, f64)> = vec![
        (
            "drain, 60 B payload (frames/s)",
            med(&mut small[0]),
            med(&mut small[1]),
        ),
        (
            "drain, 1472 B payload (frames/s)",
            med(&mut large[0]),
            med(&mut large[1]),
        ),
        (
            "stream: received (frames/s)",
            pick(0, &|s| s.fps),
            pick(1, &|s| s.fps),
        ),
        (
            "stream: receiver CPU (ns/frame)",
            pick(0, &|s| s.cpu_ns_per_frame),
            pick(1, &|s| s.cpu_ns_per_frame),
        ),
        (
            "stream: receive syscalls/frame",
            pick(0, &|s| s.syscalls_per_frame),
            pick(1, &|s| s.syscalls_per_frame),
        ),
        (
            "stream: poll wakeups",
            pick(0, &|s| s.wakeups as f64),
            pick(1, &|s| s.wakeups as f64),
        ),
        (
            "stream: kernel drops",
            pick(0, &|s| s.drops as f64),
            pick(1, &|s| s.drops as f64),
        ),
        (
            "latency, median (us)",
            median(&mut lat[0].clone()),
            median(&mut lat[1].clone()),
        ),
        (
            "latency, p99 (us)",
            percentile(&mut lat[0].clone(), 0.99),
            percentile(&mut lat[1].clone(), 0.99),
        ),
    ];
    println!(
        "AF_PACKET receive, {rounds} rounds (medians); drain {DRAIN_SMALL} / {DRAIN_LARGE} \
         frames, stream {STREAM} frames, {} latency samples each",
        lat[0].len().max(lat[1].len())
    );
    println!(
        "{:<36} {:>14} {:>14} {:>8}",
        "metric", "ring", "recvmsg", "ratio"
    );
    for (name, ring, recvmsg) in &rows {
        let ratio = if *recvmsg != 0.0 && ring.is_finite() && recvmsg.is_finite() {
            format!("{:.2}", ring / recvmsg)
        } else {
            "-".to_string()
        };
        println!("{name:<36} {ring:>14.3} {recvmsg:>14.3} {ratio:>8}");
    }
    println!(
        "machine: {} cores, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
}
