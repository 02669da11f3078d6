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
}
