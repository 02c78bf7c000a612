#!/usr/bin/env bash
# Publishes the four tools, ahead-of-time compiled (ReadyToRun), into one folder for deployment:
#
#   scripts/publish.sh [DIR]        (default: dist/)
#
# The result needs the .NET 10 runtime on the target host (framework-dependent), runs on linux-x64, and starts
# without waiting for the JIT: the tools' own code and its libraries are precompiled.
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
echo "done: $(cd "$out" && pwd)/{dc_server,dc_client,dc_test,dc_snoop}"
