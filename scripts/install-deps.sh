#!/usr/bin/env bash
# Installs the Debian packages wharf's tests and lab need, when they are missing. Idempotent; needs root.
#   iproute2       `ip`: network namespaces and veth pairs (lab, end-to-end tests)
#   iputils-ping   `ping`: the lab's reachability check
#   traceroute     `traceroute`: the L3 test checks that wharf shows up as a hop
#   tcpdump,tshark dissectors that check our frames on the wire
#   valgrind       instruction counts per packet (perf/callgrind.sh)
#   dpdk           DPDK's runtime (its tools; the PMD plugins memif, ring, null, pcap... come with libdpdk-dev)
#   dpdk-dev       dpdk-testpmd, the peer of the DPDK tests and of `wharf-perf xconnect-dpdk`
#   libdpdk-dev    DPDK 22.11 headers and libdpdk.pc, for the `dpdk` feature (dataplane/dpdk-sys)
#   libclang-dev   libclang for bindgen (dataplane/dpdk-sys)
#   pkg-config     finds libdpdk (dataplane/dpdk-sys)
#   nftables       `nft`: the kernel twin of the nat-veth scenario (masquerade)
#   conntrack      `conntrack -F`: that twin's session table emptied between runs
set -euo pipefail
pkgs=(iproute2 iputils-ping traceroute tcpdump tshark valgrind dpdk dpdk-dev libdpdk-dev libclang-dev pkg-config nftables conntrack)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root to install them (apt-get)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
