#!/usr/bin/env python3
"""What the kernel takes to remove N TAP devices, one per namespace, as vswitchd makes them:
closed one after the other or by K threads at once. Not vswitch: the figures behind
src/dataplane/reaper.rs (see benches/README.md).
  sudo python3 benches/tap_close.py N MODE [up]
MODE: close:K (the last fd closed, K threads at once) or dellink:K (`ip link del`, K at once);
`up`: the device is up with an IPv4 address and lo up, as an attached container's."""
import ctypes, fcntl, os, struct, subprocess, sys, tempfile, threading, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454ca
TUNSETPERSIST = 0x400454cb
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
P = f"skb{os.getpid()}"
def ns(i): return f"{P}c{i}"
def batch(lines):
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    subprocess.run(["ip", "-force", "-batch", f.name], check=False)
    os.unlink(f.name)
def setns(path):
    fd = os.open(path, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0: raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)
def main():
    n = int(sys.argv[1]); mode = sys.argv[2]; up = len(sys.argv) > 3 and sys.argv[3] == "up"
    batch([f"netns add {ns(i)}" for i in range(n)])
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    fds = []
    try:
        t = time.monotonic()
        for i in range(n):
            setns(f"/var/run/netns/{ns(i)}")
            fd = os.open("/dev/net/tun", os.O_RDWR)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"eth0", IFF_TAP | IFF_NO_PI))
            fds.append(fd)
        libc.setns(home, CLONE_NEWNET)
        if up:
            for i in range(n):
                subprocess.run(["ip", "-n", ns(i), "link", "set", "eth0", "up"], check=True)
                subprocess.run(["ip", "-n", ns(i), "addr", "add", "10.1.0.2/16", "dev", "eth0"], check=True)
                subprocess.run(["ip", "-n", ns(i), "link", "set", "lo", "up"], check=True)
        print(f"# made {n} in {time.monotonic()-t:.1f}s, load {open('/proc/loadavg').read().split()[:3]}", flush=True)
        kind, _, k = mode.partition(":")
        k = int(k or 1)
        lat = [0.0] * n
        def work(idx):
            for i in idx:
                s = time.monotonic()
                if kind == "close":
                    os.close(fds[i])
                else:
                    subprocess.run(["ip", "-n", ns(i), "link", "del", "eth0"], check=True)
                lat[i] = time.monotonic() - s
        t = time.monotonic()
        ths = [threading.Thread(target=work, args=(range(j, n, k),)) for j in range(k)]
        for th in ths: th.start()
        for th in ths: th.join()
        total = time.monotonic() - t
        lat.sort()
        print(f"{mode} up={up} n={n}: total {total:.2f}s, {1000*total/n:.1f} ms/dev, per-op p50 {1000*lat[n//2]:.1f} ms p99 {1000*lat[int(n*.99)]:.1f} ms")
    finally:
        libc.setns(home, CLONE_NEWNET)
        batch([f"netns del {ns(i)}" for i in range(n)])
main()
