#!/usr/bin/env bash
# What dc_client adds for short-lived clients: dc_test -bench -short (a new connection per request, timed from
# before its connect) straight to dc_server over loopback TCP, and through dc_client's unix socket, alternating
# for several rounds. Prints each run's p50, p99 and mean, and each round's added latency at p50 and on the mean.
#
#   bench/proxy-latency.sh [ROUNDS] [SECONDS] [RATE] [CLIENTS]   defaults: 4 rounds, 6 s, 400 requests/s, 4 clients
#
# 400 requests a second over 4 clients is 200 short connections per second per core on a 2-core machine.
# Builds the tools into a temporary directory and stops what it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-4}"
duration="${2:-6}"
rate="${3:-400}"
clients="${4:-4}"

source bench/lib.sh
bench_workdir dc-proxy-latency

bench_build . dc_server dc_client dc_test

port=29121
"$work/dc_server/dc_server" -listen "IP:127.0.0.1:$port" 2>"$work/server.log" &
pids+=($!)
"$work/dc_client/dc_client" -listen "UNIX:$work/dc.sock" -server "IP:127.0.0.1:$port" 2>"$work/client.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "Connected to the server" "$work/client.log" 2>/dev/null && break; sleep 0.1; done

field() { grep -o "\"$2\": *[-0-9.eE+]*" "$1" | head -1 | sed 's/.*: *//'; }
measure() { # TARGET: prints "p50 p99 mean"
  "$work/dc_test/dc_test" -connect "$1" -bench -short -rate "$rate" -clients "$clients" -duration "$duration" \
    -keys 10000 -datasize 1000 -json "$work/run.json" >"$work/run.txt" 2>&1 || { echo "Error, dc_test failed: $(tail -3 "$work/run.txt")" >&2; exit 1; }
  echo "$(field "$work/run.json" p50) $(field "$work/run.json" p99) $(field "$work/run.json" mean)"
}

for round in $(seq "$rounds"); do
  read -r d50 d99 dmean < <(measure "IP:127.0.0.1:$port")
  read -r p50 p99 pmean < <(measure "UNIX:$work/dc.sock")
  printf 'round %s  direct p50 %6.0f p99 %6.0f mean %6.0f us   through dc_client p50 %6.0f p99 %6.0f mean %6.0f us   added: p50 %+4.0f%%, mean %+4.0f%%\n' \
    "$round" "$d50" "$d99" "$dmean" "$p50" "$p99" "$pmean" \
    "$(awk -v a="$p50" -v b="$d50" 'BEGIN { print (a / b - 1) * 100 }')" "$(awk -v a="$pmean" -v b="$dmean" 'BEGIN { print (a / b - 1) * 100 }')"
done
