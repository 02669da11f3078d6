//! Restarting vswitchd without touching containers (root required; see TESTING.md).
//!
//! Two hosts in namespaces. A TCP transfer between containers on the two hosts is under way
//! when one daemon is killed with SIGKILL: the container's interface stays with its MAC,
//! address and route; the daemon is started again and re-adopts it from state_dir; traffic
//! flows again within a second of the new daemon's start, and the transfer completes intact.
//! Also: `vswitchctl shutdown --keep-ports` keeps the interfaces and a plain SIGTERM removes
//! them (and the records); a container whose namespace was deleted while the daemon was down
//! leaves nothing behind (no port, its address free again, its resolv.conf gone).

mod common;

use common::bins;
use common::testbed::{ping, run, udp_in, wait_until, Netns, Process, Testbed, BLUE};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vswitch::control::api::Request;
use vswitch::control::client;

/// What a container's eth0 looks like: `ip -br link`, `ip -br -4 addr` and its routes.
fn eth0(tb: &Testbed, c: usize) -> Option<(String, String, String)> {
    let ns = tb.container(c);
    let link = ns.try_exec(&["ip", "-br", "link", "show", "eth0"]);
    if !link.status.success() {
        return None;
    }
    let text = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    let link = text(link);
    let mac = link.split_whitespace().nth(2).unwrap_or("").to_string();
    let addr = text(ns.try_exec(&["ip", "-br", "-4", "addr", "show", "eth0"]));
    let addr = addr.split_whitespace().nth(2).unwrap_or("").to_string();
    // While no daemon holds the TAP it has no carrier, and the kernel marks its routes
    // `linkdown`; they are the same routes.
    let routes =
        text(ns.try_exec(&["ip", "-4", "route", "show", "dev", "eth0"])).replace(" linkdown", "");
    Some((mac, addr, routes))
}

/// Kills host `i`'s daemon with SIGKILL and waits until it is gone.
fn kill_9(tb: &mut Testbed, i: usize) {
    let mut d = tb.hosts[i].daemon.take().expect("a daemon runs");
    d.child.kill().expect("SIGKILL to our own vswitchd");
    d.child.wait().expect("reaped");
}

/// The records state_dir holds for host `i`.
fn records(tb: &Testbed, i: usize) -> Vec<PathBuf> {
    let dir = tb.dir.join(format!("state-h{i}")).join("ports");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "json"));
    v
}

/// A TCP transfer of `mib` MiB from `from` to `to_ip`:`port` in `to`, paced (64 KiB every
/// 20 ms) so that it is still running seconds later. Returns the receiver and sender.
fn paced_transfer(
    from: &str,
    to: &str,
    to_ip: &str,
    port: u16,
    mib: usize,
    dir: &Path,
) -> (Process, Process, PathBuf, PathBuf) {
    let src = dir.join("payload");
    let dst = dir.join("received");
    run(&[
        "dd",
        "if=/dev/urandom",
        &format!("of={}", src.display()),
        "bs=1M",
        &format!("count={mib}"),
        "status=none",
    ])
    .unwrap();
    let recv = format!(
        "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('{to_ip}',{port}));s.listen(1);s.settimeout(90)\nc,_=s.accept();c.settimeout(90);f=open('{}','wb')\nwhile True:\n  d=c.recv(1<<16)\n  if not d: break\n  f.write(d);f.flush()\nf.close()",
        dst.display()
    );
    let spawn = |ns: &str, py: &str, what: &str| Process {
        child: Command::new("ip")
            .args(["netns", "exec", ns, "timeout", "120", "python3", "-c", py])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        what: what.into(),
    };
    let receiver = spawn(to, &recv, "tcp receiver");
    let listening = wait_until(Duration::from_secs(10), || {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                to,
                "ss",
                "-Hltn",
                &format!("sport = :{port}"),
            ])
            .output()
            .unwrap();
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert!(listening, "no TCP listener on port {port} in {to}");
    let send = format!(
        "import socket,time\ns=socket.create_connection(('{to_ip}',{port}),timeout=90)\nf=open('{}','rb')\nwhile True:\n  d=f.read(1<<16)\n  if not d: break\n  s.sendall(d);time.sleep(0.02)\ns.shutdown(socket.SHUT_WR);s.recv(1);s.close()",
        src.display()
    );
    (receiver, spawn(from, &send, "tcp sender"), src, dst)
}

fn sha256(p: &Path) -> String {
    let out = run(&["sha256sum", p.to_str().unwrap()]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Waits for a child to exit; its status, or None after `limit`.
fn wait_exit(p: &mut Process, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = p.child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn kill_9_mid_transfer_keeps_the_interface_and_traffic_resumes_within_a_second() {
    let prefix = format!("vsw{}-rk", std::process::id());
    let mut tb = Testbed::two_hosts(&prefix, bins(), &[BLUE]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 3, &[]),
        (3, 3),
        "{}",
        tb.logs()
    );
    let before = eth0(&tb, a).expect("eth0 in container a");
    assert!(before.1 == "10.0.9.2/24", "{before:?}");
    assert_eq!(records(&tb, 0).len(), 1, "one port recorded in state_dir");

    // A transfer from a (host 0) to b (host 1), still running when host 0's daemon dies.
    let (an, bn) = (tb.container(a).name.clone(), tb.container(b).name.clone());
    let (mut receiver, mut sender, src, dst) =
        paced_transfer(&an, &bn, "10.0.9.3", 5001, 16, &tb.dir);
    let flowing = wait_until(Duration::from_secs(20), || {
        std::fs::metadata(&dst).is_ok_and(|m| m.len() >= 2 << 20)
    });
    assert!(flowing, "the transfer did not start\n{}", tb.logs());
    kill_9(&mut tb, 0);
    let partial = std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
    assert!(
        partial < 16 << 20,
        "the transfer must still be under way at the kill"
    );

    // The daemon is gone; the container's interface is not.
    let during = eth0(&tb, a).expect("eth0 survives kill -9");
    assert_eq!(
        (&during.0, &during.1),
        (&before.0, &before.1),
        "same MAC and address"
    );
    assert_eq!(during.2, before.2, "same routes");
    std::thread::sleep(Duration::from_millis(500));

    // Start it again while a UDP echo is tried every 10 ms from a to b and back.
    let sa = udp_in(&an, "10.0.9.2:7007");
    let sb = udp_in(&bn, "10.0.9.3:7007");
    sa.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    sb.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = sa.send_to(b"ping", "10.0.9.3:7007");
            if let Ok((n, from)) = sb.recv_from(&mut buf) {
                let _ = sb.send_to(&buf[..n], from);
                let deadline = Instant::now() + Duration::from_millis(100);
                while Instant::now() < deadline {
                    if sa.recv_from(&mut buf).is_ok() {
                        return Some(Instant::now());
                    }
                }
            }
        }
        None
    });
    let started = Instant::now();
    step!(tb, tb.start_daemon(0));
    let up = started.elapsed();
    let answered = wait_until(Duration::from_secs(10), || echo.is_finished());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let first = echo.join().unwrap();
    assert!(
        answered && first.is_some(),
        "no UDP echo through the restarted daemon\n{}",
        tb.logs()
    );
    let resumed = first.unwrap() - started;
    eprintln!(
        "restart: control socket answering {:.0} ms, first UDP echo {:.0} ms after the start",
        up.as_secs_f64() * 1e3,
        resumed.as_secs_f64() * 1e3
    );
    assert!(
        resumed < Duration::from_secs(1),
        "traffic resumed only {resumed:?} after the new daemon's start\n{}",
        tb.logs()
    );

    // The transfer that was under way completes intact.
    let sent = wait_exit(&mut sender, Duration::from_secs(90));
    assert!(
        sent.is_some_and(|s| s.success()),
        "the sender did not finish: {sent:?}\n{}",
        tb.logs()
    );
    assert!(wait_exit(&mut receiver, Duration::from_secs(30)).is_some());
    assert_eq!(sha256(&src), sha256(&dst), "the transfer arrived corrupted");

    // The port is the same port, and the log says it was adopted.
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    let rows = ports.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{ports}");
    assert_eq!(rows[0]["mac"], before.0.as_str(), "{ports}");
    assert_eq!(rows[0]["ip"], "10.0.9.2/24", "{ports}");
    assert!(
        tb.hosts[0].log_text().contains("re-adopted"),
        "{}",
        tb.logs()
    );
    assert_eq!(eth0(&tb, a).unwrap().0, before.0);
}

#[test]
fn keep_ports_shutdown_keeps_and_plain_sigterm_removes() {
    let prefix = format!("vsw{}-rs", std::process::id());
    let mut tb = Testbed::two_hosts(&prefix, bins(), &[BLUE]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let _b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    let before = eth0(&tb, a).expect("eth0");
    // A port made for a runtime (as the CNI plugin asks, with an attachment id) ...
    let cni = step!(tb, Netns::new(&format!("{prefix}-k")));
    let attach = Request::AttachNamespace {
        network: "blue".into(),
        netns: cni.name.clone(),
        ip: Some("10.0.9.6/24".into()),
        mac: None,
        ifname: None,
        name: Some("k".into()),
        no_port_security: false,
        attachment: Some("cni:blue:k1:eth0".into()),
        limits: Default::default(),
    };
    let r = client::call(&tb.hosts[0].socket, &attach).unwrap();
    assert!(r.ok, "{r:?}");
    tb.containers.push(cni);
    let k = tb.containers.len() - 1;
    // ... and an interface another runtime made (a veth whose host end is attached).
    let x = step!(tb, tb.add_veth_station(0, "x", "10.0.9.5/24"));
    let args = [
        "attach-interface",
        "--network",
        "blue",
        "--interface",
        "ext0",
        "--ip",
        "10.0.9.5/24",
    ];
    step!(tb, tb.hosts[0].ctl(&tb.bins, &args));

    // An upgrade's stop: the daemon exits cleanly, the interface stays.
    let out = step!(tb, tb.hosts[0].ctl(&tb.bins, &["shutdown", "--keep-ports"]));
    assert!(out.contains("3 port(s) kept"), "{out}");
    let mut d = tb.hosts[0].daemon.take().unwrap();
    let st = wait_exit(&mut d, Duration::from_secs(10));
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", tb.logs());
    assert!(
        !tb.hosts[0].socket.exists(),
        "the control socket is removed"
    );
    assert_eq!(eth0(&tb, a), Some(before.clone()), "kept as it was");
    assert_eq!(records(&tb, 0).len(), 3);

    // The next daemon re-adopts them: traffic flows, the ports are listed with their
    // addresses, the runtime's attachment is known by its id.
    step!(tb, tb.start_daemon(0));
    for (c, what) in [(a, "namespace port"), (k, "CNI port"), (x, "attached veth")] {
        assert_eq!(
            ping(tb.container(c), "10.0.9.3", 3, &[]),
            (3, 3),
            "{what}\n{}",
            tb.logs()
        );
    }
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    let ips: Vec<&str> = ports
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["ip"].as_str())
        .collect();
    assert_eq!(
        ips,
        ["10.0.9.2/24", "10.0.9.6/24", "10.0.9.5/24"],
        "{ports}"
    );
    let held = client::call(&tb.hosts[0].socket, &Request::Attachments).unwrap();
    let held = held.result.unwrap_or_default();
    assert_eq!(held[0]["attachment"], "cni:blue:k1:eth0", "{held}");
    assert_eq!(held[0]["ip"], "10.0.9.6", "{held}");
    let gone = Request::DetachAttachment {
        attachment: "cni:blue:k1:eth0".into(),
    };
    let r = client::call(&tb.hosts[0].socket, &gone).unwrap();
    assert!(
        r.ok && r.result.is_some_and(|v| !v.is_null()),
        "{}",
        tb.logs()
    );
    assert!(
        !tb.container(k)
            .try_exec(&["ip", "link", "show", "eth0"])
            .status
            .success(),
        "detaching a re-adopted port removes its interface"
    );
    assert_eq!(records(&tb, 0).len(), 2);

    // A plain SIGTERM keeps today's behaviour: the interface and the records go.
    let mut d = tb.hosts[0].daemon.take().unwrap();
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", tb.logs());
    assert_eq!(eth0(&tb, a), None, "plain SIGTERM removes eth0");
    assert!(records(&tb, 0).is_empty(), "{:?}", records(&tb, 0));
    // Nothing was left in the host's own namespace either, the tunnel device included.
    let links = |tb: &Testbed| {
        let out = tb.hosts[0].ns.try_exec(&["ip", "-br", "link"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let after_stop = links(&tb);
    assert!(!after_stop.contains("vsw"), "{after_stop}");
    step!(tb, tb.start_daemon(0));
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    assert_eq!(ports.as_array().map(Vec::len), Some(0), "{ports}");
    // The new daemon has its own tunnel device, and nothing else.
    let running = links(&tb).replace("vswgso0", "");
    assert!(!running.contains("vsw"), "{running}");
}

#[test]
fn a_container_gone_while_the_daemon_was_down_leaves_nothing() {
    let prefix = format!("vsw{}-rg", std::process::id());
    let mut tb = Testbed::two_hosts(&prefix, bins(), &[BLUE]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let c = step!(tb, tb.add_container(0, "c", "blue", "10.0.9.4/24"));
    let _b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    let cname = tb.container(c).name.clone();
    let resolv = Path::new("/etc/netns").join(&cname).join("resolv.conf");
    assert!(resolv.exists(), "attach wrote {}", resolv.display());
    assert_eq!(records(&tb, 0).len(), 2);

    kill_9(&mut tb, 0);
    // The container goes while no daemon runs.
    run(&["ip", "netns", "del", &cname]).unwrap();
    step!(tb, tb.start_daemon(0));

    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    let rows = ports.as_array().unwrap();
    assert_eq!(rows.len(), 1, "only a's port is left: {ports}");
    assert_eq!(rows[0]["ip"], "10.0.9.2/24", "{ports}");
    assert_eq!(records(&tb, 0).len(), 1, "c's record is gone");
    assert!(!resolv.exists(), "c's resolv.conf is removed");
    let log = tb.hosts[0].log_text();
    assert!(
        log.contains("dropped") && log.contains("network namespace is gone"),
        "{log}"
    );
    // Its address is free again; the survivor still forwards.
    let d = step!(tb, tb.add_container(0, "d", "blue", "10.0.9.4/24"));
    assert_eq!(
        ping(tb.container(d), "10.0.9.3", 2, &[]),
        (2, 2),
        "{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 2, &[]),
        (2, 2),
        "{}",
        tb.logs()
    );
}
