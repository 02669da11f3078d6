//! Attaching ports: the system side of `vswitchctl attach-namespace` (and helpers for
//! `attach-interface`).
//!
//! [`create_namespace_port`] makes the container's interface: a TAP device created right in the
//! container's namespace under its final name, given its MAC, MTU and address and brought up
//! there (three netlink requests). The returned [`TapDevice`] is the port's data path; dropping it removes the
//! interface from the container. Runs on the control thread; it blocks on netlink.

use crate::io::netlink::Netlink;
use crate::io::{check_ifname, open_netns, run_in_netns, IoError, TapDevice, TapOptions};
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// What the container's interface should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePortSpec {
    /// A name under /var/run/netns or a path such as /proc/PID/ns/net.
    pub netns: String,
    /// The interface name inside the namespace, e.g. "eth0".
    pub ifname: String,
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub mtu: u32,
    /// A name unique in our namespace (e.g. "vsw12"): checked, and kept for callers that
    /// name the port by it; the TAP itself is made in the container's namespace as `ifname`.
    pub tap_name: String,
    /// How the TAP is opened (vnet header, TSO, NAPI); the default is plain frames.
    pub tap: TapOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("invalid attach request: {0}")]
    Invalid(String),
    #[error("{0}")]
    Netns(#[source] IoError),
    #[error("interface {ifname} already exists in netns {netns}")]
    IfnameExists { ifname: String, netns: String },
    /// A step failed; `step` says which, for which interface and namespace.
    #[error("{step}: {source}")]
    Step { step: String, source: IoError },
    #[error("interface {0} not found")]
    NoSuchInterface(String),
}

fn step(what: impl Into<String>) -> impl FnOnce(IoError) -> AttachError {
    let step = what.into();
    move |source| AttachError::Step { step, source }
}

/// Creates the interface described by `req` inside its network namespace and returns the TAP
/// that carries its frames. On failure nothing is left behind.
pub fn create_namespace_port(req: &NamespacePortSpec) -> Result<TapDevice, AttachError> {
    let mut queues = create_namespace_port_queues(req, 1)?;
    Ok(queues.remove(0))
}

/// `create_namespace_port` with `queues` queues (one per worker; `req.tap.multi_queue` must be
/// set when more than one): all are opened while the TAP is still in our namespace under its
/// temporary name, since a queue attaches by name in the namespace it is opened in.
pub fn create_namespace_port_queues(
    req: &NamespacePortSpec,
    queues: usize,
) -> Result<Vec<TapDevice>, AttachError> {
    check_ifname(&req.ifname).map_err(|e| AttachError::Invalid(e.to_string()))?;
    check_ifname(&req.tap_name).map_err(|e| AttachError::Invalid(e.to_string()))?;
    if req.prefix > 32 {
        return Err(AttachError::Invalid(format!(
            "prefix length /{} is more than 32",
            req.prefix
        )));
    }
    // 68: the least MTU IPv4 allows (RFC 791); the kernel refuses less on an inet device anyway.
    if req.mtu < 68 {
        return Err(AttachError::Invalid(format!(
            "MTU {} is below the IPv4 minimum of 68",
            req.mtu
        )));
    }
    if !req.mac.is_unicast_source() {
        return Err(AttachError::Invalid(format!(
            "MAC {} is not a unicast address",
            req.mac
        )));
    }
    let ns = open_netns(&req.netns).map_err(AttachError::Netns)?;
    // Everything happens on one thread inside the container's namespace: the TAP is created
    // there under its final name (a tun device lives in the namespace /dev/net/tun was opened
    // in), so it is never moved between namespaces — the move cost two RCU grace periods
    // (synchronize_net), most of an attach — nor renamed. Its fds work from any thread.
    run_in_netns(&ns, || configure_in_netns(req, queues))
        .map_err(AttachError::Netns)
        .and_then(|r| r)
}

/// `create_namespace_port_queues`' work, on a thread inside the container's namespace.
fn configure_in_netns(
    req: &NamespacePortSpec,
    queues: usize,
) -> Result<Vec<TapDevice>, AttachError> {
    let netns = &req.netns;
    let ifname = &req.ifname;
    let in_ns = |what: &str| step(format!("{what} in netns {netns}"));
    let mut nl = Netlink::open().map_err(in_ns("opening netlink"))?;
    if nl
        .link_index(ifname)
        .map_err(in_ns(&format!("looking up {ifname}")))?
        .is_some()
    {
        return Err(AttachError::IfnameExists {
            ifname: ifname.clone(),
            netns: netns.clone(),
        });
    }
    // The TAP is made under the port's own name (`tap_name`, unique to the port) and renamed
    // to `ifname` as it comes up, so that the sysctl below is written through a path no other
    // namespace has: /proc/sys looks a name up among the entries of every namespace that has
    // one, so with thousands of containers each having an "eth0" that write took 0.8 ms of the
    // attach (benches/scale.sh, 4096 ports: 51.8 s against 18.7 s without the sysctl). A
    // container that already has an interface of the port's name gets its TAP under `ifname`
    // at once.
    let made_as = match nl
        .link_index(&req.tap_name)
        .map_err(in_ns(&format!("looking up {}", req.tap_name)))?
    {
        None => req.tap_name.as_str(),
        Some(_) => ifname.as_str(),
    };
    // From here on, returning early drops `taps`, which removes the device.
    let mut taps = open_tap_queues(made_as, req.tap, queues)?;
    let index = nl
        .link_index(made_as)
        .map_err(in_ns(&format!("looking up new TAP {made_as}")))?
        .ok_or_else(|| AttachError::NoSuchInterface(format!("{made_as} in netns {netns}")))?;
    // No IPv6 router answers on a vswitch network, so the router solicitations Linux sends
    // when the link comes up (and repeats with back-off for as long as none answers: one
    // every 4 s at first, then 8, 16 s... up to an hour) would only wake the switch; thousands
    // of new containers kept it at 1 % of a core. Off before the link is up, as Docker turns
    // IPv6 off in the containers of a network without it. A router container's periodic
    // advertisements still reach everyone.
    crate::io::set_ipv6_conf(made_as, "router_solicitations", "0").map_err(in_ns(&format!(
        "turning router solicitations off on {made_as}"
    )))?;
    let rename = (made_as != ifname.as_str()).then_some(ifname.as_str());
    nl.configure_link_up(index, rename, req.mac, req.mtu, tap_gso_max_size(req.mtu))
        .map_err(in_ns(&format!(
            "setting MTU {} on {ifname} (made as {made_as}, with MAC {}, up)",
            req.mtu, req.mac
        )))?;
    nl.add_ipv4_addr(index, req.addr, req.prefix)
        .map_err(in_ns(&format!(
            "adding {}/{} to {ifname}",
            req.addr, req.prefix
        )))?;
    // Containers expect loopback; `ip netns add` leaves it down. Index 1 in every namespace.
    nl.set_link_up(LOOPBACK_INDEX, true)
        .map_err(in_ns("bringing lo up"))?;
    // Persistent once whole: the container keeps its interface when the daemon dies or stops
    // with `--keep-ports` (crate::control::state); a detach or a plain stop still removes it.
    // A daemon killed before this point leaves nothing: the device goes with its fds.
    for t in &mut taps {
        t.set_persistent()
            .map_err(in_ns(&format!("making {ifname} persistent")))?;
    }
    Ok(taps)
}

/// The loopback device's index: the first device of every network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// A container's interface that another runtime moves into the container (Docker's remote
/// driver: Join names it, dockerd moves, renames and addresses it): a TAP made in our own
/// namespace with its MAC and MTU, left down. Dropping the returned queues removes it,
/// wherever it is by then. On failure nothing is left behind.
pub fn create_host_port_queues(
    tap_name: &str,
    mac: MacAddr,
    mtu: u32,
    options: TapOptions,
    queues: usize,
) -> Result<Vec<TapDevice>, AttachError> {
    check_ifname(tap_name).map_err(|e| AttachError::Invalid(e.to_string()))?;
    if !mac.is_unicast_source() {
        return Err(AttachError::Invalid(format!(
            "MAC {mac} is not a unicast address"
        )));
    }
    let mut nl = Netlink::open().map_err(step("opening netlink"))?;
    let taps = open_tap_queues(tap_name, options, queues)?;
    let index = nl
        .link_index(tap_name)
        .map_err(step(format!("looking up new TAP {tap_name}")))?
        .ok_or_else(|| AttachError::NoSuchInterface(tap_name.to_string()))?;
    nl.set_link_mac(index, mac)
        .map_err(step(format!("setting MAC {mac} on {tap_name}")))?;
    nl.set_link_mtu(index, mtu)
        .map_err(step(format!("setting MTU {mtu} on {tap_name}")))?;
    if let Some(size) = tap_gso_max_size(mtu) {
        nl.set_link_gso_max_size(index, size)
            .map_err(step(format!("setting GSO size {size} on {tap_name}")))?;
    }
    Ok(taps)
}

/// How many queues (fds) a container's TAP gets with `workers` workers: one, unless
/// `VSWITCH_TAP_QUEUES=per-worker` asks for one per worker.
///
/// With one queue, one worker (port id mod workers) reads the port and every worker writes to
/// it through the same fd, so a port costs one fd however many cores the host has (4096
/// ports with 16 workers would need 65,536 fds one queue per worker, past the 20,000 hard
/// limit of hosts without CAP_SYS_RESOURCE). The price: all of one container's outgoing
/// flows are read by one worker, so one container sends at most what one core forwards; a
/// host with a few containers that each need several cores asks for `per-worker`, and the
/// kernel then spreads each container's flows over the workers by hash.
pub fn queues_per_port(workers: usize) -> usize {
    static PER_WORKER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let per_worker = *PER_WORKER.get_or_init(|| {
        std::env::var("VSWITCH_TAP_QUEUES").is_ok_and(|v| v.eq_ignore_ascii_case("per-worker"))
    });
    if per_worker {
        workers.max(1)
    } else {
        1
    }
}

/// A new TAP in our namespace with `queues` queues (at least one); dropping them removes it.
fn open_tap_queues(
    name: &str,
    options: TapOptions,
    queues: usize,
) -> Result<Vec<TapDevice>, AttachError> {
    let tap = TapDevice::create_with(name, options).map_err(step("creating the port"))?;
    let mut taps = Vec::with_capacity(queues.max(1));
    taps.push(tap);
    for q in 1..queues {
        let more = taps[0]
            .open_queue()
            .map_err(step(format!("opening queue {q} of the port")))?;
        taps.push(more);
    }
    Ok(taps)
}

/// Waits until no interface is called `ifname` in network namespace `netns`, at most `limit`:
/// `Ok(true)` once it is gone, `Ok(false)` when it is still there at the deadline. A removed
/// port's TAP leaves its namespace's list early in its close (under rtnl, before the RCU waits
/// that make most of the close, crate::dataplane::reaper), so this answers a detach long before
/// the close ends, and the name is free again for the next attach. Refused when `netns` cannot
/// be opened (the namespace went, and its interfaces with it) or is no longer the namespace
/// `identity` (device, inode) names: a /proc/PID path whose process ended.
pub fn wait_interface_gone(
    netns: &str,
    identity: Option<(u64, u64)>,
    ifname: &str,
    limit: std::time::Duration,
) -> Result<bool, AttachError> {
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, Instant};
    let ns = std::fs::File::from(open_netns(netns).map_err(AttachError::Netns)?);
    if let Some(want) = identity {
        let st = ns
            .metadata()
            .map_err(|e| step(format!("examining netns {netns}"))(IoError::sys("fstat", e)))?;
        if (st.dev(), st.ino()) != want {
            return Err(AttachError::Invalid(format!(
                "{netns} is another network namespace than the one attached"
            )));
        }
    }
    let deadline = Instant::now() + limit;
    run_in_netns(&ns, || {
        let mut nl = Netlink::open().map_err(step(format!("opening netlink in netns {netns}")))?;
        // Most interfaces are gone after a few milliseconds: look often at first.
        let mut pause = Duration::from_micros(200);
        loop {
            let there = nl
                .link_index(ifname)
                .map_err(step(format!("looking up {ifname} in netns {netns}")))?;
            if there.is_none() {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    })
    .map_err(AttachError::Netns)
    .and_then(|r| r)
}

/// The MAC of `ifname` in our network namespace.
pub fn interface_mac(ifname: &str) -> Result<MacAddr, AttachError> {
    let mut nl = Netlink::open().map_err(step("opening netlink"))?;
    let link = nl
        .link_by_name(ifname)
        .map_err(step(format!("looking up {ifname}")))?
        .ok_or_else(|| AttachError::NoSuchInterface(ifname.to_string()))?;
    link.mac
        .ok_or_else(|| AttachError::Invalid(format!("interface {ifname} has no Ethernet address")))
}

/// The MTU of `ifname` in our network namespace.
pub fn interface_mtu(ifname: &str) -> Result<u32, AttachError> {
    let mut nl = Netlink::open().map_err(step("opening netlink"))?;
    nl.link_by_name(ifname)
        .map_err(step(format!("looking up {ifname}")))?
        .map(|l| l.mtu)
        .ok_or_else(|| AttachError::NoSuchInterface(ifname.to_string()))
}

/// The container's TAP takes TSO super-frames no larger than one UDP GSO send carries
/// (crate::offload::tso::tap_gso_max_size), so each leaves in one `sendmsg`, not two.
/// `VSWITCH_TAP_GSO_MAX_SIZE=N` sets another size, `0` leaves the kernel's 64 KB (for
/// comparing in `benches/iperf.sh --variant`).
fn tap_gso_max_size(mtu: u32) -> Option<u32> {
    match std::env::var("VSWITCH_TAP_GSO_MAX_SIZE").map(|v| v.parse::<u32>()) {
        Ok(Ok(0)) => None,
        Ok(Ok(n)) => Some(n),
        _ => crate::offload::tso::tap_gso_max_size(mtu),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NamespacePortSpec {
        NamespacePortSpec {
            netns: "vswitch-test-no-such-ns".into(),
            ifname: "eth0".into(),
            mac: "02:42:0a:00:09:02".parse().unwrap(),
            addr: Ipv4Addr::new(10, 0, 9, 2),
            prefix: 24,
            mtu: 1450,
            tap_name: "vswtest0".into(),
            tap: TapOptions::default(),
        }
    }

    #[test]
    fn missing_netns_fails_before_creating_anything() {
        let e = create_namespace_port(&spec()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("network namespace 'vswitch-test-no-such-ns' not found"),
            "{e}"
        );
    }

    #[test]
    fn validates_request() {
        for bad in [
            NamespacePortSpec {
                prefix: 33,
                ..spec()
            },
            NamespacePortSpec { mtu: 20, ..spec() },
            NamespacePortSpec {
                ifname: "a/b".into(),
                ..spec()
            },
            NamespacePortSpec {
                mac: MacAddr::BROADCAST,
                ..spec()
            },
        ] {
            assert!(matches!(
                create_namespace_port(&bad),
                Err(AttachError::Invalid(_))
            ));
        }
    }

    #[test]
    fn loopback_helpers() {
        assert_eq!(interface_mac("lo").unwrap(), MacAddr::ZERO);
        assert!(interface_mtu("lo").unwrap() >= 1500);
        assert!(matches!(
            interface_mtu("vsw-none0"),
            Err(AttachError::NoSuchInterface(_))
        ));
    }
}

/// The resolv.conf files `attach-namespace` wrote for named namespaces
/// (`/etc/netns/NAME/resolv.conf`, which `ip netns exec` binds over /etc/resolv.conf), by
/// port: removed when the port goes, and all of them when the daemon stops. A file that was
/// there before the attach is the runtime's and is never touched.
#[derive(Clone, Default)]
pub struct ResolvFiles(
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<u32, (std::path::PathBuf, bool)>>>,
);

impl ResolvFiles {
    /// Where `ip netns exec NETNS` finds its resolv.conf, for a namespace given by name.
    pub fn path_for(netns: &str) -> Option<std::path::PathBuf> {
        if netns.contains('/') || netns.is_empty() || netns.starts_with('.') {
            return None;
        }
        Some(
            std::path::Path::new("/etc/netns")
                .join(netns)
                .join("resolv.conf"),
        )
    }

    /// Writes a resolv.conf for port `port` in namespace `netns` naming `nameserver` and
    /// `search`, unless the namespace is not named or already has one. Returns its path.
    pub fn write(
        &self,
        port: u32,
        netns: &str,
        nameserver: Ipv4Addr,
        search: &str,
    ) -> std::io::Result<Option<std::path::PathBuf>> {
        let Some(path) = ResolvFiles::path_for(netns) else {
            return Ok(None);
        };
        if path.exists() {
            return Ok(None);
        }
        let dir = path.parent().expect("a file in a directory");
        let made_dir = !dir.exists();
        std::fs::create_dir_all(dir)?;
        let text = format!(
            "# Written by vswitchd for network {search}; removed when the container is detached.\n\
             nameserver {nameserver}\nsearch {search}\n"
        );
        std::fs::write(&path, text)?;
        self.0
            .lock()
            .expect("resolv files")
            .insert(port, (path.clone(), made_dir));
        Ok(Some(path))
    }

    /// The file written for `port` and whether its directory was made too.
    pub fn get(&self, port: u32) -> Option<(std::path::PathBuf, bool)> {
        self.0.lock().expect("resolv files").get(&port).cloned()
    }

    /// Takes over a file a previous daemon wrote for `port` (re-adopted after a restart).
    pub fn adopt(&self, port: u32, path: std::path::PathBuf, made_dir: bool) {
        self.0
            .lock()
            .expect("resolv files")
            .insert(port, (path, made_dir));
    }

    /// Removes a file a previous daemon wrote for a port that is not re-adopted.
    pub fn remove_stale(path: &std::path::Path, made_dir: bool) {
        if path.exists() {
            ResolvFiles::delete(path, made_dir);
        }
    }

    /// Removes what was written for `port`.
    pub fn remove(&self, port: u32) {
        let taken = self.0.lock().expect("resolv files").remove(&port);
        if let Some((path, made_dir)) = taken {
            ResolvFiles::delete(&path, made_dir);
        }
    }

    /// Removes every file written (the daemon is stopping, and the interfaces with it).
    pub fn remove_all(&self) {
        let all = std::mem::take(&mut *self.0.lock().expect("resolv files"));
        for (path, made_dir) in all.into_values() {
            ResolvFiles::delete(&path, made_dir);
        }
    }

    fn delete(path: &std::path::Path, made_dir: bool) {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), "cannot remove the resolv.conf written on attach: {e}");
        }
        if made_dir {
            let _ = std::fs::remove_dir(path.parent().expect("a file in a directory"));
        }
    }
}
