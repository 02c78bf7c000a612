#!/usr/bin/env bash
# Builds Apache's own mod_socache_dc (modules/cache/mod_socache_dc.c from Debian's apache2 source package),
# unchanged, against an installed libdistcache:
#
#   native/apache/build-debian-module.sh PREFIX OUTDIR
#
#   PREFIX  where `make -C native install PREFIX=...` put lib/ and include/distcache/
#   OUTDIR  receives mod_socache_dc.so (and mod_socache_dc.c, the source it was built from)
#
# The source comes from `apt-get source apache2` through a scratch apt configuration (its own sources.list with
# one deb-src line per suite, its own lists and cache folders): the machine's apt configuration is not touched.
# The download is kept in a cache folder, so a second run needs no network:
#
#   DEBIAN_APACHE_SRC_CACHE   the cache folder (default: OUTDIR/debian-src)
#   DEBIAN_APACHE_VERSION     the apache2 source version to fetch (default: the installed apache2's version if the
#                             archive still serves it, else the newest one the archive serves)
#   APXS                      the apxs to build with (default: apxs)
#
# Needs apt-get, dpkg-source (dpkg-dev) and apxs (apache2-dev); run as root or as a user who may run apt-get
# with private folders (no root is needed for that part).
set -euo pipefail

die() { echo "build-debian-module.sh: error: $*" >&2; exit 1; }
say() { echo "build-debian-module.sh: $*" >&2; }

[ $# -eq 2 ] || die "usage: $0 PREFIX OUTDIR"
prefix="$(cd "$1" 2>/dev/null && pwd)" || die "PREFIX $1 does not exist"
mkdir -p "$2" || die "cannot create OUTDIR $2"
outdir="$(cd "$2" && pwd)"
apxs="${APXS:-apxs}"

[ -f "$prefix/include/distcache/dc_client.h" ] || die "$prefix/include/distcache/dc_client.h not found: install the library first (make -C native install PREFIX=$prefix)"
ls "$prefix"/lib/libdistcache.so >/dev/null 2>&1 || die "$prefix/lib/libdistcache.so not found: install the library first (make -C native install PREFIX=$prefix)"
ls "$prefix"/lib/libnal.so >/dev/null 2>&1 || die "$prefix/lib/libnal.so not found: install the library first (make -C native install PREFIX=$prefix)"
command -v "$apxs" >/dev/null || die "$apxs not found: apt-get install -y --no-install-recommends apache2-dev"
command -v apt-get >/dev/null || die "apt-get not found: this script fetches Debian's apache2 source package"
command -v dpkg-source >/dev/null || die "dpkg-source not found: apt-get install -y --no-install-recommends dpkg-dev"

cache="${DEBIAN_APACHE_SRC_CACHE:-$outdir/debian-src}"
mkdir -p "$cache" || die "cannot create the source cache $cache"
cache="$(cd "$cache" && pwd)"

# The cache keeps the extracted file per version: <cache>/<version>/mod_socache_dc.c.
wanted="${DEBIAN_APACHE_VERSION:-}"
cached=""
if [ -n "$wanted" ]; then
  [ -f "$cache/$wanted/mod_socache_dc.c" ] && cached="$wanted"
else
  installed="$(dpkg-query -W -f='${Version}' apache2 2>/dev/null || true)"
  if [ -n "$installed" ] && [ -f "$cache/$installed/mod_socache_dc.c" ]; then
    cached="$installed"
  else
    # Any version fetched before will do; the newest by dpkg's ordering.
    for dir in "$cache"/*/; do
      [ -f "$dir/mod_socache_dc.c" ] || continue
      v="$(basename "$dir")"
      if [ -z "$cached" ] || dpkg --compare-versions "$v" gt "$cached"; then cached="$v"; fi
    done
  fi
fi

if [ -n "$cached" ]; then
  version="$cached"
  say "using the cached apache2 $version source ($cache/$version), no download"
else
  # A private apt configuration: only our deb-src lines, our own lists and cache; nothing of /etc/apt/sources.list*
  # and nothing under /var/lib/apt or /var/cache/apt is read or written.
  apt_dir="$cache/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || die "$keyring not found (package debian-archive-keyring)"
  cat > "$apt_dir/etc/sources.list" <<EOF
deb-src [signed-by=$keyring] http://deb.debian.org/debian bookworm main
deb-src [signed-by=$keyring] http://deb.debian.org/debian-security bookworm-security main
EOF
  apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
  )
  # The private folders belong to root, not to apt's sandbox user.
  [ "$(id -u)" -ne 0 ] || apt_opts+=(-o "APT::Sandbox::User=root")

  say "apt-get update (private source list: $apt_dir/etc/sources.list)"
  apt-get "${apt_opts[@]}" -q update >&2 || die "apt-get update with the private deb-src list failed (no access to deb.debian.org?)"

  # The apache2 source versions the archive lists.
  mapfile -t served < <(apt-cache "${apt_opts[@]}" showsrc apache2 2>/dev/null \
    | awk '/^Package: /{p=$2} /^Version: /{if (p=="apache2") print $2}' | sort -u)
  [ "${#served[@]}" -gt 0 ] || die "the archive lists no apache2 source package"
  say "apache2 source versions served: ${served[*]}"

  # Candidates in order: the one asked for; else the installed apache2's version, then the others newest first
  # (a mirror may list a version whose files it no longer serves).
  candidates=()
  if [ -n "$wanted" ]; then
    printf '%s\n' "${served[@]}" | grep -qxF "$wanted" || die "apache2 source $wanted is not served (served: ${served[*]})"
    candidates=("$wanted")
  else
    if [ -n "${installed:-}" ] && printf '%s\n' "${served[@]}" | grep -qxF "$installed"; then candidates+=("$installed"); fi
    mapfile -t others < <(printf '%s\n' "${served[@]}" | grep -vxF "${installed:-none}" | sort -r -V)
    candidates+=("${others[@]}")
  fi

  version=""
  for candidate in "${candidates[@]}"; do
    work="$cache/$candidate.download"
    rm -rf "$work"
    mkdir -p "$work"
    say "apt-get source --download-only apache2=$candidate"
    if (cd "$work" && apt-get "${apt_opts[@]}" -q source --download-only "apache2=$candidate" >&2); then
      version="$candidate"
      break
    fi
    say "apache2 $candidate could not be downloaded; trying the next version"
    rm -rf "$work"
  done
  [ -n "$version" ] || die "apt-get source apache2 failed for every served version (${candidates[*]})"
  dsc="$(ls "$work"/apache2_*.dsc 2>/dev/null | head -n 1)"
  [ -n "$dsc" ] || die "apt-get source left no apache2 .dsc in $work"

  # Unpack as Debian builds it (upstream tarball plus Debian's patches), then keep only the one file. apt checked
  # the files against the signed archive index; dpkg-source checks them against the .dsc again.
  say "dpkg-source -x $(basename "$dsc")"
  (cd "$work" && dpkg-source -x "$(basename "$dsc")" tree >&2) || die "dpkg-source -x $dsc failed"
  source_file="$work/tree/modules/cache/mod_socache_dc.c"
  [ -f "$source_file" ] || die "modules/cache/mod_socache_dc.c is not in the apache2 $version source"
  mkdir -p "$cache/$version.tmp"
  cp "$source_file" "$cache/$version.tmp/mod_socache_dc.c"
  # Keep the .dsc (it names the package files and their checksums), drop the tarballs and the unpacked tree.
  cp "$dsc" "$cache/$version.tmp/"
  rm -rf "$cache/$version"
  mv "$cache/$version.tmp" "$cache/$version"
  # The archive index (about 20 MB) is not needed again once the file is cached.
  rm -rf "$work" "$apt_dir"
fi

say "apache2 source version: $version"
installed="${installed:-$(dpkg-query -W -f='${Version}' apache2 2>/dev/null || true)}"
if [ -n "$installed" ] && [ "$installed" != "$version" ]; then
  say "note: the installed apache2 is $installed; its module API is the same within 2.4, and mod_socache_dc.c is built as this source has it"
fi
echo "apache2 source version: $version" > "$outdir/mod_socache_dc.version"

# Build in a scratch copy: apxs writes .o/.lo/.la files and a .libs folder next to the source.
build="$outdir/build-mod_socache_dc"
rm -rf "$build"
mkdir -p "$build"
cp "$cache/$version/mod_socache_dc.c" "$build/"
cp "$cache/$version/mod_socache_dc.c" "$outdir/mod_socache_dc.c"
# apxs hands what follows its -Wl, to libtool, which passes only -Wl,... on to the compiler driver: hence the
# doubled -Wl,-Wl, for the run path (a single one reaches libtool as a bare "-rpath,DIR" and is lost).
say "$apxs -c -I $prefix/include -L $prefix/lib -Wl,-Wl,-rpath,$prefix/lib -ldistcache -lnal mod_socache_dc.c"
(cd "$build" && "$apxs" -c -I "$prefix/include" -L "$prefix/lib" -Wl,-Wl,-rpath,"$prefix/lib" -ldistcache -lnal mod_socache_dc.c >&2) \
  || die "apxs could not build mod_socache_dc.c against $prefix"
[ -f "$build/.libs/mod_socache_dc.so" ] || die "apxs left no .libs/mod_socache_dc.so in $build"
cp "$build/.libs/mod_socache_dc.so" "$outdir/mod_socache_dc.so"
rm -rf "$build"

# The module must find the library it was built against.
if command -v ldd >/dev/null; then
  if ldd "$outdir/mod_socache_dc.so" | grep -q 'libdistcache.*not found'; then
    die "$outdir/mod_socache_dc.so cannot find libdistcache (ldd): $(ldd "$outdir/mod_socache_dc.so" | grep distcache)"
  fi
fi
say "built $outdir/mod_socache_dc.so (apache2 $version, libdistcache from $prefix)"
echo "$outdir/mod_socache_dc.so"
