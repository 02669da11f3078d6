//! I/O drivers: the only place with syscalls and `unsafe`.
//!
//! - `netns`: open network namespaces and run code inside one without moving the caller.
//! - `netlink`: a small synchronous rtnetlink client (links and IPv4 addresses).
//! - `tap`: TAP devices (`/dev/net/tun`).
//! - `af_packet`: AF_PACKET sockets bound to an existing interface.
//! - `bpf`: classic BPF programs for sockets (filters, SO_REUSEPORT steering).
//! - `underlay`: the underlay UDP socket.
//! - `ethtool`: an interface's offload features, as `ethtool -k` shows them.
//! - `tunnel`: the host's tunnel device, which takes whole VXLAN super-frames.
//! - `egress`: seeing which datagrams leave the host (the tunnel device's check).
//!
//! Packet-path calls (`TapDevice::read`, `PacketSocket::recv`, ...) return `std::io::Result` so a
//! worker can match `WouldBlock` cheaply; setup calls return [`IoError`], which names the operation.

pub mod af_packet;
pub mod bpf;
pub mod cpu;
pub mod egress;
pub mod ethtool;
pub mod netlink;
pub mod netns;
pub mod tap;
pub mod tunnel;
pub mod underlay;

pub use af_packet::{Fanout, PacketOptions, PacketSocket, PacketStats, RecvInfo, RxMode};
pub use netlink::{LinkInfo, Netlink};
pub use netns::{open_netns, run_in_netns};
pub use tap::{TapDevice, TapOptions};

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("network namespace '{name}' not found: no {} (create it with `ip netns add {name}`)", .path.display())]
    NetnsNotFound { name: String, path: PathBuf },
    #[error("{} is not a network namespace", .path.display())]
    NotANetns { path: PathBuf },
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A failed system call; `op` says what we were doing ("creating TAP device vsw1").
    #[error("{op}: {source}")]
    Sys { op: String, source: io::Error },
    /// The kernel refused a netlink request; `detail` is its extended-ack message, if any.
    #[error("netlink: {op}: {source}{}", .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Netlink {
        op: String,
        source: io::Error,
        detail: Option<String>,
    },
}

impl IoError {
    pub(crate) fn sys(op: impl Into<String>, source: io::Error) -> IoError {
        IoError::Sys {
            op: op.into(),
            source,
        }
    }

    /// `IoError::sys` with `errno` of the call that just failed.
    pub(crate) fn last_os(op: impl Into<String>) -> IoError {
        IoError::sys(op, io::Error::last_os_error())
    }

    /// The errno behind this error, if it came from the kernel.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            IoError::Sys { source, .. } | IoError::Netlink { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Interface names are at most IFNAMSIZ-1 bytes, and the kernel's `dev_valid_name` refuses
/// ".", "..", '/', ':' and whitespace.
pub fn check_ifname(name: &str) -> Result<(), IoError> {
    let invalid = |reason| IoError::Invalid {
        what: "interface name",
        value: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() >= libc::IFNAMSIZ {
        return Err(invalid("longer than 15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(invalid("reserved name"));
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return Err(invalid("contains '/', ':', NUL or whitespace"));
    }
    Ok(())
}

/// Copies `name` into a NUL-terminated `ifr_name`-style buffer; the caller checked the length.
pub(crate) fn ifname_bytes(name: &str) -> [libc::c_char; libc::IFNAMSIZ] {
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *o = b as libc::c_char;
    }
    out
}

/// `if_nametoindex` in the calling thread's namespace; `Ok(None)` when there is no such interface.
pub fn ifindex_of(name: &str) -> Result<Option<u32>, IoError> {
    check_ifname(name)?;
    let c = std::ffi::CString::new(name).expect("checked: no NUL");
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODEV) {
            return Ok(None);
        }
        return Err(IoError::sys(format!("looking up interface {name}"), e));
    }
    Ok(Some(idx))
}

/// Sets `net.ipv6.conf.IFNAME.KEY` of the calling thread's network namespace (/proc/sys/net is
/// the namespace of whoever opens it). `Ok` also when the namespace has no IPv6 (nothing to set).
pub fn set_ipv6_conf(ifname: &str, key: &str, value: &str) -> Result<(), IoError> {
    check_ifname(ifname)?;
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/{key}");
    match std::fs::write(&path, value) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::sys(format!("writing {value} to {path}"), e)),
    }
}

/// Makes every thread allocate from one heap. glibc gives each thread that allocates its own
/// arena (up to eight per core), and an arena keeps its high-water mark: after the detach
/// reaper's sixteen threads had each freed what they allocated, 4096 ports left ~3 MiB more
/// than the daemon started with; with one arena the same run leaves ~1.5 MiB. Workers do not
/// allocate per packet (tests/no_alloc.rs), so the shared arena's lock is taken only by control
/// work. Called at the start of vswitchd, before any thread; `MALLOC_ARENA_MAX` in the
/// environment still wins.
pub fn one_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no thread allocates concurrently yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}

/// Gives the heap's free memory back to the system. glibc's allocator keeps what threads freed
/// for later use, so after thousands of ports went vswitchd's RSS stayed at its peak;
/// `malloc_trim(0)` returns the free pages of every arena (madvise), not just the top of the
/// main heap. A few milliseconds
/// once after a burst of detaches, on the control thread
/// (crate::control::server).
pub fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists, under its locks.
        unsafe { libc::malloc_trim(0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        for ok in ["eth0", "vsw3a9f0c", "a", "abcdefghijklmno"] {
            check_ifname(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "abcdefghijklmnop"] {
            assert!(check_ifname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn netns_not_found_message() {
        let e = IoError::NetnsNotFound {
            name: "foo".into(),
            path: "/var/run/netns/foo".into(),
        };
        assert_eq!(
            e.to_string(),
            "network namespace 'foo' not found: no /var/run/netns/foo (create it with `ip netns add foo`)"
        );
    }
}
