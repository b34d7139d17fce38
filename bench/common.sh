# What every bench script starts with; source it first:
#   source "$(dirname "$0")/common.sh"
# It moves to the repository root, unsets the backtrace variables (production settings: no
# backtrace captured for every error value), checks for the release build, makes a scratch
# directory $WORK (removed on exit) and bench/results/, and on exit stops the nginx and the
# Varnish a script started (nginx writes its pid into $WORK, see nginx_head; Varnish runs with
# `-n "$WORK/varnish"`) and kills every PID added to `pids`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
WORK=$(mktemp -d)
chmod 755 "$WORK" # nginx and varnish workers read files in it
RESULTS=bench/results
mkdir -p "$RESULTS"
BIN=$PWD/target/release/outpost
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

# require HINT TOOL...: stop with HINT unless every TOOL is on PATH.
require() {
  local hint=$1
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing $tool: $hint" >&2; exit 1; }
  done
}

# rss_kib PID...: the processes' resident sets added up, in KiB.
rss_kib() {
  local total=0 pid
  for pid in "$@"; do total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status"))); done
  echo $total
}

# cpu_ticks PID: the process's user + system CPU time, in clock ticks (1/100 s).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wrk_summary: reads wrk --latency output on stdin and prints "REQUESTS_PER_SEC P99_US".
wrk_summary() {
  awk '/Requests\/sec/ {rps = $2}
       $1 == "99%" {v = $2; u = 1
                    if (v ~ /ms$/) u = 1000; else if (v ~ /[0-9]s$/) u = 1000000
                    sub(/[a-z]+$/, "", v); p99 = v * u}
       END {printf "%s %.0f\n", rps, p99}'
}

# nginx_head: the top of every nginx config of these scripts, through the settings its http
# block shares: a worker per core, no access log, and no cap on requests per connection
# (nginx's default of 1,000 would end every wrk or h2load connection early).
nginx_head() {
  cat <<NGINX
user root;
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
NGINX
}

# wait_http URL: until URL answers 2xx (10 s at most).
wait_http() {
  for _ in $(seq 1 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  return 1
}

# stop_nginx_and_varnish: stops the nginx and the Varnish this script started, if it did.
stop_nginx_and_varnish() {
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  pkill -f "varnishd.*$WORK/varnish" 2>/dev/null || true
}

pids=()
cleanup() {
  stop_nginx_and_varnish
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
