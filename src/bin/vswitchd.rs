//! vswitchd: the per-host daemon. Reads node.toml, opens the underlay, starts the data-plane
//! workers, re-adopts the containers' ports a previous run left (state_dir), serves the control
//! socket, and on SIGINT/SIGTERM stops the workers (removing the containers' interfaces, unless
//! `vswitchctl shutdown --keep-ports` asked to keep them) and removes the control socket.

use anyhow::{bail, Context, Result};
use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::path::{Path, PathBuf};
use tracing_subscriber::EnvFilter;
use vswitch::control::config::Config;
use vswitch::control::probe::TunnelStatus;
use vswitch::control::server::{self, Server};
use vswitch::crypto::{load_key_file, EspConfig, EspNetwork, EspTable};
use vswitch::dataplane::{self, Esp, Worker};
use vswitch::io::netlink::Netlink;
use vswitch::io::underlay::Underlay;
use vswitch::io::TapOptions;
use vswitch::switch::{Published, Switch, Topology};

#[derive(Parser)]
#[command(
    name = "vswitchd",
    version,
    about = "Userspace VXLAN switch for container overlay networks (one per host)",
    long_about = "Userspace VXLAN switch for container overlay networks. Run one per host; it \
owns the containers' interfaces on the networks in --config and carries their frames to the \
other hosts as VXLAN (UDP 4789). Put containers on a network with `vswitchctl attach-namespace`.",
    after_help = "Stopping:\n  SIGTERM / SIGINT                   stop; the containers' interfaces are removed\n  vswitchctl shutdown --keep-ports   stop for an upgrade: every container keeps its interface,\n                                     MAC, address and routes; the next vswitchd re-adopts them\n                                     from state_dir (so does it after kill -9 or a crash)\n\n\
Examples:\n  vswitchd --config /etc/vswitch/node.toml\n  vswitchd --config node.toml --check     # validate and exit\n  RUST_LOG=vswitch=debug vswitchd --config node.toml\n\n\
Environment:\n  \
RUST_LOG=vswitch=debug      more log (default: info)\n  \
VSWITCH_OFFLOADS=off        no TSO/USO, GSO, GRO or coalescing: one frame, one datagram per call\n  \
VSWITCH_BUSY_POLL_US=N      poll N us after traffic before sleeping, unless the core is wanted\n                              (default 1000; 0: always sleep)\n  \
VSWITCH_BUSY_POLL=MODE      auto: spin while a core is idle (default); spin: whatever else runs;\n                              kernel: epoll/SO_BUSY_POLL busy-polling (Linux 6.9)\n  \
VSWITCH_PIN_WORKERS=off     leave several workers to the scheduler rather than one per core\n  \
VSWITCH_WORKER_SLICE_US=N   scheduler time slice the workers ask for (default 0: the kernel's)\n  \
VSWITCH_WORKER_NICE=N       nice value of the worker threads (default -10: a frame preempts a\n                              CPU-bound container at once, as softirq does; 0: the process's)\n  \
VSWITCH_TAP_NAPI=on         write to containers' TAPs through NAPI (off by default)\n  \
VSWITCH_AF_PACKET_RING=off  attached interfaces: recvmsg per frame, no 1 ms ring block wait\n\n\
See config/reference.toml for every key; `vswitchctl show stats` for what the switch did."
)]
struct Args {
    /// Path to node.toml (see config/reference.toml)
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Validate the config (and the underlay address, if present here) and exit
    #[arg(long)]
    check: bool,
}

fn main() {
    vswitch::io::one_heap();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = run(args) {
        eprintln!("vswitchd: {e:#}");
        std::process::exit(1);
    }
}

/// The MTU of the interface holding the underlay address, if it is on this host.
fn underlay_mtu(cfg: &Config) -> Result<Option<(String, u32)>> {
    let mut nl = Netlink::open().context("cannot open netlink")?;
    Ok(nl
        .find_ipv4_addr(cfg.node.underlay_ip)
        .context("cannot list addresses")?
        .map(|(_, name, mtu)| (name, mtu)))
}

/// Each encrypted network's secret, read from its key_file (refused if group/world-readable).
fn load_secrets(cfg: &Config) -> Result<Vec<(u32, [u8; 32])>> {
    let mut out = Vec::new();
    for n in &cfg.networks {
        if let Some(e) = &n.encryption {
            let secret = load_key_file(&e.key_file).with_context(|| {
                format!("{}: network {:?}: key_file", cfg.path.display(), n.name)
            })?;
            out.push((n.vni.get(), secret));
        }
    }
    Ok(out)
}

/// Counts this start in `state_dir/boot` and returns the new count (1 on the first start).
/// Written to a temporary file, synced and renamed, so a crash never leaves a count that a
/// later start could repeat: the count goes into every SPI and key, and repeating one with the
/// sequence numbers starting again at 1 would reuse AES-GCM nonces.
fn next_boot(state_dir: &Path) -> Result<u32> {
    use std::io::Write;
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("cannot create state_dir {}", state_dir.display()))?;
    let path = state_dir.join("boot");
    let previous: u32 = match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse()
            .with_context(|| format!("{} is corrupt: {s:?}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let boot = previous
        .checked_add(1)
        .with_context(|| format!("{} is exhausted", path.display()))?;
    let tmp = state_dir.join("boot.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(format!("{boot}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(state_dir)?.sync_all()?;
    Ok(boot)
}

/// The ESP table for the encrypted networks, and their UDP port; `None` when none is encrypted.
fn encryption(cfg: &Config, secrets: Vec<(u32, [u8; 32])>) -> Result<Option<(EspTable, u16)>> {
    let first = cfg.networks.iter().find_map(|n| n.encryption.as_ref());
    let cluster_esp = cfg.cluster.as_ref().is_some_and(|c| c.secrets_safe());
    let (rekey, port) = match first {
        Some(e) => (e.rekey_interval, e.esp_port),
        // Encrypted networks may come from the cluster: be ready for them.
        None if cluster_esp => (
            vswitch::control::config::DEFAULT_REKEY_INTERVAL,
            vswitch::control::config::DEFAULT_ESP_PORT,
        ),
        None => return Ok(None),
    };
    let boot = next_boot(&cfg.node.state_dir)?;
    let networks = secrets
        .into_iter()
        .map(|(vni, secret)| {
            let n = cfg
                .networks
                .iter()
                .find(|n| n.vni.get() == vni)
                .expect("secret of a network");
            EspNetwork {
                vni,
                secret,
                peers: n
                    .peers
                    .iter()
                    .filter_map(|p| cfg.peer(p).map(|p| p.underlay_ip))
                    .collect(),
            }
        })
        .collect();
    let table = EspTable::new(EspConfig {
        local_ip: cfg.node.underlay_ip,
        boot,
        rekey_interval_secs: rekey.as_secs(),
        networks,
    })?;
    tracing::info!(
        boot,
        esp_port = port,
        rekey_interval_secs = rekey.as_secs(),
        cluster = cluster_esp,
        "encryption on (ESP, AES-256-GCM)"
    );
    Ok(Some((table, port)))
}

/// Gives every worker a queue of the host's tunnel device, so that containers' TCP
/// super-frames leave whole and the kernel segments them (vswitch::io::tunnel); or says in
/// the log why they are segmented here. `VSWITCH_TUNNEL_GSO=off` keeps segmenting. Returns
/// one more queue of the device, for the prober, or why there is none.
fn tunnel_offload(underlays: &mut [Underlay]) -> Result<vswitch::io::tunnel::TunnelQueue, String> {
    if env_says_off("VSWITCH_TUNNEL_GSO") {
        tracing::info!("tunnel GSO off (VSWITCH_TUNNEL_GSO=off): super-frames segmented here");
        return Err("VSWITCH_TUNNEL_GSO=off in vswitchd's environment".into());
    }
    match vswitch::io::tunnel::open(underlays.len() + 1) {
        Ok(mut queues) => {
            let probe = queues.pop().ok_or("no queue left for the prober")?;
            for (u, q) in underlays.iter_mut().zip(queues) {
                u.set_tunnel(q);
            }
            tracing::info!(
                device = vswitch::io::tunnel::NAME,
                "tunnel GSO ready: TCP super-frames to peers will leave whole, the kernel \
                 segmenting them, once the device is found to work (a peer answers probes \
                 sent through it, or, where none answers probes, they leave the host)"
            );
            Ok(probe)
        }
        Err(reason) => {
            tracing::info!(
                %reason,
                "no tunnel GSO: TCP super-frames to peers are segmented here"
            );
            Err(reason)
        }
    }
}

/// TAP offloads: on unless VSWITCH_OFFLOADS is "off", "0" or "false" (for comparison and as
/// a way out should a kernel misbehave). IFF_NAPI only with VSWITCH_TAP_NAPI=on: we coalesce
/// TCP ourselves, and NAPI's deferred delivery measured worse (ping RTT 0.26 vs 0.16 ms,
/// TCP 3.1 vs 3.4 Gbit/s in benches/iperf.sh).
fn tap_options() -> TapOptions {
    if env_says_off("VSWITCH_OFFLOADS") {
        tracing::info!(
            "offloads off (VSWITCH_OFFLOADS): containers' TAP devices carry plain frames"
        );
        return TapOptions::default();
    }
    // Probe once, on a throwaway device, so the log says what this kernel gives.
    let want = TapOptions {
        vnet_hdr: true,
        offload: true,
        uso: true,
        napi: std::env::var("VSWITCH_TAP_NAPI").is_ok_and(|v| v == "on"),
        multi_queue: false,
        udp_tunnel: false,
    };
    match vswitch::io::TapDevice::create_with("vswprobe0", want) {
        Ok(t) => {
            let got = t.options();
            tracing::info!(
                tso = got.offload,
                uso = got.uso,
                napi_gro = got.napi,
                "TAP offloads: checksum and TSO from containers, segmented here"
            );
            got
        }
        Err(e) => {
            tracing::warn!(
                "TAP offloads unavailable ({e}); containers' TAP devices carry plain frames"
            );
            TapOptions::default()
        }
    }
}

/// Whether environment variable `var` says "off" ("off", "0", "false" or "no", any case).
fn env_says_off(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "off" | "0" | "false" | "no"
        )
    })
}

/// How attached interfaces receive: VSWITCH_AF_PACKET_RING=off for one recvmsg per frame. The
/// TPACKET_V3 ring costs a thirtieth of the CPU per frame under load, but hands a block over
/// only when it is full or 1 ms old, so a lone frame waits up to 1 ms (ping through an attached
/// veth: 1.03 ms with the ring, 0.17 ms without, on a 2-vCPU VM).
fn packet_rx_mode() -> vswitch::io::RxMode {
    if env_says_off("VSWITCH_AF_PACKET_RING") {
        tracing::info!(
            "attached interfaces receive with one recvmsg per frame (VSWITCH_AF_PACKET_RING=off)"
        );
        vswitch::io::RxMode::Recvmsg
    } else {
        vswitch::io::RxMode::Ring
    }
}

/// How long a worker keeps polling after traffic before it sleeps: VSWITCH_BUSY_POLL_US,
/// default 1000 (0: always sleep). A sleeping worker costs a wake-up per frame that wakes it,
/// which on a VM is tens of microseconds — most of the round-trip time a user-space switch
/// adds. While it spins it yields the core to anything else runnable, it spins only in the
/// millisecond after traffic, so an idle host spends nothing, and it stops spinning for a
/// while when a yield shows that the core is wanted (dataplane::busy_poll). Measured with
/// benches/iperf.sh on a 2-vCPU VM shared with the workload (ping RTT average, vswitch /
/// kernel in the same run): 0 us 3.6x, 200 us 3.4x, 1000 us 1.5x to 2.6x.
fn busy_poll_window() -> std::time::Duration {
    let us = std::env::var("VSWITCH_BUSY_POLL_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1000);
    if us > 0 {
        tracing::info!(
            busy_poll_us = us,
            "workers poll without sleeping for this long after traffic (VSWITCH_BUSY_POLL_US=0: never)"
        );
    }
    std::time::Duration::from_micros(us)
}

/// The time slice the workers' threads ask the scheduler for: VSWITCH_WORKER_SLICE_US,
/// default 0 (the kernel's default, 0.75 ms times 1 + log2 of the CPUs, up to 8). With a
/// slice shorter than a CPU-bound container's, a worker woken by a frame may preempt it at
/// once (EEVDF, Linux 6.12) rather than wait for the end of its slice or the next tick. Not
/// the default: measured with benches/iperf.sh on a 2-vCPU VM (load average 4-8, medians of 4
/// rounds), 100 us gave the workers 4.4 wake-ups per round trip against 2.7 without, ping
/// 0.44 ms against 0.52 ms on average, but 6.7 ms against 1.7 ms on a busy host.
fn worker_slice() -> Option<std::time::Duration> {
    let us = std::env::var("VSWITCH_WORKER_SLICE_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (us > 0).then(|| std::time::Duration::from_micros(us))
}

/// The nice value of the workers' threads: VSWITCH_WORKER_NICE, default -10. On a host whose
/// containers keep the cores busy, a worker woken by a frame then takes the core from them at
/// once, as the kernel's own softirq would, instead of queueing behind them. Measured with
/// benches/iperf.sh on a 2-vCPU VM (one run, alternately, medians of 3): ping on a busy host
/// with workers = 1, p99 0.29 and 0.39 ms at -20 against 4.05 and 55 ms at 0. A worker only
/// runs when there is traffic, and under a flood it still shares the core by weight: at -20
/// (weight 87:1) a flood of 64-byte UDP took the core from the receiving iperf3, 84 kpps
/// received against 125 at 0; -10 (9:1) kept the busy-host p99 (0.34 ms against 0.36 at -20
/// and 4.05 at 0) and received 104 kpps (one run, alternately, medians of 3).
fn worker_nice() -> Result<i32> {
    let Ok(v) = std::env::var("VSWITCH_WORKER_NICE") else {
        return Ok(-10);
    };
    let nice = v
        .parse::<i32>()
        .ok()
        .filter(|n| (-20..=19).contains(n))
        .with_context(|| format!("VSWITCH_WORKER_NICE={v:?}: expected a nice value, -20 to 19"))?;
    tracing::info!(nice, "workers' nice value (VSWITCH_WORKER_NICE)");
    Ok(nice)
}

/// How the workers poll after traffic: VSWITCH_BUSY_POLL=auto (default), spin or kernel
/// (dataplane::busy_poll::Mode).
fn busy_poll_mode() -> Result<dataplane::busy_poll::Mode> {
    let Ok(v) = std::env::var("VSWITCH_BUSY_POLL") else {
        return Ok(dataplane::busy_poll::Mode::Auto);
    };
    let mode = dataplane::busy_poll::Mode::parse(&v)
        .with_context(|| format!("VSWITCH_BUSY_POLL={v:?}: expected auto, spin or kernel"))?;
    tracing::info!(?mode, "busy-poll mode (VSWITCH_BUSY_POLL)");
    Ok(mode)
}

fn run(args: Args) -> Result<()> {
    raise_nofile_limit();
    let cfg = Config::load(&args.config)?;
    let found = underlay_mtu(&cfg)?;
    let mtu = match (&found, cfg.node.underlay_mtu) {
        (_, Some(m)) => m,
        (Some((_, m)), None) => *m,
        (None, None) if args.check => 1500,
        (None, None) => bail!(
            "{}: node.underlay_ip {} is not assigned to any interface on this host (ip -4 addr shows what is)",
            args.config.display(),
            cfg.node.underlay_ip
        ),
    };
    cfg.validate_mtus(mtu)?;
    // Key files are checked in --check too: a world-readable key is a reason not to start.
    let secrets = load_secrets(&cfg)?;
    if args.check {
        println!(
            "{}: ok — node {}, underlay {} (mtu {}{}), {} peer(s), {} network(s)",
            args.config.display(),
            cfg.node.name,
            cfg.node.underlay_ip,
            mtu,
            if found.is_some() {
                ""
            } else {
                ", address not on this host"
            },
            cfg.peers.len(),
            cfg.networks.len()
        );
        if let Some(c) = &cfg.cluster {
            println!(
                "  cluster: etcd {} ({}), prefix {}, lease_ttl {}s, address_grace {}s; peers and networks also come from etcd",
                c.etcd_endpoints.join(","),
                if c.tls.is_some() { "tls" } else { "plain http" },
                c.prefix,
                c.lease_ttl.as_secs(),
                c.address_grace.as_secs()
            );
        }
        if let Some(d) = &cfg.docker {
            println!(
                "  docker: plugin socket {}, dockerd at {}",
                d.socket.display(),
                d.docker_socket.display()
            );
        }
        if let Some(m) = &cfg.metrics {
            println!("  metrics: http://{}/metrics", m.listen);
        }
        for n in &cfg.networks {
            println!(
                "  network {} vni {} subnet {} mtu {}{}",
                n.name,
                n.vni,
                n.subnet,
                n.effective_mtu(mtu),
                if n.encryption.is_some() {
                    " encrypted"
                } else {
                    ""
                }
            );
        }
        return Ok(());
    }
    let cpus = vswitch::io::cpu::allowed_cpus();
    let workers = match cfg.node.workers {
        0 => vswitch::io::cpu::default_workers(cpus.len()),
        n => n as usize,
    };
    if workers > cpus.len().max(1) {
        tracing::warn!(
            workers,
            cores = cpus.len(),
            "more workers than cores this process may use: some share a core"
        );
    }

    let spec = cfg.switch_spec(mtu);
    for n in &spec.networks {
        let peers: Vec<String> = n
            .peers
            .iter()
            .map(|(name, a)| format!("{name}@{a}"))
            .collect();
        tracing::info!(network = %n.name, vni = %n.vni, subnet = %n.subnet, mtu = n.mtu, peers = ?peers, "network");
    }

    let mut underlays = Underlay::bind_group(cfg.node.underlay_ip, cfg.node.vxlan_port, workers)?;
    let tap = tap_options();
    let mut underlay_offloads = false;
    if tap.offload {
        let on = Underlay::enable_segmentation_group(&mut underlays, cfg.node.underlay_ip);
        underlay_offloads = on;
        if on {
            tracing::info!("underlay offloads: UDP GSO for segmented frames, UDP GRO on receive");
        } else {
            tracing::warn!(
                "underlay offloads unavailable (UDP_SEGMENT/UDP_GRO): one datagram per call"
            );
        }
    }
    // The prober's queue of the tunnel device, to check the path the workers' queues take.
    let tunnel = if underlay_offloads {
        tunnel_offload(&mut underlays)
    } else {
        Err("no UDP GSO on the underlay (VSWITCH_OFFLOADS=off, or the kernel lacks it)".into())
    };
    let tunnel_status = std::sync::Arc::new(std::sync::Mutex::new(match &tunnel {
        Ok(_) => TunnelStatus::Unverified,
        Err(why) => TunnelStatus::Unavailable(why.clone()),
    }));
    // Every worker seals, with a copy of the table that shares the sequence counters, and
    // every worker opens: the kernel steers each ESP lane (the SPI's top bits) to one worker's
    // socket, and that worker's copy alone opens it, so an SA's one replay window sees all its
    // packets (Underlay::bind_esp_group). Worker 0 alone if the kernel refuses the steering.
    let mut esp_tables: Vec<Option<(EspTable, u16)>> = match encryption(&cfg, secrets)? {
        Some((table, port)) => {
            let receivers = Underlay::bind_esp_group(&mut underlays, cfg.node.underlay_ip, port)?;
            tracing::info!(
                workers = receivers,
                "ESP received and opened by {receivers} worker(s)"
            );
            let mut v: Vec<_> = (1..workers)
                .map(|_| Some((table.replica(), port)))
                .collect();
            v.insert(0, Some((table, port)));
            for (k, t) in v.iter_mut().enumerate() {
                if let Some((t, _)) = t {
                    t.set_receiver(k, receivers);
                }
            }
            v
        }
        None => (0..workers).map(|_| None).collect(),
    };
    let esp_ready =
        esp_tables[0].is_some() && cfg.cluster.as_ref().is_some_and(|c| c.secrets_safe());
    let esp_port = esp_tables[0].as_ref().map(|(_, port)| *port);
    let busy_poll = busy_poll_window();
    let busy_poll_mode = busy_poll_mode()?;
    let slice = worker_slice();
    let nice = worker_nice()?;
    // The topology: built here, owned by the control actor from now on, and followed by
    // every worker (crate::switch::topology).
    let published = Published::new(Topology::new(spec.clone()));
    let (dns_upstream, dns_queries) = vswitch::control::dns::channel();
    let mut built = Vec::with_capacity(workers);
    for (k, underlay) in underlays.into_iter().enumerate() {
        let esp = esp_tables[k].take().map(|(t, port)| Esp::new(t, port));
        let switch = Switch::with_topology(published.load());
        let (mut worker, _) = Worker::new(switch, underlay, esp)
            .with_context(|| format!("cannot start worker {k}"))?;
        worker.follow(published.clone());
        worker.set_busy_poll(busy_poll, busy_poll_mode);
        worker.set_slice(slice);
        worker.set_nice(nice);
        worker.set_dns_upstream(dns_upstream.clone());
        worker.set_node_name(&cfg.node.name);
        built.push(worker);
    }
    // Bound before the control socket is made, so a taken address stops the start with its
    // reason and leaves nothing behind.
    let metrics = match &cfg.metrics {
        Some(m) => Some(vswitch::control::metrics::bind(m.listen)?),
        None => None,
    };
    let listener = server::bind(&cfg.node.control_socket)?;
    // With [cluster]: register (refused if this name runs elsewhere) before anything is made.
    let cluster = match &cfg.cluster {
        Some(c) => Some(vswitch::cluster::agent::Cluster::join(c, &cfg.node)?),
        None => None,
    };
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install signal handlers")?;

    // One worker is left to the scheduler; several are pinned, one per core, unless
    // VSWITCH_PIN_WORKERS=off.
    let pin = workers > 1 && !env_says_off("VSWITCH_PIN_WORKERS");
    let (handle, threads) =
        dataplane::group::start(built, pin).context("cannot start the workers")?;
    let upstreams = dns_upstreams(&cfg);
    let forwarder = vswitch::control::dns::start(
        dns_queries,
        &dns_upstream,
        upstreams,
        published.clone(),
        handle.clone(),
    )
    .context("cannot start the DNS forwarder")?;
    let resolv_files = vswitch::control::attach::ResolvFiles::default();
    // Ports are recorded in state_dir; `vswitchctl shutdown --keep-ports` sets `keep_ports`.
    let port_state = vswitch::control::state::PortState::new(&cfg.node.state_dir);
    let keep_ports = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tap_offloads = tap.offload;
    let mut server = Server::new(handle.clone(), tap, published.clone())
        .with_dns(forwarder)
        .with_resolv_files(resolv_files.clone())
        .with_packet_rx(packet_rx_mode())
        .with_config(cfg.clone(), mtu)
        .with_state(port_state.clone(), keep_ports.clone());
    // Every peer probed every 2 s on its VXLAN (and ESP) port, for `show peers` and `doctor`.
    let probe_cfg = vswitch::control::probe::ProbeConfig {
        node: cfg.node.name.clone(),
        local: cfg.node.underlay_ip,
        vxlan_port: cfg.node.vxlan_port,
        esp_port,
        tap_offloads,
        underlay_offloads,
        tunnel: tunnel_status.clone(),
    };
    let tunnel_check = tunnel.ok().map(|queue| {
        let workers = handle.clone();
        vswitch::control::probe::TunnelCheck {
            queue,
            set: Box::new(move |on| workers.tunnel(on)),
        }
    });
    let tunnel_on = tunnel_check.is_some();
    match vswitch::control::probe::Prober::start(probe_cfg, published.clone(), tunnel_check) {
        Ok(p) => server = server.with_prober(p),
        Err(e) => {
            tracing::warn!("peers are not probed (show peers, doctor): {e}");
            if tunnel_on {
                // Nothing would check that the host forwards the device's packets.
                tracing::warn!("tunnel GSO off: its path cannot be checked without the prober");
                handle.tunnel(false);
                *tunnel_status.lock().unwrap_or_else(|e| e.into_inner()) =
                    TunnelStatus::Unavailable("the prober did not start".into());
            }
        }
    }
    if let Some(agent) = &cluster {
        let local = vswitch::cluster::reconcile::Local {
            name: cfg.node.name.clone(),
            addr: vswitch::switch::VtepAddr(cfg.node.underlay_ip),
            underlay_mtu: mtu,
            esp: esp_ready,
        };
        server = server.with_cluster(agent.clone(), local);
    }
    // Before anything is served: the containers a previous run left forward again at once.
    let adoption = server.adopt_saved_ports();
    let control = server.start().context("cannot start the control actor")?;
    if let Some(agent) = &cluster {
        let keep = agent.clone();
        std::thread::Builder::new()
            .name("vswitch-lease".into())
            .spawn(move || keep.run_keepalive())
            .context("cannot start the cluster keepalive thread")?;
        let (watch, to_actor) = (agent.clone(), control.clone());
        std::thread::Builder::new()
            .name("vswitch-watch".into())
            .spawn(move || watch.run_watch(move |v| to_actor.cluster_view(v)))
            .context("cannot start the cluster watch thread")?;
    }
    // With [docker]: the Docker plugin, one more front-end of the actor. Kept until the end:
    // dropping it removes its socket.
    let _docker = match &cfg.docker {
        Some(d) => {
            let listener = vswitch::docker::Listener::bind(&d.socket)?;
            let dockerd = vswitch::docker::dockerd::DockerdSocket {
                path: d.docker_socket.clone(),
                timeout: std::time::Duration::from_secs(5),
            };
            let plugin = vswitch::docker::plugin::Plugin::new(
                std::sync::Arc::new(control.clone()),
                std::sync::Arc::new(dockerd),
                d.name_timeout,
            );
            let plugin = std::sync::Arc::new(plugin);
            listener
                .serve(plugin.clone())
                .context("cannot start the Docker plugin threads")?;
            // Docker's networks, learned from dockerd (a restart forgot their IDs).
            std::thread::Builder::new()
                .name("vswitch-docker-learn".into())
                .spawn(move || plugin.learn_networks(std::time::Duration::from_secs(60)))
                .context("cannot start the Docker plugin threads")?;
            Some(listener)
        }
        None => None,
    };
    if let Some(m) = metrics {
        m.serve(control.clone(), cfg.cluster.is_some())
            .context("cannot start the metrics thread")?;
    }
    let socket_front = control.clone();
    std::thread::Builder::new()
        .name("vswitch-socket".into())
        .spawn(move || server::serve(listener, socket_front))
        .context("cannot start the control socket thread")?;

    tracing::info!(
        node = %cfg.node.name,
        underlay = %format!("{}:{}", cfg.node.underlay_ip, cfg.node.vxlan_port),
        underlay_mtu = mtu,
        workers,
        socket = %cfg.node.control_socket.display(),
        adopted = adoption.adopted,
        "vswitchd ready"
    );

    // SIGHUP reloads node.toml (as `vswitchctl reload`); SIGINT and SIGTERM stop.
    let mut signal = None;
    for s in signals.forever() {
        if s == SIGHUP {
            let r = control.call(vswitch::control::api::Request::Reload);
            match (r.ok, r.error) {
                (true, _) => tracing::info!("SIGHUP: configuration reloaded"),
                (false, e) => tracing::warn!("SIGHUP: reload refused: {}", e.unwrap_or_default()),
            }
            continue;
        }
        signal = Some(s);
        break;
    }
    // Whoever asked for the stop (`vswitchctl shutdown`), or anything just before it, gets
    // the answer before the control plane goes.
    if !vswitch::control::server::answered(std::time::Duration::from_secs(2)) {
        tracing::warn!("stopping with control requests still unanswered after 2 s");
    }
    let keep = keep_ports.load(std::sync::atomic::Ordering::SeqCst);
    if keep {
        // Persistent TAPs stay when their fds close; their records stay in state_dir.
        vswitch::io::tap::keep_persistent_devices();
        tracing::info!(
            ?signal,
            state_dir = %cfg.node.state_dir.display(),
            "shutting down, keeping the containers' interfaces: the next vswitchd re-adopts them"
        );
    } else {
        tracing::info!(
            ?signal,
            "shutting down: removing the interfaces this daemon made"
        );
    }
    if let Some(agent) = &cluster {
        // Others forget this node's endpoints now rather than in lease_ttl; its addresses stay
        // claimed for address_grace, so a restart keeps them.
        agent.leave();
    }
    handle.stop();
    for t in threads {
        let _ = t.join();
    }
    // The workers handed every port's device to the reaper, which closes them in parallel:
    // the interfaces are gone (or, kept, let go) once it is done. Waited for, so that a TAP
    // made persistent is never left behind by a plain stop.
    let closing = vswitch::dataplane::reaper::pending();
    if !vswitch::dataplane::reaper::flush(std::time::Duration::from_secs(300)) {
        tracing::warn!(
            closing,
            left = vswitch::dataplane::reaper::pending(),
            "ports still closing after 300 s"
        );
    }
    if !keep {
        resolv_files.remove_all();
        if let Err(e) = port_state.clear() {
            tracing::warn!(dir = %port_state.dir().display(), "cannot clear the saved ports: {e}");
        }
    }
    let _ = std::fs::remove_file(&cfg.node.control_socket);
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, so many control connections (and ports) fit
/// under the usual soft default of 1024 descriptors.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if lim.rlim_cur >= lim.rlim_max {
        return;
    }
    let old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        tracing::warn!(
            "setrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    tracing::info!(
        from = old,
        to = lim.rlim_max,
        "raised the open-file limit (RLIMIT_NOFILE)"
    );
}

/// Where names the switch does not own are asked: `[dns] upstreams`, else the host's
/// /etc/resolv.conf.
fn dns_upstreams(cfg: &Config) -> Vec<std::net::SocketAddr> {
    if let Some(u) = &cfg.dns.upstreams {
        tracing::info!(upstreams = ?u, "dns: forwarding to [dns] upstreams");
        return u.clone();
    }
    let found = std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| vswitch::control::dns::resolv_conf_nameservers(&t))
        .unwrap_or_default();
    if found.is_empty() {
        tracing::warn!(
            "dns: no nameserver in /etc/resolv.conf and no [dns] upstreams: names that are not \
             endpoints are answered SERVFAIL"
        );
    } else {
        tracing::info!(upstreams = ?found, "dns: forwarding to /etc/resolv.conf's nameservers");
    }
    found
}
