//! The cluster plane, end to end: etcd, three hosts whose node.toml names no peer and no
//! network, one `network create`, containers attached without addresses, pings across every
//! pair of hosts, and a host killed and forgotten.
//!
//! Run as root:  `cargo run --release --example cluster`
//!
//! Everything happens inside network namespaces this program makes (named `clu<pid>-*`): the
//! three etcd members listen on the underlay bridge's namespace, the hosts' daemons in theirs.
//! The testbed (tests/common) stops every etcd and vswitchd it started, by pid, and deletes
//! every namespace when it is dropped, also after a failure or Ctrl-C.

#[path = "../tests/common/cluster.rs"]
mod cluster;
#[path = "support/demo.rs"]
mod demo;
#[path = "../tests/common/pki.rs"]
mod pki;
#[path = "../tests/common/testbed.rs"]
mod testbed;

use demo::{
    catch_interrupts, cmd, find_binaries, heading, indent, interrupted, namespaces_named, say, step,
};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use testbed::{wait_until, Binaries, Result, Testbed};

const HOSTS: usize = 3;
const PER_HOST: usize = 2;

fn main() -> ExitCode {
    catch_interrupts();
    let wanted = ["ip", "ethtool", "ping", "etcd", "etcdctl"];
    if let Err(e) = demo::preflight("cluster", &wanted, &wanted) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let bins = match find_binaries() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let prefix = format!("clu{}", std::process::id());
    let result = run(&prefix, bins);
    let leftovers = namespaces_named(&prefix);
    let mut code = ExitCode::SUCCESS;
    match result {
        Ok(summary) => println!("\nok: {summary}"),
        Err(e) if interrupted() => {
            eprintln!("\ninterrupted ({})", e.lines().next().unwrap_or_default());
            code = ExitCode::from(130);
        }
        Err(e) => {
            eprintln!("\nerror: {e}");
            code = ExitCode::from(1);
        }
    }
    if leftovers.is_empty() {
        println!("all namespaces named {prefix}-* were removed, every etcd and vswitchd stopped");
    } else {
        eprintln!("error: namespaces left behind: {}", leftovers.join(" "));
        code = ExitCode::from(1);
    }
    code
}

fn run(prefix: &str, bins: Binaries) -> Result<String> {
    let mut tb = Testbed::new(prefix, bins)?;
    let result = walkthrough(&mut tb).map_err(|e| {
        if interrupted() {
            e
        } else {
            format!("{e}\n\nlogs:\n{}\n{}", tb.logs(), tb.etcd_logs())
        }
    });
    heading("Clean up: stop the daemons and etcd by pid, delete every namespace");
    drop(tb);
    result
}

fn ctl(tb: &Testbed, host: usize, args: &[&str]) -> Result<String> {
    cmd(&format!(
        "[{}] vswitchctl {}",
        tb.hosts[host].name,
        args.join(" ")
    ));
    let out = tb.hosts[host].ctl(&tb.bins, args)?;
    indent(&out);
    Ok(out)
}

fn walkthrough(tb: &mut Testbed) -> Result<String> {
    step("Three hosts on one underlay, and a three-member etcd cluster beside them")?;
    tb.add_hosts(HOSTS)?;
    let urls = tb.start_etcd(3)?;
    say(&format!(
        "hosts node-a, node-b, node-c at 192.0.2.1-3; etcd members at {}",
        urls.join(", ")
    ));

    step("Each node.toml names only the host itself and the store: no [[peer]], no [[network]]")?;
    for i in 0..HOSTS {
        let name = tb.hosts[i].name.clone();
        tb.write_cluster_config(i, &name, &urls, "lease_ttl = \"3s\"\n")?;
    }
    cmd("cat node-a.toml");
    indent(&std::fs::read_to_string(&tb.hosts[0].config).map_err(|e| e.to_string())?);

    step("Start vswitchd on every host: each registers in etcd and finds the others")?;
    for i in 0..HOSTS {
        cmd(&format!(
            "[{}] vswitchd --config node.toml &",
            tb.hosts[i].name
        ));
        tb.start_daemon(i)?;
    }
    let all_up = wait_until(Duration::from_secs(2), || {
        tb.hosts[0].show_json(&tb.bins, "peers").ok().and_then(|p| {
            p.as_array()
                .map(|a| a.iter().filter(|x| x["state"] == "up").count())
        }) == Some(HOSTS - 1)
    });
    if !all_up {
        return Err("node-a does not see both other hosts".into());
    }
    ctl(tb, 0, &["show", "peers"])?;

    step("Make a network once, for the whole cluster")?;
    ctl(
        tb,
        1,
        &["network", "create", "blue", "--subnet", "10.0.9.0/24"],
    )?;
    let t0 = Instant::now();
    for h in 0..HOSTS {
        let carried = wait_until(Duration::from_secs(1), || {
            tb.hosts[h].show_json(&tb.bins, "networks").is_ok_and(|v| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|n| n["name"] == "blue"))
            })
        });
        if !carried {
            return Err(format!(
                "{} did not carry blue within a second",
                tb.hosts[h].name
            ));
        }
    }
    say(&format!(
        "every host carries it {} ms after the create",
        t0.elapsed().as_millis()
    ));
    ctl(tb, 2, &["network", "ls"])?;

    step("Attach two containers per host, without choosing addresses")?;
    let mut containers = Vec::new();
    for h in 0..HOSTS {
        for k in 0..PER_HOST {
            let tag = format!("{}{}", (b'a' + h as u8) as char, k + 1);
            cmd(&format!(
                "[{}] ip netns add {tag}; vswitchctl attach-namespace --network blue --netns {tag}",
                tb.hosts[h].name
            ));
            let (c, port) = tb.attach(h, &tag, "blue", &[])?;
            let ip = cluster::addr_of(&port);
            say(&format!(
                "{tag} on {} got {ip} ({})",
                tb.hosts[h].name,
                port["mac"].as_str().unwrap_or("?")
            ));
            containers.push((tag, h, c, ip));
        }
    }
    ctl(tb, 0, &["network", "inspect", "blue"])?;

    step("Ping across every pair of hosts (each container's first packets: ARP answered locally)")?;
    let mut pings = 0;
    for (ta, ha, ca, _) in &containers {
        for (tb_, hb, _, ipb) in &containers {
            if ha == hb {
                continue;
            }
            let (sent, got) = testbed::ping(tb.container(*ca), ipb, 1, &[]);
            if (sent, got) != (1, 1) {
                return Err(format!("ping {ta} -> {tb_} ({ipb}) failed"));
            }
            pings += 1;
        }
    }
    say(&format!("{pings} pings across hosts, every one answered"));
    ctl(tb, 0, &["show", "stats"]).map(|_| ())?;

    step("Kill node-c with SIGKILL: the others forget it within its lease (3 s)")?;
    let pid = tb.hosts[2]
        .daemon
        .as_ref()
        .map(|d| d.pid())
        .ok_or("no daemon")?;
    cmd(&format!("kill -9 {pid}"));
    // SAFETY: kill(2) on the pid of the vswitchd this demo started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    if let Some(mut d) = tb.hosts[2].daemon.take() {
        let _ = d.child.wait();
    }
    let t0 = Instant::now();
    let forgotten = wait_until(Duration::from_secs(8), || {
        (0..2).all(|h| {
            tb.hosts[h].show_json(&tb.bins, "peers").is_ok_and(|p| {
                p.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x["name"] == "node-c" && x["state"] == "down")
                })
            })
        })
    });
    if !forgotten {
        return Err("node-c is still up on the others".into());
    }
    say(&format!(
        "node-a and node-b show node-c down after {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    ctl(tb, 0, &["show", "peers"])?;
    ctl(tb, 0, &["network", "inspect", "blue"])?;
    Ok(format!(
        "3 hosts with no peers in their files, 1 network created once, {} containers given \
         addresses, {pings} cross-host pings answered, a killed host forgotten",
        containers.len()
    ))
}
