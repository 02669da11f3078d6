//! Several workers, one per core (DESIGN §1), and the handle the control thread drives them by.
//!
//! Every worker owns a whole copy of the switch (crate::switch::sync keeps the learned tables
//! in step) and its own queue of every port and its own underlay socket, so a frame is read,
//! decided and sent by one thread without a lock. The kernel picks the worker per flow: a
//! container's TAP spreads its flows over the queues by hash, AF_PACKET fanout does the same
//! for an interface, and SO_REUSEPORT for the underlay; so a flow is never reordered.
//!
//! `Workers` sends each control command to every worker and merges their answers
//! (crate::dataplane::view).

use super::port::{PortDevice, PortMeta};
use super::sync;
use super::view::{self, PortRow, View, ViewKind};
use super::worker::{Command, PortSelector, Worker, WorkerHandle};
use crate::switch::PortId;
use crate::wire::MacAddr;
use crossbeam_channel::{bounded, Receiver};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the control thread waits for a worker to answer a command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The control thread's handle on every worker.
#[derive(Clone)]
pub struct Workers {
    handles: Vec<WorkerHandle>,
}

/// Starts `workers` (worker k gets index k), each on its own thread pinned to the k-th CPU
/// this process may use (when `pin`). Returns the handle and the threads to join after `stop`.
pub fn start(workers: Vec<Worker>, pin: bool) -> std::io::Result<(Workers, Vec<JoinHandle<()>>)> {
    let n = workers.len();
    let cpus = crate::io::cpu::allowed_cpus();
    let started = Instant::now();
    let mut links = sync::links(n).into_iter();
    let mut handles = Vec::with_capacity(n);
    let mut threads = Vec::with_capacity(n);
    for (k, mut w) in workers.into_iter().enumerate() {
        w.join_group(k as u32, started, links.next());
        handles.push(w.handle());
        let cpu = (pin && !cpus.is_empty()).then(|| cpus[k % cpus.len()]);
        let thread = std::thread::Builder::new()
            .name(format!("vswitch-w{k}"))
            .spawn(move || {
                if let Some(c) = cpu {
                    match crate::io::cpu::pin_current_thread(c) {
                        Ok(()) => {
                            w.set_cpu(Some(c as u32));
                            tracing::info!(worker = k, cpu = c, "worker pinned");
                        }
                        Err(e) => tracing::warn!(worker = k, cpu = c, "cannot pin worker: {e}"),
                    }
                }
                w.run()
            })?;
        threads.push(thread);
    }
    Ok((Workers { handles }, threads))
}

impl Workers {
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Sends a command built by `make(k)` to every worker k and collects the answers, in order.
    fn ask_all<T>(
        &self,
        mut make: impl FnMut(usize, crossbeam_channel::Sender<T>) -> Command,
    ) -> Result<Vec<T>, String> {
        let waiting: Vec<Receiver<T>> = (0..self.handles.len())
            .map(|k| {
                let (tx, rx) = bounded(1);
                self.handles[k].send(make(k, tx));
                rx
            })
            .collect();
        waiting
            .into_iter()
            .map(|rx| {
                rx.recv_timeout(ANSWER_TIMEOUT)
                    .map_err(|_| "the data plane did not answer".to_string())
            })
            .collect()
    }

    /// Hands a port the control side has published in the topology to every worker, worker k
    /// writing through `devices[k]`. `reader`: `None` when each worker reads its own queue of
    /// the device; `Some(k)` when every `devices[k]` is one shared queue that only worker k
    /// reads. All or nothing: if one worker refuses or does not answer, every worker drops the
    /// port again.
    pub fn add_port(
        &self,
        id: PortId,
        devices: Vec<Box<dyn PortDevice>>,
        reader: Option<usize>,
        meta: PortMeta,
        endpoint: Option<(MacAddr, Ipv4Addr)>,
    ) -> Result<PortRow, String> {
        assert_eq!(devices.len(), self.handles.len(), "one device per worker");
        let mut devices = devices.into_iter();
        let answers = self.ask_all(|k, reply| Command::AddPort {
            id,
            device: devices.next().expect("one device per worker"),
            meta: meta.clone(),
            endpoint,
            announce: k == reader.unwrap_or(0),
            read: reader.map_or(true, |r| r == k),
            reply,
        });
        let failed = match &answers {
            Err(e) => Some(e.clone()),
            Ok(a) => a.iter().find_map(|a| a.as_ref().err().cloned()),
        };
        if let Some(e) = failed {
            // Also when a worker timed out: the others must not keep a port it lacks.
            let _ = self.remove_port(Arc::new(move |p, _: &PortMeta| p == id));
            return Err(e);
        }
        let rows: Vec<PortRow> = answers
            .expect("checked above")
            .into_iter()
            .map(|a| a.expect("checked above"))
            .collect();
        merge_port(rows).ok_or_else(|| "no worker answered".to_string())
    }

    /// Removes the port `select` picks from every worker; its counters summed.
    pub fn remove_port(&self, select: PortSelector) -> Result<PortRow, String> {
        let answers = self.ask_all(|_, reply| Command::RemovePort {
            select: Arc::clone(&select),
            reply,
        })?;
        merge_port(answers.into_iter().filter_map(Result::ok).collect())
            .ok_or_else(|| "no such port".to_string())
    }

    /// Has worker 0 write `frame` to port `port` (every worker holds a queue of every port).
    pub fn send_to_port(&self, port: PortId, frame: Vec<u8>) {
        self.handles[0].send(Command::SendToPort { port, frame });
    }

    /// Worker 0's trace of a frame (every worker has the same topology, and the learned
    /// tables are kept in step).
    pub fn trace(
        &self,
        input: super::worker::TraceInput,
    ) -> Result<crate::switch::trace::Trace, String> {
        let (tx, rx) = bounded(1);
        self.handles[0].send(Command::Trace { input, reply: tx });
        rx.recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| "the data plane did not answer".to_string())
    }

    /// Every worker's answer to a `show`, merged.
    pub fn show(&self, what: ViewKind, secrets: bool) -> Result<View, String> {
        let views: Vec<View> = self.ask_all(|_, reply| Command::Show {
            what,
            secrets,
            reply,
        })?;
        let mut merged = view::merge(views).ok_or_else(|| "no worker answered".to_string())?;
        if let (View::Networks(nets), true) = (&mut merged, self.handles.len() > 1) {
            // Each copy's table size is not the network's: count the union of the copies.
            let (View::Fdb(fdb), View::Neigh(neigh)) = (
                self.show(ViewKind::Fdb, false)?,
                self.show(ViewKind::Neigh, false)?,
            ) else {
                return Ok(merged);
            };
            for n in nets.iter_mut() {
                n.fdb_entries = fdb.iter().filter(|e| e.vni == n.vni).count() as u32;
                n.neigh_entries = neigh.iter().filter(|e| e.vni == n.vni).count() as u32;
            }
        }
        Ok(merged)
    }

    /// Every worker hands TCP super-frames to the tunnel device (Command::StartTunnel), or
    /// (`on` false) segments them itself again, for good (Command::StopTunnel).
    pub fn tunnel(&self, on: bool) {
        for h in &self.handles {
            h.send(if on {
                Command::StartTunnel
            } else {
                Command::StopTunnel
            });
        }
    }

    pub fn stop(&self) {
        for h in &self.handles {
            h.send(Command::Stop);
        }
    }
}

/// One port as every worker has it: one queue each, counters added.
fn merge_port(rows: Vec<PortRow>) -> Option<PortRow> {
    let mut it = rows.into_iter();
    let first = it.next()?;
    Some(it.fold(first, |mut p, o| {
        p.add(&o);
        p
    }))
}
