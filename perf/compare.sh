#!/usr/bin/env bash
# Two builds of wharf-perf side by side on the same benchmarks: runs alternate (old, new, old, new, ...), so
# a shared machine's slow and fast spells fall on both. Prints a Markdown table: the median Mpps of each, the
# ratio of the medians and the median of the per-run ratios.
#   perf/compare.sh OLD_BIN NEW_BIN [RUNS] [BENCH_FILE]
# BENCH_FILE has one benchmark per line: a label, a tab, then wharf-perf's arguments for ONE run (each must
# print "median X Mpps"); without it, the pipeline-only set below. Build the old binary from a worktree of the
# older commit: `git worktree add /tmp/old REV && (cd /tmp/old && cargo build --release -p wharf-perf)`.
set -euo pipefail
old=${1:?old wharf-perf binary}
new=${2:?new wharf-perf binary}
runs=${3:-5}
benches=${4:-}
default_benches() {
  printf '%s\t%s\n' \
    "xconnect, ring closed loop" "xconnect-ring --runs 1 --seconds 2" \
    "bridge, ring closed loop, 1k MACs" "bridge-ring --flows 512 --closed-loop --runs 1 --seconds 2" \
    "route IPv4, 1 route" "route-inline --routes 1 --runs 1 --packets 2000000" \
    "route IPv4, 1k routes" "route-inline --routes 1000 --runs 1 --packets 2000000" \
    "route IPv4, 1M routes" "route-inline --routes 1000000 --runs 1 --packets 2000000" \
    "NAT, 1k sessions" "nat-inline --sessions 1000 --runs 1 --packets 2000000 --inflight 1024" \
    "NAT, 1M sessions" "nat-inline --sessions 1000000 --runs 1 --packets 2000000 --inflight 1024" \
    "VXLAN encap" "vxlan-inline --mode encap --runs 1" \
    "VXLAN decap" "vxlan-inline --mode decap --runs 1"
}
mpps() {
  # One run; its median line's Mpps, or "-" when it failed.
  local bin=$1
  shift
  "$bin" "$@" 2>&1 | sed -n 's/.*median \([0-9.]*\) Mpps.*/\1/p' | tail -1 | grep . || echo -
}
median() {
  tr ' ' '\n' | grep -v '^-$' | grep . | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'
}
echo "| benchmark | old median Mpps | new median Mpps | new/old (medians) | new/old (median of per-run ratios) | old runs | new runs |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
while IFS=$'\t' read -r label args; do
  [ -n "$label" ] || continue
  o=() n=() r=()
  for _ in $(seq "$runs"); do
    # shellcheck disable=SC2086
    a=$(mpps "$old" $args)
    # shellcheck disable=SC2086
    b=$(mpps "$new" $args)
    o+=("$a")
    n+=("$b")
    if [ "$a" != - ] && [ "$b" != - ]; then
      r+=("$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}')")
    fi
  done
  mo=$(echo "${o[*]}" | median)
  mn=$(echo "${n[*]}" | median)
  ratio=$(awk -v a="$mo" -v b="$mn" 'BEGIN {if (a == "-" || b == "-" || a == 0) print "-"; else printf "%.2f", b / a}')
  rr=$(echo "${r[*]:-}" | median)
  echo "| $label | $mo | $mn | $ratio | $rr | ${o[*]} | ${n[*]} |"
done < <(if [ -n "$benches" ]; then cat "$benches"; else default_benches; fi)
