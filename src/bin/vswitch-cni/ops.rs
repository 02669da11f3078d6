//! The CNI operations, carried out by asking vswitchd over its control socket
//! (crate::control::api): ADD is `attach-namespace` with an `attachment` key
//! (`cni:NETCONF:CONTAINERID:IFNAME`), DEL is `detach-attachment` by that key (the namespace
//! may be gone), CHECK compares `show ports` and the container's interface with `prevResult`,
//! STATUS asks whether the daemon answers and carries the network, GC detaches this
//! configuration's attachments (`attachments`, the actor's list) that the runtime no longer
//! lists.

use crate::spec::{self, code, Attached, CniError, Invocation, NetConf};
use ipnet::Ipv4Net;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;
use vswitch::control::api::{AttachmentInfo, PortInfo, Request, ShowWhat};
use vswitch::control::client::{self, ClientError};

/// Why a request to vswitchd did not succeed.
enum DaemonError {
    /// Nothing listens on the socket (no daemon, or not yet).
    Unreachable(String),
    /// It took the connection but did not answer usefully (timeout, broken answer).
    Trouble(String),
    /// It answered with an error.
    Refused(String),
}

impl DaemonError {
    /// The CNI error for a failed `what`: a daemon that is down or stuck is a transient
    /// condition (code 11, try again later); a refusal is the daemon's word (code 100).
    fn cni(self, what: &str) -> CniError {
        match self {
            DaemonError::Unreachable(d) | DaemonError::Trouble(d) => CniError::new(
                code::TRY_AGAIN_LATER,
                format!("vswitchd is not available to {what}"),
                d,
            ),
            DaemonError::Refused(d) => CniError::new(
                code::DAEMON_REFUSED,
                format!("vswitchd refused to {what}"),
                d,
            ),
        }
    }
}

struct Daemon<'a> {
    socket: &'a Path,
}

impl Daemon<'_> {
    fn call(&self, req: &Request) -> Result<Value, DaemonError> {
        let resp = client::call(self.socket, req).map_err(|e| match e {
            ClientError::Connect { .. } => DaemonError::Unreachable(e.to_string()),
            other => DaemonError::Trouble(other.to_string()),
        })?;
        if resp.ok {
            Ok(resp.result.unwrap_or(Value::Null))
        } else {
            Err(DaemonError::Refused(
                resp.error.unwrap_or_else(|| "no reason given".to_string()),
            ))
        }
    }

    fn show(&self, what: ShowWhat) -> Result<Vec<Value>, DaemonError> {
        let v = self.call(&Request::Show {
            what,
            secrets: false,
        })?;
        match v {
            Value::Array(a) => Ok(a),
            other => Err(DaemonError::Trouble(format!(
                "`show {what:?}` answered {other}, not a list"
            ))),
        }
    }

    /// The network `name` as `show networks` gives it (NetworkInfo); Ok(Err(names)) when the
    /// daemon has no such network.
    fn network(&self, name: &str) -> Result<Result<Value, Vec<String>>, DaemonError> {
        let nets = self.show(ShowWhat::Networks)?;
        let names = nets
            .iter()
            .filter_map(|n| n["name"].as_str().map(str::to_string))
            .collect();
        Ok(nets
            .into_iter()
            .find(|n| n["name"].as_str() == Some(name))
            .ok_or(names))
    }

    /// This daemon's ports (`show ports`).
    fn ports(&self) -> Result<Vec<PortInfo>, DaemonError> {
        self.show(ShowWhat::Ports)?
            .into_iter()
            .map(|p| {
                serde_json::from_value(p)
                    .map_err(|e| DaemonError::Trouble(format!("`show ports` answer: {e}")))
            })
            .collect()
    }
}

fn daemon(conf: &NetConf) -> Daemon<'_> {
    Daemon {
        socket: Path::new(&conf.socket),
    }
}

fn no_network(conf: &NetConf, names: &[String]) -> CniError {
    CniError::new(
        code::INVALID_NETCONF,
        "invalid network configuration",
        format!(
            "vswitchd at {} has no network {:?} (it has: {}); name it in \"network\" (default: \
             the configuration's \"name\")",
            conf.socket,
            conf.network,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ),
    )
}

/// The network's DNS address: the `dns` that `show networks` gives, else the first host
/// address of its subnet (10.0.9.1 in 10.0.9.0/24), which is where vswitch answers.
fn dns_address(net: &Value) -> Option<String> {
    if let Some(d) = net["dns"].as_str() {
        return Some(d.to_string());
    }
    let subnet: Ipv4Net = net["subnet"].as_str()?.parse().ok()?;
    let first = u32::from(subnet.network()).checked_add(1)?;
    let first = Ipv4Addr::from(first);
    (subnet.prefix_len() < 31 && subnet.contains(&first)).then(|| first.to_string())
}

/// The endpoint's name, which vswitch's DNS answers for: the container's name when the
/// runtime gives it (podman and Kubernetes runtimes pass `K8S_POD_NAME` in CNI_ARGS), else the
/// first 12 characters of the container id (as `docker ps` and `podman ps` show ids).
pub fn endpoint_name(inv: &Invocation) -> String {
    match inv.arg("K8S_POD_NAME").filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => inv.container_id.chars().take(12).collect(),
    }
}

/// An address and MAC the runtime asks for: capability arguments `ips` and `mac`
/// (CONVENTIONS.md), else CNI_ARGS `IP` and `MAC`.
fn requested(
    conf: &NetConf,
    inv: &Invocation,
) -> Result<(Option<String>, Option<String>), CniError> {
    let rc = &conf.runtime_config;
    let ip = match rc.get("ips") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .find(|s| !s.contains(':'))
            .map(str::to_string),
        Some(Value::Null) | None => None,
        Some(other) => {
            return Err(CniError::new(
                code::INVALID_NETCONF,
                "invalid network configuration",
                format!("runtimeConfig \"ips\" must be a list of addresses, not {other}"),
            ))
        }
    }
    .or_else(|| inv.arg("IP").map(str::to_string));
    let mac = rc
        .get("mac")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| inv.arg("MAC").map(str::to_string));
    Ok((ip, mac))
}

pub fn add(inv: &Invocation, conf: &NetConf) -> Result<Value, CniError> {
    let d = daemon(conf);
    let what = "attach the container";
    let net = d
        .network(&conf.network)
        .map_err(|e| e.cni(what))?
        .map_err(|names| no_network(conf, &names))?;
    let (ip, mac) = requested(conf, inv)?;
    let req = Request::AttachNamespace {
        network: conf.network.clone(),
        netns: inv.netns.clone(),
        ip,
        mac,
        ifname: Some(inv.ifname.clone()),
        name: Some(endpoint_name(inv)),
        no_port_security: false,
        attachment: Some(conf.attachment(&inv.container_id, &inv.ifname)),
        limits: Default::default(),
    };
    let port: PortInfo =
        serde_json::from_value(d.call(&req).map_err(|e| e.cni(what))?).map_err(|e| {
            CniError::new(
                code::DAEMON_REFUSED,
                "vswitchd's answer to attach is not a port",
                e.to_string(),
            )
        })?;
    // The resolver the daemon gives the port, else the network's DNS address.
    let (nameserver, search) = match &port.dns {
        Some(d) => (Some(d.nameserver.clone()), d.search.clone()),
        None => (dns_address(&net), conf.network.clone()),
    };
    let attached = Attached {
        ifname: port.ifname,
        mac: port.mac.unwrap_or_default(),
        mtu: port.mtu,
        sandbox: inv.netns.clone(),
        address: port.ip.unwrap_or_default(),
        gateway: net["gateway"].as_str().map(str::to_string),
        nameserver,
        search: vec![search],
    };
    Ok(spec::add_result(
        &conf.cni_version,
        &attached,
        conf.prev_result.as_ref(),
    ))
}

/// DEL: removes the port of this attachment. Succeeds when there is none (already deleted, or
/// never made) and when no vswitchd listens: the ports it made are TAP devices that do not
/// outlive it, so nothing of the attachment can be left.
pub fn del(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    let key = conf.attachment(&inv.container_id, &inv.ifname);
    match daemon(conf).call(&Request::DetachAttachment {
        attachment: key.clone(),
    }) {
        Ok(_) => Ok(()),
        Err(DaemonError::Unreachable(d)) => {
            eprintln!("vswitch-cni: DEL {key}: {d}; nothing to remove");
            Ok(())
        }
        Err(e) => Err(e.cni("detach the container")),
    }
}

pub fn check(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_NETCONF,
            "invalid network configuration",
            "CHECK needs \"prevResult\", the result of the ADD",
        )
    })?;
    let (mac, addrs) = spec::expected_from_prev(prev, &inv.ifname, &inv.netns)?;
    let failed = |d: String| {
        CniError::new(
            code::CHECK_FAILED,
            "the attachment is not as ADD made it",
            d,
        )
    };
    let key = conf.attachment(&inv.container_id, &inv.ifname);
    let ports = daemon(conf)
        .ports()
        .map_err(|e| e.cni("check the container"))?;
    let port = ports
        .iter()
        .find(|p| p.attachment.as_deref() == Some(key.as_str()))
        .ok_or_else(|| failed(format!("vswitchd at {} has no port for {key}", conf.socket)))?;
    if port.network != conf.network {
        return Err(failed(format!(
            "port {} of {key} is on network {}, not {}",
            port.id, port.network, conf.network
        )));
    }
    if let Some(m) = &mac {
        if !port
            .mac
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(m))
        {
            return Err(failed(format!(
                "port {} has MAC {}, prevResult says {m}",
                port.id,
                port.mac.as_deref().unwrap_or("none")
            )));
        }
    }
    for a in &addrs {
        if port.ip.as_deref() != Some(a.as_str()) {
            return Err(failed(format!(
                "port {} has address {}, prevResult says {a}",
                port.id,
                port.ip.as_deref().unwrap_or("none")
            )));
        }
    }
    let addrs: Vec<Ipv4Net> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
    check_in_netns(&inv.netns, &inv.ifname, mac.as_deref(), &addrs).map_err(failed)
}

/// The container's side: `ifname` exists in `netns`, is up, has `mac` and every address.
fn check_in_netns(
    netns: &str,
    ifname: &str,
    mac: Option<&str>,
    addrs: &[Ipv4Net],
) -> Result<(), String> {
    use vswitch::io::{open_netns, run_in_netns, Netlink};
    let fd = open_netns(netns).map_err(|e| e.to_string())?;
    run_in_netns(&fd, || -> Result<(), String> {
        let mut nl = Netlink::open().map_err(|e| e.to_string())?;
        let link = nl
            .link_by_name(ifname)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no interface {ifname} in {netns}"))?;
        if let Some(m) = mac {
            let have = link.mac.map(|m| m.to_string()).unwrap_or_default();
            if !have.eq_ignore_ascii_case(m) {
                return Err(format!("{ifname} in {netns} has MAC {have}, not {m}"));
            }
        }
        if !link.up {
            return Err(format!("{ifname} in {netns} is down"));
        }
        for a in addrs {
            match nl.find_ipv4_addr(a.addr()).map_err(|e| e.to_string())? {
                Some((index, ..)) if index == link.index => {}
                Some((_, other, _)) => {
                    return Err(format!(
                        "{} is on {other} in {netns}, not on {ifname}",
                        a.addr()
                    ))
                }
                None => return Err(format!("{ifname} in {netns} lacks address {a}")),
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?
}

/// STATUS: ready when vswitchd answers and carries the network (spec: code 50 otherwise).
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    let unavailable = |d: String| {
        CniError::new(
            code::NOT_AVAILABLE,
            "vswitch-cni cannot add containers now",
            d,
        )
    };
    match daemon(conf).network(&conf.network) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(names)) => Err(unavailable(no_network(conf, &names).details)),
        Err(DaemonError::Unreachable(d) | DaemonError::Trouble(d) | DaemonError::Refused(d)) => {
            Err(unavailable(d))
        }
    }
}

/// GC: detaches every port this configuration made whose (container, interface) is not in
/// `cni.dev/valid-attachments`; goes on past a failure and reports them all.
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_NETCONF,
            "invalid network configuration",
            "GC needs \"cni.dev/valid-attachments\" (the attachments to keep); without it \
             nothing is removed",
        )
    })?;
    let d = daemon(conf);
    let what = "collect stale attachments";
    let prefix = conf.attachment_prefix();
    let mut errors = Vec::new();
    // The actor's list, not `show ports`: a container whose namespace went without a DEL
    // (what GC is for) has no device left in the workers, but its address is still held.
    let held: Vec<AttachmentInfo> = match d.call(&Request::Attachments).map_err(|e| e.cni(what))? {
        Value::Null => Vec::new(),
        v => serde_json::from_value(v).map_err(|e| {
            CniError::new(
                code::DAEMON_REFUSED,
                "vswitchd's list of attachments is not one",
                e.to_string(),
            )
        })?,
    };
    for p in held {
        let key = p.attachment.as_str();
        let Some((cid, ifname)) = spec::split_attachment(&prefix, key) else {
            continue;
        };
        if valid.iter().any(|(c, i)| c == cid && i == ifname) {
            continue;
        }
        match d.call(&Request::DetachAttachment {
            attachment: key.to_string(),
        }) {
            Ok(_) => eprintln!("vswitch-cni: GC removed port {} ({key})", p.port),
            Err(
                DaemonError::Unreachable(e) | DaemonError::Trouble(e) | DaemonError::Refused(e),
            ) => errors.push(format!("{key}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::DAEMON_REFUSED,
            "some stale attachments were not removed",
            errors.join("; "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dns_address_is_the_first_host_unless_the_daemon_says() {
        assert_eq!(
            dns_address(&json!({"subnet": "10.0.9.0/24"})).as_deref(),
            Some("10.0.9.1")
        );
        assert_eq!(
            dns_address(&json!({"subnet": "10.0.9.0/24", "dns": "10.0.9.53"})).as_deref(),
            Some("10.0.9.53")
        );
        assert_eq!(dns_address(&json!({"subnet": "10.0.9.0/31"})), None);
        assert_eq!(dns_address(&json!({})), None);
    }

    #[test]
    fn endpoint_names_prefer_the_container_name() {
        let mut inv = Invocation {
            command: spec::Command::Add,
            container_id: "d6489044d913b0fd36c2f34540fa".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
        };
        assert_eq!(endpoint_name(&inv), "d6489044d913");
        inv.args.push(("K8S_POD_NAME".into(), "web1".into()));
        assert_eq!(endpoint_name(&inv), "web1");
    }
}
