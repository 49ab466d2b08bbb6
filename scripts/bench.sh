#!/usr/bin/env bash
# Regenerates every figure in docs/benchmarks.md: builds the release binaries,
# then runs ihsm-bench against SoftHSM2 and the raw aws-lc-rs ceiling, the find
# among a million keys, the host-versus-central topology and nginx's TLS
# handshakes with its key in each place. Output (text, JSON,
# SVG) goes to docs/bench/. Takes about 27 minutes on 2 cores.
#
#   scripts/bench.sh            # everything
#   DURATION=2s RUNS=3 scripts/bench.sh   # quicker, noisier
#
# Needs softhsm2, nginx and libengine-pkcs11-openssl (apt-get install ...). As root, with the kernel's sch_netem,
# the topology run adds a 200 µs round trip on a veth pair; otherwise it measures
# loopback and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-5s}"
RUNS="${RUNS:-5}"
OUT=docs/bench
mkdir -p "$OUT"

cargo build --release --locked -p ihsmd -p ihsm-pkcs11 -p ihsm-bench
bench=target/release/ihsm-bench

# Machine drift hits every module alike: the harness interleaves them run by run.
"$bench" --vs softhsm2 --raw --workload all,find-2000 --threads 1,2 \
  --duration "$DURATION" --runs "$RUNS" \
  --json "$OUT/modules.json" --plot "$OUT/modules.svg" | tee "$OUT/modules.txt"

# A million keys: ihsm only (SoftHSM2's find reads every object; at 10,000 keys
# it already manages a few finds a second).
"$bench" --workload find-1000000 --threads 1,2 --duration "$DURATION" --runs "$RUNS" \
  --json "$OUT/find-1m.json" | tee "$OUT/find-1m.txt"

# Host HSM versus central HSM.
"$bench" --topology --rtt-us 200 --duration "$DURATION" --runs "$RUNS" \
  --json "$OUT/topology.json" --plot "$OUT/topology.svg" 2>&1 | tee "$OUT/topology.txt"

# A TLS server's key: nginx with its key in ihsm, in SoftHSM2 and in a file (needs
# nginx and libengine-pkcs11-openssl).
"$bench" --tls --threads 1,2,4 --duration "$DURATION" --runs "$RUNS" \
  --json "$OUT/tls.json" --plot "$OUT/tls.svg" 2>&1 | tee "$OUT/tls.txt"

# The tables of docs/benchmarks.md, from the JSON above.
python3 scripts/bench_tables.py
