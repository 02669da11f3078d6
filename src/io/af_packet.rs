//! AF_PACKET sockets: send and receive whole Ethernet frames on an existing interface (packet(7)).
//!
//! # Overview
//!
//! A [`PacketSocket`] is bound to one interface of the network namespace it was opened in (open
//! it inside [`super::run_in_netns`] for another namespace; it keeps working from any thread).
//! It is promiscuous, does not see its own sends (`PACKET_IGNORE_OUTGOING`), and uses
//! `PACKET_VNET_HDR` so the kernel tells us about checksum and segmentation offloads of what it
//! hands up. `recv`/`send` are nonblocking, take `&self` and move one frame per call.
//!
//! # Receiving through a TPACKET_V3 ring
//!
//! By default a socket receives through a memory-mapped TPACKET_V3 ring
//! (Documentation/networking/packet_mmap.rst): the kernel writes frames one after the other into
//! blocks of `BLOCK_SIZE` bytes and hands a block over when it is full or `BLOCK_TIMEOUT_MS`
//! after its first frame. `recv` copies the next frame of the current block into the caller's
//! buffer (the one copy the worker makes anyway, to have the frame at its headroom offset) and
//! gives the block back (`TP_STATUS_KERNEL`) with its last frame. That is no syscall per frame,
//! where recvmsg was one. The fd becomes readable, and an edge-triggered poller is woken, each
//! time a block is handed over; `recv` returns frames until every handed-over block is consumed,
//! then `WouldBlock`. Before it says `WouldBlock` it asks for the socket's pending error
//! (SO_ERROR, one getsockopt per empty ring, not per frame): ENETDOWN when the interface went
//! down or away, which recvmsg would have returned and on which the worker detaches the port.
//!
//! Offload information comes as with recvmsg: since Linux 4.6 (commit 58d19b19cd99, "packet:
//! vnet_hdr support for tpacket_rcv") `tpacket_rcv` writes each frame's `virtio_net_hdr` just in
//! front of it, at `tp_mac - 10`, when `PACKET_VNET_HDR` is on. The socket needs Linux 4.20
//! anyway (`PACKET_IGNORE_OUTGOING`), so a ring always carries the header. `TP_STATUS_CSUMNOTREADY`
//! in the frame status says the same as `VIRTIO_NET_HDR_F_NEEDS_CSUM`, but only the header says
//! where the checksum goes, so we go by the header (as the recvmsg path does).
//!
//! The ring is allocated at open: `BLOCK_COUNT` blocks of 128 KiB, 4 MiB per socket. A block
//! holds the largest frame we take whole, a 64 KiB TSO super-frame; the ring as a whole holds
//! about 2,500 full-size frames or 20,000 small ones while the worker is busy elsewhere (recvmsg
//! queued `rmem_default`, 208 KiB of skb truesize, roughly 150 frames).
//!
//! The price is latency when traffic is sparse: a lone frame waits for its block's timeout, 1 ms,
//! which kernels that run the timer in jiffies round up to one jiffy (4 ms at HZ=250).
//!
//! If the kernel refuses the ring (`PACKET_VERSION`, `PACKET_RX_RING` or mmap fails) the socket
//! falls back to one recvmsg per frame, as before; the first socket of the process that uses
//! each path logs it. [`RxMode::Recvmsg`] asks for that path on purpose (for comparisons).
//!
//! # Fanout
//!
//! Several sockets on one interface can share its traffic in a `PACKET_FANOUT` group (packet(7)),
//! one socket per worker thread: [`PacketSocket::open_fanout_group`] opens them. The group uses
//! `PACKET_FANOUT_HASH`, the kernel's symmetric flow hash, so all frames of a flow go to the same
//! socket and stay in order (IP fragments hash on addresses only and may go to another socket
//! than the unfragmented frames of their flow; we never defragment, a switch forwards what it
//! got). Frames are sent from any member. A member's own `PACKET_IGNORE_OUTGOING` does not
//! apply to the group, so the group is made with `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` (newer
//! than Linux 6.1, whose headers lack it; older kernels ignore the bit), and every member also
//! carries a classic BPF filter that drops outgoing frames, for those older kernels.
//!
//! Group ids live in a namespace-wide space shared with every other process (a second vswitchd,
//! a capture tool). A fixed id could join someone else's group and split the interface's
//! traffic with them, so the first socket asks the kernel for a free id
//! (`PACKET_FANOUT_FLAG_UNIQUEID`, [`Fanout::New`]) and the others join it
//! ([`Fanout::Join`] with [`PacketSocket::fanout_group`]). That id is unique in the namespace,
//! so unique per interface within the process too.
//!
//! Between bind and join a socket would get every frame of the interface, second copies of what
//! the group already hands out; it drops them with a filter that it swaps for the one above
//! right after joining. So no frame is received twice; the price is that frames the group hands
//! a socket in the moment between its join and that swap are lost, when a socket joins.
//!
//! # Thread-safety
//!
//! `PacketSocket` is `Send + Sync`. `send` may be called from any thread at any time. A ring has
//! one read cursor: `recv` is for one thread at a time; a `recv` that finds another thread inside
//! `recv` on the same socket returns `WouldBlock` rather than wait.

use super::{bpf, ifindex_of, IoError};
use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// From include/uapi/linux/if_packet.h and include/uapi/linux/filter.h.
mod sys {
    use libc::{c_int, c_uint, c_ushort};

    pub const PACKET_ADD_MEMBERSHIP: c_int = 1;
    pub const PACKET_MR_PROMISC: c_ushort = 1;
    pub const PACKET_RX_RING: c_int = 5;
    pub const PACKET_STATISTICS: c_int = 6;
    pub const PACKET_VERSION: c_int = 10;
    pub const PACKET_VNET_HDR: c_int = 15;
    pub const PACKET_FANOUT: c_int = 18;
    pub const PACKET_IGNORE_OUTGOING: c_int = 23; // Linux 4.20

    pub const TPACKET_V3: c_int = 2;

    pub const PACKET_FANOUT_HASH: u32 = 0;
    pub const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000; // Linux 4.x
    pub const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000; // after 6.1; older kernels ignore it

    pub const TP_STATUS_KERNEL: u32 = 0;
    pub const TP_STATUS_USER: u32 = 1;

    /// struct packet_mreq
    #[repr(C)]
    pub struct PacketMreq {
        pub mr_ifindex: c_int,
        pub mr_type: c_ushort,
        pub mr_alen: c_ushort,
        pub mr_address: [u8; 8],
    }

    /// struct tpacket_req3
    #[repr(C)]
    #[derive(Default)]
    pub struct TpacketReq3 {
        pub tp_block_size: c_uint,
        pub tp_block_nr: c_uint,
        pub tp_frame_size: c_uint,
        pub tp_frame_nr: c_uint,
        pub tp_retire_blk_tov: c_uint,
        pub tp_sizeof_priv: c_uint,
        pub tp_feature_req_word: c_uint,
    }

    /// struct tpacket_stats_v3 (its first two fields are struct tpacket_stats)
    #[repr(C)]
    #[derive(Default)]
    pub struct TpacketStatsV3 {
        pub tp_packets: c_uint,
        pub tp_drops: c_uint,
        pub tp_freeze_q_cnt: c_uint,
    }

    /// Byte offsets in struct tpacket_block_desc, whose header is a struct tpacket_hdr_v1.
    pub mod block {
        pub const STATUS: usize = 8;
        pub const NUM_PKTS: usize = 12;
        pub const OFFSET_TO_FIRST_PKT: usize = 16;
    }

    /// Byte offsets in struct tpacket3_hdr, the header in front of each frame of a block.
    pub mod frame {
        pub const NEXT_OFFSET: usize = 0;
        pub const SNAPLEN: usize = 12;
        pub const LEN: usize = 16;
        pub const MAC: usize = 24;
        pub const HEADER_LEN: usize = 48;
    }
}

/// `struct virtio_net_hdr` (include/uapi/linux/virtio_net.h), without `num_buffers`. Its fields
/// are in native byte order on AF_PACKET (the kernel uses the legacy, host-endian layout).
use crate::offload::vnet;

/// Ring geometry (see the module docs). A block must be a power-of-two number of pages and hold
/// a 64 KiB super-frame behind its headers.
const BLOCK_SIZE: usize = 128 << 10;
const BLOCK_COUNT: usize = 32;
/// How long the kernel keeps a block that is not full before handing it over.
const BLOCK_TIMEOUT_MS: u32 = 1;
/// TPACKET_V3 packs frames by their real length; the kernel only checks that the frame
/// arithmetic of `tpacket_req3` adds up.
const NOMINAL_FRAME_SIZE: usize = 2048;

/// What [`PacketSocket::recv`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvInfo {
    /// Bytes of frame written to `buf`.
    pub len: usize,
    /// A GSO super-frame (TSO from a peer with offloads on), described by its header: larger
    /// than the MTU, to be cut into segments (crate::offload::tso) by the caller.
    pub gso: Option<vnet::Header>,
    /// The frame was longer than `buf` and was cut to `len`.
    pub truncated: bool,
}

/// How a socket receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RxMode {
    /// A memory-mapped TPACKET_V3 ring; falls back to `Recvmsg` if the kernel refuses it.
    #[default]
    Ring,
    /// One recvmsg syscall per frame: no wait for a block to fill, for ports where latency
    /// matters more than the CPU per frame (VSWITCH_AF_PACKET_RING=off).
    Recvmsg,
}

/// Whether a socket joins a fanout group (`PACKET_FANOUT_HASH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fanout {
    /// A socket of its own: it receives every frame of the interface.
    #[default]
    None,
    /// A new group, with an id the kernel picks unused in the network namespace; read it with
    /// [`PacketSocket::fanout_group`] to let other sockets join.
    New,
    /// Join the group with this id on the same interface, or make it if it does not exist.
    Join(u16),
}

/// How to open a [`PacketSocket`]; the default is what [`PacketSocket::open`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketOptions {
    pub rx: RxMode,
    pub fanout: Fanout,
}

/// Counters of one socket since the previous [`PacketSocket::take_stats`] (`PACKET_STATISTICS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketStats {
    /// Frames the kernel accepted for this socket.
    pub packets: u32,
    /// Frames it dropped for lack of room (ring full, or receive queue full).
    pub drops: u32,
}

#[derive(Debug)]
pub struct PacketSocket {
    // Declared before `fd`: the ring is unmapped before the socket is closed.
    ring: Option<Ring>,
    fd: OwnedFd,
    ifindex: u32,
    fanout: Option<u16>,
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// getsockopt into a `T`; the kernel may write less than all of it.
fn getsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: &mut T,
) -> io::Result<()> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` points to a live, writable T of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            val as *mut T as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const RET_K: u32 = libc::BPF_RET | libc::BPF_K;

/// Drops every frame: on a socket that is about to join a fanout group, between bind and join.
const DROP_ALL: [libc::sock_filter; 1] = [bpf::ins(RET_K, 0, 0, 0)];

/// Drops frames the host sends (`PACKET_OUTGOING`), which a fanout group delivers even to
/// members with `PACKET_IGNORE_OUTGOING` on kernels without `PACKET_FANOUT_FLAG_IGNORE_OUTGOING`.
const DROP_OUTGOING: [libc::sock_filter; 4] = [
    bpf::ins(
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        0,
        0,
        bpf::AD_PKTTYPE,
    ),
    bpf::ins(
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        0,
        1,
        bpf::PACKET_OUTGOING,
    ),
    bpf::ins(RET_K, 0, 0, 0),
    bpf::ins(RET_K, 0, 0, u32::MAX),
];

fn attach_filter(fd: &OwnedFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    bpf::attach(fd.as_raw_fd(), libc::SO_ATTACH_FILTER, prog)
}

/// Joins group `id` (or makes it), or with `None` a new group with an id the kernel picks, on
/// the bound socket `fd`, with `PACKET_FANOUT_HASH`; returns the group's id.
fn join_fanout(fd: &OwnedFd, id: Option<u16>) -> io::Result<u16> {
    let kind = sys::PACKET_FANOUT_HASH | sys::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
    // The kernel drops UNIQUEID from the group's flags once it picked the id, so the others
    // join with the same `kind` as the first.
    let arg: u32 = match id {
        None => (kind | sys::PACKET_FANOUT_FLAG_UNIQUEID) << 16,
        Some(id) => kind << 16 | u32::from(id),
    };
    setsockopt(fd, libc::SOL_PACKET, sys::PACKET_FANOUT, &arg)?;
    let mut got: u32 = 0;
    getsockopt(fd, libc::SOL_PACKET, sys::PACKET_FANOUT, &mut got)?;
    Ok(got as u16)
}

/// Logs, once per process and path, how sockets receive.
fn log_rx_path(ifname: &str, fallback: Option<&io::Error>) {
    static RING: AtomicBool = AtomicBool::new(false);
    static RECVMSG: AtomicBool = AtomicBool::new(false);
    match fallback {
        None => {
            if !RING.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    "packet sockets receive through a TPACKET_V3 ring (first: {ifname}; \
                     {BLOCK_COUNT} blocks of {} KiB, {BLOCK_TIMEOUT_MS} ms block timeout)",
                    BLOCK_SIZE >> 10
                );
            }
        }
        Some(e) => {
            if !RECVMSG.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "packet socket on {ifname}: the kernel refused a TPACKET_V3 ring ({e}); \
                     receiving with one recvmsg per frame"
                );
            }
        }
    }
}

impl PacketSocket {
    /// Opens a socket on interface `ifname` of the calling thread's network namespace, receiving
    /// through a ring where the kernel allows it.
    pub fn open(ifname: &str) -> Result<PacketSocket, IoError> {
        PacketSocket::open_with(ifname, &PacketOptions::default())
    }

    /// Opens a socket on `ifname` in fanout group `group` (`PACKET_FANOUT_HASH`), making the
    /// group if it does not exist. Every member must be on the same interface. To get an id no
    /// one else in the namespace uses, open the first socket with [`Fanout::New`] (or use
    /// [`PacketSocket::open_fanout_group`]) rather than choosing one.
    pub fn open_fanout(ifname: &str, group: u16) -> Result<PacketSocket, IoError> {
        PacketSocket::open_with(
            ifname,
            &PacketOptions {
                fanout: Fanout::Join(group),
                ..PacketOptions::default()
            },
        )
    }

    /// Opens `count` sockets on `ifname` in a new fanout group whose id the kernel picks, unused
    /// in the namespace: one per worker thread. Each gets a share of the flows.
    pub fn open_fanout_group(ifname: &str, count: usize) -> Result<Vec<PacketSocket>, IoError> {
        PacketSocket::open_fanout_group_with(ifname, count, RxMode::default())
    }

    /// `open_fanout_group`, each socket receiving as `rx` says.
    pub fn open_fanout_group_with(
        ifname: &str,
        count: usize,
        rx: RxMode,
    ) -> Result<Vec<PacketSocket>, IoError> {
        let mut all = Vec::with_capacity(count);
        if count == 0 {
            return Ok(all);
        }
        let first = PacketSocket::open_with(
            ifname,
            &PacketOptions {
                rx,
                fanout: Fanout::New,
            },
        )?;
        let group = first.fanout.expect("joined a group");
        all.push(first);
        for _ in 1..count {
            all.push(PacketSocket::open_with(
                ifname,
                &PacketOptions {
                    rx,
                    fanout: Fanout::Join(group),
                },
            )?);
        }
        Ok(all)
    }

    /// Opens a socket on `ifname` as `opts` says.
    pub fn open_with(ifname: &str, opts: &PacketOptions) -> Result<PacketSocket, IoError> {
        let ifindex = ifindex_of(ifname)?.ok_or_else(|| {
            IoError::sys(
                format!("opening packet socket on {ifname}: no such interface"),
                io::Error::from_raw_os_error(libc::ENODEV),
            )
        })?;
        let op = |what: &str| format!("opening packet socket on {ifname}: {what}");
        // Protocol 0 receives nothing until bind, so no frame from another interface sneaks in.
        // SAFETY: plain socket(2); the fd is owned right after.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(IoError::last_os(op("socket")));
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // Before the ring: the kernel refuses PACKET_VNET_HDR on a socket that has one.
        setsockopt(&fd, libc::SOL_PACKET, sys::PACKET_VNET_HDR, &one)
            .map_err(|e| IoError::sys(op("PACKET_VNET_HDR"), e))?;
        setsockopt(&fd, libc::SOL_PACKET, sys::PACKET_IGNORE_OUTGOING, &one)
            .map_err(|e| IoError::sys(op("PACKET_IGNORE_OUTGOING (needs Linux 4.20)"), e))?;

        // Declared after `fd`, so dropped (unmapped) first if a later step fails.
        let ring = match opts.rx {
            RxMode::Recvmsg => None,
            RxMode::Ring => match Ring::map(&fd) {
                Ok(ring) => {
                    log_rx_path(ifname, None);
                    Some(ring)
                }
                Err(RingError::Refused(e)) => {
                    log_rx_path(ifname, Some(&e));
                    None
                }
                Err(RingError::Stuck(what, e)) => return Err(IoError::sys(op(what), e)),
            },
        };

        if opts.fanout != Fanout::None {
            attach_filter(&fd, &DROP_ALL)
                .map_err(|e| IoError::sys(op("attaching a socket filter"), e))?;
        }
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `sll` is a valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(IoError::last_os(op("bind")));
        }
        let group = match opts.fanout {
            Fanout::None => None,
            Fanout::New => Some((None, "making a fanout group".to_string())),
            Fanout::Join(id) => Some((Some(id), format!("joining fanout group {id}"))),
        };
        let fanout = match group {
            None => None,
            Some((id, what)) => {
                let id = join_fanout(&fd, id).map_err(|e| IoError::sys(op(&what), e))?;
                attach_filter(&fd, &DROP_OUTGOING)
                    .map_err(|e| IoError::sys(op("attaching a socket filter"), e))?;
                Some(id)
            }
        };
        let mreq = sys::PacketMreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: sys::PACKET_MR_PROMISC,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(&fd, libc::SOL_PACKET, sys::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| IoError::sys(op("enabling promiscuous mode"), e))?;
        Ok(PacketSocket {
            ring,
            fd,
            ifindex,
            fanout,
        })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// How this socket receives: `Ring` unless asked otherwise or the kernel refused the ring.
    pub fn rx_mode(&self) -> RxMode {
        if self.ring.is_some() {
            RxMode::Ring
        } else {
            RxMode::Recvmsg
        }
    }

    /// The id of the fanout group this socket is in, if any.
    pub fn fanout_group(&self) -> Option<u16> {
        self.fanout
    }

    /// Frames accepted and dropped since the previous call (or since open).
    pub fn take_stats(&self) -> io::Result<PacketStats> {
        let mut st = sys::TpacketStatsV3::default();
        getsockopt(&self.fd, libc::SOL_PACKET, sys::PACKET_STATISTICS, &mut st)?;
        Ok(PacketStats {
            packets: st.tp_packets,
            drops: st.tp_drops,
        })
    }

    /// Receives one frame into `buf`, completing its L4 checksum if the kernel left it partial.
    /// `WouldBlock` when nothing is queued. Does not allocate; with a ring, makes no syscall
    /// for a frame (one getsockopt when it finds the ring empty).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<RecvInfo> {
        match &self.ring {
            Some(ring) => ring.recv(&self.fd, buf),
            None => self.recv_msg(buf),
        }
    }

    /// The path without a ring: one recvmsg per frame, the vnet header in its own iovec.
    fn recv_msg(&self, buf: &mut [u8]) -> io::Result<RecvInfo> {
        let mut hdr = [0u8; vnet::HDR_LEN];
        let mut iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            },
        ];
        // SAFETY: all-zero is a valid msghdr; the iovecs point at live buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        // SAFETY: `msg` describes valid, writable buffers.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < vnet::HDR_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "packet socket returned less than a virtio_net_hdr",
            ));
        }
        let truncated = msg.msg_flags & libc::MSG_TRUNC != 0;
        Ok(finish(&hdr, buf, n - vnet::HDR_LEN, truncated))
    }

    /// Sends one frame as is (a zeroed vnet header asks for no offload).
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.send_with(&vnet::Header::default(), frame)
    }

    /// Sends one frame behind `hdr`: a TCP super-frame with a TSO header is segmented by the
    /// kernel only if and where it must be.
    pub fn send_with(&self, h: &vnet::Header, frame: &[u8]) -> io::Result<usize> {
        let mut hdr = [0u8; vnet::HDR_LEN];
        h.emit(&mut hdr);
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: the iovecs point at live buffers; writev only reads them.
        let n =
            unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize).saturating_sub(vnet::HDR_LEN))
    }
}

/// What both receive paths do once the frame (`len` bytes of it in `buf`) and its vnet header
/// are in hand: a GSO super-frame is reported for the caller to segment; an ordinary frame with
/// a partial checksum gets it completed, unless it was cut short.
fn finish(hdr: &[u8; vnet::HDR_LEN], buf: &mut [u8], len: usize, truncated: bool) -> RecvInfo {
    let h = vnet::Header::parse(hdr).unwrap_or_default();
    let gso = (h.gso_kind() != vnet::GSO_NONE).then_some(h);
    if h.flags & vnet::F_NEEDS_CSUM != 0 && gso.is_none() && !truncated {
        complete_checksum(
            &mut buf[..len],
            h.csum_start as usize,
            h.csum_offset as usize,
        );
    }
    RecvInfo {
        len,
        gso,
        truncated,
    }
}

/// Finishes a checksum the sender offloaded (`CHECKSUM_PARTIAL`, VIRTIO_NET_HDR_F_NEEDS_CSUM).
///
/// The sending stack summed the pseudo-header and stored that sum, uncomplemented, in the
/// checksum field at `csum_start + csum_offset`; the hardware (here: nobody, since veth/tap only
/// pass the skb along) is expected to add the ones-complement sum of everything from
/// `csum_start` to the end and store its complement. Summing the field along with the data does
/// exactly that, as `skb_checksum_help` does in the kernel. Out-of-range offsets (from a
/// misbehaving peer) leave the frame untouched.
pub use crate::offload::tso::complete_checksum;

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A mapped TPACKET_V3 receive ring and our place in it.
#[derive(Debug)]
struct Ring {
    base: NonNull<u8>,
    /// Held by the thread inside `recv`; guards `cursor`.
    busy: AtomicBool,
    cursor: UnsafeCell<Cursor>,
}

#[derive(Debug, Default)]
struct Cursor {
    /// The block we read, or wait for.
    block: usize,
    /// Frames of `block` not yet read; 0 while the kernel owns it.
    left: u32,
    /// Offset in the block of the next frame's `tpacket3_hdr`.
    next: usize,
}

// SAFETY: the mapping belongs to this socket and is shared only with the kernel; `cursor` is
// only touched by the thread that set `busy`.
unsafe impl Send for Ring {}
unsafe impl Sync for Ring {}

enum RingError {
    /// The kernel refused a ring: receive with recvmsg instead.
    Refused(io::Error),
    /// A ring was set up but could not be mapped, nor taken down again: the socket is unusable.
    Stuck(&'static str, io::Error),
}

const RING_LEN: usize = BLOCK_SIZE * BLOCK_COUNT;

impl Ring {
    /// Sets up and maps the receive ring of the (not yet bound) socket `fd`.
    fn map(fd: &OwnedFd) -> Result<Ring, RingError> {
        setsockopt(fd, libc::SOL_PACKET, sys::PACKET_VERSION, &sys::TPACKET_V3)
            .map_err(RingError::Refused)?;
        let req = sys::TpacketReq3 {
            tp_block_size: BLOCK_SIZE as libc::c_uint,
            tp_block_nr: BLOCK_COUNT as libc::c_uint,
            tp_frame_size: NOMINAL_FRAME_SIZE as libc::c_uint,
            tp_frame_nr: (RING_LEN / NOMINAL_FRAME_SIZE) as libc::c_uint,
            tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
            ..Default::default()
        };
        setsockopt(fd, libc::SOL_PACKET, sys::PACKET_RX_RING, &req).map_err(RingError::Refused)?;
        // SAFETY: maps the ring the kernel just allocated for `fd`, at a place of its choosing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                RING_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // Without a mapping nobody would read the ring: take it down (a zero block count
            // frees it) so frames go to the receive queue again.
            return match setsockopt(
                fd,
                libc::SOL_PACKET,
                sys::PACKET_RX_RING,
                &sys::TpacketReq3::default(),
            ) {
                Ok(()) => Err(RingError::Refused(e)),
                Err(e2) => Err(RingError::Stuck(
                    "removing a receive ring that could not be mapped",
                    e2,
                )),
            };
        }
        Ok(Ring {
            base: NonNull::new(p as *mut u8).expect("mmap succeeded"),
            busy: AtomicBool::new(false),
            cursor: UnsafeCell::new(Cursor::default()),
        })
    }

    /// The next frame, or `WouldBlock` when every handed-over block is read, or the socket's
    /// pending error (ENETDOWN when its interface went down or away), as recvmsg would report
    /// it. Checking for that costs a getsockopt, but only once the ring is empty.
    fn recv(&self, fd: &OwnedFd, buf: &mut [u8]) -> io::Result<RecvInfo> {
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // SAFETY: `busy` makes this thread the only one using the cursor until it is cleared.
        let cursor = unsafe { &mut *self.cursor.get() };
        let got = self.next_frame(cursor, buf);
        self.busy.store(false, Ordering::Release);
        match got {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(take_error(fd).unwrap_or(e)),
            got => got,
        }
    }

    fn block(&self, i: usize) -> *mut u8 {
        debug_assert!(i < BLOCK_COUNT);
        // SAFETY: block `i` lies inside the mapping.
        unsafe { self.base.as_ptr().add(i * BLOCK_SIZE) }
    }

    /// `block_status`, which the kernel and we hand the block back and forth with.
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: a 4-aligned u32 inside the mapping, which lives as long as `self`; the kernel
        // writes it only with the block in its hands (`TP_STATUS_KERNEL`).
        unsafe { &*(self.block(i).add(sys::block::STATUS) as *const AtomicU32) }
    }

    fn next_frame(&self, cur: &mut Cursor, buf: &mut [u8]) -> io::Result<RecvInfo> {
        loop {
            if cur.left == 0 {
                // Acquire: pairs with the kernel's barrier before it sets TP_STATUS_USER, so
                // the block's contents are visible once we see the status.
                if self.status(cur.block).load(Ordering::Acquire) & sys::TP_STATUS_USER == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let blk = self.block(cur.block);
                cur.left = read_u32(blk, sys::block::NUM_PKTS);
                cur.next = read_u32(blk, sys::block::OFFSET_TO_FIRST_PKT) as usize;
                if cur.left == 0 {
                    self.release(cur);
                    continue;
                }
            }
            let got = self.copy_frame(cur.block, cur.next, buf);
            cur.left -= 1;
            match got {
                Some((info, next)) if next != 0 && cur.left > 0 => {
                    cur.next += next;
                    return Ok(info);
                }
                Some((info, _)) => {
                    // The last frame (or a chain that ends early): the block goes back.
                    self.release(cur);
                    return Ok(info);
                }
                // Headers that do not fit the block; cannot come from a sane kernel. Skip
                // what is left of the block rather than read outside it.
                None => self.release(cur),
            }
        }
    }

    /// Copies the frame whose `tpacket3_hdr` is at `off` in block `i` into `buf`; also returns
    /// `tp_next_offset`. `None` if its offsets do not fit the block.
    fn copy_frame(&self, i: usize, off: usize, buf: &mut [u8]) -> Option<(RecvInfo, usize)> {
        if off.checked_add(sys::frame::HEADER_LEN)? > BLOCK_SIZE {
            return None;
        }
        // SAFETY: `off` plus a header is inside block `i`, checked above.
        let h = unsafe { self.block(i).add(off) };
        let next = read_u32(h, sys::frame::NEXT_OFFSET) as usize;
        let snaplen = read_u32(h, sys::frame::SNAPLEN) as usize;
        let wire_len = read_u32(h, sys::frame::LEN) as usize;
        let mac = read_u16(h, sys::frame::MAC) as usize;
        if mac < vnet::HDR_LEN || off + mac + snaplen > BLOCK_SIZE {
            return None;
        }
        let mut hdr = [0u8; vnet::HDR_LEN];
        let len = snaplen.min(buf.len());
        // SAFETY: the vnet header (just before the frame) and the frame lie inside the block,
        // checked above; `hdr` and `buf` are ours and hold what is copied.
        unsafe {
            std::ptr::copy_nonoverlapping(h.add(mac - vnet::HDR_LEN), hdr.as_mut_ptr(), hdr.len());
            std::ptr::copy_nonoverlapping(h.add(mac), buf.as_mut_ptr(), len);
        }
        // Cut short by the ring (a frame larger than a block) or by `buf`.
        let truncated = len < wire_len;
        Some((finish(&hdr, buf, len, truncated), next))
    }

    /// Gives the current block back to the kernel and moves on to the next.
    fn release(&self, cur: &mut Cursor) {
        // Release: our reads of the block are done before the kernel may write it again.
        self.status(cur.block)
            .store(sys::TP_STATUS_KERNEL, Ordering::Release);
        cur.left = 0;
        cur.block = (cur.block + 1) % BLOCK_COUNT;
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped; nothing refers to it after this.
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, RING_LEN) };
    }
}

/// The socket's pending error, cleared as it is read (SO_ERROR).
fn take_error(fd: &OwnedFd) -> Option<io::Error> {
    let mut err: libc::c_int = 0;
    getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, &mut err).ok()?;
    (err != 0).then(|| io::Error::from_raw_os_error(err))
}

fn read_u32(p: *const u8, off: usize) -> u32 {
    // SAFETY: callers pass offsets of header fields they checked lie inside the mapping.
    unsafe { std::ptr::read_unaligned(p.add(off) as *const u32) }
}

fn read_u16(p: *const u8, off: usize) -> u16 {
    // SAFETY: as for `read_u32`.
    unsafe { std::ptr::read_unaligned(p.add(off) as *const u16) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ones-complement sum check over an IPv4/UDP frame, pseudo-header included.
    fn udp_checksum_ok(f: &[u8]) -> bool {
        let ihl = ((f[14] & 0x0f) as usize) * 4;
        let udp = &f[14 + ihl..];
        let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
        let mut sum: u64 = 0;
        let mut add = |b: &[u8]| {
            for c in b.chunks(2) {
                sum += (u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])) as u64;
            }
        };
        add(&f[26..34]);
        add(&[0, 17]);
        add(&(udp_len as u16).to_be_bytes());
        add(&udp[..udp_len]);
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    #[test]
    fn completes_partial_udp_checksum() {
        // Ethernet + IPv4 (10.0.0.1 -> 10.0.0.2) + UDP 1000 -> 2000 with 3 payload bytes.
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[
            0x45, 0, 0, 31, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 11, 0, 0, b'a', b'b', b'c']);
        // What the sending stack leaves: the folded pseudo-header sum, not complemented.
        let pseudo: u32 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 11;
        f[40..42].copy_from_slice(&(pseudo as u16).to_be_bytes());
        assert!(!udp_checksum_ok(&f));
        complete_checksum(&mut f, 34, 6);
        assert!(udp_checksum_ok(&f));
    }

    #[test]
    fn bad_offsets_are_ignored() {
        let mut f = vec![1u8; 20];
        complete_checksum(&mut f, 30, 6);
        complete_checksum(&mut f, 10, 9);
        complete_checksum(&mut f, usize::MAX, usize::MAX);
        assert_eq!(f, vec![1u8; 20]);
    }

    #[test]
    fn missing_interface() {
        let e = PacketSocket::open("vsw-nope0").unwrap_err();
        assert!(e.to_string().contains("vsw-nope0"), "{e}");
    }
}
