//! A small synchronous rtnetlink client (rtnetlink(7), netlink(7)): the link and IPv4-address
//! operations that attaching ports needs, and nothing else.
//!
//! A [`Netlink`] socket acts on the network namespace it was opened in, whichever thread uses it
//! later; open one inside [`super::run_in_netns`] to manage another namespace. Requests are
//! sent with `NLM_F_ACK` and each call waits for the kernel's answer, so an `Ok` means done.
//! Control-plane only: calls block and allocate.

use super::{check_ifname, IoError};
use crate::wire::MacAddr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Constants and layouts from the Linux UAPI headers named in each group.
mod sys {
    // include/uapi/linux/netlink.h
    pub const NLMSG_HDRLEN: usize = 16; // struct nlmsghdr { u32 len; u16 type, flags; u32 seq, pid }
    pub const NLMSG_ALIGNTO: usize = 4;
    pub const NLA_ALIGNTO: usize = 4;
    pub const NLA_HDRLEN: usize = 4; // struct nlattr { u16 nla_len, nla_type }
    pub const NLA_TYPE_MASK: u16 = !((1 << 15) | (1 << 14)); // minus NLA_F_NESTED, NLA_F_NET_BYTEORDER

    pub const NLM_F_REQUEST: u16 = 0x01;
    pub const NLM_F_ACK: u16 = 0x04;
    pub const NLM_F_DUMP: u16 = 0x100 | 0x200; // NLM_F_ROOT | NLM_F_MATCH
    pub const NLM_F_EXCL: u16 = 0x200;
    pub const NLM_F_CREATE: u16 = 0x400;
    // Flags of an NLMSG_ERROR message.
    pub const NLM_F_CAPPED: u16 = 0x100; // the echoed request is only its header
    pub const NLM_F_ACK_TLVS: u16 = 0x200; // extended-ack attributes follow

    pub const NLMSG_ERROR: u16 = 2;
    pub const NLMSG_DONE: u16 = 3;
    pub const NLMSG_OVERRUN: u16 = 4;
    pub const NLMSGERR_ATTR_MSG: u16 = 1;

    pub const NETLINK_CAP_ACK: libc::c_int = 10;
    pub const NETLINK_EXT_ACK: libc::c_int = 11;

    // include/uapi/linux/rtnetlink.h
    pub const RTM_NEWLINK: u16 = 16;
    pub const RTM_DELLINK: u16 = 17;
    pub const RTM_GETLINK: u16 = 18;
    pub const RTM_NEWADDR: u16 = 20;
    pub const RTM_GETADDR: u16 = 22;
    pub const RTM_NEWNEIGH: u16 = 28;
    pub const RTM_GETNEIGH: u16 = 30;
    // include/uapi/linux/neighbour.h: struct ndmsg, NDA_*, NUD_*
    pub const NDMSG_LEN: usize = 12;
    pub const NDA_DST: u16 = 1;
    pub const NUD_INCOMPLETE: u16 = 0x01;
    pub const NUD_FAILED: u16 = 0x20;
    pub const RT_SCOPE_UNIVERSE: u8 = 0;

    // struct ifinfomsg { u8 family, pad; u16 type; i32 index; u32 flags, change } (16 bytes)
    pub const IFINFOMSG_LEN: usize = 16;
    // struct ifaddrmsg { u8 family, prefixlen, flags, scope; u32 index } (8 bytes)
    pub const IFADDRMSG_LEN: usize = 8;

    // include/uapi/linux/if_link.h
    pub const IFLA_ADDRESS: u16 = 1;
    pub const IFLA_IFNAME: u16 = 3;
    pub const IFLA_MTU: u16 = 4;
    pub const IFLA_MASTER: u16 = 10;
    pub const IFLA_NET_NS_FD: u16 = 28;
    pub const IFLA_GSO_MAX_SIZE: u16 = 41;

    // include/uapi/linux/if_addr.h
    pub const IFA_ADDRESS: u16 = 1;
    pub const IFA_LOCAL: u16 = 2;
    pub const IFA_BROADCAST: u16 = 4;
}

use sys::*;

const fn align(len: usize, to: usize) -> usize {
    (len + to - 1) & !(to - 1)
}

/// Builds one netlink request: header, family header, then aligned attributes.
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(msg_type: u16, flags: u16) -> Request {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&msg_type.to_ne_bytes());
        buf[6..8].copy_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        Request { buf }
    }

    fn pad(&mut self, to: usize) {
        self.buf.resize(align(self.buf.len(), to), 0);
    }

    fn ifinfomsg(mut self, index: u32, flags: u32, change: u32) -> Request {
        let mut h = [0u8; IFINFOMSG_LEN];
        h[0] = libc::AF_UNSPEC as u8;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        h[8..12].copy_from_slice(&flags.to_ne_bytes());
        h[12..16].copy_from_slice(&change.to_ne_bytes());
        self.buf.extend_from_slice(&h);
        self
    }

    fn ifaddrmsg(mut self, prefix_len: u8, index: u32) -> Request {
        let mut h = [0u8; IFADDRMSG_LEN];
        h[0] = libc::AF_INET as u8;
        h[1] = prefix_len;
        h[3] = RT_SCOPE_UNIVERSE;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&h);
        self
    }

    fn attr(mut self, ty: u16, payload: &[u8]) -> Request {
        self.pad(NLA_ALIGNTO);
        let len = (NLA_HDRLEN + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self
    }

    fn attr_u32(self, ty: u16, v: u32) -> Request {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// Strings go with their NUL terminator (NLA_NUL_STRING / NLA_STRING both accept it).
    fn attr_str(self, ty: u16, s: &str) -> Request {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v)
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        self.pad(NLMSG_ALIGNTO);
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// One received netlink message.
struct Msg<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

/// Splits a datagram into messages; stops at the first malformed header.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = Msg<'_>> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let msg = Msg {
            ty: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            seq: u32::from_ne_bytes(buf[8..12].try_into().ok()?),
            payload: &buf[NLMSG_HDRLEN..len],
        };
        buf = &buf[align(len, NLMSG_ALIGNTO).min(buf.len())..];
        Some(msg)
    })
}

/// Iterates `(type, payload)` over a run of attributes; stops at the first malformed one.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < NLA_HDRLEN {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        if len < NLA_HDRLEN || len > buf.len() {
            return None;
        }
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        let payload = &buf[NLA_HDRLEN..len];
        buf = &buf[align(len, NLA_ALIGNTO).min(buf.len())..];
        Some((ty, payload))
    })
}

fn attr_string(p: &[u8]) -> String {
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
    String::from_utf8_lossy(&p[..end]).into_owned()
}

fn attr_u32(p: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

/// Parses an NLMSG_ERROR payload: `Ok(())` for an ack, else the errno and any extended-ack text.
fn parse_error(msg: &Msg<'_>) -> Result<(), (io::Error, Option<String>)> {
    let p = msg.payload;
    let Some(errno) = p
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
    else {
        return Err((io::Error::other("truncated NLMSG_ERROR"), None));
    };
    if errno == 0 {
        return Ok(());
    }
    let err = io::Error::from_raw_os_error(-errno);
    let mut detail = None;
    if msg.flags & NLM_F_ACK_TLVS != 0 {
        // struct nlmsgerr { int error; struct nlmsghdr msg; } then the echoed request body
        // (unless NLM_F_CAPPED), then the TLVs.
        let echoed = p
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
            .unwrap_or(0) as usize;
        let skip = if msg.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align(echoed.max(NLMSG_HDRLEN), NLMSG_ALIGNTO)
        };
        if let Some(tlvs) = p.get(4 + skip..) {
            detail = attrs(tlvs)
                .find(|(ty, _)| *ty == NLMSGERR_ATTR_MSG)
                .map(|(_, v)| attr_string(v));
        }
    }
    Err((err, detail))
}

/// What `RTM_GETLINK` tells about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// `None` for links without a hardware address (e.g. `ip tunnel`s).
    pub mac: Option<MacAddr>,
    pub up: bool,
    /// The bridge or bond it is a port of (`IFLA_MASTER`), by index.
    pub master: Option<u32>,
}

fn parse_link(payload: &[u8]) -> Option<LinkInfo> {
    let hdr = payload.get(..IFINFOMSG_LEN)?;
    let mut info = LinkInfo {
        index: u32::from_ne_bytes(hdr[4..8].try_into().ok()?),
        name: String::new(),
        mtu: 0,
        mac: None,
        up: u32::from_ne_bytes(hdr[8..12].try_into().ok()?) & libc::IFF_UP as u32 != 0,
        master: None,
    };
    for (ty, v) in attrs(&payload[IFINFOMSG_LEN..]) {
        match ty {
            IFLA_IFNAME => info.name = attr_string(v),
            IFLA_MTU => info.mtu = attr_u32(v)?,
            IFLA_MASTER => info.master = attr_u32(v).filter(|m| *m != 0),
            IFLA_ADDRESS if v.len() == 6 => info.mac = Some(MacAddr::from_bytes(v)),
            _ => {}
        }
    }
    Some(info)
}

/// A NETLINK_ROUTE socket in the namespace it was opened in.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink, IoError> {
        // SAFETY: plain socket(2); the fd is owned right after.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(IoError::last_os("opening netlink socket"));
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Best effort: extended acks give "MTU greater than device maximum" instead of EINVAL
        // alone (Linux 4.12+); capped acks keep the kernel from echoing our request back.
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            let one: libc::c_int = 1;
            // SAFETY: passes a c_int by pointer and size, as the option expects.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    opt,
                    &one as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        // SAFETY: zeroed sockaddr_nl with nl_pid 0 lets the kernel pick our port id.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(IoError::last_os("binding netlink socket"));
        }
        Ok(Netlink {
            fd,
            seq: 0,
            // Dumps come in datagrams of at most 32 KiB; twice that leaves room to spare.
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Sends `req` and collects the payloads of the replies (`(type, payload)`), until the ack
    /// (or NLMSG_DONE for a dump). `op` describes the request for error messages.
    fn request(
        &mut self,
        req: Request,
        op: &dyn Fn() -> String,
    ) -> Result<Vec<(u16, Vec<u8>)>, IoError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = req.finish(seq);
        let fail = |source: io::Error, detail: Option<String>| IoError::Netlink {
            op: op(),
            source,
            detail,
        };
        // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `bytes` and `kernel` are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr() as *const libc::c_void,
                    bytes.len(),
                    0,
                    &kernel as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(fail(e, None));
            }
        }
        let mut out = Vec::new();
        loop {
            // SAFETY: `self.buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr() as *mut libc::c_void,
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(fail(e, None));
            }
            for msg in messages(&self.buf[..n as usize]) {
                // Replies to an earlier request that timed out or was abandoned are not ours.
                if msg.seq != seq {
                    continue;
                }
                match msg.ty {
                    NLMSG_ERROR => {
                        return match parse_error(&msg) {
                            Ok(()) => Ok(out),
                            Err((e, detail)) => Err(fail(e, detail)),
                        }
                    }
                    NLMSG_DONE => {
                        // A dump's DONE carries an int error (non-zero if the dump failed).
                        let err = attr_u32(msg.payload).unwrap_or(0) as i32;
                        if err < 0 {
                            return Err(fail(io::Error::from_raw_os_error(-err), None));
                        }
                        return Ok(out);
                    }
                    NLMSG_OVERRUN => return Err(fail(io::Error::other("netlink overrun"), None)),
                    ty => out.push((ty, msg.payload.to_vec())),
                }
            }
        }
    }

    fn ack(&mut self, req: Request, op: &dyn Fn() -> String) -> Result<(), IoError> {
        self.request(req, op).map(drop)
    }

    /// The link named `name`, or `None` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<LinkInfo>, IoError> {
        check_ifname(name)?;
        let req = Request::new(RTM_GETLINK, NLM_F_ACK)
            .ifinfomsg(0, 0, 0)
            .attr_str(IFLA_IFNAME, name);
        self.get_link(req, &|| format!("looking up interface {name}"))
    }

    /// The link with index `ifindex`, or `None` if there is none.
    pub fn link_by_index(&mut self, ifindex: u32) -> Result<Option<LinkInfo>, IoError> {
        let req = Request::new(RTM_GETLINK, NLM_F_ACK).ifinfomsg(ifindex, 0, 0);
        self.get_link(req, &|| {
            format!("looking up interface with index {ifindex}")
        })
    }

    fn get_link(
        &mut self,
        req: Request,
        op: &dyn Fn() -> String,
    ) -> Result<Option<LinkInfo>, IoError> {
        match self.request(req, op) {
            Ok(replies) => Ok(replies
                .iter()
                .filter(|(ty, _)| *ty == RTM_NEWLINK)
                .find_map(|(_, p)| parse_link(p))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The ports of the bridge or bond with index `ifindex` (every link whose master it is),
    /// by index; none for any other link.
    pub fn ports_of(&mut self, ifindex: u32) -> Result<Vec<LinkInfo>, IoError> {
        let req = Request::new(RTM_GETLINK, NLM_F_DUMP).ifinfomsg(0, 0, 0);
        let replies = self.request(req, &|| "listing interfaces".to_string())?;
        let mut ports: Vec<LinkInfo> = replies
            .iter()
            .filter(|(ty, _)| *ty == RTM_NEWLINK)
            .filter_map(|(_, p)| parse_link(p))
            .filter(|l| l.master == Some(ifindex))
            .collect();
        ports.sort_by_key(|l| l.index);
        Ok(ports)
    }

    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, IoError> {
        Ok(self.link_by_name(name)?.map(|l| l.index))
    }

    pub fn link_mtu(&mut self, ifindex: u32) -> Result<u32, IoError> {
        self.link_by_index(ifindex)?
            .map(|l| l.mtu)
            .ok_or_else(|| IoError::Netlink {
                op: format!("reading MTU of interface with index {ifindex}"),
                source: io::Error::from_raw_os_error(libc::ENODEV),
                detail: None,
            })
    }

    /// Moves the link into the network namespace `ns`. Its index may change there (if taken) and
    /// this socket no longer sees it: look it up by name from a socket opened in `ns`.
    pub fn set_link_netns(&mut self, ifindex: u32, ns: BorrowedFd<'_>) -> Result<(), IoError> {
        let req = Request::new(RTM_NEWLINK, NLM_F_ACK)
            .ifinfomsg(ifindex, 0, 0)
            .attr_u32(IFLA_NET_NS_FD, ns.as_raw_fd() as u32);
        self.ack(req, &|| {
            format!("moving interface {ifindex} to another network namespace")
        })
    }

    pub fn set_link_name(&mut self, ifindex: u32, name: &str) -> Result<(), IoError> {
        check_ifname(name)?;
        let req = Request::new(RTM_NEWLINK, NLM_F_ACK)
            .ifinfomsg(ifindex, 0, 0)
            .attr_str(IFLA_IFNAME, name);
        self.ack(req, &|| format!("renaming interface {ifindex} to {name}"))
    }

    pub fn set_link_mac(&mut self, ifindex: u32, mac: MacAddr) -> Result<(), IoError> {
        let req = Request::new(RTM_NEWLINK, NLM_F_ACK)
            .ifinfomsg(ifindex, 0, 0)
            .attr(IFLA_ADDRESS, mac.as_bytes());
        self.ack(req, &|| {
            format!("setting MAC of interface {ifindex} to {mac}")
        })
    }

    pub fn set_link_mtu(&mut self, ifindex: u32, mtu: u32) -> Result<(), IoError> {
        let req = Request::new(RTM_NEWLINK, NLM_F_ACK)
            .ifinfomsg(ifindex, 0, 0)
            .attr_u32(IFLA_MTU, mtu);
        self.ack(req, &|| {
            format!("setting MTU of interface {ifindex} to {mtu}")
        })
    }

    pub fn set_link_gso_max_size(&mut self, ifindex: u32, size: u32) -> Result<(), IoError> {
        let req = Request::new(RTM_NEWLINK, NLM_F_ACK)
            .ifinfomsg(ifindex, 0, 0)
            .attr_u32(IFLA_GSO_MAX_SIZE, size);
        self.ack(req, &|| {
            format!("setting the largest GSO packet of interface {ifindex} to {size} bytes")
        })
    }

    /// Names the link `name` (when given), sets MAC, MTU and (when given) the largest GSO
    /// packet the stack may hand it, and brings it up, in one request: the kernel renames
    /// first (the link is still down), then applies the rest, then the flags (rtnetlink's
    /// do_setlink), so the link comes up with all of them. One round trip instead of five on
    /// the attach path.
    pub fn configure_link_up(
        &mut self,
        ifindex: u32,
        name: Option<&str>,
        mac: MacAddr,
        mtu: u32,
        gso_max_size: Option<u32>,
    ) -> Result<(), IoError> {
        let flag = libc::IFF_UP as u32;
        let mut req = Request::new(RTM_NEWLINK, NLM_F_ACK).ifinfomsg(ifindex, flag, flag);
        if let Some(name) = name {
            check_ifname(name)?;
            req = req.attr_str(IFLA_IFNAME, name);
        }
        let mut req = req
            .attr(IFLA_ADDRESS, mac.as_bytes())
            .attr_u32(IFLA_MTU, mtu);
        if let Some(size) = gso_max_size {
            req = req.attr_u32(IFLA_GSO_MAX_SIZE, size);
        }
        self.ack(req, &|| {
            let named = name
                .map(|n| format!("naming interface {ifindex} {n}, "))
                .unwrap_or_default();
            format!(
                "{named}setting MAC {mac} and MTU {mtu} on interface {ifindex} and bringing it up"
            )
        })
    }

    pub fn set_link_up(&mut self, ifindex: u32, up: bool) -> Result<(), IoError> {
        let flag = libc::IFF_UP as u32;
        let req = Request::new(RTM_NEWLINK, NLM_F_ACK).ifinfomsg(
            ifindex,
            if up { flag } else { 0 },
            flag,
        );
        let state = if up { "up" } else { "down" };
        self.ack(req, &|| format!("setting interface {ifindex} {state}"))
    }

    pub fn delete_link(&mut self, ifindex: u32) -> Result<(), IoError> {
        let req = Request::new(RTM_DELLINK, NLM_F_ACK).ifinfomsg(ifindex, 0, 0);
        self.ack(req, &|| format!("deleting interface {ifindex}"))
    }

    /// Adds `addr/prefix_len` like `ip addr add ADDR/PREFIX brd + dev IF`. EEXIST if present.
    pub fn add_ipv4_addr(
        &mut self,
        ifindex: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), IoError> {
        if prefix_len > 32 {
            return Err(IoError::Invalid {
                what: "IPv4 prefix length",
                value: prefix_len.to_string(),
                reason: "must be 0..=32",
            });
        }
        let mut req = Request::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
            .ifaddrmsg(prefix_len, ifindex)
            .attr(IFA_LOCAL, &addr.octets())
            .attr(IFA_ADDRESS, &addr.octets());
        // /31 and /32 have no broadcast address (RFC 3021).
        if prefix_len < 31 {
            let host_mask = u32::MAX >> prefix_len;
            let brd = Ipv4Addr::from(u32::from(addr) | host_mask);
            req = req.attr(IFA_BROADCAST, &brd.octets());
        }
        self.ack(req, &|| {
            format!("adding address {addr}/{prefix_len} to interface {ifindex}")
        })
    }

    /// The IPv4 neighbours of interface `ifindex` that are not resolved: ARP is still asking
    /// (INCOMPLETE, retried once a second) or gave up (FAILED).
    pub fn unresolved_ipv4_neighbours(&mut self, ifindex: u32) -> Result<Vec<Ipv4Addr>, IoError> {
        let mut req = Request::new(RTM_GETNEIGH, NLM_F_DUMP);
        let mut h = [0u8; NDMSG_LEN];
        h[0] = libc::AF_INET as u8;
        h[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        req.buf.extend_from_slice(&h);
        let replies = self.request(req, &|| "listing IPv4 neighbours".to_string())?;
        Ok(replies
            .iter()
            .filter(|(ty, _)| *ty == RTM_NEWNEIGH)
            .filter_map(|(_, p)| {
                let hdr = p.get(..NDMSG_LEN)?;
                let index = u32::from_ne_bytes(hdr[4..8].try_into().ok()?);
                let state = u16::from_ne_bytes(hdr[8..10].try_into().ok()?);
                if hdr[0] != libc::AF_INET as u8
                    || index != ifindex
                    || state & (NUD_INCOMPLETE | NUD_FAILED) == 0
                {
                    return None;
                }
                attrs(&p[NDMSG_LEN..])
                    .find(|(ty, _)| *ty == NDA_DST)
                    .and_then(|(_, v)| <[u8; 4]>::try_from(v).ok())
                    .map(Ipv4Addr::from)
            })
            .collect())
    }

    /// Finds the interface that has `addr` as a local IPv4 address: `(ifindex, name, mtu)`.
    pub fn find_ipv4_addr(
        &mut self,
        addr: Ipv4Addr,
    ) -> Result<Option<(u32, String, u32)>, IoError> {
        let mut req = Request::new(RTM_GETADDR, NLM_F_DUMP);
        // Dump requests take an ifaddrmsg (family AF_INET filters to IPv4).
        req.buf
            .extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0, 0, 0, 0, 0]);
        let replies = self.request(req, &|| "listing IPv4 addresses".to_string())?;
        let found = replies
            .iter()
            .filter(|(ty, _)| *ty == RTM_NEWADDR)
            .find_map(|(_, p)| {
                let hdr = p.get(..IFADDRMSG_LEN)?;
                let index = u32::from_ne_bytes(hdr[4..8].try_into().ok()?);
                // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
                // point-to-point links and equals IFA_LOCAL otherwise (rtnetlink(7)).
                let mut local = None;
                let mut address = None;
                for (ty, v) in attrs(&p[IFADDRMSG_LEN..]) {
                    let a = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from);
                    match ty {
                        IFA_LOCAL => local = a,
                        IFA_ADDRESS => address = a,
                        _ => {}
                    }
                }
                (local.or(address) == Some(addr)).then_some(index)
            });
        let Some(index) = found else { return Ok(None) };
        Ok(self.link_by_index(index)?.map(|l| (l.index, l.name, l.mtu)))
    }
}

impl AsFd for Netlink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Netlink {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_aligns_attributes() {
        let msg = Request::new(RTM_NEWLINK, NLM_F_ACK)
            .ifinfomsg(7, 0, 0)
            .attr_str(IFLA_IFNAME, "eth0") // 4 + 5 = 9 bytes, padded to 12
            .attr_u32(IFLA_MTU, 1450)
            .finish(99);
        assert_eq!(msg.len(), 16 + 16 + 12 + 8);
        assert_eq!(
            u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize,
            msg.len()
        );
        assert_eq!(u32::from_ne_bytes(msg[8..12].try_into().unwrap()), 99);
        let got: Vec<_> = attrs(&msg[32..]).collect();
        assert_eq!(got[0], (IFLA_IFNAME, &b"eth0\0"[..]));
        assert_eq!(got[1], (IFLA_MTU, &1450u32.to_ne_bytes()[..]));
    }

    #[test]
    fn parsers_stop_on_garbage() {
        assert_eq!(attrs(&[0xff, 0xff, 1, 0, 0]).count(), 0);
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0);
        assert_eq!(messages(&[0u8; 15]).count(), 0);
        let mut m = vec![0u8; 20];
        m[0] = 200; // claims more than there is
        assert_eq!(messages(&m).count(), 0);
    }

    #[test]
    fn error_with_extended_ack() {
        // nlmsgerr { error = -EINVAL, capped echo of a 40-byte request } + NLMSGERR_ATTR_MSG
        let mut p = (-libc::EINVAL).to_ne_bytes().to_vec();
        let mut echoed = [0u8; 16];
        echoed[0] = 40;
        p.extend_from_slice(&echoed);
        p.extend_from_slice(&[8, 0, 1, 0, b'b', b'a', b'd', 0]);
        let msg = Msg {
            ty: NLMSG_ERROR,
            flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
            seq: 1,
            payload: &p,
        };
        let (e, detail) = parse_error(&msg).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(detail.as_deref(), Some("bad"));
    }

    #[test]
    fn loopback_is_visible() {
        let mut nl = Netlink::open().unwrap();
        let lo = nl.link_by_name("lo").unwrap().expect("lo exists");
        assert_eq!(lo.index, 1);
        assert_eq!(nl.link_mtu(lo.index).unwrap(), lo.mtu);
        assert_eq!(nl.link_index("vsw-nonexistent").unwrap(), None);
        assert_eq!(nl.link_by_index(0x7fff_fff0).unwrap(), None);
        // 127.0.0.1 lives on lo in every namespace with lo up, which the root one has.
        if lo.up {
            let (idx, name, _) = nl.find_ipv4_addr(Ipv4Addr::LOCALHOST).unwrap().unwrap();
            assert_eq!((idx, name.as_str()), (1, "lo"));
        }
        assert_eq!(
            nl.find_ipv4_addr(Ipv4Addr::new(192, 0, 2, 250)).unwrap(),
            None
        );
    }

    #[test]
    fn errors_name_the_operation() {
        let mut nl = Netlink::open().unwrap();
        let e = nl.set_link_mtu(0x7fff_fff0, 1450).unwrap_err();
        let s = e.to_string();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{s}");
        assert!(
            s.contains("setting MTU of interface 2147483632 to 1450"),
            "{s}"
        );
    }
}
