//! Offloads: what the kernel would do in hardware or in its GSO layer, done here so that a
//! container's TCP can hand us 64 KB at a time through its TAP device (IFF_VNET_HDR + TSO).
//! Sans-IO: frames in, frames out, in the caller's buffers.

pub mod csum;
pub mod gro;
pub mod superframe;
pub mod tso;
pub mod tunnel;
pub mod vnet;

/// Frames for the offload tests.
#[cfg(test)]
pub(crate) mod test_frames {
    use crate::wire::checksum;

    /// A frame of 14 + 20 + `l4_len` bytes, zero after its headers: Ethernet 02:00:00:00:00:02
    /// -> 02:00:00:00:00:03, IPv4 10.0.9.2 -> 10.0.9.3 with `proto`, IP ID `id`, DF, TTL 64
    /// and a correct header checksum.
    pub fn eth_ipv4(proto: u8, id: u16, l4_len: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + l4_len];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 3]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&[10, 0, 9, 2]);
        ip[16..20].copy_from_slice(&[10, 0, 9, 3]);
        let c = checksum::ipv4_header(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f
    }
}
