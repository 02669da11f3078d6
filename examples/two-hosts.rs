//! A guided tour of vswitch: two simulated hosts on one machine, containers on each, traffic
//! between them, and what the switch learned.
//!
//! Run as root:  `cargo run --release --example two-hosts`
//!
//! Everything happens inside network namespaces this program makes (named `demo<pid>-*`); the
//! root namespace gets no addresses and sends nothing. The namespace testbed shared with the
//! integration tests (`tests/common/testbed.rs`) removes every namespace and daemon when it is
//! dropped, also after a failure or Ctrl-C; the last step checks `ip netns list` to prove it.
//!
//! Each step prints the shell commands that do the same by hand, so the tour doubles as a recipe.

#[path = "support/demo.rs"]
mod demo;
#[path = "../tests/common/testbed.rs"]
mod testbed;

use demo::{
    catch_interrupts, cmd, find_binaries, heading, indent, interrupted, namespaces_named, on_path,
    say, step,
};

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use testbed::{tcp_transfer, Binaries, Netns, Process, Result, Testbed, BLUE};

/// The four containers: (tag, host index, address).
const CONTAINERS: [(&str, usize, &str); 4] = [
    ("a1", 0, "10.0.9.2/24"),
    ("a2", 0, "10.0.9.3/24"),
    ("b1", 1, "10.0.9.4/24"),
    ("b2", 1, "10.0.9.5/24"),
];
const TRANSFER_MB: usize = 50;

/// What the walkthrough found, for the closing summary.
struct Summary {
    sha256: String,
    iperf3: Option<String>,
}

fn main() -> ExitCode {
    catch_interrupts();
    let tools = ["ip", "ethtool", "ping", "python3", "iperf3"];
    if let Err(e) = demo::preflight("two-hosts", &tools, &tools[..4]) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let bins = match find_binaries() {
        Ok(_) if interrupted() => {
            eprintln!("interrupted before anything was set up");
            return ExitCode::from(130);
        }
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let prefix = format!("demo{}", std::process::id());

    // The testbed lives and dies inside run_demo: by the time it returns, every namespace and
    // daemon is gone, whatever happened.
    let result = run_demo(&prefix, bins);

    let leftovers = namespaces_named(&prefix);
    let mut code = ExitCode::SUCCESS;
    match result {
        Ok(s) => {
            let iperf = s
                .iperf3
                .map_or("iperf3 skipped (not installed)".to_string(), |g| {
                    format!("iperf3 {g} Gbit/s")
                });
            let sha = s.sha256.get(..16).unwrap_or(&s.sha256);
            println!(
                "\nok: ping A->B, B->A, 1450-byte DF ping, \
                 {TRANSFER_MB} MB intact (sha256 {sha}…), {iperf}"
            );
        }
        Err(e) if interrupted() => {
            // The step that was running usually failed from the same Ctrl-C: its first line is
            // enough.
            match e.lines().next().unwrap_or_default() {
                "interrupted" => eprintln!("\ninterrupted"),
                during => eprintln!("\ninterrupted (the step in progress ended with: {during})"),
            }
            code = ExitCode::from(130);
        }
        Err(e) => {
            eprintln!("\nerror: {e}");
            code = ExitCode::from(1);
        }
    }
    if leftovers.is_empty() {
        println!("all namespaces named {prefix}-* were removed (`ip netns list` shows none)");
    } else {
        eprintln!(
            "error: namespaces left behind: {} (remove with `ip netns del NAME`)",
            leftovers.join(" ")
        );
        code = ExitCode::from(1);
    }
    code
}

/// Builds the testbed, runs the walkthrough on it, and tears it down (by dropping it) before
/// returning. A failure carries the daemons' logs, read while they still exist.
fn run_demo(prefix: &str, bins: Binaries) -> Result<Summary> {
    let mut tb = Testbed::new(prefix, bins)?;
    let result = walkthrough(&mut tb).map_err(|e| {
        if interrupted() {
            e
        } else {
            format!("{e}\n\ndaemon logs:\n{}", tb.logs())
        }
    });
    heading("Clean up: stop the daemons, delete every namespace (the testbed's Drop)");
    cmd(&format!(
        "kill <vswitchd pids>; ip netns del {prefix}-<each>"
    ));
    drop(tb);
    result
}

fn walkthrough(tb: &mut Testbed) -> Result<Summary> {
    let p = tb.prefix.clone();

    step("Two hosts joined by an underlay: namespaces and a veth each, through a bridge")?;
    cmd(&format!("ip netns add {p}-ul"));
    cmd(&format!(
        "ip -n {p}-ul link add br0 type bridge && ip -n {p}-ul link set br0 up"
    ));
    for i in 0..2 {
        cmd(&format!("ip netns add {p}-h{i}"));
        cmd(&format!(
            "ip link add ul0 netns {p}-h{i} type veth peer name p{i} netns {p}-ul"
        ));
        cmd(&format!("ip -n {p}-ul link set p{i} master br0 up"));
        cmd(&format!(
            "ip -n {p}-h{i} addr add 192.0.2.{}/24 dev ul0 && ip -n {p}-h{i} link set ul0 up",
            i + 1
        ));
    }
    tb.add_hosts(2)?;
    say(&format!(
        "host A is namespace {p}-h0 (underlay 192.0.2.1), host B is {p}-h1 (192.0.2.2)"
    ));

    step("A node.toml for each host: who it is, its peers, its networks")?;
    for i in 0..2 {
        tb.write_config(i, &[BLUE], "")?;
    }
    let config = &tb.hosts[0].config;
    say(&format!("host A's {}:", config.display()));
    indent(&std::fs::read_to_string(config).map_err(|e| e.to_string())?);

    step("Start vswitchd on each host")?;
    for i in 0..2 {
        let h = &tb.hosts[i];
        cmd(&format!(
            "ip netns exec {} vswitchd --config {} &",
            h.ns.name,
            h.config.display()
        ));
        tb.start_daemon(i)?;
        let pid = tb.hosts[i].daemon.as_ref().map_or(0, Process::pid);
        say(&format!(
            "vswitchd on {} is up, pid {pid}",
            tb.hosts[i].name
        ));
    }

    step("Attach two containers per host to network blue")?;
    let mut idx = Vec::new();
    for (tag, host, ip) in CONTAINERS {
        idx.push(attach(tb, host, tag, ip)?);
    }
    let [a1, a2, b1, b2] = [idx[0], idx[1], idx[2], idx[3]];

    step("Ping across hosts, both ways")?;
    ping(tb.container(a1), "10.0.9.4", &[])?;
    ping(tb.container(b1), "10.0.9.2", &[])?;

    step("A full-size ping with Don't Fragment: 1422 bytes + 28 of headers = 1450, blue's MTU")?;
    ping(tb.container(a2), "10.0.9.5", &["-M", "do", "-s", "1422"])?;

    step(&format!(
        "Send {TRANSFER_MB} MB over TCP from host A to host B and compare sha256"
    ))?;
    say(&format!(
        "a python3 receiver on 10.0.9.4:5001 in {p}-b1, a sender of random bytes in {p}-a1"
    ));
    let started = Instant::now();
    let (sent, got) = tcp_transfer(
        tb.container(a1),
        tb.container(b1),
        "10.0.9.4",
        5001,
        TRANSFER_MB << 20,
        &tb.dir,
    )?;
    say(&format!("sent     {sent}\nreceived {got}"));
    if sent != got {
        return Err(format!("the {TRANSFER_MB} MB arrived changed"));
    }
    say(&format!(
        "intact, in {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    step("Throughput with iperf3 (5 s, TCP, host A -> host B)")?;
    let iperf3 = if on_path("iperf3") {
        Some(iperf3(tb, a2, b2, "10.0.9.5")?)
    } else {
        say("iperf3 is not installed: skipped (apt-get install iperf3)");
        None
    };

    for what in ["networks", "fdb", "neigh", "peers", "stats"] {
        step(&format!("What host A's switch knows: show {what}"))?;
        cmd(&format!(
            "vswitchctl --socket {} show {what}",
            tb.hosts[0].socket.display()
        ));
        indent(&tb.hosts[0].ctl(&tb.bins, &["show", what])?);
    }

    Ok(Summary {
        sha256: sent,
        iperf3,
    })
}

/// Makes a container namespace and attaches it with vswitchctl, printing what vswitchctl says.
/// Returns its index in `tb.containers`.
fn attach(tb: &mut Testbed, host: usize, tag: &str, ip: &str) -> Result<usize> {
    let ns = Netns::new(&format!("{}-{tag}", tb.prefix))?;
    let h = &tb.hosts[host];
    let args = [
        "attach-namespace",
        "--network",
        "blue",
        "--netns",
        &ns.name,
        "--ip",
        ip,
    ];
    cmd(&format!("ip netns add {}", ns.name));
    cmd(&format!(
        "vswitchctl --socket {} {}",
        h.socket.display(),
        args.join(" ")
    ));
    indent(&h.ctl(&tb.bins, &args)?);
    tb.containers.push(ns);
    Ok(tb.containers.len() - 1)
}

/// Pings `ip` five times from a container and prints ping's summary; Err unless all replies came.
fn ping(from: &Netns, ip: &str, extra: &[&str]) -> Result<()> {
    let mut args = vec!["ping", "-n", "-c", "5", "-i", "0.2", "-W", "2"];
    args.extend_from_slice(extra);
    args.push(ip);
    cmd(&format!("ip netns exec {} {}", from.name, args.join(" ")));
    let out = from.try_exec(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("packets transmitted"))
        .collect();
    indent(&summary.join("\n"));
    if !text.contains("5 packets transmitted, 5 received") {
        return Err(format!(
            "ping {ip} from {} lost replies:\n{text}",
            from.name
        ));
    }
    Ok(())
}

/// A 5-second iperf3 run from container `client` to a one-shot server in container `server`;
/// returns the receiver's rate in Gbit/s.
fn iperf3(tb: &Testbed, client: usize, server: usize, server_ip: &str) -> Result<String> {
    let (c, s) = (tb.container(client), tb.container(server));
    let log = tb.dir.join("iperf3-server.log");
    cmd(&format!(
        "ip netns exec {} iperf3 -s -1 -B {server_ip} &",
        s.name
    ));
    let _server = Process {
        child: s.spawn(&["iperf3", "-s", "-1", "-B", server_ip], &log)?,
        what: "iperf3 server".into(),
    };
    wait_for_listener(s, 5201, &log)?;
    let args = ["iperf3", "-c", server_ip, "-t", "5", "-f", "g"];
    cmd(&format!("ip netns exec {} {}", c.name, args.join(" ")));
    let out = c.exec(&args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let totals: Vec<&str> = text
        .lines()
        .filter(|l| l.ends_with("sender") || l.ends_with("receiver"))
        .collect();
    indent(&totals.join("\n"));
    let receiver = totals.iter().find(|l| l.ends_with("receiver"));
    let words: Vec<&str> = receiver.map_or(vec![], |l| l.split_whitespace().collect());
    match words.iter().position(|w| *w == "Gbits/sec") {
        Some(i) if i > 0 => Ok(words[i - 1].to_string()),
        _ => Err(format!("no receiver rate in iperf3's output:\n{text}")),
    }
}

/// Waits until something listens on TCP `port` in `ns` (iperf3 buffers its "Server listening").
fn wait_for_listener(ns: &Netns, port: u16, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let filter = format!("sport = :{port}");
    loop {
        let out = ns.try_exec(&["ss", "-ltn", &filter]);
        if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port}")) {
            return Ok(());
        }
        if Instant::now() > deadline || interrupted() {
            let got = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "nothing listens on port {port} in {}:\n{got}",
                ns.name
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
