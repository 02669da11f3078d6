//! The Docker network plugin: libnetwork's remote network driver and remote IPAM driver,
//! served by vswitchd on a Unix socket when node.toml has a `[docker]` table (README "Docker").
//!
//! Overview. dockerd finds the plugin by its socket (`/run/docker/plugins/vswitch.sock`: the
//! driver is `vswitch`) and POSTs JSON to it: `docker network create -d vswitch --ipam-driver
//! vswitch --subnet 10.0.9.0/24 blue` makes or joins the vswitch network `blue` (on a cluster,
//! the cluster's), `docker run --network blue --name web` gets an address from vswitch's IPAM
//! and a TAP the plugin makes and dockerd moves into the container, published as the endpoint
//! `web`. `plugin.rs` answers the calls, `calls.rs` is what it asks of the control actor
//! (which does the work: crate::control::server::docker), `dockerd.rs` asks dockerd for the
//! names the plugin API leaves out.
//!
//! Thread-safety: HTTP is tiny_http (blocking, its own accept thread) read by `THREADS`
//! threads of ours; each call is answered on the thread that read it, and the follow-up work
//! (asking dockerd for a name) runs on a short-lived thread of its own. No async runtime.

pub mod calls;
pub mod dockerd;
pub mod plugin;

use plugin::Plugin;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Threads answering dockerd: a slow call (a TAP made, etcd written) holds up only one.
const THREADS: usize = 4;
/// The largest request body taken; libnetwork's are a few hundred bytes.
const MAX_BODY: u64 = 1 << 20;
/// The content type of plugin answers (Docker's plugin protocol).
const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot serve the Docker plugin at {path}: {message}")]
    Listen { path: PathBuf, message: String },
    #[error("another process serves the Docker plugin at {0}")]
    InUse(PathBuf),
}

/// The plugin's socket, listening: stale sockets from a daemon that died are replaced.
pub struct Listener {
    server: Arc<tiny_http::Server>,
    path: PathBuf,
}

impl Listener {
    pub fn bind(path: &Path) -> Result<Listener, DockerError> {
        let err = |message: String| DockerError::Listen {
            path: path.to_path_buf(),
            message,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(DockerError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(|e| err(e.to_string()))?;
        }
        let server = tiny_http::Server::http_unix(path).map_err(|e| err(e.to_string()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(e.to_string()))?;
        Ok(Listener {
            server: Arc::new(server),
            path: path.to_path_buf(),
        })
    }

    /// Serves `plugin` on `THREADS` threads until the process ends; the socket file goes when
    /// the `Listener` is dropped.
    pub fn serve(&self, plugin: Arc<Plugin>) -> std::io::Result<()> {
        for i in 0..THREADS {
            let (server, plugin) = (Arc::clone(&self.server), Arc::clone(&plugin));
            std::thread::Builder::new()
                .name(format!("vswitch-docker{i}"))
                .spawn(move || loop {
                    match server.recv() {
                        Ok(req) => answer(&plugin, req),
                        Err(e) => {
                            tracing::error!("docker plugin socket: {e}");
                            return;
                        }
                    }
                })?;
        }
        tracing::info!(socket = %self.path.display(), "docker plugin listening");
        Ok(())
    }
}

fn answer(plugin: &Arc<Plugin>, mut req: tiny_http::Request) {
    let path = req.url().split('?').next().unwrap_or_default().to_string();
    let mut body = Vec::new();
    let read = req
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())
        .and_then(|n| {
            if n as u64 > MAX_BODY {
                Err("request body over 1 MiB".to_string())
            } else {
                Ok(())
            }
        });
    let (result, after) = match read {
        Ok(()) => plugin.handle(&path, &body),
        Err(e) => (Err(e), None),
    };
    let (status, json) = match result {
        Ok(v) => (200, v),
        Err(e) => {
            tracing::warn!(call = %path, "docker plugin: {e}");
            // The driver API reads `Err`, the IPAM API `Error`; dockerd shows either.
            (500, serde_json::json!({ "Err": e, "Error": e }))
        }
    };
    tracing::debug!(call = %path, status, "docker plugin call");
    let header =
        tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE).expect("a valid header");
    let response = tiny_http::Response::from_data(serde_json::to_vec(&json).unwrap_or_default())
        .with_status_code(status)
        .with_header(header);
    if let Err(e) = req.respond(response) {
        tracing::debug!(call = %path, "docker plugin: answer not sent: {e}");
    }
    if let Some(after) = after {
        let plugin = Arc::clone(plugin);
        let spawned = std::thread::Builder::new()
            .name("vswitch-docker-name".into())
            .spawn(move || plugin.after(after));
        if let Err(e) = spawned {
            tracing::warn!("docker plugin: cannot ask dockerd for a name: {e}");
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
