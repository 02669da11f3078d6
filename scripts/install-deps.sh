#!/usr/bin/env bash
# Installs the system tools the tests and the demo drive (Debian/Ubuntu, as root).
# Idempotent: installs only what is missing.
set -euo pipefail

need=()
command -v ip >/dev/null       || need+=(iproute2)
command -v ping >/dev/null     || need+=(iputils-ping)
command -v tcpdump >/dev/null  || need+=(tcpdump)
command -v ethtool >/dev/null  || need+=(ethtool)
command -v iperf3 >/dev/null   || need+=(iperf3)
command -v tshark >/dev/null   || need+=(tshark)
command -v python3 >/dev/null  || need+=(python3)
command -v sha256sum >/dev/null || need+=(coreutils)
command -v etcd >/dev/null      || need+=(etcd-server)   # tests/etcd_client.rs
command -v etcdctl >/dev/null   || need+=(etcd-client)
command -v openssl >/dev/null   || need+=(openssl)
command -v dnsmasq >/dev/null   || need+=(dnsmasq-base)  # tests/dns.rs: a real upstream resolver

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
