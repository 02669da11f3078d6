//! Classic BPF programs for sockets: one instruction constructor, the ancillary loads our
//! programs use, and attaching a program (as a socket filter, or as SO_REUSEPORT steering).
//! The opcodes are the libc crate's (`libc::BPF_LD | libc::BPF_W | libc::BPF_ABS`, ...).

use std::io;
use std::os::fd::RawFd;

/// One instruction: `code` from libc's BPF_* constants, jumps `jt`/`jf` counted in
/// instructions skipped.
pub const fn ins(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// `ld [SKF_AD_OFF + SKF_AD_PROTOCOL]`: the packet's EtherType (`skb->protocol`).
pub const AD_PROTOCOL: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32;
/// `ld [SKF_AD_OFF + SKF_AD_PKTTYPE]`: whom the packet is for (`skb->pkt_type`).
pub const AD_PKTTYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
/// `skb->pkt_type` of a packet the host sends (include/uapi/linux/if_packet.h).
pub const PACKET_OUTGOING: u32 = 4;

/// Attaches `prog` to the socket `fd` with the SOL_SOCKET option `opt` (SO_ATTACH_FILTER, or
/// SO_ATTACH_REUSEPORT_CBPF). The kernel copies the program; it need not outlive the call.
pub fn attach(fd: RawFd, opt: libc::c_int, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: setsockopt with a sock_fprog that lives across the call, pointing at `prog`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
