//! `vswitchctl`: the command-line client of vswitchd's control socket (DESIGN.md §3).
//!
//! Validates arguments before sending anything (exit 2 on bad usage, as clap does), sends one
//! request, and prints the answer as text or, with `--json`, as the daemon's JSON. Exit 1 when the
//! daemon cannot be reached or refuses the request.

use clap::{Parser, Subcommand};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use vswitch::control::api::{Request, ShowWhat};
use vswitch::control::config::DEFAULT_CONTROL_SOCKET;
use vswitch::control::{client, render};
use vswitch::crypto::keyfile;

mod args;
mod doctor;
mod network;
mod show;

use args::{parse_host_addr, parse_host_cidr, parse_ifname, parse_mac, parse_name, LimitArgs};
use show::{print, typed, Output};

const EXAMPLES: &str = "\
Examples:
  # Give the container in network namespace c1 (made by `ip netns add c1`) an eth0 on network blue
  vswitchctl attach-namespace --network blue --netns c1 --ip 10.0.9.2/24

  # The same for a running container found by its PID, with a chosen MAC and endpoint name
  vswitchctl attach-namespace --network blue --netns /proc/4242/ns/net --ip 10.0.9.3/24 \\
      --mac 02:42:0a:00:09:03 --name web-1

  # Unplug it again (removes the interface)
  vswitchctl detach-namespace --network blue --netns c1

  # Switch an existing interface (e.g. the host end of a veth pair) into network blue
  vswitchctl attach-interface --network blue --interface veth-c2 --ip 10.0.9.4/24

  # Look at the switch
  vswitchctl doctor                 # is anything wrong? one line per finding, with what to do
  vswitchctl show networks
  vswitchctl show fdb
  vswitchctl show stats --json

The daemon's socket is --socket PATH, else $VSWITCH_SOCKET, else /run/vswitch/vswitchd.sock.
Exit status: 0 done; 1 vswitchd unreachable or it refused the request; 2 bad usage.";

const SHOW_HELP: &str = "\
What each view shows:
  networks  each network: VNI, subnet, container MTU, peers, and how many ports, FDB and
            neighbour entries it has
  ports     each local port (container interface or attached interface) with its counters
  fdb       learned MAC addresses: on which local port or behind which peer VTEP, and their age
  neigh     IP -> MAC entries used to answer ARP locally (proxy-ARP), and where they came from
  peers     the other hosts (VTEPs), their networks, traffic and when they were last heard from;
            PROBE (and ESP_PROBE): whether their vswitchd answers probes every 2 s, and the
            round trip time (`vswitchctl doctor` says what to do when not)
  stats     packet, byte and drop counters (with drop reasons) for the underlay, each network
            and each port

Examples:
  vswitchctl show networks
  vswitchctl show fdb --json | jq '.[] | select(.network == \"blue\")'";

#[derive(Parser)]
#[command(
    name = "vswitchctl",
    version,
    about = "Control vswitchd, the userspace VXLAN switch: plug containers into overlay networks \
             and inspect the switch",
    after_help = EXAMPLES
)]
struct Cli {
    /// Unix socket of vswitchd [env: VSWITCH_SOCKET] [default: /run/vswitch/vswitchd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an interface in a network namespace, plug it into a network, and bring it up
    #[command(after_help = "\
The interface gets the MAC (random locally administered if not given), the address, the network's
MTU, and is brought up; vswitchd answers ARP for it from then on.

Example:
  vswitchctl attach-namespace --network blue --netns c1 --ip 10.0.9.2/24 --mac 02:42:0a:00:09:02")]
    AttachNamespace {
        /// Network to plug into, as named in node.toml ([[network]] name)
        #[arg(long, value_name = "NAME", value_parser = parse_name)]
        network: String,
        /// Namespace name under /var/run/netns (as `ip netns add` makes) or a path such as
        /// /proc/PID/ns/net
        #[arg(long, value_name = "NETNS", value_parser = parse_name)]
        netns: String,
        /// Address and prefix length of the container, e.g. 10.0.9.2/24. Optional on a cluster
        /// network (`network create`): without it the next free address of the network's
        /// subnet is handed out
        #[arg(long, value_name = "ADDR/PREFIX", value_parser = parse_host_cidr)]
        ip: Option<String>,
        /// MAC address of the interface, e.g. 02:42:0a:00:09:02 [default: random, locally administered]
        #[arg(long, value_name = "MAC", value_parser = parse_mac)]
        mac: Option<String>,
        /// Interface name inside the namespace [default: eth0]
        #[arg(long, value_name = "IFNAME", value_parser = parse_ifname)]
        ifname: Option<String>,
        /// Endpoint name shown by `show ports`; unique per network on a cluster network
        /// [default: NETNS/IFNAME]
        #[arg(long, value_name = "ENDPOINT", value_parser = parse_name)]
        name: Option<String>,
        /// Let the container send from any MAC and IPv4 address (a router or VPN container).
        /// By default it may send only as itself: other source MACs, source addresses and ARP
        /// about others are dropped and counted (spoofed_mac, spoofed_ip, spoofed_arp)
        #[arg(long)]
        no_port_security: bool,
        /// Print what was made as JSON (the PortInfo) instead of a sentence
        #[arg(long)]
        json: bool,
        // Last: its help heading holds for the options after it.
        #[command(flatten)]
        limits: LimitArgs,
    },

    /// Networks of the whole cluster (needs [cluster] in node.toml): create, list, inspect, remove
    #[command(subcommand, after_help = network::HELP)]
    Network(network::NetworkCmd),

    /// Remove a container's interface made by attach-namespace and forget what was learned on it
    #[command(after_help = "Example:\n  vswitchctl detach-namespace --network blue --netns c1")]
    DetachNamespace {
        /// Network the interface is plugged into
        #[arg(long, value_name = "NAME", value_parser = parse_name)]
        network: String,
        /// Namespace name or path, as given to attach-namespace
        #[arg(long, value_name = "NETNS", value_parser = parse_name)]
        netns: String,
        /// Interface name inside the namespace [default: eth0]
        #[arg(long, value_name = "IFNAME", value_parser = parse_ifname)]
        ifname: Option<String>,
        /// Print the daemon's answer as JSON
        #[arg(long)]
        json: bool,
    },

    /// Switch frames of an existing host interface (AF_PACKET) into a network
    #[command(after_help = "\
The interface stays where it is and keeps its configuration; vswitchd sends and receives the
frames on it. --ip and --mac describe the station behind it, so vswitchd can answer ARP for it.

Example:
  vswitchctl attach-interface --network blue --interface veth-c2 --ip 10.0.9.4/24")]
    AttachInterface {
        /// Network to plug into, as named in node.toml
        #[arg(long, value_name = "NAME", value_parser = parse_name)]
        network: String,
        /// Name of the existing interface, e.g. veth-c2
        #[arg(long, value_name = "IFNAME", value_parser = parse_ifname)]
        interface: String,
        /// Address of the station behind the interface, ADDR or ADDR/PREFIX
        #[arg(long, value_name = "ADDR/PREFIX", value_parser = parse_host_addr)]
        ip: Option<String>,
        /// MAC of the station behind the interface
        #[arg(long, value_name = "MAC", value_parser = parse_mac)]
        mac: Option<String>,
        /// Print what was made as JSON (the PortInfo) instead of a sentence
        #[arg(long)]
        json: bool,
        // Last: its help heading holds for the options after it.
        #[command(flatten)]
        limits: LimitArgs,
    },

    /// Stop switching an interface attached by attach-interface (the interface itself stays)
    #[command(
        after_help = "Example:\n  vswitchctl detach-interface --network blue --interface veth-c2"
    )]
    DetachInterface {
        /// Network the interface is plugged into
        #[arg(long, value_name = "NAME", value_parser = parse_name)]
        network: String,
        /// Name of the interface
        #[arg(long, value_name = "IFNAME", value_parser = parse_ifname)]
        interface: String,
        /// Print the daemon's answer as JSON
        #[arg(long)]
        json: bool,
    },

    /// Show the switch's networks, ports, tables, peers or counters
    #[command(after_help = SHOW_HELP)]
    Show {
        /// What to show
        #[arg(value_enum)]
        what: ShowWhat,
        /// Print the result as JSON (stable: fields are only ever added)
        #[arg(long)]
        json: bool,
        /// With `sa`: print one Wireshark `esp_sa` UAT line per SA, keys included, for
        /// `tshark -o esp.enable_encryption_decode:TRUE -o 'uat:esp_sa:LINE'`
        #[arg(long, conflicts_with = "json")]
        wireshark: bool,
    },

    /// Stop vswitchd, as SIGTERM does, and wait until it has exited. With --keep-ports every
    /// container keeps its interface, MAC, address and routes, and the next vswitchd re-adopts
    /// them from its state_dir: stop this way for an upgrade
    #[command(after_help = "\
Examples:
  vswitchctl shutdown --keep-ports   # upgrade: install the new vswitchd, start it, containers carry on
  vswitchctl shutdown                # stop and remove the containers' interfaces (as SIGTERM)

Without the daemon (kill -9, a crash) the interfaces stay too, and the next vswitchd re-adopts
them. Frames sent while no vswitchd runs are lost; TCP retransmits them.")]
    Shutdown {
        /// Leave every container's interface in place for the next vswitchd
        #[arg(long)]
        keep_ports: bool,
    },

    /// Re-read the daemon's node.toml and apply what changed (also: kill -HUP vswitchd).
    /// Networks and peers are added or removed, MTUs and a network's peers changed, without
    /// touching traffic on the rest; a file with an error, or a change that needs a restart,
    /// is refused whole and the running configuration stays
    Reload {
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },

    /// Tell what the switch would do with a frame: learning, proxy answer, lookup, flood set,
    /// encapsulation or drop reason. Changes no table and sends nothing
    #[command(after_help = "\
Examples:
  vswitchctl trace --network blue --in-port c1 --src-ip 10.0.9.2 --dst-ip 10.0.9.3
  vswitchctl trace --network blue --in-port 1 --src-ip 10.0.9.2 --dst-ip 10.0.9.3 --proto tcp --dport 443
  vswitchctl trace --network blue --from-vtep 192.0.2.2 --src-ip 10.0.9.3 --dst-ip 10.0.9.2
  vswitchctl trace --network blue --in-port c1 --frame ffffffffffff0242...   # a whole frame, hex

MACs left out are the sender's own (its port's endpoint) and the one the switch knows for the
destination; if it knows none, the trace is of the ARP request the sender would send first.")]
    Trace {
        /// The network the frame is on
        #[arg(long, value_parser = parse_name)]
        network: String,
        /// The local port it comes from: an id or a name from `show ports`
        #[arg(
            long,
            value_name = "PORT",
            conflicts_with = "from_vtep",
            required_unless_present = "from_vtep"
        )]
        in_port: Option<String>,
        /// Or the peer it comes from, by underlay address
        #[arg(long, value_name = "IP")]
        from_vtep: Option<Ipv4Addr>,
        /// The whole Ethernet frame as hex
        #[arg(long, value_name = "HEX", conflicts_with_all = ["src_ip", "dst_ip"], required_unless_present_all = ["src_ip", "dst_ip"])]
        frame: Option<String>,
        #[arg(long, value_name = "IP", requires = "dst_ip")]
        src_ip: Option<Ipv4Addr>,
        #[arg(long, value_name = "IP", requires = "src_ip")]
        dst_ip: Option<Ipv4Addr>,
        /// icmp (an echo request), tcp (a SYN) or udp
        #[arg(long, value_parser = ["icmp", "tcp", "udp"], default_value = "icmp")]
        proto: String,
        /// Destination port for tcp and udp
        #[arg(long, default_value_t = 80)]
        dport: u16,
        #[arg(long, value_name = "MAC")]
        src_mac: Option<String>,
        #[arg(long, value_name = "MAC")]
        dst_mac: Option<String>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },

    /// Check what usually breaks an overlay and say what to do: peers reachable on the VXLAN
    /// and ESP ports (with round trip times), path MTU, networks, names, clocks, the cluster
    /// store, offloads
    #[command(after_help = doctor::HELP)]
    Doctor {
        /// Print the report as JSON (findings, what passed, and per peer what was measured)
        #[arg(long)]
        json: bool,
        /// Seconds a peer may take to answer a probe before it is reported unreachable
        #[arg(long, value_name = "SECS", default_value_t = 3,
              value_parser = clap::value_parser!(u64).range(1..=60))]
        wait: u64,
    },

    /// Make a network secret for an encrypted network's key_file (32 random bytes, as hex)
    #[command(
        after_help = "Examples:\n  vswitchctl gen-key --out /etc/vswitch/blue.key   # written mode 0600\n  \
(umask 077; vswitchctl gen-key > blue.key)\n\nCopy the same file to every host of the network."
    )]
    GenKey {
        /// Write it to this file (created with mode 0600; an existing file is not overwritten)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn request(cmd: Command) -> (Request, Output) {
    match cmd {
        Command::AttachNamespace {
            network,
            netns,
            ip,
            mac,
            ifname,
            name,
            no_port_security,
            limits,
            json,
        } => (
            Request::AttachNamespace {
                network,
                netns,
                ip,
                mac,
                ifname,
                name,
                no_port_security,
                attachment: None,
                limits: limits.into(),
            },
            Output::Attached { json },
        ),
        Command::DetachNamespace {
            network,
            netns,
            ifname,
            json,
        } => {
            let what = format!(
                "{} in netns {netns} from network {network}",
                ifname.as_deref().unwrap_or("eth0")
            );
            (
                Request::DetachNamespace {
                    network,
                    netns,
                    ifname,
                },
                Output::Detached { what, json },
            )
        }
        Command::AttachInterface {
            network,
            interface,
            ip,
            mac,
            limits,
            json,
        } => (
            Request::AttachInterface {
                network,
                interface,
                ip,
                mac,
                limits: limits.into(),
            },
            Output::Attached { json },
        ),
        Command::DetachInterface {
            network,
            interface,
            json,
        } => {
            let what = format!("interface {interface} from network {network}");
            (
                Request::DetachInterface { network, interface },
                Output::Detached { what, json },
            )
        }
        Command::Show {
            what,
            json,
            wireshark,
        } => (
            Request::Show {
                what,
                secrets: wireshark,
            },
            if wireshark {
                Output::Wireshark
            } else {
                Output::Show { what, json }
            },
        ),
        Command::Trace {
            network,
            in_port,
            from_vtep,
            frame,
            src_ip,
            dst_ip,
            proto,
            dport,
            src_mac,
            dst_mac,
            json,
        } => (
            Request::Trace(vswitch::control::api::TraceRequest {
                network,
                in_port,
                from_vtep: from_vtep.map(|v| v.to_string()),
                frame,
                src_ip: src_ip.map(|v| v.to_string()),
                dst_ip: dst_ip.map(|v| v.to_string()),
                proto: Some(proto),
                dport: Some(dport),
                src_mac,
                dst_mac,
            }),
            Output::Trace { json },
        ),
        Command::Reload { json } => (Request::Reload, Output::Reloaded { json }),
        Command::Shutdown { keep_ports } => (Request::Shutdown { keep_ports }, Output::Stopped),
        Command::Network(cmd) => {
            let (req, out) = network::request(cmd);
            (req, Output::Network(out))
        }
        Command::GenKey { .. } => unreachable!("gen-key is answered locally"),
        Command::Doctor { .. } => unreachable!("doctor has its own exit status"),
    }
}

/// `gen-key`: needs no daemon.
fn gen_key(out: Option<PathBuf>) -> ExitCode {
    let key = keyfile::generate_key_hex() + "\n";
    let Some(path) = out else {
        print!("{key}");
        return ExitCode::SUCCESS;
    };
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(key.as_bytes()));
    match written {
        Ok(()) => {
            eprintln!("wrote a new network secret to {} (mode 0600); copy it to every host of the network", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot create {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}

/// Waits until nothing answers on the daemon's socket any more (it removes it as it exits).
fn wait_until_gone(socket: &std::path::Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(socket).is_err() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `print!` into a closed pipe (`vswitchctl show stats | head -1`)
    // panics. Restore the default, as `ls` has it: the process ends quietly on the signal.
    // SAFETY: setting a signal's disposition to SIG_DFL before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Command::GenKey { out } = cli.command {
        return gen_key(out);
    }
    let socket = cli
        .socket
        .or_else(|| {
            std::env::var_os("VSWITCH_SOCKET")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET));
    if let Command::Doctor { json, wait } = cli.command {
        return doctor::run(&socket, json, wait);
    }
    let (req, out) = request(cli.command);
    let resp = match client::call(&socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if !resp.ok {
        eprintln!(
            "error: {}",
            resp.error
                .as_deref()
                .unwrap_or("vswitchd refused the request without saying why")
        );
        return ExitCode::from(1);
    }
    if matches!(out, Output::Stopped) && !wait_until_gone(&socket) {
        eprintln!(
            "error: vswitchd accepted the shutdown but still answers on {} after 30 s",
            socket.display()
        );
        return ExitCode::from(1);
    }
    let peers_text = matches!(
        out,
        Output::Show {
            what: ShowWhat::Peers,
            json: false
        }
    );
    match print(resp, out) {
        Ok(mut text) => {
            if peers_text {
                // In cluster mode, whether the store answers belongs next to the peers.
                if let Ok(r) = client::call(&socket, &Request::ClusterStatus) {
                    if let Some(s) = r.result.filter(|_| r.ok).and_then(|v| typed(v).ok()) {
                        text.push_str(&render::cluster::render_store(&s));
                    }
                }
            }
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
