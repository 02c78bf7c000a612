#!/usr/bin/env bash
# Publishes distcache for deployment: the five tools as self-contained single-file executables (no .NET runtime
# needed on the host; precompiled with ReadyToRun, so they start without waiting for the JIT), the C client library
# for TLS servers, the manual pages and the documentation, in an install-prefix layout per runtime identifier:
#
#   scripts/publish.sh [--rid RID]... [--out DIR] [--version X]
#
#   --rid RID      a .NET runtime identifier (linux-x64, linux-arm64, ...); repeat it for several. Default: this
#                  machine's (linux-x64 or linux-arm64).
#   --out DIR      where to put the result (default: dist/). With one --rid, DIR is the prefix; with several, each
#                  goes to DIR/RID.
#   --version X    the version the tools report and carry (default: the Version in Directory.Build.props).
#
# The layout under a prefix:
#   bin/           dc_server dc_client dc_test dc_snoop dc_ticketkeys
#   lib/           libdistcache.so (+ soname links), libnal.so, pkgconfig/distcache.pc
#   include/       distcache/dc_client.h
#   share/man/     man1/dc_server.1 ... and man3/libdistcache.3
#   share/doc/distcache/   README.md, LICENSE, docs/
#   apache2/       mod_socache_distcache.so, for this machine's runtime identifier when Apache's apxs is installed
#
# The C library is built for each RID with the system compiler: the native one for this machine's architecture,
# otherwise the Debian cross compiler (gcc-aarch64-linux-gnu for linux-arm64, gcc-x86-64-linux-gnu for linux-x64),
# or the compiler named by CC_<RID> (CC_linux_arm64=...).
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

usage() { sed -n '6,24p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "publish.sh: $*" >&2; exit 2; }

host_rid() {
  case "$(uname -m)" in
    x86_64) echo linux-x64 ;;
    aarch64|arm64) echo linux-arm64 ;;
    *) die "no default --rid for this machine's architecture '$(uname -m)'; give one with --rid" ;;
  esac
}

rids=()
out=dist
version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rid|--out|--version)
      [ $# -ge 2 ] && [ -n "$2" ] || die "$1 requires a value"
      case "$1" in
        --rid) rids+=("$2") ;;
        --out) out="$2" ;;
        --version) version="$2" ;;
      esac
      shift 2 ;;
    --rid=*) rids+=("${1#--rid=}"); shift ;;
    --out=*) out="${1#--out=}"; shift ;;
    --version=*) version="${1#--version=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option '$1' (options: --rid RID, --out DIR, --version X)" ;;
    *) die "unexpected argument '$1': give the output folder as --out $1" ;;
  esac
done

# Only the Linux identifiers: the tools use Linux's epoll, SO_PEERCRED and signals, and the C library is built with
# the GNU toolchain.
for rid in "${rids[@]}"; do
  case "$rid" in
    linux-x64|linux-arm64|linux-musl-x64|linux-musl-arm64) ;;
    *) die "--rid '$rid' is not supported: use linux-x64, linux-arm64, linux-musl-x64 or linux-musl-arm64" ;;
  esac
done
[ "${#rids[@]}" -gt 0 ] || rids=("$(host_rid)")
# A NuGet version: digits, then an optional -prerelease and +metadata.
if [ -n "$version" ] && ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(\.[0-9]+)?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]]; then
  die "--version '$version' is not a version such as 2.0.1 or 2.1.0-rc.1"
fi
default_version="$(sed -n 's|.*<Version>\(.*\)</Version>.*|\1|p' Directory.Build.props | head -n 1)"
version_args=()
[ -z "$version" ] || version_args=("-p:Version=$version")

# The C compiler for a RID's architecture.
c_compiler() {
  local rid="$1" var="CC_${1//-/_}"
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  local arch="${rid##*-}" cross
  if [ "linux-$arch" = "$(host_rid)" ]; then echo "${CC:-cc}"; return; fi
  case "$arch" in
    arm64) cross=aarch64-linux-gnu-gcc ;;
    x64) cross=x86_64-linux-gnu-gcc ;;
  esac
  command -v "$cross" >/dev/null 2>&1 ||
    die "cannot build libdistcache for $rid: no $cross (Debian: apt-get install gcc-${cross%-gcc}), and $var is not set"
  echo "$cross"
}

# Every RID's compiler is found before anything is built, so a missing one stops the script at once.
declare -A compilers
for rid in "${rids[@]}"; do
  compilers[$rid]="$(c_compiler "$rid")"
done

mkdir -p "$out"
out="$(cd "$out" && pwd)"
for rid in "${rids[@]}"; do
  prefix="$out"
  [ "${#rids[@]}" -eq 1 ] || prefix="$out/$rid"
  cc="${compilers[$rid]}"
  mkdir -p "$prefix/bin"

  for tool in dc_server dc_client dc_test dc_snoop dc_ticketkeys; do
    echo "publishing $tool ($rid) -> $prefix/bin/"
    # Symbols go inside the executable (embedded PDB), so stack traces keep their line numbers.
    dotnet publish "apps/$tool/$tool.csproj" -c Release -r "$rid" --self-contained true \
      -p:PublishSingleFile=true -p:PublishReadyToRun=true -p:DebugType=embedded \
      -p:PublishDocumentationFile=false -p:PublishReferencesDocumentationFiles=false \
      ${version_args[@]+"${version_args[@]}"} -nologo -v quiet -o "$prefix/bin"
  done

  echo "installing libdistcache ($rid, $cc) -> $prefix/lib, $prefix/include"
  make -C native --no-print-directory -s install B="build/$rid" CC="$cc" PREFIX="$prefix"

  if [ "$rid" = "$(host_rid)" ]; then
    if command -v "${APXS:-apxs}" >/dev/null 2>&1; then
      echo "building the Apache module -> $prefix/apache2/mod_socache_distcache.so"
      make -C native --no-print-directory -s apache PREFIX="$prefix"
      mkdir -p "$prefix/apache2"
      cp native/build/apache/mod_socache_distcache.so "$prefix/apache2/"
    else
      echo "not building the Apache module: apxs not found (Debian: apt-get install apache2-dev)"
    fi
  fi

  echo "installing the manual pages and documentation -> $prefix/share"
  install -d "$prefix/share/man/man1" "$prefix/share/man/man3" "$prefix/share/doc/distcache/docs"
  # The pages' header names the version they describe: the one published.
  for page in man/*.[13]; do
    sed -e "1,/^\.TH/s/\"distcache for \.NET [^\"]*\"/\"distcache for .NET ${version:-$default_version}\"/" "$page" \
      > "$prefix/share/man/man${page##*.}/${page##*/}"
    chmod 0644 "$prefix/share/man/man${page##*.}/${page##*/}"
  done
  install -m 0644 README.md LICENSE "$prefix/share/doc/distcache/"
  install -m 0644 docs/*.md docs/*.svg "$prefix/share/doc/distcache/docs/"

  echo "done: $prefix/bin/{dc_server,dc_client,dc_test,dc_snoop,dc_ticketkeys}, $prefix/lib/libdistcache.so, $prefix/share/man"
done
