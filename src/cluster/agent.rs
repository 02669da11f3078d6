//! The cluster agent: this node's registration in etcd, the leases that keep it alive, the
//! watch that keeps the view current, and the writes the control actor asks for (address
//! claims, endpoints, networks).
//!
//! Overview. `Cluster::join` registers the node at start, refusing a name another live node
//! holds at another address (a daemon restarted at the same address takes its old registration
//! over, and keeps its address claims). Two threads then run:
//! - keepalive (`run_keepalive`): renews both leases every `lease_ttl / 3`; a lease etcd lost
//!   (expired while this node was cut off) is granted again and everything under it
//!   republished.
//! - watch (`run_watch`): a full read of the prefix, then a watch from the next revision; every
//!   batch updates the view and hands a snapshot to the control actor. When etcd is
//!   unreachable the last view stays (nothing installed is forgotten) and the store is marked
//!   unreachable since then; when it answers again the agent reads everything again. A
//!   compacted watch revision also leads to a full read, never to a stale view.
//!
//! Two leases: the node lease (`lease_ttl`) holds the node record and its endpoints, so other
//! hosts forget a dead host within `lease_ttl`; the address lease (`address_grace`) holds its
//! address and name claims, so addresses survive a restart and are handed to nobody else while
//! the host could still be using them.
//!
//! Thread-safety: `Cluster` is shared as `Arc` by the agent threads and the control actor; its
//! small mutable state sits behind a mutex (control threads only, never the data plane).

use super::etcd::{Compare, Etcd, EtcdError, Kv, Op, TlsFiles, Txn};
use super::records::{Claim, EndpointRecord, Keys, NetworkRecord, NodeRecord};
use super::view::ClusterView;
use crate::control::config::{ClusterConfig, NodeConfig};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Every request to etcd gives up after this (then the next member is tried).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// VNIs chosen by `network create` without `--vni` start here, clear of the small numbers
/// people write into node.toml by hand.
pub const FIRST_AUTO_VNI: u32 = 4096;
/// How long `show peers` may spend asking etcd when each node last renewed its lease.
const KEEPALIVE_QUERY_BUDGET: Duration = Duration::from_millis(300);
/// How often a failed read of the store is retried.
const RETRY: Duration = Duration::from_millis(500);
/// A watch that has carried nothing for this long is reopened (a member cut off from its
/// cluster keeps the stream open but silent).
const WATCH_IDLE: Duration = Duration::from_secs(5);

/// Whether the store answers, as `show peers` and `network ls` report it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreStatus {
    pub endpoints: Vec<String>,
    pub reachable: bool,
    /// Seconds since the Unix epoch when it stopped answering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub revision: i64,
}

struct State {
    node_lease: i64,
    addr_lease: i64,
    /// Endpoints attached here, republished if the node lease is lost.
    own: BTreeMap<(String, Ipv4Addr), EndpointRecord>,
    /// Claims made here, put again under a new address lease if that one is lost.
    claims: BTreeMap<(String, Ipv4Addr), Claim>,
    unreachable_since: Option<SystemTime>,
    last_error: Option<String>,
}

pub struct Cluster {
    etcd: Etcd,
    pub keys: Keys,
    pub cfg: ClusterConfig,
    /// This node's record (its `lease` is the current node lease).
    me: Mutex<NodeRecord>,
    state: Mutex<State>,
    view: Mutex<Arc<ClusterView>>,
}

/// Why `Cluster::join` refused to start.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot reach the cluster store: {0}\n(vswitchd with [cluster] needs etcd at start, to check that its name is free; start etcd, or remove [cluster] from node.toml)")]
    Store(String),
    #[error("node name {name:?} is already registered by a running vswitchd at {at} (started {started}s ago, boot {boot}); give this host another [node] name, or stop that daemon (its registration expires {ttl}s after it stops)")]
    Duplicate {
        name: String,
        at: String,
        started: u64,
        boot: String,
        ttl: u64,
    },
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn boot_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

fn put(key: String, value: Vec<u8>, lease: i64) -> Op {
    Op::Put {
        key: key.into_bytes(),
        value,
        lease,
    }
}

impl Cluster {
    /// Connects to etcd and registers this node; see the module documentation.
    pub fn join(cfg: &ClusterConfig, node: &NodeConfig) -> Result<Arc<Cluster>, JoinError> {
        let tls = cfg.tls.as_ref().map(|t| TlsFiles {
            ca_file: Some(t.ca_file.clone()),
            cert_file: t.client.as_ref().map(|c| c.0.clone()),
            key_file: t.client.as_ref().map(|c| c.1.clone()),
        });
        let etcd = Etcd::new(&cfg.etcd_endpoints, tls.as_ref(), REQUEST_TIMEOUT)
            .map_err(|e| JoinError::Store(e.to_string()))?;
        let me = NodeRecord {
            name: node.name.clone(),
            underlay_ip: node.underlay_ip,
            vxlan_port: node.vxlan_port,
            version: env!("CARGO_PKG_VERSION").to_string(),
            boot_id: boot_id(),
            started: unix_now(),
            lease: 0,
            address_lease: 0,
        };
        let c = Arc::new(Cluster {
            etcd,
            keys: Keys::new(&cfg.prefix),
            cfg: cfg.clone(),
            me: Mutex::new(me),
            state: Mutex::new(State {
                node_lease: 0,
                addr_lease: 0,
                own: BTreeMap::new(),
                claims: BTreeMap::new(),
                unreachable_since: None,
                last_error: None,
            }),
            view: Mutex::new(Arc::new(ClusterView::default())),
        });
        c.register(true)?;
        Ok(c)
    }

    pub fn name(&self) -> String {
        self.me.lock().unwrap().name.clone()
    }

    fn ttl_secs(&self) -> i64 {
        self.cfg.lease_ttl.as_secs().max(1) as i64
    }

    /// Grants both leases and writes the node record. At start (`first`), a record of this
    /// name at the same address is a previous run of this daemon: taken over with its address
    /// claims. A record at another address is a different live host: refused.
    fn register(&self, first: bool) -> Result<(), JoinError> {
        let store = |e: EtcdError| JoinError::Store(e.to_string());
        let key = self.keys.node(&self.name());
        let node_lease = self.etcd.lease_grant(self.ttl_secs()).map_err(store)?;
        let addr_lease = self
            .etcd
            .lease_grant(self.cfg.address_grace.as_secs().max(1) as i64)
            .map_err(store)?;
        let mut me = self.me.lock().unwrap().clone();
        me.lease = node_lease;
        me.address_lease = addr_lease;
        let created = self
            .etcd
            .txn(&Txn {
                compare: vec![Compare::CreateRevision(key.clone().into_bytes(), 0)],
                success: vec![put(key.clone(), json(&me), node_lease)],
                failure: vec![Op::Get(key.clone().into_bytes())],
            })
            .map_err(store)?;
        let mut previous = None;
        if !created.succeeded {
            let kv = created.gets.first().and_then(|g| g.first()).cloned();
            let old: Option<(Kv, NodeRecord)> = kv.and_then(|kv| {
                let r = serde_json::from_slice::<NodeRecord>(&kv.value).ok()?;
                Some((kv, r))
            });
            match old {
                Some((kv, r))
                    if r.underlay_ip == me.underlay_ip && r.vxlan_port == me.vxlan_port =>
                {
                    let took = self
                        .etcd
                        .txn(&Txn {
                            compare: vec![Compare::ModRevision(
                                key.clone().into_bytes(),
                                kv.mod_revision,
                            )],
                            success: vec![put(key.clone(), json(&me), node_lease)],
                            failure: vec![],
                        })
                        .map_err(store)?;
                    if !took.succeeded {
                        return Err(JoinError::Store(
                            "the node record changed while taking it over; try again".into(),
                        ));
                    }
                    if first || r.boot_id != me.boot_id {
                        tracing::info!(
                            node = %me.name, previous_boot = %r.boot_id,
                            "cluster: took over the registration of this node's previous run"
                        );
                    }
                    previous = Some(r);
                }
                Some((_, r)) => {
                    let _ = self.etcd.lease_revoke(node_lease);
                    let _ = self.etcd.lease_revoke(addr_lease);
                    return Err(JoinError::Duplicate {
                        name: r.name,
                        at: format!("{}:{}", r.underlay_ip, r.vxlan_port),
                        started: unix_now().saturating_sub(r.started),
                        boot: r.boot_id,
                        ttl: self.ttl_secs() as u64,
                    });
                }
                None => {
                    // Unreadable: ours to overwrite, as the name is ours.
                    self.etcd
                        .put(key.as_bytes(), &json(&me), node_lease)
                        .map_err(store)?;
                }
            }
        }
        *self.me.lock().unwrap() = me.clone();
        {
            let mut st = self.state.lock().unwrap();
            st.node_lease = node_lease;
            st.addr_lease = addr_lease;
        }
        if let Some(old) = previous {
            if old.lease != node_lease {
                // Its endpoints were TAPs of the process that died.
                let _ = self.etcd.lease_revoke(old.lease);
            }
            self.adopt_claims(addr_lease)?;
            if old.address_lease != addr_lease && old.address_lease != 0 {
                let _ = self.etcd.lease_revoke(old.address_lease);
            }
        } else if !first {
            self.adopt_claims(addr_lease)?;
        }
        self.republish_endpoints();
        tracing::info!(
            node = %me.name, lease = node_lease, ttl = self.ttl_secs(),
            store = %self.cfg.etcd_endpoints.join(","), "cluster: registered"
        );
        Ok(())
    }

    /// Moves every claim this node holds (by name) under `lease`, and remembers them.
    fn adopt_claims(&self, lease: i64) -> Result<(), JoinError> {
        let store = |e: EtcdError| JoinError::Store(e.to_string());
        let me = self.name();
        let mut moved = 0;
        for prefix in [self.keys.addresses(), self.keys.names()] {
            let (kvs, _) = self.etcd.get_prefix(prefix.as_bytes()).map_err(store)?;
            for kv in kvs {
                let Ok(c) = serde_json::from_slice::<Claim>(&kv.value) else {
                    continue;
                };
                if c.host != me {
                    continue;
                }
                let t = self
                    .etcd
                    .txn(&Txn {
                        compare: vec![Compare::ModRevision(kv.key.clone(), kv.mod_revision)],
                        success: vec![Op::Put {
                            key: kv.key.clone(),
                            value: kv.value.clone(),
                            lease,
                        }],
                        failure: vec![],
                    })
                    .map_err(store)?;
                if t.succeeded {
                    moved += 1;
                    if let Some(super::records::Key::Address(net, ip)) = self.keys.parse(&kv.key) {
                        self.state.lock().unwrap().claims.insert((net, ip), c);
                    }
                }
            }
        }
        if moved > 0 {
            tracing::info!(
                claims = moved,
                "cluster: kept this node's address and name claims"
            );
        }
        Ok(())
    }

    fn republish_endpoints(&self) {
        let (lease, own) = {
            let st = self.state.lock().unwrap();
            (st.node_lease, st.own.values().cloned().collect::<Vec<_>>())
        };
        for e in own {
            if let Err(err) = self.etcd.put(
                self.keys.endpoint(&e.network, e.ip).as_bytes(),
                &json(&e),
                lease,
            ) {
                tracing::warn!(endpoint = %e.ip, "cluster: cannot republish an endpoint: {err}");
            }
        }
    }

    /// Notes how the last request to the store went.
    fn health(&self, r: Result<(), &EtcdError>) {
        let mut st = self.state.lock().unwrap();
        match r {
            Ok(()) => {
                if let Some(since) = st.unreachable_since.take() {
                    let secs = since.elapsed().map_or(0, |d| d.as_secs());
                    tracing::info!(down_for_s = secs, "cluster store reachable again");
                }
                st.last_error = None;
            }
            Err(e @ EtcdError::Unreachable { .. }) => {
                if st.unreachable_since.is_none() {
                    tracing::warn!(
                        "cluster store unreachable: {e} (forwarding continues on what is known)"
                    );
                    st.unreachable_since = Some(SystemTime::now());
                }
                st.last_error = Some(e.to_string());
            }
            Err(e) => st.last_error = Some(e.to_string()),
        }
    }

    pub fn status(&self) -> StoreStatus {
        let st = self.state.lock().unwrap();
        StoreStatus {
            endpoints: self.cfg.etcd_endpoints.clone(),
            reachable: st.unreachable_since.is_none(),
            unreachable_since: st.unreachable_since.map(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            }),
            last_error: st.last_error.clone(),
            revision: self.view.lock().unwrap().revision,
        }
    }

    /// At a clean stop: revokes the node lease, so every other host drops this node and its
    /// endpoints at once. The address lease stays (a restart keeps the addresses).
    pub fn leave(&self) {
        let lease = self.state.lock().unwrap().node_lease;
        match self.etcd.lease_revoke(lease) {
            Ok(_) => tracing::info!("cluster: left (registration and endpoints withdrawn)"),
            Err(e) => tracing::warn!(
                "cluster: cannot withdraw the registration: {e} (it expires in {}s)",
                self.ttl_secs()
            ),
        }
    }

    /// The newest view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.lock().unwrap().clone()
    }

    /// Renews the leases forever; re-registers when etcd lost one. Run on a thread of its own.
    pub fn run_keepalive(self: Arc<Self>) {
        let period = (self.cfg.lease_ttl / 3).max(Duration::from_millis(500));
        loop {
            std::thread::sleep(period);
            let (node_lease, addr_lease) = {
                let st = self.state.lock().unwrap();
                (st.node_lease, st.addr_lease)
            };
            let r = self
                .etcd
                .lease_keepalive(node_lease)
                .and_then(|_| self.etcd.lease_keepalive(addr_lease));
            match r {
                Ok(_) => self.health(Ok(())),
                Err(EtcdError::LeaseNotFound(id)) => {
                    self.health(Ok(()));
                    tracing::warn!(
                        lease = id,
                        "cluster: a lease expired while the store could not be reached; registering again"
                    );
                    if let Err(e) = self.register(false) {
                        tracing::error!("cluster: cannot register again: {e}");
                    }
                }
                Err(e) => self.health(Err(&e)),
            }
        }
    }

    /// Keeps the view current forever, handing every new snapshot to `apply`. Run on a thread
    /// of its own.
    pub fn run_watch(self: Arc<Self>, apply: impl Fn(Arc<ClusterView>)) {
        let all = self.keys.all().into_bytes();
        loop {
            let (kvs, rev) = match self.etcd.get_prefix(&all) {
                Ok(r) => r,
                Err(e) => {
                    self.health(Err(&e));
                    std::thread::sleep(RETRY);
                    continue;
                }
            };
            self.health(Ok(()));
            let before = self.view();
            let mut view =
                ClusterView::from_read(&self.keys, &kvs, rev, Some(&before), SystemTime::now());
            self.publish(&view, &apply);
            'watch: loop {
                let mut w = match self.etcd.watch_prefix(&all, view.revision + 1, WATCH_IDLE) {
                    Ok(w) => w,
                    Err(e) => {
                        self.health(Err(&e));
                        std::thread::sleep(RETRY);
                        break 'watch;
                    }
                };
                loop {
                    match w.next() {
                        Ok(Some(b)) => {
                            view.apply(&self.keys, b.revision, &b.events, SystemTime::now());
                            self.publish(&view, &apply);
                        }
                        // Quiet for WATCH_IDLE: reopen from where we are.
                        Ok(None) => continue 'watch,
                        Err(EtcdError::Compacted { compact_revision }) => {
                            tracing::warn!(
                                from = view.revision + 1,
                                compact_revision,
                                "cluster: watch revision compacted: reading everything again"
                            );
                            break 'watch;
                        }
                        Err(e) => {
                            self.health(Err(&e));
                            std::thread::sleep(RETRY);
                            break 'watch;
                        }
                    }
                }
            }
        }
    }

    fn publish(&self, view: &ClusterView, apply: &impl Fn(Arc<ClusterView>)) {
        let snap = Arc::new(view.clone());
        *self.view.lock().unwrap() = snap.clone();
        apply(snap);
    }

    // ----- writes asked for by the control actor -----

    fn store_err(&self, e: EtcdError) -> String {
        self.health(Err(&e));
        match e {
            EtcdError::Unreachable { .. } => format!(
                "the cluster store is unreachable ({}): this needs etcd; forwarding continues on what is known",
                self.cfg.etcd_endpoints.join(",")
            ),
            e => format!("cluster store: {e}"),
        }
    }

    /// Claims an address (the one asked for, or the lowest free one of the subnet) and the
    /// endpoint's name on `net`, atomically. A name this node already holds on `net` keeps its
    /// address (a container attached again, or after a restart).
    pub fn claim(
        &self,
        net: &NetworkRecord,
        name: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, String> {
        let me = self.name();
        let lease = self.state.lock().unwrap().addr_lease;
        let name_key = self.keys.name(&net.name, name);
        for _attempt in 0..64 {
            let (held, _) = self
                .etcd
                .get_prefix(self.keys.addresses_of(&net.name).as_bytes())
                .map_err(|e| self.store_err(e))?;
            let holder = self
                .etcd
                .get(name_key.as_bytes())
                .map_err(|e| self.store_err(e))?;
            let mut taken: BTreeMap<Ipv4Addr, Claim> = BTreeMap::new();
            for kv in &held {
                if let Ok(c) = serde_json::from_slice::<Claim>(&kv.value) {
                    taken.insert(c.ip, c);
                }
            }
            let mut name_rev = 0;
            if let Some(kv) = &holder {
                let c: Option<Claim> = serde_json::from_slice(&kv.value).ok();
                match c {
                    Some(c) if c.host == me && want.map_or(true, |w| w == c.ip) => {
                        // Ours already: keep it (and make sure the address is ours too).
                        return self.claim_exact(net, name, c.ip, lease, Some(kv.mod_revision));
                    }
                    Some(c) => {
                        return Err(format!(
                        "name {name:?} is taken on network {}: by the container at {} on host {}",
                        net.name, c.ip, c.host
                    ))
                    }
                    None => name_rev = kv.mod_revision,
                }
            }
            let ip = match want {
                Some(ip) => {
                    if let Some(c) = taken.get(&ip) {
                        return Err(format!(
                            "address {ip} on network {} is taken: held by {} on host {}",
                            net.name, c.name, c.host
                        ));
                    }
                    ip
                }
                None => first_free(net.subnet, &taken).ok_or_else(|| {
                    format!(
                        "network {} has no free address left in {} ({} held)",
                        net.name,
                        net.subnet,
                        taken.len()
                    )
                })?,
            };
            match self.try_claim(net, name, ip, lease, name_rev) {
                Ok(true) => return Ok(ip),
                Ok(false) if want.is_some() => continue, // re-read to name the holder
                Ok(false) => continue,                   // lost a race: next free one
                Err(e) => return Err(e),
            }
        }
        Err(format!(
            "could not claim an address on network {}: too much contention, try again",
            net.name
        ))
    }

    /// `name` already ours: make sure `ip` is held by us under it.
    fn claim_exact(
        &self,
        net: &NetworkRecord,
        name: &str,
        ip: Ipv4Addr,
        lease: i64,
        name_rev: Option<i64>,
    ) -> Result<Ipv4Addr, String> {
        let addr_key = self.keys.address(&net.name, ip);
        match self
            .etcd
            .get(addr_key.as_bytes())
            .map_err(|e| self.store_err(e))?
        {
            Some(kv) => {
                let c: Option<Claim> = serde_json::from_slice(&kv.value).ok();
                if c.as_ref()
                    .is_some_and(|c| c.host == self.name() && c.name == name)
                {
                    self.remember_claim(net, name, ip);
                    return Ok(ip);
                }
                Err(format!(
                    "address {ip} on network {} is taken: held by {}",
                    net.name,
                    c.map_or("an unreadable claim".into(), |c| format!(
                        "{} on host {}",
                        c.name, c.host
                    ))
                ))
            }
            None => match self.try_claim(net, name, ip, lease, name_rev.unwrap_or(0))? {
                true => Ok(ip),
                false => Err(format!(
                    "address {ip} on network {} was taken meanwhile; try again",
                    net.name
                )),
            },
        }
    }

    /// One transaction: the address is free and the name is as read → both are ours.
    fn try_claim(
        &self,
        net: &NetworkRecord,
        name: &str,
        ip: Ipv4Addr,
        lease: i64,
        name_rev: i64,
    ) -> Result<bool, String> {
        let claim = Claim {
            host: self.name(),
            name: name.to_string(),
            ip,
        };
        let (ak, nk) = (
            self.keys.address(&net.name, ip),
            self.keys.name(&net.name, name),
        );
        let t = self
            .etcd
            .txn(&Txn {
                compare: vec![
                    Compare::CreateRevision(ak.clone().into_bytes(), 0),
                    Compare::ModRevision(nk.clone().into_bytes(), name_rev),
                    // The network still exists.
                    Compare::Value(self.keys.network(&net.name).into_bytes(), json(net)),
                ],
                success: vec![put(ak, json(&claim), lease), put(nk, json(&claim), lease)],
                failure: vec![Op::Get(self.keys.network(&net.name).into_bytes())],
            })
            .map_err(|e| self.store_err(e))?;
        if t.succeeded {
            self.remember_claim(net, name, ip);
            return Ok(true);
        }
        if t.gets.first().map_or(true, |g| g.is_empty()) {
            return Err(format!("network {} was removed from the cluster", net.name));
        }
        Ok(false)
    }

    fn remember_claim(&self, net: &NetworkRecord, name: &str, ip: Ipv4Addr) {
        self.state.lock().unwrap().claims.insert(
            (net.name.clone(), ip),
            Claim {
                host: self.name(),
                name: name.to_string(),
                ip,
            },
        );
    }

    /// Moves our claim of `ip` from the name `old` to `new`, in one transaction: the address
    /// still ours under `old`, `new` free. (Docker's IPAM hands out an address before the
    /// container's name is known.)
    pub fn rename_claim(
        &self,
        network: &str,
        ip: Ipv4Addr,
        old: &str,
        new: &str,
    ) -> Result<(), String> {
        let me = self.name();
        let lease = self.state.lock().unwrap().addr_lease;
        let claim = |name: &str| Claim {
            host: me.clone(),
            name: name.to_string(),
            ip,
        };
        let (ak, old_nk, new_nk) = (
            self.keys.address(network, ip),
            self.keys.name(network, old),
            self.keys.name(network, new),
        );
        let t = self
            .etcd
            .txn(&Txn {
                compare: vec![
                    Compare::Value(ak.clone().into_bytes(), json(&claim(old))),
                    Compare::CreateRevision(new_nk.clone().into_bytes(), 0),
                ],
                success: vec![
                    put(ak, json(&claim(new)), lease),
                    put(new_nk.clone(), json(&claim(new)), lease),
                    Op::Delete(old_nk.into_bytes()),
                ],
                failure: vec![Op::Get(new_nk.into_bytes())],
            })
            .map_err(|e| self.store_err(e))?;
        if !t.succeeded {
            let holder = t
                .gets
                .first()
                .and_then(|g| g.first())
                .and_then(|kv| serde_json::from_slice::<Claim>(&kv.value).ok());
            return Err(match holder {
                Some(c) => format!(
                    "name {new:?} is taken on network {network}: by the container at {} on host {}",
                    c.ip, c.host
                ),
                None => format!("address {ip} on network {network} is no longer held as {old:?}"),
            });
        }
        let mut st = self.state.lock().unwrap();
        if let Some(c) = st.claims.get_mut(&(network.to_string(), ip)) {
            c.name = new.to_string();
        }
        Ok(())
    }

    /// Gives an address and its name back (detach, or an attach that failed after the claim).
    pub fn release(&self, network: &str, ip: Ipv4Addr, name: &str) -> Result<(), String> {
        self.state
            .lock()
            .unwrap()
            .claims
            .remove(&(network.to_string(), ip));
        let me = self.name();
        let claim_is_mine = |k: String| {
            Compare::Value(
                k.into_bytes(),
                json(&Claim {
                    host: me.clone(),
                    name: name.to_string(),
                    ip,
                }),
            )
        };
        let (ak, nk) = (
            self.keys.address(network, ip),
            self.keys.name(network, name),
        );
        for (key, cmp) in [
            (ak.clone(), claim_is_mine(ak)),
            (nk.clone(), claim_is_mine(nk)),
        ] {
            self.etcd
                .txn(&Txn {
                    compare: vec![cmp],
                    success: vec![Op::Delete(key.into_bytes())],
                    failure: vec![],
                })
                .map_err(|e| self.store_err(e))?;
        }
        Ok(())
    }

    /// Publishes an endpoint attached here, under the node lease.
    pub fn publish_endpoint(&self, e: EndpointRecord) -> Result<(), String> {
        let lease = self.state.lock().unwrap().node_lease;
        let key = self.keys.endpoint(&e.network, e.ip);
        let r = self.etcd.put(key.as_bytes(), &json(&e), lease);
        // Kept even if the store is away: republished when the lease is renewed or regranted.
        self.state
            .lock()
            .unwrap()
            .own
            .insert((e.network.clone(), e.ip), e);
        r.map(|_| ()).map_err(|e| self.store_err(e))
    }

    pub fn unpublish_endpoint(&self, network: &str, ip: Ipv4Addr) -> Result<(), String> {
        self.state
            .lock()
            .unwrap()
            .own
            .remove(&(network.to_string(), ip));
        self.etcd
            .delete(self.keys.endpoint(network, ip).as_bytes())
            .map(|_| ())
            .map_err(|e| self.store_err(e))
    }

    /// Whether secrets may travel between this node and etcd: every endpoint is https and
    /// this node shows etcd a client certificate (so etcd can refuse anyone without one).
    pub fn secrets_safe(&self) -> bool {
        self.cfg.secrets_safe()
    }

    /// Makes a cluster network: name and VNI unique, the VNI picked atomically if not given.
    /// An encrypted one gets a new random secret, written in the same transaction.
    pub fn network_create(
        &self,
        mut rec: NetworkRecord,
        auto_vni: bool,
    ) -> Result<NetworkRecord, String> {
        for _attempt in 0..64 {
            if auto_vni {
                let (kvs, _) = self
                    .etcd
                    .get_prefix(self.keys.vnis().as_bytes())
                    .map_err(|e| self.store_err(e))?;
                let used: std::collections::BTreeSet<u32> = kvs
                    .iter()
                    .filter_map(|kv| match self.keys.parse(&kv.key) {
                        Some(super::records::Key::Vni(v)) => Some(v),
                        _ => None,
                    })
                    .collect();
                rec.vni = (FIRST_AUTO_VNI..=crate::switch::Vni::MAX)
                    .find(|v| !used.contains(v))
                    .ok_or("no VNI left")?;
            }
            let (nk, vk) = (self.keys.network(&rec.name), self.keys.vni(rec.vni));
            let mut success = vec![
                put(nk.clone(), json(&rec), 0),
                put(vk.clone(), rec.name.clone().into_bytes(), 0),
            ];
            if rec.encrypted {
                success.push(put(
                    self.keys.secret(&rec.name),
                    crate::crypto::generate_key_hex().into_bytes(),
                    0,
                ));
            }
            let t = self
                .etcd
                .txn(&Txn {
                    compare: vec![
                        Compare::CreateRevision(nk.clone().into_bytes(), 0),
                        Compare::CreateRevision(vk.clone().into_bytes(), 0),
                    ],
                    success,
                    failure: vec![Op::Get(nk.into_bytes()), Op::Get(vk.into_bytes())],
                })
                .map_err(|e| self.store_err(e))?;
            if t.succeeded {
                tracing::info!(network = %rec.name, vni = rec.vni, subnet = %rec.subnet, "cluster: network created");
                return Ok(rec);
            }
            if t.gets.first().is_some_and(|g| !g.is_empty()) {
                return Err(format!(
                    "a network named {:?} already exists in the cluster (see `vswitchctl network inspect {}`)",
                    rec.name, rec.name
                ));
            }
            if !auto_vni {
                let owner = t
                    .gets
                    .get(1)
                    .and_then(|g| g.first())
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                    .unwrap_or_default();
                return Err(format!(
                    "vni {} is already used by network {owner:?}",
                    rec.vni
                ));
            }
        }
        Err("could not reserve a VNI: too much contention, try again".into())
    }

    /// The secret of encrypted network `name`, read now (the watch brings it too, later).
    pub fn secret(&self, name: &str) -> Result<Option<crate::switch::NetSecret>, String> {
        let kv = self
            .etcd
            .get(self.keys.secret(name).as_bytes())
            .map_err(|e| self.store_err(e))?;
        Ok(kv.and_then(|kv| super::view::parse_secret(&kv.value)))
    }

    /// Removes a cluster network; refused while any host has endpoints on it.
    pub fn network_rm(&self, name: &str) -> Result<NetworkRecord, String> {
        let nk = self.keys.network(name);
        let kv = self
            .etcd
            .get(nk.as_bytes())
            .map_err(|e| self.store_err(e))?
            .ok_or_else(|| {
                format!("no cluster network named {name:?} (see `vswitchctl network ls`)")
            })?;
        let rec: NetworkRecord = serde_json::from_slice(&kv.value)
            .map_err(|e| format!("network {name:?}: unreadable record: {e}"))?;
        let (eps, _) = self
            .etcd
            .get_prefix(self.keys.endpoints_of(name).as_bytes())
            .map_err(|e| self.store_err(e))?;
        if !eps.is_empty() {
            let list: Vec<String> = eps
                .iter()
                .filter_map(|kv| serde_json::from_slice::<EndpointRecord>(&kv.value).ok())
                .take(5)
                .map(|e| format!("{} ({}) on {}", e.name, e.ip, e.host))
                .collect();
            return Err(format!(
                "network {name:?} still has {} endpoint(s): {}{}; detach them first",
                eps.len(),
                list.join(", "),
                if eps.len() > 5 { ", ..." } else { "" }
            ));
        }
        let t = self
            .etcd
            .txn(&Txn {
                compare: vec![Compare::ModRevision(
                    nk.clone().into_bytes(),
                    kv.mod_revision,
                )],
                success: vec![
                    Op::Delete(nk.into_bytes()),
                    Op::Delete(self.keys.vni(rec.vni).into_bytes()),
                    Op::Delete(self.keys.secret(name).into_bytes()),
                    Op::DeletePrefix(self.keys.addresses_of(name).into_bytes()),
                    Op::DeletePrefix(self.keys.names_of(name).into_bytes()),
                ],
                failure: vec![],
            })
            .map_err(|e| self.store_err(e))?;
        if !t.succeeded {
            return Err(format!("network {name:?} changed meanwhile; try again"));
        }
        tracing::info!(network = %name, vni = rec.vni, "cluster: network removed");
        Ok(rec)
    }

    /// Seconds since each registered node last renewed its lease (from the lease's remaining
    /// time), for `show peers`. Nodes whose lease cannot be read are left out.
    pub fn keepalive_ages(&self, view: &ClusterView) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let start = Instant::now();
        for n in view.nodes.values() {
            // One request per node, on the control actor: a large cluster gets the first ones.
            if start.elapsed() > KEEPALIVE_QUERY_BUDGET {
                break;
            }
            if let Ok(Some((ttl, granted))) = self.etcd.lease_time_to_live(n.lease) {
                out.insert(n.name.clone(), granted.saturating_sub(ttl).max(0) as u64);
            }
        }
        out
    }
}

/// The lowest address of `subnet` no claim holds (not the network or broadcast address, nor
/// the switch's own: crate::switch::service).
pub fn first_free(subnet: Ipv4Net, taken: &BTreeMap<Ipv4Addr, Claim>) -> Option<Ipv4Addr> {
    crate::switch::service::station_addrs(subnet).find(|ip| !taken.contains_key(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_free_skips_network_broadcast_and_held() {
        let subnet: Ipv4Net = "10.0.9.0/30".parse().unwrap();
        let mut taken = BTreeMap::new();
        assert_eq!(first_free(subnet, &taken), Some(Ipv4Addr::new(10, 0, 9, 2)));
        let ip = Ipv4Addr::new(10, 0, 9, 2);
        taken.insert(
            ip,
            Claim {
                host: "a".into(),
                name: "x".into(),
                ip,
            },
        );
        assert_eq!(first_free(subnet, &taken), None);
    }
}
