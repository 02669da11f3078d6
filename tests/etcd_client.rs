//! `cluster::etcd` against a real etcd (/usr/bin/etcd, 3.4): run as root. Each test starts its
//! own etcd inside a network namespace it creates, and runs the client in a thread that has
//! entered that namespace; nothing listens or connects in the root namespace. The guard kills
//! etcd and deletes the namespace and the data directory on drop, also when the test fails.

use std::fs::File;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::pki::make_pki;
use vswitch::cluster::etcd::{Compare, Etcd, EtcdError, Event, Op, TlsFiles, Txn};

const CLIENT_URL: &str = "http://127.0.0.1:2379";
const TIMEOUT: Duration = Duration::from_secs(3);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// An etcd in a network namespace of its own; Drop stops it and removes everything.
struct EtcdNs {
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
    /// The client URL, http or https.
    url: String,
    /// For an https etcd: the CA, and a client certificate it requires.
    tls: Option<TlsFiles>,
}

impl EtcdNs {
    fn start() -> EtcdNs {
        EtcdNs::start_with(false)
    }

    /// An etcd serving https with a certificate of a throwaway CA, and requiring client
    /// certificates of that CA.
    fn start_tls() -> EtcdNs {
        EtcdNs::start_with(true)
    }

    fn start_with(tls: bool) -> EtcdNs {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = format!("vsw-etcdc-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{ns}.d"));
        let mut guard = EtcdNs {
            ns,
            dir,
            child: None,
            url: CLIENT_URL.to_string(),
            tls: None,
        };
        run("ip", &["netns", "add", &guard.ns]);
        run(
            "ip",
            &["netns", "exec", &guard.ns, "ip", "link", "set", "lo", "up"],
        );
        std::fs::create_dir_all(&guard.dir).unwrap();
        let mut tls_args: Vec<String> = Vec::new();
        if tls {
            guard.url = CLIENT_URL.replace("http:", "https:");
            let pki = make_pki(&guard.dir, &["127.0.0.1"]);
            tls_args = [
                "--cert-file",
                &pki.server_cert,
                "--key-file",
                &pki.server_key,
                "--client-cert-auth",
                "--trusted-ca-file",
                &pki.ca,
            ]
            .map(String::from)
            .to_vec();
            guard.tls = Some(TlsFiles {
                ca_file: Some(pki.ca.into()),
                cert_file: Some(pki.client_cert.into()),
                key_file: Some(pki.client_key.into()),
            });
        }
        let log = File::create(guard.dir.join("etcd.log")).unwrap();
        let data = guard.dir.join("data");
        // `ip netns exec` execs etcd in place, so the child's pid is etcd's.
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &guard.ns,
                "etcd",
                "--name",
                "t",
                "--data-dir",
            ])
            .arg(&data)
            .args(&tls_args)
            .args([
                "--listen-client-urls",
                &guard.url,
                "--advertise-client-urls",
                &guard.url,
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "t=http://127.0.0.1:2380",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        guard.child = Some(child);
        guard
    }

    /// Runs `body` on a thread inside the namespace (setns changes only the calling thread),
    /// once etcd answers; a panic in `body` fails the test.
    fn run<F: FnOnce(Etcd) + Send + 'static>(&self, body: F) {
        let ns = self.ns.clone();
        let log = self.dir.join("etcd.log");
        let url = self.url.clone();
        let tls = self.tls.clone();
        let result = std::thread::spawn(move || {
            enter_netns(&ns);
            let etcd = Etcd::new(&[url], tls.as_ref(), TIMEOUT).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match etcd.get(b"ping") {
                    Ok(_) => break,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!(
                        "etcd did not come up: {e}\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ),
                }
            }
            body(etcd)
        })
        .join();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }

    /// Runs etcdctl inside the namespace.
    fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "etcdctl",
                "--endpoints",
                CLIENT_URL,
            ])
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for EtcdNs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn enter_netns(ns: &str) {
    let file = File::open(format!("/var/run/netns/{ns}")).expect("open netns");
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Spawns a thread in the same namespace as the caller (threads inherit it).
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    std::thread::spawn(f)
}

#[test]
fn put_get_prefix_delete() {
    let etcd_ns = EtcdNs::start();
    etcd_ns.run(|etcd| {
        assert_eq!(etcd.get(b"net/a").unwrap(), None);
        let r1 = etcd.put(b"net/a", b"one", 0).unwrap();
        let r2 = etcd.put(b"net/b", b"\x00\xffbinary", 0).unwrap();
        etcd.put(b"nez", b"outside", 0).unwrap();
        assert!(r2 > r1);
        let a = etcd.get(b"net/a").unwrap().unwrap();
        assert_eq!(a.key, b"net/a");
        assert_eq!(a.value, b"one");
        assert_eq!(
            (a.create_revision, a.mod_revision, a.version, a.lease),
            (r1, r1, 1, 0)
        );
        let r3 = etcd.put(b"net/a", b"", 0).unwrap();
        let a = etcd.get(b"net/a").unwrap().unwrap();
        assert_eq!(
            a.value, b"",
            "an empty value (omitted in the reply) reads back empty"
        );
        assert_eq!((a.create_revision, a.mod_revision, a.version), (r1, r3, 2));

        let (kvs, rev) = etcd.get_prefix(b"net/").unwrap();
        assert!(rev >= r3);
        let keys: Vec<&[u8]> = kvs.iter().map(|kv| kv.key.as_slice()).collect();
        assert_eq!(keys, [b"net/a".as_slice(), b"net/b"]);
        assert_eq!(kvs[1].value, b"\x00\xffbinary");

        assert_eq!(etcd.delete(b"net/a").unwrap(), 1);
        assert_eq!(etcd.delete(b"net/a").unwrap(), 0);
        assert_eq!(etcd.get(b"net/a").unwrap(), None);
        let (kvs, _) = etcd.get_prefix(b"net/").unwrap();
        assert_eq!(kvs.len(), 1);
        let (kvs, _) = etcd.get_prefix(b"nothing/").unwrap();
        assert!(kvs.is_empty());
    });
}

#[test]
fn txn_create_if_absent() {
    let etcd_ns = EtcdNs::start();
    etcd_ns.run(|etcd| {
        let claim = |holder: &[u8]| Txn {
            compare: vec![Compare::CreateRevision(b"lock/vni-7".to_vec(), 0)],
            success: vec![Op::Put {
                key: b"lock/vni-7".to_vec(),
                value: holder.to_vec(),
                lease: 0,
            }],
            failure: vec![Op::Get(b"lock/vni-7".to_vec())],
        };
        let first = etcd.txn(&claim(b"host-a")).unwrap();
        assert!(first.succeeded);
        assert!(first.gets.is_empty());
        let second = etcd.txn(&claim(b"host-b")).unwrap();
        assert!(!second.succeeded);
        assert_eq!(second.revision, first.revision);
        assert_eq!(second.gets.len(), 1);
        assert_eq!(second.gets[0].len(), 1);
        assert_eq!(second.gets[0][0].value, b"host-a");
        assert_eq!(second.gets[0][0].create_revision, first.revision);

        // Compare on mod revision and value, with prefix ops in the branches.
        let kv = &second.gets[0][0];
        etcd.put(b"p/1", b"x", 0).unwrap();
        etcd.put(b"p/2", b"y", 0).unwrap();
        let swap = Txn {
            compare: vec![
                Compare::ModRevision(b"lock/vni-7".to_vec(), kv.mod_revision),
                Compare::Value(b"lock/vni-7".to_vec(), b"host-a".to_vec()),
            ],
            success: vec![
                Op::GetPrefix(b"p/".to_vec()),
                Op::DeletePrefix(b"p/".to_vec()),
                Op::Delete(b"lock/vni-7".to_vec()),
                Op::Get(b"lock/vni-7".to_vec()),
            ],
            failure: vec![],
        };
        let result = etcd.txn(&swap).unwrap();
        assert!(result.succeeded);
        assert_eq!(result.gets.len(), 2);
        assert_eq!(result.gets[0].len(), 2);
        assert!(result.gets[1].is_empty());
        assert_eq!(etcd.get_prefix(b"p/").unwrap().0, vec![]);
        assert!(!etcd.txn(&swap).unwrap().succeeded);
    });
}

#[test]
fn leases() {
    let etcd_ns = EtcdNs::start();
    etcd_ns.run(|etcd| {
        let lease = etcd.lease_grant(30).unwrap();
        assert_ne!(lease, 0);
        let (ttl, granted) = etcd.lease_time_to_live(lease).unwrap().unwrap();
        assert_eq!(granted, 30);
        assert!(ttl > 0 && ttl <= 30);
        etcd.put(b"host/a", b"alive", lease).unwrap();
        assert_eq!(etcd.get(b"host/a").unwrap().unwrap().lease, lease);
        let ttl = etcd.lease_keepalive(lease).unwrap();
        assert!(ttl > 0 && ttl <= 30, "ttl {ttl}");
        etcd.lease_revoke(lease).unwrap();
        assert_eq!(etcd.get(b"host/a").unwrap(), None);
        assert!(matches!(
            etcd.lease_keepalive(lease),
            Err(EtcdError::LeaseNotFound(id)) if id == lease
        ));
        assert_eq!(etcd.lease_time_to_live(lease).unwrap(), None);
        assert!(matches!(
            etcd.lease_revoke(lease),
            Err(EtcdError::LeaseNotFound(id)) if id == lease
        ));
        assert!(matches!(
            etcd.put(b"host/a", b"x", lease),
            Err(EtcdError::LeaseNotFound(id)) if id == lease
        ));
        // A short lease that is not kept alive expires by itself.
        let short = etcd.lease_grant(1).unwrap();
        etcd.put(b"host/b", b"alive", short).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while etcd.get(b"host/b").unwrap().is_some() {
            assert!(Instant::now() < deadline, "leased key outlived its lease");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

#[test]
fn watch_prefix_sees_puts_and_deletes_in_order() {
    let etcd_ns = EtcdNs::start();
    etcd_ns.run(|etcd| {
        let (_, rev) = etcd.get_prefix(b"w/").unwrap();
        let mut watch = etcd
            .watch_prefix(b"w/", rev + 1, Duration::from_millis(300))
            .unwrap();
        // Nothing happened yet: the idle timeout says so, and the watch stays usable.
        assert_eq!(watch.next().unwrap(), None);

        let writer = etcd.clone();
        let writes = spawn(move || {
            let put = writer.put(b"w/a", b"1", 0).unwrap();
            writer.put(b"other", b"not watched", 0).unwrap();
            assert_eq!(writer.delete(b"w/a").unwrap(), 1);
            let (_, del) = writer.get_prefix(b"w/").unwrap();
            (put, del)
        });
        let (put_rev, del_rev) = writes.join().unwrap();

        let mut events = Vec::new();
        let mut last_batch_rev = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while events.len() < 2 {
            assert!(Instant::now() < deadline, "watch saw only {events:?}");
            if let Some(batch) = watch.next().unwrap() {
                assert!(batch.revision >= last_batch_rev);
                last_batch_rev = batch.revision;
                events.extend(batch.events);
            }
        }
        assert_eq!(events.len(), 2, "{events:?}");
        match &events[0] {
            Event::Put(kv) => {
                assert_eq!(
                    (kv.key.as_slice(), kv.value.as_slice()),
                    (b"w/a".as_slice(), b"1".as_slice())
                );
                assert_eq!(kv.mod_revision, put_rev);
            }
            other => panic!("expected the put first, got {other:?}"),
        }
        assert_eq!(
            events[1],
            Event::Delete {
                key: b"w/a".to_vec(),
                mod_revision: del_rev
            }
        );
        assert!(last_batch_rev >= del_rev);

        // Watching again from the put's revision replays history.
        let mut replay = etcd
            .watch_prefix(b"w/", put_rev, Duration::from_secs(2))
            .unwrap();
        let batch = replay.next().unwrap().expect("history");
        assert!(matches!(&batch.events[0], Event::Put(kv) if kv.mod_revision == put_rev));
    });
}

#[test]
fn watch_from_a_compacted_revision_fails() {
    let etcd_ns = EtcdNs::start();
    let ns_name = etcd_ns.ns.clone();
    let (tx, rx) = std::sync::mpsc::channel::<i64>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // etcdctl compacts from outside the client thread, in the same namespace.
    let compactor = std::thread::spawn(move || {
        let rev = rx.recv().unwrap();
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns_name,
                "etcdctl",
                "--endpoints",
                CLIENT_URL,
            ])
            .args(["compact", &rev.to_string()])
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        done_tx.send(()).unwrap();
    });
    etcd_ns.run(move |etcd| {
        let first = etcd.put(b"c/k", b"1", 0).unwrap();
        etcd.put(b"c/k", b"2", 0).unwrap();
        let last = etcd.put(b"c/k", b"3", 0).unwrap();
        tx.send(last).unwrap();
        done_rx.recv().unwrap();
        let mut watch = etcd
            .watch_prefix(b"c/", first, Duration::from_secs(5))
            .unwrap();
        match watch.next() {
            Err(EtcdError::Compacted { compact_revision }) => assert_eq!(compact_revision, last),
            other => panic!("expected Compacted, got {other:?}"),
        }
        // The watch stays failed.
        assert!(matches!(watch.next(), Err(EtcdError::Compacted { .. })));
        // From the compaction revision on, history is there.
        let mut watch = etcd
            .watch_prefix(b"c/", last, Duration::from_secs(5))
            .unwrap();
        let batch = watch.next().unwrap().expect("the last put");
        assert!(matches!(&batch.events[..], [Event::Put(kv)] if kv.value == b"3"));
    });
    compactor.join().unwrap();
    // etcdctl sees what the client wrote.
    assert!(etcd_ns
        .etcdctl(&["get", "c/k", "--print-value-only"])
        .contains('3'));
}

#[test]
fn failover_and_unreachable() {
    let etcd_ns = EtcdNs::start();
    etcd_ns.run(|_| {
        let dead = "http://127.0.0.1:1".to_string();
        let both = Etcd::new(&[dead.clone(), CLIENT_URL.to_string()], None, TIMEOUT).unwrap();
        assert_eq!(both.endpoints(), [dead.clone(), CLIENT_URL.to_string()]);
        both.put(b"f/k", b"v", 0).unwrap();
        assert_eq!(both.get(b"f/k").unwrap().unwrap().value, b"v");
        let mut watch = both.watch_prefix(b"f/", 1, Duration::from_secs(2)).unwrap();
        assert!(watch.next().unwrap().is_some());

        // Refused: fails at once.
        let only_dead = Etcd::new(std::slice::from_ref(&dead), None, TIMEOUT).unwrap();
        let start = Instant::now();
        match only_dead.get(b"f/k") {
            Err(EtcdError::Unreachable { endpoints, last }) => {
                assert_eq!(endpoints, dead);
                assert!(!last.is_empty());
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
        assert!(start.elapsed() < TIMEOUT + Duration::from_secs(1));

        // Accepted but never answered: fails after about the timeout.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_url = format!("http://{}", silent.local_addr().unwrap());
        let timeout = Duration::from_secs(1);
        let hung = Etcd::new(&[silent_url], None, timeout).unwrap();
        let start = Instant::now();
        assert!(matches!(
            hung.put(b"f/k", b"v", 0),
            Err(EtcdError::Unreachable { .. })
        ));
        let took = start.elapsed();
        assert!(
            took >= timeout - Duration::from_millis(100) && took < timeout * 3,
            "took {took:?}"
        );
        drop(silent);
    });
}

#[test]
fn https_with_ca_and_client_certificate() {
    let etcd_ns = EtcdNs::start_tls();
    let tls = etcd_ns.tls.clone().unwrap();
    let url = etcd_ns.url.clone();
    etcd_ns.run(move |etcd| {
        etcd.put(b"tls/k", b"v", 0).unwrap();
        assert_eq!(etcd.get(b"tls/k").unwrap().unwrap().value, b"v");
        let mut watch = etcd
            .watch_prefix(b"tls/", 1, Duration::from_secs(2))
            .unwrap();
        assert!(watch.next().unwrap().is_some());

        // Without the client certificate the member refuses the client.
        let ca_only = TlsFiles {
            ca_file: tls.ca_file.clone(),
            cert_file: None,
            key_file: None,
        };
        let anonymous = Etcd::new(std::slice::from_ref(&url), Some(&ca_only), TIMEOUT).unwrap();
        assert!(matches!(
            anonymous.get(b"tls/k"),
            Err(EtcdError::Unreachable { .. })
        ));
        // Without the CA the member's certificate is not trusted.
        let no_ca = TlsFiles {
            ca_file: None,
            ..tls.clone()
        };
        let untrusting = Etcd::new(&[url], Some(&no_ca), TIMEOUT).unwrap();
        match untrusting.get(b"tls/k") {
            Err(EtcdError::Unreachable { last, .. }) => {
                assert!(last.to_lowercase().contains("cert"), "{last}")
            }
            other => panic!("expected a certificate error, got {other:?}"),
        }
    });
}
