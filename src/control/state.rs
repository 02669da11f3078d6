//! What the daemon keeps in `state_dir` so that a restarted daemon re-adopts the containers'
//! ports instead of making them again: one file per port, `state_dir/ports/ID.json`.
//!
//! Contract. The control actor writes a port's record when the port is attached and removes it
//! when the port is detached (server/restart.rs); nothing else writes here. Each write is a
//! temporary file renamed over the record, so a daemon killed at any instant leaves either the
//! old record or the new one, never half of one. There is no fsync: the records only matter
//! while the interfaces they describe exist, and persistent TAP devices do not survive a reboot
//! (after one, every record is found stale and dropped). One file per port keeps a write O(1)
//! however many ports the host has.
//!
//! Who may call: the control actor (and vswitchd's main thread at start and stop). Not the
//! workers.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// One port as the daemon made it: enough to find it again, check it, and publish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    /// The port id it had; kept across the restart, so `show ports` and logs still agree.
    pub id: u32,
    /// "tap" (attach-namespace: a persistent TAP in the container's namespace) or "af_packet"
    /// (attach-interface: reopened by the interface's name).
    pub kind: String,
    /// The endpoint name (the DNS name, the cluster's name claim).
    pub name: String,
    pub network: String,
    /// The interface: its name in the container's namespace (tap), or on the host (af_packet).
    pub ifname: String,
    /// The namespace as it was given (a name under /var/run/netns, or a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Device and inode of the namespace file, to tell the same namespace from a new one that
    /// took its name while the daemon was away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_id: Option<(u64, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// ADDR/PREFIX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub mtu: u32,
    /// Port security (crate::switch::topology::PortTopo::security).
    pub security: bool,
    /// The TAP was made with IFF_MULTI_QUEUE; it must be reopened the same way.
    #[serde(default)]
    pub multi_queue: bool,
    /// Who made it for what (the CNI plugin's `cni:...` id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
    /// The resolv.conf written for the namespace, and whether its directory was made too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<(PathBuf, bool)>,
    /// The attach's own port limits (crate::switch::limits), resolved again at re-adoption
    /// against the configuration then running.
    #[serde(default, skip_serializing_if = "is_default_limits")]
    pub limits: crate::switch::LimitSettings,
}

fn is_default_limits(l: &crate::switch::LimitSettings) -> bool {
    *l == crate::switch::LimitSettings::default()
}

/// The records under `state_dir/ports/`.
#[derive(Debug, Clone)]
pub struct PortState {
    dir: PathBuf,
}

/// A record file that could not be read: kept aside as `ID.json.bad` for a human, and named in
/// the log.
#[derive(Debug)]
pub struct Unreadable {
    pub path: PathBuf,
    pub reason: String,
}

impl PortState {
    /// The records of `state_dir` (the directory is made on the first write).
    pub fn new(state_dir: &Path) -> PortState {
        PortState {
            dir: state_dir.join("ports"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes (or replaces) the record of port `r.id`, atomically.
    pub fn save(&self, r: &PortRecord) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let tmp = self.dir.join(format!(".{}.json.tmp", r.id));
        let text = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.path(r.id))
    }

    /// Removes the record of port `id`; a missing one is not an error.
    pub fn remove(&self, id: u32) -> io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every record, by port id; files that cannot be read are moved aside and reported.
    pub fn load(&self) -> io::Result<(Vec<PortRecord>, Vec<Unreadable>)> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(e),
        };
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') && name.ends_with(".json.tmp") {
                // A write the previous daemon did not finish: the record it replaced stands.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<PortRecord>(&b).map_err(|e| e.to_string()))
                .and_then(|r| match stem.parse::<u32>() {
                    Ok(id) if id == r.id => Ok(r),
                    _ => Err(format!("the file name does not match port id {}", r.id)),
                });
            match parsed {
                Ok(r) => good.push(r),
                Err(reason) => {
                    let _ = std::fs::rename(&path, path.with_extension("json.bad"));
                    bad.push(Unreadable { path, reason });
                }
            }
        }
        good.sort_by_key(|r| r.id);
        Ok((good, bad))
    }

    /// The Docker plugin's state (crate::control::server::docker), beside the port records:
    /// `state_dir/docker.json`.
    pub fn docker_file(&self) -> PathBuf {
        self.dir.parent().unwrap_or(&self.dir).join("docker.json")
    }

    /// Writes the Docker plugin's state, atomically as a port record.
    pub fn save_docker<T: Serialize>(&self, state: &T) -> io::Result<()> {
        let path = self.docker_file();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// The Docker plugin's state as the previous daemon left it (the default when none).
    pub fn load_docker<T: serde::de::DeserializeOwned + Default>(&self) -> io::Result<T> {
        match std::fs::read(self.docker_file()) {
            Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(e),
        }
    }

    /// Removes every record (a plain stop: the interfaces went with the daemon).
    pub fn clear(&self) -> io::Result<()> {
        let (records, _) = self.load()?;
        for r in records {
            self.remove(r.id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32) -> PortRecord {
        PortRecord {
            id,
            kind: "tap".into(),
            name: "c1".into(),
            network: "blue".into(),
            ifname: "eth0".into(),
            netns: Some("c1".into()),
            netns_id: Some((4, 4026532281)),
            mac: Some("02:42:0a:00:09:02".into()),
            ip: Some("10.0.9.2/24".into()),
            mtu: 1450,
            security: true,
            multi_queue: false,
            attachment: Some("cni:blue:abc:eth0".into()),
            resolv_conf: Some(("/etc/netns/c1/resolv.conf".into(), true)),
            limits: Default::default(),
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vswitch-state-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_round_trip_and_go() {
        let d = scratch("rt");
        let s = PortState::new(&d);
        assert!(
            s.load().unwrap().0.is_empty(),
            "no directory yet: no records"
        );
        s.save(&record(3)).unwrap();
        s.save(&record(1)).unwrap();
        let mut changed = record(3);
        changed.ip = Some("10.0.9.9/24".into());
        s.save(&changed).unwrap();
        let (got, bad) = s.load().unwrap();
        assert!(bad.is_empty());
        assert_eq!(got, vec![record(1), changed]);
        s.remove(1).unwrap();
        s.remove(1).unwrap();
        assert_eq!(s.load().unwrap().0.len(), 1);
        s.clear().unwrap();
        assert!(s.load().unwrap().0.is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_docker_state_sits_beside_the_records_and_round_trips() {
        let d = scratch("docker");
        let s = PortState::new(&d);
        assert_eq!(s.docker_file(), d.join("docker.json"));
        let none: serde_json::Value = s.load_docker().unwrap();
        assert_eq!(none, serde_json::Value::Null, "nothing saved: the default");
        let v = serde_json::json!({ "endpoints": [{ "id": "e1" }] });
        s.save_docker(&v).unwrap();
        assert_eq!(s.load_docker::<serde_json::Value>().unwrap(), v);
        // Records are not confused by it.
        assert!(s.load().unwrap().0.is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_broken_record_is_set_aside_and_a_torn_write_ignored() {
        let d = scratch("bad");
        let s = PortState::new(&d);
        s.save(&record(2)).unwrap();
        std::fs::write(s.dir().join("7.json"), b"{\"id\": 7, \"kind\"").unwrap();
        std::fs::write(s.dir().join(".2.json.tmp"), b"half").unwrap();
        let (got, bad) = s.load().unwrap();
        assert_eq!(got, vec![record(2)]);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].path.ends_with("7.json"), "{:?}", bad[0].path);
        assert!(s.dir().join("7.json.bad").exists());
        assert!(!s.dir().join(".2.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
