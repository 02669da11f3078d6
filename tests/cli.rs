//! Runs the built `vswitchctl` binary: usage errors, no daemon, and a fake daemon on a temporary
//! socket that answers canned responses, which exercises client + render end to end.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread::JoinHandle;
use vswitch::control::api::{Counters, NetworkInfo, PortInfo, Request, Response, ShowWhat};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args(args)
        .env_remove("VSWITCH_SOCKET")
        .output()
        .expect("run vswitchctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_socket(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("vswitchctl-test-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Accepts one connection, checks the request, answers `resp`.
fn fake_daemon(path: &PathBuf, expect: Request, resp: Response) -> JoinHandle<()> {
    let listener = UnixListener::bind(path).expect("bind fake daemon socket");
    std::thread::spawn(move || {
        let (s, _) = listener.accept().expect("accept");
        let mut line = String::new();
        BufReader::new(&s)
            .read_line(&mut line)
            .expect("read request");
        let req: Request = serde_json::from_str(&line).expect("request is JSON");
        assert_eq!(req, expect);
        let mut out = serde_json::to_vec(&resp).unwrap();
        out.push(b'\n');
        (&s).write_all(&out).expect("write response");
    })
}

fn blue() -> NetworkInfo {
    NetworkInfo {
        name: "blue".into(),
        vni: 42,
        subnet: "10.0.9.0/24".into(),
        mtu: 1450,
        peers: vec!["node-b".into()],
        ports: 1,
        fdb_entries: 2,
        neigh_entries: 1,
        dns: None,
    }
}

const ATTACH: &[&str] = &["attach-namespace", "--network", "blue", "--netns", "c1"];

#[test]
fn bad_ip_is_refused_before_sending() {
    for (ip, why) in [
        ("10.0.9.2", "no prefix length"),
        ("10.0.9.2/33", "0 to 32"),
        ("10.0.9.300/24", "not an IPv4 address"),
    ] {
        let o = ctl(&[ATTACH, &["--ip", ip, "--socket", "/nonexistent.sock"]].concat());
        assert_eq!(o.status.code(), Some(2), "{ip}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains("--ip") && e.contains(why), "{ip}: {e}");
        assert!(!e.contains("cannot reach"), "{e}");
    }
}

#[test]
fn bad_mac_is_refused() {
    let o = ctl(&[
        ATTACH,
        &["--ip", "10.0.9.2/24", "--mac", "02:42:zz:00:09:02"],
    ]
    .concat());
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("--mac") && e.contains("invalid MAC address"),
        "{e}"
    );
}

#[test]
fn empty_name_is_refused() {
    let o = ctl(&["detach-namespace", "--network", "", "--netns", "c1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("must not be empty"), "{}", stderr(&o));
}

#[test]
fn unknown_subcommand() {
    let o = ctl(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("unrecognized subcommand 'frobnicate'"), "{e}");
    assert!(e.contains("--help"), "{e}");

    let o = ctl(&["show", "routes"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("networks") && e.contains("stats"), "{e}");
}

#[test]
fn help_teaches() {
    let o = ctl(&["--help"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("Examples:"), "{out}");
    assert!(out.contains("attach-namespace --network blue --netns c1 --ip 10.0.9.2/24"));
    assert!(out.contains("VSWITCH_SOCKET"));
}

#[test]
fn no_daemon() {
    let sock = temp_socket("none");
    let o = ctl(&["--socket", sock.to_str().unwrap(), "show", "networks"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("cannot reach vswitchd at {}", sock.display())),
        "{e}"
    );
    assert!(e.contains("is vswitchd running? see --socket"), "{e}");
}

#[test]
fn show_networks_through_a_fake_daemon() {
    let sock = temp_socket("show");
    let t = fake_daemon(
        &sock,
        Request::Show {
            what: ShowWhat::Networks,
            secrets: false,
        },
        Response::ok(vec![blue()]),
    );
    // The socket comes from the environment here, to cover VSWITCH_SOCKET.
    let o = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
        .args(["show", "networks"])
        .env("VSWITCH_SOCKET", &sock)
        .output()
        .unwrap();
    t.join().unwrap();
    let _ = std::fs::remove_file(&sock);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("NAME  VNI  SUBNET"), "{out}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        ["blue", "42", "10.0.9.0/24", "1450", "node-b", "1", "2", "1"],
        "{out}"
    );
}

#[test]
fn show_json_is_the_result() {
    let sock = temp_socket("json");
    let t = fake_daemon(
        &sock,
        Request::Show {
            what: ShowWhat::Networks,
            secrets: false,
        },
        Response::ok(vec![blue()]),
    );
    let o = ctl(&[
        "--socket",
        sock.to_str().unwrap(),
        "show",
        "networks",
        "--json",
    ]);
    t.join().unwrap();
    let _ = std::fs::remove_file(&sock);
    assert!(o.status.success(), "{}", stderr(&o));
    let back: Vec<NetworkInfo> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(back, vec![blue()]);
}

#[test]
fn attach_prints_what_it_made() {
    let sock = temp_socket("attach");
    let port = PortInfo {
        id: 3,
        name: "c1".into(),
        kind: "tap".into(),
        network: "blue".into(),
        vni: 42,
        ifname: "eth0".into(),
        netns: Some("c1".into()),
        mac: Some("02:42:0a:00:09:02".into()),
        ip: Some("10.0.9.2/24".into()),
        mtu: 1450,
        counters: Counters::default(),
        queues: 1,
        attachment: None,
        dns: None,
    };
    let t = fake_daemon(
        &sock,
        Request::AttachNamespace {
            network: "blue".into(),
            netns: "c1".into(),
            ip: Some("10.0.9.2/24".into()),
            mac: Some("02:42:0a:00:09:02".into()),
            ifname: None,
            name: None,
            no_port_security: false,
            attachment: None,
            limits: Default::default(),
        },
        Response::ok(&port),
    );
    let o = ctl(&[
        "--socket",
        sock.to_str().unwrap(),
        "attach-namespace",
        "--network",
        "blue",
        "--netns",
        "c1",
        "--ip",
        "10.0.9.2/24",
        "--mac",
        "02:42:0A:00:09:02",
    ]);
    t.join().unwrap();
    let _ = std::fs::remove_file(&sock);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "attached 10.0.9.2/24 02:42:0a:00:09:02 as eth0 in netns c1 (network blue, vni 42, mtu 1450, port 3)\n"
    );
}

#[test]
fn daemon_error_is_printed() {
    let sock = temp_socket("err");
    let t = fake_daemon(
        &sock,
        Request::DetachInterface {
            network: "blue".into(),
            interface: "veth1".into(),
        },
        Response::err("no port veth1 in network blue"),
    );
    let o = ctl(&[
        "--socket",
        sock.to_str().unwrap(),
        "detach-interface",
        "--network",
        "blue",
        "--interface",
        "veth1",
    ]);
    t.join().unwrap();
    let _ = std::fs::remove_file(&sock);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "error: no port veth1 in network blue\n");
}
