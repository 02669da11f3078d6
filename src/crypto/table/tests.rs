//! Tests of `EspTable` (crate::crypto::table), split from it for size.

use super::*;

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const SECRET: [u8; 32] = [9; 32];
const IVL: u64 = 3600;
/// Start of an epoch whose low 8 bits are not 0.
const T0: u64 = 486_111 * IVL;

fn net(vni: u32, secret: [u8; 32], peers: &[Ipv4Addr]) -> EspNetwork {
    EspNetwork {
        vni,
        secret,
        peers: peers.to_vec(),
    }
}

fn table(local: Ipv4Addr, boot: u32, networks: Vec<EspNetwork>) -> EspTable {
    EspTable::new(EspConfig {
        local_ip: local,
        boot,
        rekey_interval_secs: IVL,
        networks,
    })
    .unwrap()
}

/// A and B on network 42; B's table.
fn pair(boot_a: u32) -> (EspTable, EspTable) {
    (
        table(A, boot_a, vec![net(42, SECRET, &[B])]),
        table(B, 1, vec![net(42, SECRET, &[A])]),
    )
}

/// Inner UDP / VXLAN(vni) / a 20-byte frame.
fn plain(vni: u32) -> Vec<u8> {
    let mut p = vec![0u8; 8 + 8 + 20];
    p[0..2].copy_from_slice(&49152u16.to_be_bytes());
    p[2..4].copy_from_slice(&4789u16.to_be_bytes());
    let len = p.len() as u16;
    p[4..6].copy_from_slice(&len.to_be_bytes());
    vxlan::emit(&mut p[8..16], vni);
    for (i, b) in p[16..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn seal(t: &mut EspTable, now: u64, vni: u32, peer: Ipv4Addr) -> Result<Vec<u8>, SealDrop> {
    seal_plain(t, now, vni, peer, &plain(vni))
}

fn seal_plain(
    t: &mut EspTable,
    now: u64,
    vni: u32,
    peer: Ipv4Addr,
    p: &[u8],
) -> Result<Vec<u8>, SealDrop> {
    let mut buf = vec![0u8; 8 + esp::PREFIX_LEN + p.len() + esp::OVERHEAD_MAX];
    let n = t.seal_from(now, vni, peer, 0, p, &mut buf, 8)?;
    Ok(buf[8..8 + n].to_vec())
}

fn open(t: &mut EspTable, now: u64, src: Ipv4Addr, pkt: &[u8]) -> Result<u32, EspDrop> {
    open_at(t, now, now * 1000, src, pkt)
}

fn open_at(
    t: &mut EspTable,
    now: u64,
    mono_ms: u64,
    src: Ipv4Addr,
    pkt: &[u8],
) -> Result<u32, EspDrop> {
    let mut buf = pkt.to_vec();
    let (vni, r) = t.open(now, mono_ms, src, &mut buf)?;
    assert_eq!(buf[r].to_vec(), plain(vni));
    Ok(vni)
}

fn spi_of(pkt: &[u8]) -> u32 {
    esp::Packet::new_checked(pkt).unwrap().spi()
}

fn inbound(t: &EspTable, now: u64) -> Vec<SaInfo> {
    t.sa_list(now)
        .into_iter()
        .filter(|s| s.direction == "in")
        .collect()
}

fn seq_of(pkt: &[u8]) -> u32 {
    u32::from_be_bytes(pkt[4..8].try_into().unwrap())
}

#[test]
fn copies_on_two_workers_never_send_the_same_sequence_number() {
    let (mut a0, mut b) = pair(1);
    let mut a1 = a0.replica();
    let mut seen = std::collections::BTreeSet::new();
    // The two workers interleave; every packet carries a fresh number under one SPI, and
    // B (one replay window) takes every one.
    for i in 0..50 {
        let t = if i % 3 == 0 { &mut a1 } else { &mut a0 };
        let p = seal(t, T0, 42, B).unwrap();
        assert!(
            seen.insert(seq_of(&p)),
            "sequence number {} used twice",
            seq_of(&p)
        );
        assert_eq!(open(&mut b, T0, A, &p), Ok(42));
    }
    assert_eq!(seen.len(), 50);
    assert_eq!(*seen.iter().last().unwrap(), 50);
    let spis: std::collections::BTreeSet<u32> = [&a0, &a1]
        .iter()
        .flat_map(|t| t.sa_list(T0))
        .filter(|s| s.direction == "out")
        .map(|s| s.spi)
        .collect();
    assert_eq!(spis.len(), 1, "one SA, one SPI, whichever worker sends");
    // The next epoch: a new SA, and the copies again share its count.
    let next = T0 + IVL;
    let p0 = seal(&mut a0, next, 42, B).unwrap();
    let p1 = seal(&mut a1, next, 42, B).unwrap();
    assert_ne!(spi_of(&p0), *spis.iter().next().unwrap());
    assert_eq!(spi_of(&p0), spi_of(&p1));
    assert_eq!((seq_of(&p0), seq_of(&p1)), (1, 2));
}

#[test]
fn round_trip_and_sa_list() {
    let (mut a, mut b) = pair(1);
    for _ in 0..3 {
        let pkt = seal(&mut a, T0, 42, B).unwrap();
        assert_eq!(open(&mut b, T0 + 1, A, &pkt), Ok(42));
    }
    let out = a.sa_list(T0 + 10);
    let inb = b.sa_list(T0 + 10);
    assert_eq!(out.len(), 1);
    assert_eq!(inb.len(), 1);
    let (o, i) = (&out[0], &inb[0]);
    assert_eq!((o.direction, o.src, o.dst, o.peer), ("out", A, B, B));
    assert_eq!((i.direction, i.src, i.dst, i.peer), ("in", A, B, A));
    assert_eq!(o.spi, keys::spi(486_111, 0, 1, 42));
    assert_eq!((o.spi, o.seq, o.packets), (i.spi, 3, 3));
    assert_eq!((i.seq, i.packets, i.bytes), (3, 3, 3 * 36));
    assert_eq!((o.age_secs, i.age_secs), (10, 9));
    assert_eq!(o.key_hex.len(), 72);
    assert_eq!(o.key_hex, i.key_hex);
    assert_eq!(o.wireshark_uat(), i.wireshark_uat());
    assert!(o
        .wireshark_uat()
        .starts_with("\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0x"));
    assert!(serde_json::to_string(o)
        .unwrap()
        .contains("\"direction\":\"out\""));
}

#[test]
fn replay_tamper_and_first_packet_forgery() {
    let (mut a, mut b) = pair(1);
    let first = seal(&mut a, T0, 42, B).unwrap();
    let mut forged = first.clone();
    forged[20] ^= 1;
    // A forged first packet of a new SPI installs nothing.
    assert_eq!(open(&mut b, T0, A, &forged), Err(EspDrop::BadIcv));
    assert!(inbound(&b, T0).is_empty());
    assert_eq!(open(&mut b, T0, A, &first), Ok(42));
    assert_eq!(open(&mut b, T0, A, &first), Err(EspDrop::Replay));
    let second = seal(&mut a, T0, 42, B).unwrap();
    let mut bad = second.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    assert_eq!(open(&mut b, T0, A, &bad), Err(EspDrop::BadIcv));
    assert_eq!(open(&mut b, T0, A, &second), Ok(42));
    assert_eq!(inbound(&b, T0)[0].drops, 2);
    assert_eq!(open(&mut b, T0, A, &second[..20]), Err(EspDrop::Truncated));
}

#[test]
fn key_of_one_network_cannot_inject_into_another() {
    let mut a = table(A, 1, vec![net(42, SECRET, &[B]), net(43, [5; 32], &[B])]);
    let mut b = table(B, 1, vec![net(42, SECRET, &[A]), net(43, [5; 32], &[A])]);
    let pkt = seal_plain(&mut a, T0, 42, B, &plain(43)).unwrap();
    let mut buf = pkt.clone();
    assert_eq!(b.open(T0, 0, A, &mut buf).unwrap_err(), EspDrop::WrongVni);
    // Authentic, so the SA was installed and counts the drop.
    assert_eq!(inbound(&b, T0)[0].drops, 1);
    let ok = seal(&mut a, T0, 43, B).unwrap();
    assert_eq!(open(&mut b, T0, A, &ok), Ok(43));
}

#[test]
fn seal_only_for_encrypted_peers() {
    let (mut a, _) = pair(1);
    assert_eq!(seal(&mut a, T0, 7, B), Err(SealDrop::NotEncrypted));
    assert_eq!(seal(&mut a, T0, 42, C), Err(SealDrop::NotEncrypted));
    assert_eq!(seal(&mut a, T0, 42 + 4096, B), Err(SealDrop::NotEncrypted));
    assert!(a.is_encrypted(42));
    assert!(!a.is_encrypted(7));
    let mut small = [0u8; 40];
    assert_eq!(
        a.seal(T0, 42, B, 0, &mut small, 0, 30),
        Err(SealDrop::BufferTooSmall)
    );
}

#[test]
fn rotation_with_overlap() {
    let (mut a, mut b) = pair(1);
    let old1 = seal(&mut a, T0, 42, B).unwrap();
    let old2 = seal(&mut a, T0 + IVL - 1, 42, B).unwrap();
    let new1 = seal(&mut a, T0 + IVL, 42, B).unwrap();
    let (s_old, s_new) = (spi_of(&old1), spi_of(&new1));
    assert_eq!(spi_of(&old2), s_old);
    assert_ne!(s_old, s_new);
    assert_eq!(keys::split_spi(s_new).epoch_low, ((486_111 + 1) % 16) as u8);
    // The new SA starts at 1.
    assert_eq!(esp::Packet::new_checked(&new1[..]).unwrap().seq_low(), 1);
    // B is already in the next epoch and still takes the old SA's stragglers.
    let t = T0 + IVL + 5;
    assert_eq!(open(&mut b, t, A, &new1), Ok(42));
    assert_eq!(open(&mut b, t, A, &old1), Ok(42));
    assert_eq!(open(&mut b, t, A, &old2), Ok(42));
    assert_eq!(inbound(&b, t).len(), 2);
    // Two epochs later the old SA is dead, swept or not.
    let late = seal(&mut a, T0 + IVL - 1, 42, B).unwrap();
    assert_eq!(spi_of(&late), s_new, "sending never goes back an epoch");
    let t2 = T0 + 2 * IVL;
    let old3 = {
        let mut fresh_a = table(A, 1, vec![net(42, SECRET, &[B])]);
        seal(&mut fresh_a, T0, 42, B).unwrap();
        seal(&mut fresh_a, T0, 42, B).unwrap();
        seal(&mut fresh_a, T0, 42, B).unwrap()
    };
    assert_eq!(spi_of(&old3), s_old);
    assert_eq!(open(&mut b, t2, A, &old3), Err(EspDrop::UnknownSpi));
    b.expire(t2);
    assert_eq!(
        inbound(&b, t2).iter().map(|s| s.spi).collect::<Vec<_>>(),
        vec![s_new]
    );
    assert_eq!(open(&mut b, t2, A, &old3), Err(EspDrop::UnknownSpi));
    // e-1 (as seen from t2) still works.
    let n2 = seal(&mut a, T0 + IVL, 42, B).unwrap();
    assert_eq!(open(&mut b, t2, A, &n2), Ok(42));
}

#[test]
fn clocks_may_differ_by_one_interval() {
    let (mut a, mut b) = pair(1);
    let ahead = seal(&mut a, T0 + IVL, 42, B).unwrap();
    assert_eq!(open(&mut b, T0, A, &ahead), Ok(42));
    let (mut a, mut b) = pair(1);
    let far = seal(&mut a, T0 + 2 * IVL, 42, B).unwrap();
    assert_eq!(open(&mut b, T0, A, &far), Err(EspDrop::UnknownSpi));
    let behind = seal(&mut a, T0, 42, B).unwrap();
    let (mut a2, _) = pair(1);
    let old = seal(&mut a2, T0 - 2 * IVL, 42, B).unwrap();
    assert_eq!(open(&mut b, T0, A, &old), Err(EspDrop::UnknownSpi));
    // `a` already sent in T0 + 2 intervals: its "T0" packet uses that SA.
    assert_eq!(spi_of(&behind), spi_of(&far));
}

#[test]
fn restart_uses_new_spi_and_key() {
    let (mut a1, mut b) = pair(1);
    let mut a2 = table(A, 2, vec![net(42, SECRET, &[B])]);
    let p1 = seal(&mut a1, T0, 42, B).unwrap();
    let p2 = seal(&mut a2, T0, 42, B).unwrap();
    assert_ne!(spi_of(&p1), spi_of(&p2));
    let (k1, k2) = (&a1.sa_list(T0)[0].key_hex, &a2.sa_list(T0)[0].key_hex);
    assert_ne!(k1, k2);
    // Same sequence number 1, different key: no nonce reuse.
    assert_eq!(&p1[4..16], &p2[4..16]);
    assert_ne!(&p1[16..], &p2[16..]);
    assert_eq!(open(&mut b, T0, A, &p1), Ok(42));
    assert_eq!(open(&mut b, T0, A, &p2), Ok(42));
    // Boot counters 4095 apart share the SPI field (documented limit), neighbours never do.
    for boot in 1..5000 {
        assert_ne!(keys::spi(9, 0, boot, 42), keys::spi(9, 0, boot + 1, 42));
    }
}

/// xorshift, so the garbage is the same on every run.
fn garbage(state: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state as u8
        })
        .collect()
}

#[test]
fn garbage_installs_nothing() {
    let (_, mut b) = pair(1);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let valid_spi = keys::spi(486_111, 0, 7, 42);
    for i in 0..2000u64 {
        let mut pkt = garbage(&mut rng, (i % 120) as usize);
        if i % 2 == 0 && pkt.len() >= 4 {
            pkt[..4].copy_from_slice(&valid_spi.to_be_bytes());
        }
        let src = if i % 3 == 0 { C } else { A };
        let r = open_at(&mut b, T0, i * 100, src, &pkt);
        assert!(
            matches!(
                r,
                Err(EspDrop::Truncated
                    | EspDrop::UnknownSpi
                    | EspDrop::BadIcv
                    | EspDrop::RateLimited
                    | EspDrop::Replay)
            ),
            "{r:?}"
        );
        if src == C {
            assert!(r != Err(EspDrop::BadIcv), "no derivation for non-peers");
        }
    }
    assert!(b.sa_list(T0).is_empty());
}

#[test]
fn unknown_spi_derivations_are_rate_limited() {
    let (_, mut b) = pair(1);
    let mut rng = 1u64;
    let spi = keys::spi(486_111, 0, 7, 42);
    let forged = |rng: &mut u64| {
        let mut p = garbage(rng, 80);
        p[..4].copy_from_slice(&spi.to_be_bytes());
        p[4..8].copy_from_slice(&1u32.to_be_bytes());
        p
    };
    let mono = 5_000_000;
    for _ in 0..RATE_LIMIT_PER_SEC {
        let p = forged(&mut rng);
        assert_eq!(open_at(&mut b, T0, mono, A, &p), Err(EspDrop::BadIcv));
    }
    let p = forged(&mut rng);
    assert_eq!(open_at(&mut b, T0, mono, A, &p), Err(EspDrop::RateLimited));
    // Half a second refills half the bucket.
    for _ in 0..RATE_LIMIT_PER_SEC / 2 {
        let p = forged(&mut rng);
        assert_eq!(open_at(&mut b, T0, mono + 500, A, &p), Err(EspDrop::BadIcv));
    }
    let p = forged(&mut rng);
    assert_eq!(
        open_at(&mut b, T0, mono + 500, A, &p),
        Err(EspDrop::RateLimited)
    );
    // The limit is per peer, and genuine traffic of a known SA is never limited.
    let mut a = table(A, 1, vec![net(42, SECRET, &[B])]);
    let genuine = seal(&mut a, T0, 42, B).unwrap();
    assert_eq!(open_at(&mut b, T0, mono + 10_000, A, &genuine), Ok(42));
    for _ in 0..1000 {
        let p = seal(&mut a, T0, 42, B).unwrap();
        assert_eq!(open_at(&mut b, T0, mono + 10_000, A, &p), Ok(42));
    }
}

#[test]
fn at_most_four_sas_per_peer_and_network_and_evicted_stay_dead() {
    let (_, mut b) = pair(1);
    let mut firsts = Vec::new();
    let mut senders = Vec::new();
    for boot in 1..=5 {
        let mut a = table(A, boot, vec![net(42, SECRET, &[B])]);
        let p = seal(&mut a, T0, 42, B).unwrap();
        assert_eq!(open(&mut b, T0, A, &p), Ok(42), "boot {boot}");
        firsts.push(p);
        senders.push(a);
    }
    let spis: Vec<u32> = inbound(&b, T0).iter().map(|s| s.spi).collect();
    assert_eq!(spis.len(), MAX_INBOUND_PER_PEER_NET);
    let evicted = spi_of(&firsts[0]);
    assert!(!spis.contains(&evicted), "the oldest went");
    // Replaying the evicted SA's packets cannot bring it back with a fresh window.
    assert_eq!(open(&mut b, T0, A, &firsts[0]), Err(EspDrop::UnknownSpi));
    let newer = seal(&mut senders[0], T0, 42, B).unwrap();
    assert_eq!(open(&mut b, T0, A, &newer), Err(EspDrop::UnknownSpi));
    assert_eq!(inbound(&b, T0).len(), MAX_INBOUND_PER_PEER_NET);
    // The tombstone goes when the epoch does.
    b.expire(T0 + 2 * IVL);
    assert!(b.retired.is_empty());
    assert!(inbound(&b, T0 + 2 * IVL).is_empty());
}

#[test]
fn clock_going_back_never_reuses_a_nonce() {
    let (mut a, mut b) = pair(1);
    let p1 = seal(&mut a, T0 + IVL, 42, B).unwrap();
    let p2 = seal(&mut a, T0, 42, B).unwrap();
    assert_eq!(spi_of(&p1), spi_of(&p2));
    assert_eq!(&p2[4..8], &2u32.to_be_bytes());
    a.expire(T0);
    let p3 = seal(&mut a, T0, 42, B).unwrap();
    assert_eq!(
        (spi_of(&p3), &p3[4..8]),
        (spi_of(&p1), &3u32.to_be_bytes()[..])
    );
    for p in [&p1, &p2, &p3] {
        assert_eq!(open(&mut b, T0 + IVL, A, p), Ok(42));
    }
}

#[test]
fn reconfiguration_keeps_counters() {
    let (mut a, mut b) = pair(1);
    for _ in 0..3 {
        let p = seal(&mut a, T0, 42, B).unwrap();
        assert_eq!(open(&mut b, T0, A, &p), Ok(42));
    }
    let key_before = a.sa_list(T0)[0].key_hex.clone();
    // New secret on both ends: same SPI, new key, the counter goes on.
    a.set_networks(vec![net(42, [1; 32], &[B])]).unwrap();
    b.set_networks(vec![net(42, [1; 32], &[A])]).unwrap();
    assert!(inbound(&b, T0).is_empty(), "old-key SAs dropped");
    let p = seal(&mut a, T0, 42, B).unwrap();
    assert_eq!(&p[4..8], &4u32.to_be_bytes());
    assert_ne!(a.sa_list(T0)[0].key_hex, key_before);
    assert_eq!(open(&mut b, T0, A, &p), Ok(42));
    // Network removed and re-added within the epoch: still no restart at 1.
    a.set_networks(vec![]).unwrap();
    assert_eq!(seal(&mut a, T0, 42, B), Err(SealDrop::NotEncrypted));
    a.set_networks(vec![net(42, [1; 32], &[B])]).unwrap();
    let p = seal(&mut a, T0, 42, B).unwrap();
    assert_eq!(&p[4..8], &5u32.to_be_bytes());
    assert_eq!(open(&mut b, T0, A, &p), Ok(42));
    // Peer removed from B's network: its SAs go, and it cannot create new ones.
    b.set_networks(vec![net(42, [1; 32], &[C])]).unwrap();
    assert!(inbound(&b, T0).is_empty());
    let p = seal(&mut a, T0, 42, B).unwrap();
    assert_eq!(open(&mut b, T0, A, &p), Err(EspDrop::UnknownSpi));
}

#[test]
fn expire_drops_outbound_of_past_epochs() {
    let (mut a, _) = pair(1);
    seal(&mut a, T0, 42, B).unwrap();
    a.expire(T0 + IVL - 1);
    assert_eq!(a.sa_list(T0).len(), 1);
    a.expire(T0 + IVL);
    assert!(a.sa_list(T0).is_empty());
}

#[test]
fn config_errors() {
    let cfg = |boot, interval, networks| EspConfig {
        local_ip: A,
        boot,
        rekey_interval_secs: interval,
        networks,
    };
    assert_eq!(
        EspTable::new(cfg(0, IVL, vec![])).err(),
        Some(EspConfigError::ZeroBoot)
    );
    assert_eq!(
        EspTable::new(cfg(1, 0, vec![])).err(),
        Some(EspConfigError::ZeroInterval)
    );
    let e = EspTable::new(cfg(
        1,
        IVL,
        vec![net(42, SECRET, &[B]), net(42 + 4096, SECRET, &[B])],
    ))
    .err()
    .unwrap();
    assert_eq!(e, EspConfigError::NetIdCollision { a: 42, b: 4138 });
    assert!(e.to_string().contains("4138"));
}

#[test]
fn drop_names() {
    let mut names: Vec<&str> = EspDrop::ALL.iter().map(|d| d.name()).collect();
    assert!(names.iter().all(|n| n.starts_with("esp_")));
    assert!(EspDrop::ALL.iter().all(|d| !d.help().is_empty()));
    names.sort();
    names.dedup();
    assert_eq!(names.len(), EspDrop::ALL.len());
}

fn seal_lane(t: &mut EspTable, now: u64, lane: u8) -> Vec<u8> {
    let p = plain(42);
    let mut buf = vec![0u8; 8 + esp::PREFIX_LEN + p.len() + esp::OVERHEAD_MAX];
    let n = t.seal_from(now, 42, B, lane, &p, &mut buf, 8).unwrap();
    buf[8..8 + n].to_vec()
}

#[test]
fn lanes_are_separate_sas_with_their_own_keys_and_sequence_numbers() {
    let (mut a, mut b) = pair(1);
    let l0 = seal_lane(&mut a, T0, 0);
    let l5 = seal_lane(&mut a, T0, 5);
    let l5b = seal_lane(&mut a, T0, 5 + keys::LANES);
    assert_ne!(spi_of(&l0), spi_of(&l5));
    assert_eq!(spi_of(&l5), spi_of(&l5b), "lanes are taken mod LANES");
    assert_eq!(keys::lane_of_spi(spi_of(&l5)), 5);
    assert_eq!((seq_of(&l0), seq_of(&l5), seq_of(&l5b)), (1, 1, 2));
    let out: Vec<SaInfo> = a
        .sa_list(T0)
        .into_iter()
        .filter(|s| s.direction == "out")
        .collect();
    assert_eq!(out.len(), 2);
    assert_ne!(out[0].key_hex, out[1].key_hex, "one key per lane");
    for p in [&l0, &l5, &l5b] {
        assert_eq!(open(&mut b, T0, A, p), Ok(42));
        assert_eq!(open(&mut b, T0, A, p), Err(EspDrop::Replay));
    }
    assert_eq!(inbound(&b, T0).len(), 2);
}

#[test]
fn two_receivers_open_only_their_lanes_and_a_replay_meets_the_same_window() {
    let (mut a, b) = pair(1);
    let mut rx = [b.replica(), b.replica()];
    rx[0].set_receiver(0, 2);
    rx[1].set_receiver(1, 2);
    // What the kernel's steering program does: lane mod receivers.
    let owner = |p: &[u8]| usize::from(keys::lane_of_spi(spi_of(p)) % 2);
    let mut sent = Vec::new();
    for round in 0..3 {
        for lane in 0..keys::LANES {
            let p = seal_lane(&mut a, T0, lane);
            assert_eq!(seq_of(&p), round + 1);
            assert_eq!(open(&mut rx[owner(&p)], T0, A, &p), Ok(42));
            sent.push(p);
        }
    }
    for (k, t) in rx.iter().enumerate() {
        let lanes: Vec<u8> = inbound(t, T0)
            .iter()
            .map(|s| keys::lane_of_spi(s.spi))
            .collect();
        assert_eq!(lanes.len(), usize::from(keys::LANES) / 2, "{lanes:?}");
        assert!(lanes.iter().all(|l| usize::from(l % 2) == k), "{lanes:?}");
        assert!(inbound(t, T0).iter().all(|s| s.packets == 3));
    }
    for p in &sent {
        // Steered by SPI, a replay reaches the window that saw the original...
        assert_eq!(open(&mut rx[owner(p)], T0, A, p), Err(EspDrop::Replay));
        // ...and were it to reach the other worker, that one opens nothing of the lane.
        assert_eq!(
            open(&mut rx[1 - owner(p)], T0, A, p),
            Err(EspDrop::Misrouted)
        );
    }
    assert_eq!(inbound(&rx[0], T0).len() + inbound(&rx[1], T0).len(), 16);
    // One receiver (the default) opens every lane.
    let (mut a, mut b) = pair(1);
    for lane in 0..keys::LANES {
        let p = seal_lane(&mut a, T0, lane);
        assert_eq!(open(&mut b, T0, A, &p), Ok(42));
    }
}

#[test]
fn the_cap_on_inbound_sas_is_per_lane() {
    let (_, mut b) = pair(1);
    for boot in 1..=3 {
        let mut a = table(A, boot, vec![net(42, SECRET, &[B])]);
        for lane in 0..keys::LANES {
            let p = seal_lane(&mut a, T0, lane);
            assert_eq!(open(&mut b, T0, A, &p), Ok(42), "boot {boot} lane {lane}");
        }
    }
    assert_eq!(inbound(&b, T0).len(), 3 * usize::from(keys::LANES));
}
