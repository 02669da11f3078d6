//! Where the devices of removed ports are closed, off the workers and off the control thread.
//!
//! Closing a TAP's last fd unregisters its interface, and the kernel makes that wait: RCU grace
//! periods under the rtnl lock while the interface is taken off its namespace's list
//! (synchronize_net), then, with rtnl released, rcu_barrier and the wait for the device's last
//! references (netdev_run_todo). On a busy 2-core host one close takes 20–80 ms, nearly all of it
//! waiting. Closed one after the other, 4096 devices took over 5 minutes; closed by several
//! threads at once the waits overlap (16 threads: 2.4 ms a device instead of 19.5 ms, measured
//! with 2000 TAPs in as many namespaces, benches/README.md).
//!
//! So a worker hands a removed port's device to [`reap`], which queues it for a pool of up to
//! [`MAX_THREADS`] threads, started when more devices wait than threads are idle and ended
//! after [`IDLE_EXIT`] without work (an idle host keeps none). [`wait`] blocks until the
//! devices of one port are closed, [`flush`] until all are (vswitchd's stop, before the
//! process exits, so no persistent TAP outlives a plain stop).
//!
//! Any thread may call every function here.

use super::PortDevice;
use crate::switch::PortId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Most closing threads at once: past 16, the overlap gains little more on 2 to 16 cores
/// (rtnl serialises the first part of every close) and each thread costs a stack.
pub const MAX_THREADS: usize = 16;

/// A pool thread with nothing to close for this long ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    queue: VecDeque<(PortId, Box<dyn PortDevice>)>,
    /// Devices handed over and not closed yet (queued or closing), by port.
    pending: HashMap<PortId, usize>,
    threads: usize,
    idle: usize,
}

#[derive(Default)]
struct Reaper {
    state: Mutex<State>,
    /// A device was queued.
    work: Condvar,
    /// A device was closed.
    closed: Condvar,
}

fn reaper() -> &'static Reaper {
    static REAPER: OnceLock<Reaper> = OnceLock::new();
    REAPER.get_or_init(Reaper::default)
}

impl Reaper {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while closing cannot leave the counts half-changed: recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn done(&self, port: PortId) {
        let mut s = self.lock();
        if let Some(n) = s.pending.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                s.pending.remove(&port);
                if s.pending.is_empty() {
                    // Give back what a burst of thousands made the map grow to.
                    s.pending.shrink_to_fit();
                    s.queue.shrink_to_fit();
                }
            }
        }
        self.closed.notify_all();
    }

    fn run(&'static self) {
        loop {
            let mut s = self.lock();
            let next = loop {
                if let Some(item) = s.queue.pop_front() {
                    break Some(item);
                }
                s.idle += 1;
                let (g, t) = self
                    .work
                    .wait_timeout(s, IDLE_EXIT)
                    .unwrap_or_else(|e| e.into_inner());
                s = g;
                s.idle -= 1;
                if t.timed_out() && s.queue.is_empty() {
                    s.threads -= 1;
                    break None;
                }
            };
            drop(s);
            let Some((port, device)) = next else { return };
            drop(device);
            self.done(port);
        }
    }

    /// Waits until `left(state)` is false, at most `limit`; whether it became false.
    fn wait_until_not(&self, limit: Duration, left: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut s = self.lock();
        while left(&s) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .closed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// Closes `device`, of port `port`, on a pool thread (in place if none can be started).
pub fn reap(port: PortId, device: Box<dyn PortDevice>) {
    let r = reaper();
    let mut s = r.lock();
    *s.pending.entry(port).or_default() += 1;
    s.queue.push_back((port, device));
    if s.queue.len() <= s.idle || s.threads >= MAX_THREADS {
        r.work.notify_one();
        return;
    }
    s.threads += 1;
    drop(s);
    let spawned = std::thread::Builder::new()
        .name("vswitch-reaper".into())
        .spawn(|| reaper().run());
    if let Err(e) = spawned {
        let mut s = r.lock();
        s.threads -= 1;
        if s.threads > 0 {
            r.work.notify_one();
            return;
        }
        tracing::warn!("cannot start a device reaper ({e}): devices close in place");
        let queued: Vec<_> = s.queue.drain(..).collect();
        drop(s);
        for (port, device) in queued {
            drop(device);
            r.done(port);
        }
    }
}

/// Waits until every device of `port` handed over so far is closed, at most `limit`; whether
/// they all are.
pub fn wait(port: PortId, limit: Duration) -> bool {
    reaper().wait_until_not(limit, |s| s.pending.contains_key(&port))
}

/// Waits until every device handed over so far is closed, at most `limit`; whether they all
/// are.
pub fn flush(limit: Duration) -> bool {
    reaper().wait_until_not(limit, |s| !s.pending.is_empty())
}

/// Devices handed over and not closed yet.
pub fn pending() -> usize {
    reaper().lock().pending.values().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A device whose close takes `delay` and is counted.
    struct Slow {
        delay: Duration,
        closed: Arc<AtomicUsize>,
    }

    impl PortDevice for Slow {
        fn recv(&mut self, _: &mut [u8]) -> std::io::Result<Option<super::super::Received>> {
            Ok(None)
        }
        fn send(&mut self, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn fd(&self) -> std::os::fd::RawFd {
            -1
        }
    }

    impl Drop for Slow {
        fn drop(&mut self) {
            std::thread::sleep(self.delay);
            self.closed.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn slow_closes_overlap_and_wait_covers_one_port() {
        let closed = Arc::new(AtomicUsize::new(0));
        let delay = Duration::from_millis(100);
        let started = Instant::now();
        // Port ids of their own: other tests of this binary may reap too.
        let base = 4_000_000;
        for k in 0..8 {
            let d = Slow {
                delay,
                closed: Arc::clone(&closed),
            };
            reap(PortId(base + k), Box::new(d));
        }
        // One slow device of port base+9 after them, with a close that takes longer.
        let late = Slow {
            delay: delay * 3,
            closed: Arc::clone(&closed),
        };
        reap(PortId(base + 9), Box::new(late));
        assert!(wait(PortId(base + 3), Duration::from_secs(5)));
        assert!(
            !wait(PortId(base + 9), Duration::ZERO),
            "port {} closed before its device's close returned",
            base + 9
        );
        assert!(wait(PortId(base + 9), Duration::from_secs(5)));
        assert_eq!(closed.load(Ordering::SeqCst), 9);
        // In parallel: 9 closes of 100 ms (one of 300) end well before 1.1 s.
        let took = started.elapsed();
        assert!(took < Duration::from_millis(700), "took {took:?}");
    }
}
