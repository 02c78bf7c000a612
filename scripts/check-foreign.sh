#!/usr/bin/env bash
# Checks a linux-arm64 build made by scripts/publish.sh on an x86-64 machine, under qemu's user-mode emulation:
# the published dc_server, dc_client and dc_test against each other (correctness through dc_client, a short
# benchmark, and -check's search for lies), and libdistcache's own C tests, built with the cross compiler, against
# those tools.
#
#   scripts/check-foreign.sh PREFIX      PREFIX: what publish.sh --rid linux-arm64 --out PREFIX made
#
# Needs Debian's qemu-user and gcc-aarch64-linux-gnu (with libc6-dev-arm64-cross). The tools need the target's
# OpenSSL (the runtime's cryptography, used even without TLS): the script downloads Debian's libssl3 for arm64
# into a folder of its own and unpacks it there, without adding the architecture to the machine's dpkg or apt.
# Everything runs as the calling user in a temporary folder, which is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "check-foreign.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: scripts/check-foreign.sh PREFIX (a linux-arm64 build of scripts/publish.sh)"
prefix="$(cd "$1" && pwd)" || die "no folder '$1'"
[ -x "$prefix/bin/dc_server" ] || die "$prefix/bin/dc_server is missing: run scripts/publish.sh --rid linux-arm64 --out $1 first"
file -b "$prefix/bin/dc_server" | grep -q 'ARM aarch64' || die "$prefix/bin/dc_server is not a linux-arm64 executable"
command -v qemu-aarch64 >/dev/null || die "no qemu-aarch64 (Debian: apt-get install qemu-user)"
command -v aarch64-linux-gnu-gcc >/dev/null || die "no aarch64-linux-gnu-gcc (Debian: apt-get install gcc-aarch64-linux-gnu)"
[ -d /usr/aarch64-linux-gnu/lib ] || die "no arm64 C library in /usr/aarch64-linux-gnu (Debian: apt-get install libc6-dev-arm64-cross)"

work="$(mktemp -d)"
pids=()
cleanup() {
  # An emulated tool takes a few seconds to shut down; wait for each, so that none outlives the script.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "fetching Debian's libssl3 for arm64 into $work/root"
apt_dirs=(-o APT::Architectures::=arm64 -o APT::Architecture=arm64 -o Dir::State::Lists="$work/apt/lists"
          -o Dir::Cache="$work/apt/cache" -o Dir::State::status=/dev/null -o Debug::NoLocking=1
          -o APT::Sandbox::User="$(id -un)")
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/root"
apt-get "${apt_dirs[@]}" update -qq >/dev/null
(cd "$work" && apt-get "${apt_dirs[@]}" download libssl3:arm64 >/dev/null 2>&1) || die "could not download libssl3:arm64"
dpkg -x "$work"/libssl3_*_arm64.deb "$work/root"

export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
export QEMU_SET_ENV="LD_LIBRARY_PATH=$work/root/usr/lib/aarch64-linux-gnu:$prefix/lib"
run() { qemu-aarch64 "$@"; }

# Starts a tool in the background and waits (up to a minute: emulated start-up is slow) for its socket.
start() {
  local socket="$1"; shift
  # qemu itself, not a subshell running it, so that the pid kept for the clean-up is the tool's.
  qemu-aarch64 "$@" >"$work/$(basename "$socket").log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do [ -S "$socket" ] && return 0; sleep 0.2; done
  cat "$work/$(basename "$socket").log" >&2
  die "$1 did not listen on $socket within a minute"
}

echo "version: $(run "$prefix/bin/dc_server" -version)"
# As the xunit wrapper of the C tests does: their thread tests hold more sessions than the default 512.
start "$work/server.sock" "$prefix/bin/dc_server" -listen "UNIX:$work/server.sock" -sessions 60000
start "$work/client.sock" "$prefix/bin/dc_client" -listen "UNIX:$work/client.sock" -server "UNIX:$work/server.sock"
start "$work/down.sock" "$prefix/bin/dc_client" -listen "UNIX:$work/down.sock" -server "UNIX:$work/nothing.sock"

echo "dc_test: correctness through dc_client"
run "$prefix/bin/dc_test" -connect "UNIX:$work/client.sock" -sessions 100 -ops 20000 | tail -n 1
echo "dc_test: -bench, 5 s, directly"
run "$prefix/bin/dc_test" -connect "UNIX:$work/server.sock" -bench -duration 5 | grep -E 'errors|GET|ADD'
echo "dc_test: -check, 5 s, through dc_client"
run "$prefix/bin/dc_test" -connect "UNIX:$work/client.sock" -check -duration 5 | tail -n 1

echo "libdistcache's C tests, built for arm64, against these tools"
make -C native --no-print-directory -s test-build B="$work/native" CC=aarch64-linux-gnu-gcc
# Emulated fork() is slow: the fork tests need more than the native time limit.
# All but "soak": the resident memory it watches is qemu's too, whose translated code grows by some 2 MB as the
# threads reach new paths, whatever the number of operations (the soak runs natively, and under valgrind, in the
# test suite).
mapfile -t tests < <(run "$work/native/test/test_libdistcache" --list | grep -vx soak)
status=0
DISTCACHE_TEST_SERVER="UNIX:$work/server.sock" DISTCACHE_TEST_PROXY="UNIX:$work/client.sock" \
DISTCACHE_TEST_PROXY_DOWN="UNIX:$work/down.sock" DISTCACHE_TEST_TIME_LIMIT_S=600 \
  run "$work/native/test/test_libdistcache" "${tests[@]}" >"$work/ctest.log" 2>&1 || status=$?
grep -E '^not ok|passed, [0-9]+ failed' "$work/ctest.log" || true
[ "$status" -eq 0 ] || die "libdistcache's tests failed on arm64 (exit $status)"
echo "all checks passed"
