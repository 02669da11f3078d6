#!/usr/bin/env python3
"""Many containers on one host: attach N network namespaces to one vswitchd network, measure,
detach them all. Driven by benches/scale.sh (see benches/README.md); a benchmark, not a test.

Everything runs in namespaces this script makes (prefix vsc<PID>): a host namespace for
vswitchd (its underlay address on a dummy link there) and one namespace per container. The
root namespace gets nothing. Traffic is pings between containers, bounded in count and time.
vswitchd is started with the common default soft limit of 1024 open files (`ulimit -n`), so
the figures show what a host that never raised it gets. Everything made is removed at the end,
also on failure or Ctrl-C; only the vswitchd this script started is stopped, by its pid.
"""

import argparse
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PREFIX = f"vsc{os.getpid()}"
HOST_NS = f"{PREFIX}h"
NETNS_DIR = "/var/run/netns"
TICK = os.sysconf("SC_CLK_TCK")


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, **kw)


def q(p, pct):
    """The pct-th percentile of the sorted list p (nearest rank)."""
    if not p:
        return float("nan")
    k = max(0, min(len(p) - 1, int(round(pct / 100.0 * len(p) + 0.5)) - 1))
    return p[k]


class Daemon:
    def __init__(self, d, binary, ctl, workers, nofile):
        self.dir, self.ctl = d, ctl
        self.sock = os.path.join(d, "vswitchd.sock")
        cfg = os.path.join(d, "node.toml")
        with open(cfg, "w") as f:
            f.write(f"""[node]
name = "scale"
underlay_ip = "192.0.2.1"
control_socket = "{self.sock}"
state_dir = "{d}/state"
workers = {workers}
fdb_max_entries = 65536

[[network]]
name = "blue"
vni = 42
subnet = "10.16.0.0/18"
""")
        self.log = open(os.path.join(d, "vswitchd.log"), "w")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "vswitch=warn"))
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={NETNS_DIR}/{HOST_NS}", "--", "prlimit",
             f"--nofile={nofile}:", "--", binary, "--config", cfg],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"vswitchd exited: see {self.log.name}")
            if os.path.exists(self.sock) and self.pid() is not None:
                r = self.call("show", "networks", check=False, capture_output=True)
                if r.returncode == 0:
                    return
            time.sleep(0.1)
        raise SystemExit("vswitchd did not come up within 20 s")

    def pid(self):
        """vswitchd's own pid: nsenter and prlimit exec it, so it is the child's."""
        return self.proc.pid

    def call(self, *args, **kw):
        return sh(self.ctl, "--socket", self.sock, *args, **kw)

    def rss_kib(self):
        with open(f"/proc/{self.pid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid()}/fd"))

    def cpu_seconds(self):
        with open(f"/proc/{self.pid()}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def nofile(self):
        with open(f"/proc/{self.pid()}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return line.split()[3:5]
        return ["?", "?"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def container(i):
    return f"{PREFIX}c{i}"


def addr(i):
    n = 2 + i  # 10.16.0.1 is the network's own (DNS) address
    return f"10.16.{n >> 8}.{n & 255}"


def make_namespaces(n):
    """`ip -batch` makes them in one process (not timed: a runtime makes them, not vswitch)."""
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as f:
        for i in range(n):
            f.write(f"netns add {container(i)}\n")
        path = f.name
    try:
        sh("ip", "-batch", path)
    finally:
        os.unlink(path)


def remove_namespaces():
    names = [x for x in os.listdir(NETNS_DIR) if x.startswith(PREFIX)] if os.path.isdir(
        NETNS_DIR) else []
    if not names:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as f:
        for x in names:
            f.write(f"netns del {x}\n")
        path = f.name
    sh("ip", "-force", "-batch", path, check=False, stderr=subprocess.DEVNULL)
    os.unlink(path)
    for x in names:  # whatever the batch left
        if os.path.exists(os.path.join(NETNS_DIR, x)):
            sh("ip", "netns", "del", x, check=False, stderr=subprocess.DEVNULL)


def ping_pairs(attached, pairs, count):
    """Pings between random pairs of attached containers: (rtt samples in ms, lost)."""
    rtts, lost = [], 0
    rnd = random.Random(len(attached))
    for _ in range(pairs):
        a, b = rnd.sample(attached, 2)
        # The first echo also resolves the address (proxy-ARP): not counted.
        sh("nsenter", f"--net={NETNS_DIR}/{container(a)}", "ping", "-c1", "-W1", addr(b),
           check=False, capture_output=True)
        r = sh("nsenter", f"--net={NETNS_DIR}/{container(a)}", "ping", "-c", str(count),
               "-i", "0.02", "-W", "1", addr(b), check=False, capture_output=True, text=True)
        got = [float(m) for m in re.findall(r"time=([0-9.]+) ms", r.stdout)]
        rtts += got
        lost += count - len(got)
    rtts.sort()
    return rtts, lost


def idle_cpu(d, seconds):
    """CPU of vswitchd per second, as % of one core, for `seconds` seconds."""
    out = []
    last, t0 = d.cpu_seconds(), time.monotonic()
    for _ in range(seconds):
        time.sleep(1)
        now, t1 = d.cpu_seconds(), time.monotonic()
        out.append(100.0 * (now - last) / (t1 - t0))
        last, t0 = now, t1
    return out


TIMES_IN_ORDER = []


def timed_loop(items, f):
    """Runs f(i) for each item; returns (total s, sorted per-item ms, failures)."""
    times, failures = [], []
    TIMES_IN_ORDER.clear()
    t0 = time.monotonic()
    for i in items:
        s = time.monotonic()
        r = f(i)
        times.append(1000 * (time.monotonic() - s))
        TIMES_IN_ORDER.append(times[-1])
        if r.returncode != 0:
            failures.append((i, (r.stderr or b"").decode(errors="replace").strip()))
    return time.monotonic() - t0, sorted(times), failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--nofile", type=int, default=1024,
                    help="vswitchd's soft open-file limit at start (default 1024)")
    ap.add_argument("--pairs", type=int, default=20, help="random pairs pinged per checkpoint")
    ap.add_argument("--count", type=int, default=10, help="pings per pair")
    ap.add_argument("--idle-seconds", type=int, default=20, help="at least 2")
    ap.add_argument("--cycles", type=int, default=1,
                    help="attach and detach all ports this many times; RSS after each detach")
    ap.add_argument("--target", default="target/release")
    ap.add_argument("--perf", action="store_true",
                    help="record vswitchd with perf during the attaches (perf.data in the run dir)")
    ap.add_argument("--perf-detach", action="store_true",
                    help="record vswitchd with perf during the detaches (perf-detach.data)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    n = a.ports
    a.idle_seconds = max(a.idle_seconds, 2)
    if n < 2 or n > 16000:
        raise SystemExit("--ports must be 2..16000")
    binary = os.path.abspath(os.path.join(a.target, "vswitchd"))
    ctl = os.path.abspath(os.path.join(a.target, "vswitchctl"))
    run_dir = tempfile.mkdtemp(prefix=f"{PREFIX}-")
    d = None
    perf = None
    report = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        sh("ip", "netns", "add", HOST_NS)
        hx = ["ip", "-n", HOST_NS]
        sh(*hx, "link", "add", "ul0", "type", "veth", "peer", "name", "ul1")
        sh(*hx, "link", "set", "ul1", "up")
        sh(*hx, "addr", "add", "192.0.2.1/24", "dev", "ul0")
        sh(*hx, "link", "set", "ul0", "up")
        sh(*hx, "link", "set", "lo", "up")
        t = time.monotonic()
        make_namespaces(n)
        print(f"# {n} namespaces made in {time.monotonic() - t:.1f} s (not part of any figure)",
              flush=True)
        d = Daemon(run_dir, binary, ctl, a.workers, a.nofile)
        time.sleep(1)
        base = {"rss": d.rss_kib(), "fds": d.fds(), "nofile": d.nofile()}
        print(f"# vswitchd pid {d.pid()}, open files limit soft/hard {base['nofile']}, "
              f"{base['fds']} fds, RSS {base['rss'] / 1024:.1f} MiB before any port", flush=True)
        if a.perf:
            perf = subprocess.Popen(["perf", "record", "-g", "-o",
                                     os.path.join(run_dir, "perf.data"), "-p", str(d.pid())],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def attach(i):
            return d.call("attach-namespace", "--network", "blue", "--netns", container(i),
                          "--ip", f"{addr(i)}/18", check=False, capture_output=True)

        checkpoints = sorted({c for c in (2, 1024, 4096, n) if c <= n})
        attached, attach_times, attach_failures, attach_total = [], [], [], 0.0
        in_order = []
        forwarding = []
        start = 0
        for c in checkpoints:
            total, times, failures = timed_loop(range(start, c), attach)
            attach_total += total
            attach_times += times
            in_order += [t for t in TIMES_IN_ORDER]
            attach_failures += failures
            attached += [i for i in range(start, c) if i not in {f[0] for f in failures}]
            last_attach = time.monotonic()
            print(f"# {len(attached)} attached ({total:.1f} s for {c - start}; "
                  f"{len(attach_failures)} failed)", flush=True)
            if attach_failures and len(attach_failures) <= 3:
                for i, e in attach_failures:
                    print(f"#   attach {i}: {e}", flush=True)
            start = c
            if len(attached) >= 2:
                rtts, lost = ping_pairs(attached, a.pairs, a.count)
                forwarding.append((len(attached), rtts, lost))
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
            perf = None
        since = time.monotonic() - last_attach
        idle = idle_cpu(d, a.idle_seconds)
        full = {"rss": d.rss_kib(), "fds": d.fds()}
        if attach_failures:
            i, e = attach_failures[0]
            print(f"# first failed attach: #{i + 1}: {e}", flush=True)

        if a.perf_detach:
            perf = subprocess.Popen(["perf", "record", "-g", "-o",
                                     os.path.join(run_dir, "perf-detach.data"), "-p", str(d.pid())],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        detach_total, detach_times, detach_failures = timed_loop(
            attached, lambda i: d.call("detach-namespace", "--network", "blue", "--netns",
                                       container(i), check=False, capture_output=True))
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
            perf = None
        time.sleep(2)
        after = {"rss": d.rss_kib(), "fds": d.fds()}
        cycles = [(after["rss"], after["fds"])]
        for _ in range(1, a.cycles):
            timed_loop(attached, attach)
            timed_loop(attached, lambda i: d.call("detach-namespace", "--network", "blue",
                                                  "--netns", container(i), check=False,
                                                  capture_output=True))
            time.sleep(2)
            cycles.append((d.rss_kib(), d.fds()))

        ok = len(attached)
        at = sorted(attach_times)
        report.append(("ports attached", f"{ok} of {n}"))
        report.append(("attach: total", f"{attach_total:.1f} s ({ok / max(attach_total, 1e-9):.0f}/s)"))
        report.append(("attach: p50 / p99 / max", f"{q(at, 50):.1f} / {q(at, 99):.1f} / {at[-1]:.1f} ms"))
        tenth = max(1, len(in_order) // 10)
        first, last = sorted(in_order[:tenth]), sorted(in_order[-tenth:])
        report.append((f"attach p50: first / last {tenth}", f"{q(first, 50):.1f} / {q(last, 50):.1f} ms"))
        report.append(("vswitchd open files limit", "/".join(base["nofile"])))
        per = lambda k: (full[k] - base[k]) / max(ok, 1)
        report.append(("RSS: before / all attached / after detach",
                       f"{base['rss'] / 1024:.1f} / {full['rss'] / 1024:.1f} / {after['rss'] / 1024:.1f} MiB"))
        report.append(("RSS per port", f"{per('rss'):.1f} KiB"))
        report.append(("fds: before / all attached / after detach",
                       f"{base['fds']} / {full['fds']} / {after['fds']}"))
        report.append(("fds per port", f"{per('fds'):.2f}"))
        first_quiet = next((k for k in range(len(idle)) if all(x < 1.0 for x in idle[k:])), None)
        report.append((f"idle CPU, {since:.0f}+1..{since:.0f}+{len(idle)} s after last attach",
                       " ".join(f"{x:.1f}" for x in idle) + " % of a core"))
        half = len(idle) // 2
        report.append((f"idle CPU: mean of the first / last {len(idle) - half} s",
                       f"{statistics.mean(idle[:half]):.2f} / {statistics.mean(idle[half:]):.2f} % of a core"))
        report.append(("idle CPU under 1% from", "never" if first_quiet is None
                       else f"{since + first_quiet:.0f} s after the last attach"))
        for ports, rtts, lost in forwarding:
            report.append((f"ping RTT at {ports} ports: p50 / p99 (lost)",
                           f"{q(rtts, 50):.3f} / {q(rtts, 99):.3f} ms ({lost} of {a.pairs * a.count})"))
        dt = detach_times
        report.append(("detach: total", f"{detach_total:.1f} s, p50 {q(dt, 50):.1f} ms, p99 {q(dt, 99):.1f} ms"
                       + (f", {len(detach_failures)} failed" if detach_failures else "")))
        if len(cycles) > 1:
            report.append((f"RSS / fds after each of {len(cycles)} attach+detach cycles",
                           ", ".join(f"{r / 1024:.1f} MiB / {f}" for r, f in cycles)))
        with open("/proc/loadavg") as f:
            report.append(("load average at end (1/5/15 min)", " ".join(f.read().split()[:3])))
        report.append(("machine", f"{os.cpu_count()} CPUs, {os.uname().release}"))
        width = max(len(k) for k, _ in report)
        print()
        print(f"| {'metric'.ljust(width)} | value |")
        print(f"| {'-' * width} | ----- |")
        for k, v in report:
            print(f"| {k.ljust(width)} | {v} |")
        return 0 if ok == n and not detach_failures else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        if d:
            d.stop()
        remove_namespaces()
        if os.path.exists(os.path.join(NETNS_DIR, HOST_NS)):
            sh("ip", "netns", "del", HOST_NS, check=False)
        if os.environ.get("KEEP_RUN_DIR"):
            print(f"# run dir kept: {run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
