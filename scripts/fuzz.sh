#!/usr/bin/env bash
# Runs cargo-fuzz targets from their corpus in fuzz/corpus/<target>.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS defaults to 5 (the CI smoke run); no TARGET means every target. The corpus in
# the repository is read, not written; with FUZZ_KEEP=1 the new inputs that reach code
# the corpus did not are merged into it afterwards (libFuzzer -merge=1), so it grows by
# what matters only. A finding stops the run with the crashing input in
# fuzz/artifacts/<target>/ and a non-zero exit. Builds on the
# stable toolchain (`--sanitizer none`); installs cargo-fuzz if it is missing.
#
# FUZZ_RUNS=N fixes the work of a run, for CI: N executions from a fixed seed
# (FUZZ_SEED, default 1) instead of SECONDS of random ones, so a commit's CI run makes
# the same mutations on any machine, however fast; a new finding still fails it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs=${1:-5}
[ $# -gt 0 ] && shift
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
cargo fuzz build -O --sanitizer none
bin=target/$(rustc -vV | sed -n 's/^host: //p')/release

for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  new=$(mktemp -d)
  if [ -n "${FUZZ_RUNS:-}" ]; then
    budget=(-runs="$FUZZ_RUNS" -seed="${FUZZ_SEED:-1}" -max_total_time=120)
  else
    budget=(-max_total_time="$secs")
  fi
  if ! "$bin/$t" "${budget[@]}" -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
      "$new" "corpus/$t" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $t: FINDING (input in fuzz/artifacts/$t/)" >&2
    rm -rf "$log" "$new"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    # Edges only (no hit counters): the corpus keeps an input per new branch.
    "$bin/$t" -merge=1 -use_counters=0 "corpus/$t" "$new" >/dev/null 2>&1
  fi
  if [ -n "${FUZZ_RUNS:-}" ]; then how="seed ${FUZZ_SEED:-1}"; else how="${secs}s"; fi
  echo "fuzz: $t: $how, ${runs:-?} runs, ${cov:-cov: ?}, corpus $(ls "corpus/$t" | wc -l) inputs, no finding"
  rm -rf "$log" "$new"
done
