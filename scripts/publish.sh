#!/usr/bin/env bash
# Publishes the four tools, ahead-of-time compiled (ReadyToRun), into one folder for deployment:
#
#   scripts/publish.sh [DIR]        (default: dist/)
#
# The result needs the .NET 10 runtime on the target host (framework-dependent), runs on linux-x64, and starts
# without waiting for the JIT: the tools' own code and its libraries are precompiled.
#
# It also installs the C client library for TLS servers (docs/libdistcache.md) under the same folder:
#   DIR/lib/libdistcache.so (+ soname links), DIR/lib/libnal.so, DIR/include/distcache/dc_client.h,
#   DIR/lib/pkgconfig/distcache.pc, and, when Apache's apxs is installed, DIR/apache2/mod_socache_distcache.so.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
mkdir -p "$out"
for tool in dc_server dc_client dc_test dc_snoop; do
  echo "publishing $tool -> $out/"
  dotnet publish "apps/$tool/$tool.csproj" -c Release -r linux-x64 --self-contained false \
    -p:PublishReadyToRun=true -nologo -v quiet -o "$out"
done
prefix="$(cd "$out" && pwd)"
echo "installing libdistcache -> $out/lib, $out/include"
make -C native --no-print-directory -s install PREFIX="$prefix"
if command -v "${APXS:-apxs}" >/dev/null 2>&1; then
  echo "building the Apache module -> $out/apache2/mod_socache_distcache.so"
  make -C native --no-print-directory -s apache PREFIX="$prefix"
  mkdir -p "$out/apache2"
  cp native/build/apache/mod_socache_distcache.so "$out/apache2/"
else
  echo "not building the Apache module: apxs not found (Debian: apt-get install apache2-dev)"
fi
echo "done: $prefix/{dc_server,dc_client,dc_test,dc_snoop}, $prefix/lib/libdistcache.so"
