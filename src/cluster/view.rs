//! What this node knows of the cluster: the nodes, networks and endpoints in etcd, as of one
//! revision, built from a full read and kept current from watch events.
//!
//! Pure: no I/O. The agent (crate::cluster::agent) feeds it; the control actor reconciles the
//! topology with it (crate::cluster::reconcile). A node whose record disappears is kept as
//! `down` with the time it went, for `show peers`. Records that do not parse are skipped and
//! counted, never fatal: another version of vswitch may share the store.
//!
//! Thread-safety: plain data, shared as `Arc<ClusterView>` snapshots.

use super::etcd::{Event, Kv};
use super::records::{EndpointRecord, Key, Keys, NetworkRecord, NodeRecord};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::SystemTime;

#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// The store revision this view is as of.
    pub revision: i64,
    /// Registered (alive) nodes, by name.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Nodes seen alive by this daemon that are gone, with when they went.
    pub down: BTreeMap<String, (NodeRecord, SystemTime)>,
    pub networks: BTreeMap<String, NetworkRecord>,
    /// By (network, ip).
    pub endpoints: BTreeMap<(String, Ipv4Addr), EndpointRecord>,
    /// Values under the prefix that did not parse (skipped).
    pub unreadable: u64,
    /// Secrets of encrypted networks, by network name.
    pub secrets: BTreeMap<String, crate::switch::NetSecret>,
}

impl ClusterView {
    /// The view of a full read at `revision`. Nodes alive in `before` and absent now are
    /// marked down at `now`; nodes down in `before` stay down unless they are back.
    pub fn from_read(
        keys: &Keys,
        kvs: &[Kv],
        revision: i64,
        before: Option<&ClusterView>,
        now: SystemTime,
    ) -> ClusterView {
        let mut v = ClusterView {
            revision,
            ..Default::default()
        };
        for kv in kvs {
            v.put(keys, kv);
        }
        if let Some(b) = before {
            for (name, rec) in &b.nodes {
                if !v.nodes.contains_key(name) {
                    v.down.insert(name.clone(), (rec.clone(), now));
                }
            }
            for (name, d) in &b.down {
                if !v.nodes.contains_key(name) && !v.down.contains_key(name) {
                    v.down.insert(name.clone(), d.clone());
                }
            }
        }
        v
    }

    /// Applies one watch batch's events, in order.
    pub fn apply(&mut self, keys: &Keys, revision: i64, events: &[Event], now: SystemTime) {
        for e in events {
            match e {
                Event::Put(kv) => self.put(keys, kv),
                Event::Delete { key, .. } => self.delete(keys, key, now),
            }
        }
        self.revision = self.revision.max(revision);
    }

    fn put(&mut self, keys: &Keys, kv: &Kv) {
        let ok = match keys.parse(&kv.key) {
            Some(Key::Node(name)) => match serde_json::from_slice::<NodeRecord>(&kv.value) {
                Ok(r) if r.name == name => {
                    self.down.remove(&name);
                    self.nodes.insert(name, r);
                    true
                }
                _ => false,
            },
            Some(Key::Secret(name)) => match parse_secret(&kv.value) {
                Some(secret) => {
                    self.secrets.insert(name, secret);
                    true
                }
                None => false,
            },
            Some(Key::Network(name)) => match serde_json::from_slice::<NetworkRecord>(&kv.value) {
                Ok(r) if r.name == name => {
                    self.networks.insert(name, r);
                    true
                }
                _ => false,
            },
            Some(Key::Endpoint(net, ip)) => {
                match serde_json::from_slice::<EndpointRecord>(&kv.value) {
                    Ok(r) if r.network == net && r.ip == ip => {
                        self.endpoints.insert((net, ip), r);
                        true
                    }
                    _ => false,
                }
            }
            // Claims and the VNI index matter only to writers, who read them in transactions.
            _ => true,
        };
        if !ok {
            self.unreadable += 1;
            tracing::warn!(
                key = %String::from_utf8_lossy(&kv.key),
                "cluster store: a record that does not parse is ignored"
            );
        }
    }

    fn delete(&mut self, keys: &Keys, key: &[u8], now: SystemTime) {
        match keys.parse(key) {
            Some(Key::Node(name)) => {
                if let Some(r) = self.nodes.remove(&name) {
                    self.down.insert(name, (r, now));
                }
            }
            Some(Key::Secret(name)) => {
                self.secrets.remove(&name);
            }
            Some(Key::Network(name)) => {
                self.networks.remove(&name);
            }
            Some(Key::Endpoint(net, ip)) => {
                self.endpoints.remove(&(net, ip));
            }
            _ => {}
        }
    }

    /// The endpoints of one network.
    pub fn endpoints_of<'a>(
        &'a self,
        network: &'a str,
    ) -> impl Iterator<Item = &'a EndpointRecord> + 'a {
        self.endpoints
            .range((network.to_string(), Ipv4Addr::UNSPECIFIED)..)
            .take_while(move |((n, _), _)| n == network)
            .map(|(_, e)| e)
    }
}

/// 64 hex characters → the 32-byte secret.
pub fn parse_secret(v: &[u8]) -> Option<crate::switch::NetSecret> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(crate::switch::NetSecret(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: String, value: String) -> Kv {
        Kv {
            key: key.into_bytes(),
            value: value.into_bytes(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: 0,
        }
    }

    fn node(name: &str, ip: &str) -> String {
        format!(
            r#"{{"name":"{name}","underlay_ip":"{ip}","vxlan_port":4789,"version":"0","boot_id":"x","started":0,"lease":7}}"#
        )
    }

    #[test]
    fn read_then_events() {
        let k = Keys::new("/vswitch");
        let t0 = SystemTime::UNIX_EPOCH;
        let kvs = vec![
            kv(k.node("a"), node("a", "192.0.2.1")),
            kv(k.node("b"), node("b", "192.0.2.2")),
            kv(
                k.network("blue"),
                r#"{"name":"blue","vni":4096,"subnet":"10.0.9.0/24"}"#.into(),
            ),
            kv(
                k.endpoint("blue", "10.0.9.1".parse().unwrap()),
                r#"{"network":"blue","name":"c1","ip":"10.0.9.1","mac":"02:00:00:00:00:01","host":"b"}"#
                    .into(),
            ),
            kv(k.node("bad"), "{".into()),
            kv(k.vni(4096), "blue".into()),
        ];
        let mut v = ClusterView::from_read(&k, &kvs, 10, None, t0);
        assert_eq!(v.nodes.len(), 2);
        assert_eq!(v.unreadable, 1);
        assert_eq!(v.networks["blue"].vni, 4096);
        assert_eq!(v.endpoints_of("blue").count(), 1);
        assert_eq!(v.endpoints_of("blu").count(), 0);

        let t1 = t0 + std::time::Duration::from_secs(5);
        v.apply(
            &k,
            11,
            &[
                Event::Delete {
                    key: k.node("b").into_bytes(),
                    mod_revision: 11,
                },
                Event::Delete {
                    key: k.endpoint("blue", "10.0.9.1".parse().unwrap()).into_bytes(),
                    mod_revision: 11,
                },
            ],
            t1,
        );
        assert_eq!(v.revision, 11);
        assert!(!v.nodes.contains_key("b"));
        assert_eq!(v.down["b"].1, t1);
        assert_eq!(v.endpoints.len(), 0);

        // A full read later: b still down since t1, a gone since t2, b back clears it.
        let t2 = t1 + std::time::Duration::from_secs(5);
        let w = ClusterView::from_read(&k, &[], 12, Some(&v), t2);
        assert_eq!(w.down["b"].1, t1);
        assert_eq!(w.down["a"].1, t2);
        let x = ClusterView::from_read(
            &k,
            &[kv(k.node("b"), node("b", "192.0.2.2"))],
            13,
            Some(&w),
            t2,
        );
        assert!(x.nodes.contains_key("b") && !x.down.contains_key("b"));
    }
}
