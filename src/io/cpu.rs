//! The cores this process may run on, and pinning a thread to one (sched_setaffinity(2)).

use std::io;

/// The CPUs the calling thread may run on, in order (what `taskset` or a cgroup cpuset left).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: all-zero is a valid cpu_set_t; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `set` is initialised and the index is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: all-zero is a valid cpu_set_t; CPU_SET stays within it (checked below).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size given; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// struct sched_attr (uapi linux/sched/types.h), SCHED_ATTR_SIZE_VER1.
#[repr(C)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

/// Asks the scheduler (EEVDF, Linux 6.12) for a time slice of `slice` for the calling thread,
/// which stays SCHED_OTHER at its nice value: a thread with a shorter slice than the one
/// running gets the core as soon as it wakes (the kernel's PREEMPT_SHORT) instead of waiting
/// for the running thread's slice or the next tick. The kernel takes 0.1 ms to 100 ms; older
/// kernels ignore the request (the slice is only a hint there).
pub fn set_current_thread_slice(slice: std::time::Duration) -> io::Result<()> {
    // SAFETY: getpriority has no memory effects (errno only for an invalid `which`).
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: slice.as_nanos().min(u64::MAX as u128) as u64,
        sched_deadline: 0,
        sched_period: 0,
        sched_util_min: 0,
        sched_util_max: 0,
    };
    // SAFETY: sched_setattr reads `size` bytes of a struct sched_attr from the pointer; pid 0
    // is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The worker count `workers = 0` means: half the cores this process may use, at least one.
/// The other half is left to the containers: on a host that runs one vswitchd among busy
/// containers, a worker per core competes with them for every core, and with several workers
/// a frame from the underlay is often received by another worker than the one that reads its
/// container's TAP, one more wake-up per round trip. Measured with benches/iperf.sh on a
/// 2-vCPU VM: ping on a busy host, p99 0.3 ms with one worker against 4.1 to 4.9 ms with two
/// (both at nice -20), TCP with 4 streams no lower.
pub fn default_workers(cpus: usize) -> usize {
    (cpus / 2).max(1)
}

/// Sets the calling thread's nice value (-20, most favoured, to 19). Lowering it needs
/// CAP_SYS_NICE, which vswitchd has as root.
pub fn set_current_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority has no memory effects; PRIO_PROCESS with a thread id sets that
    // thread's nice value on Linux.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_leaves_one_allowed_cpu() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let last = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(last).unwrap();
            assert_eq!(allowed_cpus(), [last]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn half_the_cores_work_by_default() {
        assert_eq!(default_workers(0), 1);
        assert_eq!(default_workers(1), 1);
        assert_eq!(default_workers(2), 1);
        assert_eq!(default_workers(3), 1);
        assert_eq!(default_workers(16), 8);
    }

    #[test]
    fn a_thread_may_take_a_nice_value() {
        std::thread::spawn(|| {
            set_current_thread_nice(5).unwrap();
            // SAFETY: getpriority has no memory effects; PRIO_PROCESS with a thread id reads
            // that thread's nice value on Linux.
            let nice =
                unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
            assert_eq!(nice, 5);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_may_ask_for_a_short_slice() {
        std::thread::spawn(|| {
            set_current_thread_slice(std::time::Duration::from_micros(100)).unwrap();
            // /proc/thread-self/sched shows it (se.slice, in ns) where the kernel has it.
            if let Ok(sched) = std::fs::read_to_string("/proc/thread-self/sched") {
                if let Some(line) = sched.lines().find(|l| l.starts_with("se.slice")) {
                    assert!(line.trim_end().ends_with("100000"), "{line}");
                }
            }
        })
        .join()
        .unwrap();
    }
}
