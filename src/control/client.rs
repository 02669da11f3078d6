//! Client side of the control API (see `api.rs` for the framing): one request, one response.
//!
//! Used by `vswitchctl` and by tests. Blocking, no threads; every call opens its own connection.

use super::api::{Request, Response};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `call` waits for the daemon to take the request and answer. Attach does netlink work
/// and may take a moment; anything beyond this means the daemon is stuck.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach vswitchd at {}: {source} (is vswitchd running? see --socket)", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("vswitchd at {} did not answer within {}s", path.display(), timeout.as_secs())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("talking to vswitchd at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("vswitchd at {} closed the connection without answering", path.display())]
    NoAnswer { path: PathBuf },
    #[error("vswitchd at {} sent an answer this vswitchctl does not understand: {source}", path.display())]
    BadAnswer {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Sends `req` to the daemon listening on `socket` and returns its answer, waiting at most
/// `TIMEOUT`. A `Response` with `ok: false` is returned as `Ok`: the daemon did answer.
pub fn call(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    call_with_timeout(socket, req, TIMEOUT)
}

pub fn call_with_timeout(
    socket: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let path = socket.to_path_buf();
    let stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: path.clone(),
        source,
    })?;
    let io_err = |source: io::Error| {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            ClientError::Timeout {
                path: path.clone(),
                timeout,
            }
        } else {
            ClientError::Io {
                path: path.clone(),
                source,
            }
        }
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;

    // Serializing our own enum cannot fail.
    let mut line = serde_json::to_vec(req).unwrap_or_default();
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io_err)?;
    (&stream).flush().map_err(io_err)?;

    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(io_err)?;
    if answer.trim().is_empty() {
        return Err(ClientError::NoAnswer { path });
    }
    serde_json::from_str(&answer).map_err(|source| ClientError::BadAnswer { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::ShowWhat;
    use std::os::unix::net::UnixListener;

    fn temp_socket(tag: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("vswitch-client-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn round_trip() {
        let path = temp_socket("rt");
        let listener = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            let req: Request = serde_json::from_str(&line).unwrap();
            assert_eq!(
                req,
                Request::Show {
                    what: ShowWhat::Peers,
                    secrets: false,
                }
            );
            let mut out = serde_json::to_vec(&Response::err("nope")).unwrap();
            out.push(b'\n');
            (&s).write_all(&out).unwrap();
        });
        let resp = call(
            &path,
            &Request::Show {
                what: ShowWhat::Peers,
                secrets: false,
            },
        )
        .unwrap();
        t.join().unwrap();
        assert!(!resp.ok);
        assert_eq!(resp.error.as_deref(), Some("nope"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn no_daemon() {
        let path = temp_socket("none");
        let err = call(
            &path,
            &Request::Show {
                what: ShowWhat::Stats,
                secrets: false,
            },
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("cannot reach vswitchd at "), "{msg}");
        assert!(msg.contains("is vswitchd running?"), "{msg}");
    }

    #[test]
    fn silent_daemon_times_out() {
        let path = temp_socket("slow");
        let listener = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            drop(s);
        });
        let err = call_with_timeout(
            &path,
            &Request::Show {
                what: ShowWhat::Fdb,
                secrets: false,
            },
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        t.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
