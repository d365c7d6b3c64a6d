#!/usr/bin/env bash
# Fuzz every parser with libFuzzer, then minimise the corpus that CI replays on stable.
#
#   bash core/fuzz/run.sh [seconds per target, default 60] [target ...]
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer=address); on a stable toolchain they
# are unlocked with RUSTC_BOOTSTRAP=1. Findings land in core/fuzz/artifacts/<target>/; the
# summary (runs, seconds, corpus size per target) is printed at the end and kept in
# core/fuzz/last-run.txt for docs/RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
secs="${1:-60}"
shift || true
all=(pack idx index manifest key_file config parity_group lock blob delta)
targets=("${@:-${all[@]}}")
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version =0.13.2 --locked
cargo run -q -p containerarchive-core --example fuzz_seeds -- fuzz/corpus
cargo fuzz build -O
summary=fuzz/last-run.txt
echo "# $(date -u +%FT%TZ) ${secs}s per target, $(nproc) cores, rustc $(rustc -V | cut -d' ' -f2)" >"$summary"
for t in "${targets[@]}"; do
  log=$(mktemp)
  # -rss_limit_mb bounds what a length field can make the parser allocate.
  cargo fuzz run -O "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=1024 \
    -print_final_stats=1 >"$log" 2>&1 || { tail -40 "$log"; echo "target $t FAILED (see fuzz/artifacts/$t)"; exit 1; }
  runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  # Keep only inputs that add coverage, so the committed corpus stays small.
  cargo fuzz cmin -O "$t" "fuzz/corpus/$t" >"$log" 2>&1 || { tail -20 "$log"; echo "cmin of $t FAILED"; exit 1; }
  n=$(ls "fuzz/corpus/$t" | wc -l)
  printf '%-13s %10s runs  %4s s  coverage %5s  corpus %4s files\n' "$t" "$runs" "$secs" "$cov" "$n" | tee -a "$summary"
  rm -f "$log"
done
