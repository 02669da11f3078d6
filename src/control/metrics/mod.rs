//! Prometheus metrics over HTTP (`[metrics] listen`): `GET /metrics` on a control thread.
//!
//! Overview. At start the daemon binds the listener (`bind`, so a taken or foreign address
//! stops it with a clear error before anything is made) and `serve` runs it on a thread of
//! its own. Each scrape asks the control actor, through its `ControlHandle` like any
//! front-end, for the views `vswitchctl show stats|networks|peers` and `cluster-status`
//! print, and writes them as metrics (exposition.rs). Nothing is counted for the metrics:
//! the workers' counters are read when `show` reads them, so nothing is added to the packet
//! path, and a metric always agrees with `show stats` at the same moment.
//!
//! Thread-safety: the listener thread owns the HTTP server; the handle is Send + Clone.
//! Requests are answered one at a time (a scrape is a few milliseconds); reading a request
//! is tiny_http's, on its own threads.

pub mod exposition;

use crate::control::api::{Request, ShowWhat};
use crate::control::server::ControlHandle;
pub use exposition::{Format, Snapshot};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr} ([metrics] listen): {reason}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub reason: String,
}

/// The bound HTTP listener, not yet serving.
pub struct MetricsListener {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
}

/// Binds `addr` for HTTP.
pub fn bind(addr: SocketAddr) -> Result<MetricsListener, BindError> {
    let server = tiny_http::Server::http(addr).map_err(|e| BindError {
        addr,
        reason: e.to_string(),
    })?;
    Ok(MetricsListener {
        server: Arc::new(server),
        addr,
    })
}

impl MetricsListener {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves scrapes on a thread named `vswitch-metrics` until the process ends. `cluster`:
    /// the daemon runs with `[cluster]` (the store's state is shown too).
    pub fn serve(self, control: ControlHandle, cluster: bool) -> std::io::Result<()> {
        let MetricsListener { server, addr } = self;
        std::thread::Builder::new()
            .name("vswitch-metrics".into())
            .spawn(move || {
                for rq in server.incoming_requests() {
                    let (status, content_type, body) = answer(&rq, &control, cluster);
                    let header = |v: &str| {
                        tiny_http::Header::from_bytes(&b"Content-Type"[..], v.as_bytes())
                            .expect("a valid header")
                    };
                    let mut resp = tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header(header(content_type));
                    if status == 405 {
                        resp.add_header(
                            tiny_http::Header::from_bytes(&b"Allow"[..], &b"GET, HEAD"[..])
                                .expect("a valid header"),
                        );
                    }
                    if let Err(e) = rq.respond(resp) {
                        tracing::debug!(%addr, "metrics: answer not sent: {e}");
                    }
                }
            })?;
        tracing::info!(%addr, "metrics: Prometheus scrapes served at http://{addr}/metrics");
        Ok(())
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Status, content type and body for one request.
fn answer(
    rq: &tiny_http::Request,
    control: &ControlHandle,
    cluster: bool,
) -> (u16, &'static str, String) {
    use tiny_http::Method;
    if !matches!(rq.method(), Method::Get | Method::Head) {
        return (405, TEXT, "only GET is served here\n".into());
    }
    let path = rq.url().split('?').next().unwrap_or("");
    match path {
        "/metrics" => {}
        "/" => {
            let page = "<html><head><title>vswitchd</title></head><body><h1>vswitchd</h1>\
                        <p><a href=\"/metrics\">Metrics</a></p></body></html>\n";
            return (200, "text/html; charset=utf-8", page.into());
        }
        _ => {
            return (
                404,
                TEXT,
                format!("no {path} here: metrics are at /metrics\n"),
            )
        }
    }
    let accept = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("Accept"))
        .map(|h| h.value.as_str());
    let format = Format::from_accept(accept);
    match gather(control, cluster).and_then(|s| {
        exposition::encode(s, format).map_err(|_| "the metrics could not be written".to_string())
    }) {
        Ok(body) => (200, format.content_type(), body),
        Err(e) => {
            tracing::warn!("metrics: scrape failed: {e}");
            (
                503,
                TEXT,
                format!("vswitchd could not gather its metrics: {e}\n"),
            )
        }
    }
}

/// One scrape's views, asked of the control actor as `vswitchctl` asks them.
pub fn gather(control: &ControlHandle, cluster: bool) -> Result<Snapshot, String> {
    let show = |what| Request::Show {
        what,
        secrets: false,
    };
    Ok(Snapshot {
        stats: ask(control, show(ShowWhat::Stats))?,
        networks: ask(control, show(ShowWhat::Networks))?,
        peers: ask(control, show(ShowWhat::Peers))?,
        cluster: if cluster {
            Some(ask(control, Request::ClusterStatus)?)
        } else {
            None
        },
        now_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

fn ask<T: serde::de::DeserializeOwned>(control: &ControlHandle, req: Request) -> Result<T, String> {
    let r = control.call(req);
    if !r.ok {
        return Err(r.error.unwrap_or_else(|| "no reason given".into()));
    }
    serde_json::from_value(r.result.unwrap_or_default()).map_err(|e| e.to_string())
}
