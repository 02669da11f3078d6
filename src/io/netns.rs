//! Network namespaces: open one by name or path, and run code inside it.
//!
//! [`run_in_netns`] never changes the namespace of the calling thread: it runs the closure on a
//! short-lived thread that enters the namespace with `setns(2)` and exits afterwards. Sockets are
//! bound to the namespace they were created in, not to the thread that uses them, so a netlink or
//! AF_PACKET socket opened inside the closure keeps working in that namespace from any thread.
//! Callable from any thread (it needs CAP_SYS_ADMIN).

use super::IoError;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where `ip netns add NAME` bind-mounts the namespace (ip-netns(8)).
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// `NS_GET_NSTYPE` from include/uapi/linux/nsfs.h: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Opens a network namespace. `spec` is a name under /var/run/netns, or a path (anything with a
/// '/') such as /proc/PID/ns/net.
pub fn open_netns(spec: &str) -> Result<OwnedFd, IoError> {
    let by_name = !spec.contains('/');
    if by_name && (spec.is_empty() || spec == "." || spec == "..") {
        return Err(IoError::Invalid {
            what: "network namespace name",
            value: spec.to_string(),
            reason: "expected a name as made by `ip netns add` or a path such as /proc/PID/ns/net",
        });
    }
    let path: PathBuf = if by_name {
        Path::new(NETNS_RUN_DIR).join(spec)
    } else {
        PathBuf::from(spec)
    };
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| IoError::Invalid {
        what: "network namespace",
        value: spec.to_string(),
        reason: "contains a NUL byte",
    })?;
    // SAFETY: `c` is NUL-terminated; the returned fd is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if by_name && e.raw_os_error() == Some(libc::ENOENT) {
            return Err(IoError::NetnsNotFound {
                name: spec.to_string(),
                path,
            });
        }
        return Err(IoError::sys(
            format!("opening network namespace {}", path.display()),
            e,
        ));
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Catch "/etc/hosts" or a mount namespace here rather than as EINVAL from setns later.
    // ENOTTY means a kernel older than 4.11 or not an nsfs file at all; setns will tell.
    // SAFETY: the ioctl takes no argument.
    let ty = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if ty >= 0 && ty != libc::CLONE_NEWNET {
        return Err(IoError::NotANetns { path });
    }
    if ty < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTTY) {
        return Err(IoError::NotANetns { path });
    }
    Ok(fd)
}

/// Runs `f` on a new thread that first enters the network namespace `ns`, and returns its result.
/// The calling thread stays where it is. A panic in `f` is propagated to the caller.
pub fn run_in_netns<T: Send>(ns: impl AsFd, f: impl FnOnce() -> T + Send) -> Result<T, IoError> {
    let fd = ns.as_fd();
    let joined = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("netns".into())
            .spawn_scoped(s, move || {
                // SAFETY: setns only reads the descriptor, which `ns` keeps open for the scope.
                if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(IoError::last_os("entering network namespace (setns)"));
                }
                Ok(f())
            })
            .map_err(|e| IoError::sys("spawning thread for network namespace", e))
            .map(|h| h.join())
    })?;
    match joined {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Device and inode of an open namespace file: what tells one namespace from another.
pub fn identity(fd: &impl AsRawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat writes only into `st`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// The lowest pid whose network namespace is `ns` (an identity as [`identity`] gives), found
/// in /proc: a path (`/proc/PID/ns/net`) that names a namespace no one bind-mounted, such as
/// a container's whose runtime keeps its own mounts. Reads every process's link: control
/// side only.
pub fn pid_in(ns: (u64, u64)) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| (m.dev(), m.ino()) == ns)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_name_is_explained() {
        let e = open_netns("vswitch-no-such-ns-xyz").unwrap_err();
        assert!(matches!(e, IoError::NetnsNotFound { .. }), "{e}");
        assert!(e
            .to_string()
            .contains("ip netns add vswitch-no-such-ns-xyz"));
    }

    #[test]
    fn missing_path_names_the_path() {
        let e = open_netns("/nonexistent/ns/net").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ns/net"), "{e}");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn not_a_netns() {
        let e = open_netns("/proc/self/ns/mnt").unwrap_err();
        assert!(matches!(e, IoError::NotANetns { .. }), "{e}");
        let e = open_netns("/etc/hostname").unwrap_err();
        assert!(matches!(e, IoError::NotANetns { .. }), "{e}");
    }

    #[test]
    fn run_in_own_netns_returns_value() {
        let ns = open_netns("/proc/self/ns/net").unwrap();
        let v = run_in_netns(&ns, || 41 + 1).unwrap();
        assert_eq!(v, 42);
    }

    #[test]
    fn borrows_from_caller() {
        let ns = open_netns("/proc/self/ns/net").unwrap();
        let mut hits = Vec::new();
        run_in_netns(ns.as_fd(), || hits.push(1)).unwrap();
        assert_eq!(hits, [1]);
    }
}
