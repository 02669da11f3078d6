//! The channels that carry table announcements (crate::switch::sync) between workers.
//!
//! Every worker has one bounded inbox; every other worker holds a sender to it. Sending never
//! blocks and never allocates (crossbeam's bounded channel is a preallocated ring): when an
//! inbox is full the announcement is dropped and counted, and the receiving worker floods that
//! station's frames until it learns it again — the cost of a table miss, never a wrong answer.

use crate::switch::TableUpdate;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

/// Announcements waiting for one worker. A worker drains its inbox at every loop turn; this
/// covers a burst of new stations (e.g. a flood of ARP) while it is busy with a batch.
const INBOX_CAPACITY: usize = 4096;

/// One worker's ends of the announcement channels.
pub struct SyncLinks {
    inbox: Receiver<TableUpdate>,
    others: Vec<Sender<TableUpdate>>,
}

/// Links for `workers` workers, index k for worker k. Empty for a single worker.
pub fn links(workers: usize) -> Vec<SyncLinks> {
    if workers <= 1 {
        return Vec::new();
    }
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers).map(|_| bounded(INBOX_CAPACITY)).unzip();
    rxs.into_iter()
        .enumerate()
        .map(|(k, inbox)| SyncLinks {
            inbox,
            others: txs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .map(|(_, t)| t.clone())
                .collect(),
        })
        .collect()
}

impl SyncLinks {
    /// Sends `u` to every other worker; returns how many inboxes were full.
    pub fn announce(&self, u: TableUpdate) -> u64 {
        let mut lost = 0;
        for t in &self.others {
            if let Err(TrySendError::Full(_)) = t.try_send(u) {
                lost += 1;
            }
        }
        lost
    }

    /// The next announcement from another worker, if one waits.
    pub fn next(&self) -> Option<TableUpdate> {
        self.inbox.try_recv().ok()
    }
}
