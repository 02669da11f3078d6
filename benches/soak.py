#!/usr/bin/env python3
"""Soak: vswitchd under mixed traffic while containers are attached and detached in a loop, for
--minutes N (default 30). RSS, open fds, threads and table sizes (ports, FDB, neighbours) are
sampled every minute and printed as a table; the exit status is 1 if they grew. Driven by
benches/soak.sh (see benches/README.md); a benchmark, not a test.

"Grew": the last sample against the second one (the first is taken right after the start,
before the tables and allocator have settled): RSS by more than max(4 MiB, 10 %), fds or
threads by more than 2, FDB or neighbour entries by more than 8, or the port count at all
(samples are taken between churn cycles, when only the stable containers are attached). A run
also fails when an attach, a detach or a churn container's first ping fails, or when the
steady pings lose more than 1 %.

Everything runs in namespaces this script makes (prefix vsk<PID>), cleaned up at the end, also
on failure or Ctrl-C; only processes it started are stopped, by pid.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale  # noqa: E402  (the daemon and namespace helpers)

PREFIX = f"vsk{os.getpid()}"
scale.PREFIX = PREFIX
scale.HOST_NS = f"{PREFIX}h"
NETNS = scale.NETNS_DIR


def ns_path(i):
    return f"{NETNS}/{scale.container(i)}"


def sample(d, t0):
    nets = json.loads(d.call("show", "networks", "--json", capture_output=True, text=True).stdout)
    blue = next(n for n in nets if n["name"] == "blue")
    threads = len(os.listdir(f"/proc/{d.pid()}/task"))
    return {
        "min": (time.monotonic() - t0) / 60,
        "rss": d.rss_kib(),
        "fds": d.fds(),
        "threads": threads,
        "ports": blue.get("ports", 0),
        "fdb": blue.get("fdb_entries", 0),
        "neigh": blue.get("neigh_entries", 0),
        "cpu": d.cpu_seconds(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--stable", type=int, default=32, help="containers attached throughout")
    ap.add_argument("--churn", type=int, default=16,
                    help="containers attached and detached in each cycle")
    ap.add_argument("--pairs", type=int, default=8, help="steady ping flows")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--target", default="target/release")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    binary = os.path.abspath(os.path.join(a.target, "vswitchd"))
    ctl = os.path.abspath(os.path.join(a.target, "vswitchctl"))
    run_dir = tempfile.mkdtemp(prefix=f"{PREFIX}-")
    d, procs = None, []
    iperf = shutil.which("iperf3")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    failures = []
    try:
        scale.sh("ip", "netns", "add", scale.HOST_NS)
        hx = ["ip", "-n", scale.HOST_NS]
        scale.sh(*hx, "link", "add", "ul0", "type", "veth", "peer", "name", "ul1")
        scale.sh(*hx, "link", "set", "ul1", "up")
        scale.sh(*hx, "addr", "add", "192.0.2.1/24", "dev", "ul0")
        scale.sh(*hx, "link", "set", "ul0", "up")
        n = a.stable + a.churn
        scale.make_namespaces(n)
        d = scale.Daemon(run_dir, binary, ctl, a.workers, 1024)

        def attach(i):
            return d.call("attach-namespace", "--network", "blue", "--netns", scale.container(i),
                          "--ip", f"{scale.addr(i)}/18", check=False, capture_output=True)

        def detach(i):
            return d.call("detach-namespace", "--network", "blue", "--netns",
                          scale.container(i), check=False, capture_output=True)

        for i in range(a.stable):
            r = attach(i)
            if r.returncode:
                raise SystemExit(f"attach {i}: {r.stderr.decode()}")
        seconds = int(a.minutes * 60) + 30
        rnd = random.Random(1)
        # Steady traffic: ping flows between random pairs of stable containers, all the run.
        for _ in range(a.pairs):
            x, y = rnd.sample(range(a.stable), 2)
            procs.append(subprocess.Popen(
                ["nsenter", f"--net={ns_path(x)}", "ping", "-q", "-i", "0.05", "-s", "1200",
                 "-w", str(seconds), scale.addr(y)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        server = None
        if iperf:
            server = subprocess.Popen(["nsenter", f"--net={ns_path(0)}", iperf, "-s", "-1"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(server)
        t0 = time.monotonic()
        end = t0 + a.minutes * 60
        samples = [sample(d, t0)]
        print(f"# soak: {a.stable} stable containers, {a.churn} attached and detached per cycle, "
              f"{a.pairs} ping flows{', iperf3 bursts' if iperf else ''}; "
              f"{a.minutes:g} min", flush=True)
        cycles = churned = 0
        next_sample = t0 + 60
        burst = 0
        while time.monotonic() < end:
            churn = list(range(a.stable, n))
            for i in churn:
                r = attach(i)
                if r.returncode:
                    failures.append(f"attach {i}: {r.stderr.decode().strip()}")
            for i in churn:
                peer = rnd.randrange(a.stable)
                r = scale.sh("nsenter", f"--net={ns_path(i)}", "ping", "-c1", "-W2",
                             scale.addr(peer), check=False, capture_output=True)
                if r.returncode:
                    failures.append(f"churn container {i} could not ping {scale.addr(peer)}")
            # A short UDP and TCP exchange now and then (iperf3, bounded).
            if iperf and cycles % 10 == 0:
                proto = ["-u", "-b", "20M"] if burst % 2 else []
                burst += 1
                scale.sh("nsenter", f"--net={ns_path(a.stable + 0)}", iperf, "-c",
                         scale.addr(0), "-t", "2", *proto, check=False, capture_output=True)
                if server.poll() is not None:
                    procs.remove(server)
                    server = subprocess.Popen(["nsenter", f"--net={ns_path(0)}", iperf, "-s",
                                               "-1"], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)
                    procs.append(server)
            for i in churn:
                r = detach(i)
                if r.returncode:
                    failures.append(f"detach {i}: {r.stderr.decode().strip()}")
            cycles += 1
            churned += len(churn)
            if time.monotonic() >= next_sample:
                samples.append(sample(d, t0))
                next_sample += 60
                s = samples[-1]
                print(f"# {s['min']:.1f} min: {cycles} cycles, {churned} attach+detach, RSS "
                      f"{s['rss'] / 1024:.1f} MiB, {s['fds']} fds, fdb {s['fdb']}, "
                      f"neigh {s['neigh']}", flush=True)
            if len(failures) > 20:
                break
        if samples[-1]["min"] < a.minutes - 0.5 or len(samples) < 3:
            samples.append(sample(d, t0))
        lost = sent = 0
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                out, _ = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            m = re.search(r"(\d+) packets transmitted, (\d+) received", out or "")
            if m:
                sent += int(m.group(1))
                lost += int(m.group(1)) - int(m.group(2))
        procs = []

        print()
        print("| minute | RSS MiB | fds | threads | ports | FDB | neigh | CPU s |")
        print("| ------ | ------- | --- | ------- | ----- | --- | ----- | ----- |")
        for s in samples:
            print(f"| {s['min']:.1f} | {s['rss'] / 1024:.1f} | {s['fds']} | {s['threads']} | "
                  f"{s['ports']} | {s['fdb']} | {s['neigh']} | {s['cpu']:.1f} |")
        base, last = samples[1], samples[-1]
        grew = []
        if last["rss"] - base["rss"] > max(4096, base["rss"] // 10):
            grew.append(f"RSS {base['rss'] // 1024} -> {last['rss'] // 1024} MiB")
        for k, tol in (("fds", 2), ("threads", 2), ("fdb", 8), ("neigh", 8), ("ports", 0)):
            if last[k] - base[k] > tol:
                grew.append(f"{k} {base[k]} -> {last[k]}")
        loss = 100.0 * lost / sent if sent else 100.0
        print()
        print(f"cycles {cycles}, attaches+detaches {churned} each, steady pings {sent} sent, "
              f"{lost} lost ({loss:.2f} %), failures {len(failures)}")
        with open("/proc/loadavg") as f:
            print(f"load average at end: {' '.join(f.read().split()[:3])}; "
                  f"{os.cpu_count()} CPUs")
        for x in failures[:10]:
            print(f"  failure: {x}")
        if loss > 1.0:
            grew.append(f"steady ping loss {loss:.2f} %")
        if grew or failures:
            print("FAIL: " + "; ".join(grew + ([f"{len(failures)} failures"] if failures else [])))
            return 1
        print("OK: nothing grew (last sample against the second)")
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if d:
            d.stop()
        scale.remove_namespaces()
        if os.path.exists(os.path.join(NETNS, scale.HOST_NS)):
            scale.sh("ip", "netns", "del", scale.HOST_NS, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
