#!/usr/bin/env bash
# Instructions per packet of each pipeline's loop (ring rx, snapshot load, pipeline, ring tx), counted by
# callgrind: deterministic, unlike wall-clock time on a shared machine. Two runs of different packet counts;
# the difference cancels start-up, so the figure is the steady-state cost per packet. The route rows build
# a 1M-route table under valgrind: allow a few minutes.
#   perf/callgrind.sh [N1] [N2]     (defaults 200000 and 400000)
# Prints a Markdown table, one row per pipeline (paste into perf/RESULTS.md with the date and commit).
set -euo pipefail
cd "$(dirname "$0")/.."
n1=${1:-200000}
n2=${2:-400000}
cargo build --release -q -p wharf-perf
bin=${CARGO_TARGET_DIR:-target}/release/wharf-perf
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$@" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_packet() {
  local name=$1
  shift
  local i1 i2
  i1=$(count "$@" --packets "$n1")
  i2=$(count "$@" --packets "$n2")
  echo "| $name | **$(( (i2 - i1) / (n2 - n1) ))** | $i1 | $i2 |"
}
echo "| pipeline | instructions/packet | instructions for $n1 packets | for $n2 packets |"
echo "| --- | --- | --- | --- |"
per_packet "xconnect (ring, burst 32, 60-byte frames)" xconnect-inline
per_packet "bridge (ring, burst 32, 60-byte frames, 1024 MACs)" bridge-inline --flows 512
# The route bench refills the receive ring between timed phases; only the worker's polling is counted
# (`Inline::poll_until`, never inlined), so the figure is comparable with the two above.
route_count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \
    --toggle-collect='*Inline::poll_until*' "$bin" "$@" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
route_per_packet() {
  local name=$1
  shift
  local i1 i2
  i1=$(route_count route-inline "$@" --packets "$n1")
  i2=$(route_count route-inline "$@" --packets "$n2")
  echo "| $name | **$(( (i2 - i1) / (n2 - n1) ))** | $i1 | $i2 |"
}
# IPv6 with 1M routes needs 1.35 GiB of trie groups, too much under valgrind: 10k routes instead.
for spec in "4 1" "4 1000000" "6 1" "6 10000"; do
  read -r family routes <<<"$spec"
  route_per_packet "route IPv$family (ring, burst 32, 60/70-byte frames, $routes routes, max(routes, 1024) flows)" \
    --family "$family" --routes "$routes"
done
# NAT: masquerade and its answers, alternating, over 1000 established UDP sessions (1024 packets in flight);
# counted like the route rows.
nat_per_packet() {
  local name=$1
  shift
  local i1 i2
  i1=$(route_count nat-inline "$@" --packets "$n1")
  i2=$(route_count nat-inline "$@" --packets "$n2")
  echo "$name: $(( (i2 - i1) / (n2 - n1) )) instructions per packet ($i1 for $n1 packets, $i2 for $n2)"
}
nat_per_packet "nat (ring, burst 32, 60-byte frames, 1000 UDP sessions, both directions)" \
  --sessions 1000 --runs 1 --inflight 1024
# The same with two workers polled in turn (their answers handed over about half the time): both workers'
# instructions per packet, handoffs included.
nat_per_packet "nat, 2 workers (ring, burst 32, 60-byte frames, 1000 UDP sessions, both directions)" \
  --sessions 1000 --runs 1 --inflight 1024 --workers 2
# VXLAN: the overlay's bridge plus encapsulation and routing out of the underlay, or the L3 stage plus
# decapsulation and the bridge (64-byte inner frames on the wire); counted like the route rows.
vxlan_per_packet() {
  local name=$1
  shift
  local i1 i2
  i1=$(route_count vxlan-inline "$@" --packets "$n1")
  i2=$(route_count vxlan-inline "$@" --packets "$n2")
  echo "$name: $(( (i2 - i1) / (n2 - n1) )) instructions per packet ($i1 for $n1 packets, $i2 for $n2)"
}
vxlan_per_packet "vxlan encap (ring, burst 32, 60-byte inner frames, 512 flows)" --mode encap
vxlan_per_packet "vxlan decap (ring, burst 32, 60-byte inner frames, 512 flows)" --mode decap
