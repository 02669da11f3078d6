#!/usr/bin/env bash
# The test command: every test, from byte fixtures to two-host namespace tests (root needed:
# the namespace tests build real network namespaces, see TESTING.md). Ends with one line
# "N passed, N failed" summed over every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: run as root (the namespace tests create network namespaces)" >&2
  exit 1
fi
scripts/install-deps.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
