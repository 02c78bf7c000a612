#!/usr/bin/env bash
# Two revisions of dc_server and dc_client side by side, alternating round after round so that a noisy neighbour
# hits both alike, driven by one generator built from the working tree (dc_test -bench). For checking that a change
# of structure costs nothing: compare the rounds, not single figures.
#
#   bench/revisions-ab.sh REV_A REV_B [ROUNDS] [SECONDS]      defaults: 3 rounds, 5 s measured after 1 s of warm-up
#
# Shapes (1000-byte sessions, 32-byte ids, 90% GET / 10% ADD over 20 000 prefilled keys):
#   direct-short     8 clients, a new TCP connection per request, straight to dc_server
#   proxy-short      the same through dc_client's unix socket (dc_client -> dc_server over TCP)
#   proxy-50x1       50 kept connections to dc_client, one request in flight each
#   proxy-50x16      50 kept connections to dc_client, 16 requests in flight each
#   spread-4x16      4 kept connections to a dc_client with three dc_servers, 16 in flight each
# SHAPES (environment) picks some of them, e.g. SHAPES="direct-short proxy-short"; default all.
# Prints one line per run: shape, revision, ops/s, CPU µs per operation of the measured process (dc_server for
# direct-short, dc_client otherwise), p99 µs. Builds into a temporary directory; stops every process on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/revisions-ab.sh REV_A REV_B [ROUNDS] [SECONDS]" >&2; exit 2; }
rev_a="$1"
rev_b="$2"
rounds="${3:-3}"
duration="${4:-5}"

source bench/lib.sh
bench_workdir dc-revisions-ab

bench_build . dc_test
for side in a b; do
  rev="$rev_a"; [ "$side" = b ] && rev="$rev_b"
  mkdir -p "$work/src-$side"
  git archive "$rev" | tar -x -C "$work/src-$side"
  BENCH_BUILD_PREFIX="$side" bench_build "$work/src-$side" dc_server dc_client
done

field() { grep -o "\"$2\": *[-0-9.eE+]*" "$1" | head -1 | sed 's/.*: *//'; }
wait_for() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "Error, no '$2' in $1" >&2; exit 1; }

# Starts side $1's servers: one dc_server and a dc_client in front of it, and three more dc_servers behind a
# second dc_client. Sets server_pid, client_pid, spread_pid.
start_side() {
  local side="$1" base="$2" i
  "$work/$side/dc_server/dc_server" -listen "IP:127.0.0.1:$base" -sessions 200000 2>"$work/server-$side.log" &
  server_pid=$!; pids+=("$server_pid")
  "$work/$side/dc_client/dc_client" -listen "UNIX:$work/$side.sock" -server "IP:127.0.0.1:$base" 2>"$work/client-$side.log" &
  client_pid=$!; pids+=("$client_pid")
  local spread_servers=()
  for i in 1 2 3; do
    "$work/$side/dc_server/dc_server" -listen "IP:127.0.0.1:$((base + i))" -sessions 200000 2>>"$work/spread-$side.log" &
    pids+=($!)
    spread_servers+=(-server "IP:127.0.0.1:$((base + i))")
  done
  sleep 1
  "$work/$side/dc_client/dc_client" -listen "UNIX:$work/$side-spread.sock" "${spread_servers[@]}" 2>"$work/spread-client-$side.log" &
  spread_pid=$!; pids+=("$spread_pid")
  wait_for "$work/client-$side.log" "Connected to the server"
  wait_for "$work/spread-client-$side.log" "spreading sessions over 3 servers"
}

# run SHAPE SIDE TARGET PID ARGS...: one measurement, printed.
run() {
  local shape="$1" side="$2" target="$3" pid="$4"; shift 4
  case " ${SHAPES:-$shape} " in *" $shape "*) ;; *) return 0 ;; esac
  "$work/dc_test/dc_test" -connect "$target" -bench -duration "$duration" -warmup 1 -keys 20000 -prefill 20000 \
    -datasize 1000 -idsize 32 -mix get=90,add=10 -serverpid "$pid" -json "$work/run.json" "$@" >"$work/run.txt" 2>&1 \
    || { echo "Error, dc_test failed: $(tail -3 "$work/run.txt")" >&2; exit 1; }
  printf '%-13s %s  %10.0f ops/s  %7.2f us CPU/op  p99 %7.0f us\n' "$shape" "$side" \
    "$(field "$work/run.json" ops_per_sec)" "$(field "$work/run.json" server_us_per_op)" "$(field "$work/run.json" p99)"
}

declare -A server client spread
start_side a 29200; server[a]=$server_pid; client[a]=$client_pid; spread[a]=$spread_pid
start_side b 29300; server[b]=$server_pid; client[b]=$client_pid; spread[b]=$spread_pid
echo "A = $rev_a ($(git rev-parse --short "$rev_a")), B = $rev_b ($(git rev-parse --short "$rev_b")); $(nproc) cores, $rounds rounds of $duration s"
for round in $(seq "$rounds"); do
  echo "round $round"
  for side in a b; do
    base=29200; [ "$side" = b ] && base=29300
    run direct-short "$side" "IP:127.0.0.1:$base" "${server[$side]}" -clients 8 -short
    run proxy-short "$side" "UNIX:$work/$side.sock" "${client[$side]}" -clients 8 -short
    run proxy-50x1 "$side" "UNIX:$work/$side.sock" "${client[$side]}" -clients 50 -pipeline 1
    run proxy-50x16 "$side" "UNIX:$work/$side.sock" "${client[$side]}" -clients 50 -pipeline 16
    run spread-4x16 "$side" "UNIX:$work/$side-spread.sock" "${spread[$side]}" -clients 4 -pipeline 16
  done
done
