#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting and lints, runs every test.
# In CI (CI=true) the tests that need root and network namespaces must run: a skip fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The DPDK backend, dpdk ports in configs, and the DPDK benchmark (feature `dpdk`, needs the system DPDK that
# install-deps.sh installs).
cargo clippy -p wharf-dataplane -p wharf-control -p wharf-perf --features dpdk --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
cargo test -p wharf-dataplane --features dpdk 2>&1 | tee -a "$log"
# The whole control suite again with DPDK (about a minute with the build): the dpdk configs run (tests/dpdk_config.rs)
# and every other test must hold in a DPDK build too.
cargo test -p wharf-control --features dpdk 2>&1 | tee -a "$log"
if grep -q '^SKIPPED ' "$log"; then
  if [ "${CI:-}" = "true" ]; then
    echo "test.sh: tests that need root and network namespaces were skipped; in CI they must run:" >&2
    grep '^SKIPPED ' "$log" >&2
    exit 1
  fi
  echo "test.sh: WARNING: some tests were skipped (see SKIPPED lines above)" >&2
fi
