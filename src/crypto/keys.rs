//! Epochs, the SPI layout and key derivation (see the module doc of `crate::crypto`).
//!
//! ```text
//! SPI:  | lane (4) | epoch mod 16 (4) | boot (12) | net_id = vni mod 4096 (12) |
//! ```
//!
//! A lane is one of `LANES` parallel SAs a host keeps per (network, peer) and epoch, each with
//! its own key, sequence numbers and, at the receiver, replay window. The sender picks a
//! flow's lane from its outer UDP source port (`lane_of_port`), the receiver steers each lane
//! to one of its workers (crate::io::underlay, an SO_REUSEPORT BPF program reading the SPI's
//! top 4 bits), so every worker opens ESP, and the one window an SA has sees all its packets,
//! replays included, whatever source port they come from. Four bits of epoch tell e-1, e and
//! e+1 apart, which is all the receiver resolves (`resolve_epoch`); the key derivation takes
//! the whole epoch.
//!
//! The boot field runs 1..=4095 (`1 + (boot - 1) mod 4095`), never 0, so an SPI is always at
//! least 4096: never 0 and never in 1..=255, which RFC 4303 §2.1 reserves.

use ring::hkdf;
use std::fmt;
use std::net::Ipv4Addr;

/// HKDF salt: names this scheme and its version, so keys never collide with another use of the
/// same secret.
pub const HKDF_SALT: &[u8] = b"vswitch-esp-v1";
pub const KEY_LEN: usize = 32;
pub const SALT_LEN: usize = 4;
/// Number of distinct values of the SPI's boot field.
pub const BOOT_FIELD_VALUES: u32 = 4095;
const NET_ID_BITS: u32 = 12;
const BOOT_BITS: u32 = 12;
const EPOCH_BITS: u32 = 4;
/// Parallel SAs per (network, peer, epoch): the SPI's top 4 bits.
pub const LANES: u8 = 16;
/// Where the lane sits in the SPI (what the receiver's steering program shifts by).
pub const LANE_SHIFT: u32 = EPOCH_BITS + BOOT_BITS + NET_ID_BITS;

/// AES-256 key and the 4-byte nonce salt of one SA (RFC 4106 §8.1: the last 4 bytes of the
/// keying material are the salt).
#[derive(Clone, PartialEq, Eq)]
pub struct SaKey {
    pub key: [u8; KEY_LEN],
    pub salt: [u8; SALT_LEN],
}

impl fmt::Debug for SaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaKey(..)")
    }
}

/// Which epoch `unix_secs` is in. `interval_secs` is at least 1 (`EspConfig` checks).
pub fn epoch(unix_secs: u64, interval_secs: u64) -> u64 {
    unix_secs / interval_secs.max(1)
}

/// The 12-bit network id an SPI carries: two encrypted networks whose VNIs are equal modulo 4096
/// cannot coexist on one host (`EspTable::new` refuses them).
pub fn net_id(vni: u32) -> u16 {
    (vni % (1 << NET_ID_BITS)) as u16
}

/// The SPI's boot field: 1..=4095, never 0.
pub fn boot_field(boot: u32) -> u16 {
    (boot.saturating_sub(1) % BOOT_FIELD_VALUES + 1) as u16
}

/// The SPI of lane `lane` (taken mod `LANES`) of epoch `epoch`, sent by a host started for
/// the `boot`th time, on network `vni`.
pub fn spi(epoch: u64, lane: u8, boot: u32, vni: u32) -> u32 {
    u32::from(lane % LANES) << LANE_SHIFT
        | ((epoch % (1 << EPOCH_BITS)) as u32) << (BOOT_BITS + NET_ID_BITS)
        | (boot_field(boot) as u32) << NET_ID_BITS
        | net_id(vni) as u32
}

/// The lane of a datagram sent with outer UDP source port `port`: a function of the port
/// alone, so the datagrams of one source port (one flow, one UDP GSO run, one GRO run at the
/// receiver) are all of one lane and reach one receiving worker.
pub fn lane_of_port(port: u16) -> u8 {
    (u32::from(port).wrapping_mul(0x9e37_79b1) >> 28) as u8
}

/// The lane an SPI belongs to.
pub fn lane_of_spi(spi: u32) -> u8 {
    (spi >> LANE_SHIFT) as u8
}

/// The fields of an SPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiParts {
    pub lane: u8,
    /// The epoch mod 16.
    pub epoch_low: u8,
    pub boot_field: u16,
    pub net_id: u16,
}

pub fn split_spi(spi: u32) -> SpiParts {
    SpiParts {
        lane: lane_of_spi(spi),
        epoch_low: ((spi >> (BOOT_BITS + NET_ID_BITS)) & 0xf) as u8,
        boot_field: ((spi >> NET_ID_BITS) & 0xfff) as u16,
        net_id: (spi & 0xfff) as u16,
    }
}

/// The full epoch whose low 4 bits are `low4`, among `current - 1`, `current` and `current + 1`:
/// the sender's clock may be up to one interval off ours either way.
pub fn resolve_epoch(low4: u8, current: u64) -> Option<u64> {
    [
        current.checked_sub(1),
        Some(current),
        current.checked_add(1),
    ]
    .into_iter()
    .flatten()
    .find(|e| (*e % (1 << EPOCH_BITS)) as u8 == low4)
}

/// Derives the key and salt of the SA that `src` uses to send to `dst` on `vni` with `spi` in
/// `epoch`. Both ends compute it from the packet's addresses and SPI alone.
pub fn derive(
    secret: &[u8; 32],
    vni: u32,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    spi: u32,
    epoch: u64,
) -> SaKey {
    let mut info = [0u8; 24];
    info[0..4].copy_from_slice(&vni.to_be_bytes());
    info[4..8].copy_from_slice(&src.octets());
    info[8..12].copy_from_slice(&dst.octets());
    info[12..16].copy_from_slice(&spi.to_be_bytes());
    info[16..24].copy_from_slice(&epoch.to_be_bytes());
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
    let mut okm = [0u8; KEY_LEN + SALT_LEN];
    // Only fails for lengths over 255 * 32 bytes; 36 is a constant.
    prk.expand(&[&info], OkmLen(okm.len()))
        .and_then(|o| o.fill(&mut okm))
        .expect("HKDF-SHA256 expands to 36 bytes");
    let mut k = SaKey {
        key: [0; KEY_LEN],
        salt: [0; SALT_LEN],
    };
    k.key.copy_from_slice(&okm[..KEY_LEN]);
    k.salt.copy_from_slice(&okm[KEY_LEN..]);
    k
}

struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    #[test]
    fn spi_layout() {
        assert_eq!(spi(0, 0, 1, 0), 0x0000_1000);
        assert_eq!(spi(0x1ab, 0xa, 2, 42), 0xab00_202a);
        assert_eq!(spi(5, 0, 1, 4096 + 7), 0x0500_1007);
        assert_eq!(spi(5, 16 + 3, 1, 7), 0x3500_1007, "lane mod 16");
        let p = split_spi(0xab00_202a);
        assert_eq!(
            p,
            SpiParts {
                lane: 0xa,
                epoch_low: 0xb,
                boot_field: 2,
                net_id: 42
            }
        );
        assert_eq!(lane_of_spi(0xab00_202a), 0xa);
    }

    #[test]
    fn lanes_spread_ports() {
        // Consecutive ports (what the kernel hands a pool of sockets) cover the lanes.
        let mut seen = [0u32; LANES as usize];
        for port in 40000..40032u16 {
            let l = lane_of_port(port);
            assert!(l < LANES);
            seen[l as usize] += 1;
        }
        assert!(seen.iter().filter(|&&n| n > 0).count() >= 12, "{seen:?}");
        assert_eq!(lane_of_port(4789), lane_of_port(4789));
    }

    #[test]
    fn spi_never_reserved() {
        // Boot 4096 would make a 0 boot field under a plain `mod 4096`; ours skips 0.
        for boot in [0, 1, 4095, 4096, 4097, 8191, u32::MAX] {
            let f = boot_field(boot);
            assert!((1..=4095).contains(&f), "boot {boot} -> {f}");
            assert!(spi(0, 0, boot, 0) >= 4096);
            assert!(spi(256, 0, boot, 255) > 255);
        }
        assert_eq!(boot_field(1), 1);
        assert_eq!(boot_field(4095), 4095);
        assert_eq!(boot_field(4096), 1);
    }

    #[test]
    fn restart_changes_spi_and_key() {
        let secret = [7u8; 32];
        let e = 1000;
        let (s1, s2) = (spi(e, 0, 1, 42), spi(e, 0, 2, 42));
        assert_ne!(s1, s2);
        let k1 = derive(&secret, 42, A, B, s1, e);
        let k2 = derive(&secret, 42, A, B, s2, e);
        assert_ne!(k1.key, k2.key);
        assert_ne!(k1.salt, k2.salt);
    }

    #[test]
    fn derivation_separates_everything() {
        let s = [7u8; 32];
        let base = derive(&s, 42, A, B, 0x1000, 1);
        assert_eq!(base, derive(&s, 42, A, B, 0x1000, 1));
        assert_ne!(base, derive(&s, 43, A, B, 0x1000, 1));
        assert_ne!(base, derive(&s, 42, B, A, 0x1000, 1));
        assert_ne!(base, derive(&s, 42, A, B, 0x1001, 1));
        assert_ne!(base, derive(&s, 42, A, B, 0x1000, 2));
        assert_ne!(base, derive(&[8u8; 32], 42, A, B, 0x1000, 1));
    }

    #[test]
    fn epochs() {
        assert_eq!(epoch(3599, 3600), 0);
        assert_eq!(epoch(3600, 3600), 1);
        assert_eq!(resolve_epoch(0x0, 0x100), Some(0x100));
        assert_eq!(resolve_epoch(0xf, 0x100), Some(0xff));
        assert_eq!(resolve_epoch(0x1, 0x100), Some(0x101));
        assert_eq!(resolve_epoch(0x2, 0x100), None);
        assert_eq!(resolve_epoch(0xe, 0x100), None);
        assert_eq!(resolve_epoch(0xf, 0), None);
        assert_eq!(resolve_epoch(0, 0), Some(0));
        assert_eq!(resolve_epoch(0x3, 0x1234), Some(0x1233));
    }
}
