//! Packet/byte counters. Plain integers: each switch instance is owned by one worker thread.

use super::drop_reason::{DropCounters, DropReason};

#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: DropCounters,
}

impl Counters {
    pub fn rx(&mut self, len: usize) {
        self.rx_packets += 1;
        self.rx_bytes += len as u64;
    }

    pub fn tx(&mut self, len: usize) {
        self.tx_packets += 1;
        self.tx_bytes += len as u64;
    }

    pub fn drop(&mut self, r: DropReason) {
        self.drops.count(r);
    }
}
