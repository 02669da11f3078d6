//! The Docker plugin end to end (issue 11 item 2): a real dockerd (Debian's docker.io) started
//! in a host namespace of the testbed, with vswitchd's `[docker]` plugin; networks made with
//! `docker network create -d vswitch --ipam-driver vswitch`, containers run from an image
//! imported from a busybox-static rootfs. Root required (TESTING.md); everything is removed
//! when a test ends, pass or fail.
//!
//! How dockerd is kept to the test: it runs in the host's network namespace (`nsenter
//! --net`), in a mount namespace of its own (`unshare --mount`) where the test's directory is
//! bind-mounted over /run, so the plugin socket vswitchd makes at DIR/run/docker/plugins/
//! vswitch.sock is the only plugin it discovers (at /run/docker/plugins/vswitch.sock, where
//! dockerd looks), its containerd is its own (no /run/containerd to find), and every mount it
//! makes goes with that namespace. Its data root, exec root, pidfile and API socket are in the
//! test's directory; `--bridge=none --iptables=false --ip-masq=false --ip-forward=false`. It
//! is stopped by the pid in its pidfile.

mod common;

use common::bins;
use common::cluster::addr_of;
use common::testbed::{ping, run, wait_until, Host, Process, Testbed};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn prefix(tag: &str) -> String {
    format!("vsd{}-{tag}", std::process::id())
}

/// Debian's docker CLI (the one matching Debian's dockerd), else whatever is on PATH.
fn docker_cli() -> &'static str {
    if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

/// A dockerd in host namespace `ns`, everything it keeps under `dir`; stopped (by the pid in
/// its pidfile) when dropped.
struct Dockerd {
    dir: PathBuf,
    proc_: Option<Process>,
}

impl Dockerd {
    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// The directory bind-mounted over dockerd's /run; vswitchd's plugin socket goes in its
    /// docker/plugins.
    fn run_dir(dir: &Path) -> PathBuf {
        dir.join("run")
    }

    fn start(ns: &str, dir: &Path) -> Result<Dockerd, String> {
        let run_dir = Dockerd::run_dir(dir);
        std::fs::create_dir_all(run_dir.join("docker/plugins")).map_err(|e| e.to_string())?;
        for d in ["data", "exec"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| e.to_string())?;
        }
        if Command::new("dockerd").arg("--version").output().is_err() {
            return Err("dockerd is not installed: run scripts/install-deps.sh".into());
        }
        let log = std::fs::File::create(dir.join("dockerd.log")).map_err(|e| e.to_string())?;
        let d = |p: &str| dir.join(p).display().to_string();
        let script = format!(
            "mount --bind {run} /run && exec dockerd --data-root {data} --exec-root {exec} \
             --pidfile {pid} -H unix://{sock} --bridge=none --iptables=false --ip-masq=false \
             --ip-forward=false --storage-driver vfs",
            run = run_dir.display(),
            data = d("data"),
            exec = d("exec"),
            pid = d("docker.pid"),
            sock = d("docker.sock"),
        );
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{ns}"))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start dockerd: {e}"))?;
        let mut dockerd = Dockerd {
            dir: dir.to_path_buf(),
            proc_: Some(Process {
                child,
                what: format!("dockerd in {ns}"),
            }),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(st))) = dockerd.proc_.as_mut().map(|p| p.child.try_wait()) {
                return Err(format!("dockerd exited ({st}):\n{}", dockerd.log()));
            }
            if dockerd.cli(&["version"]).is_ok() {
                return Ok(dockerd);
            }
            if Instant::now() > deadline {
                return Err(format!("dockerd did not come up:\n{}", dockerd.log()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        let t = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = t.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Runs the docker CLI against this dockerd; Err carries its output.
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let host = format!("unix://{}", self.socket().display());
        let mut full = vec![docker_cli(), "-H", host.as_str()];
        full.extend_from_slice(args);
        run(&full).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// An image `bb:test` from a rootfs of Debian's busybox-static.
    fn import_busybox(&self) -> Result<(), String> {
        let root = self.dir.join("rootfs");
        std::fs::create_dir_all(root.join("bin")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(root.join("etc")).map_err(|e| e.to_string())?;
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("busybox-static is not installed: run scripts/install-deps.sh")?;
        std::fs::copy(busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
        for applet in ["sh", "ping", "sleep", "ip", "cat", "nslookup", "hostname"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                .map_err(|e| e.to_string())?;
        }
        let tar = self.dir.join("rootfs.tar");
        run(&[
            "tar",
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ])?;
        self.cli(&["import", tar.to_str().unwrap(), "bb:test"])
            .map(|_| ())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let Some(mut p) = self.proc_.take() else {
            return;
        };
        // The pidfile's pid is the child's (nsenter, unshare and sh each exec the next).
        let pid = std::fs::read_to_string(self.dir.join("docker.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|pid| *pid == p.pid()) {
            // SAFETY: kill(2) on the pid of a child we started and have not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        p.stop();
    }
}

fn ports(tb: &Testbed, host: usize) -> Vec<Value> {
    tb.hosts[host]
        .show_json(&tb.bins, "ports")
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn port_named(tb: &Testbed, host: usize, name: &str) -> Option<Value> {
    ports(tb, host).into_iter().find(|p| p["name"] == name)
}

/// The links of a host namespace other than lo and the underlay.
fn extra_links(h: &Host) -> Vec<String> {
    let out = h.ns.try_exec(&["ip", "-o", "link", "show"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_string()))
        .map(|s| s.split('@').next().unwrap_or_default().to_string())
        // vswgso0: the running daemon's own tunnel device (src/io/tunnel.rs), not a port.
        .filter(|n| n != "lo" && n != "ul0" && n != "vswgso0")
        .collect()
}

/// Appends a `[docker]` table for dockerd `d` to host `i`'s node.toml.
fn enable_docker(tb: &Testbed, i: usize, dir: &Path) {
    let table = format!(
        "\n[docker]\nsocket = \"{}\"\ndocker_socket = \"{}\"\n",
        Dockerd::run_dir(dir)
            .join("docker/plugins/vswitch.sock")
            .display(),
        dir.join("docker.sock").display()
    );
    let mut text = std::fs::read_to_string(&tb.hosts[i].config).unwrap();
    text.push_str(&table);
    std::fs::write(&tb.hosts[i].config, text).unwrap();
}

/// `docker network create` with `args` before the name; `ipam`: with `--ipam-driver vswitch`.
fn create_network(d: &Dockerd, name: &str, ipam: bool, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["network", "create", "-d", "vswitch"];
    if ipam {
        full.extend_from_slice(&["--ipam-driver", "vswitch"]);
    }
    full.extend_from_slice(args);
    full.push(name);
    d.cli(&full)
}

/// Network `green` (10.0.8.0/24, vswitch's IPAM) and a container `db` on it.
fn run_db_on_green(d: &Dockerd) -> Result<(), String> {
    create_network(d, "green", true, &["--subnet", "10.0.8.0/24"])?;
    d.cli(&[
        "run",
        "-d",
        "--network",
        "green",
        "--name",
        "db",
        "bb:test",
        "sleep",
        "600",
    ])
    .map(|_| ())
}

/// Detaches container `c` of host 0 (attached with vswitchctl) from network `green`.
fn detach_from_green(tb: &Testbed, c: usize) -> Result<String, String> {
    tb.hosts[0].ctl(
        &tb.bins,
        &[
            "detach-namespace",
            "--network",
            "green",
            "--netns",
            &tb.container(c).name,
        ],
    )
}

fn inspect(d: &Dockerd, what: &str) -> Value {
    let out = d.cli(&["inspect", what]).unwrap_or_else(|e| panic!("{e}"));
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

/// Two hosts on etcd; host A runs dockerd with the plugin. A Docker container on A and a plain
/// `attach-namespace` container on B reach each other; `docker network inspect` shows the
/// subnet and the DNS address as the gateway; `docker rm -f` and `docker network rm` leave no
/// port, TAP, endpoint or claim.
#[test]
fn docker_network_on_a_cluster() {
    let mut tb = Testbed::new(&prefix("cl"), bins()).unwrap();
    step!(tb, tb.add_hosts(2));
    let urls = step!(tb, tb.start_etcd(1));
    let ddir = tb.dir.join("docker-a");
    for i in 0..2 {
        let name = tb.hosts[i].name.clone();
        step!(tb, tb.write_cluster_config(i, &name, &urls, ""));
    }
    enable_docker(&tb, 0, &ddir);
    for i in 0..2 {
        step!(tb, tb.start_daemon(i));
    }
    let d = step!(tb, Dockerd::start(&tb.hosts[0].ns.name, &ddir));
    let fail = |tb: &Testbed, d: &Dockerd, what: String| -> ! {
        panic!("{what}\n--- dockerd ---\n{}\n{}", d.log(), tb.logs())
    };
    if let Err(e) = d.import_busybox() {
        fail(&tb, &d, e);
    }

    // The network: made by dockerd's CreateNetwork, carried by both hosts.
    let create = create_network(
        &d,
        "blue",
        true,
        &[
            "--subnet",
            "10.0.9.0/24",
            "--gateway",
            "10.0.9.1",
            "-o",
            "vni=4242",
        ],
    );
    if let Err(e) = create {
        fail(&tb, &d, e);
    }
    let carried = |h: usize| {
        tb.hosts[h]
            .show_json(&tb.bins, "networks")
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|n| n["name"] == "blue" && n["vni"] == 4242)
    };
    for h in 0..2 {
        if !wait_until(Duration::from_secs(10), || carried(h)) {
            fail(&tb, &d, format!("host {h} does not carry blue (vni 4242)"));
        }
    }
    let net = inspect(&d, "blue");
    assert_eq!(net["Driver"], "vswitch", "{net}");
    assert_eq!(net["IPAM"]["Driver"], "vswitch", "{net}");
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "10.0.9.0/24", "{net}");
    assert_eq!(net["IPAM"]["Config"][0]["Gateway"], "10.0.9.1", "{net}");

    // A container on A, by Docker; one on B, by vswitchctl. --dns: Docker's embedded DNS
    // forwards the names it does not know (every container on another host) to the network's
    // DNS address.
    if let Err(e) = d.cli(&[
        "run",
        "-d",
        "--network",
        "blue",
        "--dns",
        "10.0.9.1",
        "--name",
        "web",
        "bb:test",
        "sleep",
        "600",
    ]) {
        fail(&tb, &d, e);
    }
    if !wait_until(Duration::from_secs(10), || {
        port_named(&tb, 0, "web").is_some()
    }) {
        fail(&tb, &d, "no port named web on host A".into());
    }
    let web = port_named(&tb, 0, "web").unwrap();
    let web_ip = addr_of(&web);
    let c = inspect(&d, "web");
    let settings = &c["NetworkSettings"]["Networks"]["blue"];
    assert_eq!(settings["IPAddress"], web_ip.as_str(), "{settings}");
    assert_eq!(settings["MacAddress"], web["mac"], "{settings} {web}");
    assert_ne!(web_ip, "10.0.9.1", "the DNS address was handed out");
    let eth0 = d
        .cli(&[
            "exec", "web", "ip", "-o", "-4", "addr", "show", "dev", "eth0",
        ])
        .unwrap_or_else(|e| fail(&tb, &d, e));
    assert!(eth0.contains(&format!("{web_ip}/24")), "{eth0}");

    let (c1, at_b) = step!(tb, tb.attach(1, "c1", "blue", &["--name", "c1"]));
    let c1_ip = addr_of(&at_b);
    let published = |h: usize, name: &str| {
        let out = tb.hosts[h]
            .ctl(&tb.bins, &["network", "inspect", "blue", "--json"])
            .unwrap_or_default();
        serde_json::from_str::<Value>(&out)
            .ok()
            .and_then(|v| v["endpoints"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .find(|e| e["name"] == name)
    };
    if !wait_until(Duration::from_secs(5), || published(1, "web").is_some()) {
        fail(&tb, &d, "host B does not see the endpoint web".into());
    }
    assert_eq!(published(1, "web").unwrap()["ip"], web_ip.as_str());

    // Both ways, by address.
    let (sent, got) = ping(tb.container(c1), &web_ip, 3, &[]);
    if got != sent {
        fail(&tb, &d, format!("c1 → web: {got} of {sent}"));
    }
    if let Err(e) = d.cli(&["exec", "web", "ping", "-c", "3", "-W", "2", &c1_ip]) {
        fail(&tb, &d, format!("web → c1: {e}"));
    }

    // And by name: web asks Docker's embedded DNS, which forwards to 10.0.9.1 on host A; c1
    // asks 10.0.9.1 on host B (attach-namespace wrote its resolv.conf).
    let (sent, got) = ping(tb.container(c1), "web", 3, &[]);
    if got != sent || sent == 0 {
        fail(&tb, &d, format!("c1 → web by name: {got} of {sent}"));
    }
    if let Err(e) = d.cli(&["exec", "web", "ping", "-c", "3", "-W", "2", "c1"]) {
        let dbg: Vec<String> = [
            &["exec", "web", "cat", "/etc/resolv.conf"][..],
            &["exec", "web", "nslookup", "c1", "10.0.9.1"][..],
            &["exec", "web", "nslookup", "c1"][..],
            &["exec", "web", "nslookup", "c1.blue"][..],
        ]
        .iter()
        .map(|a| format!("{a:?}: {:?}", d.cli(a)))
        .collect();
        let stats = tb.hosts[0]
            .ctl(&tb.bins, &["show", "stats"])
            .unwrap_or_default();
        // dockerd's embedded DNS logs where it forwards and what failed.
        let log = std::fs::read_to_string(ddir.join("dockerd.log")).unwrap_or_default();
        let resolver: Vec<&str> = log.lines().filter(|l| l.contains("[resolver]")).collect();
        let stats = format!("{stats}\n{}", resolver.join("\n"));
        fail(
            &tb,
            &d,
            format!("web → c1 by name: {e}\n{}\n{stats}", dbg.join("\n")),
        );
    }
    let looked_up = d
        .cli(&["exec", "web", "nslookup", "c1.blue"])
        .unwrap_or_else(|e| fail(&tb, &d, e));
    assert!(looked_up.contains(&c1_ip), "{looked_up}");

    // Removal: the container, then the network.
    if let Err(e) = d.cli(&["rm", "-f", "web"]) {
        fail(&tb, &d, e);
    }
    if !wait_until(Duration::from_secs(10), || {
        port_named(&tb, 0, "web").is_none() && published(1, "web").is_none()
    }) {
        fail(
            &tb,
            &d,
            "web's port or endpoint outlived its container".into(),
        );
    }
    if let Err(e) = d.cli(&["network", "rm", "blue"]) {
        fail(&tb, &d, e);
    }
    assert!(ports(&tb, 0).is_empty(), "{:?}", ports(&tb, 0));
    assert_eq!(extra_links(&tb.hosts[0]), Vec::<String>::new());
    let claims = step!(
        tb,
        tb.etcdctl(&urls, &["get", "--prefix", "--keys-only", "/vswitch/"])
    );
    let held: Vec<&str> = claims
        .lines()
        .filter(|k| k.contains("/addresses/") || k.contains("/names/") || k.contains("/endpoints/"))
        .collect();
    assert!(
        held.iter()
            .all(|k| k.ends_with(&c1_ip) || k.ends_with("/c1")),
        "claims left behind: {held:?}"
    );
    assert_eq!(held.len(), 3, "c1's address, name and endpoint: {held:?}");
}

/// Without `[cluster]`: `docker network create` adds a network to this host alone, the
/// container gets the lowest free address (not the DNS address), reaches a plain
/// `attach-namespace` container, and `docker network rm` removes the network again.
#[test]
fn docker_network_without_a_cluster() {
    let mut tb = Testbed::new(&prefix("st"), bins()).unwrap();
    step!(tb, tb.add_hosts(1));
    step!(tb, tb.write_config(0, &[common::testbed::RED], ""));
    let ddir = tb.dir.join("docker-a");
    enable_docker(&tb, 0, &ddir);
    step!(tb, tb.start_daemon(0));
    let d = step!(tb, Dockerd::start(&tb.hosts[0].ns.name, &ddir));
    let fail = |tb: &Testbed, d: &Dockerd, what: String| -> ! {
        panic!("{what}\n--- dockerd ---\n{}\n{}", d.log(), tb.logs())
    };
    if let Err(e) = d.import_busybox() {
        fail(&tb, &d, e);
    }
    // An unknown option, a foreign IPAM driver and another gateway are refused, saying why.
    for (ipam, args, why) in [
        (
            true,
            &["-o", "colour=green"][..],
            "unknown option -o colour",
        ),
        (false, &[][..], "--ipam-driver vswitch"),
        (
            true,
            &["--gateway", "10.0.7.254"][..],
            "its DNS address 10.0.7.1",
        ),
    ] {
        let mut full = vec!["--subnet", "10.0.7.0/24"];
        full.extend_from_slice(args);
        let e = create_network(&d, "bad", ipam, &full).unwrap_err();
        assert!(e.contains(why), "{why:?} not in: {e}");
    }
    if let Err(e) = run_db_on_green(&d) {
        fail(&tb, &d, e);
    }
    if !wait_until(Duration::from_secs(10), || {
        port_named(&tb, 0, "db").is_some()
    }) {
        fail(&tb, &d, "no port named db".into());
    }
    let db_ip = addr_of(&port_named(&tb, 0, "db").unwrap());
    assert_eq!(
        db_ip, "10.0.8.2",
        "the lowest free address, not the DNS address"
    );
    let (c, at) = step!(tb, tb.attach(0, "c2", "green", &["--name", "c2"]));
    let c2_ip = addr_of(&at);
    assert_eq!(c2_ip, "10.0.8.3");
    let (sent, got) = ping(tb.container(c), &db_ip, 3, &[]);
    if got != sent {
        fail(&tb, &d, format!("c2 → db: {got} of {sent}"));
    }
    let (sent, got) = ping(tb.container(c), "db.green", 3, &[]);
    if got != sent || sent == 0 {
        fail(&tb, &d, format!("c2 → db.green by name: {got} of {sent}"));
    }
    step!(tb, detach_from_green(&tb, c));
    if let Err(e) = d.cli(&["rm", "-f", "db"]) {
        fail(&tb, &d, e);
    }
    if let Err(e) = d.cli(&["network", "rm", "green"]) {
        fail(&tb, &d, e);
    }
    let networks = step!(tb, tb.hosts[0].show_json(&tb.bins, "networks"));
    assert!(
        networks
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["name"] != "green"),
        "{networks}"
    );
    assert!(ports(&tb, 0).is_empty());
    assert_eq!(extra_links(&tb.hosts[0]), Vec::<String>::new());
}

/// The ports of host `i` that state_dir records.
fn records(tb: &Testbed, i: usize) -> usize {
    std::fs::read_dir(tb.dir.join(format!("state-h{i}")).join("ports"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// A Docker container keeps its interface across `vswitchctl shutdown --keep-ports` and a
/// `kill -9` of vswitchd: the next daemon re-adopts its port (and the plugin's network and
/// endpoint), the container pings across each restart, and `docker rm` afterwards still
/// removes its port and its record, and `docker network rm` the network.
#[test]
fn docker_containers_keep_their_interface_across_a_restart() {
    let mut tb = Testbed::new(&prefix("rs"), bins()).unwrap();
    step!(tb, tb.add_hosts(1));
    step!(tb, tb.write_config(0, &[common::testbed::RED], ""));
    let ddir = tb.dir.join("docker-a");
    enable_docker(&tb, 0, &ddir);
    step!(tb, tb.start_daemon(0));
    let d = step!(tb, Dockerd::start(&tb.hosts[0].ns.name, &ddir));
    let fail = |tb: &Testbed, d: &Dockerd, what: String| -> ! {
        panic!("{what}\n--- dockerd ---\n{}\n{}", d.log(), tb.logs())
    };
    if let Err(e) = d.import_busybox() {
        fail(&tb, &d, e);
    }
    if let Err(e) = run_db_on_green(&d) {
        fail(&tb, &d, e);
    }
    if !wait_until(Duration::from_secs(10), || {
        port_named(&tb, 0, "db").is_some() && records(&tb, 0) == 1
    }) {
        fail(&tb, &d, "no port named db, or it is not recorded".into());
    }
    let db = port_named(&tb, 0, "db").unwrap();
    let db_ip = addr_of(&db);
    assert_eq!(db["ifname"], "eth0", "{db}");
    let (c, at) = step!(tb, tb.attach(0, "c2", "green", &["--name", "c2"]));
    let c2_ip = addr_of(&at);
    // The interface, its MTU and MAC (not its carrier, which is down while no daemon runs).
    let eth0 = |d: &Dockerd| {
        d.cli(&["exec", "db", "ip", "-o", "link", "show", "eth0"])
            .map(|l| {
                let mtu = l.split(" qdisc").next().unwrap_or_default();
                let mtu = mtu.rsplit("> ").next().unwrap_or_default().to_string();
                let mac = l.split("link/ether").nth(1).unwrap_or_default();
                format!("{mtu} {}", mac.trim())
            })
    };
    let before = eth0(&d).unwrap_or_else(|e| fail(&tb, &d, e));
    let both_ways = |tb: &Testbed, d: &Dockerd, when: &str| {
        let (sent, got) = ping(tb.container(c), &db_ip, 3, &[]);
        if got != sent || sent == 0 {
            fail(tb, d, format!("{when}: c2 → db: {got} of {sent}"));
        }
        if let Err(e) = d.cli(&["exec", "db", "ping", "-c", "3", "-W", "2", &c2_ip]) {
            fail(tb, d, format!("{when}: db → c2: {e}"));
        }
    };
    both_ways(&tb, &d, "before the restarts");

    // An upgrade's stop: both ports kept, the container's interface as it was.
    let out = step!(tb, tb.hosts[0].ctl(&tb.bins, &["shutdown", "--keep-ports"]));
    assert!(out.contains("2 port(s) kept"), "{out}");
    let mut daemon = tb.hosts[0].daemon.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        daemon.child.try_wait().ok().flatten().is_some(),
        "{}",
        tb.logs()
    );
    assert_eq!(eth0(&d).ok().as_ref(), Some(&before), "kept as it was");
    step!(tb, tb.start_daemon(0));
    let db_again =
        port_named(&tb, 0, "db").unwrap_or_else(|| fail(&tb, &d, "db not re-adopted".into()));
    assert_eq!(db_again["id"], db["id"], "{db_again}");
    assert_eq!(db_again["mac"], db["mac"], "{db_again}");
    both_ways(&tb, &d, "after shutdown --keep-ports");

    // A crash: the same.
    let mut daemon = tb.hosts[0].daemon.take().unwrap();
    daemon.child.kill().expect("SIGKILL to our own vswitchd");
    daemon.child.wait().expect("reaped");
    assert_eq!(eth0(&d).ok().as_ref(), Some(&before), "kept as it was");
    step!(tb, tb.start_daemon(0));
    both_ways(&tb, &d, "after kill -9");

    // dockerd's Leave and DeleteEndpoint reach the new daemon's plugin: the port and its
    // record go; then the network.
    if let Err(e) = d.cli(&["rm", "-f", "db"]) {
        fail(&tb, &d, e);
    }
    if !wait_until(Duration::from_secs(10), || {
        port_named(&tb, 0, "db").is_none() && records(&tb, 0) == 1
    }) {
        fail(&tb, &d, "db's port or record outlived its container".into());
    }
    step!(tb, detach_from_green(&tb, c));
    if let Err(e) = d.cli(&["network", "rm", "green"]) {
        fail(&tb, &d, e);
    }
    assert!(ports(&tb, 0).is_empty(), "{:?}", ports(&tb, 0));
    assert_eq!(records(&tb, 0), 0);
    assert_eq!(extra_links(&tb.hosts[0]), Vec::<String>::new());
    let networks = step!(tb, tb.hosts[0].show_json(&tb.bins, "networks"));
    assert!(
        networks
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["name"] != "green"),
        "{networks}"
    );
}
