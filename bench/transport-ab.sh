#!/usr/bin/env bash
# dc_server on its native transport against the same build on the runtime's sockets (DISTCACHE_NATIVE_TRANSPORT=0),
# with Redis beside them, all driven by one generator (Distcache.Compare load) with compare.sh's shape: 50
# connections, 1000-byte values, 32-byte keys, 100 000 prefilled. The three alternate, round after round, so that a
# noisy neighbour hits all alike; compare the rounds, not single figures.
#
#   bench/transport-ab.sh [ROUNDS] [SECONDS]      defaults: 3 rounds, 6 s measured after 2 s of warm-up
#
# Environment: PIPELINES (default "1 16"), MIXES (default "get=90,add=10 get=10,add=90").
# Prints one line per run: scenario, server, ops/s, server CPU µs per operation (from /proc/PID/stat), p99 µs.
# Installs redis-server with apt when missing; builds into a temporary directory; stops every server on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
duration="${2:-6}"
read -r -a pipelines <<<"${PIPELINES:-1 16}"
read -r -a mixes <<<"${MIXES:-get=90,add=10 get=10,add=90}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

if ! dpkg -s redis-server >/dev/null 2>&1; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends redis-server
fi

work="$(mktemp -d /tmp/dc-transport-ab.XXXXXX)"
server_pid=""
stop() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop; rm -rf "$work"' EXIT
trap 'stop; rm -rf "$work"; exit 130' INT TERM

dotnet build apps/dc_server/dc_server.csproj -c Release -nologo -v quiet -o "$work/dc_server" >"$work/build.log" 2>&1
dotnet build bench/Distcache.Compare/Distcache.Compare.csproj -c Release -nologo -v quiet -o "$work/compare" >>"$work/build.log" 2>&1

# Below the kernel's ephemeral port range, as compare.sh's.
port=29111
start() { # KIND: native, runtime or redis
  stop
  case "$1" in
    native) "$work/dc_server/dc_server" -listen "IP:127.0.0.1:$port" -sessions 10001000 -memory 24G >>"$work/server.log" 2>&1 & ;;
    runtime) DISTCACHE_NATIVE_TRANSPORT=0 "$work/dc_server/dc_server" -listen "IP:127.0.0.1:$port" -sessions 10001000 -memory 24G >>"$work/server.log" 2>&1 & ;;
    redis) redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --loglevel warning >>"$work/server.log" 2>&1 & ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || { echo "Error, the $1 server exited at start-up (see $work/server.log)" >&2; exit 1; }
    sleep 0.1
  done
  echo "Error, nothing listens on port $port" >&2; exit 1
}

field() { grep -o "\"$2\": *[-0-9.eE+]*" "$1" | head -1 | sed 's/.*: *//'; }

for round in $(seq "$rounds"); do
  for pipeline in "${pipelines[@]}"; do
    for mix in "${mixes[@]}"; do
      keys=100000; [ "$mix" = "get=10,add=90" ] && keys=10000000
      for kind in native runtime redis; do
        proto=distcache; [ "$kind" = redis ] && proto=redis
        start "$kind"
        "$work/compare/Distcache.Compare" load -proto "$proto" -port "$port" -clients 50 -pipeline "$pipeline" \
          -duration "$duration" -warmup 2 -mix "$mix" -keys "$keys" -prefill 100000 -datasize 1000 -idsize 32 \
          -serverpid "$server_pid" -json "$work/run.json" >"$work/run.txt" 2>&1 || { echo "Error, the generator failed: $(tail -3 "$work/run.txt")" >&2; exit 1; }
        printf 'round %s  %-14s 50 x %-2s  %-8s %9.0f ops/s  %6.2f us/op  p99 %6.0f us\n' "$round" "$mix" "$pipeline" "$kind" \
          "$(field "$work/run.json" ops_per_sec)" "$(field "$work/run.json" server_us_per_op)" "$(field "$work/run.json" p99)"
      done
    done
  done
done
