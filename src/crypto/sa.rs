//! One security association: AES-256-GCM ESP (RFC 4106) sealing or opening one packet in place
//! in the caller's buffer. No allocation, no clock: the table around it decides which SA to use.
//!
//! Nonce = salt (4) || IV (8) (RFC 4106 §4). The sender's IV is its 64-bit sequence number,
//! which strictly increases per SA and so never repeats under one key. AAD = SPI || Seq-high ||
//! Seq-low: extended sequence numbers (RFC 4106 §5), whose high half is never sent, so a packet
//! only authenticates under the 64-bit number the receiver inferred.

use super::keys::SaKey;
use super::replay::ReplayWindow;
use crate::wire::esp::{self, ICV_LEN, NEXT_HEADER_UDP, PREFIX_LEN};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// All 2^64 - 1 sequence numbers are used: sending more would repeat a nonce (RFC 4303
    /// §3.3.3). The table moves to a new SA every epoch, so this is only reachable in tests.
    SeqExhausted,
    /// The buffer has no room for the trailer and the ICV after the plaintext.
    BufferTooSmall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    Truncated,
    /// Already received, or behind the anti-replay window.
    Replay,
    /// The ICV does not verify: forged, corrupted, or sealed with another key.
    BadIcv,
    /// Authentic, but the padding is not 1, 2, 3, ... or longer than the payload.
    BadPadding,
    /// Authentic, but Next Header is not UDP (59 is an RFC 4303 §2.6 dummy packet).
    NotUdp,
}

impl OpenError {
    /// Whether the packet was sealed with this SA's key (the error came after the ICV check).
    pub fn authenticated(self) -> bool {
        matches!(self, OpenError::BadPadding | OpenError::NotUdp)
    }
}

fn aead_key(k: &SaKey) -> LessSafeKey {
    // Only fails for a key of the wrong length; `SaKey::key` is 32 bytes by type.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k.key).expect("AES-256 key is 32 bytes"))
}

fn nonce(salt: &[u8; 4], iv: &[u8]) -> Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(iv);
    Nonce::assume_unique_for_key(n)
}

fn aad(spi: u32, seq: u64) -> Aad<[u8; 12]> {
    let mut a = [0u8; 12];
    a[..4].copy_from_slice(&spi.to_be_bytes());
    a[4..].copy_from_slice(&seq.to_be_bytes());
    Aad::from(a)
}

/// The last sequence number an outbound SA used (0: none yet). Shared by the copies of the SA
/// that several workers hold (crate::crypto::table::EspTable::replica), so each number, and
/// with it each nonce, is used once whichever worker sends.
pub type SeqCounter = Arc<AtomicU64>;

/// The sending side of one SA.
pub struct OutboundSa {
    spi: u32,
    seq: SeqCounter,
    key: LessSafeKey,
    material: SaKey,
    epoch: u64,
    created_unix: u64,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
}

impl OutboundSa {
    pub fn new(spi: u32, material: SaKey, epoch: u64, created_unix: u64) -> OutboundSa {
        OutboundSa {
            spi,
            seq: SeqCounter::default(),
            key: aead_key(&material),
            material,
            epoch,
            created_unix,
            packets: 0,
            bytes: 0,
            drops: 0,
        }
    }

    /// Continues after sequence number `seq` instead of starting at 1. For tests (the 2^32
    /// boundary, exhaustion) and for keeping one counter across a change of key.
    pub fn starting_after(self, seq: u64) -> OutboundSa {
        self.seq.store(seq, Ordering::Relaxed);
        self
    }

    /// Counts with `seq`, shared with other copies of this SA (or kept across a change of key).
    pub fn with_counter(mut self, seq: SeqCounter) -> OutboundSa {
        self.seq = seq;
        self
    }

    pub fn counter(&self) -> &SeqCounter {
        &self.seq
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The last sequence number sent (0: none yet).
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn created_unix(&self) -> u64 {
        self.created_unix
    }

    pub fn material(&self) -> &SaKey {
        &self.material
    }

    /// Turns the plaintext at `buf[esp_start + 16 .. esp_start + 16 + plain_len]` (inner UDP,
    /// VXLAN, frame) into an ESP packet in place: header and IV into the 16 bytes reserved in
    /// front, padding, trailer and ICV after. Returns the ESP packet's length, which starts at
    /// `esp_start`.
    pub fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        esp_start: usize,
        plain_len: usize,
    ) -> Result<usize, SealError> {
        let total = esp::packet_len(plain_len);
        let pkt = esp_start
            .checked_add(total)
            .and_then(|end| buf.get_mut(esp_start..end))
            .ok_or(SealError::BufferTooSmall)?;
        // One atomic step takes the next number, so copies of this SA on other workers never
        // take the same one (a repeated nonce would expose the key stream).
        let seq = match self
            .seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| s.checked_add(1))
        {
            Ok(prev) => prev + 1,
            Err(_) => {
                self.drops += 1;
                return Err(SealError::SeqExhausted);
            }
        };
        esp::emit_prefix(pkt, self.spi, seq);
        let enc_end = total - ICV_LEN;
        esp::emit_trailer(
            &mut pkt[PREFIX_LEN + plain_len..],
            plain_len,
            NEXT_HEADER_UDP,
        );
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce(&self.material.salt, &seq.to_be_bytes()),
                aad(self.spi, seq),
                &mut pkt[PREFIX_LEN..enc_end],
            )
            // ring refuses only inputs over 64 GiB.
            .map_err(|_| SealError::BufferTooSmall)?;
        pkt[enc_end..].copy_from_slice(tag.as_ref());
        self.packets += 1;
        self.bytes += plain_len as u64;
        Ok(total)
    }
}

/// The receiving side of one SA.
pub struct InboundSa {
    spi: u32,
    vni: u32,
    key: LessSafeKey,
    material: SaKey,
    epoch: u64,
    created_unix: u64,
    window: ReplayWindow,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
}

impl InboundSa {
    pub fn new(spi: u32, vni: u32, material: SaKey, epoch: u64, created_unix: u64) -> InboundSa {
        InboundSa {
            spi,
            vni,
            key: aead_key(&material),
            material,
            epoch,
            created_unix,
            window: ReplayWindow::new(),
            packets: 0,
            bytes: 0,
            drops: 0,
        }
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The network this SA's key belongs to.
    pub fn vni(&self) -> u32 {
        self.vni
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn created_unix(&self) -> u64 {
        self.created_unix
    }

    pub fn material(&self) -> &SaKey {
        &self.material
    }

    /// The highest sequence number received (0: none yet).
    pub fn seq(&self) -> u64 {
        self.window.top()
    }

    /// Verifies and decrypts the ESP packet `buf` (SPI to ICV) in place. Returns where the
    /// plaintext (inner UDP, VXLAN, frame) is in `buf`, padding and trailer excluded. The replay
    /// window moves only when the ICV verified.
    pub fn open_in_place(&mut self, buf: &mut [u8]) -> Result<Range<usize>, OpenError> {
        let r = self.open(buf);
        if let Err(e) = r {
            if e != OpenError::Truncated {
                self.drops += 1;
            }
        }
        r
    }

    fn open(&mut self, buf: &mut [u8]) -> Result<Range<usize>, OpenError> {
        let (spi, seq, n) = {
            let p = esp::Packet::new_checked(&buf[..]).map_err(|_| OpenError::Truncated)?;
            let seq = self.window.infer_seq64(p.seq_low());
            (p.spi(), seq, nonce(&self.material.salt, p.iv()))
        };
        if !self.window.check(seq) {
            return Err(OpenError::Replay);
        }
        let plain_len = match self
            .key
            .open_in_place(n, aad(spi, seq), &mut buf[PREFIX_LEN..])
        {
            Ok(p) => p.len(),
            // A packet from behind the window is inferred to be in the next 2^32 subspace
            // (RFC 4303 A2.2) and fails here; call it what it most likely is.
            Err(_)
                if seq >> 32 > self.window.top() >> 32 && !self.window.check(seq - (1 << 32)) =>
            {
                return Err(OpenError::Replay)
            }
            Err(_) => return Err(OpenError::BadIcv),
        };
        self.window.commit(seq);
        let (data_len, next_header) = esp::parse_trailer(&buf[PREFIX_LEN..PREFIX_LEN + plain_len])
            .map_err(|_| OpenError::BadPadding)?;
        if next_header != NEXT_HEADER_UDP {
            return Err(OpenError::NotUdp);
        }
        self.packets += 1;
        self.bytes += data_len as u64;
        Ok(PREFIX_LEN..PREFIX_LEN + data_len)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn test_key() -> SaKey {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = i as u8;
        }
        SaKey {
            key,
            salt: [0xca, 0xfe, 0xba, 0xbe],
        }
    }

    /// Seals `plain` with `out` into a fresh buffer laid out as the driver does it; returns the
    /// ESP packet.
    pub(crate) fn seal(out: &mut OutboundSa, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut buf = vec![0u8; PREFIX_LEN + plain.len() + esp::OVERHEAD_MAX];
        buf[PREFIX_LEN..PREFIX_LEN + plain.len()].copy_from_slice(plain);
        let n = out.seal_in_place(&mut buf, 0, plain.len())?;
        buf.truncate(n);
        Ok(buf)
    }

    fn pair() -> (OutboundSa, InboundSa) {
        (
            OutboundSa::new(0x1001, test_key(), 0, 0),
            InboundSa::new(0x1001, 42, test_key(), 0, 0),
        )
    }

    #[test]
    fn round_trip_all_lengths() {
        let (mut out, mut inb) = pair();
        for len in 0..40 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut pkt = seal(&mut out, &plain).unwrap();
            assert_eq!(pkt.len(), esp::packet_len(len));
            assert_eq!((pkt.len() - PREFIX_LEN - ICV_LEN) % 4, 0);
            if len > 0 {
                assert_ne!(&pkt[PREFIX_LEN..PREFIX_LEN + len], &plain[..], "encrypted");
            }
            let r = inb.open_in_place(&mut pkt).unwrap();
            assert_eq!(&pkt[r], &plain[..]);
        }
        assert_eq!(out.seq(), 40);
        assert_eq!(inb.seq(), 40);
        assert_eq!((inb.packets, out.packets), (40, 40));
    }

    #[test]
    fn seal_leaves_prefix_and_room() {
        let mut out = OutboundSa::new(0x1001, test_key(), 0, 0);
        // Headroom in front of the ESP header (the driver's outer UDP) stays untouched.
        let mut buf = [0xaau8; 8 + 16 + 10 + esp::OVERHEAD_MAX];
        let n = out.seal_in_place(&mut buf, 8, 10).unwrap();
        assert_eq!(n, esp::packet_len(10));
        assert_eq!(&buf[..8], &[0xaa; 8]);
        assert_eq!(&buf[8..16], &[0, 0, 0x10, 0x01, 0, 0, 0, 1]);
        // No room for the ICV.
        let mut short = [0u8; 16 + 10 + 2 + 15];
        assert_eq!(
            out.seal_in_place(&mut short, 0, 10),
            Err(SealError::BufferTooSmall)
        );
        assert_eq!(out.seq(), 1, "a failed seal uses no sequence number");
    }

    #[test]
    fn tampering_fails_icv() {
        let (mut out, mut inb) = pair();
        let good = seal(&mut out, b"hello, vxlan").unwrap();
        for i in [0, 3, 4, 7, 8, 15, 16, 20, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x02;
            let e = inb.open_in_place(&mut bad).unwrap_err();
            // Changing the SPI or sequence changes the AAD; the IV changes the nonce.
            assert_eq!(e, OpenError::BadIcv, "byte {i}");
        }
        // The failures did not move the window: the genuine packet still opens.
        let mut ok = good.clone();
        assert!(inb.open_in_place(&mut ok).is_ok());
        assert_eq!(inb.drops, 9);
    }

    #[test]
    fn replay_is_refused() {
        let (mut out, mut inb) = pair();
        let pkt = seal(&mut out, b"once").unwrap();
        assert!(inb.open_in_place(&mut pkt.clone()).is_ok());
        assert_eq!(inb.open_in_place(&mut pkt.clone()), Err(OpenError::Replay));
    }

    #[test]
    fn reordering_and_window() {
        let (mut out, mut inb) = pair();
        let pkts: Vec<Vec<u8>> = (0..1100).map(|_| seal(&mut out, b"x").unwrap()).collect();
        assert!(inb.open_in_place(&mut pkts[1099].clone()).is_ok());
        // 1100 - 1024 = 76: seq 77 (index 76) is the oldest inside the window.
        assert!(inb.open_in_place(&mut pkts[76].clone()).is_ok());
        assert_eq!(
            inb.open_in_place(&mut pkts[76].clone()),
            Err(OpenError::Replay)
        );
        // Behind the window: inferred as the next 2^32 subspace (RFC 4303 A2.2), which fails the
        // ICV; reported as the replay it most likely is.
        assert_eq!(
            inb.open_in_place(&mut pkts[75].clone()),
            Err(OpenError::Replay)
        );
        assert_eq!(
            inb.open_in_place(&mut pkts[0].clone()),
            Err(OpenError::Replay)
        );
        assert!(inb.open_in_place(&mut pkts[500].clone()).is_ok());
    }

    #[test]
    fn esn_across_two_to_the_32() {
        let mut out = OutboundSa::new(0x1001, test_key(), 0, 0).starting_after((1 << 32) - 6);
        let mut inb = InboundSa::new(0x1001, 42, test_key(), 0, 0);
        let pkts: Vec<Vec<u8>> = (0..10).map(|_| seal(&mut out, b"esn").unwrap()).collect();
        assert_eq!(out.seq(), (1 << 32) + 4);
        // Seq-low on the wire wraps, the IV does not.
        assert_eq!(&pkts[5][4..16], &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        for i in [0, 2, 1, 5, 3, 4, 9, 6, 8, 7] {
            assert!(inb.open_in_place(&mut pkts[i].clone()).is_ok(), "{i}");
        }
        for p in &pkts {
            assert_eq!(inb.open_in_place(&mut p.clone()), Err(OpenError::Replay));
        }
        assert_eq!(inb.seq(), (1 << 32) + 4);
    }

    #[test]
    fn refuses_to_wrap() {
        let mut out = OutboundSa::new(0x1001, test_key(), 0, 0).starting_after(u64::MAX - 1);
        assert!(seal(&mut out, b"last").is_ok());
        assert_eq!(out.seq(), u64::MAX);
        assert_eq!(seal(&mut out, b"one more"), Err(SealError::SeqExhausted));
        assert_eq!(out.drops, 1);
    }

    #[test]
    fn trailer_errors_after_icv() {
        let (mut out, mut inb) = pair();
        // A sender that puts Next Header 4 (IPv4) in the trailer: authentic, but not ours.
        let plain = b"abcd";
        let mut buf = vec![0u8; 64];
        buf[16..20].copy_from_slice(plain);
        let n = out.seal_in_place(&mut buf, 0, 4).unwrap();
        // Re-seal by hand with a different Next Header using the same key material.
        let seq = 2u64;
        esp::emit_prefix(&mut buf, 0x1001, seq);
        buf[16..20].copy_from_slice(plain);
        esp::emit_trailer(&mut buf[20..], 4, 4);
        let key = aead_key(&test_key());
        let tag = key
            .seal_in_place_separate_tag(
                nonce(&test_key().salt, &seq.to_be_bytes()),
                aad(0x1001, seq),
                &mut buf[16..n - 16],
            )
            .unwrap();
        buf[n - 16..n].copy_from_slice(tag.as_ref());
        let e = inb.open_in_place(&mut buf[..n]).unwrap_err();
        assert_eq!(e, OpenError::NotUdp);
        assert!(e.authenticated());
        assert!(!OpenError::BadIcv.authenticated());
    }
}
