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
//! Thread-safety: a `Bucket` belongs to the worker's `Switch` (one per port per worker: a port
//! whose frames the kernel spreads over several workers' queues may flood up to that many
//! times the rate); `PortLimits` is immutable topology.

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
}

impl Default for PortLimits {
    fn default() -> PortLimits {
        PortLimits {
            max_macs: Some(DEFAULT_MAX_MACS),
            bum: Some(Rate {
                per_sec: DEFAULT_BUM_RATE,
                burst: DEFAULT_BUM_BURST,
            }),
        }
    }
}

impl PortLimits {
    /// No limits at all (ports of tests and benches that measure forwarding itself).
    pub const NONE: PortLimits = PortLimits {
        max_macs: None,
        bum: None,
    };
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
        }
    }
}

/// Thousandths of a frame per token: the clock counts milliseconds, so a rate of `r` frames a
/// second refills `r` thousandths each millisecond, exactly, in integers.
const MILLI: u64 = 1000;

/// A token bucket: starts full, refills at the rate's `per_sec`, holds at most its `burst`
/// (at least one frame).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Thousandths of a frame left at `at`; `None` until the first frame: full.
    left: Option<(u64, Timestamp)>,
}

impl Bucket {
    fn available(&self, now: Timestamp, rate: Rate) -> u64 {
        let cap = u64::from(rate.burst.max(1)) * MILLI;
        match self.left {
            None => cap,
            Some((left, at)) => left
                .saturating_add(now.millis_since(at).saturating_mul(u64::from(rate.per_sec)))
                .min(cap),
        }
    }

    /// Whether a frame may pass at `now` (for `decide`; changes nothing).
    pub fn admits(&self, now: Timestamp, rate: Rate) -> bool {
        self.available(now, rate) >= MILLI
    }

    /// Takes the token of a frame that passed at `now` (for `commit`).
    pub fn take(&mut self, now: Timestamp, rate: Rate) {
        let left = self.available(now, rate).saturating_sub(MILLI);
        self.left = Some((left, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(b: &mut Bucket, now: Timestamp, rate: Rate, tries: u32) -> u32 {
        let mut n = 0;
        for _ in 0..tries {
            if b.admits(now, rate) {
                b.take(now, rate);
                n += 1;
            }
        }
        n
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
        assert!(b.admits(Timestamp(700), rate));
        assert!(b.admits(Timestamp(700), rate));
    }
}
