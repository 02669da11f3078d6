//! TAP devices: an Ethernet interface whose frames are read and written through a file
//! descriptor on `/dev/net/tun` (Documentation/networking/tuntap.rst).
//!
//! By default the device is not persistent: it exists while the [`TapDevice`] (its fd) lives,
//! and closing the fd removes it from whichever network namespace it was moved to. A device
//! made persistent ([`TapDevice::set_persistent`], TUNSETPERSIST) outlives its fds when the
//! process dies (kill -9, a crash) or exits after [`keep_persistent_devices`], so a restarted
//! daemon re-opens it by name ([`TapDevice::open_existing`]); dropping a `TapDevice` otherwise
//! still removes it. The device is created in the namespace of the thread that calls
//! [`TapDevice::create`]. `read`/`write` are nonblocking,
//! take `&self` and may be called from any thread; each call moves exactly one frame.

use super::{check_ifname, ifname_bytes, IoError};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Creation options beyond the defaults (`IFF_TAP | IFF_NO_PI`, one queue, no vnet header).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapOptions {
    /// `IFF_MULTI_QUEUE`: further queues attach by opening the same name again.
    pub multi_queue: bool,
    /// `IFF_VNET_HDR`: every frame read or written is preceded by a `virtio_net_hdr`.
    pub vnet_hdr: bool,
    /// With `vnet_hdr`: TUNSETOFFLOAD checksum and TSO (IPv4, IPv6, ECN), so the container's
    /// TCP hands over up to 64 KB per frame with a partial checksum (see crate::offload).
    pub offload: bool,
    /// With `offload`: UDP segmentation too (TUN_F_USO4 | TUN_F_USO6, Linux 6.2), so a
    /// container's UDP_SEGMENT send arrives as one frame, and runs of datagrams of one UDP
    /// flow can be written to the container as one frame (crate::offload::gro). Dropped on
    /// kernels that refuse it, like `napi`.
    pub uso: bool,
    /// `IFF_NAPI`: frames we write enter the stack through NAPI and GRO, which coalesces
    /// consecutive TCP segments before the container's TCP sees them. Dropped silently on
    /// kernels that refuse it (`TapDevice::options` tells what is on).
    pub napi: bool,
    /// With `offload`: UDP-tunnel GSO writes (`TUN_F_UDP_TUNNEL_GSO`, Linux 6.17) and the
    /// 24-byte header they are described by (TUNSETVNETHDRSZ; crate::offload::tunnel). For the
    /// host-side tunnel device (crate::io::tunnel), not container ports: creation fails on
    /// kernels that refuse it.
    pub udp_tunnel: bool,
}

/// include/uapi/linux/if_tun.h (Linux 6.2), not in every libc release.
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;
/// include/uapi/linux/if_tun.h (Linux 6.17).
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x80;

/// `struct ifreq` as TUNSETIFF reads and writes it: the name, then `ifr_flags` in the union.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22], // the rest of the 24-byte union
}

#[derive(Debug)]
pub struct TapDevice {
    fd: OwnedFd,
    name: String,
    options: TapOptions,
    /// Made persistent through this fd or another queue of the device: cleared on drop (unless
    /// the process keeps its devices), so the device still goes with its last fd.
    persistent: bool,
}

/// Set once the daemon stops keeping its ports (`vswitchctl shutdown --keep-ports`): from then
/// on, dropping a persistent device leaves it in place for the next daemon.
static KEEP_PERSISTENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, persistent devices outlive their `TapDevice`s (the process is stopping and a
/// later one will re-adopt them). Irreversible; process-wide.
pub fn keep_persistent_devices() {
    KEEP_PERSISTENT.store(true, std::sync::atomic::Ordering::SeqCst);
}

impl Drop for TapDevice {
    fn drop(&mut self) {
        if self.persistent && !KEEP_PERSISTENT.load(std::sync::atomic::Ordering::SeqCst) {
            // The device may be gone already (its namespace deleted): nothing to undo then.
            let _ = self.persist(false);
        }
    }
}

impl TapDevice {
    /// Creates a TAP device called `name` (at most 15 bytes) in the calling thread's namespace.
    pub fn create(name: &str) -> Result<TapDevice, IoError> {
        TapDevice::create_with(name, TapOptions::default())
    }

    pub fn create_with(name: &str, options: TapOptions) -> Result<TapDevice, IoError> {
        check_ifname(name)?;
        let op = || format!("creating TAP device {name}");
        // SAFETY: NUL-terminated path literal; the fd is owned right after.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(IoError::sys(format!("{}: opening /dev/net/tun", op()), e));
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
        if options.multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        if options.vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        let mut options = options;
        let set_iff = |flags: libc::c_int| {
            let mut req = IfReqFlags {
                name: ifname_bytes(name),
                flags: flags as libc::c_short,
                _pad: [0; 22],
            };
            // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `req` lays out.
            if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        let mut result = set_iff(if options.napi {
            flags | libc::IFF_NAPI
        } else {
            flags
        });
        if options.napi
            && result
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL))
        {
            options.napi = false;
            result = set_iff(flags);
        }
        // EBUSY: a tun device of that name is in use; EINVAL: a non-tun device has the name.
        result.map_err(|e| IoError::sys(op(), e))?;
        if options.vnet_hdr && options.offload {
            let tso = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
            // The kernel takes USO only as a pair (tun_set_offload).
            let uso = tso | TUN_F_USO4 | TUN_F_USO6;
            let set_offload = |features: libc::c_uint| {
                // SAFETY: TUNSETOFFLOAD takes the feature bits by value.
                let rc = unsafe {
                    libc::ioctl(
                        fd.as_raw_fd(),
                        libc::TUNSETOFFLOAD as _,
                        features as libc::c_ulong,
                    )
                };
                if rc < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            if options.udp_tunnel {
                let size = crate::offload::tunnel::VNET_HDR_LEN as libc::c_int;
                // SAFETY: TUNSETVNETHDRSZ reads one int.
                if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ as _, &size) } < 0 {
                    let e = io::Error::last_os_error();
                    return Err(IoError::sys(format!("{}: TUNSETVNETHDRSZ {size}", op()), e));
                }
                // The kernel takes tunnel GSO beside the plain offloads, USO included.
                set_offload(uso | TUN_F_UDP_TUNNEL_GSO).map_err(|e| {
                    IoError::sys(
                        format!("{}: UDP-tunnel GSO (TUNSETOFFLOAD, Linux 6.17)", op()),
                        e,
                    )
                })?;
                options.uso = true;
            } else if !(options.uso && set_offload(uso).is_ok()) {
                options.uso = false;
                set_offload(tso).map_err(|e| {
                    IoError::sys(format!("{}: enabling TSO (TUNSETOFFLOAD)", op()), e)
                })?;
            }
        } else {
            options.offload = false;
            options.uso = false;
            options.udp_tunnel = false;
        }
        Ok(TapDevice {
            fd,
            name: name.to_string(),
            options,
            persistent: false,
        })
    }

    /// Attaches to the existing TAP device `name` in the calling thread's namespace (one queue
    /// of it), as a restarted daemon re-adopts a persistent device. `options.multi_queue` must
    /// be what the device was made with. Refused (EINVAL) for a device that is not a TAP, so
    /// an interface someone else made under that name is never taken over; and when no
    /// device has the name: this never creates one.
    pub fn open_existing(name: &str, options: TapOptions) -> Result<TapDevice, IoError> {
        check_ifname(name)?;
        if super::ifindex_of(name)?.is_none() {
            return Err(IoError::sys(
                format!("opening TAP device {name}"),
                io::Error::from_raw_os_error(libc::ENODEV),
            ));
        }
        let mut tap = TapDevice::create_with(name, options)?;
        tap.persistent = true;
        Ok(tap)
    }

    /// Makes the device persistent (TUNSETPERSIST): it stays, with its name, MAC, addresses
    /// and routes, when every fd of it closes because the process died, or exited after
    /// [`keep_persistent_devices`]. Dropping this `TapDevice` in a running daemon still
    /// removes it (it clears the flag first).
    pub fn set_persistent(&mut self) -> Result<(), IoError> {
        self.persist(true)
            .map_err(|e| IoError::sys(format!("making TAP device {} persistent", self.name), e))?;
        self.persistent = true;
        Ok(())
    }

    /// Where the device is now: its current name (TUNGETIFF) and its network namespace
    /// (TUNGETDEVNETNS, Linux 5.2), which change when another program (dockerd) moves and
    /// renames it.
    pub fn whereabouts(&self) -> io::Result<(String, OwnedFd)> {
        let mut ifr = [0u8; 40];
        // SAFETY: TUNGETIFF writes a struct ifreq (40 bytes) into `ifr`.
        let rc =
            unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNGETIFF as _, ifr.as_mut_ptr()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let end = ifr[..libc::IFNAMSIZ]
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(libc::IFNAMSIZ);
        let name = String::from_utf8_lossy(&ifr[..end]).into_owned();
        // TUNGETDEVNETNS is _IO('T', 227); it returns a new fd of the device's namespace.
        const TUNGETDEVNETNS: libc::c_ulong = 0x54e3;
        // SAFETY: the ioctl takes no argument and returns an fd we own from here on.
        let ns = unsafe { libc::ioctl(self.fd.as_raw_fd(), TUNGETDEVNETNS as _) };
        if ns < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd nobody else owns.
        Ok((name, unsafe { OwnedFd::from_raw_fd(ns) }))
    }

    fn persist(&self, on: bool) -> io::Result<()> {
        // SAFETY: TUNSETPERSIST takes the flag by value.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETPERSIST as _,
                libc::c_ulong::from(on),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads one frame and its `virtio_net_hdr` (IFF_VNET_HDR devices).
    pub fn read_vnet(
        &self,
        hdr: &mut [u8; crate::offload::vnet::HDR_LEN],
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
        ];
        // SAFETY: both iovecs point into live, writable buffers of the given lengths.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize).saturating_sub(hdr.len()))
    }

    /// Writes one frame behind a `virtio_net_hdr` (IFF_VNET_HDR devices).
    pub fn write_vnet(
        &self,
        hdr: &[u8; crate::offload::vnet::HDR_LEN],
        frame: &[u8],
    ) -> io::Result<usize> {
        self.write_behind(hdr, frame)
    }

    /// Writes `head` and `frame` as one frame (a header of the device's size, and what
    /// follows it): one `writev`, nothing copied here.
    pub fn write_behind(&self, head: &[u8], frame: &[u8]) -> io::Result<usize> {
        let iov = [
            libc::iovec {
                iov_base: head.as_ptr() as *mut libc::c_void,
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: both iovecs point into live buffers; writev only reads them.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Opens another queue of this `multi_queue` device, for another worker: the kernel spreads
    /// the device's outgoing flows over its queues by flow hash, so each flow is read by one
    /// worker, in order. Call it in the namespace the device is in, before any rename.
    pub fn open_queue(&self) -> Result<TapDevice, IoError> {
        if !self.options.multi_queue {
            return Err(IoError::sys(
                format!(
                    "opening another queue of {}: not a multi-queue device",
                    self.name
                ),
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        let mut q = TapDevice::create_with(&self.name, self.options)?;
        q.persistent = self.persistent;
        Ok(q)
    }

    /// The name the device was created with; renames made later through netlink are not seen.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn options(&self) -> TapOptions {
        self.options
    }

    /// Reads one frame; `WouldBlock` when none is queued. A frame longer than `buf` is truncated.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Writes one frame, which the kernel receives as if it had arrived on the device's wire.
    /// Fails with EIO while the device is down.
    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: `frame` is valid for reads of its length.
        let n = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TapDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{netlink::Netlink, open_netns, run_in_netns};
    use std::process::Command;

    /// A scratch namespace for one test, deleted on drop.
    struct TempNetns(String);

    impl TempNetns {
        fn new(tag: &str) -> TempNetns {
            let name = format!("vswt-tap-{}-{tag}", std::process::id());
            let ok = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap();
            assert!(ok.success(), "ip netns add {name}");
            TempNetns(name)
        }
    }

    impl Drop for TempNetns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    #[test]
    fn create_read_write_in_netns() {
        let ns = TempNetns::new("rw");
        let fd = open_netns(&ns.0).unwrap();
        let tap = run_in_netns(&fd, || TapDevice::create("vswtap0"))
            .unwrap()
            .unwrap();
        assert_eq!(tap.name(), "vswtap0");
        let mut buf = [0u8; 2048];
        let e = tap.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // Name taken by another TAP we own: refused (EBUSY), not attached as a second queue.
        let dup = run_in_netns(&fd, || TapDevice::create("vswtap0")).unwrap();
        assert!(dup
            .unwrap_err()
            .to_string()
            .contains("creating TAP device vswtap0"));
        let mut nl = run_in_netns(&fd, Netlink::open).unwrap().unwrap();
        let idx = nl.link_index("vswtap0").unwrap().unwrap();
        nl.set_link_up(idx, true).unwrap();
        let frame = [0xffu8; 60];
        assert_eq!(tap.write(&frame).unwrap(), 60);
        drop(tap);
        assert_eq!(nl.link_index("vswtap0").unwrap(), None);
    }

    #[test]
    fn multi_queue_device_lives_until_its_last_queue_closes() {
        let ns = TempNetns::new("mq");
        let fd = open_netns(&ns.0).unwrap();
        let opts = TapOptions {
            multi_queue: true,
            ..TapOptions::default()
        };
        let q0 = run_in_netns(&fd, || TapDevice::create_with("vswmq0", opts))
            .unwrap()
            .unwrap();
        let q1 = run_in_netns(&fd, || q0.open_queue()).unwrap().unwrap();
        let queues = || {
            let out = Command::new("ip")
                .args(["netns", "exec", &ns.0, "ls", "/sys/class/net/vswmq0/queues"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        assert!(queues().contains("tx-1"), "two queues: {}", queues());
        let mut nl = run_in_netns(&fd, Netlink::open).unwrap().unwrap();
        drop(q0);
        assert!(
            nl.link_index("vswmq0").unwrap().is_some(),
            "queue 1 still open"
        );
        drop(q1);
        assert_eq!(nl.link_index("vswmq0").unwrap(), None);
        // A single-queue device has no second queue to open.
        let single = run_in_netns(&fd, || TapDevice::create("vswsq0"))
            .unwrap()
            .unwrap();
        assert!(single.open_queue().is_err());
    }

    #[test]
    fn a_persistent_device_outlives_a_dead_process_and_is_reopened_by_name() {
        let ns = TempNetns::new("persist");
        let fd = open_netns(&ns.0).unwrap();
        let opts = TapOptions {
            multi_queue: true,
            ..TapOptions::default()
        };
        let mut nl = run_in_netns(&fd, Netlink::open).unwrap().unwrap();
        let mut tap = run_in_netns(&fd, || TapDevice::create_with("vswpst0", opts))
            .unwrap()
            .unwrap();
        tap.set_persistent().unwrap();
        // The process dies: its fds close, no Drop runs.
        let dead = std::mem::ManuallyDrop::new(tap);
        // SAFETY: the fd is read out once and `dead` is never used or dropped again.
        drop(unsafe { std::ptr::read(&dead.fd) });
        assert!(nl.link_index("vswpst0").unwrap().is_some(), "it stays");
        // The next process attaches to it by name, as two queues.
        let q0 = run_in_netns(&fd, || TapDevice::open_existing("vswpst0", opts))
            .unwrap()
            .unwrap();
        let q1 = run_in_netns(&fd, || q0.open_queue()).unwrap().unwrap();
        let idx = nl.link_index("vswpst0").unwrap().unwrap();
        nl.set_link_up(idx, true).unwrap();
        assert_eq!(q1.write(&[0xffu8; 60]).unwrap(), 60);
        // Dropping a re-adopted device in a running daemon (a detach) removes it: at once,
        // unless another test thread of this process forked meanwhile, whose child holds a
        // copy of the fd until its exec closes it (O_CLOEXEC).
        drop(q0);
        drop(q1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while nl.link_index("vswpst0").unwrap().is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(nl.link_index("vswpst0").unwrap(), None);
        // Never creates one, and never takes an interface that is not a TAP.
        let none = run_in_netns(&fd, || TapDevice::open_existing("vswpst0", opts)).unwrap();
        assert!(none.is_err());
        assert_eq!(nl.link_index("vswpst0").unwrap(), None);
        let lo = run_in_netns(&fd, || TapDevice::open_existing("lo", opts)).unwrap();
        assert!(lo.is_err());
        assert!(nl.link_index("lo").unwrap().is_some());
    }

    #[test]
    fn rejects_bad_names() {
        assert!(TapDevice::create("this-name-is-too-long").is_err());
        assert!(TapDevice::create("").is_err());
    }
}
