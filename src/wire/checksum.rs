//! The Internet checksum (RFC 1071): ones-complement sums for IPv4 headers and TCP/UDP.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `bytes` (big-endian 16-bit words, an odd last byte padded with zero) to `sum`. Sums of
/// this width cannot overflow for any frame we handle; fold when done.
///
/// Four bytes at a time in native order, folded and byte-swapped at the end: the ones'
/// complement sum does not depend on byte order or word width (RFC 1071 §2(B), (C)), and this
/// is the loop that checksums every segment of a super-frame (crate::offload::tso), where
/// 16-bit big-endian words cost three times as much.
pub fn add(sum: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(4);
    let mut native: u64 = 0;
    for w in &mut words {
        native += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut sum = sum + u64::from(u16::from_be(fold(native)));
    let mut tail = words.remainder().chunks_exact(2);
    for c in &mut tail {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = tail.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a sum to 16 bits without complementing it.
fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Folds a sum to 16 bits and complements it: the value stored in a checksum field.
pub fn finish(sum: u64) -> u16 {
    !fold(sum)
}

/// Pseudo-header sum for TCP/UDP over IPv4 (RFC 793 §3.1).
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: usize) -> u64 {
    let s = add(add(0, &src.octets()), &dst.octets());
    s + u64::from(proto) + l4_len as u64
}

/// Pseudo-header sum for TCP/UDP over IPv6 (RFC 8200 §8.1).
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4_len: usize) -> u64 {
    let s = add(add(0, &src.octets()), &dst.octets());
    s + u64::from(proto) + l4_len as u64
}

/// Checksum of an IPv4 header whose checksum field (bytes 10..12) is zero.
pub fn ipv4_header(header: &[u8]) -> u16 {
    finish(add(0, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum as RFC 1071 writes it: one big-endian 16-bit word at a time.
    fn reference(mut sum: u64, bytes: &[u8]) -> u64 {
        let mut chunks = bytes.chunks_exact(2);
        for c in &mut chunks {
            sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u64::from(*last) << 8;
        }
        sum
    }

    #[test]
    fn word_at_a_time_sum_equals_the_reference_for_every_length_and_start() {
        let mut x: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let ones = vec![0xffu8; 70_000];
        for start in 0..8 {
            for len in (0..200).chain([1399, 1400, 1401, 2048, 2991]) {
                let b = &data[start..start + len];
                for init in [0, 0x1_2345, 0xffff] {
                    assert_eq!(
                        finish(add(init, b)),
                        finish(reference(init, b)),
                        "start {start} len {len} init {init:#x}"
                    );
                }
            }
        }
        assert_eq!(finish(add(0, &ones)), finish(reference(0, &ones)));
        assert_eq!(finish(add(0, &[0; 64])), 0xffff, "all zero sums to zero");
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 (before complement).
        let s = add(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(!finish(s), 0xddf2);
    }

    #[test]
    fn ipv4_header_of_a_real_packet() {
        // The outer IPv4 header of a kernel VXLAN packet (tests/fixtures), checksum 0x5636.
        let mut h = [
            0x45, 0x00, 0x00, 0x4e, 0xa0, 0x65, 0x00, 0x00, 0x40, 0x11, 0x56, 0x36, 0xc0, 0x00,
            0x02, 0x01, 0xc0, 0x00, 0x02, 0x02,
        ];
        assert_eq!(finish(add(0, &h)), 0, "a valid header sums to zero");
        h[10] = 0;
        h[11] = 0;
        assert_eq!(ipv4_header(&h), 0x5636);
    }
}
