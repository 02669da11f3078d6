//! Adaptive busy-polling: after traffic a worker polls for a while without sleeping, so a reply
//! that comes back meanwhile costs no wake-up (on a VM a wake-up across vCPUs is tens of
//! microseconds, most of the round-trip time a user-space switch adds).
//!
//! Spinning pays only on a core nobody else wants. A spinning worker yields between polls;
//! when another thread is runnable on its core and needs it for long (a CPU-bound container),
//! the yield hands that thread the core until the next scheduler tick (4 ms at HZ=250), and a
//! frame arriving meanwhile waits unseen: the worker is runnable, not asleep, so nothing wakes
//! it. Measured on a 2-vCPU VM with a CPU hog per core, ping RTT through vswitch went from
//! 0.1 ms (workers sleeping) to 1.5 ms on average, 4 ms at the 75th percentile.
//!
//! So a yield that kept the worker off its core for longer than `LONG_YIELD` ends the window,
//! and the worker sleeps instead of spinning for a while (`BACKOFF_MIN`, growing): asleep in
//! epoll, an arriving frame wakes it and the scheduler lets it preempt the hog. Under lasting
//! load that costs one frame one tick per backoff period, which grows to `BACKOFF_MAX`. Short
//! yields, to the container's stack or to a second worker sharing the core, are what spinning
//! is for.

use std::time::{Duration, Instant};

/// A yield longer than this means another thread had work for the core, not a moment's.
const LONG_YIELD: Duration = Duration::from_micros(200);
/// How long the worker sleeps rather than spins after a long yield: doubled each time it
/// happens again, back to the least once `BACKOFF_MAX` has passed without one (a host whose
/// containers are busy now and then stays busy a while: it should not pay a tick each time).
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

pub struct BusyPoll {
    /// How long after the last frame to keep spinning (zero: always sleep).
    window: Duration,
    last_activity: Instant,
    /// The current window ended early, or there is none.
    closed: bool,
    /// No spinning before this (set by a long yield).
    sleep_until: Option<Instant>,
    last_long_yield: Option<Instant>,
    backoff: Duration,
    /// Windows begun (traffic while not spinning), and those ended by a long yield.
    pub windows: u64,
    pub given_up: u64,
}

impl BusyPoll {
    pub fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            last_activity: Instant::now(),
            closed: true,
            sleep_until: None,
            last_long_yield: None,
            backoff: BACKOFF_MIN,
            windows: 0,
            given_up: 0,
        }
    }

    /// Whether the next poll should return at once rather than sleep. A window found run out
    /// is closed here, and ends the backoff once long yields have stopped.
    pub fn spinning(&mut self) -> bool {
        if self.closed {
            return false;
        }
        if self.last_activity.elapsed() >= self.window {
            // The window ran out without a long yield.
            self.closed = true;
            if self
                .last_long_yield
                .map_or(true, |t| t.elapsed() >= BACKOFF_MAX)
            {
                self.backoff = BACKOFF_MIN;
            }
            return false;
        }
        true
    }

    /// The poll found something to do: a window starts (again) from now, unless a long yield
    /// lately says the core is wanted.
    pub fn activity(&mut self) {
        if self.window.is_zero() {
            return;
        }
        let now = Instant::now();
        if self.sleep_until.is_some_and(|t| now < t) {
            return;
        }
        self.sleep_until = None;
        if self.closed {
            self.windows += 1;
            self.closed = false;
        }
        self.last_activity = now;
    }

    /// A poll in the window found nothing: yield the core to whatever else is runnable, and
    /// stop spinning if that kept the worker off it for long.
    pub fn idle_turn(&mut self) {
        let before = Instant::now();
        std::thread::yield_now();
        self.after_yield(before, Instant::now());
    }

    fn after_yield(&mut self, before: Instant, after: Instant) {
        if after.duration_since(before) > LONG_YIELD {
            self.closed = true;
            self.given_up += 1;
            self.sleep_until = Some(after + self.backoff);
            self.last_long_yield = Some(after);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_opens_a_window_that_runs_out() {
        let mut b = BusyPoll::new(Duration::from_millis(5));
        assert!(!b.spinning(), "no traffic yet");
        b.activity();
        assert!(b.spinning());
        assert_eq!(b.windows, 1);
        b.activity();
        assert_eq!(
            b.windows, 1,
            "traffic inside a window keeps it open, no new one"
        );
        std::thread::sleep(Duration::from_millis(6));
        assert!(!b.spinning(), "5 ms after the last frame");
        b.activity();
        assert_eq!(b.windows, 2);
    }

    #[test]
    fn a_zero_window_never_spins() {
        let mut b = BusyPoll::new(Duration::ZERO);
        b.activity();
        assert!(!b.spinning());
        assert_eq!(b.windows, 0);
    }

    #[test]
    fn a_long_yield_closes_the_window_and_sleeping_follows_for_a_while() {
        let mut b = BusyPoll::new(Duration::from_secs(10));
        b.activity();
        // A yield that another thread turned into a long wait.
        b.long_yield_for_test(Duration::from_millis(1));
        assert!(!b.spinning(), "the window is given up");
        assert_eq!(b.given_up, 1);
        b.activity();
        assert!(
            !b.spinning(),
            "traffic right after a long yield does not spin"
        );
        assert_eq!(b.windows, 1);
        std::thread::sleep(BACKOFF_MIN + Duration::from_millis(20));
        b.activity();
        assert!(b.spinning(), "spinning again after the backoff");
        assert_eq!(b.windows, 2);
    }

    #[test]
    fn backoff_doubles_while_long_yields_recur_and_resets_once_they_stop() {
        let mut b = BusyPoll::new(Duration::from_millis(1));
        b.activity();
        b.long_yield_for_test(Duration::from_millis(1));
        assert_eq!(b.backoff, BACKOFF_MIN * 2);
        b.sleep_until = None;
        b.activity();
        b.long_yield_for_test(Duration::from_millis(1));
        assert_eq!(b.backoff, BACKOFF_MIN * 4);
        b.calm_window();
        assert_eq!(
            b.backoff,
            BACKOFF_MIN * 4,
            "a calm window, but the last long yield was just now"
        );
        for _ in 0..10 {
            b.long_yield_for_test(Duration::from_millis(1));
        }
        assert_eq!(b.backoff, BACKOFF_MAX, "doubling stops at the most");
        // As if the last long yield were BACKOFF_MAX ago (none at all on a machine up for
        // less than that).
        b.last_long_yield = Instant::now().checked_sub(BACKOFF_MAX);
        b.calm_window();
        assert_eq!(b.backoff, BACKOFF_MIN);
    }

    impl BusyPoll {
        /// Traffic, then a window (of 1 ms) that runs out without a long yield.
        fn calm_window(&mut self) {
            assert_eq!(self.window, Duration::from_millis(1));
            self.sleep_until = None;
            self.activity();
            std::thread::sleep(Duration::from_millis(2));
            assert!(!self.spinning(), "the window ran out");
        }

        /// `idle_turn` with a yield that took `took`.
        fn long_yield_for_test(&mut self, took: Duration) {
            assert!(took > LONG_YIELD);
            let before = Instant::now();
            std::thread::sleep(took);
            self.after_yield(before, Instant::now());
        }
    }
}
