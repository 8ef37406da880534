#!/bin/bash
# N WebTorrent leeches (tests/js/wt_timing.mjs, node), one after another, against one
# `p2p seed --torrent` through the real bittorrent-tracker on loopback: each connection is
# offered by WebTorrent (libdatachannel) and answered by aiortc. Prints how many leeches
# finished and how many DTLS handshakes aiortc saw fail (issue 17's "unknown CA" race,
# docs/PROTOCOL.md §5.4). A diagnostic, not a figure.
#   benchmarks/wt_answer_loop.sh [N] [SECONDS_PER_LEECH]   (from the checkout; `npm ci` in tests/js)
#   KEEP=1 keeps the work directory (the seeder's -v log, each leech's stderr).
set -u
N=${1:-14}; LIMIT=${2:-8}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
P2P=$(dirname "$(command -v "$PY")")/p2p
W=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
head -c 300000 /dev/urandom > "$W/src.bin"
node "$ROOT/tests/js/ws_tracker.mjs" 127.0.0.1 > "$W/tracker.out" & PIDS+=($!)
until [ -s "$W/tracker.out" ]; do sleep 0.2; done
URL="ws://127.0.0.1:$(node -e "console.log(JSON.parse(require('fs').readFileSync('$W/tracker.out','utf8').split('\n')[0]).port)")"
timeout 900 "$P2P" seed "$W/src.bin" --torrent --tracker "$URL" --ice-host 127.0.0.1 --port 0 \
  --json -v > "$W/seed.out" 2> "$W/seed.err" & PIDS+=($!)
until [ -s "$W/seed.out" ]; do sleep 0.2; done
MAGNET=$(sed -n 1p "$W/seed.out")
ok=0
for i in $(seq "$N"); do
  rm -rf "$W/wt"
  if timeout $((LIMIT + 20)) node "$ROOT/tests/js/wt_timing.mjs" leech --magnet "$MAGNET" \
      --out "$W/wt" --bind 127.0.0.1 --end-of-candidates 1 --timeout "$LIMIT" \
      > "$W/leech$i.out" 2> "$W/leech$i.err"; then
    ok=$((ok + 1))
  fi
done
failed=$(grep -c "DTLS handshake failed" "$W/seed.err")
echo "leeches finished: $ok of $N; DTLS handshakes failed (aiortc's log): $failed"
