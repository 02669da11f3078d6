//! Namespace tests for `io` and `control::attach`: run as root. Every test works in network
//! namespaces it creates (and deletes on drop, also on failure); nothing is configured in, or sent
//! from, the root namespace except the short-lived, down TAP that `create_namespace_port` makes
//! before moving it.

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use vswitch::control::attach::{create_namespace_port, AttachError, NamespacePortSpec};
use vswitch::io::netlink::Netlink;
use vswitch::io::{open_netns, run_in_netns, PacketSocket};
use vswitch::wire::MacAddr;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique() -> u32 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct TempNetns {
    name: String,
}

impl TempNetns {
    fn new() -> TempNetns {
        let name = format!("vswt-io-{}-{}", std::process::id(), unique());
        ip(&["netns", "add", &name]);
        TempNetns { name }
    }

    fn fd(&self) -> OwnedFd {
        open_netns(&self.name).unwrap()
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    fn ip_ok(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for TempNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A TAP name unique across concurrently running tests (they share the root namespace).
fn tap_name() -> String {
    format!("vsw{:x}t{}", std::process::id(), unique())
}

fn spec(ns: &TempNetns) -> NamespacePortSpec {
    NamespacePortSpec {
        netns: ns.name.clone(),
        ifname: "eth0".into(),
        mac: "02:42:0a:00:09:02".parse().unwrap(),
        addr: Ipv4Addr::new(10, 0, 9, 2),
        prefix: 24,
        mtu: 1450,
        tap_name: tap_name(),
        tap: vswitch::io::TapOptions::default(),
    }
}

fn wait_readable(fd: &impl AsRawFd, until: Instant) -> bool {
    let left = until.saturating_duration_since(Instant::now());
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
    n > 0
}

fn root_has_link(name: &str) -> bool {
    Netlink::open().unwrap().link_index(name).unwrap().is_some()
}

#[test]
fn namespace_port_end_to_end() {
    let ns = TempNetns::new();
    let req = spec(&ns);
    let tap = create_namespace_port(&req).unwrap();
    assert!(
        !root_has_link(&req.tap_name),
        "TAP left in the root namespace"
    );

    let out = ns.ip(&["-j", "addr", "show", "eth0"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let link = &v[0];
    assert_eq!(link["ifname"], "eth0");
    assert_eq!(link["address"], "02:42:0a:00:09:02");
    assert_eq!(link["mtu"], 1450);
    assert!(
        link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{out}"
    );
    let addrs = link["addr_info"].as_array().unwrap();
    let a = addrs
        .iter()
        .find(|a| a["family"] == "inet")
        .expect("an inet address");
    assert_eq!(a["local"], "10.0.9.2");
    assert_eq!(a["prefixlen"], 24);
    assert_eq!(a["broadcast"], "10.0.9.255");
    let lo: serde_json::Value =
        serde_json::from_str(&ns.ip(&["-j", "link", "show", "lo"])).unwrap();
    assert!(lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"));

    // Traffic from the container comes out of the TAP fd: ping an absent neighbour and look for
    // its ARP request.
    let mut ping = Command::new("ip")
        .args(["netns", "exec", &ns.name, "ping", "-c1", "-W1", "10.0.9.3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 2048];
    let mut seen = false;
    while !seen && wait_readable(&tap, until) {
        let n = match tap.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("reading TAP: {e}"),
        };
        let f = &buf[..n];
        seen = n >= 42
            && f[0..6] == [0xff; 6]
            && f[6..12] == *req.mac.as_bytes()
            && f[12..14] == [0x08, 0x06]
            && f[20..22] == [0, 1] // request
            && MacAddr::from_bytes(&f[22..28]) == req.mac
            && f[28..32] == [10, 0, 9, 2]
            && f[38..42] == [10, 0, 9, 3];
    }
    let _ = ping.kill();
    let _ = ping.wait();
    assert!(
        seen,
        "no ARP request for 10.0.9.3 from {} on the TAP",
        req.mac
    );

    // A second attach with the same interface name is refused before anything is created.
    let again = NamespacePortSpec {
        tap_name: tap_name(),
        tap: vswitch::io::TapOptions::default(),
        ..req.clone()
    };
    let e = create_namespace_port(&again).unwrap_err();
    assert!(matches!(e, AttachError::IfnameExists { .. }));
    assert_eq!(
        e.to_string(),
        format!("interface eth0 already exists in netns {}", ns.name)
    );
    assert!(!root_has_link(&again.tap_name));

    // Closing the fd removes the interface from the container's namespace.
    drop(tap);
    let until = Instant::now() + Duration::from_secs(2);
    while ns.ip_ok(&["link", "show", "eth0"]) {
        assert!(
            Instant::now() < until,
            "eth0 still exists after the TAP was closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn namespace_port_by_path_and_cleanup_on_failure() {
    let ns = TempNetns::new();
    // An MTU the TAP cannot take fails after the device exists (and was moved): nothing remains.
    let bad = NamespacePortSpec {
        netns: format!("/var/run/netns/{}", ns.name),
        mtu: 70_000,
        ..spec(&ns)
    };
    let e = create_namespace_port(&bad).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("setting MTU 70000 on eth0"), "{msg}");
    assert!(msg.contains("Invalid argument"), "{msg}");
    // Let the close take effect, then make sure nothing is left anywhere.
    let until = Instant::now() + Duration::from_secs(2);
    while ns.ip_ok(&["link", "show", "eth0"]) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!ns.ip_ok(&["link", "show", "eth0"]), "eth0 left behind");
    assert!(!ns.ip_ok(&["link", "show", &bad.tap_name]));
    assert!(!root_has_link(&bad.tap_name));

    // The same namespace by path works.
    let good = NamespacePortSpec {
        netns: bad.netns.clone(),
        ..spec(&ns)
    };
    let _tap = create_namespace_port(&good).unwrap();
    assert!(ns.ip_ok(&["link", "show", "eth0"]));
}

#[test]
fn netlink_in_namespace_reports_operation_and_errno() {
    let ns = TempNetns::new();
    let mut nl = run_in_netns(ns.fd(), Netlink::open).unwrap().unwrap();
    let lo = nl.link_index("lo").unwrap().unwrap();
    let e = nl.delete_link(4242).unwrap_err();
    assert!(e.to_string().contains("deleting interface 4242"), "{e}");
    assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    let e = nl
        .add_ipv4_addr(4242, Ipv4Addr::new(10, 0, 7, 1), 24)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("adding address 10.0.7.1/24 to interface 4242"),
        "{e}"
    );

    // The socket acts on its namespace from this thread: lo there is down until we raise it.
    assert!(!nl.link_by_index(lo).unwrap().unwrap().up);
    nl.set_link_up(lo, true).unwrap();
    assert!(nl.link_by_index(lo).unwrap().unwrap().up);
    let (idx, name, mtu) = nl.find_ipv4_addr(Ipv4Addr::LOCALHOST).unwrap().unwrap();
    assert_eq!((idx, name.as_str(), mtu), (lo, "lo", 65536));
}

/// Ones-complement check of an IPv4/UDP frame's checksum, pseudo-header included.
fn udp_checksum_valid(f: &[u8]) -> bool {
    let ihl = ((f[14] & 0x0f) as usize) * 4;
    let udp = &f[14 + ihl..];
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64;
        }
    };
    add(&f[26..34]);
    add(&[0, 17]);
    add(&(udp_len as u16).to_be_bytes());
    add(&udp[..udp_len]);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// Receives from `s` until `want` matches a frame or the deadline passes.
fn recv_matching(
    s: &PacketSocket,
    wait: Duration,
    want: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let until = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    while wait_readable(s, until) {
        match s.recv(&mut buf) {
            Ok(info) => {
                assert!(info.gso.is_none() && !info.truncated, "{info:?}");
                if want(&buf[..info.len]) {
                    return Some(buf[..info.len].to_vec());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    None
}

/// A plain AF_PACKET socket without vnet header on `ifname`, to see what the kernel hands up raw.
fn raw_packet_socket(ifindex: u32) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket/bind with a valid sockaddr_ll.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        );
        assert!(fd >= 0);
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        let rc = libc::bind(
            fd,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(rc, 0);
        OwnedFd::from_raw_fd(fd)
    }
}

#[test]
fn packet_socket_sends_and_completes_checksums() {
    let ns = TempNetns::new();
    // vp: the switch's end (no address, as with attach-interface); vc: the container's end.
    ns.ip(&["link", "add", "vp", "type", "veth", "peer", "name", "vc"]);
    ns.ip(&["addr", "add", "10.0.8.1/24", "dev", "vc"]);
    // No ARP round trip: the datagram leaves at once.
    ns.ip(&[
        "neigh",
        "add",
        "10.0.8.2",
        "lladdr",
        "02:00:00:00:08:02",
        "dev",
        "vc",
    ]);
    ns.ip(&["link", "set", "vp", "up"]);
    ns.ip(&["link", "set", "vc", "up"]);
    let fd = ns.fd();
    let (sp, sc, raw) = run_in_netns(&fd, || {
        let sp = PacketSocket::open("vp").unwrap();
        let raw = raw_packet_socket(sp.ifindex());
        (sp, PacketSocket::open("vc").unwrap(), raw)
    })
    .unwrap();

    // Send: a frame written to vp arrives at vc, and vp does not see its own send.
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0x08, 0x09, 0x88, 0xb5]); // local experimental type
    frame.extend_from_slice(b"vswitch af_packet test frame............................");
    assert_eq!(sp.send(&frame).unwrap(), frame.len());
    let got = recv_matching(&sc, Duration::from_secs(3), |f| f == &frame[..])
        .expect("frame sent on vp arrives at vc");
    assert_eq!(got, frame);
    let echo = recv_matching(&sp, Duration::from_millis(200), |f| f == &frame[..]);
    assert!(
        echo.is_none(),
        "PACKET_IGNORE_OUTGOING: vp saw its own send"
    );

    // Receive: UDP from the container's end carries a partial checksum over veth; the socket
    // completes it.
    run_in_netns(&fd, || {
        let u = UdpSocket::bind("10.0.8.1:40000").unwrap();
        u.send_to(b"checksum me please", "10.0.8.2:9999").unwrap();
    })
    .unwrap();
    let is_our_udp = |f: &[u8]| {
        f.len() >= 42
            && f[12..14] == [0x08, 0x00]
            && f[23] == 17
            && f[36..38] == 9999u16.to_be_bytes()
    };
    let udp =
        recv_matching(&sp, Duration::from_secs(3), is_our_udp).expect("UDP datagram from vc on vp");
    assert!(udp.ends_with(b"checksum me please"));
    assert_ne!(udp[40..42], [0, 0], "checksum present");
    assert!(
        udp_checksum_valid(&udp),
        "UDP checksum invalid after completion"
    );

    // The same datagram without the vnet header path: the kernel hands it up partial, so the
    // check above did prove the completion.
    let mut buf = [0u8; 2048];
    let mut raw_partial = None;
    let until = Instant::now() + Duration::from_secs(1);
    while raw_partial.is_none() && wait_readable(&raw, until) {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(raw.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 && is_our_udp(&buf[..n as usize]) {
            raw_partial = Some(!udp_checksum_valid(&buf[..n as usize]));
        }
    }
    assert_eq!(
        raw_partial,
        Some(true),
        "raw socket saw a complete checksum: test proves nothing"
    );
}
