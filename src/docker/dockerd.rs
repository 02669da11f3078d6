//! A small client of dockerd's own API, for what libnetwork's plugin API leaves out: a network's
//! name and options (the plugin API carries only Docker's network ID) and the name of the
//! container behind an endpoint (Join carries only the endpoint ID).
//!
//! One HTTP/1.0 GET per question over dockerd's Unix socket (`[docker] docker_socket`), read to
//! the end: dockerd answers a 1.0 request with a plain body and closes. Called on the plugin's
//! threads, never from inside a plugin call dockerd waits on (see super::plugin).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// What the plugin needs to know of one of dockerd's networks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DockerNetwork {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnets: Vec<String>,
    /// `-o` options (`com.docker.network.generic`).
    pub options: BTreeMap<String, String>,
    /// Endpoint ID → container name, for the containers joined to it.
    pub endpoints: BTreeMap<String, String>,
}

/// dockerd as the plugin sees it (a trait so the handlers are tested without dockerd).
pub trait Dockerd: Send + Sync {
    /// The network with this ID; `None` if dockerd does not have it (yet).
    fn network(&self, id: &str) -> Result<Option<DockerNetwork>, String>;
    /// Every network of the vswitch driver.
    fn networks(&self) -> Result<Vec<DockerNetwork>, String>;
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawNetwork {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default, rename = "IPAM")]
    ipam: Option<RawIpam>,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    containers: Option<BTreeMap<String, RawContainer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawIpam {
    #[serde(default)]
    config: Option<Vec<RawIpamConfig>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawIpamConfig {
    #[serde(default)]
    subnet: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainer {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "EndpointID")]
    endpoint_id: String,
}

impl From<RawNetwork> for DockerNetwork {
    fn from(r: RawNetwork) -> DockerNetwork {
        DockerNetwork {
            id: r.id,
            name: r.name,
            driver: r.driver,
            subnets: r
                .ipam
                .and_then(|i| i.config)
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.subnet)
                .filter(|s| !s.is_empty())
                .collect(),
            options: r.options.unwrap_or_default(),
            endpoints: r
                .containers
                .unwrap_or_default()
                .into_values()
                .filter(|c| !c.endpoint_id.is_empty() && !c.name.is_empty())
                .map(|c| (c.endpoint_id, c.name))
                .collect(),
        }
    }
}

/// Parses `GET /networks/{id}`'s body.
pub fn parse_network(body: &[u8]) -> Result<DockerNetwork, String> {
    serde_json::from_slice::<RawNetwork>(body)
        .map(DockerNetwork::from)
        .map_err(|e| format!("dockerd's network answer: {e}"))
}

/// Parses `GET /networks`'s body.
pub fn parse_networks(body: &[u8]) -> Result<Vec<DockerNetwork>, String> {
    serde_json::from_slice::<Vec<RawNetwork>>(body)
        .map(|v| v.into_iter().map(DockerNetwork::from).collect())
        .map_err(|e| format!("dockerd's networks answer: {e}"))
}

/// dockerd at a Unix socket.
pub struct DockerdSocket {
    pub path: PathBuf,
    pub timeout: Duration,
}

impl DockerdSocket {
    /// GET `path`: the status and the body.
    fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let err = |e: std::io::Error| format!("dockerd at {}: {e}", self.path.display());
        let mut s = UnixStream::connect(&self.path).map_err(err)?;
        s.set_read_timeout(Some(self.timeout)).map_err(err)?;
        s.set_write_timeout(Some(self.timeout)).map_err(err)?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").map_err(err)?;
        let mut out = Vec::new();
        s.take(16 << 20).read_to_end(&mut out).map_err(err)?;
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("dockerd at {}: no HTTP header", self.path.display()))?;
        let head = String::from_utf8_lossy(&out[..split]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("dockerd at {}: bad status line", self.path.display()))?;
        Ok((status, out[split + 4..].to_vec()))
    }
}

impl Dockerd for DockerdSocket {
    fn network(&self, id: &str) -> Result<Option<DockerNetwork>, String> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("not a Docker network ID: {id:?}"));
        }
        match self.get(&format!("/networks/{id}"))? {
            (200, body) => parse_network(&body).map(Some),
            (404, _) => Ok(None),
            (s, body) => Err(format!(
                "dockerd answered {s} for network {id}: {}",
                String::from_utf8_lossy(&body).trim()
            )),
        }
    }

    fn networks(&self) -> Result<Vec<DockerNetwork>, String> {
        // filters={"driver":{"vswitch":true}}
        match self.get("/networks?filters=%7B%22driver%22%3A%7B%22vswitch%22%3Atrue%7D%7D")? {
            (200, body) => parse_networks(&body),
            (s, body) => Err(format!(
                "dockerd answered {s} for its networks: {}",
                String::from_utf8_lossy(&body).trim()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_inspect_answer() {
        let body = br#"{"Name":"blue","Id":"4f1c","Scope":"local","Driver":"vswitch",
            "IPAM":{"Driver":"vswitch","Options":{},"Config":[{"Subnet":"10.0.9.0/24","Gateway":"10.0.9.1"}]},
            "Options":{"vni":"42","encrypted":""},
            "Containers":{"c0ffee":{"Name":"web","EndpointID":"e1","MacAddress":"02:00:00:00:00:01","IPv4Address":"10.0.9.2/24","IPv6Address":""}},
            "Labels":{}}"#;
        let n = parse_network(body).unwrap();
        assert_eq!(n.name, "blue");
        assert_eq!(n.id, "4f1c");
        assert_eq!(n.subnets, vec!["10.0.9.0/24".to_string()]);
        assert_eq!(n.options.get("vni").map(String::as_str), Some("42"));
        assert_eq!(n.endpoints.get("e1").map(String::as_str), Some("web"));
        let none = parse_network(
            br#"{"Name":"x","Id":"1","IPAM":{"Config":null},"Containers":null,"Options":null}"#,
        )
        .unwrap();
        assert!(none.subnets.is_empty() && none.endpoints.is_empty());
        assert_eq!(parse_networks(b"[]").unwrap(), vec![]);
    }
}
