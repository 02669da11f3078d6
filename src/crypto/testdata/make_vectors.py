#!/usr/bin/env python3
"""Known-answer vectors for vswitch's ESP, from implementations that are not ours.

Keys come from the HKDF of the `cryptography` package, ESP packets from scapy's
SecurityAssociation (AES-GCM, RFC 4106, with extended sequence numbers). The Rust tests in
src/crypto/vectors.rs check that vswitch derives the same SPI and key, seals to the same bytes
and opens scapy's packets.

    pip install scapy cryptography
    python3 src/crypto/testdata/make_vectors.py > src/crypto/testdata/esp_vectors.txt
    python3 src/crypto/testdata/make_vectors.py --tshark   # also: tshark decrypts them

With --tshark the packets are written to a pcap (outer IPv4 / UDP 4500 / ESP) and tshark, given
the Wireshark UAT line of each SA, must decrypt them down to the VXLAN VNI and the inner frame.
"""

import ipaddress
import struct
import subprocess
import sys
import tempfile

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from scapy.all import ARP, IP, UDP, Ether, raw, wrpcap
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.vxlan import VXLAN

SECRET = bytes(range(0x40, 0x60))
VNI = 42
SRC = "192.0.2.1"
DST = "192.0.2.2"
REKEY = 3600
UNIX = 1_750_000_000  # epoch 486111, low 4 bits 0xf
BOOT = 3
# The SPI layout is lane (4) | epoch mod 16 (4) | boot (12) | vni mod 4096 (12); lane 13 keeps
# the SPI these vectors were first made with (0xdf00302a, under the old epoch-mod-256 layout).
LANE = 13
FLOW_PORT = 49152


def spi_for(epoch, boot, vni, lane=LANE):
    return (lane % 16) << 28 | (epoch % 16) << 24 | ((boot - 1) % 4095 + 1) << 12 | (vni % 4096)


def derive(secret, vni, src, dst, spi, epoch):
    info = (
        struct.pack("!I", vni)
        + ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!IQ", spi, epoch)
    )
    return HKDF(algorithm=hashes.SHA256(), length=36, salt=b"vswitch-esp-v1", info=info).derive(secret)


def plaintext():
    """Inner UDP (checksum 0) / VXLAN / an ARP request: what vswitch encrypts."""
    frame = Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc="02:00:00:00:00:01", psrc="10.0.9.1", pdst="10.0.9.2"
    )
    return UDP(sport=FLOW_PORT, dport=4789, chksum=0) / VXLAN(flags=0x08, vni=VNI) / frame


def uat_line(src, dst, spi, keymat):
    return (
        f'"IPv4","{src}","{dst}","0x{spi:08x}","AES-GCM with 16 octet ICV [RFC4106]",'
        f'"0x{keymat.hex()}","NULL",""'
    )


def vector(name, seq):
    epoch = UNIX // REKEY
    spi = spi_for(epoch, BOOT, VNI)
    keymat = derive(SECRET, VNI, SRC, DST, spi, epoch)
    sa = SecurityAssociation(
        ESP,
        spi=spi,
        crypt_algo="AES-GCM",
        crypt_key=keymat,
        crypt_icv_size=16,
        nat_t_header=UDP(sport=FLOW_PORT, dport=4500),
        esn_en=True,
        esn=seq >> 32,
    )
    inner = plaintext()
    pkt = sa.encrypt(
        IP(src=SRC, dst=DST) / inner,
        seq_num=seq & 0xFFFFFFFF,
        iv=struct.pack("!Q", seq),
    )
    esp = raw(pkt[UDP].payload)
    # Scapy must read its own packet back.
    back = sa.decrypt(IP(raw(pkt)))
    assert raw(back[UDP]) == raw(inner), "scapy round trip"
    return {
        "name": name,
        "secret": SECRET.hex(),
        "vni": VNI,
        "src": SRC,
        "dst": DST,
        "rekey_interval": REKEY,
        "unix": UNIX,
        "epoch": epoch,
        "boot": BOOT,
        "spi": f"{spi:08x}",
        "keymat": keymat.hex(),
        "seq": seq,
        "plaintext": raw(inner).hex(),
        "esp": esp.hex(),
        "uat": uat_line(SRC, DST, spi, keymat),
    }, pkt


def tshark_check(vectors):
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        for v, pkt in vectors:
            wrpcap(f.name, [Ether() / pkt])
            out = subprocess.run(
                [
                    "tshark", "-r", f.name,
                    "-o", "esp.enable_encryption_decode:TRUE",
                    "-o", f"uat:esp_sa:{v['uat']}",
                    "-T", "fields", "-e", "esp.spi", "-e", "vxlan.vni", "-e", "arp.dst.proto_ipv4",
                ],
                check=True, capture_output=True, text=True,
            ).stdout.split()
            print(f"tshark {v['name']}: {out}", file=sys.stderr)
            assert out == [f"0x{v['spi']}", str(VNI), "10.0.9.2"], out


def main():
    vectors = [vector("first", 1), vector("esn", (1 << 32) + 5)]
    if "--tshark" in sys.argv:
        tshark_check(vectors)
        return
    import cryptography
    import scapy

    print(f"# make_vectors.py: scapy {scapy.VERSION}, cryptography {cryptography.__version__}")
    for v, _ in vectors:
        print()
        for k, val in v.items():
            print(f"{k}={val}")


if __name__ == "__main__":
    main()
