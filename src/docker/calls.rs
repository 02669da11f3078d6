//! What the Docker front-end asks of the control actor (`Request::Docker`), and its answers.
//!
//! The plugin's HTTP handlers (super::plugin) turn libnetwork's calls, which carry Docker's
//! IDs, into these, which carry vswitch's names: the network's name, the address, the
//! endpoint's ID as the key of the actor's record of it. The actor does the work in
//! crate::control::server::docker, one call at a time like every other request.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum DockerCall {
    /// Make the network `name`, or join it if it exists with this subnet (`NetworkReply`).
    Network {
        name: String,
        subnet: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vni: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        encrypted: bool,
    },
    /// Docker removed its network `name`: a network the plugin made on a host without
    /// `[cluster]` goes; a cluster network stays (`vswitchctl network rm` removes it).
    NetworkGone { name: String },
    /// Hand out an address on `network`: `ip`, or the lowest free one (`AddressReply`).
    RequestAddress {
        network: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
    },
    /// Give back an address of the pool `subnet` handed out by `RequestAddress`.
    ReleaseAddress { subnet: String, ip: String },
    /// CreateEndpoint: an endpoint with an address handed out before, and a MAC (chosen
    /// here when Docker gives none) (`EndpointReply`).
    CreateEndpoint {
        network: String,
        endpoint: String,
        /// ADDR/PREFIX, as Docker gives it.
        address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
    },
    /// Join: make the endpoint's TAP in our namespace for dockerd to move into the container
    /// (`JoinReply`).
    Join { endpoint: String, sandbox: String },
    /// The container's name is known (or will not be: `None`): the endpoint becomes a port
    /// under that name, published to the cluster.
    Named {
        endpoint: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// DeleteEndpoint: its port, TAP and published record go; the address stays handed out
    /// until `ReleaseAddress`.
    DeleteEndpoint { endpoint: String },
}

/// A network as the plugin reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkReply {
    pub name: String,
    pub vni: u32,
    pub subnet: String,
    /// The network's DNS address (the first host address), Docker's gateway.
    pub dns: String,
    pub mtu: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AddressReply {
    /// ADDR/PREFIX.
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointReply {
    pub mac: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinReply {
    /// The TAP in our namespace that dockerd moves into the container.
    pub tap: String,
}
