#!/usr/bin/env bash
# The cost of TLS on dc_client's server link, measured in one run: dc_test -bench through dc_client, once with a
# plain link to dc_server and once with mutual TLS, for a throughput load and a one-request-at-a-time latency load.
# The two links alternate, for several rounds, so that a noisy neighbour hits both alike; compare the medians.
# Usage: bench/tls-cost.sh [seconds per measurement, default 5] [rounds, default 3]. Needs openssl; builds the tools.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-5}"
rounds="${2:-3}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

for tool in dc_server dc_client dc_test; do
  dotnet build "apps/$tool/$tool.csproj" -c Release -nologo -v quiet >/dev/null
done
bin() { echo "$PWD/apps/$1/bin/Release/net10.0/$1"; }

work="$(mktemp -d /tmp/dc-tls-cost.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A CA, a server certificate for 127.0.0.1 and a client certificate, as in docs/security.md.
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 30 \
    -subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile server.ext -out server.pem 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > client.ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr -subj "/CN=bench client" 2>/dev/null
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile client.ext -out client.pem 2>/dev/null
)

# Starts dc_server and dc_client (plain or tls), prints "SERVERPID CLIENTPID SOCKET".
start() {
  local mode="$1" server_flags=() client_flags=() port
  if [ "$mode" = tls ]; then
    server_flags=(-tls-cert "$work/server.pem" -tls-key "$work/server.key" -tls-ca "$work/ca.pem")
    client_flags=(-tls-ca "$work/ca.pem" -tls-cert "$work/client.pem" -tls-key "$work/client.key")
  fi
  "$(bin dc_server)" -listen IP:127.0.0.1:0 -sessions 1000 "${server_flags[@]}" 2>"$work/server-$mode.log" &
  local server_pid=$!
  for _ in $(seq 1 100); do
    port="$(sed -n 's/^Info, listening on IP:127.0.0.1:\([0-9]*\).*/\1/p' "$work/server-$mode.log")"
    [ -n "$port" ] && break; sleep 0.1
  done
  "$(bin dc_client)" -listen "UNIX:$work/$mode.sock" -server "IP:127.0.0.1:$port" "${client_flags[@]}" 2>"$work/client-$mode.log" &
  local client_pid=$!
  for _ in $(seq 1 100); do grep -q "Connected to the server" "$work/client-$mode.log" 2>/dev/null && break; sleep 0.1; done
  echo "$server_pid $client_pid UNIX:$work/$mode.sock"
}

# start runs in a subshell, so the processes are recorded for clean-up here.
read -r plain_server plain_client plain_socket < <(start plain)
pids+=("$plain_server" "$plain_client")
read -r tls_server tls_client tls_socket < <(start tls)
pids+=("$tls_server" "$tls_client")
echo "dc_test -bench through dc_client, $duration s per measurement, $rounds rounds; $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
for load in "-clients 4 -pipeline 8" "-clients 1 -pipeline 1"; do
  for round in $(seq 1 "$rounds"); do
    for mode in plain tls; do
      if [ "$mode" = plain ]; then server=$plain_server socket=$plain_socket; else server=$tls_server socket=$tls_socket; fi
      # shellcheck disable=SC2086
      report="$("$(bin dc_test)" -connect "$socket" -bench $load -duration "$duration" -serverpid "$server")"
      echo "== round $round, $mode link, $load"
      grep -E 'operations|latency|cpu server' <<<"$report"
    done
  done
done
