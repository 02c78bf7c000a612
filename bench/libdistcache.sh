#!/usr/bin/env bash
# The C library's operations per second through dc_client, as a TLS server uses it: one DC_CTX shared by 1, 8 and
# 64 threads, each storing a fresh session (32-byte id, 256 bytes) and fetching it straight back, with flags 0 (a
# connection per operation, as Apache's mod_socache_dc and mod_socache_distcache) and PERSISTENT. dc_client
# listens on a unix socket and forwards to dc_server over loopback TCP, as on a web server host.
#
#   bench/libdistcache.sh [SECONDS] [ROUNDS]      defaults: 5 s per run, 1 round
#
# Prints one line per run: operations per second, and the CPU spent per operation by the calling process (the
# library and the bench's own loop), dc_client and dc_server (user + system). The load generator is native/test/test_libdistcache --bench (C, the library
# itself). Builds what it needs into a temporary directory and stops what it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
rounds="${2:-1}"

source bench/lib.sh
bench_workdir dc-libdistcache-bench

make -C native --no-print-directory -s test-build
bench_build . dc_server dc_client

port=29131
"$work/dc_server/dc_server" -listen "IP:127.0.0.1:$port" -sessions 1000000 2>"$work/server.log" &
server=$!
pids+=("$server")
"$work/dc_client/dc_client" -listen "UNIX:$work/dc.sock" -server "IP:127.0.0.1:$port" 2>"$work/client.log" &
proxy=$!
pids+=("$proxy")
for _ in $(seq 100); do grep -q "Connected to the server" "$work/client.log" 2>/dev/null && break; sleep 0.1; done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # user + system, in clock ticks
hz="$(getconf CLK_TCK)"

echo "libdistcache through dc_client (UNIX) -> dc_server (TCP loopback), $seconds s per run, $(nproc) cores"
for round in $(seq "$rounds"); do
  for flags in 0 P; do
    for threads in 1 8 64; do
      p0="$(ticks "$proxy")"; s0="$(ticks "$server")"
      # In a subshell whose only child is the bench, so that `times` gives the bench's own CPU (second line).
      line="$( (native/build/test/test_libdistcache --bench "UNIX:$work/dc.sock" "$threads" "$seconds" "$flags" || true; times) )"
      client_cpu="$(tail -1 <<<"$line" | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }')"
      p1="$(ticks "$proxy")"; s1="$(ticks "$server")"
      ops="$(grep -o '[0-9]* operations' <<<"$line" | head -1 | cut -d' ' -f1)"
      rate="$(grep -o '[0-9]* ops/s' <<<"$line" | cut -d' ' -f1)"
      failures="$(grep -o '[0-9]* failed' <<<"$line" | cut -d' ' -f1 || true)"
      awk -v r="$round" -v f="$flags" -v t="$threads" -v rate="$rate" -v ops="$ops" -v fail="${failures:-0}" \
          -v p="$((p1 - p0))" -v s="$((s1 - s0))" -v hz="$hz" -v c="$client_cpu" 'BEGIN {
        printf "round %s  flags %-2s threads %2d  %7d ops/s  failures %s  CPU per op: library (the calling process) %5.1f us, dc_client %5.1f us, dc_server %5.1f us\n",
          r, f, t, rate, fail, c / ops * 1e6, p / hz / ops * 1e6, s / hz / ops * 1e6 }'
    done
  done
done
