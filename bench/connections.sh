#!/usr/bin/env bash
# The shapes real TLS servers make, measured with the independent C generator (bench/loadgen) against our dc_server,
# dc_client in front of it, Redis and memcached, all in one run, alternating round after round: a connection per
# operation over a unix socket and over TCP, and kept connections with 1 and 16 requests in flight. Prints, per
# shape and target, throughput and the CPU per operation of the server (and of dc_client), and our ratio to each
# peer.
#
#   bench/connections.sh [ROUNDS] [SECONDS]      defaults: 3 rounds, 5 s measured after 1 s of warm-up
#
# Load: 20 000 keys, all prefilled, 1000-byte values, 32-byte keys, 90% GET / 10% ADD; 8 clients for the
# connection-per-operation shapes (as 8 dc_test processes would), 50 for the kept ones. Installs redis-server and
# memcached with apt when missing; builds into a temporary directory; stops every process on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
duration="${2:-5}"

packages=()
for pkg in redis-server memcached gcc make; do dpkg -s "$pkg" >/dev/null 2>&1 || packages+=("$pkg"); done
if [ "${#packages[@]}" -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

source bench/lib.sh
bench_workdir dc-connections

make -C bench/loadgen -s
loadgen="bench/loadgen/loadgen"
bench_build . dc_server dc_client

# Ports below Linux's ephemeral range, so that no outgoing connection can hold them.
"$work/dc_server/dc_server" -listen "IP:127.0.0.1:29401" -sessions 100000 2>"$work/dc_tcp.log" & pids+=($!); dc_tcp=$!
"$work/dc_server/dc_server" -listen "UNIX:$work/dc.sock" -sessions 100000 2>"$work/dc_unix.log" & pids+=($!); dc_unix=$!
"$work/dc_client/dc_client" -listen "UNIX:$work/proxy.sock" -server "IP:127.0.0.1:29401" 2>"$work/proxy.log" & pids+=($!); proxy=$!
redis-server --port 29402 --unixsocket "$work/redis.sock" --save '' --appendonly no --daemonize no >"$work/redis.log" 2>&1 & pids+=($!); redis=$!
memcached -p 29403 -s "$work/mc.sock" -U 0 -u "$(id -un)" -m 512 >"$work/mc.log" 2>&1 & pids+=($!)
memcached -p 29404 -U 0 -u "$(id -un)" -m 512 >>"$work/mc.log" 2>&1 & pids+=($!)
sleep 2
mc_unix=$(pgrep -f "memcached -p 29403"); mc_tcp=$(pgrep -f "memcached -p 29404")

field() { grep -o "\"$2\": *[-0-9.eE+]*" "$1" | head -1 | sed 's/.*: *//'; }
# run LABEL PROTO TARGET PIDS... -- LOADGEN ARGS: one measurement; prints ops/s and the CPU µs/op of each pid.
run() {
  local label="$1" proto="$2" target="$3"; shift 3
  local pidargs=() cpu=""
  while [ "$1" != "--" ]; do pidargs+=(-serverpid "$1"); shift; done; shift
  "$loadgen" -proto "$proto" -connect "$target" -keys 20000 -prefill 20000 -datasize 1000 -idsize 32 \
    -mix get=90,add=10 -warmup 1 -duration "$duration" "${pidargs[@]}" -json "$work/run.json" "$@" >"$work/run.txt" 2>&1 \
    || { echo "Error, loadgen failed for $label: $(tail -3 "$work/run.txt")" >&2; exit 1; }
  cpu="$(grep -o '"us_per_op": *[0-9.]*' "$work/run.json" | sed 's/.*: *//' | tr '\n' ' ')"
  printf '%-12s %-22s %10.0f ops/s   CPU us/op (generator, servers): %s\n' "$shape" "$label" "$(field "$work/run.json" ops_per_s)" "$cpu"
  echo "$shape $label $(field "$work/run.json" ops_per_s)" >>"$work/results"
}

shapes=(perop-unix perop-tcp kept-1 kept-16)
echo "bench/connections.sh on $(nproc) cores, $(git rev-parse --short HEAD), $rounds rounds of $duration s, generator bench/loadgen"
for round in $(seq "$rounds"); do
  echo "round $round"
  for shape in "${shapes[@]}"; do
    case "$shape" in
      perop-unix)
        run "dc_server" distcache "UNIX:$work/dc.sock" "$dc_unix" -- -per-op -clients 8
        run "dc_client+dc_server" distcache "UNIX:$work/proxy.sock" "$proxy" "$dc_tcp" -- -per-op -clients 8
        run "redis" resp "UNIX:$work/redis.sock" "$redis" -- -per-op -clients 8
        run "memcached" memcache "UNIX:$work/mc.sock" "$mc_unix" -- -per-op -clients 8 ;;
      perop-tcp)
        run "dc_server" distcache "IP:127.0.0.1:29401" "$dc_tcp" -- -per-op -clients 8
        run "redis" resp "IP:127.0.0.1:29402" "$redis" -- -per-op -clients 8
        run "memcached" memcache "IP:127.0.0.1:29404" "$mc_tcp" -- -per-op -clients 8 ;;
      kept-1|kept-16)
        depth="${shape#kept-}"
        run "dc_server" distcache "IP:127.0.0.1:29401" "$dc_tcp" -- -clients 50 -pipeline "$depth"
        run "redis" resp "IP:127.0.0.1:29402" "$redis" -- -clients 50 -pipeline "$depth"
        run "memcached" memcache "IP:127.0.0.1:29404" "$mc_tcp" -- -clients 50 -pipeline "$depth" ;;
    esac
  done
done

echo
echo "medians over the rounds, and dc_server's ratio to each peer"
awk '
  { key = $1 " " $2; n[key]++; v[key, n[key]] = $3; shapes[$1] = 1; targets[$1, $2] = 1 }
  function median(key,   i, j, t, m) {
    m = n[key]
    for (i = 1; i <= m; i++) a[i] = v[key, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    for (s in shapes) {
      ours = median(s " dc_server")
      line = sprintf("%-12s dc_server %8.0f", s, ours)
      for (k in targets) {
        split(k, p, SUBSEP)
        if (p[1] != s || p[2] == "dc_server") continue
        m = median(s " " p[2])
        # dc_client in front of dc_server is ours too: shown, not a peer to divide by.
        line = line (p[2] ~ /dc_client/ ? sprintf("   %s %8.0f", p[2], m) : sprintf("   %s %8.0f (ours/theirs %.2f)", p[2], m, ours / m))
      }
      print line
    }
  }' "$work/results" | sort
