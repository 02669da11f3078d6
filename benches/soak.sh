#!/usr/bin/env bash
# Soak: mixed traffic while containers are attached and detached in a loop; RSS, fds, threads
# and table sizes sampled every minute, printed as a table; exits 1 if they grew. A benchmark,
# not a test: see benches/README.md.
#   sudo bash benches/soak.sh                 # 30 minutes
#   sudo bash benches/soak.sh --minutes 3     # a quick look
# Options: --minutes N, --stable N, --churn N, --pairs N, --workers N, --no-build.
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
args=()
for a in "$@"; do
    if [ "$a" = "--no-build" ]; then build=0; else args+=("$a"); fi
done
if [ "$build" = 1 ]; then cargo build --release --bins >&2; fi
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
exec python3 benches/soak.py "${args[@]}"
