//! Per-port limits: how many MACs a port may be learned with, and how many broadcast,
//! multicast and unknown-unicast frames a second it may flood. They keep one container that
//! floods random source MACs or broadcasts (a storm, a loop, an attack) from filling its
//! network's table or taking the workers' time from its neighbours and from other networks.
//!
//! Contract: `PortLimits` is part of a port's topology (crate::switch::topology::PortTopo),
//! resolved by the control side at attach (the attach's own options, else the network's, else
//! the daemon's `[port_limits]`). `decide` refuses a frame whose source MAC would be learned
//! past `max_macs` (`port_mac_limit`; nothing already learned is evicted) and a frame it would
//! flood when the port's `Bucket` is empty (`bum_rate_limited`); `commit` takes a token for
//! each frame flooded. The bucket is a plain token bucket over the caller's clock: no clock
//! is read here.
//!
//! Several workers. Each worker's `Switch` holds its own `Bucket` per port, and a port's
//! frames are read by one worker (a TAP with one queue: the default) or spread by the kernel
//! over every worker's queue (a TAP with a queue per worker, an AF_PACKET fanout group). So
//! that the rate holds for the port whatever the worker count, `PortLimits::readers` says how
//! many workers read it, and each of them holds `1/readers` of the rate and of the burst
//! (`Bucket` charges `readers` tokens a frame); the MAC cap the same way, as a quota of
//! `max_macs / readers` (rounded up) on the MACs each worker learns itself, besides the cap
//! on what its copy of the table holds at the port. The price of splitting: a port whose
//! frames the kernel steers unevenly gets less than its rate from the worker that reads
//! fewer of them; never more than its rate.
//!
//! Thread-safety: a `Bucket` belongs to the worker's `Switch` (one per port per worker);
//! `PortLimits` is immutable topology.

use super::Timestamp;

/// The built-in cap on MACs learned at one port (ports vswitch makes carry one station, and
/// with port security learn none: the station is an endpoint of the topology).
pub const DEFAULT_MAX_MACS: u32 = 64;
/// The built-in rate of broadcast/multicast/unknown-unicast frames a port may flood.
pub const DEFAULT_BUM_RATE: u32 = 1000;
/// The built-in burst: frames a port that was quiet may flood at once.
pub const DEFAULT_BUM_BURST: u32 = 1000;

/// A rate of frames: `per_sec` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

/// What one port may do. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortLimits {
    /// MACs learned at the port at most; `None`: no cap (the network's `fdb_max_entries`
    /// still holds).
    pub max_macs: Option<u32>,
    /// Frames the port may flood; `None`: no cap.
    pub bum: Option<Rate>,
    /// How many workers read the port's frames (at least 1): each holds that share of the
    /// limits (see the module documentation). Set by the control side with the port's
    /// devices.
    #[serde(default = "one")]
    pub readers: u32,
}

fn one() -> u32 {
    1
}

impl Default for PortLimits {
    fn default() -> PortLimits {
        PortLimits {
            max_macs: Some(DEFAULT_MAX_MACS),
            bum: Some(Rate {
                per_sec: DEFAULT_BUM_RATE,
                burst: DEFAULT_BUM_BURST,
            }),
            readers: 1,
        }
    }
}

impl PortLimits {
    /// No limits at all (ports of tests and benches that measure forwarding itself).
    pub const NONE: PortLimits = PortLimits {
        max_macs: None,
        bum: None,
        readers: 1,
    };

    /// These limits for a port read by `readers` workers.
    pub fn read_by(self, readers: usize) -> PortLimits {
        PortLimits {
            readers: u32::try_from(readers).unwrap_or(u32::MAX).max(1),
            ..self
        }
    }

    /// The MACs one worker may learn at the port itself: its share of `max_macs`.
    pub fn macs_per_reader(&self) -> Option<u32> {
        self.max_macs.map(|m| m.div_ceil(self.readers.max(1)))
    }
}

/// Limits as an operator gives them — the attach's options, a `[[network]]`'s `port_limits`,
/// the daemon's `[port_limits]` — each unset field taken from the next (`or`), then from the
/// built-in defaults (`resolve`). 0 means no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimitSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_macs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bum_rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bum_burst: Option<u32>,
}

impl LimitSettings {
    /// These settings, with what they leave unset taken from `base`.
    pub fn or(self, base: LimitSettings) -> LimitSettings {
        LimitSettings {
            max_macs: self.max_macs.or(base.max_macs),
            bum_rate: self.bum_rate.or(base.bum_rate),
            bum_burst: self.bum_burst.or(base.bum_burst),
        }
    }

    /// The limits these settings make: built-in defaults for what is unset, 0 as no cap, and
    /// a burst of one second's worth when only the rate is given.
    pub fn resolve(self) -> PortLimits {
        let max_macs = self.max_macs.unwrap_or(DEFAULT_MAX_MACS);
        let per_sec = self.bum_rate.unwrap_or(DEFAULT_BUM_RATE);
        let burst = match (self.bum_burst, self.bum_rate) {
            (Some(b), _) => b,
            (None, Some(r)) => r,
            (None, None) => DEFAULT_BUM_BURST,
        };
        PortLimits {
            max_macs: (max_macs > 0).then_some(max_macs),
            bum: (per_sec > 0).then_some(Rate { per_sec, burst }),
            readers: 1,
        }
    }
}

/// Thousandths of a frame per token: the clock counts milliseconds, so a rate of `r` frames a
/// second refills `r` thousandths each millisecond, exactly, in integers.
const MILLI: u64 = 1000;

/// A token bucket: starts full, refills at the rate's `per_sec`, holds at most its `burst`
/// (at least one frame). For a port read by `readers` workers a frame costs `readers`
/// frames' worth, so each worker's bucket passes `1/readers` of the rate and burst (and at
/// least one frame at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Thousandths of a frame left at `at`; `None` until the first frame: full.
    left: Option<(u64, Timestamp)>,
}

impl Bucket {
    fn cost(readers: u32) -> u64 {
        u64::from(readers.max(1)) * MILLI
    }

    fn available(&self, now: Timestamp, rate: Rate, readers: u32) -> u64 {
        let cap = (u64::from(rate.burst) * MILLI).max(Bucket::cost(readers));
        match self.left {
            None => cap,
            Some((left, at)) => left
                .saturating_add(now.millis_since(at).saturating_mul(u64::from(rate.per_sec)))
                .min(cap),
        }
    }

    /// Whether a frame may pass at `now` (for `decide`; changes nothing), on a port read by
    /// `readers` workers.
    pub fn admits(&self, now: Timestamp, rate: Rate, readers: u32) -> bool {
        self.available(now, rate, readers) >= Bucket::cost(readers)
    }

    /// Takes the tokens of a frame that passed at `now` (for `commit`).
    pub fn take(&mut self, now: Timestamp, rate: Rate, readers: u32) {
        let left = self
            .available(now, rate, readers)
            .saturating_sub(Bucket::cost(readers));
        self.left = Some((left, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(b: &mut Bucket, now: Timestamp, rate: Rate, tries: u32) -> u32 {
        passed_by(b, now, rate, 1, tries)
    }

    fn passed_by(b: &mut Bucket, now: Timestamp, rate: Rate, readers: u32, tries: u32) -> u32 {
        let mut n = 0;
        for _ in 0..tries {
            if b.admits(now, rate, readers) {
                b.take(now, rate, readers);
                n += 1;
            }
        }
        n
    }

    #[test]
    fn workers_reading_one_port_share_its_rate_and_burst() {
        let rate = Rate {
            per_sec: 1000,
            burst: 100,
        };
        // Two workers, each with its own bucket, each seeing half of a storm.
        let (mut a, mut b) = (Bucket::default(), Bucket::default());
        let mut total = passed_by(&mut a, Timestamp(5_000), rate, 2, 500)
            + passed_by(&mut b, Timestamp(5_000), rate, 2, 500);
        assert_eq!(total, 100, "the burst, shared");
        for ms in 5_001..6_001 {
            total += passed_by(&mut a, Timestamp(ms), rate, 2, 50);
            total += passed_by(&mut b, Timestamp(ms), rate, 2, 50);
        }
        assert_eq!(
            total,
            100 + 1000,
            "the burst and one second's rate, not twice"
        );
        // A share smaller than a frame still passes one frame at once.
        let tiny = Rate {
            per_sec: 1,
            burst: 1,
        };
        let mut c = Bucket::default();
        assert_eq!(passed_by(&mut c, Timestamp(0), tiny, 4, 10), 1);
        assert_eq!(passed_by(&mut c, Timestamp(3_999), tiny, 4, 10), 0);
        assert_eq!(passed_by(&mut c, Timestamp(4_000), tiny, 4, 10), 1);
        // The MAC cap's share, rounded up.
        let l = PortLimits::default().read_by(3);
        assert_eq!((l.readers, l.macs_per_reader()), (3, Some(22)));
        assert_eq!(PortLimits::default().read_by(0).readers, 1);
    }

    #[test]
    fn a_bucket_passes_its_burst_then_its_rate() {
        let rate = Rate {
            per_sec: 1000,
            burst: 50,
        };
        let mut b = Bucket::default();
        // A quiet port may send its burst at once, and no more.
        assert_eq!(passed(&mut b, Timestamp(5_000), rate, 200), 50);
        // Then one frame per millisecond at 1000/s.
        assert_eq!(passed(&mut b, Timestamp(5_001), rate, 200), 1);
        assert_eq!(passed(&mut b, Timestamp(5_011), rate, 200), 10);
        // Over a second of a storm of 100 frames per millisecond: about the rate passes.
        let mut total = 0;
        for ms in 5_012..6_012 {
            total += passed(&mut b, Timestamp(ms), rate, 100);
        }
        assert_eq!(total, 1000);
        // Idle for long: never more than the burst.
        assert_eq!(passed(&mut b, Timestamp(60_000), rate, 200), 50);
    }

    #[test]
    fn settings_fall_back_field_by_field_and_zero_lifts_a_cap() {
        let attach = LimitSettings {
            bum_rate: Some(0),
            ..LimitSettings::default()
        };
        let network = LimitSettings {
            max_macs: Some(8),
            bum_rate: Some(50),
            ..LimitSettings::default()
        };
        let l = attach.or(network).resolve();
        assert_eq!(l.max_macs, Some(8));
        assert_eq!(l.bum, None);
        assert_eq!(LimitSettings::default().resolve(), PortLimits::default());
        let r = network.resolve().bum.unwrap();
        assert_eq!(
            (r.per_sec, r.burst),
            (50, 50),
            "a burst of one second's worth"
        );
    }

    #[test]
    fn a_slow_rate_refills_in_fractions_and_a_zero_burst_still_passes_one() {
        let rate = Rate {
            per_sec: 3,
            burst: 0,
        };
        let mut b = Bucket::default();
        assert_eq!(passed(&mut b, Timestamp(0), rate, 10), 1);
        assert_eq!(passed(&mut b, Timestamp(333), rate, 10), 0);
        assert_eq!(passed(&mut b, Timestamp(334), rate, 10), 1);
        // Deciding does not take: only `take` does.
        assert!(b.admits(Timestamp(700), rate, 1));
        assert!(b.admits(Timestamp(700), rate, 1));
    }
}
