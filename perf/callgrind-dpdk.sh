#!/usr/bin/env bash
# Instructions per packet of the DPDK worker loop (rx_burst, the cross-connect, tx_burst over net_ring PMDs),
# counted by callgrind: the worker thread's instructions divided by the packets it sent (32 per
# wharf_rte_eth_tx_burst call; the seeded bursts circulate, so every call sends a full burst).
# Deterministic, unlike the memif ratio, which this machine's phase moves by ±0.03.
#   perf/callgrind-dpdk.sh [BIN]     (default: builds wharf-perf with --features dpdk)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p wharf-perf --features dpdk
  bin=${CARGO_TARGET_DIR:-target}/release/wharf-perf
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/cg" \
  "$bin" xconnect-dpdk --ring-loop --runs 1 --seconds 3 --seed-bursts 32 --quiet-wait 1 >/dev/null 2>&1
# The worker is the thread with the most instructions.
best=0
file=
for f in "$out"/cg*; do
  n=$(sed -n 's/^\(summary\|totals\): \([0-9]*\).*/\2/p' "$f" | head -1)
  if [ "${n:-0}" -gt "$best" ]; then
    best=$n
    file=$f
  fi
done
calls=$(callgrind_annotate --tree=calling --auto=no --threshold=100 "$file" 2>/dev/null \
  | grep -oE 'wharf_rte_eth_tx_burst[^(]*\(([0-9,]+)x\)' | head -1 | grep -oE '\(([0-9,]+)x' | tr -d '(,x')
echo "DPDK ring loop: $best instructions over $calls tx bursts of 32: $(( best / (calls * 32) )) instructions/packet"
