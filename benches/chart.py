#!/usr/bin/python3
"""Draws the comparison of one benches/iperf.sh run as a PNG chart.

Usage: benches/chart.py RESULT OUT.png

RESULT is iperf.sh's output (or any file holding its `RESULT {json}` line). Three panels, one
bar per testbed (kernel VXLAN, vswitch with default settings, vswitch with ESP when the run
had --encrypted, and each --variant): TCP throughput (1 and 4 streams, higher is better), CPU seconds per GB moved
(testbed processes and softirq, and machine-wide; lower is better), ping RTT (average and p99,
lower is better). The machine and load of the run are in the title, so a chart is never read
without them.

Needs matplotlib (Debian's python3-matplotlib; `benches/iperf.sh --chart` installs it).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    for line in open(path):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit(f"chart.py: no RESULT line in {path}")


TESTBEDS = [("kernel", "kernel VXLAN", "#7f7f7f"),
            ("vswitch", "vswitch (default)", "#1f77b4"),
            ("esp", "vswitch + ESP", "#d62728")]

PANELS = [
    ("Throughput (Gbit/s, higher is better)",
     [("tcp1", "TCP x1"), ("tcp4", "TCP x4")]),
    ("CPU per GB moved (s/GB, lower is better)",
     [("tbcpu_gb1", "testbed x1"), ("tbcpu_gb4", "testbed x4"),
      ("cpu_gb1", "machine x1"), ("cpu_gb4", "machine x4")]),
    ("Ping RTT (ms, lower is better)",
     [("rtt_avg", "avg"), ("rtt_p99", "p99"),
      ("busyrtt_avg", "busy avg"), ("busyrtt_p99", "busy p99")]),
]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    r = load(sys.argv[1])
    metrics = r["metrics"]
    extra = ["#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    variants = [(n, f"vswitch {n} ({spec})", extra[i % len(extra)])
                for i, (n, spec) in enumerate(r.get("variants", {}).items())]
    beds = [t for t in TESTBEDS + variants
            if any(m.get(t[0]) is not None for m in metrics.values())]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.8))
    for ax, (title, keys) in zip(axes, PANELS):
        keys = [(k, label) for k, label in keys if k in metrics]
        width = 0.8 / max(len(beds), 1)
        for i, (tb, name, colour) in enumerate(beds):
            xs = [j + (i - (len(beds) - 1) / 2) * width for j in range(len(keys))]
            ys = [metrics[k].get(tb) or 0 for k, _ in keys]
            bars = ax.bar(xs, ys, width, label=name, color=colour)
            for b, y in zip(bars, ys):
                if y:
                    ax.annotate(f"{y:.2f}", (b.get_x() + b.get_width() / 2, y),
                                ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([label for _, label in keys])
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    # Below the panels, where no bar or label can be under it.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(beds), fontsize=8, frameon=False)
    m = r["machine"]
    fig.suptitle(
        f"benches/iperf.sh: median of {r['rounds']} rounds of {r['time_s']} s — "
        f"{m['nproc']} vCPU {m['cpu']}, Linux {m['kernel']}, "
        f"load {m['loadavg_start']} → {m['loadavg_end']}"
        + (f"; underlay {r['underlay']}" if r.get("underlay") else ""),
        fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(sys.argv[2], dpi=110)
    print(f"chart.py: wrote {sys.argv[2]}")


if __name__ == "__main__":
    main()
