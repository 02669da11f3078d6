//! A small blocking client for etcd v3, spoken through etcd's JSON gRPC gateway.
//!
//! # What it is
//!
//! etcd serves its v3 gRPC API a second time as JSON over HTTP/1.1 on the client port (the
//! "gRPC gateway", paths under `/v3/`). Every request here is one `POST` of a JSON body to such
//! a path; keys and values travel base64-encoded, and int64 fields arrive as JSON strings
//! (proto3's JSON mapping), with fields at their zero value left out of replies. The client
//! covers what a switch needs to share state between hosts: get / get by prefix, put, delete,
//! transactions (compare-and-swap), leases and prefix watches.
//!
//! # Why the JSON gateway
//!
//! The usual Rust client, `etcd-client`, is built on tonic: it needs `protoc` at build time and a
//! tokio runtime at run time. The data-plane host runs a switch of plain threads and blocking
//! syscalls, and the cluster state changes rarely, so a handful of HTTP requests from a blocking
//! client ([`ureq`], rustls for https) costs nothing measurable and brings in neither an async
//! runtime nor a code generator. A watch is one long HTTP response whose body streams one JSON
//! object per line, read by a blocking [`Watch::next`].
//!
//! # Endpoints and failover
//!
//! An [`Etcd`] holds the endpoints of several members. A request goes first to the member that
//! answered last, and on a transport error (refused, timed out, reset, TLS failure), an HTTP
//! error without a gRPC error body, or gRPC `Unavailable` (no leader, member stopping), it is sent
//! to the next member in order. When every member failed, the error is
//! [`EtcdError::Unreachable`]. A request whose reply was lost may have been applied by the member
//! before it failed; the retry on the next member then applies it a second time (harmless for
//! puts and deletes; a transaction should compare on something it changes).
//!
//! # Thread-safety
//!
//! [`Etcd`] is `Clone + Send + Sync`: clones share one connection pool and one "last member that
//! answered", so one client can be handed to every thread that needs it. A [`Watch`] is `Send`
//! and belongs to the thread that reads it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use serde_json::{json, Value};

/// PEM files for https endpoints.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA certificates that sign the members' certificates; the web's public roots if `None`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain, for members that require client certificates (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

/// What can go wrong talking to etcd.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered; `last` is the last transport error.
    #[error("etcd unreachable at {endpoints}: {last}")]
    Unreachable { endpoints: String, last: String },
    /// etcd answered with a gRPC error (code, message).
    #[error("etcd error {code}: {message}")]
    Status { code: i64, message: String },
    /// The watch start revision was compacted; the caller must re-read everything.
    #[error("watch revision compacted (oldest available {compact_revision})")]
    Compacted { compact_revision: i64 },
    /// The lease does not exist (never granted, revoked, or expired).
    #[error("lease {0} not found or expired")]
    LeaseNotFound(i64),
    /// etcd's reply could not be understood.
    #[error("unexpected reply from etcd: {0}")]
    Protocol(String),
    /// The TLS files could not be read or do not make a valid configuration.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// One key-value pair as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the put that created the key (since its last deletion).
    pub create_revision: i64,
    /// Revision of the last put to the key.
    pub mod_revision: i64,
    /// Number of puts since the key was created (1 after the first).
    pub version: i64,
    /// Lease the key is attached to, 0 for none.
    pub lease: i64,
}

/// One condition of a [`Txn`]; every condition must hold for the success branch to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// key's create_revision == rev (0 = key absent)
    CreateRevision(Vec<u8>, i64),
    /// key's mod_revision == rev (0 = key absent)
    ModRevision(Vec<u8>, i64),
    /// key's value == value (false if the key is absent)
    Value(Vec<u8>, Vec<u8>),
}

/// One operation of a [`Txn`] branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Put `value` at `key`, attached to `lease` (0 = none).
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    /// Delete one key.
    Delete(Vec<u8>),
    /// Delete every key under a prefix.
    DeletePrefix(Vec<u8>),
    /// Read one key; its kvs (zero or one) appear in [`TxnResult::gets`].
    Get(Vec<u8>),
    /// Read every key under a prefix; its kvs appear in [`TxnResult::gets`].
    GetPrefix(Vec<u8>),
}

/// A transaction: if every `compare` holds, run `success`, otherwise `failure`, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// What a [`Txn`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether the compares held (the success branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// For each Get/GetPrefix op of the branch taken, in order, the kvs found.
    pub gets: Vec<Vec<Kv>>,
}

/// One change seen by a [`Watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key was created or changed; the kv as it is after the put.
    Put(Kv),
    /// The key was deleted at `mod_revision`.
    Delete { key: Vec<u8>, mod_revision: i64 },
}

/// The events of one or more revisions, in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    /// The store's revision when the batch was sent (at least the last event's revision).
    pub revision: i64,
    pub events: Vec<Event>,
}

/// A blocking client for etcd's JSON gateway; see the module documentation.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    /// As given to [`Etcd::new`].
    endpoints: Vec<String>,
    /// The same, without a trailing slash, ready to have a path appended.
    bases: Vec<String>,
    /// Agent for unary requests: connect and overall deadline both `timeout`.
    agent: ureq::Agent,
    /// Custom TLS configuration, reused by the agents of watches.
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    /// Index in `bases` of the member that answered last.
    preferred: AtomicUsize,
}

/// Largest reply body read (a get_prefix of a big prefix is the largest reply there is).
const MAX_REPLY: u64 = 512 << 20;

/// gRPC status code `Unavailable`: the member cannot serve now, another one may.
const GRPC_UNAVAILABLE: i64 = 14;
/// gRPC status code `NotFound`, as etcd answers for an unknown lease.
const GRPC_NOT_FOUND: i64 = 5;
/// gRPC status code `Cancelled`, for a watch the server cancelled for another reason than
/// compaction.
const GRPC_CANCELLED: i64 = 1;

impl Etcd {
    /// endpoints like "http://192.0.2.100:2379" or "https://..."; several members: requests go
    /// to the last one that answered and fail over in order to the others on transport errors.
    /// `timeout` bounds each request (connect + whole reply), except watch streams.
    pub fn new(
        endpoints: &[String],
        tls: Option<&TlsFiles>,
        timeout: Duration,
    ) -> Result<Etcd, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Unreachable {
                endpoints: String::new(),
                last: "no endpoints given".into(),
            });
        }
        let mut bases = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let base = endpoint.trim_end_matches('/');
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(EtcdError::Unreachable {
                    endpoints: endpoints.join(","),
                    last: format!("{endpoint}: endpoint must start with http:// or https://"),
                });
            }
            bases.push(base.to_string());
        }
        let tls = tls.map(client_config).transpose()?.map(Arc::new);
        let agent = agent_builder(tls.as_ref())
            .timeout_connect(timeout)
            .timeout(timeout)
            .build();
        Ok(Etcd {
            inner: Arc::new(Inner {
                endpoints: endpoints.to_vec(),
                bases,
                agent,
                tls,
                timeout,
                preferred: AtomicUsize::new(0),
            }),
        })
    }

    /// The endpoints as given to [`Etcd::new`].
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The kv at `key`, `None` if the key does not exist.
    pub fn get(&self, key: &[u8]) -> Result<Option<Kv>, EtcdError> {
        let reply: RangeResponse = self.call("/v3/kv/range", &range_request(key, false))?;
        Ok(reply.kvs.into_iter().next().map(Kv::from))
    }

    /// All keys under prefix, and the store's revision at that read.
    pub fn get_prefix(&self, prefix: &[u8]) -> Result<(Vec<Kv>, i64), EtcdError> {
        let reply: RangeResponse = self.call("/v3/kv/range", &range_request(prefix, true))?;
        Ok((
            reply.kvs.into_iter().map(Kv::from).collect(),
            reply.header.revision,
        ))
    }

    /// Puts `value` at `key`, attached to `lease` (0 = none); returns the store's new revision.
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let reply: HeaderOnly = self
            .call("/v3/kv/put", &put_request(key, value, lease))
            .map_err(|e| lease_error(e, lease))?;
        Ok(reply.header.revision)
    }

    /// Deletes `key`; returns the number of keys deleted (0 or 1).
    pub fn delete(&self, key: &[u8]) -> Result<i64, EtcdError> {
        let reply: DeleteRangeResponse =
            self.call("/v3/kv/deleterange", &delete_request(key, false))?;
        Ok(reply.deleted)
    }

    /// Runs a transaction: atomically, `success` if every compare holds, else `failure`.
    pub fn txn(&self, txn: &Txn) -> Result<TxnResult, EtcdError> {
        let reply: TxnResponse = self.call("/v3/kv/txn", &txn_request(txn))?;
        let branch = if reply.succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        txn_result(reply, branch)
    }

    /// Grants a lease of `ttl_secs` seconds; returns its id.
    pub fn lease_grant(&self, ttl_secs: i64) -> Result<i64, EtcdError> {
        let reply: LeaseResponse = self.call(
            "/v3/lease/grant",
            &json!({ "TTL": ttl_secs.to_string(), "ID": "0" }),
        )?;
        if !reply.error.is_empty() {
            return Err(EtcdError::Status {
                code: 0,
                message: reply.error,
            });
        }
        if reply.id == 0 {
            return Err(EtcdError::Protocol(
                "lease grant returned no lease id".into(),
            ));
        }
        Ok(reply.id)
    }

    /// Renews the lease once; Err(LeaseNotFound) if it has expired (gateway answers TTL 0 or no TTL).
    pub fn lease_keepalive(&self, id: i64) -> Result<i64, EtcdError> {
        // LeaseKeepAlive is a bidirectional stream; the gateway sends the one request of the body,
        // closes its side, and the reply is a stream of one `{"result":{..}}` line.
        let body = self
            .post(
                &self.inner.agent,
                "/v3/lease/keepalive",
                &json!({ "ID": id.to_string() }),
            )
            .map_err(|e| lease_error(e, id))
            .and_then(|(reply, base)| read_reply(reply, &base))?;
        let line = body
            .split(|&b| b == b'\n')
            .find(|line| !line.trim_ascii().is_empty())
            .ok_or_else(|| EtcdError::Protocol("empty lease keepalive reply".into()))?;
        let reply: LeaseResponse = parse_stream_message(line)?
            .ok_or_else(|| EtcdError::Protocol("lease keepalive reply without result".into()))?;
        if reply.ttl <= 0 {
            return Err(EtcdError::LeaseNotFound(id));
        }
        Ok(reply.ttl)
    }

    /// Revokes the lease, deleting every key attached to it.
    pub fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        let _: HeaderOnly = self
            .call("/v3/lease/revoke", &json!({ "ID": id.to_string() }))
            .map_err(|e| lease_error(e, id))?;
        Ok(())
    }

    /// Remaining and granted TTL, None if the lease does not exist.
    pub fn lease_time_to_live(&self, id: i64) -> Result<Option<(i64, i64)>, EtcdError> {
        let reply: LeaseResponse = self
            .call("/v3/lease/timetolive", &json!({ "ID": id.to_string() }))
            .map_err(|e| lease_error(e, id))
            .or_else(|e| match e {
                // Older members answer NotFound where 3.4 answers TTL -1.
                EtcdError::LeaseNotFound(_) => Ok(LeaseResponse {
                    ttl: -1,
                    ..LeaseResponse::default()
                }),
                e => Err(e),
            })?;
        if reply.ttl < 0 {
            return Ok(None);
        }
        Ok(Some((reply.ttl, reply.granted_ttl)))
    }

    /// Watches every key under prefix from start_revision (inclusive). `idle` is the read timeout
    /// of the stream: next() returns Ok(None) when nothing arrived for that long (the caller may
    /// keep calling next() or reconnect from its last revision + 1).
    ///
    /// `idle` also bounds the wait for the stream to open (etcd sends the reply's headers with
    /// the watch's creation acknowledgement); connecting is bounded by the client's timeout.
    pub fn watch_prefix(
        &self,
        prefix: &[u8],
        start_revision: i64,
        idle: Duration,
    ) -> Result<Watch, EtcdError> {
        // An agent of its own: no overall deadline, the read timeout is `idle`.
        let agent = agent_builder(self.inner.tls.as_ref())
            .timeout_connect(self.inner.timeout)
            .timeout_write(self.inner.timeout)
            .timeout_read(idle)
            .build();
        let (reply, base) =
            self.post(&agent, "/v3/watch", &watch_request(prefix, start_revision))?;
        Ok(Watch {
            reader: BufReader::new(reply.into_reader()),
            line: Vec::new(),
            endpoint: base,
            ended: None,
        })
    }

    /// POSTs `body` to `path` and parses the reply as `T`.
    fn call<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, EtcdError> {
        let (reply, base) = self.post(&self.inner.agent, path, body)?;
        let bytes = read_reply(reply, &base)?;
        parse_reply(&bytes)
    }

    /// POSTs `body` to `path` on the preferred member, failing over to the others in order.
    /// Returns the successful reply and the endpoint that gave it.
    fn post(
        &self,
        agent: &ureq::Agent,
        path: &str,
        body: &Value,
    ) -> Result<(ureq::Response, String), EtcdError> {
        let inner = &self.inner;
        let body = body.to_string();
        let n = inner.bases.len();
        let first = inner.preferred.load(Ordering::Relaxed) % n;
        let mut last = String::new();
        for i in 0..n {
            let index = (first + i) % n;
            let base = &inner.bases[index];
            let url = format!("{base}{path}");
            match agent
                .post(&url)
                .set("Content-Type", "application/json")
                .send_string(&body)
            {
                Ok(reply) => {
                    inner.preferred.store(index, Ordering::Relaxed);
                    return Ok((reply, base.clone()));
                }
                Err(ureq::Error::Status(http, reply)) => {
                    let text = read_body(reply).unwrap_or_default();
                    match parse_error_body(&text) {
                        Some((code, message)) if code != GRPC_UNAVAILABLE => {
                            inner.preferred.store(index, Ordering::Relaxed);
                            return Err(EtcdError::Status { code, message });
                        }
                        Some((code, message)) => {
                            last = format!("{url}: etcd error {code}: {message}");
                        }
                        None => {
                            last = format!("{url}: HTTP {http}: {}", snippet(&text));
                        }
                    }
                }
                Err(ureq::Error::Transport(e)) => last = e.to_string(),
            }
        }
        Err(EtcdError::Unreachable {
            endpoints: inner.endpoints.join(","),
            last,
        })
    }
}

/// An open watch; see [`Etcd::watch_prefix`].
pub struct Watch {
    reader: BufReader<Box<dyn Read + Send + Sync + 'static>>,
    /// The part of a line read before an idle timeout.
    line: Vec<u8>,
    endpoint: String,
    /// Set once the stream is over: every later next() returns it again.
    ended: Option<EtcdError>,
}

impl Watch {
    /// The next batch of events (skip the creation acknowledgement and empty progress messages
    /// internally, but return Ok(None) on idle timeout). Err(Compacted{..}) if the start revision
    /// was compacted; Err(Unreachable) if the stream ended or broke.
    // Not an Iterator: an idle timeout is Ok(None), which is no end of the stream.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<WatchBatch>, EtcdError> {
        loop {
            if let Some(e) = &self.ended {
                return Err(e.clone());
            }
            match self.reader.read_until(b'\n', &mut self.line) {
                Ok(0) if self.line.is_empty() => {
                    self.ended = Some(self.broken("watch stream ended".into()));
                    continue;
                }
                // A line, or the last bytes of a stream that ended without a newline.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Whatever came of a line before the timeout stays in `self.line`.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => {
                    self.ended = Some(self.broken(format!("watch stream broke: {e}")));
                    continue;
                }
            }
            let line = std::mem::take(&mut self.line);
            match parse_watch_line(&line) {
                Ok(Some(batch)) => return Ok(Some(batch)),
                Ok(None) => {}
                Err(e) => {
                    self.ended = Some(e.clone());
                    return Err(e);
                }
            }
        }
    }

    fn broken(&self, last: String) -> EtcdError {
        EtcdError::Unreachable {
            endpoints: self.endpoint.clone(),
            last,
        }
    }
}

/// Smallest key greater than every key with this prefix (etcd's range_end for a prefix).
///
/// Trailing 0xff bytes are dropped and the last remaining byte incremented. A prefix of only
/// 0xff bytes (or an empty one) has no such key; etcd's "\0" range end then means "every key
/// from the start key on".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last == 0xff {
            end.pop();
        } else {
            *end.last_mut().expect("not empty") = last + 1;
            return end;
        }
    }
    vec![0]
}

// ---- TLS ----

fn agent_builder(tls: Option<&Arc<rustls::ClientConfig>>) -> ureq::AgentBuilder {
    let builder = ureq::AgentBuilder::new().max_idle_connections_per_host(4);
    match tls {
        Some(config) => builder.tls_config(config.clone()),
        None => builder,
    }
}

fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, EtcdError> {
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca_file {
        Some(path) => {
            let certs = read_certs(path)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(EtcdError::Tls(format!(
                    "{}: no usable CA certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EtcdError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&files.cert_file, &files.key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key_der = rustls_pemfile::private_key(&mut open_pem(key)?)
                .map_err(|e| EtcdError::Tls(format!("{}: {e}", key.display())))?
                .ok_or_else(|| EtcdError::Tls(format!("{}: no private key", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| EtcdError::Tls(format!("client certificate: {e}")))
        }
        _ => Err(EtcdError::Tls(
            "a client certificate needs both cert_file and key_file".into(),
        )),
    }
}

fn open_pem(path: &Path) -> Result<BufReader<File>, EtcdError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| EtcdError::Tls(format!("{}: {e}", path.display())))
}

fn read_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, EtcdError> {
    let certs = rustls_pemfile::certs(&mut open_pem(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EtcdError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(EtcdError::Tls(format!(
            "{}: no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

// ---- requests ----

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn range_request(key: &[u8], prefix: bool) -> Value {
    if prefix {
        json!({ "key": b64(key), "range_end": b64(&prefix_end(key)) })
    } else {
        json!({ "key": b64(key) })
    }
}

fn put_request(key: &[u8], value: &[u8], lease: i64) -> Value {
    json!({ "key": b64(key), "value": b64(value), "lease": lease.to_string() })
}

fn delete_request(key: &[u8], prefix: bool) -> Value {
    // Same fields as a range request.
    range_request(key, prefix)
}

fn compare_json(compare: &Compare) -> Value {
    match compare {
        Compare::CreateRevision(key, rev) => json!({
            "key": b64(key), "result": "EQUAL", "target": "CREATE",
            "create_revision": rev.to_string(),
        }),
        Compare::ModRevision(key, rev) => json!({
            "key": b64(key), "result": "EQUAL", "target": "MOD",
            "mod_revision": rev.to_string(),
        }),
        Compare::Value(key, value) => json!({
            "key": b64(key), "result": "EQUAL", "target": "VALUE", "value": b64(value),
        }),
    }
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => json!({ "request_put": put_request(key, value, *lease) }),
        Op::Delete(key) => json!({ "request_delete_range": delete_request(key, false) }),
        Op::DeletePrefix(key) => json!({ "request_delete_range": delete_request(key, true) }),
        Op::Get(key) => json!({ "request_range": range_request(key, false) }),
        Op::GetPrefix(key) => json!({ "request_range": range_request(key, true) }),
    }
}

fn txn_request(txn: &Txn) -> Value {
    json!({
        "compare": txn.compare.iter().map(compare_json).collect::<Vec<_>>(),
        "success": txn.success.iter().map(op_json).collect::<Vec<_>>(),
        "failure": txn.failure.iter().map(op_json).collect::<Vec<_>>(),
    })
}

fn watch_request(prefix: &[u8], start_revision: i64) -> Value {
    json!({ "create_request": {
        "key": b64(prefix),
        "range_end": b64(&prefix_end(prefix)),
        "start_revision": start_revision.to_string(),
    }})
}

// ---- replies ----

/// Reads a whole reply body.
///
/// etcd's gateway ends chunked error replies with an HTTP trailer
/// (`Grpc-Trailer-Content-Type`), which ureq's chunk decoder does not understand: it returns
/// `InvalidInput` after handing out every byte of the body. Such an error after some data is
/// the end of the body; the connection is then not reused.
fn read_body(reply: ureq::Response) -> io::Result<Vec<u8>> {
    let mut reader = reply.into_reader().take(MAX_REPLY);
    let mut body = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(body),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidInput && !body.is_empty() => {
                return Ok(body)
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads a successful reply's body. A failure here is not retried on another member: the
/// request reached this one and may have been applied.
fn read_reply(reply: ureq::Response, base: &str) -> Result<Vec<u8>, EtcdError> {
    read_body(reply).map_err(|e| EtcdError::Unreachable {
        endpoints: base.to_string(),
        last: format!("reading the reply: {e}"),
    })
}

fn parse_reply<T: DeserializeOwned>(body: &[u8]) -> Result<T, EtcdError> {
    if let Some((code, message)) = parse_error_body(body) {
        return Err(EtcdError::Status { code, message });
    }
    serde_json::from_slice(body)
        .map_err(|e| EtcdError::Protocol(format!("{e} in {}", snippet(body))))
}

/// The gRPC error in a body, if it is one: unary replies carry
/// `{"error":"..","code":N,"message":".."}`, streams `{"error":{"grpc_code":N,"message":".."}}`.
fn parse_error_body(body: &[u8]) -> Option<(i64, String)> {
    let value: Value = serde_json::from_slice(body.trim_ascii()).ok()?;
    let error = value.get("error")?;
    let (code, message) = if error.is_object() {
        (error.get("grpc_code"), error.get("message"))
    } else {
        (value.get("code"), value.get("message"))
    };
    let code = code.and_then(Value::as_i64).unwrap_or(2); // 2 = Unknown
    let message = message
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .unwrap_or("(no message)")
        .to_string();
    Some((code, message))
}

/// One line of a streamed reply: `{"result":{..}}`, or a gRPC error. `None` if neither.
fn parse_stream_message<T: DeserializeOwned>(line: &[u8]) -> Result<Option<T>, EtcdError> {
    if let Some((code, message)) = parse_error_body(line) {
        return Err(EtcdError::Status { code, message });
    }
    #[derive(Deserialize)]
    struct Message<T> {
        result: Option<T>,
    }
    let message: Message<T> = serde_json::from_slice(line)
        .map_err(|e| EtcdError::Protocol(format!("{e} in {}", snippet(line))))?;
    Ok(message.result)
}

/// One line of a watch stream: a batch of events, `None` for messages without events (creation
/// acknowledgement, progress), or the error that ends the watch.
fn parse_watch_line(line: &[u8]) -> Result<Option<WatchBatch>, EtcdError> {
    if line.trim_ascii().is_empty() {
        return Ok(None);
    }
    let Some(reply) = parse_stream_message::<WatchResponse>(line)? else {
        return Err(EtcdError::Protocol(format!(
            "watch message without result: {}",
            snippet(line)
        )));
    };
    if reply.compact_revision != 0 {
        return Err(EtcdError::Compacted {
            compact_revision: reply.compact_revision,
        });
    }
    if reply.canceled {
        let message = if reply.cancel_reason.is_empty() {
            "watch canceled by etcd".to_string()
        } else {
            format!("watch canceled: {}", reply.cancel_reason)
        };
        return Err(EtcdError::Status {
            code: GRPC_CANCELLED,
            message,
        });
    }
    if reply.events.is_empty() {
        return Ok(None);
    }
    let events = reply
        .events
        .into_iter()
        .map(Event::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(WatchBatch {
        revision: reply.header.revision,
        events,
    }))
}

fn txn_result(reply: TxnResponse, branch: &[Op]) -> Result<TxnResult, EtcdError> {
    if reply.responses.len() != branch.len() {
        return Err(EtcdError::Protocol(format!(
            "txn answered {} responses for {} ops",
            reply.responses.len(),
            branch.len()
        )));
    }
    let mut gets = Vec::new();
    for (op, response) in branch.iter().zip(reply.responses) {
        if matches!(op, Op::Get(_) | Op::GetPrefix(_)) {
            let range = response.response_range.ok_or_else(|| {
                EtcdError::Protocol("txn answered a get with no range response".into())
            })?;
            gets.push(range.kvs.into_iter().map(Kv::from).collect());
        }
    }
    Ok(TxnResult {
        succeeded: reply.succeeded,
        revision: reply.header.revision,
        gets,
    })
}

/// Maps etcd's "lease not found" to [`EtcdError::LeaseNotFound`].
fn lease_error(e: EtcdError, id: i64) -> EtcdError {
    match e {
        EtcdError::Status { code, ref message }
            if code == GRPC_NOT_FOUND && message.contains("lease not found") =>
        {
            EtcdError::LeaseNotFound(id)
        }
        e => e,
    }
}

/// The start of a body, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

// ---- reply JSON (proto3 JSON mapping: zero values omitted, int64 as strings) ----

/// int64 as proto3 JSON writes it: a string, or a number; absent or null is 0.
fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(i64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(0),
        Some(Raw::Number(n)) => Ok(n),
        Some(Raw::Text(s)) => s
            .parse()
            .map_err(|_| D::Error::custom(format!("not an int64: {s:?}"))),
    }
}

/// bytes as proto3 JSON writes them: base64; absent or null is empty.
fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(s) => B64
            .decode(s.as_bytes())
            .map_err(|e| D::Error::custom(format!("bad base64: {e}"))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResponseHeader {
    #[serde(deserialize_with = "de_i64")]
    revision: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HeaderOnly {
    header: ResponseHeader,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawKv {
    #[serde(deserialize_with = "de_bytes")]
    key: Vec<u8>,
    #[serde(deserialize_with = "de_bytes")]
    value: Vec<u8>,
    #[serde(deserialize_with = "de_i64", alias = "createRevision")]
    create_revision: i64,
    #[serde(deserialize_with = "de_i64", alias = "modRevision")]
    mod_revision: i64,
    #[serde(deserialize_with = "de_i64")]
    version: i64,
    #[serde(deserialize_with = "de_i64")]
    lease: i64,
}

impl From<RawKv> for Kv {
    fn from(raw: RawKv) -> Kv {
        Kv {
            key: raw.key,
            value: raw.value,
            create_revision: raw.create_revision,
            mod_revision: raw.mod_revision,
            version: raw.version,
            lease: raw.lease,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RangeResponse {
    header: ResponseHeader,
    kvs: Vec<RawKv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteRangeResponse {
    #[serde(deserialize_with = "de_i64")]
    deleted: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResponseOp {
    #[serde(alias = "responseRange")]
    response_range: Option<RangeResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TxnResponse {
    header: ResponseHeader,
    succeeded: bool,
    responses: Vec<ResponseOp>,
}

/// The replies of grant, keepalive and timetolive share these fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LeaseResponse {
    #[serde(rename = "ID", alias = "id", deserialize_with = "de_i64")]
    id: i64,
    #[serde(rename = "TTL", alias = "ttl", deserialize_with = "de_i64")]
    ttl: i64,
    #[serde(
        rename = "grantedTTL",
        alias = "granted_ttl",
        deserialize_with = "de_i64"
    )]
    granted_ttl: i64,
    error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WatchResponse {
    header: ResponseHeader,
    canceled: bool,
    #[serde(deserialize_with = "de_i64", alias = "compactRevision")]
    compact_revision: i64,
    #[serde(alias = "cancelReason")]
    cancel_reason: String,
    events: Vec<RawEvent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawEvent {
    /// "PUT" (the zero value, so usually absent) or "DELETE"; numbers 0 and 1 accepted too.
    #[serde(rename = "type")]
    kind: Value,
    kv: RawKv,
}

impl TryFrom<RawEvent> for Event {
    type Error = EtcdError;

    fn try_from(raw: RawEvent) -> Result<Event, EtcdError> {
        let delete = match &raw.kind {
            Value::Null => false,
            Value::String(s) if s == "PUT" => false,
            Value::String(s) if s == "DELETE" => true,
            Value::Number(n) if n.as_i64() == Some(0) => false,
            Value::Number(n) if n.as_i64() == Some(1) => true,
            other => {
                return Err(EtcdError::Protocol(format!(
                    "unknown watch event type {other}"
                )))
            }
        };
        Ok(if delete {
            Event::Delete {
                key: raw.kv.key,
                mod_revision: raw.kv.mod_revision,
            }
        } else {
            Event::Put(raw.kv.into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Clone + Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn client_is_shareable() {
        assert_send_sync::<Etcd>();
        assert_send::<Watch>();
    }

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"a\xfe\xff\xff"), b"a\xff");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn requests_encode_keys_and_values_in_base64_and_int64_as_strings() {
        assert_eq!(range_request(b"foo", false), json!({ "key": "Zm9v" }));
        assert_eq!(
            range_request(b"foo", true),
            json!({ "key": "Zm9v", "range_end": "Zm9w" })
        );
        assert_eq!(
            put_request(b"foo", b"bar", 7),
            json!({ "key": "Zm9v", "value": "YmFy", "lease": "7" })
        );
        assert_eq!(
            put_request(b"\x00\xff", b"", 0),
            json!({ "key": "AP8=", "value": "", "lease": "0" })
        );
        assert_eq!(
            watch_request(b"n/", 12),
            json!({ "create_request": { "key": "bi8=", "range_end": "bjA=", "start_revision": "12" } })
        );
    }

    #[test]
    fn txn_request_names_targets_and_ops() {
        let txn = Txn {
            compare: vec![
                Compare::CreateRevision(b"k".to_vec(), 0),
                Compare::ModRevision(b"k".to_vec(), 5),
                Compare::Value(b"k".to_vec(), b"v".to_vec()),
            ],
            success: vec![
                Op::Put {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    lease: 3,
                },
                Op::Delete(b"d".to_vec()),
            ],
            failure: vec![
                Op::DeletePrefix(b"p".to_vec()),
                Op::Get(b"k".to_vec()),
                Op::GetPrefix(b"p".to_vec()),
            ],
        };
        assert_eq!(
            txn_request(&txn),
            json!({
                "compare": [
                    { "key": "aw==", "result": "EQUAL", "target": "CREATE", "create_revision": "0" },
                    { "key": "aw==", "result": "EQUAL", "target": "MOD", "mod_revision": "5" },
                    { "key": "aw==", "result": "EQUAL", "target": "VALUE", "value": "dg==" },
                ],
                "success": [
                    { "request_put": { "key": "aw==", "value": "dg==", "lease": "3" } },
                    { "request_delete_range": { "key": "ZA==" } },
                ],
                "failure": [
                    { "request_delete_range": { "key": "cA==", "range_end": "cQ==" } },
                    { "request_range": { "key": "aw==" } },
                    { "request_range": { "key": "cA==", "range_end": "cQ==" } },
                ],
            })
        );
    }

    // Replies below are as etcd 3.4.23's gateway sent them.

    #[test]
    fn range_reply_parses_with_string_int64s() {
        let body = br#"{"header":{"cluster_id":"2037210783374497686","member_id":"13195394291058371180","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#;
        let reply: RangeResponse = parse_reply(body).unwrap();
        assert_eq!(reply.header.revision, 2);
        let kvs: Vec<Kv> = reply.kvs.into_iter().map(Kv::from).collect();
        assert_eq!(
            kvs,
            vec![Kv {
                key: b"foo".to_vec(),
                value: b"bar".to_vec(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                lease: 0,
            }]
        );
    }

    #[test]
    fn missing_fields_are_zero() {
        // No key found: no "kvs", no "count".
        let reply: RangeResponse = parse_reply(br#"{"header":{"revision":"9"}}"#).unwrap();
        assert_eq!(reply.header.revision, 9);
        assert!(reply.kvs.is_empty());
        // An empty value is left out; so is everything of an empty reply.
        let reply: RangeResponse = parse_reply(br#"{"kvs":[{"key":"aw=="}]}"#).unwrap();
        assert_eq!(reply.header.revision, 0);
        assert_eq!(Kv::from(reply.kvs.into_iter().next().unwrap()).value, b"");
        let reply: DeleteRangeResponse = parse_reply(br#"{"header":{}}"#).unwrap();
        assert_eq!(reply.deleted, 0);
        // A keepalive of an expired lease: no TTL.
        let reply: LeaseResponse =
            parse_stream_message(br#"{"result":{"header":{"revision":"2"},"ID":"5"}}"#)
                .unwrap()
                .unwrap();
        assert_eq!((reply.id, reply.ttl), (5, 0));
        // Numbers where strings are expected are accepted too.
        let reply: LeaseResponse = parse_reply(br#"{"ID":7,"TTL":10,"grantedTTL":"60"}"#).unwrap();
        assert_eq!((reply.id, reply.ttl, reply.granted_ttl), (7, 10, 60));
    }

    #[test]
    fn bad_replies_are_protocol_errors() {
        assert!(matches!(
            parse_reply::<RangeResponse>(b"<html>"),
            Err(EtcdError::Protocol(_))
        ));
        assert!(matches!(
            parse_reply::<RangeResponse>(br#"{"kvs":[{"key":"not base64!"}]}"#),
            Err(EtcdError::Protocol(_))
        ));
        assert!(matches!(
            parse_reply::<RangeResponse>(br#"{"header":{"revision":"x"}}"#),
            Err(EtcdError::Protocol(_))
        ));
        assert!(matches!(
            parse_watch_line(br#"{"result":{"events":[{"type":"BOGUS","kv":{}}]}}"#),
            Err(EtcdError::Protocol(_))
        ));
        assert!(matches!(
            parse_watch_line(b"{}"),
            Err(EtcdError::Protocol(_))
        ));
    }

    #[test]
    fn txn_reply_collects_the_gets_of_the_branch_taken() {
        let body = br#"{"header":{"revision":"2"},"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}},{"response_delete_range":{"header":{"revision":"2"}}},{"response_range":{"header":{"revision":"2"}}}]}"#;
        let reply: TxnResponse = parse_reply(body).unwrap();
        assert!(!reply.succeeded);
        let branch = [
            Op::Get(b"foo".to_vec()),
            Op::Delete(b"x".to_vec()),
            Op::GetPrefix(b"y".to_vec()),
        ];
        let result = txn_result(reply, &branch).unwrap();
        assert_eq!(result.revision, 2);
        assert_eq!(result.gets.len(), 2);
        assert_eq!(result.gets[0][0].value, b"bar");
        assert!(result.gets[1].is_empty());

        let reply: TxnResponse = parse_reply(br#"{"succeeded":true,"responses":[]}"#).unwrap();
        assert!(matches!(
            txn_result(reply, &branch),
            Err(EtcdError::Protocol(_))
        ));
    }

    #[test]
    fn error_bodies_become_status() {
        let body = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        let err = parse_reply::<HeaderOnly>(body).unwrap_err();
        assert!(
            matches!(&err, EtcdError::Status { code: 5, message } if message == "etcdserver: requested lease not found")
        );
        assert!(matches!(lease_error(err, 42), EtcdError::LeaseNotFound(42)));
        // The streaming form.
        let line = br#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#;
        assert!(matches!(
            parse_watch_line(line),
            Err(EtcdError::Status { code: 14, message }) if message == "etcdserver: no leader"
        ));
        assert_eq!(parse_error_body(b"not json"), None);
        assert_eq!(parse_error_body(br#"{"header":{}}"#), None);
    }

    #[test]
    fn watch_lines() {
        let created = br#"{"result":{"header":{"cluster_id":"2037210783374497686","member_id":"13195394291058371180","revision":"5","raft_term":"2"},"created":true}}"#;
        assert_eq!(parse_watch_line(created).unwrap(), None);
        assert_eq!(parse_watch_line(b"\n").unwrap(), None);
        let events = br#"{"result":{"header":{"revision":"6"},"events":[{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"4","version":"3","value":"YmFy","lease":"77"}},{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"6"}}]}}"#;
        assert_eq!(
            parse_watch_line(events).unwrap(),
            Some(WatchBatch {
                revision: 6,
                events: vec![
                    Event::Put(Kv {
                        key: b"foo".to_vec(),
                        value: b"bar".to_vec(),
                        create_revision: 2,
                        mod_revision: 4,
                        version: 3,
                        lease: 77,
                    }),
                    Event::Delete {
                        key: b"foo".to_vec(),
                        mod_revision: 6,
                    },
                ],
            })
        );
        let compacted = br#"{"result":{"header":{"cluster_id":"2037210783374497686","member_id":"13195394291058371180","raft_term":"2"},"canceled":true,"compact_revision":"4"}}"#;
        assert!(matches!(
            parse_watch_line(compacted),
            Err(EtcdError::Compacted {
                compact_revision: 4
            })
        ));
        let canceled = br#"{"result":{"canceled":true,"cancel_reason":"permission denied"}}"#;
        assert!(matches!(
            parse_watch_line(canceled),
            Err(EtcdError::Status { code: 1, message }) if message.contains("permission denied")
        ));
    }

    #[test]
    fn new_checks_its_arguments() {
        let t = Duration::from_secs(1);
        assert!(Etcd::new(&[], None, t).is_err());
        assert!(Etcd::new(&["127.0.0.1:2379".to_string()], None, t).is_err());
        let etcd = Etcd::new(&["http://127.0.0.1:2379/".to_string()], None, t).unwrap();
        assert_eq!(etcd.endpoints(), ["http://127.0.0.1:2379/"]);
        assert_eq!(etcd.inner.bases, ["http://127.0.0.1:2379"]);
        let missing = TlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        assert!(matches!(
            Etcd::new(&["https://a:2379".to_string()], Some(&missing), t),
            Err(EtcdError::Tls(_))
        ));
        let half = TlsFiles {
            cert_file: Some("/nonexistent/c.pem".into()),
            ..TlsFiles::default()
        };
        assert!(matches!(
            Etcd::new(&["https://a:2379".to_string()], Some(&half), t),
            Err(EtcdError::Tls(_))
        ));
    }
}
