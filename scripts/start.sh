#!/usr/bin/env bash
# Builds the tools and runs a local distcache: dc_server on a loopback port, and the dc_client proxy in front of
# it on 1.5.1's default unix socket, where applications (mod_ssl, stunnel, the .NET client) connect.
# Ctrl-C (or SIGTERM) stops both. Override the addresses with DC_SERVER_LISTEN and DC_CLIENT_LISTEN.
set -euo pipefail
cd "$(dirname "$0")/.."

server_listen="${DC_SERVER_LISTEN:-IP:127.0.0.1:9001}"
client_listen="${DC_CLIENT_LISTEN:-UNIX:/tmp/scache}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

echo "Building dc_server, dc_client and dc_test (Release)..."
for tool in dc_server dc_client dc_test; do
  if ! log="$(dotnet build "apps/$tool/$tool.csproj" -c Release -nologo -v quiet 2>&1)"; then
    printf '%s\n' "$log" >&2
    exit 1
  fi
done
bin() { echo "apps/$1/bin/Release/net10.0/$1"; }

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# Waits until something accepts at a libnal address (IP:host:port or UNIX:/path), for at most 15 seconds.
wait_for() {
  local address="$1" i
  for i in $(seq 1 150); do
    case "$address" in
      UNIX:*) [ -S "${address#UNIX:}" ] && return 0 ;;
      IP:*:*) local hp="${address#IP:}"; (exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null && return 0 ;;
    esac
    sleep 0.1
  done
  echo "Nothing is listening on $address after 15 seconds." >&2
  return 1
}

"$(bin dc_server)" -listen "$server_listen" -sessions 100000 &
pids+=($!)
wait_for "$server_listen"

"$(bin dc_client)" -listen "$client_listen" -server "$server_listen" &
pids+=($!)
wait_for "$client_listen"

cat <<MSG

distcache is running.
  applications connect to   $client_listen   (dc_client, the local proxy)
  which forwards to         $server_listen   (dc_server, the session cache)
Try it:  $(bin dc_test) -connect $client_listen
Press Ctrl-C to stop.

MSG
# Exit when either process exits (or on Ctrl-C, through the trap).
wait -n "${pids[@]}"
