//! A namespace testbed: simulated hosts on one machine.
//!
//! Two (or more) "host" network namespaces joined by a veth underlay (192.0.2.0/24,
//! TEST-NET-1), a `vswitchd` in each, and "container" namespaces attached with `vswitchctl`.
//! Shared by the integration tests and `examples/two-hosts.rs`.
//!
//! Rules it keeps (TESTING.md): every name carries a unique prefix (test name + pid); nothing is
//! configured in or sent from the root namespace; every namespace and daemon is removed by a
//! guard's `Drop`, also when a test fails; daemons are stopped by their own pid.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub type Result<T> = std::result::Result<T, String>;

/// Runs a command, returning its output; Err with stderr when it fails.
pub fn run(args: &[&str]) -> Result<Output> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(out)
}

/// A network namespace that is deleted (with everything in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Result<Netns> {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        run(&["ip", "netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["ip", "netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Like `exec` but returns the output whatever the exit status.
    pub fn try_exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", self.name.as_str()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    pub fn spawn(&self, args: &[&str], log: &Path) -> Result<Child> {
        self.spawn_with_env(args, log, &[])
    }

    pub fn spawn_with_env(
        &self,
        args: &[&str],
        log: &Path,
        env: &[(String, String)],
    ) -> Result<Child> {
        let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        Command::new("ip")
            .args(["netns", "exec", self.name.as_str()])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", args[0]))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
        // What `ip netns exec` would bind into it (a resolv.conf vswitchd wrote on attach and
        // could not remove, being killed): nothing of the test stays behind.
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
    }
}

/// A child process stopped by its own pid when dropped (SIGTERM, then SIGKILL after 5 s).
pub struct Process {
    pub child: Child,
    pub what: String,
}

impl Process {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        // SAFETY: kill(2) on the pid of a child we started and have not yet reaped.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the vswitchd and vswitchctl binaries are.
#[derive(Clone)]
pub struct Binaries {
    pub vswitchd: PathBuf,
    pub vswitchctl: PathBuf,
}

/// One simulated host: its namespace, config, and daemon.
pub struct Host {
    pub name: String,
    pub underlay_ip: String,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub daemon: Option<Process>,
    pub ns: Netns,
}

impl Host {
    /// Runs vswitchctl against this host's daemon; Err carries its stderr.
    pub fn ctl(&self, bins: &Binaries, args: &[&str]) -> Result<String> {
        let mut full = vec![
            bins.vswitchctl.to_str().unwrap(),
            "--socket",
            self.socket.to_str().unwrap(),
        ];
        full.extend_from_slice(args);
        run(&full).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `vswitchctl attach-namespace --network NETWORK --netns NETNS --ip IP EXTRA...`.
    pub fn attach_namespace(
        &self,
        bins: &Binaries,
        network: &str,
        netns: &str,
        ip: &str,
        extra: &[&str],
    ) -> Result<String> {
        let mut args = vec![
            "attach-namespace",
            "--network",
            network,
            "--netns",
            netns,
            "--ip",
            ip,
        ];
        args.extend_from_slice(extra);
        self.ctl(bins, &args)
    }

    pub fn show_json(&self, bins: &Binaries, what: &str) -> Result<serde_json::Value> {
        let out = self.ctl(bins, &["show", what, "--json"])?;
        serde_json::from_str(&out)
            .map_err(|e| format!("show {what} --json is not JSON ({e}): {out}"))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A network as written into each host's node.toml.
#[derive(Clone)]
pub struct NetDef {
    /// More lines for this [[network]] (e.g. `encrypted = true`); may name `{dir}`, replaced
    /// by the testbed's directory.
    pub extra: &'static str,
    pub name: &'static str,
    pub vni: u32,
    pub subnet: &'static str,
}

pub const BLUE: NetDef = NetDef {
    extra: "",
    name: "blue",
    vni: 42,
    subnet: "10.0.9.0/24",
};
pub const RED: NetDef = NetDef {
    extra: "",
    name: "red",
    vni: 43,
    subnet: "10.0.9.0/24",
};

pub struct Testbed {
    pub prefix: String,
    pub dir: PathBuf,
    pub bins: Binaries,
    /// Environment for every vswitchd the testbed starts (e.g. VSWITCH_OFFLOADS=off).
    pub daemon_env: Vec<(String, String)>,
    /// Services the test started in the testbed's namespaces (etcd members): stopped after
    /// the daemons, before the namespaces go.
    pub services: Vec<Option<Process>>,
    /// With a TLS etcd (tests/common/cluster.rs): CA, client certificate, client key.
    pub etcd_tls: Option<[String; 3]>,
    // Containers before hosts: dropped first.
    pub containers: Vec<Netns>,
    pub hosts: Vec<Host>,
}

impl Testbed {
    /// `prefix` must be unique per test run (e.g. test name + pid). Keep it short: it is part
    /// of namespace names only, never of interface names.
    pub fn new(prefix: &str, bins: Binaries) -> Result<Testbed> {
        let dir = std::env::temp_dir().join(format!("vswitch-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        Ok(Testbed {
            prefix: prefix.to_string(),
            dir,
            bins,
            daemon_env: Vec::new(),
            services: Vec::new(),
            etcd_tls: None,
            containers: Vec::new(),
            hosts: Vec::new(),
        })
    }

    /// Makes host namespaces h0..hN-1 joined by one underlay segment: a bridge in h0 is
    /// avoided by making the underlay a chain of veths through a switch namespace, so any
    /// host reaches any other.
    pub fn add_hosts(&mut self, n: usize) -> Result<()> {
        let sw = Netns::new(&format!("{}-ul", self.prefix))?;
        sw.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        sw.exec(&["ip", "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = Netns::new(&format!("{}-h{i}", self.prefix))?;
            let ip = format!("192.0.2.{}", i + 1);
            run(&[
                "ip",
                "link",
                "add",
                "ul0",
                "netns",
                &ns.name,
                "type",
                "veth",
                "peer",
                "name",
                &format!("p{i}"),
                "netns",
                &sw.name,
            ])?;
            sw.exec(&["ip", "link", "set", &format!("p{i}"), "master", "br0", "up"])?;
            ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "ul0"])?;
            ns.exec(&["ip", "link", "set", "ul0", "up"])?;
            // The underlay is a veth as it comes (tx offloads on): it never fills in checksums
            // the stack left partial nor segments what the stack left whole, so a kernel VXLAN
            // peer hands vswitchd partial inner checksums and tunnel-GSO super-datagrams, which
            // it must take as the kernel's own VXLAN device does (crate::offload::csum,
            // crate::offload::superframe).
            self.hosts.push(Host {
                name: format!("node-{}", (b'a' + i as u8) as char),
                underlay_ip: ip,
                socket: self.dir.join(format!("h{i}.sock")),
                config: self.dir.join(format!("h{i}.toml")),
                log: self.dir.join(format!("h{i}.log")),
                daemon: None,
                ns,
            });
        }
        // The switch namespace lives as long as the testbed: keep it with the containers so it
        // is removed too.
        self.containers.push(sw);
        Ok(())
    }

    /// Writes node.toml for host `i` with these networks (every other host is a peer).
    pub fn write_config(&self, i: usize, networks: &[NetDef], extra_node: &str) -> Result<()> {
        let h = &self.hosts[i];
        let mut s = String::new();
        let _ = writeln!(
            s,
            "[node]\nname = \"{}\"\nunderlay_ip = \"{}\"\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\n{extra_node}",
            h.name,
            h.underlay_ip,
            h.socket.display(),
            self.dir.join(format!("state-h{i}")).display()
        );
        for (j, p) in self.hosts.iter().enumerate() {
            if j != i {
                let _ = writeln!(
                    s,
                    "[[peer]]\nname = \"{}\"\nunderlay_ip = \"{}\"\n",
                    p.name, p.underlay_ip
                );
            }
        }
        for n in networks {
            let _ = writeln!(
                s,
                "[[network]]\nname = \"{}\"\nvni = {}\nsubnet = \"{}\"\n{}\n",
                n.name,
                n.vni,
                n.subnet,
                n.extra.replace("{dir}", &self.dir.display().to_string())
            );
        }
        std::fs::write(&h.config, s).map_err(|e| e.to_string())
    }

    /// Starts vswitchd on host `i` and waits until its control socket answers.
    pub fn start_daemon(&mut self, i: usize) -> Result<()> {
        let bins = self.bins.clone();
        let env = self.daemon_env.clone();
        let h = &mut self.hosts[i];
        let child = h.ns.spawn_with_env(
            &[
                bins.vswitchd.to_str().unwrap(),
                "--config",
                h.config.to_str().unwrap(),
            ],
            &h.log,
            &env,
        )?;
        let mut proc_ = Process {
            child,
            what: format!("vswitchd on {}", h.name),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = proc_.child.try_wait() {
                return Err(format!(
                    "vswitchd on {} exited ({st}):\n{}",
                    h.name,
                    h.log_text()
                ));
            }
            if h.ctl(&bins, &["show", "networks"]).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "vswitchd on {} did not come up:\n{}",
                    h.name,
                    h.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        h.daemon = Some(proc_);
        Ok(())
    }

    /// Two hosts with these networks, daemons running.
    pub fn two_hosts(prefix: &str, bins: Binaries, networks: &[NetDef]) -> Result<Testbed> {
        Testbed::two_hosts_with_env(prefix, bins, networks, &[])
    }

    /// `two_hosts` with environment variables for both daemons.
    pub fn two_hosts_with_env(
        prefix: &str,
        bins: Binaries,
        networks: &[NetDef],
        env: &[(&str, &str)],
    ) -> Result<Testbed> {
        Testbed::two_hosts_with(prefix, bins, networks, env, "")
    }

    /// `two_hosts_with_env` with more `[node]` settings (TOML lines) for both daemons.
    pub fn two_hosts_with(
        prefix: &str,
        bins: Binaries,
        networks: &[NetDef],
        env: &[(&str, &str)],
        node: &str,
    ) -> Result<Testbed> {
        let mut tb = Testbed::new(prefix, bins)?;
        tb.daemon_env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tb.add_hosts(2)?;
        for i in 0..2 {
            tb.write_config(i, networks, node)?;
            tb.start_daemon(i)?;
        }
        Ok(tb)
    }

    /// A container namespace attached to `network` on host `host` with `ip` (ADDR/PREFIX).
    /// Returns the index into `containers`.
    pub fn add_container(
        &mut self,
        host: usize,
        tag: &str,
        network: &str,
        ip: &str,
    ) -> Result<usize> {
        self.add_container_with(host, tag, network, ip, &[])
    }

    /// `add_container` with more `attach-namespace` options (e.g. `--no-port-security`).
    pub fn add_container_with(
        &mut self,
        host: usize,
        tag: &str,
        network: &str,
        ip: &str,
        extra: &[&str],
    ) -> Result<usize> {
        let ns = Netns::new(&format!("{}-{tag}", self.prefix))?;
        self.hosts[host].attach_namespace(&self.bins, network, &ns.name, ip, extra)?;
        self.containers.push(ns);
        Ok(self.containers.len() - 1)
    }

    /// A station another runtime made: namespace `PREFIX-TAG` with a veth, its end `eth0`
    /// (MTU 1450, address `cidr`) and its other end `ext0` in host `host`'s namespace, up and
    /// not attached. Returns the container's index.
    pub fn add_veth_station(&mut self, host: usize, tag: &str, cidr: &str) -> Result<usize> {
        let c = Netns::new(&format!("{}-{tag}", self.prefix))?;
        let h = self.hosts[host].ns.name.clone();
        run(&[
            "ip", "link", "add", "eth0", "netns", &c.name, "type", "veth", "peer", "name", "ext0",
            "netns", &h,
        ])?;
        c.exec(&["ip", "link", "set", "eth0", "mtu", "1450", "up"])?;
        c.exec(&["ip", "addr", "add", cidr, "dev", "eth0"])?;
        self.hosts[host]
            .ns
            .exec(&["ip", "link", "set", "ext0", "up"])?;
        self.containers.push(c);
        Ok(self.containers.len() - 1)
    }

    pub fn container(&self, idx: usize) -> &Netns {
        &self.containers[idx]
    }

    /// Sends `bytes` (whole MiB) of random data over TCP from container `from` to container
    /// `to`, which listens on `to_ip:port`, and panics with the daemons' logs unless it
    /// arrived unchanged; `what` names the transfer in the message.
    #[allow(dead_code)] // not every test binary moves TCP
    pub fn transfer_intact(
        &self,
        from: usize,
        to: usize,
        to_ip: &str,
        port: u16,
        bytes: usize,
        what: &str,
    ) {
        let moved = tcp_transfer(
            self.container(from),
            self.container(to),
            to_ip,
            port,
            bytes,
            &self.dir,
        );
        match moved {
            Ok((sent, got)) => assert_eq!(sent, got, "{what} arrived changed\n{}", self.logs()),
            Err(e) => panic!("{what}: {e}\n{}", self.logs()),
        }
    }

    /// Waits (at most 15 s: two probe rounds and their checks) for a daemon to log `said`, the
    /// tunnel device given up because the host does not forward what it takes, and checks the
    /// log names the rule that would let it through.
    #[allow(dead_code)] // only the tunnel-GSO tests
    pub fn expect_tunnel_firewall_warning(&self, said: &str) {
        assert!(
            wait_until(Duration::from_secs(15), || self.logs().contains(said)),
            "no word of the firewall in the log:\n{}",
            self.logs()
        );
        let rule = "iptables -I FORWARD -i vswgso0 -j ACCEPT";
        assert!(self.logs().contains(rule), "{}", self.logs());
    }

    /// Everything the daemons logged, for a failure message.
    pub fn logs(&self) -> String {
        self.hosts
            .iter()
            .map(|h| format!("--- {} ({}) ---\n{}", h.name, h.log.display(), h.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(mut d) = h.daemon.take() {
                d.stop();
            }
        }
        for s in &mut self.services {
            if let Some(mut p) = s.take() {
                p.stop();
            }
        }
        self.containers.clear();
        self.hosts.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Captures what matches the tcpdump `filter` on the underlay (ul0) of host namespace `ns`
/// into `pcap`, whole packets, while `f` runs.
pub fn capture_underlay(ns: &Netns, pcap: &Path, filter: &str, f: impl FnOnce()) {
    let mut cap = Process {
        child: Command::new("ip")
            .args([
                "netns", "exec", &ns.name, "tcpdump", "-i", "ul0", "-n", "-U", "-s", "0", "-w",
            ])
            .arg(pcap)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump (install it: apt-get install tcpdump)"),
        what: "tcpdump".into(),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pcap.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    f();
    std::thread::sleep(Duration::from_millis(300));
    cap.stop();
}

/// A UDP socket bound inside network namespace `ns` (it keeps working from this thread).
pub fn udp_in(ns: &str, addr: &str) -> std::net::UdpSocket {
    let fd = vswitch::io::netns::open_netns(ns).unwrap();
    vswitch::io::netns::run_in_netns(&fd, || std::net::UdpSocket::bind(addr))
        .unwrap()
        .unwrap()
}

/// The packets of a pcap file (Ethernet link type, as tcpdump writes for ul0).
pub fn pcap_packets(pcap: &Path) -> Vec<Vec<u8>> {
    let raw = std::fs::read(pcap).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 24; // the file header
    while at + 16 <= raw.len() {
        let incl = u32::from_le_bytes(raw[at + 8..at + 12].try_into().unwrap()) as usize;
        let Some(data) = raw.get(at + 16..at + 16 + incl) else {
            break;
        };
        out.push(data.to_vec());
        at += 16 + incl;
    }
    out
}

/// Sends `bytes` of data from container `from` to `to_ip`:`port` over TCP and returns the
/// sha256 of what was sent and of what arrived.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_ip: &str,
    port: u16,
    bytes: usize,
    dir: &Path,
) -> Result<(String, String)> {
    let src = dir.join(format!("payload-{port}"));
    let dst = dir.join(format!("received-{port}"));
    run(&[
        "dd",
        "if=/dev/urandom",
        &format!("of={}", src.display()),
        "bs=1M",
        &format!("count={}", bytes >> 20),
        "status=none",
    ])?;
    let py_recv = format!(
        "import socket,hashlib\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('{to_ip}',{port}));s.listen(1);s.settimeout(60)\nc,_=s.accept();c.settimeout(60);f=open('{}','wb')\nwhile True:\n  d=c.recv(1<<16)\n  if not d: break\n  f.write(d)\nf.close()",
        dst.display()
    );
    let mut server = Process {
        child: Command::new("ip")
            .args(["netns", "exec", &to.name, "python3", "-c", &py_recv])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?,
        what: "tcp receiver".into(),
    };
    wait_for_listener(to, port)?;
    let py_send = format!(
        "import socket\ns=socket.create_connection(('{to_ip}',{port}),timeout=60)\nf=open('{}','rb')\nwhile True:\n  d=f.read(1<<16)\n  if not d: break\n  s.sendall(d)\ns.shutdown(socket.SHUT_WR);s.recv(1);s.close()",
        src.display()
    );
    from.exec(&["timeout", "120", "python3", "-c", &py_send])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    let sum = |p: &Path| -> Result<String> {
        let out = run(&["sha256sum", p.to_str().unwrap()])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string())
    };
    let r = (sum(&src)?, sum(&dst).unwrap_or_else(|e| e));
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
    Ok(r)
}

/// `ping` from a container; returns (transmitted, received).
/// Waits until `cond` holds, polling every 20 ms; false if it still does not after `limit`.
/// Tests wait for the event they need (a listener, a counter), not for a fixed time.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a TCP listener on `port` exists in `ns` (as `ss -ltn` shows it).
pub fn wait_for_listener(ns: &Netns, port: u16) -> Result<()> {
    let sport = format!("sport = :{port}");
    let listening = || {
        let out = ns.try_exec(&["ss", "-Hltn", &sport]);
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    };
    if wait_until(Duration::from_secs(10), listening) {
        Ok(())
    } else {
        Err(format!(
            "no TCP listener on port {port} in {} after 10 s",
            ns.name
        ))
    }
}

pub fn ping(from: &Netns, ip: &str, count: u32, extra: &[&str]) -> (u32, u32) {
    let c = count.to_string();
    let mut args = vec!["ping", "-n", "-c", c.as_str(), "-i", "0.2", "-W", "2"];
    args.extend_from_slice(extra);
    args.push(ip);
    let out = from.try_exec(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if let Some((tx, rest)) = line.split_once(" packets transmitted, ") {
            let rx = rest
                .split_whitespace()
                .next()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            return (tx.trim().parse().unwrap_or(0), rx);
        }
    }
    (0, 0)
}
