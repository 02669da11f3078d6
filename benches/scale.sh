#!/usr/bin/env bash
# Many containers on one host: attach --ports N namespaces (default 4096) to one vswitchd
# network; prints attach time, RSS and fds per port, idle CPU, ping between random pairs and
# detach of all as a table. A benchmark, not a test: see benches/README.md.
#   sudo bash benches/scale.sh --ports 256          # a quick look (~15 s)
#   sudo bash benches/scale.sh                      # 4096 ports (a few minutes)
# Options: --ports N, --workers N, --nofile N (vswitchd's soft fd limit at start, default
# 1024), --pairs N, --count N, --idle-seconds N, --perf, --no-build.
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
args=()
for a in "$@"; do
    if [ "$a" = "--no-build" ]; then build=0; else args+=("$a"); fi
done
if [ "$build" = 1 ]; then cargo build --release --bins >&2; fi
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
exec python3 benches/scale.py "${args[@]}"
