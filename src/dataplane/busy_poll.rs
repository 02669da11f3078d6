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

//!
//! A yield only finds out once the core was taken, and that costs a frame a tick. So a worker
//! also looks ahead (`IdleGate`, mode `Auto`, the default): it opens a window only if fewer
//! threads than cores are runnable besides itself right now (/proc/loadavg), and while, over
//! the last `SAMPLE_EVERY` or more, the other processes left at least half a core idle
//! (/proc/stat, less vswitchd's own time from /proc/self/stat). A host whose containers keep
//! every core busy then never sees a worker spin: every frame wakes it, and a woken thread
//! preempts a CPU-bound one at once.
//!
//! Mode `Kernel` leaves the waiting to the kernel's own busy-poll machinery instead: epoll
//! busy-poll parameters (EPIOCSPARAMS, Linux 6.9) on the worker's epoll and SO_BUSY_POLL /
//! SO_PREFER_BUSY_POLL on its underlay sockets. The kernel spins only on a NAPI context it knows
//! for the socket (a NIC queue, or a veth with GRO on), never on a TAP queue.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// A yield longer than this means another thread had work for the core, not a moment's.
const LONG_YIELD: Duration = Duration::from_micros(200);
/// How long the worker sleeps rather than spins after a long yield: doubled each time it
/// happens again, back to the least once `BACKOFF_MAX` has passed without one (a host whose
/// containers are busy now and then stays busy a while: it should not pay a tick each time).
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// How a worker waits right after traffic (VSWITCH_BUSY_POLL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spin in userspace for the window while another core is idle (`IdleGate`); the default.
    Auto,
    /// Spin in userspace for the window whatever else runs (backing off after long yields).
    Spin,
    /// No userspace spinning: the kernel busy-polls the underlay sockets' NAPI context for the
    /// window inside epoll_wait (`kernel_busy_poll`).
    Kernel,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Some(Mode::Auto),
            "spin" => Some(Mode::Spin),
            "kernel" => Some(Mode::Kernel),
            _ => None,
        }
    }
}

/// How often a worker in mode `Auto` looks at how busy the machine is (while it has traffic).
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Spin only while the rest of the machine leaves this much of a core idle (in 1/100 core).
const FREE_CORES_CENTI: u64 = 50;

/// CPU time counters at one moment, in clock ticks: the whole machine's (/proc/stat "cpu" line),
/// and this process's (every thread of vswitchd: /proc/self/stat utime + stime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuSample {
    /// Every field of the "cpu" line but guest time (already inside user).
    pub total: u64,
    /// idle + iowait.
    pub idle: u64,
    pub own: u64,
}

/// Whether a worker may spin (sans-IO): fed samples of the machine's and the process's CPU
/// time, it allows spinning while the other processes left at least `FREE_CORES_CENTI` of a
/// core idle between the last two samples. vswitchd's own time counts as free: it is what
/// spinning spends, and the workers give it up by sleeping.
pub struct IdleGate {
    cpus: u64,
    last: Option<CpuSample>,
    allowed: bool,
    /// Samples that found no core idle (each closes the gate until the next), for `show stats`.
    pub closed: u64,
}

impl IdleGate {
    pub fn new(cpus: usize) -> IdleGate {
        IdleGate {
            cpus: cpus.max(1) as u64,
            last: None,
            allowed: true,
            closed: 0,
        }
    }

    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Whether a window may open now, with `running` threads runnable on the machine (the
    /// asking worker one of them): a core must be free of the others. Counted in `closed` when
    /// not.
    pub fn allows_now(&mut self, running: u64) -> bool {
        let ok = running.saturating_sub(1) < self.cpus;
        if !ok {
            self.closed += 1;
        }
        ok
    }

    /// Takes a new sample; returns whether spinning is allowed until the next one.
    pub fn sample(&mut self, now: CpuSample) -> bool {
        if let Some(last) = self.last {
            let total = now.total.saturating_sub(last.total);
            let free = now.idle.saturating_sub(last.idle) + now.own.saturating_sub(last.own);
            // Free cores (in 1/100) = cpus * free / total; no time passed: the decision stands.
            if let Some(free_centi) = (self.cpus * 100 * free.min(total)).checked_div(total) {
                self.allowed = free_centi >= FREE_CORES_CENTI;
                if !self.allowed {
                    self.closed += 1;
                }
            }
        }
        self.last = Some(now);
        self.allowed
    }
}

/// Reads `CpuSample`s and the runnable count from proc files kept open (pread at offset 0, no allocation).
pub struct CpuReader {
    stat: std::fs::File,
    own: std::fs::File,
    loadavg: std::fs::File,
}

impl CpuReader {
    pub fn open() -> io::Result<CpuReader> {
        Ok(CpuReader {
            stat: std::fs::File::open("/proc/stat")?,
            own: std::fs::File::open("/proc/self/stat")?,
            loadavg: std::fs::File::open("/proc/loadavg")?,
        })
    }

    /// Threads runnable on the machine right now (/proc/loadavg's "R/T": R).
    pub fn running(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 128];
        let n = self.loadavg.read_at(&mut buf, 0).ok()?;
        parse_running(&buf[..n])
    }

    pub fn read(&self) -> Option<CpuSample> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 512];
        let n = self.stat.read_at(&mut buf, 0).ok()?;
        let (total, idle) = parse_proc_stat(&buf[..n])?;
        let n = self.own.read_at(&mut buf, 0).ok()?;
        let own = parse_own_ticks(&buf[..n])?;
        Some(CpuSample { total, idle, own })
    }
}

/// (total, idle + iowait) ticks from the first line of /proc/stat:
/// `cpu user nice system idle iowait irq softirq steal guest guest_nice`.
fn parse_proc_stat(b: &[u8]) -> Option<(u64, u64)> {
    let line = b.split(|&c| c == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut f = line.split_ascii_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let v: [u64; 8] = std::array::from_fn(|_| f.next().and_then(|x| x.parse().ok()).unwrap_or(0));
    Some((v.iter().sum(), v[3] + v[4]))
}

/// The runnable count of /proc/loadavg: `0.52 0.58 0.59 3/467 12345`.
fn parse_running(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?;
    let field = s.split_ascii_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

/// utime + stime of /proc/self/stat (fields 14 and 15; the name in parentheses may hold spaces).
fn parse_own_ticks(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let mut f = rest.split_ascii_whitespace();
    // After ")": state (3) ppid (4) ... utime is field 14, the 12th here.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPUs online on the machine (what /proc/stat's "cpu" line adds up), at least 1.
fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory effects.
    (unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).max(1) as usize
}

/// EPIOCSPARAMS (Linux 6.9, uapi linux/eventpoll.h): _IOW(0x8A, 0x01, struct epoll_params).
const EPIOCSPARAMS: libc::c_ulong = 0x4008_8A01;
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
/// Frames the kernel takes per busy-poll round (its NAPI_POLL_WEIGHT).
const KERNEL_BUDGET: u16 = 64;

#[repr(C)]
struct EpollParams {
    busy_poll_usecs: u32,
    busy_poll_budget: u16,
    prefer_busy_poll: u8,
    pad: u8,
}

/// Mode `Kernel`: epoll_wait on `epoll` busy-polls for `usecs` before it sleeps, and the
/// `sockets` prefer busy-polling (their NAPI context is then polled by the reader rather than
/// by softirq while it busy-polls). Fails on kernels older than 6.9 (ENOTTY).
pub fn kernel_busy_poll(epoll: RawFd, sockets: &[RawFd], usecs: u32) -> io::Result<()> {
    let params = EpollParams {
        busy_poll_usecs: usecs,
        busy_poll_budget: KERNEL_BUDGET,
        prefer_busy_poll: 1,
        pad: 0,
    };
    // SAFETY: EPIOCSPARAMS reads a struct epoll_params (8 bytes, layout above) from the pointer.
    if unsafe { libc::ioctl(epoll, EPIOCSPARAMS, &params as *const EpollParams) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for &fd in sockets {
        for (opt, val) in [
            (SO_BUSY_POLL, usecs as libc::c_int),
            (SO_PREFER_BUSY_POLL, 1),
            (SO_BUSY_POLL_BUDGET, KERNEL_BUDGET as libc::c_int),
        ] {
            // SAFETY: an int option, its size given.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    &val as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

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
    /// Mode `Auto`: spin only while another core is idle.
    gate: Option<Gate>,
    /// Windows begun (traffic while not spinning), and those ended by a long yield.
    pub windows: u64,
    pub given_up: u64,
}

struct Gate {
    idle: IdleGate,
    reader: CpuReader,
    next_sample: Instant,
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
            gate: None,
            windows: 0,
            given_up: 0,
        }
    }

    /// Mode `Auto`: windows open only while the other processes leave a core idle (`IdleGate`
    /// over the machine's `cpus`). Without /proc, as `new`.
    pub fn gated(window: Duration, cpus: usize) -> BusyPoll {
        let mut b = BusyPoll::new(window);
        b.gate = CpuReader::open().ok().map(|reader| Gate {
            idle: IdleGate::new(cpus),
            reader,
            next_sample: Instant::now(),
        });
        b
    }

    /// How a worker in `mode` waits for `window` after traffic; `epoll` and `sockets` (its
    /// underlay sockets) for mode `Kernel`, which on a kernel without epoll busy-poll
    /// parameters (before 6.9) falls back to `Auto`, and says so.
    pub fn for_mode(window: Duration, mode: Mode, epoll: RawFd, sockets: &[RawFd]) -> BusyPoll {
        match mode {
            Mode::Spin => BusyPoll::new(window),
            Mode::Auto => BusyPoll::gated(window, online_cpus()),
            Mode::Kernel => {
                let usecs = window.as_micros().min(u32::MAX as u128) as u32;
                match kernel_busy_poll(epoll, sockets, usecs) {
                    Ok(()) => BusyPoll::new(Duration::ZERO),
                    Err(e) => {
                        tracing::warn!(
                            "kernel busy-polling refused ({e}; needs Linux 6.9): spinning in \
                             userspace while a core is idle instead (VSWITCH_BUSY_POLL=auto)"
                        );
                        BusyPoll::gated(window, online_cpus())
                    }
                }
            }
        }
    }

    /// Samples of the gate that found no core idle (no spinning until the next).
    pub fn gated_count(&self) -> u64 {
        self.gate.as_ref().map_or(0, |g| g.idle.closed)
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
        if let Some(g) = &mut self.gate {
            if now >= g.next_sample {
                // At most every SAMPLE_EVERY, and only with traffic: two preads of proc files.
                g.next_sample = now + SAMPLE_EVERY;
                if let Some(sample) = g.reader.read() {
                    g.idle.sample(sample);
                }
            }
            // A window that would open: only with a core nobody else wants now.
            let free_now =
                !self.closed || g.reader.running().map_or(true, |r| g.idle.allows_now(r));
            if !g.idle.allowed() || !free_now {
                self.closed = true;
                return;
            }
        }
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

    /// Samples 100 ticks apart on a 2-CPU machine: `others` of them busy with other
    /// processes, `own` with vswitchd, the rest idle.
    fn feed(g: &mut IdleGate, at: &mut CpuSample, others: u64, own: u64) -> bool {
        at.total += 100;
        at.own += own;
        at.idle += 100 - others - own;
        g.sample(*at)
    }

    #[test]
    fn the_gate_closes_when_other_processes_leave_no_core_idle_and_reopens() {
        let mut g = IdleGate::new(2);
        let mut at = CpuSample::default();
        assert!(g.sample(at), "open before it knows anything");
        assert!(
            feed(&mut g, &mut at, 10, 5),
            "a ping and its switch: 1.7 cores free"
        );
        assert!(
            feed(&mut g, &mut at, 20, 80),
            "vswitchd spinning on every core: its own time counts as free"
        );
        assert!(
            feed(&mut g, &mut at, 75, 0),
            "exactly half a core free (25 of 100 ticks on 2 CPUs): still open"
        );
        assert_eq!(g.closed, 0);
        assert!(
            !feed(&mut g, &mut at, 98, 2),
            "CPU-bound containers on every core"
        );
        assert!(
            !feed(&mut g, &mut at, 80, 0),
            "0.4 cores free: stays closed"
        );
        assert_eq!(g.closed, 2, "counted per sample that found no core idle");
        assert!(feed(&mut g, &mut at, 40, 0), "the containers calmed down");
        assert!(!feed(&mut g, &mut at, 100, 0));
        assert_eq!(g.closed, 3);
        // No time passed (two samples in one clock tick): the decision stands.
        assert!(!g.sample(at));
    }

    #[test]
    fn a_window_opens_only_with_a_core_free_of_other_runnable_threads() {
        let mut g = IdleGate::new(2);
        assert!(g.allows_now(1), "only the asking worker");
        assert!(g.allows_now(2), "it and one other: a core left");
        assert!(!g.allows_now(3), "two others on two cores");
        assert!(!g.allows_now(9));
        assert_eq!(g.closed, 2);
        assert!(IdleGate::new(1).allows_now(1));
        assert!(!IdleGate::new(1).allows_now(2));
    }

    #[test]
    fn one_cpu_needs_half_of_it_free() {
        let mut g = IdleGate::new(1);
        let mut at = CpuSample::default();
        g.sample(at);
        at.total += 100;
        at.idle += 60;
        assert!(g.sample(at));
        at.total += 100;
        at.idle += 40;
        assert!(!g.sample(at));
    }

    #[test]
    fn proc_files_parse() {
        let stat = b"cpu  47134 3 11539 11738 416 5 223 554 0 0\ncpu0 22849 0 5700 6774 50 0";
        assert_eq!(
            parse_proc_stat(stat),
            Some((47134 + 3 + 11539 + 11738 + 416 + 5 + 223 + 554, 11738 + 416))
        );
        assert_eq!(parse_proc_stat(b"intr 1 2 3"), None);
        let own = b"21376 (vswitch w) R 21373 21373 5103 0 -1 4194304 2850 6532 0 0 4 7 4 3 20 0";
        assert_eq!(parse_own_ticks(own), Some(11));
        assert_eq!(parse_running(b"0.52 0.58 0.59 3/467 12345\n"), Some(3));
        assert_eq!(parse_running(b"0.52 0.58"), None);
        let sample = CpuReader::open().unwrap().read().unwrap();
        assert!(sample.total > sample.idle && sample.total > 0);
    }

    #[test]
    fn a_closed_gate_opens_no_window() {
        // As many CPUs as never have that many threads runnable: only `allowed` decides.
        let mut b = BusyPoll::gated(Duration::from_secs(10), 100_000);
        let g = b.gate.as_mut().unwrap();
        g.idle.allowed = false;
        g.next_sample = Instant::now() + Duration::from_secs(60);
        b.activity();
        assert!(!b.spinning());
        assert_eq!(b.windows, 0);
        b.gate.as_mut().unwrap().idle.allowed = true;
        b.activity();
        assert!(b.spinning());
        assert_eq!(b.windows, 1);
    }

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
