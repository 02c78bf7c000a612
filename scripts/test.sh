#!/usr/bin/env bash
# Builds the solution and runs every test suite. Installs what the tests need first, so it works on a fresh
# machine with only the .NET SDK and Debian's apt. Ends with one summary line: "Tests: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."

configuration="${CONFIGURATION:-Release}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# Debian packages the suites start for real (none are mocked). Installed only when missing.
#   redis-server                    the Redis store's tests
#   gcc make libc6-dev pkg-config   libdistcache (C), built and found as programs that use it do
#   valgrind                        the library's tests under a leak checker
#   apache2 apache2-dev dpkg-dev    two real Apache servers (a shared session cache, and dc_ticketkeys's ticket key
#                                   file); apxs builds the socache modules, dpkg-dev unpacks Debian's apache2
#                                   source for its mod_socache_dc
#   python3                         the TLS client of the Apache, nginx and HAProxy tests (its ssl module resumes sessions)
#   nginx haproxy                   real servers reading session-ticket key files in dc_ticketkeys's formats
#   groff-base                      renders the manual pages under man/ (checked for warnings and coverage)
required_packages=(redis-server openssl strace gcc make libc6-dev pkg-config valgrind apache2 apache2-dev dpkg-dev python3 nginx haproxy groff-base)
packages=()
for pkg in "${required_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || packages+=("$pkg")
done
if [ "${#packages[@]}" -gt 0 ]; then
  echo "Installing ${packages[*]} for the test suites..."
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

make -C native --no-print-directory -s all
dotnet build Distcache.slnx -c "$configuration" -warnaserror -nologo -v quiet

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
dotnet test Distcache.slnx -c "$configuration" --no-build -nologo -- RunConfiguration.TreatNoTestsAsError=true 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# Sum the per-assembly result lines ("Passed!  - Failed: 0, Passed: 12, Skipped: 1, Total: 13, ...").
awk '
  /(Passed|Failed)! +- +Failed:/ {
    for (i = 1; i <= NF; i++) {
      gsub(",", "", $(i + 1))
      if ($i == "Failed:") f += $(i + 1)
      if ($i == "Passed:") p += $(i + 1)
      if ($i == "Skipped:") s += $(i + 1)
    }
    n++
  }
  END {
    if (n == 0) { print "Tests: no test assembly reported results"; exit 1 }
    printf "Tests: %d passed, %d failed, %d skipped\n", p, f, s
  }' "$log" || status=1
exit "$status"
