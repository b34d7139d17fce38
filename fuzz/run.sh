#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 900), one after another, with the corpora
# in fuzz/corpus/TARGET (kept in the repository). Needs the nightly toolchain and cargo-fuzz
# (cargo install cargo-fuzz). A crash, or an input that runs past 10 s (a hang), is reported
# and the next target runs; the input is in fuzz/artifacts/TARGET/, and the script exits 1 at
# the end.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-900}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(request_key cache_control range dns_packet config worker_route esi)
fi
cargo +nightly fuzz build --release
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target"
  echo "== $target for ${SECONDS_EACH}s"
  log="$(mktemp)"
  status=0
  cargo +nightly fuzz run --release "$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -max_len=4096 -timeout=10 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY|ALARM)' "$log" || true
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    echo "!! $target stopped with status $status: see fuzz/artifacts/$target/"
    failed=1
  fi
  echo "corpus: $(ls "corpus/$target" | wc -l) inputs"
done
exit "${failed:-0}"
