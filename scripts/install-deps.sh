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
command -v dockerd >/dev/null   || need+=(docker.io)       # tests/docker.rs (its image is busybox-static too)
command -v nsenter >/dev/null   || need+=(util-linux)
# tests/cni.rs: podman with its CNI backend, under runc (crun refuses hybrid cgroup layouts),
# running containers from a busybox rootfs.
command -v podman >/dev/null    || need+=(podman)
command -v runc >/dev/null      || need+=(runc)
command -v conmon >/dev/null    || need+=(conmon)
# The static build: it is copied alone into the containers' rootfs.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || need+=(busybox-static)
command -v dnsmasq >/dev/null   || need+=(dnsmasq-base)  # tests/dns.rs: a real upstream resolver
command -v iptables >/dev/null  || need+=(iptables)      # tests/doctor.rs: a firewall inside a host namespace
/usr/bin/python3 -c 'import scapy' 2>/dev/null || need+=(python3-scapy)  # tests/port_security.rs: forged frames
# tests/metrics.rs: a real Prometheus server scrapes the daemon; promtool checks the exposition.
{ command -v prometheus && command -v promtool; } >/dev/null || need+=(prometheus)
command -v curl >/dev/null       || need+=(curl)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages with services (docker.io, etcd-server) must not start them on this host: the
  # tests start their own, inside their namespaces. policy-rc.d says so to invoke-rc.d.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  # Wait for another apt/dpkg run (another project's script) instead of failing on its lock.
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi
