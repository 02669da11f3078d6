//! `vswitch-cni` run the way container runtimes run a CNI plugin (CNI_* environment, the
//! network configuration on stdin, a namespace path), against vswitchd on the namespace
//! testbed; and podman with its CNI backend running a container on a vswitch network.
//! Root only (TESTING.md).

mod common;

use common::bins;
use common::podman::{busybox_rootfs, Podman};
use common::testbed::{ping, wait_until, Netns, Testbed, BLUE};
use serde_json::{json, Value};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;
use vswitch::control::api::{AttachmentInfo, Request};

const PLUGIN: &str = env!("CARGO_BIN_EXE_vswitch-cni");

/// What one plugin run gave back.
#[derive(Debug)]
struct Reply {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The error object's code; panics unless the run failed with one.
    fn error_code(&self) -> u64 {
        assert!(!self.ok, "expected a failure: {self:?}");
        let v = self.json();
        assert!(v["msg"].is_string(), "no msg in the error object: {self:?}");
        assert!(v["cniVersion"].is_string(), "no cniVersion: {self:?}");
        assert!(!self.stderr.is_empty(), "nothing said on stderr: {self:?}");
        v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code: {self:?}"))
    }
}

/// Runs the plugin as a runtime does: in the runtime's network namespace (the host's), a clean
/// environment with the CNI_* variables, the configuration on stdin.
fn cni(host_ns: &str, env: &[(&str, &str)], stdin: &str) -> Reply {
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{host_ns}"))
        .arg("--")
        .arg(PLUGIN)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_PATH", "/opt/cni/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vswitch-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Reply {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One attachment's parameters.
struct Att<'a> {
    id: &'a str,
    netns: &'a str,
    ifname: &'a str,
    args: &'a str,
}

impl<'a> Att<'a> {
    /// Container `id`'s eth0 in `netns`, no CNI_ARGS.
    fn eth0(id: &'a str, netns: &'a str) -> Att<'a> {
        Att {
            id,
            netns,
            ifname: "eth0",
            args: "",
        }
    }

    fn env<'b>(&'b self, command: &'b str) -> Vec<(&'b str, &'b str)> {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", self.id),
            ("CNI_NETNS", self.netns),
            ("CNI_IFNAME", self.ifname),
            ("CNI_ARGS", self.args),
        ]
    }
}

fn with(conf: &Value, key: &str, v: Value) -> String {
    let mut c = conf.clone();
    c[key] = v;
    c.to_string()
}

fn netns_path(ns: &Netns) -> String {
    format!("/var/run/netns/{}", ns.name)
}

/// A new container namespace, kept (and removed) with the testbed's; its path, as runtimes
/// give CNI_NETNS.
fn new_netns(tb: &mut Testbed, tag: &str) -> String {
    let ns = Netns::new(&format!("{}-{tag}", tb.prefix)).unwrap();
    let path = netns_path(&ns);
    tb.containers.push(ns);
    path
}

/// `ip -j addr show IFNAME` in `ns`: (MAC, ADDR/PREFIX of its first IPv4 address).
fn iface(ns: &Netns, ifname: &str) -> Option<(String, String)> {
    let out = ns.try_exec(&["ip", "-j", "addr", "show", "dev", ifname]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let link = v.get(0)?;
    let a = link["addr_info"]
        .as_array()?
        .iter()
        .find(|a| a["family"] == "inet")?;
    Some((
        link["address"].as_str()?.to_string(),
        format!("{}/{}", a["local"].as_str()?, a["prefixlen"]),
    ))
}

/// The attachments the daemon holds (`Request::Attachments`), sorted.
fn attachments(tb: &Testbed) -> Vec<String> {
    let resp = vswitch::control::client::call(&tb.hosts[0].socket, &Request::Attachments)
        .expect("vswitchd answers");
    assert!(resp.ok, "{resp:?}");
    let list: Vec<AttachmentInfo> = serde_json::from_value(resp.result.unwrap()).unwrap();
    list.into_iter().map(|a| a.attachment).collect()
}

fn ports_with_attachment(tb: &Testbed, key: &str) -> Vec<Value> {
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    ports
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["attachment"] == key)
        .cloned()
        .collect()
}

#[test]
fn plugin_add_check_del_version_status_gc_as_a_runtime_calls_it() {
    let mut tb = Testbed::new(&format!("cni-proto-{}", std::process::id()), bins()).unwrap();
    step!(tb, tb.add_hosts(1));
    step!(tb, tb.write_config(0, &[BLUE], ""));
    step!(tb, tb.start_daemon(0));
    let host = tb.hosts[0].ns.name.clone();
    let sock = tb.hosts[0].socket.to_str().unwrap().to_string();
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": "bluenet",
        "type": "vswitch-cni",
        "network": "blue",
        "socket": sock,
    });
    let c1_path = new_netns(&mut tb, "c1");
    let c1 = tb.containers.len() - 1;

    // VERSION: what a runtime asks first, with only CNI_COMMAND.
    let r = cni(
        &host,
        &[("CNI_COMMAND", "VERSION")],
        r#"{"cniVersion":"1.1.0"}"#,
    );
    assert!(r.ok, "{r:?}");
    let v = r.json();
    assert_eq!(v["cniVersion"], "1.1.0");
    for want in ["1.1.0", "1.0.0", "0.4.0"] {
        assert!(
            v["supportedVersions"]
                .as_array()
                .unwrap()
                .contains(&json!(want)),
            "{v}"
        );
    }

    // STATUS: the daemon answers and has the network.
    let r = cni(&host, &[("CNI_COMMAND", "STATUS")], &conf.to_string());
    assert!(r.ok && r.stdout.is_empty(), "{r:?}");

    // ADD.
    let a = Att {
        id: "0c4e1d2b9a7f6e5d4c3b2a1908f7e6d5c4b3a291",
        netns: &c1_path,
        ifname: "eth0",
        args: "IgnoreUnknown=1;K8S_POD_NAME=web1",
    };
    let r = cni(&host, &a.env("ADD"), &conf.to_string());
    assert!(r.ok, "ADD failed: {r:?}\n{}", tb.logs());
    let res = r.json();
    assert_eq!(res["cniVersion"], "1.1.0", "{res}");
    let i0 = &res["interfaces"][0];
    assert_eq!(i0["name"], "eth0", "{res}");
    assert_eq!(i0["sandbox"], c1_path.as_str(), "{res}");
    let mac = i0["mac"].as_str().expect("mac").to_string();
    assert_eq!(mac.len(), 17, "{res}");
    assert_eq!(res["ips"].as_array().unwrap().len(), 1, "{res}");
    let ip = &res["ips"][0];
    assert_eq!(ip["interface"], 0, "{res}");
    assert!(
        ip.get("gateway").is_none(),
        "no gateway on a vswitch network: {res}"
    );
    let addr = ip["address"].as_str().unwrap().to_string();
    let (a_ip, a_prefix) = addr.split_once('/').unwrap();
    let a_ip: Ipv4Addr = a_ip.parse().unwrap();
    assert_eq!(a_prefix, "24", "{res}");
    assert!(
        a_ip.octets()[..3] == [10, 0, 9] && a_ip.octets()[3] > 1 && a_ip.octets()[3] < 255,
        "{addr} is not a station address of 10.0.9.0/24"
    );
    assert_eq!(
        res["dns"],
        json!({"nameservers": ["10.0.9.1"], "search": ["blue"]}),
        "{res}"
    );
    // The interface is really there, with that MAC and address.
    assert_eq!(
        iface(tb.container(c1), "eth0"),
        Some((mac.clone(), addr.clone())),
        "eth0 in the container"
    );
    // The daemon keeps the attachment, under the container's name.
    let key = format!("cni:bluenet:{}:eth0", a.id);
    let held = ports_with_attachment(&tb, &key);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["name"], "web1");
    // And it is on the network: a container attached with vswitchctl answers its ping.
    step!(tb, tb.add_container(0, "c2", "blue", "10.0.9.200/24"));
    let (tx, rx) = ping(tb.container(c1), "10.0.9.200", 3, &[]);
    assert_eq!(
        (tx, rx),
        (3, 3),
        "ping from the CNI container\n{}",
        tb.logs()
    );

    // CHECK with the ADD's result, as the runtime passes it.
    let checked = with(&conf, "prevResult", res.clone());
    let r = cni(&host, &a.env("CHECK"), &checked);
    assert!(r.ok && r.stdout.is_empty(), "CHECK: {r:?}");

    // A second ADD of the same attachment is refused (the spec says runtimes do not do it).
    let r = cni(&host, &a.env("ADD"), &conf.to_string());
    assert_eq!(r.error_code(), 100, "{r:?}");

    // The interface removed behind the plugin's back: CHECK fails.
    step!(tb, tb.container(c1).exec(&["ip", "link", "del", "eth0"]));
    let r = cni(&host, &a.env("CHECK"), &checked);
    assert_eq!(r.error_code(), 101, "{r:?}");
    assert!(
        r.json()["details"].as_str().unwrap().contains("eth0"),
        "{r:?}"
    );

    // DEL, and DEL again: both succeed; the port is gone.
    let r = cni(&host, &a.env("DEL"), &checked);
    assert!(r.ok && r.stdout.is_empty(), "DEL: {r:?}");
    assert!(ports_with_attachment(&tb, &key).is_empty());
    let r = cni(&host, &a.env("DEL"), &checked);
    assert!(r.ok, "second DEL: {r:?}");
    // CHECK after DEL: nothing to find.
    let r = cni(&host, &a.env("CHECK"), &checked);
    assert_eq!(r.error_code(), 101, "{r:?}");

    // DEL after the namespace is gone (the runtime removed it first), without CNI_NETNS.
    let c3 = Netns::new(&format!("{}-c3", tb.prefix)).unwrap();
    let c3_path = netns_path(&c3);
    let b = Att::eth0("c3c3c3", &c3_path);
    let r = cni(&host, &b.env("ADD"), &conf.to_string());
    assert!(r.ok, "{r:?}");
    // No container name given: the endpoint is named by the short container id.
    let b_key = "cni:bluenet:c3c3c3:eth0";
    assert_eq!(ports_with_attachment(&tb, b_key)[0]["name"], "c3c3c3");
    let c3_addr = r.json()["ips"][0]["address"].as_str().unwrap().to_string();
    drop(c3);
    // The workers drop a port whose device went with its namespace (they do within a few
    // milliseconds); the topology keeps its address until DEL, as the runtime has not let go
    // of it yet. Wait for that, so the DEL below is the one that finds only the topology.
    wait_until(Duration::from_secs(5), || {
        ports_with_attachment(&tb, b_key).is_empty()
    });
    let r = cni(
        &host,
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c3c3c3"),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf.to_string(),
    );
    assert!(r.ok, "DEL with the namespace gone: {r:?}");
    assert!(ports_with_attachment(&tb, b_key).is_empty());
    // DEL gave the address back: another container can have it.
    let c5_path = new_netns(&mut tb, "c5");
    let again = with(&conf, "runtimeConfig", json!({ "ips": [c3_addr] }));
    let r = cni(&host, &Att::eth0("c5c5c5", &c5_path).env("ADD"), &again);
    assert!(r.ok, "the address of a DELeted attachment: {r:?}");
    let r = cni(&host, &Att::eth0("c5c5c5", &c5_path).env("DEL"), &again);
    assert!(r.ok, "{r:?}");

    // The runtime's capability arguments choose the MAC and the address.
    let c4_path = new_netns(&mut tb, "c4");
    let d = Att {
        id: "c4c4c4",
        netns: &c4_path,
        ifname: "net1",
        args: "",
    };
    let chosen = with(
        &conf,
        "runtimeConfig",
        json!({"mac": "02:42:0a:00:09:4d", "ips": ["10.0.9.77/24"]}),
    );
    let r = cni(&host, &d.env("ADD"), &chosen);
    assert!(r.ok, "{r:?}");
    assert_eq!(r.json()["interfaces"][0]["mac"], "02:42:0a:00:09:4d");
    assert_eq!(r.json()["interfaces"][0]["name"], "net1");
    assert_eq!(r.json()["ips"][0]["address"], "10.0.9.77/24");
    assert_eq!(
        iface(tb.containers.last().unwrap(), "net1"),
        Some(("02:42:0a:00:09:4d".into(), "10.0.9.77/24".into()))
    );
    let r = cni(&host, &d.env("DEL"), &chosen);
    assert!(r.ok, "{r:?}");

    // GC: of this configuration's attachments, those not listed go, whether their namespace
    // is still there (gc-stale) or went without a DEL (gc-gone: what GC is for, spec §2); a
    // port made by vswitchctl and one of another configuration stay.
    let mut gone_ns = None;
    let mut gone_addr = String::new();
    for (i, id) in ["gc-keep", "gc-stale", "gc-gone", "gc-other"]
        .iter()
        .enumerate()
    {
        let ns = Netns::new(&format!("{}-g{i}", tb.prefix)).unwrap();
        let path = netns_path(&ns);
        let conf_i = if *id == "gc-other" {
            with(&conf, "name", json!("othernet"))
        } else {
            conf.to_string()
        };
        let r = cni(&host, &Att::eth0(id, &path).env("ADD"), &conf_i);
        assert!(r.ok, "ADD {id}: {r:?}");
        if *id == "gc-gone" {
            gone_addr = r.json()["ips"][0]["address"].as_str().unwrap().to_string();
            gone_ns = Some(ns);
        } else {
            tb.containers.push(ns);
        }
    }
    drop(gone_ns);
    wait_until(Duration::from_secs(5), || {
        ports_with_attachment(&tb, "cni:bluenet:gc-gone:eth0").is_empty()
    });
    assert!(
        attachments(&tb).contains(&"cni:bluenet:gc-gone:eth0".to_string()),
        "the daemon forgot an attachment nobody DELeted"
    );
    let gc = with(
        &conf,
        "cni.dev/valid-attachments",
        json!([{"containerID": "gc-keep", "ifname": "eth0"}, {"containerID": "gone", "ifname": "eth0"}]),
    );
    let r = cni(&host, &[("CNI_COMMAND", "GC")], &gc);
    assert!(r.ok && r.stdout.is_empty(), "GC: {r:?}");
    assert_eq!(
        attachments(&tb),
        vec![
            "cni:bluenet:gc-keep:eth0".to_string(),
            "cni:othernet:gc-other:eth0".to_string()
        ]
    );
    assert_eq!(
        ports_with_attachment(&tb, "cni:bluenet:gc-keep:eth0").len(),
        1
    );
    assert!(ports_with_attachment(&tb, "cni:bluenet:gc-stale:eth0").is_empty());
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["ip"] == "10.0.9.200/24"),
        "the vswitchctl port stays: {ports}"
    );
    // The address of the collected attachment is free again.
    let c6_path = new_netns(&mut tb, "c6");
    let again = with(&conf, "runtimeConfig", json!({ "ips": [gone_addr] }));
    let r = cni(&host, &Att::eth0("c6c6c6", &c6_path).env("ADD"), &again);
    assert!(r.ok, "the address of a collected attachment: {r:?}");
    let r = cni(&host, &Att::eth0("c6c6c6", &c6_path).env("DEL"), &again);
    assert!(r.ok, "{r:?}");
    // GC without the list removes nothing and says why.
    let r = cni(&host, &[("CNI_COMMAND", "GC")], &conf.to_string());
    assert_eq!(r.error_code(), 7, "{r:?}");
    assert_eq!(
        ports_with_attachment(&tb, "cni:bluenet:gc-keep:eth0").len(),
        1
    );

    // Runtimes run plugins for different containers at once (spec §3): eight concurrent ADDs
    // get eight distinct addresses, and their DELs leave nothing.
    let nss: Vec<String> = (0..8)
        .map(|i| new_netns(&mut tb, &format!("p{i}")))
        .collect();
    let conf_s = conf.to_string();
    let results: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = nss
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let (host, conf_s) = (&host, &conf_s);
                s.spawn(move || {
                    let id = format!("par{i}");
                    let att = Att::eth0(&id, path);
                    cni(host, &att.env("ADD"), conf_s)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addrs: Vec<String> = results
        .iter()
        .map(|r| {
            assert!(r.ok, "concurrent ADD: {r:?}");
            r.json()["ips"][0]["address"].as_str().unwrap().to_string()
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 8, "{addrs:?}");
    for (i, path) in nss.iter().enumerate() {
        let id = format!("par{i}");
        let att = Att::eth0(&id, path);
        assert!(cni(&host, &att.env("DEL"), &conf_s).ok);
        assert!(ports_with_attachment(&tb, &format!("cni:bluenet:{id}:eth0")).is_empty());
    }

    // Errors as CNI error objects with the spec's codes.
    let fresh_path = new_netns(&mut tb, "e");
    let e = Att::eth0("err1", &fresh_path);
    let cases: Vec<(&str, String, u64)> = vec![
        ("not JSON", "{nope".into(), 6),
        (
            "no name",
            json!({"cniVersion": "1.1.0", "type": "vswitch-cni"}).to_string(),
            7,
        ),
        (
            "relative socket",
            with(&conf, "socket", json!("vswitchd.sock")),
            7,
        ),
        (
            "an IPAM plugin",
            with(&conf, "ipam", json!({"type": "host-local"})),
            2,
        ),
        (
            "a version from the future",
            with(&conf, "cniVersion", json!("9.9.9")),
            1,
        ),
        (
            "a network the daemon lacks",
            with(&conf, "network", json!("green")),
            7,
        ),
    ];
    for (what, stdin, want) in cases {
        let r = cni(&host, &e.env("ADD"), &stdin);
        assert_eq!(r.error_code(), want, "{what}: {r:?}");
    }
    let r = cni(&host, &[("CNI_COMMAND", "ADD")], &conf.to_string());
    assert_eq!(r.error_code(), 4, "{r:?}");
    assert!(
        r.json()["msg"]
            .as_str()
            .unwrap()
            .contains("CNI_CONTAINERID"),
        "{r:?}"
    );
    let r = cni(&host, &e.env("FROB"), &conf.to_string());
    assert_eq!(r.error_code(), 4, "{r:?}");
    // Nothing was attached by any of them.
    assert!(ports_with_attachment(&tb, "cni:bluenet:err1:eth0").is_empty());
    assert!(iface(tb.containers.last().unwrap(), "eth0").is_none());

    // The daemon stopped: STATUS says 50, ADD says try again later (11), DEL succeeds (its
    // TAP devices went with it).
    tb.hosts[0].daemon.take().unwrap().stop();
    let r = cni(&host, &[("CNI_COMMAND", "STATUS")], &conf.to_string());
    assert_eq!(r.error_code(), 50, "{r:?}");
    let r = cni(&host, &e.env("ADD"), &conf.to_string());
    assert_eq!(r.error_code(), 11, "{r:?}");
    let r = cni(&host, &e.env("DEL"), &conf.to_string());
    assert!(r.ok, "DEL without a daemon: {r:?}");
}

/// Podman with its CNI backend runs a busybox container on vswitch network blue on host a; it
/// pings a container on host b attached with plain `vswitchctl attach-namespace`.
#[test]
fn podman_runs_a_container_on_a_vswitch_network_that_reaches_another_host() {
    let tb = Testbed::two_hosts(&format!("cni-pod-{}", std::process::id()), bins(), &[BLUE]);
    let mut tb = tb.unwrap();
    let b1 = step!(tb, tb.add_container(1, "b1", "blue", "10.0.9.200/24"));
    let dir = tb.dir.join("podman");
    let rootfs = step!(tb, busybox_rootfs(&tb.dir));
    let podman = step!(tb, Podman::new(&dir, &tb.hosts[0].ns.name));
    step!(
        tb,
        podman.install_plugin("vswitch-cni", std::path::Path::new(PLUGIN))
    );
    // The example of the README, as installed, with this host's socket.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/cni/vswitch.conflist");
    let mut conflist: Value =
        serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    conflist["plugins"][0]["socket"] = json!(tb.hosts[0].socket);
    step!(tb, podman.add_conflist("blue", &conflist.to_string()));

    let script = "ip -4 -o addr show dev eth0; echo resolv:; cat /etc/resolv.conf; \
                  ping -c 3 -W 2 10.0.9.200";
    let out = podman.run_container("blue", "web1", &rootfs, &["/bin/sh", "-c", script]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "podman run failed ({}):\n{stdout}\n{stderr}\n{}",
        out.status,
        tb.logs()
    );
    assert!(stdout.contains("inet 10.0.9."), "{stdout}");
    assert!(stdout.contains("3 packets received"), "{stdout}");
    // Podman wrote the result's DNS into the container's resolv.conf, vswitch's first.
    let resolv = stdout.split("resolv:").nth(1).unwrap_or_default();
    assert!(resolv.contains("search blue"), "{stdout}");
    assert_eq!(
        resolv.lines().find(|l| l.starts_with("nameserver")),
        Some("nameserver 10.0.9.1"),
        "{stdout}"
    );
    // While it ran, host a had its port, named by the container; `--rm` ran DEL after.
    let log = tb.hosts[0].log_text();
    assert!(log.contains("name=web1"), "{log}");
    let gone = wait_until(Duration::from_secs(5), || {
        tb.hosts[0]
            .show_json(&tb.bins, "ports")
            .map(|p| p.as_array().is_some_and(|a| a.is_empty()))
            .unwrap_or(false)
    });
    assert!(gone, "the container's port outlived it\n{}", tb.logs());

    // The other way: a detached container, reached from host b, removed with `podman rm`.
    let out = podman.start_container("blue", "web2", &rootfs, &["/bin/sleep", "120"]);
    assert!(
        out.status.success(),
        "podman run -d: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tb.logs()
    );
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    let web2 = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "web2")
        .unwrap_or_else(|| panic!("no port named web2: {ports}"))
        .clone();
    assert!(
        web2["attachment"]
            .as_str()
            .unwrap()
            .starts_with("cni:blue:"),
        "{web2}"
    );
    let ip = web2["ip"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (tx, rx) = ping(tb.container(b1), &ip, 3, &[]);
    assert_eq!((tx, rx), (3, 3), "host b to web2 at {ip}\n{}", tb.logs());
    let out = podman.output(&["rm", "--force", "--time", "0", "web2"]);
    assert!(out.status.success(), "podman rm: {out:?}");
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    assert_eq!(ports, json!([]), "podman rm ran DEL");
}

/// On a cluster network (`network create`, etcd): podman on two hosts, each with the plugin,
/// gets addresses from the cluster's IPAM; the containers reach each other, the cluster lists
/// them by their podman names, and `podman rm` takes the endpoint out of the cluster.
#[test]
fn podman_on_two_hosts_of_a_cluster_network() {
    let prefix = format!("cni-cl-{}", std::process::id());
    let (tb, _urls) = Testbed::cluster(&prefix, bins(), 2, 1, "").unwrap();
    step!(
        tb,
        tb.hosts[0].ctl(
            &tb.bins,
            &["network", "create", "blue", "--subnet", "10.0.9.0/24"]
        )
    );
    let carried = wait_until(Duration::from_secs(5), || {
        tb.hosts[1].show_json(&tb.bins, "networks").is_ok_and(|n| {
            n.as_array()
                .is_some_and(|a| a.iter().any(|n| n["name"] == "blue"))
        })
    });
    assert!(carried, "host b does not carry blue\n{}", tb.logs());
    let rootfs = step!(tb, busybox_rootfs(&tb.dir));
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/cni/vswitch.conflist");
    let podmans: Vec<Podman> = (0..2)
        .map(|i| {
            let p = step!(
                tb,
                Podman::new(&tb.dir.join(format!("podman{i}")), &tb.hosts[i].ns.name)
            );
            step!(
                tb,
                p.install_plugin("vswitch-cni", std::path::Path::new(PLUGIN))
            );
            let mut conflist: Value =
                serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
            conflist["plugins"][0]["socket"] = json!(tb.hosts[i].socket);
            step!(tb, p.add_conflist("blue", &conflist.to_string()));
            p
        })
        .collect();

    let out = podmans[1].start_container("blue", "web-b", &rootfs, &["/bin/sleep", "120"]);
    assert!(
        out.status.success(),
        "podman run -d on host b: {out:?}\n{}",
        tb.logs()
    );
    let inspect = |tb: &Testbed| -> Value {
        let out = step!(
            tb,
            tb.hosts[0].ctl(&tb.bins, &["network", "inspect", "blue", "--json"])
        );
        serde_json::from_str(&out).unwrap()
    };
    let net = inspect(&tb);
    let web_b = net["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "web-b")
        .unwrap_or_else(|| panic!("no endpoint web-b in the cluster: {net}"))
        .clone();
    assert_eq!(web_b["host"], "node-b", "{net}");
    let ip_b = web_b["ip"].as_str().unwrap().to_string();

    // By address, then by name: vswitch's DNS (the first nameserver podman wrote from the
    // result) knows web-b, attached on the other host, from the cluster.
    let script = format!(
        "ip -4 -o addr show dev eth0; ping -c 3 -W 2 {ip_b}; echo names:; ping -c 2 -W 2 web-b"
    );
    let out = podmans[0].run_container("blue", "web-a", &rootfs, &["/bin/sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "podman run on host a ({}):\n{stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tb.logs()
    );
    assert!(stdout.contains("3 packets received"), "{stdout}");
    assert!(
        !stdout.contains(&format!("inet {ip_b}/")),
        "one address twice: {stdout}"
    );
    let by_name = stdout.split("names:").nth(1).unwrap_or_default();
    assert!(
        by_name.contains(&format!("PING web-b ({ip_b})")),
        "{stdout}"
    );
    assert!(by_name.contains("2 packets received"), "{stdout}");

    let out = podmans[1].output(&["rm", "--force", "--time", "0", "web-b"]);
    assert!(out.status.success(), "podman rm: {out:?}");
    let gone = wait_until(Duration::from_secs(5), || {
        inspect(&tb)["endpoints"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
    assert!(gone, "endpoints left in the cluster: {}", inspect(&tb));
}
