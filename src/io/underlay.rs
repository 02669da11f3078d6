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
//! never fragmented. A BPF filter that accepts nothing keeps the raw socket's receive queue
//! empty: otherwise the kernel would copy every UDP packet of the host into it.
//!
//! Thread-safety: `Underlay` is owned by one worker.

use crate::wire::vxlan;
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

pub struct Underlay {
    recv: UdpSocket,
    /// ESP-in-UDP (RFC 3948) receive socket, when a network is encrypted.
    esp_recv: Option<UdpSocket>,
    send: OwnedFd,
    port: u16,
}

impl Underlay {
    pub fn bind(local: Ipv4Addr, port: u16) -> Result<Underlay, UnderlayError> {
        let addr = SocketAddrV4::new(local, port);
        let recv = UdpSocket::bind(addr).map_err(|source| UnderlayError::Bind { addr, source })?;
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
            esp_recv: None,
            send,
            port,
        })
    }

    /// Also receive ESP-in-UDP on `local:esp_port`.
    pub fn bind_esp(&mut self, local: Ipv4Addr, esp_port: u16) -> Result<(), UnderlayError> {
        let addr = SocketAddrV4::new(local, esp_port);
        let sock = UdpSocket::bind(addr).map_err(|source| UnderlayError::Bind { addr, source })?;
        sock.set_nonblocking(true)
            .map_err(|source| UnderlayError::Bind { addr, source })?;
        setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &(4i32 << 20),
            "SO_RCVBUF",
        )?;
        self.esp_recv = Some(sock);
        Ok(())
    }

    pub fn esp_recv_fd(&self) -> Option<RawFd> {
        self.esp_recv.as_ref().map(|s| s.as_raw_fd())
    }

    pub fn vxlan_port(&self) -> u16 {
        self.port
    }

    /// Receives one ESP-in-UDP payload (ESP header onwards). `Ok(None)` when none waits.
    pub fn recv_esp(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr)>> {
        let Some(sock) = &self.esp_recv else {
            return Ok(None);
        };
        recv_v4(sock, buf)
    }

    /// The socket to register with the event loop (readable when datagrams wait).
    pub fn recv_fd(&self) -> RawFd {
        self.recv.as_raw_fd()
    }

    /// Receives one datagram (VXLAN header + inner frame) into `buf`. `Ok(None)` when none waits.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr)>> {
        recv_v4(&self.recv, buf)
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

/// Writes an 8-byte UDP header for `payload_len` bytes of payload, checksum 0 (RFC 768 "no
/// checksum"; allowed for IPv4, RFC 7348 §5).
pub fn write_udp_header(hdr: &mut [u8], src_port: u16, dst_port: u16, payload_len: usize) {
    let len = (UDP_HEADER_LEN + payload_len) as u16;
    hdr[0..2].copy_from_slice(&src_port.to_be_bytes());
    hdr[2..4].copy_from_slice(&dst_port.to_be_bytes());
    hdr[4..6].copy_from_slice(&len.to_be_bytes());
    hdr[6..8].copy_from_slice(&[0, 0]);
}

fn recv_v4(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr)>> {
    match sock.recv_from(buf) {
        Ok((n, SocketAddr::V4(a))) => Ok(Some((n, *a.ip()))),
        Ok((_, SocketAddr::V6(_))) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
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
    Ok(sock)
}
