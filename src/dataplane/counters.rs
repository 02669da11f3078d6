//! A worker's own counter families (crate::switch::counters for what a family is): what the
//! offloads did, how its load spreads, the kernel's refusals on the underlay; and the summary
//! of its latency histogram. Plain integers owned by the worker thread; `show` adds them up
//! across workers (crate::dataplane::view) or lists them per worker.

use crate::counter_family;
use std::io;

counter_family! {
    /// Work the offloads saved (see README "Performance"); all zero when they are off or the
    /// kernel lacks them.
    pub struct OffloadCounters {
        /// TSO super-frames from containers, and the segments they were cut into.
        pub tso_frames,
        pub tso_segments,
        /// UDP GSO sends (each several datagrams), and runs the kernel refused (sent one by one).
        pub gso_sends,
        pub gso_datagrams,
        pub gso_fallbacks,
        /// Underlay reads that returned a UDP GRO run of several datagrams.
        pub gro_runs,
        /// Super-frames written to ports after coalescing, and the segments they carried.
        pub coalesced_frames,
        pub coalesced_segments,
        /// Frames from the underlay whose inner TCP/UDP checksum the sender left partial (a
        /// Linux peer over a path that never fills checksums in), completed here
        /// (crate::offload::csum).
        pub partial_checksums,
        /// TCP super-frames from a peer whose path never segmented them (a Linux sender over a
        /// veth with tx offloads), written whole or cut here (crate::offload::superframe).
        pub peer_super_frames,
        /// TCP super-frames from containers handed to the kernel whole, as one VXLAN packet for
        /// it to segment (crate::io::tunnel), and those the tunnel device refused (segmented
        /// here instead).
        pub tunnel_frames,
        pub tunnel_refused,
    }
}

counter_family! {
    /// What one worker thread did: how the load spreads, and how its table copy keeps in step.
    pub struct WorkerCounters {
        /// Frames it read from local ports (a TSO super-frame counts once).
        pub port_frames,
        /// Datagrams it read from the underlay (each of a GRO run counts).
        pub underlay_datagrams,
        /// Table announcements it sent to the other workers, and took from them.
        pub updates_sent,
        pub updates_applied,
        /// Announcements dropped because an outbox or another worker's inbox was full.
        pub updates_lost,
        /// Busy-poll windows begun after traffic, and those given up because a yield showed
        /// that another thread wanted the core (the worker slept instead: see README
        /// "Performance").
        pub busy_poll_windows,
        pub busy_poll_given_up,
        /// Looks at the machine's load (every 200 ms with traffic, in the default busy-poll
        /// mode, `auto`) that found the other processes leaving no core idle: no spinning until
        /// the next.
        pub busy_poll_gated,
        /// Times it slept in epoll and was woken by work (a frame, a command): on a VM each
        /// costs tens of microseconds of latency.
        pub wakeups,
        /// Full batches from a port mostly over its limits (a storm): the port was read
        /// again only a millisecond later (crate::switch::limits).
        pub throttled_batches,
        /// ESP packets it opened (verified, decrypted, replay-checked), and those it refused
        /// (any `esp_*` drop reason): with several workers, each opens the SAs of the lanes
        /// the kernel steers to it (crate::io::underlay::Underlay::bind_esp_group).
        pub esp_opened,
        pub esp_refused,
    }
}

counter_family! {
    /// Kernel refusals on the underlay, by errno, without allocating on the packet path.
    pub struct TxErrors {
        /// EMSGSIZE
        pub message_too_long,
        /// ENOBUFS, EAGAIN
        pub no_buffer_space,
        /// EHOSTUNREACH, ENETUNREACH, EHOSTDOWN
        pub unreachable,
        pub other,
    }
}

impl TxErrors {
    pub fn count(&mut self, e: &io::Error) {
        match e.raw_os_error() {
            Some(libc::EMSGSIZE) => self.message_too_long += 1,
            Some(libc::ENOBUFS) | Some(libc::EAGAIN) => self.no_buffer_space += 1,
            Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) | Some(libc::EHOSTDOWN) => {
                self.unreachable += 1
            }
            _ => self.other += 1,
        }
    }
}

/// Distribution of the time a frame spends inside one worker: from the moment its read returns
/// to the moment its last copy is handed to the kernel. Microseconds. Its serde form is the
/// API's (`show stats` latency, crate::control::api::LatencyStats).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub worker: u32,
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// All samples added up (from the histogram's buckets, to its 3 significant digits).
    #[serde(default)]
    pub sum_us: f64,
    /// Samples at or below each of `LATENCY_BOUNDS_US`, cumulative (what a Prometheus
    /// histogram shows: crate::control::metrics).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<LatencyBucket>,
}

/// Samples of a latency histogram at or below `le_us` microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyBucket {
    pub le_us: f64,
    pub count: u64,
}

/// Upper bounds of the latency buckets `show stats --json` and the metrics carry: from what
/// a frame takes through a warm worker (a few µs) to what a stalled one shows.
pub const LATENCY_BOUNDS_US: [f64; 16] = [
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    25_000.0,
    100_000.0,
    1_000_000.0,
];

impl LatencySummary {
    /// Fills `buckets` and `sum_us` from recorded (value in ns, count) pairs, in any order.
    pub fn fill_buckets(&mut self, recorded: impl Iterator<Item = (u64, u64)>) {
        let mut counts = [0u64; LATENCY_BOUNDS_US.len()];
        let mut sum_ns = 0f64;
        for (ns, n) in recorded {
            sum_ns += ns as f64 * n as f64;
            let us = ns as f64 / 1000.0;
            if let Some(i) = LATENCY_BOUNDS_US.iter().position(|le| us <= *le) {
                counts[i] += n;
            }
        }
        let mut cumulative = 0;
        self.buckets = LATENCY_BOUNDS_US
            .iter()
            .zip(counts)
            .map(|(le, n)| {
                cumulative += n;
                LatencyBucket {
                    le_us: *le,
                    count: cumulative,
                }
            })
            .collect();
        self.sum_us = sum_ns / 1000.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative_and_sum_adds_up() {
        let mut s = LatencySummary::default();
        // 3 frames of 800 ns, 2 of 4 µs, 1 of 2 s (past the last bound: only in the count).
        s.fill_buckets([(4_000, 2), (800, 3), (2_000_000_000, 1)].into_iter());
        let at = |le: f64| s.buckets.iter().find(|b| b.le_us == le).unwrap().count;
        assert_eq!((at(1.0), at(2.5), at(5.0), at(1_000_000.0)), (3, 3, 5, 5));
        assert_eq!(s.sum_us, 2.4 + 8.0 + 2_000_000.0);
    }
}
