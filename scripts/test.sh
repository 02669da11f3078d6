#!/usr/bin/env bash
# The test command: every test, from byte fixtures to two-host namespace tests (root needed:
# the namespace tests build real network namespaces, see TESTING.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: run as root (the namespace tests create network namespaces)" >&2
  exit 1
fi
scripts/install-deps.sh
cargo test --release "$@"
