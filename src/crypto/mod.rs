//! Encryption of VXLAN between hosts: ESP (RFC 4303) with AES-256-GCM (RFC 4106) in transport
//! mode over the VXLAN UDP datagram, UDP-encapsulated on port 4500 (RFC 3948), so that Wireshark
//! and scapy decode it and, given the keys (`EspTable::sa_list` → `SaInfo::wireshark_uat`),
//! decrypt it.
//!
//! # Overview
//!
//! - `keyfile`: reads the network secret (the only I/O here).
//! - `keys`: epochs, the SPI layout, HKDF key derivation.
//! - `replay`: the RFC 4303 anti-replay window with 64-bit extended sequence numbers.
//! - `sa`: one security association: seal / open one packet in the caller's buffer.
//! - `table`: `EspTable`, every SA of this host: picks, creates, rotates and expires them.
//! - `wireshark`: the `esp_sa` UAT line that lets Wireshark decrypt an SA.
//!
//! # Key management
//!
//! There is no key exchange. Each encrypted network has a 32-byte secret shared by its hosts
//! (`key_file`). Each direction between two hosts of a network gets its own SA whose key is
//! derived, never sent:
//!
//! ```text
//! key(32) || salt(4) = HKDF-SHA256(ikm = secret, salt = "vswitch-esp-v1",
//!                                  info = vni | src_ip | dst_ip | spi | epoch)
//! ```
//!
//! Time is cut into epochs of `rekey_interval_secs` (`epoch = unix_secs / interval`); every
//! epoch the sender moves to a new SA (new SPI, new key). The SPI tells the receiver everything
//! it needs to derive the same key: `epoch mod 256 (8 bits) | boot (12 bits) | vni mod 4096
//! (12 bits)`. `boot` is a counter the daemon persists and increments at every start, so a
//! restarted sender (whose sequence numbers restart at 1) uses a new SPI and so a new key: a
//! nonce (salt || sequence number) is never used twice under one key. The receiver resolves the
//! 8-bit epoch against its own clock to e-1, e or e+1, derives the key, and installs the SA only
//! if the packet's ICV verifies, so forged packets cannot create state. Old and new SAs are
//! both accepted around an epoch boundary: rotation loses no packet, provided the hosts' clocks
//! agree to within one rekey interval.
//!
//! Limits of this scheme, by design: anyone holding the network secret can read and forge that
//! network's traffic (it is a group key, like WireGuard's pre-shared key without the DH); there
//! is no forward secrecy; and `boot` repeats after 4095 restarts, so 4095 restarts within one
//! rekey interval would reuse keys.
//!
//! # Thread-safety
//!
//! Everything here is plain data owned by one thread (the worker), with one exception: an
//! outbound SA's sequence counter, which is the uniqueness of its nonces. Several workers send
//! to the same peer, so their tables (`EspTable::replica`) share one atomic counter per SA;
//! copying a counter would repeat nonces.

pub mod keyfile;
pub mod keys;
pub mod replay;
pub mod sa;
pub mod table;
#[cfg(test)]
mod vectors;
pub mod wireshark;

pub use keyfile::{generate_key_hex, load_key_file, KeyFileError};
pub use table::{EspConfig, EspConfigError, EspDrop, EspNetwork, EspTable, SaInfo, SealDrop};

/// Lower-case hex, for keys shown to operators.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Parses exactly `N` bytes of hex (either case).
pub(crate) fn from_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(to_hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(from_hex::<3>(b"00AB7f"), Some([0x00, 0xab, 0x7f]));
        assert_eq!(from_hex::<3>(b"00ab7"), None);
        assert_eq!(from_hex::<3>(b"00ab7g"), None);
    }
}
