#!/usr/bin/env bash
# dc_server on the Redis store against dc_server on the memory store, in one run, with the same dc_test -bench
# load (docs/performance.md, "Redis store").
#
#   bench/redis-store.sh [SECONDS]     (default 5 seconds per measurement, four measurements)
#
# Starts a redis-server and two dc_servers on free loopback ports and stops them on exit. Expects a Release build
# (dotnet build Distcache.slnx -c Release). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-5}"
bin() { echo "apps/$1/bin/Release/net10.0/$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
work="$(mktemp -d)"
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

memory_port="$(free_port)"
"$(bin dc_server)" -listen "IP:127.0.0.1:$memory_port" -sessions 100000 >"$work/memory.log" 2>&1 &
pids+=($!)
memory_pid=$!
redis_store_port="$(free_port)"
"$(bin dc_server)" -listen "IP:127.0.0.1:$redis_store_port" -store "redis:127.0.0.1:$redis_port" >"$work/redis-store.log" 2>&1 &
pids+=($!)
redis_store_pid=$!
sleep 2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(uname -r)"
for shape in "8 1" "8 16"; do
  set -- $shape
  for store in memory redis; do
    if [ "$store" = memory ]; then port=$memory_port; pid=$memory_pid; else port=$redis_store_port; pid=$redis_store_pid; fi
    before="$(cpu_ticks "$redis_pid")"
    echo "== store $store, $1 clients x pipeline $2"
    "$(bin dc_test)" -connect "IP:127.0.0.1:$port" -bench -clients "$1" -pipeline "$2" -duration "$duration" -datasize 200 -serverpid "$pid"
    after="$(cpu_ticks "$redis_pid")"
    echo "  cpu redis-server $(awk -v t="$((after - before))" -v hz="$hz" 'BEGIN { printf "%.2f s", t / hz }') over the run (warm-up and prefill included)"
  done
done
