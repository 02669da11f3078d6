//! Lines for Wireshark's ESP SA table (the `esp_sa` UAT file in the profile directory, or
//! `tshark -o 'uat:esp_sa:LINE'`), so an operator can decrypt a capture of vswitch traffic.
//!
//! Fields, in Wireshark's order (`epan/dissectors/packet-ipsec.c`): protocol, source, destination,
//! SPI, encryption algorithm, encryption key (key || salt, RFC 4106 §8.1), authentication
//! algorithm (NULL: GCM authenticates itself), authentication key. Also set
//! `esp.enable_encryption_decode:TRUE`.
//!
//! Wireshark (4.0 at least) authenticates GCM with the 8-byte AAD of 32-bit sequence numbers, so
//! with `esp.enable_authentication_check` on it reports vswitch's ICVs (computed over the
//! 12-byte ESN AAD, RFC 4106 §5) as bad; decryption is not affected.

use std::net::Ipv4Addr;

/// Wireshark's label for AES-GCM with a 16-octet ICV (any key size: it picks AES-256 from the
/// 36-byte key).
pub const ENCRYPTION_ALGO: &str = "AES-GCM with 16 octet ICV [RFC4106]";

/// One `esp_sa` UAT record for the SA `spi` from `src` to `dst`.
pub fn uat_line(src: Ipv4Addr, dst: Ipv4Addr, spi: u32, key: &[u8; 32], salt: &[u8; 4]) -> String {
    format!(
        "\"IPv4\",\"{src}\",\"{dst}\",\"0x{spi:08x}\",\"{ENCRYPTION_ALGO}\",\"0x{}{}\",\"NULL\",\"\"",
        super::to_hex(key),
        super::to_hex(salt),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_line() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let line = uat_line(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            0x1001,
            &key,
            &[0xca, 0xfe, 0xba, 0xbe],
        );
        assert_eq!(
            line,
            "\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0x00001001\",\
             \"AES-GCM with 16 octet ICV [RFC4106]\",\
             \"0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fcafebabe\",\
             \"NULL\",\"\""
        );
    }
}
