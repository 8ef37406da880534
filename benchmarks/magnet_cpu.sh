#!/bin/bash
# CPU per GiB of `p2p fetch magnet:` against WebTorrent's own leecher (tests/js/wt_timing.mjs),
# both downloading the same file from one WebTorrent seeder through the real
# bittorrent-tracker on loopback, alternating, in the same run (issue 17).
#   benchmarks/magnet_cpu.sh [MiB] [rounds]      (from the checkout; needs `npm ci` in tests/js)
# Prints one line per download: who, user+sys CPU seconds, CPU s per GiB, wall seconds.
set -euo pipefail
MIB=${1:-100}; ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
P2P=$(dirname "$(command -v "$PY")")/p2p
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
head -c $((MIB * 1048576)) /dev/urandom > "$W/src.bin"
node "$ROOT/tests/js/ws_tracker.mjs" 127.0.0.1 > "$W/tracker.out" & PIDS+=($!)
until [ -s "$W/tracker.out" ]; do sleep 0.2; done
URL="ws://127.0.0.1:$(node -e "console.log(JSON.parse(require('fs').readFileSync('$W/tracker.out','utf8').split('\n')[0]).port)")"
node "$ROOT/tests/js/wt_timing.mjs" seed --file "$W/src.bin" --announce "$URL" --bind 127.0.0.1 \
  --end-of-candidates 1 > "$W/seed.out" & PIDS+=($!)
until [ -s "$W/seed.out" ]; do sleep 0.2; done
MAGNET=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$W/seed.out','utf8').split('\n')[0]).magnet)")
line() { awk -v who="$1" -v mib="$MIB" '{cpu=$1+$2; printf "%s cpu_s=%.2f cpu_s_per_GiB=%.1f wall_s=%s\n", who, cpu, cpu*1024/mib, $3}'; }
for _ in $(seq "$ROUNDS"); do
  rm -rf "$W/p.bin" "$W/wt"
  /usr/bin/time -f "%U %S %e" -o "$W/t" timeout 600 "$P2P" fetch "$MAGNET" -o "$W/p.bin" \
    --ice-host 127.0.0.1 --quiet
  line p2p < "$W/t"; cmp "$W/p.bin" "$W/src.bin"
  /usr/bin/time -f "%U %S %e" -o "$W/t" timeout 600 node "$ROOT/tests/js/wt_timing.mjs" leech \
    --magnet "$MAGNET" --out "$W/wt" --bind 127.0.0.1 --end-of-candidates 1 --timeout 500 >/dev/null
  line webtorrent < "$W/t"; cmp "$W/wt/src.bin" "$W/src.bin"
done
