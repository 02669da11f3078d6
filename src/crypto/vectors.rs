//! Known-answer tests against independent implementations: `testdata/esp_vectors.txt` was made
//! by `testdata/make_vectors.py` with the `cryptography` package's HKDF and scapy's ESP
//! (AES-GCM, ESN), and tshark decrypted the same packets with the recorded UAT lines.
//!
//! Their SPI, 0xdf00302a, reads under today's layout (crate::crypto::keys) as lane 13, epoch
//! 486111 (mod 16: 0xf), boot 3, VNI 42: the vectors are lane 13's SA.

use super::keys;
use super::sa::{InboundSa, OutboundSa};
use super::table::{EspConfig, EspNetwork, EspTable};
use super::wireshark;
use crate::wire::esp;
use std::collections::HashMap;
use std::net::Ipv4Addr;

const VECTORS: &str = include_str!("testdata/esp_vectors.txt");
/// The lane the vectors' SPI names (`make_vectors.py`'s LANE).
const VECTOR_LANE: u8 = 13;

struct Vector(HashMap<String, String>);

impl Vector {
    fn s(&self, k: &str) -> &str {
        self.0.get(k).unwrap_or_else(|| panic!("vector lacks {k}"))
    }

    fn u64(&self, k: &str) -> u64 {
        self.s(k).parse().unwrap()
    }

    fn hex(&self, k: &str) -> Vec<u8> {
        let s = self.s(k).as_bytes();
        s.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn ip(&self, k: &str) -> Ipv4Addr {
        self.s(k).parse().unwrap()
    }

    fn keymat(&self) -> keys::SaKey {
        let km = self.hex("keymat");
        keys::SaKey {
            key: km[..32].try_into().unwrap(),
            salt: km[32..].try_into().unwrap(),
        }
    }
}

fn vectors() -> Vec<Vector> {
    let v: Vec<Vector> = VECTORS
        .split("\n\n")
        .filter(|block| block.contains("name="))
        .map(|block| {
            Vector(
                block
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(v.len(), 2);
    v
}

#[test]
fn spi_and_key_match_cryptography_hkdf() {
    for v in vectors() {
        let epoch = keys::epoch(v.u64("unix"), v.u64("rekey_interval"));
        assert_eq!(epoch, v.u64("epoch"));
        let spi = keys::spi(
            epoch,
            VECTOR_LANE,
            v.u64("boot") as u32,
            v.u64("vni") as u32,
        );
        assert_eq!(format!("{spi:08x}"), v.s("spi"));
        let secret: [u8; 32] = v.hex("secret").try_into().unwrap();
        let k = keys::derive(
            &secret,
            v.u64("vni") as u32,
            v.ip("src"),
            v.ip("dst"),
            spi,
            epoch,
        );
        assert_eq!(k, v.keymat(), "{}", v.s("name"));
    }
}

#[test]
fn seal_matches_scapy() {
    for v in vectors() {
        let spi = u32::from_str_radix(v.s("spi"), 16).unwrap();
        let seq = v.u64("seq");
        let plain = v.hex("plaintext");
        let mut sa = OutboundSa::new(spi, v.keymat(), v.u64("epoch"), 0).starting_after(seq - 1);
        let mut buf = vec![0u8; esp::PREFIX_LEN + plain.len() + esp::OVERHEAD_MAX];
        buf[esp::PREFIX_LEN..esp::PREFIX_LEN + plain.len()].copy_from_slice(&plain);
        let n = sa.seal_in_place(&mut buf, 0, plain.len()).unwrap();
        assert_eq!(
            crate::crypto::to_hex(&buf[..n]),
            v.s("esp"),
            "{}",
            v.s("name")
        );
    }
}

#[test]
fn open_scapy_packets() {
    for v in vectors() {
        let spi = u32::from_str_radix(v.s("spi"), 16).unwrap();
        let seq = v.u64("seq");
        let mut inb = InboundSa::new(spi, v.u64("vni") as u32, v.keymat(), v.u64("epoch"), 0);
        if seq > 1 << 32 {
            // The receiver learns the sender's 2^32 subspace by following it across the
            // boundary: first the last number below 2^32.
            let mut out = OutboundSa::new(spi, v.keymat(), 0, 0).starting_after((1 << 32) - 2);
            let mut b = vec![0u8; 64];
            let n = out.seal_in_place(&mut b, 0, 4).unwrap();
            inb.open_in_place(&mut b[..n]).unwrap();
        }
        let mut pkt = v.hex("esp");
        let r = inb.open_in_place(&mut pkt).unwrap();
        assert_eq!(pkt[r].to_vec(), v.hex("plaintext"), "{}", v.s("name"));
        assert_eq!(inb.seq(), seq);
    }
}

#[test]
fn table_seals_the_first_vector() {
    let v = &vectors()[0];
    let secret: [u8; 32] = v.hex("secret").try_into().unwrap();
    let mut t = EspTable::new(EspConfig {
        local_ip: v.ip("src"),
        boot: v.u64("boot") as u32,
        rekey_interval_secs: v.u64("rekey_interval"),
        networks: vec![EspNetwork {
            vni: v.u64("vni") as u32,
            secret,
            peers: vec![v.ip("dst")],
        }],
    })
    .unwrap();
    let plain = v.hex("plaintext");
    let mut buf = vec![0u8; 8 + esp::PREFIX_LEN + plain.len() + esp::OVERHEAD_MAX];
    let n = t
        .seal_from(
            v.u64("unix"),
            42,
            v.ip("dst"),
            VECTOR_LANE,
            &plain,
            &mut buf,
            8,
        )
        .unwrap();
    assert_eq!(crate::crypto::to_hex(&buf[8..8 + n]), v.s("esp"));
    let list = t.sa_list(v.u64("unix"));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].wireshark_uat(), v.s("uat"));
}

#[test]
fn uat_line_matches_the_one_tshark_accepted() {
    for v in vectors() {
        let km = v.keymat();
        let spi = u32::from_str_radix(v.s("spi"), 16).unwrap();
        assert_eq!(
            wireshark::uat_line(v.ip("src"), v.ip("dst"), spi, &km.key, &km.salt),
            v.s("uat")
        );
    }
}
