//! vswitchd: the per-host daemon. Reads node.toml, opens the underlay, starts the data-plane
//! worker and the control socket, and on SIGINT/SIGTERM stops the worker (closing every TAP it
//! made, which removes the containers' interfaces) and removes the control socket.

use anyhow::{bail, Context, Result};
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;
use vswitch::control::config::Config;
use vswitch::control::server::{self, Server};
use vswitch::dataplane::{Command, Worker};
use vswitch::io::netlink::Netlink;
use vswitch::io::underlay::Underlay;
use vswitch::switch::Switch;

#[derive(Parser)]
#[command(
    name = "vswitchd",
    version,
    about = "Userspace VXLAN switch for container overlay networks (one per host)",
    long_about = "Userspace VXLAN switch for container overlay networks. Run one per host; it \
owns the containers' interfaces on the networks in --config and carries their frames to the \
other hosts as VXLAN (UDP 4789). Put containers on a network with `vswitchctl attach-namespace`.",
    after_help = "Examples:\n  vswitchd --config /etc/vswitch/node.toml\n  vswitchd --config node.toml --check     # validate and exit\n  RUST_LOG=vswitch=debug vswitchd --config node.toml\n\nSee config/reference.toml for every key."
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

fn run(args: Args) -> Result<()> {
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
        for n in &cfg.networks {
            println!(
                "  network {} vni {} subnet {} mtu {}",
                n.name,
                n.vni,
                n.subnet,
                n.effective_mtu(mtu)
            );
        }
        return Ok(());
    }
    if cfg.node.workers > 1 {
        tracing::warn!(
            workers = cfg.node.workers,
            "several workers are not implemented yet; running one"
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

    let underlay = Underlay::bind(cfg.node.underlay_ip, cfg.node.vxlan_port)?;
    let (mut worker, handle) =
        Worker::new(Switch::new(spec), underlay).context("cannot start the worker")?;
    let listener = server::bind(&cfg.node.control_socket)?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install signal handlers")?;

    let worker_thread = std::thread::Builder::new()
        .name("vswitch-worker".into())
        .spawn(move || worker.run())
        .context("cannot start the worker thread")?;
    let server = Server::new(handle.clone());
    std::thread::Builder::new()
        .name("vswitch-control".into())
        .spawn(move || server.serve(listener))
        .context("cannot start the control thread")?;

    tracing::info!(
        node = %cfg.node.name,
        underlay = %format!("{}:{}", cfg.node.underlay_ip, cfg.node.vxlan_port),
        underlay_mtu = mtu,
        socket = %cfg.node.control_socket.display(),
        "vswitchd ready"
    );

    let signal = signals.forever().next();
    tracing::info!(
        ?signal,
        "shutting down: removing the interfaces this daemon made"
    );
    handle.send(Command::Stop);
    let _ = worker_thread.join();
    let _ = std::fs::remove_file(&cfg.node.control_socket);
    tracing::info!("stopped");
    Ok(())
}
