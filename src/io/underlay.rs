//! The underlay: VXLAN datagrams to and from peer hosts.
//!
//! Receive: an ordinary UDP socket bound to `underlay_ip:vxlan_port`, so the kernel delivers
//! VXLAN to us and answers nothing else on that port.
//!
//! Send: a raw `IPPROTO_UDP` socket. RFC 7348 §5 asks for a UDP source port derived from the
//! inner flow (ECMP/RSS entropy); a bound UDP socket has one fixed source port, so we write the
//! 8-byte UDP header ourselves into the buffer's headroom, in front of the VXLAN header, and
//! the kernel adds only the IPv4 header. The outer UDP checksum is 0, which RFC 7348 §5 allows
//! for IPv4 and which the Linux vxlan driver also sends by default. DF is set
//! (`IP_PMTUDISC_DO`): a datagram too big for the path fails with EMSGSIZE and is counted,
//! never fragmented. The raw socket is connected to our own address, so no datagram from a
//! peer matches it and the kernel does not clone received UDP for it; a BPF filter that accepts
//! nothing keeps its receive queue empty whatever does.
//!
//! Thread-safety: `Underlay` is owned by one worker.

use crate::wire::vxlan;
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

mod recv;
use recv::recv_runs;
pub use recv::{DatagramRun, RECV_BATCH};

/// UDP header + VXLAN header: what a plaintext VXLAN datagram carries in front of the frame.
pub const VXLAN_HEADERS_LEN: usize = UDP_HEADER_LEN + vxlan::HEADER_LEN;
pub const UDP_HEADER_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum UnderlayError {
    #[error("cannot bind UDP {addr}: {source} (is another vswitchd or a kernel vxlan device using the port? is {ip} assigned here?)", ip = addr.ip())]
    Bind {
        addr: SocketAddrV4,
        source: io::Error,
    },
    #[error("cannot open the raw send socket: {0} (vswitchd needs CAP_NET_RAW)")]
    Raw(io::Error),
    #[error("cannot set {what} on the send socket: {source}")]
    SockOpt {
        what: &'static str,
        source: io::Error,
    },
}

/// Send sockets for UDP GSO. A GSO send carries one UDP header for all its segments, so the
/// source port comes from the socket: a pool, picked by flow hash, keeps the entropy RFC 7348
/// §5 asks for. While the pool exists every datagram, GSO or not, carries the port of its
/// flow's pool socket (`outer_source_port`): a flow whose segments took both paths with two
/// different ports would look like two flows to the receiver, whose SO_REUSEPORT group could
/// hand them to two workers and reorder them.
const GSO_SOCKETS: usize = 32;

/// A socket of the GSO pool and its local port (read once: the port is on the packet path).
struct GsoSocket {
    sock: UdpSocket,
    port: u16,
}

pub struct Underlay {
    recv: UdpSocket,
    /// UDP GSO senders (empty when the kernel lacks UDP_SEGMENT or offloads are off).
    gso: Vec<GsoSocket>,
    /// UDP_GRO is on for `recv`: a read may return several datagrams of equal size.
    gro: bool,
    /// ESP-in-UDP (RFC 3948) receive socket, when a network is encrypted and this worker
    /// receives ESP (`bind_esp_group`).
    esp_recv: Option<UdpSocket>,
    /// UDP_GRO is on for `esp_recv`.
    esp_gro: bool,
    send: OwnedFd,
    port: u16,
    /// This worker's queue of the host's tunnel device (crate::io::tunnel): whole TCP
    /// super-frames to peers go there, for the kernel to segment, once `tunnel_on` (the
    /// prober saw a peer answer through the device).
    tunnel: Option<super::tunnel::TunnelQueue>,
    tunnel_on: bool,
    local: Ipv4Addr,
}

impl Underlay {
    pub fn bind(local: Ipv4Addr, port: u16) -> Result<Underlay, UnderlayError> {
        Underlay::bind_with(local, port, false)
    }

    /// One underlay per worker, their receive sockets all bound to `local:port` with
    /// SO_REUSEPORT: the kernel hashes each datagram's addresses and ports to one of them, and
    /// since a peer's source port follows the inner flow (RFC 7348 §5), a flow is always read
    /// by the same worker, in order. A plain bind first proves the port free, so we never
    /// share it with another vswitchd or a kernel vxlan device (which would fail that bind,
    /// as ours then makes theirs fail).
    pub fn bind_group(
        local: Ipv4Addr,
        port: u16,
        workers: usize,
    ) -> Result<Vec<Underlay>, UnderlayError> {
        if workers <= 1 {
            return Ok(vec![Underlay::bind(local, port)?]);
        }
        let addr = SocketAddrV4::new(local, port);
        drop(UdpSocket::bind(addr).map_err(|source| UnderlayError::Bind { addr, source })?);
        (0..workers)
            .map(|_| Underlay::bind_with(local, port, true))
            .collect()
    }

    fn bind_with(local: Ipv4Addr, port: u16, reuse_port: bool) -> Result<Underlay, UnderlayError> {
        let addr = SocketAddrV4::new(local, port);
        let bound = || -> io::Result<UdpSocket> {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            if reuse_port {
                s.set_reuse_port(true)?;
            }
            s.bind(&SocketAddr::V4(addr).into())?;
            Ok(s.into())
        };
        let recv = bound().map_err(|source| UnderlayError::Bind { addr, source })?;
        recv.set_nonblocking(true)
            .map_err(|source| UnderlayError::Bind { addr, source })?;
        // Room for bursts while the worker is busy elsewhere; the kernel caps it at rmem_max.
        setsockopt(
            recv.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &(4i32 << 20),
            "SO_RCVBUF",
        )?;
        let send = raw_udp_socket(local)?;
        Ok(Underlay {
            recv,
            gso: Vec::new(),
            gro: false,
            esp_recv: None,
            esp_gro: false,
            send,
            port,
            tunnel: None,
            tunnel_on: false,
            local,
        })
    }

    /// Gives this underlay its queue of the host's tunnel device, not used until
    /// `start_tunnel`.
    pub fn set_tunnel(&mut self, queue: super::tunnel::TunnelQueue) {
        self.tunnel = Some(queue);
    }

    /// From now on TCP super-frames to peers go whole through the tunnel device (if this
    /// underlay has a queue of it).
    pub fn start_tunnel(&mut self) {
        self.tunnel_on = self.tunnel.is_some();
    }

    /// Segment again, for good: the queue is closed.
    pub fn stop_tunnel(&mut self) {
        self.tunnel = None;
        self.tunnel_on = false;
    }

    /// Whether TCP super-frames to peers go whole through the tunnel device.
    pub fn tunnel(&self) -> bool {
        self.tunnel_on
    }

    /// Hands the container's TCP super-frame `frame` (read with the TAP header `inner`) to the
    /// kernel as one VXLAN tunnel GSO packet to `dst` (super::tunnel::TunnelQueue::send_super_frame).
    pub fn send_tunnel(
        &self,
        inner: &crate::offload::vnet::Header,
        frame: &[u8],
        dst: Ipv4Addr,
        vni: u32,
        src_port: u16,
    ) -> io::Result<Result<(), crate::offload::tunnel::NotTunnelable>> {
        let Some(q) = &self.tunnel else {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        };
        let from = SocketAddrV4::new(self.local, src_port);
        q.send_super_frame(inner, frame, from, SocketAddrV4::new(dst, self.port), vni)
    }

    /// Turns on UDP GSO for sending runs of equal-size datagrams and UDP GRO for receiving them
    /// (Linux 4.18 and 5.0) on every underlay of a worker group. Returns whether both are on
    /// everywhere; when not, sending and receiving stay one datagram per call.
    ///
    /// Every worker's GSO pool has the same ports (the first picks them, the others bind them
    /// too with SO_REUSEPORT; nothing is ever received on them), so a flow's outer source port
    /// depends on the flow alone, not on which worker read it: a TAP moves a flow between its
    /// queues when the flow's replies arrive through another one (tun's flow steering).
    pub fn enable_segmentation_group(underlays: &mut [Underlay], local: Ipv4Addr) -> bool {
        let Some((first, rest)) = underlays.split_first_mut() else {
            return false;
        };
        if !first.enable_segmentation(local, None) {
            return false;
        }
        let ports: Vec<u16> = first.gso.iter().map(|g| g.port).collect();
        if rest
            .iter_mut()
            .all(|u| u.enable_segmentation(local, Some(&ports)))
        {
            return true;
        }
        // All or none: a worker without the pool would give its flows other source ports.
        for u in underlays.iter_mut() {
            u.disable_segmentation();
        }
        false
    }

    /// Back to one datagram per call: no GSO pool, no UDP GRO.
    fn disable_segmentation(&mut self) {
        let off: libc::c_int = 0;
        let _ = setsockopt(
            self.recv.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            &off,
            "UDP_GRO",
        );
        self.gso.clear();
        self.gro = false;
    }

    /// Turns on GSO and GRO for this underlay, its pool sockets bound to `ports` (or to ports
    /// the kernel picks).
    fn enable_segmentation(&mut self, local: Ipv4Addr, ports: Option<&[u16]>) -> bool {
        let on: libc::c_int = 1;
        if setsockopt(
            self.recv.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            &on,
            "UDP_GRO",
        )
        .is_err()
        {
            return false;
        }
        let mut socks = Vec::with_capacity(GSO_SOCKETS);
        for k in 0..GSO_SOCKETS {
            let port = ports.and_then(|p| p.get(k)).copied().unwrap_or(0);
            let bound = || -> io::Result<UdpSocket> {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
                s.set_reuse_port(true)?;
                s.bind(&SocketAddr::V4(SocketAddrV4::new(local, port)).into())?;
                Ok(s.into())
            };
            let Ok(s) = bound() else {
                break;
            };
            let seg: libc::c_int = 1400;
            let ok = s.set_nonblocking(true).is_ok()
                && setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_UDP,
                    libc::UDP_SEGMENT,
                    &seg,
                    "UDP_SEGMENT",
                )
                .is_ok()
                && setsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_MTU_DISCOVER,
                    &libc::IP_PMTUDISC_DO,
                    "IP_MTU_DISCOVER",
                )
                .is_ok()
                && setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUF,
                    &(4i32 << 20),
                    "SO_SNDBUF",
                )
                .is_ok();
            let Some(port) = ok.then(|| s.local_addr().ok()).flatten() else {
                break;
            };
            socks.push(GsoSocket {
                sock: s,
                port: port.port(),
            });
        }
        if socks.len() < GSO_SOCKETS {
            self.disable_segmentation();
            return false;
        }
        self.gso = socks;
        self.gro = true;
        true
    }

    pub fn segmentation(&self) -> bool {
        !self.gso.is_empty()
    }

    /// The UDP source port for a flow whose hash gave `flow_port` (crate::wire::flow): that
    /// port itself, or with the GSO pool, the port of the flow's pool socket, so that all of a
    /// flow's datagrams carry one port whichever way they are sent.
    pub fn outer_source_port(&self, flow_port: u16) -> u16 {
        match self.gso.len() {
            0 => flow_port,
            n => self.gso[usize::from(flow_port) % n].port,
        }
    }

    /// Sends the datagrams `parts` (UDP payloads: VXLAN or ESP, all of `seg_size` bytes but the
    /// last, which may be shorter) to `dst:dst_port` in one call: the kernel builds one UDP GSO
    /// packet that crosses its stack once and is cut into datagrams only where it must be (a
    /// NIC, or a receiver without UDP GRO). `src_port` is an `outer_source_port` and picks the
    /// pool socket that has it (EINVAL for any other port).
    pub fn send_segmented(
        &self,
        src_port: u16,
        parts: &[std::io::IoSlice<'_>],
        seg_size: u16,
        dst: Ipv4Addr,
        dst_port: u16,
    ) -> io::Result<()> {
        let Some(GsoSocket { sock, .. }) = self.gso.iter().find(|g| g.port == src_port) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let mut sa = sockaddr_in(dst, dst_port);
        // CMSG_SPACE(sizeof(u16)) is 24 bytes on 64-bit Linux; keep it aligned for cmsghdr.
        let mut control = [0u64; 4];
        // SAFETY: msghdr/cmsghdr are filled in within the buffers declared here, which outlive
        // the sendmsg call; CMSG_* compute offsets inside `control`.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = (&mut sa as *mut libc::sockaddr_in).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_iov = parts.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = parts.len();
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), seg_size);
            if libc::sendmsg(sock.as_raw_fd(), &msg, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Also receive ESP-in-UDP on `local:esp_port`, on this underlay alone.
    pub fn bind_esp(&mut self, local: Ipv4Addr, esp_port: u16) -> Result<(), UnderlayError> {
        let sock = esp_socket(local, esp_port, false)?;
        self.esp_gro = self.gro && enable_gro(&sock);
        self.esp_recv = Some(sock);
        Ok(())
    }

    /// ESP-in-UDP on `local:esp_port` for every underlay of a worker group: one socket each in
    /// an SO_REUSEPORT group whose steering program (classic BPF, run by the kernel on each
    /// datagram) hands the datagram to socket `lane mod n`, `lane` being the SPI's top four
    /// bits (crate::crypto::keys). So each worker opens the SAs of its lanes, and an SA's
    /// packets — replays too, whatever their source port — always meet its one replay window.
    /// With UDP GRO on, a run read at once is one sender's 4-tuple, so one lane.
    ///
    /// Returns how many underlays receive ESP: all of them, or 1 (the first) when the kernel
    /// refuses the program; the caller gives each worker's `EspTable` its share of the lanes
    /// (`EspTable::set_receiver`). As with `bind_group`, a plain bind first proves the port
    /// free.
    pub fn bind_esp_group(
        underlays: &mut [Underlay],
        local: Ipv4Addr,
        esp_port: u16,
    ) -> Result<usize, UnderlayError> {
        let n = underlays.len();
        if n <= 1 {
            if let Some(u) = underlays.first_mut() {
                u.bind_esp(local, esp_port)?;
            }
            return Ok(n);
        }
        let addr = SocketAddrV4::new(local, esp_port);
        drop(UdpSocket::bind(addr).map_err(|source| UnderlayError::Bind { addr, source })?);
        let mut socks = Vec::with_capacity(n);
        for _ in 0..n {
            socks.push(esp_socket(local, esp_port, true)?);
        }
        // The group's program applies to every socket of it; indexes are bind order.
        if let Err(e) = attach_lane_steering(socks[0].as_raw_fd(), n as u32) {
            tracing::warn!(
                "ESP stays on worker 0: the kernel refused the SO_REUSEPORT steering program ({e})"
            );
            drop(socks);
            underlays[0].bind_esp(local, esp_port)?;
            return Ok(1);
        }
        for (u, sock) in underlays.iter_mut().zip(socks) {
            u.esp_gro = u.gro && enable_gro(&sock);
            u.esp_recv = Some(sock);
        }
        Ok(n)
    }

    pub fn esp_recv_fd(&self) -> Option<RawFd> {
        self.esp_recv.as_ref().map(|s| s.as_raw_fd())
    }

    pub fn vxlan_port(&self) -> u16 {
        self.port
    }

    /// `recv_many` for the ESP-in-UDP socket (0 when there is none).
    pub fn recv_esp_many(
        &self,
        buf: &mut [u8],
        slot: usize,
        runs: &mut [DatagramRun],
    ) -> io::Result<usize> {
        let Some(sock) = &self.esp_recv else {
            return Ok(0);
        };
        recv_runs(sock, self.esp_gro, buf, slot, runs)
    }

    /// The socket to register with the event loop (readable when datagrams wait).
    pub fn recv_fd(&self) -> RawFd {
        self.recv.as_raw_fd()
    }

    /// Receives up to `runs.len()` (at most `RECV_BATCH`) datagrams, or with GRO on runs of
    /// datagrams, in one recvmmsg call: the `k`th into `buf[k * slot..][..slot]`, described by
    /// `runs[k]`. Returns how many; 0 when none waits. Fewer than asked means the socket's
    /// queue was empty when the call returned, so an edge-triggered poll reports what comes
    /// next. Without UDP GRO (a veth underlay, or a NIC that does not aggregate) every
    /// datagram is one read: one syscall for a batch of them rather than one each.
    ///
    /// `slot` must hold the largest UDP payload (65,507 bytes: a GRO run, or a kernel peer's
    /// tunnel-GSO datagram, crate::offload::superframe); a longer one would be cut short.
    pub fn recv_many(
        &self,
        buf: &mut [u8],
        slot: usize,
        runs: &mut [DatagramRun],
    ) -> io::Result<usize> {
        recv_runs(&self.recv, self.gro, buf, slot, runs)
    }

    /// Writes the UDP and VXLAN headers into `hdrs` (`VXLAN_HEADERS_LEN` bytes) for a frame of
    /// `frame_len` bytes that follows them. The same headers serve every peer of a flood.
    pub fn write_vxlan_headers(&self, hdrs: &mut [u8], frame_len: usize, vni: u32, src_port: u16) {
        write_udp_header(hdrs, src_port, self.port, vxlan::HEADER_LEN + frame_len);
        vxlan::emit(&mut hdrs[UDP_HEADER_LEN..VXLAN_HEADERS_LEN], vni);
    }

    /// Sends one UDP datagram (its UDP header already written at the start) to `dst`.
    pub fn send(&self, datagram: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let sa = sockaddr_in(dst, 0);
        // SAFETY: datagram is valid for reads of its length; sa is a sockaddr_in.
        let rc = unsafe {
            libc::sendto(
                self.send.as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A nonblocking UDP socket bound to `local:port` (in an SO_REUSEPORT group when `reuse_port`)
/// with a receive buffer for bursts.
fn esp_socket(local: Ipv4Addr, port: u16, reuse_port: bool) -> Result<UdpSocket, UnderlayError> {
    let addr = SocketAddrV4::new(local, port);
    let bound = || -> io::Result<UdpSocket> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        if reuse_port {
            s.set_reuse_port(true)?;
        }
        s.bind(&SocketAddr::V4(addr).into())?;
        s.set_nonblocking(true)?;
        Ok(s.into())
    };
    let sock = bound().map_err(|source| UnderlayError::Bind { addr, source })?;
    setsockopt(
        sock.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        &(4i32 << 20),
        "SO_RCVBUF",
    )?;
    Ok(sock)
}

/// Turns UDP_GRO on for `sock`; false when the kernel refuses.
fn enable_gro(sock: &UdpSocket) -> bool {
    let on: libc::c_int = 1;
    setsockopt(
        sock.as_raw_fd(),
        libc::SOL_UDP,
        libc::UDP_GRO,
        &on,
        "UDP_GRO",
    )
    .is_ok()
}

/// The SO_REUSEPORT steering program of the ESP sockets: index = (SPI >> 28) mod `n`. The
/// kernel runs it with the packet starting after the UDP header (net/core/sock_reuseport.c),
/// so the SPI is the word at 0; a datagram too short for it makes the load fail, which
/// returns 0 (socket 0, which counts it as truncated). An index out of range would fall back
/// to the kernel's hash; `n` is the group's size, so none is.
pub fn lane_steering_program(n: u32) -> [libc::sock_filter; 4] {
    use super::bpf::ins;
    [
        ins(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        ins(
            libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K,
            0,
            0,
            crate::crypto::keys::LANE_SHIFT,
        ),
        ins(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, 0, 0, n.max(1)),
        ins(libc::BPF_RET | libc::BPF_A, 0, 0, 0),
    ]
}

/// SO_ATTACH_REUSEPORT_CBPF (Linux 4.5, asm-generic/socket.h; not in the libc crate for Linux).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

fn attach_lane_steering(fd: RawFd, n: u32) -> Result<(), UnderlayError> {
    super::bpf::attach(fd, SO_ATTACH_REUSEPORT_CBPF, &lane_steering_program(n)).map_err(|source| {
        UnderlayError::SockOpt {
            what: "SO_ATTACH_REUSEPORT_CBPF",
            source,
        }
    })
}

/// Writes an 8-byte UDP header for `payload_len` bytes of payload, checksum 0 (RFC 768 "no
/// checksum"; allowed for IPv4, RFC 7348 §5).
pub fn write_udp_header(hdr: &mut [u8], src_port: u16, dst_port: u16, payload_len: usize) {
    let len = (UDP_HEADER_LEN + payload_len) as u16;
    hdr[0..2].copy_from_slice(&src_port.to_be_bytes());
    hdr[2..4].copy_from_slice(&dst_port.to_be_bytes());
    hdr[4..6].copy_from_slice(&len.to_be_bytes());
    hdr[6..8].copy_from_slice(&[0, 0]);
}

fn sockaddr_in(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    }
}

fn setsockopt<T>(
    fd: RawFd,
    level: i32,
    name: i32,
    value: &T,
    what: &'static str,
) -> Result<(), UnderlayError> {
    // SAFETY: value points to a T that lives across the call; the kernel copies size_of::<T>().
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(UnderlayError::SockOpt {
            what,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn raw_udp_socket(local: Ipv4Addr) -> Result<OwnedFd, UnderlayError> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    };
    if fd < 0 {
        return Err(UnderlayError::Raw(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = sock.as_raw_fd();

    // Accept nothing: one classic-BPF instruction "ret #0".
    let drop_all = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: drop_all.as_ptr() as *mut libc::sock_filter,
    };
    setsockopt(
        raw,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &prog,
        "SO_ATTACH_FILTER",
    )?;
    setsockopt(
        raw,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        &libc::IP_PMTUDISC_DO,
        "IP_MTU_DISCOVER",
    )?;
    let sndbuf: libc::c_int = 4 << 20;
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, &sndbuf, "SO_SNDBUF")?;

    // Binding a raw socket fixes the source address of what it sends.
    let sa = sockaddr_in(local, 0);
    // SAFETY: sa is a valid sockaddr_in of the given size.
    let rc = unsafe {
        libc::bind(
            raw,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(UnderlayError::SockOpt {
            what: "bind",
            source: io::Error::last_os_error(),
        });
    }
    // Connected to our own address, the socket matches no datagram a peer sends us (the kernel
    // delivers to a raw socket only what comes from its connected address), so the kernel no
    // longer clones every received UDP datagram for it, once per worker, only for the filter
    // above to drop the clone (raw_v4_input). Sending names each destination (sendto), which a
    // connected raw socket allows. Not fatal: the filter still keeps the queue empty.
    // SAFETY: sa is a valid sockaddr_in of the given size.
    let rc = unsafe {
        libc::connect(
            raw,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        tracing::debug!(
            "raw send socket not connected to {local}: {}",
            io::Error::last_os_error()
        );
    }
    Ok(sock)
}
