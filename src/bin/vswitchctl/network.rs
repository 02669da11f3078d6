//! `vswitchctl network ...`: networks made once for the whole cluster (crate::cluster).

use super::args::parse_name;
use super::show::{pretty, typed};
use clap::Subcommand;
use vswitch::control::api::{ClusterNetworkInfo, NetworkList, Request};
use vswitch::control::render::cluster::{render_network_inspect, render_network_ls};

pub const HELP: &str = "\
A cluster network exists once, in etcd, for every vswitchd with a [cluster] table: each daemon
carries it within a second of `network create`, without a restart. Containers attached to it
with `attach-namespace` are given the next free address of its subnet (or the --ip asked for,
if free) and are known to every host before they send their first packet.

Examples:
  vswitchctl network create blue --subnet 10.0.9.0/24
  vswitchctl network create red --subnet 10.1.0.0/16 --vni 5000 --mtu 1400
  vswitchctl network ls
  vswitchctl network inspect blue --json
  vswitchctl network rm blue";

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Make a network for the whole cluster
    #[command(after_help = "\
The name and the VNI are unique in the cluster; without --vni the lowest free VNI from 4096 up
is reserved atomically, so two hosts creating networks at once never get the same one.

Example:
  vswitchctl network create blue --subnet 10.0.9.0/24")]
    Create {
        /// Network name (letters, digits, '-', '_', '.'), as --network takes it
        #[arg(value_name = "NAME", value_parser = parse_name)]
        name: String,
        /// The containers' subnet, e.g. 10.0.9.0/24; addresses are handed out from it
        #[arg(long, value_name = "CIDR")]
        subnet: String,
        /// VXLAN network identifier, 1..16777215 [default: the lowest free from 4096]
        #[arg(long, value_name = "N")]
        vni: Option<u32>,
        /// The containers' MTU [default: the largest each host's underlay allows]
        #[arg(long, value_name = "N")]
        mtu: Option<u32>,
        /// Encrypt the network's traffic between hosts (not yet available for cluster networks:
        /// the daemon says why)
        #[arg(long)]
        encrypted: bool,
        /// Print the network as JSON
        #[arg(long)]
        json: bool,
    },
    /// List the cluster's networks, and whether the cluster store answers
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// One network: subnet, VNI, MTU, and every endpoint on every host
    Inspect {
        #[arg(value_name = "NAME", value_parser = parse_name)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a network (refused while any container is attached to it, on any host)
    Rm {
        #[arg(value_name = "NAME", value_parser = parse_name)]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub enum Output {
    Network { json: bool },
    List { json: bool },
    Removed { json: bool },
}

pub fn request(cmd: NetworkCmd) -> (Request, Output) {
    match cmd {
        NetworkCmd::Create {
            name,
            subnet,
            vni,
            mtu,
            encrypted,
            json,
        } => (
            Request::NetworkCreate {
                name,
                subnet,
                vni,
                mtu,
                encrypted,
            },
            Output::Network { json },
        ),
        NetworkCmd::Ls { json } => (Request::NetworkLs, Output::List { json }),
        NetworkCmd::Inspect { name, json } => {
            (Request::NetworkInspect { name }, Output::Network { json })
        }
        NetworkCmd::Rm { name, json } => (Request::NetworkRm { name }, Output::Removed { json }),
    }
}

pub fn print(result: serde_json::Value, out: Output) -> Result<String, String> {
    Ok(match out {
        Output::Network { json: true }
        | Output::List { json: true }
        | Output::Removed { json: true } => pretty(&result),
        Output::Network { json: false } => {
            render_network_inspect(&typed::<ClusterNetworkInfo>(result)?)
        }
        Output::List { json: false } => render_network_ls(&typed::<NetworkList>(result)?),
        Output::Removed { json: false } => format!(
            "removed network {} (vni {})\n",
            result["removed"].as_str().unwrap_or("?"),
            result["vni"]
        ),
    })
}
