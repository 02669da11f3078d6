//! Receiving from the underlay in batches: one recvmmsg takes up to `RECV_BATCH` datagrams,
//! or with UDP GRO runs of them, each into its own slot of the worker's buffer
//! (crate::io::underlay::Underlay::recv_many), and a `DatagramRun` tells what one slot holds.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;

/// Most datagrams (or GRO runs) one `Underlay::recv_many` call takes.
pub const RECV_BATCH: usize = 16;

/// The UDP_GRO segment size in a received message's control data, if any.
///
/// # Safety
/// `msg` must describe control data the kernel filled in (msg_control, msg_controllen).
unsafe fn gro_segment(msg: &libc::msghdr) -> Option<usize> {
    let mut cmsg = libc::CMSG_FIRSTHDR(msg);
    while !cmsg.is_null() {
        if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
            let g = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
            if g > 0 {
                return Some(g as usize);
            }
        }
        cmsg = libc::CMSG_NXTHDR(msg, cmsg);
    }
    None
}

/// One recvmmsg on `sock`: see `Underlay::recv_many`.
pub(super) fn recv_runs(
    sock: &UdpSocket,
    gro: bool,
    buf: &mut [u8],
    slot: usize,
    runs: &mut [DatagramRun],
) -> io::Result<usize> {
    let n = runs
        .len()
        .min(RECV_BATCH)
        .min(buf.len().checked_div(slot).unwrap_or(0));
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero is valid for these plain C structures (the kernel fills them in).
    let mut addrs: [libc::sockaddr_in; RECV_BATCH] = unsafe { std::mem::zeroed() };
    // CMSG_SPACE(sizeof(int)) is 24 bytes on 64-bit Linux; u64 keeps it aligned for cmsghdr.
    let mut controls = [[0u64; 4]; RECV_BATCH];
    // SAFETY: as above.
    let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let base = buf.as_mut_ptr();
    for k in 0..n {
        // SAFETY: k * slot + slot <= buf.len() (n <= buf.len() / slot), so every iovec lies
        // within `buf`, and the iovecs do not overlap.
        iovs[k] = libc::iovec {
            iov_base: unsafe { base.add(k * slot) }.cast(),
            iov_len: slot,
        };
        let h = &mut msgs[k].msg_hdr;
        h.msg_name = (&mut addrs[k] as *mut libc::sockaddr_in).cast();
        h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_iov = &mut iovs[k];
        h.msg_iovlen = 1;
        if gro {
            h.msg_control = controls[k].as_mut_ptr().cast();
            h.msg_controllen = size_of::<[u64; 4]>() as _;
        }
    }
    // SAFETY: every pointer in msgs refers to the local arrays above or into `buf`, all of
    // which outlive the call; the kernel writes at most the lengths given.
    let got = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            0,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(0)
        } else {
            Err(e)
        };
    }
    let got = got as usize;
    for k in 0..got {
        let len = (msgs[k].msg_len as usize).min(slot);
        // SAFETY: the kernel filled in msg_control up to msg_controllen (none without gro).
        let seg = if gro {
            unsafe { gro_segment(&msgs[k].msg_hdr) }.unwrap_or(len)
        } else {
            len
        };
        runs[k] = DatagramRun {
            len,
            src: Ipv4Addr::from(u32::from_be(addrs[k].sin_addr.s_addr)),
            src_port: u16::from_be(addrs[k].sin_port),
            seg,
        };
    }
    Ok(got)
}

/// What `Underlay::recv_many` read into one slot: `len` bytes from `src`, datagrams of `seg`
/// bytes each (one datagram when `seg == len`).
#[derive(Debug, Clone, Copy)]
pub struct DatagramRun {
    pub len: usize,
    pub src: Ipv4Addr,
    /// The sender's UDP port (where a probe is answered, crate::wire::probe).
    pub src_port: u16,
    pub seg: usize,
}

impl DatagramRun {
    /// Nothing read yet (a slot `recv_many` fills in).
    pub const EMPTY: DatagramRun = DatagramRun {
        len: 0,
        src: Ipv4Addr::UNSPECIFIED,
        src_port: 0,
        seg: 0,
    };

    /// Whether the read held several datagrams (a UDP GRO run).
    pub fn is_gro_run(&self) -> bool {
        self.seg.max(1) < self.len
    }

    /// The datagrams of the read, as ranges of the receive buffer whose slot begins at `base`:
    /// `seg` bytes each, the last one shorter. An empty datagram is still one (a drop to count).
    pub fn datagrams(&self, base: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        let (seg, len) = (self.seg.max(1), self.len);
        let count = len.div_ceil(seg).max(1);
        (0..count).map(move |i| base + i * seg..base + ((i + 1) * seg).min(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(len: usize, seg: usize) -> DatagramRun {
        DatagramRun {
            len,
            seg,
            ..DatagramRun::EMPTY
        }
    }

    #[test]
    fn a_gro_run_is_cut_into_its_datagrams_the_last_one_shorter() {
        let r = run(3000, 1400);
        assert!(r.is_gro_run());
        let got: Vec<_> = r.datagrams(100).collect();
        assert_eq!(got, vec![100..1500, 1500..2900, 2900..3100]);
    }

    #[test]
    fn one_datagram_and_an_empty_one_are_one_each() {
        let one = run(1450, 1450);
        assert!(!one.is_gro_run());
        assert_eq!(one.datagrams(0).collect::<Vec<_>>(), vec![0..1450]);
        let empty = run(0, 0);
        assert!(!empty.is_gro_run());
        assert_eq!(empty.datagrams(7).collect::<Vec<_>>(), vec![7..7]);
    }
}
