//! The control socket's connections: a thread each, bounded in request size and time, so an
//! idle, slow or non-reading client holds up only itself. Every request goes to the one
//! control actor through its `ControlHandle`.

use super::ControlHandle;
use crate::control::api::{Request, Response};
use std::io::{self, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest request line taken; a longer one is refused and the connection closed.
pub const MAX_REQUEST: usize = 1 << 20;
/// A whole request must arrive within this time of connecting.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// A reply the client does not read within this time is abandoned with its connection.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are answered "busy" at once and closed.
pub const MAX_CONNECTIONS: usize = 1024;

/// Requests read whose answer is not written yet, over every connection: vswitchd's stop waits
/// for them (`answered`), so a client that asked for the stop (`vswitchctl shutdown`), or asked
/// anything just before it, gets its answer rather than a closed connection.
static IN_FLIGHT: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// One request between being read and its answer being written.
struct InFlight;

impl InFlight {
    fn begin() -> InFlight {
        *IN_FLIGHT.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut n = IN_FLIGHT.0.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        if *n == 0 {
            IN_FLIGHT.1.notify_all();
        }
    }
}

/// Waits until every control request read so far has its answer written (or failed to), at
/// most `timeout`; false if some were still in flight then. New connections are still taken
/// meanwhile, so call it once the stop is decided.
pub fn answered(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut n = IN_FLIGHT.0.lock().unwrap_or_else(|e| e.into_inner());
    while *n > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        n = IN_FLIGHT
            .1
            .wait_timeout(n, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

/// Serves the control socket: every connection on a thread of its own, bounded in size and
/// time (`MAX_REQUEST`, `REQUEST_DEADLINE`, `REPLY_DEADLINE`, `MAX_CONNECTIONS`), so an idle,
/// slow or non-reading client only ever holds up itself. Requests go to the one actor.
pub fn serve(listener: UnixListener, handle: ControlHandle) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("control socket accept failed: {e}");
                return;
            }
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let busy = Response::err("vswitchd is busy: too many open control connections");
            let _ = reply(&stream, &busy);
            continue;
        }
        let (handle, open2) = (handle.clone(), Arc::clone(&open));
        let spawned = std::thread::Builder::new()
            .name("vswitch-conn".into())
            .spawn(move || {
                if let Err(e) = serve_connection(&stream, &handle) {
                    tracing::debug!("control connection ended: {e}");
                }
                open2.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            open.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("cannot serve a control connection: {e}");
        }
    }
}

fn serve_connection(stream: &UnixStream, handle: &ControlHandle) -> io::Result<()> {
    use std::io::Read;
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no whole request in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match (&*stream).read(&mut chunk) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed early")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let seen = buf.len();
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf[seen..].iter().position(|b| *b == b'\n') {
            buf.truncate(seen + i);
            break buf;
        }
        if buf.len() > MAX_REQUEST {
            stream.set_write_timeout(Some(REPLY_DEADLINE))?;
            return reply(stream, &Response::err("request longer than 1 MiB: refused"));
        }
    };
    let _answering = InFlight::begin();
    let response = match serde_json::from_slice::<Request>(&line) {
        Ok(req) => handle.call(req),
        Err(e) => Response::err(format!("malformed request: {e}")),
    };
    stream.set_write_timeout(Some(REPLY_DEADLINE))?;
    reply(stream, &response)
}

fn reply(stream: &UnixStream, response: &Response) -> io::Result<()> {
    let mut out = serde_json::to_vec(response).unwrap_or_default();
    out.push(b'\n');
    (&*stream).write_all(&out)
}
